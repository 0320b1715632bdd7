//! The API socket: many clients at once, each request applied by the one task that
//! owns the `Switch`, so a slow or abusive client only ever stalls itself.
use crate::{
    api::{Envelope, Request, Response, MAX_REQUEST_BYTES, PROTOCOL_VERSION},
    switch::{Job, Peer, Switch, Verb},
};
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore},
};

/// Requests waiting for the switch task; a batch (one journal write, one publish) takes
/// all that are waiting, so this is also the largest batch.
const QUEUE: usize = 256;
/// A request sent in parts (one too long for a line, e.g. 10,000 ACL rules) may have
/// this many bytes in all.
pub const MAX_BULK_BYTES: usize = 64 << 20;
/// Parts of long requests all clients together may hold at once: a few clients
/// uploading at the same time cannot make vswitchd run out of memory.
pub const MAX_BULK_TOTAL: usize = 256 << 20;
/// API connections at once. Beyond it a new client gets an error line and is closed,
/// so clients that connect and never leave cannot take every file descriptor
/// (vswitchd needs them for ports and its journal).
pub const MAX_CLIENTS: usize = 4096;

/// Bytes of request parts a client holds against `MAX_BULK_TOTAL`, given back when
/// it finishes the request or goes away.
struct BulkBytes {
    total: Arc<AtomicUsize>,
    held: usize,
}

impl BulkBytes {
    /// Takes `n` more bytes from the budget, if the budget has them.
    fn take(&mut self, n: usize) -> bool {
        let mut cur = self.total.load(Ordering::Relaxed);
        loop {
            if cur + n > MAX_BULK_TOTAL {
                return false;
            }
            match self.total.compare_exchange_weak(cur, cur + n, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    self.held += n;
                    return true;
                }
                Err(now) => cur = now,
            }
        }
    }

    fn release(&mut self) {
        self.total.fetch_sub(std::mem::take(&mut self.held), Ordering::Relaxed);
    }
}

impl Drop for BulkBytes {
    fn drop(&mut self) {
        self.release();
    }
}

/// One line of a request sent in parts: its text, and whether it is the last.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Part {
    version: u32,
    part: String,
    #[serde(default)]
    last: bool,
}

/// Refuses to start beside a live daemon; removes a stale socket file.
pub fn check_socket_free(path: &Path) -> Result<(), String> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!(
                "another vswitchd is already serving {}; stop it first, or give this one another --socket",
                path.display()
            ));
        }
        std::fs::remove_file(path).map_err(|e| format!("cannot remove the stale socket {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The gid of a group given by name (from /etc/group) or number.
pub fn group_id(group: &str) -> Result<u32, String> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let groups =
        std::fs::read_to_string("/etc/group").map_err(|e| format!("--socket-group: cannot read /etc/group: {e}"))?;
    groups
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            Some((f.next()?, f.nth(1)?))
        })
        .find(|(name, _)| *name == group)
        .and_then(|(_, gid)| gid.parse().ok())
        .ok_or_else(|| format!("--socket-group: no group named {group:?} (see /etc/group, or give a numeric gid)"))
}

/// Binds the socket: mode 0600 (only root talks to the switch), or 0660 with `group`
/// as its group so that group's members can use vswitchctl too.
pub fn bind(path: &Path, group: Option<u32>) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    check_socket_free(path)?;
    let listener = UnixListener::bind(path).map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    let mode = if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid))
            .map_err(|e| format!("cannot give {} to group {gid}: {e}", path.display()))?;
        0o660
    } else {
        0o600
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
    Ok(listener)
}

/// The cluster agent's next batch of changes; never, without a cluster.
async fn next_update(c: &mut Option<crate::cluster::Updates>) -> Option<Vec<crate::cluster::Op>> {
    match c {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Serves until `shutdown` resolves, then hands the switch back for teardown.
pub async fn serve(
    mut switch: Switch,
    listener: UnixListener,
    socket: PathBuf,
    metrics: Option<tokio::net::TcpListener>,
    mut cluster: Option<crate::cluster::Updates>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Switch {
    let (tx, mut rx) = mpsc::channel::<Job>(QUEUE);
    let (page_tx, mut pages) = mpsc::channel::<crate::stats::metrics::PageRequest>(16);
    let scraper = metrics.map(|l| {
        if let Ok(addr) = l.local_addr() {
            tracing::info!("serving metrics on http://{addr}/metrics");
        }
        tokio::spawn(crate::stats::metrics::serve(l, page_tx.clone()))
    });
    let acceptor = tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
        let bulk = Arc::new(AtomicUsize::new(0));
        loop {
            match listener.accept().await {
                Ok((stream, _)) => match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        tokio::spawn(client(stream, tx.clone(), slot, bulk.clone()));
                    }
                    Err(_) => {
                        tokio::spawn(refuse(stream));
                    }
                },
                Err(e) => {
                    tracing::warn!("accept on the API socket failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    tracing::info!("serving the API on {}", socket.display());
    crate::systemd::notify(&format!("READY=1\nSTATUS=serving the API on {}", socket.display()));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // Learn events and ARP answers come back to the cores within about this long.
    let mut poll = tokio::time::interval(Duration::from_millis(5));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            Some(page) = pages.recv() => {
                let _ = page.send(switch.metrics());
            }
            Some(job) = rx.recv() => {
                // Every request waiting now joins this batch: they share one sync.
                let mut batch = vec![job];
                while batch.len() < QUEUE {
                    match rx.try_recv() {
                        Ok(j) => batch.push(j),
                        Err(_) => break,
                    }
                }
                switch.run_batch(batch).await;
            }
            Some(first) = next_update(&mut cluster) => {
                let mut batches = vec![first];
                while let Some(Ok(more)) = cluster.as_mut().map(|c| c.try_recv()) {
                    batches.push(more);
                }
                switch.cluster_apply(batches).await;
            }
            _ = tick.tick() => switch.tick_second().await,
            _ = poll.tick() => switch.poll_cores().await,
            _ = &mut shutdown => break,
        }
    }
    crate::systemd::notify("STOPPING=1");
    acceptor.abort();
    if let Some(s) = scraper {
        s.abort();
    }
    let _ = std::fs::remove_file(&socket);
    switch
}

/// Tells a client over `MAX_CLIENTS` why it is closed.
async fn refuse(stream: UnixStream) {
    let (_, mut w) = stream.into_split();
    let resp = Response::err(format!(
        "vswitchd has {MAX_CLIENTS} API clients connected, the most it serves at once; retry once some have closed"
    ));
    let _ = tokio::time::timeout(Duration::from_secs(1), write(&mut w, &resp)).await;
}

async fn client(stream: UnixStream, jobs: mpsc::Sender<Job>, _slot: OwnedSemaphorePermit, budget: Arc<AtomicUsize>) {
    let peer = stream.peer_cred().map_or(Peer::default(), |c| Peer::from_cred(c.uid(), c.pid()));
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut line = Vec::new();
    // The parts of a long request so far, and their share of the bulk budget.
    let mut bulk: Vec<u8> = Vec::new();
    let mut held = BulkBytes { total: budget, held: 0 };
    loop {
        line.clear();
        match (&mut r).take(MAX_REQUEST_BYTES as u64 + 1).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.len() > MAX_REQUEST_BYTES {
            let resp = Response::err(format!("request: longer than {MAX_REQUEST_BYTES} bytes; closing the connection"));
            let _ = write(&mut w, &resp).await;
            return;
        }
        if !line.ends_with(b"\n") {
            return; // the client went away mid-request
        }
        let request = match part(&line) {
            Some(Ok(p)) => {
                if bulk.len() + p.part.len() > MAX_BULK_BYTES {
                    let resp = Response::err(format!(
                        "request: longer than {MAX_BULK_BYTES} bytes in parts; closing the connection"
                    ));
                    let _ = write(&mut w, &resp).await;
                    return;
                }
                if !held.take(p.part.len()) {
                    let resp = Response::err(format!(
                        "request: other clients are sending {} MiB of long requests, the most vswitchd holds at once; retry shortly",
                        MAX_BULK_TOTAL >> 20
                    ));
                    let _ = write(&mut w, &resp).await;
                    return;
                }
                bulk.extend_from_slice(p.part.as_bytes());
                if !p.last {
                    continue;
                }
                let request = parse_sent(&std::mem::take(&mut bulk));
                held.release();
                request
            }
            Some(Err(e)) => Err(e),
            None => parse_sent(&line),
        };
        let resp = match request {
            Ok((req, verb)) => {
                let (tx, rx) = oneshot::channel();
                if jobs.send(Job { request: req, verb, peer: peer.clone(), reply: tx }).await.is_err() {
                    return;
                }
                rx.await.unwrap_or_else(|_| Response::err("vswitchd is shutting down"))
            }
            Err(e) => Response::err(e),
        };
        if write(&mut w, &resp).await.is_err() {
            return;
        }
    }
}

/// A part line of a long request, if `line` is one.
fn part(line: &[u8]) -> Option<Result<Part, String>> {
    if !line.windows(7).any(|w| w == b"\"part\":") {
        return None;
    }
    let p: Part = serde_json::from_slice(line).ok()?;
    if p.version != PROTOCOL_VERSION {
        return Some(Err(format!(
            "version: this vswitchd speaks protocol {PROTOCOL_VERSION}, the client sent {}",
            p.version
        )));
    }
    Some(Ok(p))
}

/// Parses one request line; the error names what was wrong.
pub fn parse(line: &[u8]) -> Result<Request, String> {
    parse_sent(line).map(|(r, _)| r)
}

/// A request line, and the verb it was sent as (for the audit trail, which would
/// otherwise write the whole request out again to find its name).
pub fn parse_sent(line: &[u8]) -> Result<(Request, Verb), String> {
    let v: serde_json::Value = serde_json::from_slice(line).map_err(|e| format!("request: not valid JSON: {e}"))?;
    match v.get("version").and_then(|x| x.as_u64()) {
        Some(ver) if ver == PROTOCOL_VERSION as u64 => {}
        Some(ver) => {
            return Err(format!("version: this vswitchd speaks protocol {PROTOCOL_VERSION}, the client sent {ver}"))
        }
        None => {
            return Err(format!("version: missing or not a number; this vswitchd speaks protocol {PROTOCOL_VERSION}"))
        }
    }
    let verb = Verb::of(&v["request"]);
    let env: Envelope = serde_json::from_value(v).map_err(|e| format!("request: {e}"))?;
    Ok((env.request, verb))
}

async fn write(w: &mut tokio::net::unix::OwnedWriteHalf, resp: &Response) -> std::io::Result<()> {
    let mut out = serde_json::to_vec(resp).unwrap_or_else(|_| b"{\"ok\":false,\"error\":\"internal\"}".to_vec());
    out.push(b'\n');
    w.write_all(&out).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names_what_is_wrong() {
        assert!(parse(b"nope").unwrap_err().starts_with("request: not valid JSON"));
        assert!(parse(br#"{"request":{"cmd":"show"}}"#).unwrap_err().starts_with("version: missing"));
        assert!(parse(br#"{"version":7,"request":{"cmd":"show"}}"#).unwrap_err().contains("protocol 1"));
        assert!(parse(br#"{"version":1,"request":{"cmd":"port_add","name":"a"}}"#).unwrap_err().contains("devargs"));
        assert_eq!(
            parse(br#"{"version":1,"request":{"cmd":"show"}}"#).unwrap(),
            Request::Stats(crate::api::StatsRequest::Show)
        );
    }
}
