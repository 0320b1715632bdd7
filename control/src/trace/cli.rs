//! vswitchctl's packet trace.
use super::api::{TraceRequest, TraceView};
use crate::{
    api::Request,
    cli::{from, Verb},
};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum TraceCmd {
    /// Show each stage's decision for one packet arriving on a port, against the tables
    /// the cores use now. Sends nothing, learns nothing.
    ///
    /// Examples:
    ///   vswitchctl trace --port vm1 --packet 02000000020102000000010108004500...
    ///   vswitchctl trace --port up0 --pcap capture.pcap --index 3
    ///   vswitchctl trace --port c1 --pcap big.pcap --tso 1448   # a 64 KB TSO frame
    #[command(verbatim_doc_comment)]
    Trace {
        #[arg(long)]
        port: String,
        /// The frame in hex, from the destination MAC on (no FCS).
        #[arg(long, conflicts_with = "pcap", required_unless_present = "pcap")]
        packet: Option<String>,
        /// Take the frame from a pcap file...
        #[arg(long)]
        pcap: Option<PathBuf>,
        /// ...the INDEX-th frame (from 0).
        #[arg(long, default_value_t = 0, requires = "pcap")]
        index: usize,
        /// The frame is a TSO frame as a kernel port or a guest hands it over (its TCP
        /// checksum partial), to be cut into segments of MSS payload bytes.
        #[arg(long, value_name = "MSS", value_parser = clap::value_parser!(u16).range(1..))]
        tso: Option<u16>,
    },
}

impl Verb for TraceCmd {
    fn request(&self) -> Result<Request, String> {
        let TraceCmd::Trace { port, packet, pcap, index, tso } = self;
        let packet = match (packet, pcap) {
            (Some(h), _) => h.clone(),
            (None, Some(file)) => frame_from_pcap(file, *index)?,
            (None, None) => return Err("give --packet HEX or --pcap FILE".into()),
        };
        Ok(Request::Trace(TraceRequest::Trace { port: port.clone(), packet, tso: *tso }))
    }

    fn print(&self, v: serde_json::Value) -> Result<(), serde_json::Error> {
        match self {
            TraceCmd::Trace { .. } => {
                let t: TraceView = from(v)?;
                for s in &t.steps {
                    println!("{s}");
                }
                if let Some(o) = &t.output {
                    println!("output: {o}");
                }
            }
        }
        Ok(())
    }
}

/// Frame `index` of a pcap file, in hex.
pub fn frame_from_pcap(path: &PathBuf, index: usize) -> Result<String, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut r =
        pcap_file::pcap::PcapReader::new(f).map_err(|e| format!("{} is not a pcap file: {e}", path.display()))?;
    let mut i = 0;
    while let Some(p) = r.next_packet() {
        let p = p.map_err(|e| format!("reading {}: {e}", path.display()))?;
        if i == index {
            return Ok(super::to_hex(&p.data));
        }
        i += 1;
    }
    Err(format!("--index: {} has {i} frames, there is no frame {index}", path.display()))
}
