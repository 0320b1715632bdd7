//! vswitchctl's connection-tracking verbs (`acl stateful` lives with the ACL verbs).
use super::api::{CtRequest, CtStats, EventRow, EventsView, SessionRow, StatefulSpec};
use crate::{
    api::Request,
    cli::{from, header, table, Ctl, Verb},
};
use clap::{Args as ClapArgs, Subcommand};
use std::{collections::BTreeMap, process::ExitCode, time::Duration};

#[derive(Subcommand, Debug)]
pub enum ConntrackCmd {
    /// Sessions: zone, who opened them to whom, state, idle and age, packets each way.
    #[command(
        after_help = "Examples:\n  vswitchctl conntrack list --port vm1\n  vswitchctl --json conntrack list --vni 100"
    )]
    List {
        #[arg(long)]
        port: Option<String>,
        #[arg(long)]
        vni: Option<u32>,
        /// At most this many (default 1000).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// End sessions now: their next packet is new again and meets the rules.
    #[command(after_help = "Examples:\n  vswitchctl conntrack flush --port vm1\n  vswitchctl conntrack flush")]
    Flush {
        #[arg(long)]
        port: Option<String>,
        #[arg(long)]
        vni: Option<u32>,
    },
    /// Sessions by protocol and state, created, expired, recycled, refused, drops.
    Stats,
    /// The flow log, from now on: sessions made and ended (with packets, bytes and how
    /// long they lived) and new connections refused (with why). Runs until interrupted,
    /// or for --seconds.
    #[command(
        after_help = "Examples:\n  vswitchctl conntrack events --port vm1\n  vswitchctl --json conntrack events --seconds 10"
    )]
    Events {
        #[arg(long)]
        port: Option<String>,
        #[arg(long)]
        seconds: Option<f64>,
    },
    /// Timeouts per protocol and state, in seconds; `set` changes some.
    #[command(
        after_help = "Examples:\n  vswitchctl conntrack timeouts\n  vswitchctl conntrack timeouts set --tcp-established 3600 --udp 60"
    )]
    Timeouts {
        #[command(subcommand)]
        set: Option<TimeoutsSet>,
    },
}

#[derive(Subcommand, Debug)]
pub enum TimeoutsSet {
    Set(TimeoutArgs),
}

#[derive(ClapArgs, Debug)]
pub struct TimeoutArgs {
    #[arg(long)]
    tcp_syn_sent: Option<u32>,
    #[arg(long)]
    tcp_syn_recv: Option<u32>,
    #[arg(long)]
    tcp_established: Option<u32>,
    #[arg(long)]
    tcp_fin_wait: Option<u32>,
    #[arg(long)]
    tcp_close_wait: Option<u32>,
    #[arg(long)]
    tcp_last_ack: Option<u32>,
    #[arg(long)]
    tcp_time_wait: Option<u32>,
    #[arg(long)]
    tcp_close: Option<u32>,
    #[arg(long)]
    tcp_syn_sent2: Option<u32>,
    #[arg(long)]
    udp: Option<u32>,
    #[arg(long)]
    udp_stream: Option<u32>,
    #[arg(long)]
    icmp: Option<u32>,
    #[arg(long)]
    generic: Option<u32>,
}

impl TimeoutArgs {
    fn set(&self) -> BTreeMap<String, u32> {
        [
            ("tcp_syn_sent", self.tcp_syn_sent),
            ("tcp_syn_recv", self.tcp_syn_recv),
            ("tcp_established", self.tcp_established),
            ("tcp_fin_wait", self.tcp_fin_wait),
            ("tcp_close_wait", self.tcp_close_wait),
            ("tcp_last_ack", self.tcp_last_ack),
            ("tcp_time_wait", self.tcp_time_wait),
            ("tcp_close", self.tcp_close),
            ("tcp_syn_sent2", self.tcp_syn_sent2),
            ("udp", self.udp),
            ("udp_stream", self.udp_stream),
            ("icmp", self.icmp),
            ("generic", self.generic),
        ]
        .into_iter()
        .filter_map(|(n, v)| Some((n.to_string(), v?)))
        .collect()
    }
}

/// `acl stateful PORT on|off ...`
#[derive(ClapArgs, Debug, Clone)]
pub struct StatefulArgs {
    port: String,
    #[arg(value_enum)]
    state: OnOff,
    /// Out-of-window TCP segments (other than RST) pass instead of being invalid.
    #[arg(long)]
    liberal: bool,
    /// Sessions keep passing after a rule change that would no longer allow them.
    #[arg(long)]
    sticky: bool,
    /// A TCP segment other than SYN may open a session (connections already under way).
    #[arg(long)]
    pickup: bool,
    /// Sessions this port may open at once.
    #[arg(long)]
    max_sessions: Option<u32>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

impl StatefulArgs {
    pub fn request(&self) -> Request {
        Request::Conntrack(CtRequest::AclStateful(StatefulSpec {
            port: self.port.clone(),
            on: matches!(self.state, OnOff::On),
            liberal: self.liberal,
            sticky: self.sticky,
            pickup: self.pickup,
            max_sessions: self.max_sessions,
        }))
    }
}

impl Verb for ConntrackCmd {
    fn request(&self) -> Result<Request, String> {
        Ok(Request::Conntrack(match self {
            ConntrackCmd::List { port, vni, limit } => {
                CtRequest::ConntrackList { port: port.clone(), vni: *vni, limit: *limit }
            }
            ConntrackCmd::Flush { port, vni } => CtRequest::ConntrackFlush { port: port.clone(), vni: *vni },
            ConntrackCmd::Stats => CtRequest::ConntrackStats,
            ConntrackCmd::Events { port, .. } => CtRequest::ConntrackEvents { since: None, port: port.clone() },
            ConntrackCmd::Timeouts { set } => CtRequest::ConntrackTimeouts {
                set: match set {
                    Some(TimeoutsSet::Set(a)) => {
                        let s = a.set();
                        if s.is_empty() {
                            return Err(
                                "conntrack timeouts set: name at least one timeout (--tcp-established 3600)".into()
                            );
                        }
                        s
                    }
                    None => BTreeMap::new(),
                },
            },
        }))
    }

    fn run(&self, ctl: &Ctl) -> ExitCode {
        match self {
            ConntrackCmd::Events { port, seconds } => follow(ctl, port, *seconds),
            _ => crate::cli::run_plain(self, ctl),
        }
    }

    fn print(&self, v: serde_json::Value) -> Result<(), serde_json::Error> {
        match self {
            ConntrackCmd::List { .. } => {
                let rows: Vec<SessionRow> = from(v)?;
                let mut out = vec![header(&[
                    "ZONE", "PROTO", "SRC", "SPORT", "DST", "DPORT", "STATE", "PORTS", "IDLE", "AGE", "PKTS", "BYTES",
                ])];
                for r in rows {
                    let c = r.conn;
                    out.push(vec![
                        zone_name(c.zone),
                        c.proto,
                        c.src,
                        c.sport.to_string(),
                        c.dst,
                        c.dport.to_string(),
                        format!("{}{}", r.state, if r.assured { " [assured]" } else { "" }),
                        r.ports.join(","),
                        format!("{}s", r.idle),
                        format!("{}s", r.age),
                        format!("{}/{}", r.packets[0], r.packets[1]),
                        r.bytes.to_string(),
                    ]);
                }
                table(&out);
            }
            ConntrackCmd::Flush { .. } => {
                println!("flushed {} sessions", v.get("flushed").and_then(|n| n.as_u64()).unwrap_or(0));
            }
            ConntrackCmd::Stats => {
                let s: CtStats = from(v)?;
                println!("sessions {} of {}", s.sessions, s.capacity);
                for (k, n) in &s.by_state {
                    println!("  {k:<24} {n}");
                }
                println!(
                    "created {} ({}/s)  expired {}  recycled {}  refused (full) {}",
                    s.created, s.created_per_sec, s.expired, s.recycled, s.full
                );
                for (k, n) in &s.drops {
                    println!("drops {k:<16} {n}");
                }
                let invalid: Vec<String> =
                    s.invalid.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k} {n}")).collect();
                if !invalid.is_empty() {
                    println!("invalid by why: {}", invalid.join(", "));
                }
                println!(
                    "stateful ports: {}",
                    if s.stateful_ports.is_empty() { "none".into() } else { s.stateful_ports.join(", ") }
                );
            }
            ConntrackCmd::Events { .. } => {}
            ConntrackCmd::Timeouts { .. } => {
                let t: BTreeMap<String, u32> = from(v)?;
                for (k, s) in t {
                    println!("{k:<18} {s}");
                }
            }
        }
        Ok(())
    }
}

/// `conntrack events`: asks for what is new five times a second and prints it, one line
/// (or JSON object) per event.
fn follow(ctl: &Ctl, port: &Option<String>, seconds: Option<f64>) -> ExitCode {
    let end = seconds.map(|s| std::time::Instant::now() + Duration::from_secs_f64(s));
    let mut since = None;
    let mut lost_seen = None;
    loop {
        let req = Request::Conntrack(CtRequest::ConntrackEvents { since, port: port.clone() });
        let view: EventsView = match ctl.send(&req).map(from) {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return ctl.fail(2, &format!("cannot read vswitchd's reply: {e}")),
            Err(code) => return code,
        };
        for e in &view.events {
            if ctl.json {
                println!("{}", serde_json::to_string(e).unwrap_or_default());
            } else {
                println!("{}", line(e));
            }
        }
        if lost_seen.is_some_and(|l| view.lost > l) {
            eprintln!(
                "vswitchctl: {} events lost (the cores' rings or the log were full)",
                view.lost - lost_seen.unwrap_or(0)
            );
        }
        lost_seen = Some(view.lost);
        since = Some(view.next);
        if end.is_some_and(|t| std::time::Instant::now() >= t) {
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn line(e: &EventRow) -> String {
    let c = &e.conn;
    let mut s =
        format!("{:<6} zone {} {} {}:{} -> {}:{}", e.event, zone_name(c.zone), c.proto, c.src, c.sport, c.dst, c.dport);
    if let Some(p) = &e.port {
        s += &format!(" port {p}");
    }
    if let (Some(p), Some(b), Some(t)) = (e.packets, e.bytes, e.seconds) {
        s += &format!(" packets {}/{} bytes {b} lived {t:.1}s", p[0], p[1]);
    }
    if let Some(r) = &e.reason {
        s += &format!(" reason {r}");
        if r.starts_with("acl_deny") {
            s += &e.rule.map_or(" (the port's default)".to_string(), |id| format!(" (rule {id})"));
        }
    }
    s
}

/// A zone as users know it: a network's VNI, or `outside` for the uplink side of
/// masqueraded and NodePort connections (zone 0, which no network has).
fn zone_name(zone: u32) -> String {
    match zone {
        0 => "outside".into(),
        z => z.to_string(),
    }
}
