//! vswitchctl's packet capture: the daemon copies, this writes the pcap.
use super::api::{CaptureDir, CaptureRequest, CaptureSpec, CaptureView};
use crate::{
    api::Request,
    cli::{Ctl, Verb},
};
use clap::Subcommand;
use std::{path::PathBuf, process::ExitCode};

#[derive(Subcommand, Debug)]
pub enum CaptureCmd {
    /// Write packets a port receives and sends to a pcap file, while it keeps forwarding.
    ///
    /// Examples:
    ///   vswitchctl capture vm1 --count 100 -w vm1.pcap
    ///   vswitchctl capture up0 --count 1000 --dir rx --snaplen 128 -w up0.pcap --timeout 30
    #[command(verbatim_doc_comment)]
    Capture {
        port: String,
        /// Stop after this many packets.
        #[arg(long, short = 'c', default_value_t = 100)]
        count: u32,
        /// The pcap file to write.
        #[arg(short = 'w', long = "write", value_name = "FILE.pcap")]
        write: PathBuf,
        /// Which packets: received, sent, or both.
        #[arg(long, value_enum, default_value_t = CaptureDirArg::Both)]
        dir: CaptureDirArg,
        /// Bytes kept per packet (1 to 2048).
        #[arg(long)]
        snaplen: Option<u16>,
        /// Stop after this many seconds even if fewer packets came.
        #[arg(long, default_value_t = 10)]
        timeout: u32,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum CaptureDirArg {
    Rx,
    Tx,
    Both,
}

impl Verb for CaptureCmd {
    fn request(&self) -> Result<Request, String> {
        let CaptureCmd::Capture { port, count, dir, snaplen, timeout, .. } = self;
        Ok(Request::Capture(CaptureRequest::Capture(CaptureSpec {
            port: port.clone(),
            count: *count,
            dir: match dir {
                CaptureDirArg::Rx => CaptureDir::Rx,
                CaptureDirArg::Tx => CaptureDir::Tx,
                CaptureDirArg::Both => CaptureDir::Both,
            },
            snaplen: *snaplen,
            timeout_s: Some(*timeout),
        })))
    }

    fn run(&self, ctl: &Ctl) -> ExitCode {
        let CaptureCmd::Capture { write, .. } = self;
        let reply = match self.request() {
            Ok(req) => ctl.send(&req),
            Err(e) => return ctl.fail(1, &e),
        };
        match reply {
            Err(code) => code,
            Ok(v) => match write_capture(write, v, ctl.json) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => ctl.fail(1, &e),
            },
        }
    }
}

/// Writes a capture's packets to a pcap file and says what it wrote.
pub fn write_capture(path: &PathBuf, result: serde_json::Value, json: bool) -> Result<(), String> {
    let c: CaptureView = serde_json::from_value(result).map_err(|e| format!("cannot read vswitchd's reply: {e}"))?;
    let f = std::fs::File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let header = pcap_file::pcap::PcapHeader {
        ts_resolution: pcap_file::TsResolution::NanoSecond,
        snaplen: 65535,
        ..Default::default()
    };
    let mut w = pcap_file::pcap::PcapWriter::with_header(std::io::BufWriter::new(f), header)
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    for p in &c.packets {
        let data = crate::trace::parse_hex(&p.data).map_err(|e| format!("vswitchd sent a bad packet: {e}"))?;
        let pkt = pcap_file::pcap::PcapPacket::new_owned(
            std::time::Duration::from_nanos(p.ts_ns),
            p.orig_len.max(data.len() as u32),
            data,
        );
        w.write_packet(&pkt).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    w.into_writer().into_inner().map_err(|e| format!("writing {}: {e}", path.display()))?;
    let (rx, tx) = c.packets.iter().fold((0, 0), |(r, t), p| if p.dir == "tx" { (r, t + 1) } else { (r + 1, t) });
    if json {
        println!(
            "{}",
            serde_json::json!({"file": path, "packets": c.packets.len(), "rx": rx, "tx": tx, "lost": c.lost, "complete": c.complete})
        );
    } else {
        println!(
            "{} packets from port {} ({rx} received, {tx} sent) written to {}{}{}",
            c.packets.len(),
            c.port,
            path.display(),
            if c.lost > 0 { format!("; {} not copied (capture buffers full)", c.lost) } else { String::new() },
            if c.complete { "" } else { "; the timeout ended the capture first" },
        );
    }
    Ok(())
}
