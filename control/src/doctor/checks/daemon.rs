//! The daemon itself: does it answer, who may talk to it, can it read its state.
use crate::doctor::{host::Host, plan::Plan, Finding, Severity};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

pub fn check(plan: &Plan, host: &Host) -> Vec<Finding> {
    let mut out = Vec::new();
    let sock = plan.socket.display();
    let meta = host.metadata(&plan.socket);
    if plan.running {
        out.push(Finding::ok("daemon", format!("vswitchd answers on {sock}")));
    } else if plan.asked {
        let what = match &meta {
            Some(m) if m.file_type().is_socket() => format!("{sock} exists but nothing answers on it"),
            _ => format!("no vswitchd socket at {sock}"),
        };
        out.push(
            Finding::bad("daemon", Severity::Error, what, "vswitchd is not running: no port forwards")
                .fix("systemctl start vswitchd; journalctl -u vswitchd -n 50 says why it stopped"),
        );
    }
    if let Some(m) = meta.filter(|m| m.file_type().is_socket()) {
        let mode = m.permissions().mode() & 0o777;
        if mode & 0o007 != 0 {
            out.push(
                Finding::bad(
                    "socket",
                    Severity::Warn,
                    format!("{sock} has mode {mode:o}: every local user may change the switch"),
                    "the API takes any change from whoever can connect",
                )
                .fix(format!("chmod 600 {sock}, or start vswitchd with --socket-group GROUP for mode 660")),
            );
        } else if m.uid() != 0 && plan.running {
            out.push(Finding::bad(
                "socket",
                Severity::Info,
                format!("{sock} belongs to uid {}, not root", m.uid()),
                "vswitchd is not running as root; kernel ports and hugepages need CAP_NET_ADMIN and CAP_IPC_LOCK",
            ));
        } else {
            let who = if mode & 0o070 != 0 { format!("root and gid {}", m.gid()) } else { "root only".into() };
            out.push(Finding::ok("socket", format!("{sock}: mode {mode:o}, {who}")));
        }
    }
    if let Some(state) = &plan.state {
        match state {
            Ok(n) => out.push(Finding::ok("state", format!("{}: {n} ports", plan.db.display()))),
            Err(e) => out.push(
                Finding::bad("state", Severity::Error, e.clone(), "vswitchd refuses to start on a damaged state file")
                    .fix(format!("restore {} from a backup, or move it aside to start empty", plan.db.display())),
            ),
        }
    }
    out
}
