//! `vswitchctl doctor`: the checks, against the running switch if it answers, else
//! against its configuration file and state file.
use super::{
    examine, exit_status,
    host::Host,
    plan::{read_conf, Plan, CONF_FILE},
    render,
};
use crate::{
    api::Request,
    cli::{call_within, Ctl, Verb},
    stats::api::{ShowView, StatsRequest},
};
use clap::Subcommand;
use std::{path::PathBuf, process::ExitCode, time::Duration};

#[derive(Subcommand, Debug)]
pub enum DoctorCmd {
    /// Check this host for what stands in the switch's way: hugepages per NUMA node
    /// against the packet buffers, PMD core isolation and hyperthread siblings, PCI
    /// drivers, IOMMU and NUMA locality, socket and vhost-user permissions, kernel
    /// features, and kernel peers that leave checksums unfinished. Each finding says
    /// why it matters and the command that fixes it. Exit status: 0 fine, 1 warnings,
    /// 2 errors.
    ///
    /// Checks the running vswitchd if it answers; otherwise what CONF and the state
    /// file it names would start.
    #[command(verbatim_doc_comment)]
    Doctor {
        /// vswitchd's options and EAL arguments (VSWITCHD_OPTS="...", EAL_ARGS="..."),
        /// read when no vswitchd answers.
        #[arg(long, default_value = CONF_FILE)]
        conf: PathBuf,
    },
}

impl Verb for DoctorCmd {
    fn request(&self) -> Result<Request, String> {
        Ok(Request::Stats(StatsRequest::Show))
    }

    fn run(&self, ctl: &Ctl) -> ExitCode {
        let DoctorCmd::Doctor { conf } = self;
        let host = Host::default();
        let running = call_within(&ctl.socket, &Request::Stats(StatsRequest::Show), Some(Duration::from_secs(5)))
            .ok()
            .filter(|r| r.ok)
            .and_then(|r| serde_json::from_value::<ShowView>(r.result?).ok());
        let mut plan = match running {
            Some(show) => Plan::running(&show, &ctl.socket),
            None => {
                let (source, (opts, eal)) = match std::fs::read_to_string(conf) {
                    Ok(text) => (format!("{} (no vswitchd answers)", conf.display()), read_conf(&text)),
                    Err(_) => (
                        format!("vswitchd's defaults ({} is absent; no vswitchd answers)", conf.display()),
                        Default::default(),
                    ),
                };
                let plan = Plan::configured(source, &opts, &eal, &host.online_cpus());
                let loaded = crate::store::Store::load(&plan.db);
                let mut plan = plan.with_state(loaded);
                plan.socket = ctl.socket.clone();
                plan
            }
        };
        plan.asked = true;
        let findings = examine(&plan, &host);
        let status = exit_status(&findings);
        if ctl.json {
            let v = serde_json::json!({"source": plan.source, "status": status, "findings": findings});
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        } else {
            print!("{}", render(&plan, &findings));
        }
        ExitCode::from(status)
    }
}
