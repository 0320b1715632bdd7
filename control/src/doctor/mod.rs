//! `vswitchctl doctor` and `vswitchd --check`: what on this host stands between the
//! switch and line rate, or between the switch and starting at all. Each finding says
//! what is wrong, why it matters and the command that fixes it.
//!
//! The checks read only /sys, /proc and the files the configuration names (through
//! `Host`, so tests can give them a made-up host) and run in the calling process:
//! doctor is most wanted when vswitchd will not start. What the switch is asked to run
//! (`Plan`) comes from the running vswitchd if it answers, else from its arguments.
pub mod checks;
pub mod cli;
pub mod host;
pub mod plan;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Info,
    Warn,
    Error,
}

/// One thing doctor found.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The check's name: hugepages, mbufs, lcores, isolation, pci, iommu, numa, ...
    pub check: &'static str,
    pub severity: Severity,
    pub what: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub why: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    pub fn ok(check: &'static str, what: impl Into<String>) -> Finding {
        Finding { check, severity: Severity::Ok, what: what.into(), why: String::new(), fix: None }
    }

    pub fn bad(check: &'static str, severity: Severity, what: impl Into<String>, why: impl Into<String>) -> Finding {
        Finding { check, severity, what: what.into(), why: why.into(), fix: None }
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Finding {
        self.fix = Some(fix.into());
        self
    }
}

/// Every finding for `plan` on `host`, in the order a reader fixes them.
pub fn examine(plan: &plan::Plan, host: &host::Host) -> Vec<Finding> {
    let mut out = Vec::new();
    out.extend(checks::daemon::check(plan, host));
    out.extend(checks::memory::check(plan, host));
    out.extend(checks::cpus::check(plan, host));
    out.extend(checks::devices::check(plan, host));
    out.extend(checks::kernel::check(plan, host));
    out
}

/// The exit status: 0 when nothing is worse than informational, 1 for warnings, 2
/// for errors (the switch will not start, or a configured port cannot work).
pub fn exit_status(findings: &[Finding]) -> u8 {
    match findings.iter().map(|f| f.severity).max() {
        Some(Severity::Error) => 2,
        Some(Severity::Warn) => 1,
        _ => 0,
    }
}

/// The report as people read it.
pub fn render(plan: &plan::Plan, findings: &[Finding]) -> String {
    use std::fmt::Write;
    let mut s = format!("checked against {}\n", plan.source);
    for f in findings {
        let tag = match f.severity {
            Severity::Ok => "ok",
            Severity::Info => "info",
            Severity::Warn => "WARN",
            Severity::Error => "ERROR",
        };
        let _ = writeln!(s, "{tag:<5} {:<10} {}", f.check, f.what);
        if !f.why.is_empty() {
            let _ = writeln!(s, "{:16} why: {}", "", f.why);
        }
        if let Some(fix) = &f.fix {
            let _ = writeln!(s, "{:16} fix: {}", "", fix);
        }
    }
    let count = |sev| findings.iter().filter(|f| f.severity == sev).count();
    let _ = writeln!(
        s,
        "{} errors, {} warnings, {} notes, {} fine",
        count(Severity::Error),
        count(Severity::Warn),
        count(Severity::Info),
        count(Severity::Ok)
    );
    s
}
