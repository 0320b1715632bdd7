//! vswitchctl's cross-connect verbs.
use super::api::XconnectRequest;
use crate::{api::Request, cli::Verb};
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum XconnectCmd {
    /// Cross-connect two ports, both directions.
    #[command(after_help = "Example:\n  vswitchctl xconnect add vm1 vm2")]
    Add { a: String, b: String },
    /// Remove the cross-connect of a port (either end).
    #[command(after_help = "Example:\n  vswitchctl xconnect del vm1")]
    Del { a: String },
}

impl Verb for XconnectCmd {
    fn request(&self) -> Result<Request, String> {
        Ok(Request::Xconnect(match self {
            XconnectCmd::Add { a, b } => XconnectRequest::XconnectAdd { a: a.clone(), b: b.clone() },
            XconnectCmd::Del { a } => XconnectRequest::XconnectDel { a: a.clone() },
        }))
    }
}
