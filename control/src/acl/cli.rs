//! vswitchctl's security-group verbs.
use super::api::{AclAction, AclDir, AclRequest, AclRuleSpec, AclRuleView};
use crate::{
    api::Request,
    cli::{from, header, opt, table, Ctl, Verb},
};
use clap::{Args as ClapArgs, Parser, Subcommand};
use std::{path::PathBuf, process::ExitCode};

#[derive(Subcommand, Debug)]
pub enum AclCmd {
    /// Add a rule; prints its id. Higher priority wins; equal priorities go to the lower id.
    ///
    /// Examples:
    ///   vswitchctl acl add --priority 100 --port vm1 --proto tcp --dport 22 --action allow
    ///   vswitchctl acl add --priority 10 --vni 100 --dir out --src 10.0.0.0/8 --action deny
    ///   vswitchctl acl add --priority 50 --port vm1 --src fd00::/64 --proto icmpv6 --icmp-type 128 --action allow
    #[command(verbatim_doc_comment)]
    Add(AclRuleArgs),
    /// Delete a rule by id.
    #[command(after_help = "Example:\n  vswitchctl acl del 7")]
    Del { id: u32 },
    /// Rules with their hit counters.
    #[command(after_help = "Example:\n  vswitchctl acl list --port vm1")]
    List {
        #[arg(long)]
        port: Option<String>,
        #[arg(long)]
        vni: Option<u32>,
    },
    /// Replace every rule with those in FILE, atomically: one `acl add` option list per
    /// line, `#` comments. One bad line installs nothing and names the line.
    ///
    /// Example file:
    ///   --priority 100 --port vm1 --proto tcp --dport 22 --action allow
    ///   --priority 1 --port vm1 --action deny    # everything else
    #[command(verbatim_doc_comment)]
    Load { file: PathBuf },
    /// The action for a port's traffic that no rule matches (and for non-IP frames): allow
    /// (the default) or deny. Applies to both directions.
    #[command(after_help = "Example:\n  vswitchctl acl default vm1 deny")]
    Default {
        port: String,
        #[arg(value_enum)]
        action: ActionArg,
    },
    /// Make a VM port's security group stateful: its rules and default decide only
    /// packets that start a connection; replies and the rest of an allowed connection
    /// pass both ways; packets of no connection that cannot start one are dropped
    /// (ct_invalid). `off` makes it stateless again.
    ///
    /// Examples:
    ///   vswitchctl acl stateful vm2 on
    ///   vswitchctl acl stateful vm2 on --sticky --max-sessions 100000
    ///   vswitchctl acl stateful vm2 off
    #[command(verbatim_doc_comment)]
    Stateful(crate::conntrack::cli::StatefulArgs),
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ActionArg {
    Allow,
    Deny,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum DirArg {
    In,
    Out,
}

#[derive(ClapArgs, Debug, Clone)]
pub struct AclRuleArgs {
    #[arg(long)]
    priority: u32,
    /// A VM port the rule applies to...
    #[arg(long, conflicts_with = "vni", required_unless_present = "vni")]
    port: Option<String>,
    /// ...or every VM port of a VNI.
    #[arg(long)]
    vni: Option<u32>,
    /// in: from the VM (default); out: to the VM.
    #[arg(long, value_enum)]
    dir: Option<DirArg>,
    /// Source prefix, IPv4 or IPv6.
    #[arg(long)]
    src: Option<String>,
    #[arg(long)]
    dst: Option<String>,
    /// tcp, udp, icmp, icmpv6 or a protocol number.
    #[arg(long)]
    proto: Option<String>,
    /// LO or LO-HI.
    #[arg(long)]
    sport: Option<String>,
    #[arg(long)]
    dport: Option<String>,
    #[arg(long)]
    icmp_type: Option<u8>,
    #[arg(long, value_enum)]
    action: ActionArg,
    /// A rule id of your choice (default: the next free one).
    #[arg(long)]
    id: Option<u32>,
}

impl AclRuleArgs {
    fn spec(&self) -> AclRuleSpec {
        AclRuleSpec {
            id: self.id,
            priority: self.priority,
            port: self.port.clone(),
            vni: self.vni,
            dir: self.dir.map(|d| match d {
                DirArg::In => AclDir::In,
                DirArg::Out => AclDir::Out,
            }),
            src: self.src.clone(),
            dst: self.dst.clone(),
            proto: self.proto.clone(),
            sport: self.sport.clone(),
            dport: self.dport.clone(),
            icmp_type: self.icmp_type,
            action: match self.action {
                ActionArg::Allow => AclAction::Allow,
                ActionArg::Deny => AclAction::Deny,
            },
        }
    }
}

/// One line of an `acl load` file.
#[derive(Parser, Debug)]
#[command(name = "rule", no_binary_name = true)]
pub struct RuleLine {
    #[command(flatten)]
    rule: AclRuleArgs,
}

/// The rules of an `acl load` file, with the line each came from.
pub fn read_rules(path: &PathBuf) -> Result<Vec<(usize, AclRuleSpec)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_rules(&text, &path.display().to_string())
}

/// The rules of an `acl load` file's text; errors say `NAME line N: ...`.
pub fn parse_rules(text: &str, name: &str) -> Result<Vec<(usize, AclRuleSpec)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let words = line.split_whitespace();
        let r = RuleLine::try_parse_from(words).map_err(|e| {
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or("").trim_start_matches("error: ").to_string();
            format!("{name} line {}: {first}", n + 1)
        })?;
        out.push((n + 1, r.rule.spec()));
    }
    Ok(out)
}

impl ActionArg {
    pub fn action(self) -> AclAction {
        match self {
            ActionArg::Allow => AclAction::Allow,
            ActionArg::Deny => AclAction::Deny,
        }
    }
}

impl Verb for AclCmd {
    fn request(&self) -> Result<Request, String> {
        Ok(Request::Acl(match self {
            AclCmd::Stateful(s) => return Ok(s.request()),
            AclCmd::Add(a) => AclRequest::AclAdd(a.spec()),
            AclCmd::Del { id } => AclRequest::AclDel { id: *id },
            AclCmd::List { port, vni } => AclRequest::AclList { port: port.clone(), vni: *vni },
            AclCmd::Default { port, action } => AclRequest::AclDefault { port: port.clone(), action: action.action() },
            AclCmd::Load { file } => {
                AclRequest::AclLoad { rules: read_rules(file)?.into_iter().map(|(_, r)| r).collect() }
            }
        }))
    }

    fn print(&self, v: serde_json::Value) -> Result<(), serde_json::Error> {
        match self {
            AclCmd::Add(_) => println!("rule {} added", v["id"]),
            AclCmd::List { .. } => print_acl(&from::<Vec<AclRuleView>>(v)?),
            _ => {}
        }
        Ok(())
    }

    fn run(&self, ctl: &Ctl) -> ExitCode {
        match self {
            AclCmd::Load { file } => load(ctl, file),
            _ => crate::cli::run_plain(self, ctl),
        }
    }
}

/// `acl load`: a refused rule is reported by its line in the file.
fn load(ctl: &Ctl, file: &PathBuf) -> ExitCode {
    let rules = match read_rules(file) {
        Ok(r) => r,
        Err(e) => return ctl.fail(1, &e),
    };
    let lines: Vec<usize> = rules.iter().map(|(n, _)| *n).collect();
    let req = Request::Acl(AclRequest::AclLoad { rules: rules.into_iter().map(|(_, r)| r).collect() });
    let resp = match crate::cli::call(&ctl.socket, &req) {
        Ok(r) => r,
        Err(e) => return ctl.fail(2, &e),
    };
    if resp.ok {
        let n = resp.result.as_ref().and_then(|v| v["rules"].as_u64()).unwrap_or(0);
        println!("loaded {n} rules from {}", file.display());
        return ExitCode::SUCCESS;
    }
    let err = resp.error.unwrap_or_default();
    let located = err
        .strip_prefix("rules[")
        .and_then(|rest| rest.split_once("]: "))
        .and_then(|(i, msg)| i.parse::<usize>().ok().and_then(|i| lines.get(i)).map(|line| (line, msg)));
    match located {
        Some((line, msg)) => ctl.fail(1, &format!("{} line {line}: {msg}; nothing was installed", file.display())),
        None => ctl.fail(1, &err),
    }
}

pub fn print_acl(rules: &[AclRuleView]) {
    let mut rows =
        vec![header(&["ID", "PRIO", "SCOPE", "DIR", "SRC", "DST", "PROTO", "SPORT", "DPORT", "ACTION", "HITS"])];
    for v in rules {
        let r = &v.rule;
        let scope = match (&r.port, r.vni) {
            (Some(p), _) => format!("port {p}"),
            (None, Some(n)) => format!("vni {n}"),
            _ => "-".into(),
        };
        let proto = match (&r.proto, r.icmp_type) {
            (Some(p), Some(t)) => format!("{p} type {t}"),
            (Some(p), None) => p.clone(),
            (None, _) => "any".into(),
        };
        rows.push(vec![
            opt(&r.id),
            r.priority.to_string(),
            scope,
            format!("{:?}", r.dir.unwrap_or(AclDir::In)).to_lowercase(),
            r.src.clone().unwrap_or_else(|| "any".into()),
            r.dst.clone().unwrap_or_else(|| "any".into()),
            proto,
            r.sport.clone().unwrap_or_else(|| "any".into()),
            r.dport.clone().unwrap_or_else(|| "any".into()),
            format!("{:?}", r.action).to_lowercase(),
            v.hits.to_string(),
        ]);
    }
    table(&rows);
}
