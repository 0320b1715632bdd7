//! vswitchctl's declarative verbs: apply a desired-state file, dump the running one.
use super::api::{ApplyReport, ApplyRequest};
use crate::{
    api::Request,
    cli::{from, Verb},
    state::DesiredState,
};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum ApplyCmd {
    /// Make the switch match a desired-state file (YAML or JSON, as `dump` prints), all or nothing.
    ///
    /// Examples:
    ///   vswitchctl dump > switch.json; vswitchctl apply -f switch.json    # changes nothing
    ///   vswitchctl apply -f switch.yaml --dry-run                          # print what would change
    #[command(verbatim_doc_comment)]
    Apply {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Print the changes without making them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the running desired state in the format `apply` reads.
    #[command(after_help = "Example:\n  vswitchctl dump > switch.json")]
    Dump,
}

impl Verb for ApplyCmd {
    fn request(&self) -> Result<Request, String> {
        Ok(Request::Apply(match self {
            ApplyCmd::Apply { file, dry_run } => ApplyRequest::Apply { state: read_state(file)?, dry_run: *dry_run },
            ApplyCmd::Dump => ApplyRequest::Dump,
        }))
    }

    fn print(&self, v: serde_json::Value) -> Result<(), serde_json::Error> {
        match self {
            ApplyCmd::Dump => println!("{}", serde_json::to_string_pretty(&v)?),
            ApplyCmd::Apply { dry_run, .. } => {
                let r: ApplyReport = from(v)?;
                if r.changes.is_empty() {
                    println!("no changes: the switch already matches the file");
                } else {
                    println!("{}", if *dry_run { "would change:" } else { "changed:" });
                    for c in &r.changes {
                        println!("  {c}");
                    }
                }
            }
        }
        Ok(())
    }
}

/// A desired-state file: JSON if it parses as JSON, else YAML.
pub fn read_state(path: &PathBuf) -> Result<DesiredState, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_state(&text, &path.display().to_string())
}

/// A desired state's text: JSON if it parses as JSON, else YAML.
pub fn parse_state(text: &str, name: &str) -> Result<DesiredState, String> {
    match serde_json::from_str(text) {
        Ok(s) => Ok(s),
        Err(json_err) if text.trim_start().starts_with('{') => {
            Err(format!("{name} is not a valid desired state (JSON): {json_err}"))
        }
        Err(_) => serde_yaml_ng::from_str(text).map_err(|e| format!("{name} is not a valid desired state (YAML): {e}")),
    }
}
