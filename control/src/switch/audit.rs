//! The audit trail: every request that may change something is logged once, when
//! its answer is known (after the journal write), with who sent it, what it was and
//! what came of it. Target `audit`, so `--log-level info,audit=warn` quiets it and a
//! log shipper can pick it out of `--log-format json`.
use crate::api::Response;
use std::sync::Arc;

/// Who is at the other end of an API connection, as the kernel says (SO_PEERCRED),
/// with the program's name read at connect (it may be gone by the time its change is
/// logged). The user's name is looked up only when a line is written: most
/// connections change nothing.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    pub uid: Option<u32>,
    pub pid: Option<i32>,
    pub comm: Option<Arc<str>>,
}

impl Peer {
    pub fn from_cred(uid: u32, pid: Option<i32>) -> Peer {
        let comm =
            pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).ok()).map(|c| Arc::from(c.trim_end()));
        Peer { uid: Some(uid), pid, comm }
    }

    fn user(&self) -> Option<String> {
        let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
        user_name(&passwd, self.uid?).map(str::to_string)
    }
}

/// The name of `uid` in a passwd file. Read directly rather than through NSS, which
/// may block on a network directory while the control plane waits.
fn user_name(passwd: &str, uid: u32) -> Option<&str> {
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)?.parse::<u32>().ok()? == uid).then_some(name)
    })
}

/// `alice (uid 1000) vswitchctl[4242]`.
fn describe(peer: &Peer, user: Option<&str>) -> String {
    let who = match (peer.uid, user) {
        (Some(u), Some(n)) => format!("{n} (uid {u})"),
        (Some(u), None) => format!("uid {u}"),
        _ => return "an unknown peer".into(),
    };
    match (&peer.comm, peer.pid) {
        (Some(c), Some(p)) => format!("{who} {c}[{p}]"),
        (None, Some(p)) => format!("{who} pid {p}"),
        _ => who,
    }
}

/// Verbs that only read, by the names they all follow; everything else may change
/// something and is audited.
fn is_read(cmd: &str) -> bool {
    const SUFFIXES: [&str; 8] = ["_list", "_show", "_stats", "_status", "_events", "_dump", "_check", "_timeouts"];
    const WHOLE: [&str; 6] = ["show", "stats", "dump", "cores", "trace", "capture"];
    WHOLE.contains(&cmd) || SUFFIXES.iter().any(|s| cmd.ends_with(s))
}

/// The verb a request was sent as, read off the request line the server parsed: its
/// `cmd`, and whether it carries settings (`conntrack_timeouts` reads unless it sets).
#[derive(Debug, Clone, Default)]
pub struct Verb {
    pub cmd: String,
    pub sets: bool,
}

impl Verb {
    pub fn of(request: &serde_json::Value) -> Verb {
        Verb {
            cmd: request.get("cmd").and_then(|c| c.as_str()).unwrap_or_default().to_string(),
            sets: request.get("set").and_then(|s| s.as_object()).is_some_and(|s| !s.is_empty()),
        }
    }
}

/// One request to audit: who, and the verb as it is on the wire.
pub struct Audit {
    peer: Peer,
    cmd: String,
    /// The desired-state entries it changed (`put ports ["vm1"]`), once known.
    pub changes: String,
}

impl Audit {
    /// Some for a request that may change something.
    pub fn of(verb: Verb, peer: &Peer) -> Option<Audit> {
        (!is_read(&verb.cmd) || verb.sets).then(|| Audit { peer: peer.clone(), cmd: verb.cmd, changes: String::new() })
    }

    /// The verb, as it was sent.
    pub fn cmd(&self) -> &str {
        &self.cmd
    }

    /// The one line for this request, with its outcome.
    pub fn log(&self, outcome: &Response) {
        let Audit { peer, cmd, changes } = self;
        let (uid, pid) = (peer.uid.unwrap_or(u32::MAX), peer.pid.unwrap_or(-1));
        let name = peer.user();
        let who = describe(peer, name.as_deref());
        let (user, comm) = (name.as_deref().unwrap_or(""), peer.comm.as_deref().unwrap_or(""));
        match &outcome.error {
            None => {
                tracing::info!(target: "audit", uid, user, pid, comm, cmd, changes, result = "ok", "{who}: {cmd} done{}{changes}", if changes.is_empty() { "" } else { ": " })
            }
            Some(e) => {
                tracing::warn!(target: "audit", uid, user, pid, comm, cmd, result = "refused", error = e.as_str(), "{who}: {cmd} refused: {e}")
            }
        }
    }

    /// Logs the answer that comes back on the returned sender, then passes it on to
    /// `reply`: for writes answered elsewhere (the cluster agent).
    pub fn follow(self, reply: tokio::sync::oneshot::Sender<Response>) -> tokio::sync::oneshot::Sender<Response> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let outcome = rx.await.unwrap_or_else(|_| Response::err("vswitchd dropped the request unanswered"));
            self.log(&outcome);
            let _ = reply.send(outcome);
        });
        tx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_known_by_their_names() {
        for read in ["port_list", "port_stats", "show", "dump", "cores", "conntrack_events", "cni_check", "vtep_show"] {
            assert!(is_read(read), "{read}");
        }
        for change in ["port_add", "acl_load", "conntrack_flush", "apply", "cni_gc", "ipam_release", "vtep_set"] {
            assert!(!is_read(change), "{change}");
        }
    }

    #[test]
    fn user_names_come_from_the_passwd_file() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        assert_eq!(user_name(passwd, 1000), Some("alice"));
        assert_eq!(user_name(passwd, 0), Some("root"));
        assert_eq!(user_name(passwd, 7), None);
    }
}
