//! The audit trail: every request that may change something is logged once, when
//! its answer is known (after the journal write), with who sent it, what it was and
//! what came of it. Target `audit`, so `--log-level info,audit=warn` quiets it and a
//! log shipper can pick it out of `--log-format json`.
use crate::api::{Request, Response};
use std::sync::Arc;

/// Who is at the other end of an API connection, as the kernel says (SO_PEERCRED),
/// with the user and program names looked up once at connect.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    pub uid: Option<u32>,
    pub pid: Option<i32>,
    pub user: Option<Arc<str>>,
    pub comm: Option<Arc<str>>,
}

impl Peer {
    pub fn from_cred(uid: u32, pid: Option<i32>) -> Peer {
        let comm =
            pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).ok()).map(|c| Arc::from(c.trim_end()));
        let user = std::fs::read_to_string("/etc/passwd").ok().and_then(|p| user_name(&p, uid).map(Arc::from));
        Peer { uid: Some(uid), pid, user, comm }
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

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.uid, &self.user) {
            (Some(u), Some(n)) => write!(f, "{n} (uid {u})")?,
            (Some(u), None) => write!(f, "uid {u}")?,
            _ => return write!(f, "an unknown peer"),
        }
        match (&self.comm, self.pid) {
            (Some(c), Some(p)) => write!(f, " {c}[{p}]"),
            (None, Some(p)) => write!(f, " pid {p}"),
            _ => Ok(()),
        }
    }
}

/// Verbs that only read, by the names they all follow; everything else may change
/// something and is audited.
fn is_read(cmd: &str) -> bool {
    const SUFFIXES: [&str; 8] = ["_list", "_show", "_stats", "_status", "_events", "_dump", "_check", "_timeouts"];
    const WHOLE: [&str; 6] = ["show", "stats", "dump", "cores", "trace", "capture"];
    WHOLE.contains(&cmd) || SUFFIXES.iter().any(|s| cmd.ends_with(s))
}

/// One request to audit: who, and the verb as it is on the wire.
pub struct Audit {
    peer: Peer,
    cmd: String,
    /// The desired-state entries it changed (`put ports ["vm1"]`), once known.
    pub changes: String,
}

impl Audit {
    /// Some for a request that may change something. `conntrack_timeouts` reads
    /// unless it sets.
    pub fn of(req: &Request, peer: &Peer) -> Option<Audit> {
        let v = serde_json::to_value(req).ok()?;
        let cmd = v.get("cmd")?.as_str()?.to_string();
        let sets = v.get("set").and_then(|s| s.as_object()).is_some_and(|s| !s.is_empty());
        (!is_read(&cmd) || sets).then(|| Audit { peer: peer.clone(), cmd, changes: String::new() })
    }

    /// The one line for this request, with its outcome.
    pub fn log(&self, outcome: &Response) {
        let Audit { peer, cmd, changes } = self;
        let (uid, pid) = (peer.uid.unwrap_or(u32::MAX), peer.pid.unwrap_or(-1));
        let (user, comm) = (peer.user.as_deref().unwrap_or(""), peer.comm.as_deref().unwrap_or(""));
        match &outcome.error {
            None => {
                tracing::info!(target: "audit", uid, user, pid, comm, cmd, changes, result = "ok", "{peer}: {cmd} done{}{changes}", if changes.is_empty() { "" } else { ": " })
            }
            Some(e) => {
                tracing::warn!(target: "audit", uid, user, pid, comm, cmd, result = "refused", error = e.as_str(), "{peer}: {cmd} refused: {e}")
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
