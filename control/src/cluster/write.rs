//! Operators' writes to the shared desired state. Each reads the shared entries, works
//! out the new ones (a request run by the features' own code, or a whole file), and
//! writes only the entries that differ, in one transaction that holds only if none of
//! them changed since it read them (or since the revision the operator read). Two
//! operators changing the same entry: one wins, the other is told which entry and
//! that nothing of theirs was written.
use super::{
    api::{SharedState, SharedWrite},
    keys::Keys,
    shared::{self, Entries},
};
use crate::api::{Request, Response};
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use std::collections::{BTreeMap, BTreeSet};
use tokio::sync::oneshot;

/// A write (or a read) of the shared state, from `vswitchctl --cluster`.
#[derive(Debug)]
pub enum Write {
    Change { request: Box<Request>, if_revision: Option<i64> },
    Apply { state: SharedState, dry_run: bool },
    Dump,
}

pub struct WriteJob {
    pub write: Write,
    pub reply: oneshot::Sender<Response>,
}

/// The shared entries at a revision: entry -> (value, the revision that wrote it).
type Read = BTreeMap<String, (String, i64)>;

/// More than this many entries change in one write: refused (etcd takes 128
/// operations per transaction by default, and an all-or-nothing write must fit one).
const MAX_WRITE: usize = 120;

pub async fn run(client: Client, keys: Keys, job: WriteJob) {
    let WriteJob { write, reply } = job;
    let mut c = client;
    let nothing = |e: String| if e.contains("nothing was written") { e } else { format!("{e}; nothing was written") };
    let r = match write {
        Write::Dump => dump(&mut c, &keys).await.map(|s| serde_json::to_value(s).unwrap_or_default()),
        Write::Change { request, if_revision } => {
            change(&mut c, &keys, *request, if_revision).await.map(value).map_err(nothing)
        }
        Write::Apply { state, dry_run } => apply(&mut c, &keys, state, dry_run).await.map(value).map_err(nothing),
    };
    let _ = reply.send(match r {
        Ok(v) => Response::ok(v),
        Err(e) => Response::err(e),
    });
}

fn value(w: SharedWrite) -> serde_json::Value {
    serde_json::to_value(w).unwrap_or_default()
}

/// A store call with the agent's timeout, its error naming what was asked.
async fn timed<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, String> {
    super::call::timed(f).await.map_err(|e| format!("{what}: {e}"))
}

/// The shared entries now (`at` none) or as of revision `at`, and that revision.
async fn read(c: &mut Client, keys: &Keys, at: Option<i64>) -> Result<(i64, Read), String> {
    let prefix = keys.shared();
    let mut opts = GetOptions::new().with_prefix();
    if let Some(at) = at {
        opts = opts.with_revision(at);
    }
    let r = super::call::read(c, &prefix, Some(opts)).await.map_err(|e| match at {
        Some(at) if e.contains("compacted") => format!(
            "revision {at} is no longer in the store's history (compacted): read the shared state again \
             (vswitchctl dump --cluster), make the change there, and apply it"
        ),
        _ => format!("reading {prefix}: {e}"),
    })?;
    let rev = r.header().map(|h| h.revision()).unwrap_or(0);
    let mut out = Read::new();
    for kv in r.kvs() {
        let k = String::from_utf8_lossy(kv.key()).into_owned();
        if let Some(entry) = k.strip_prefix(&prefix) {
            out.insert(entry.to_string(), (String::from_utf8_lossy(kv.value()).into_owned(), kv.mod_revision()));
        }
    }
    Ok((at.unwrap_or(rev), out))
}

fn entries(r: &Read) -> Entries {
    r.iter().map(|(k, (v, _))| (k.clone(), v.clone())).collect()
}

/// The shared state the entries make; an entry this version cannot read stops a write
/// (it would be dropped).
fn state_of(r: &Read) -> Result<SharedState, String> {
    let (s, bad) = SharedState::from_entries(&entries(r));
    if !bad.is_empty() {
        return Err(format!(
            "the store holds shared entries this vswitchctl cannot read ({}): written by a newer version? \
             Change them from there",
            bad.join(", ")
        ));
    }
    Ok(s)
}

async fn dump(c: &mut Client, keys: &Keys) -> Result<SharedState, String> {
    let (rev, r) = read(c, keys, None).await?;
    let mut s = state_of(&r)?;
    s.revision = Some(rev);
    Ok(s)
}

/// One entry to write: its new value (none: delete), and the revision it must still
/// have been written at (0: absent).
struct Put {
    entry: String,
    value: Option<String>,
    expect: i64,
}

fn describe(p: &Put) -> String {
    format!("{} {}", if p.value.is_some() { "put" } else { "del" }, p.entry)
}

/// What takes `now` to `want`, each compared against the revision `now` has it at.
fn puts(now: &Read, want: &Entries) -> Vec<Put> {
    let mut out = Vec::new();
    for (k, v) in want {
        if now.get(k).map(|e| &e.0) != Some(v) {
            out.push(Put { entry: k.clone(), value: Some(v.clone()), expect: now.get(k).map_or(0, |e| e.1) });
        }
    }
    for (k, (_, rev)) in now.iter().filter(|(k, _)| !want.contains_key(*k)) {
        out.push(Put { entry: k.clone(), value: None, expect: *rev });
    }
    out
}

async fn change(
    c: &mut Client,
    keys: &Keys,
    request: Request,
    if_revision: Option<i64>,
) -> Result<SharedWrite, String> {
    let (rev, now) = read(c, keys, None).await?;
    let (new, reply) = shared::run(&state_of(&now)?, request)?;
    let todo = puts(&now, &new.entries()?);
    if let Some(at) = if_revision {
        // Written after the operator's revision: what they decided on is not what is there.
        if let Some(p) = todo.iter().find(|p| p.expect > at) {
            return Err(conflict(&p.entry, p.expect, at));
        }
    }
    commit(c, keys, todo, rev, reply, false, if_revision).await
}

async fn apply(c: &mut Client, keys: &Keys, state: SharedState, dry_run: bool) -> Result<SharedWrite, String> {
    shared::check(&state)?;
    let (rev, now) = read(c, keys, None).await?;
    let mut state = state;
    // New rules are numbered after every id in use, so none takes another's.
    let taken = now.keys().filter_map(|k| k.strip_prefix("acl/")?.parse::<u32>().ok());
    shared::number(&mut state.acl, taken);
    let mine = state.entries()?;
    let todo = match state.revision {
        // Only what the file changes since the operator read it; a change someone else
        // made meanwhile to the same entry is a conflict.
        Some(at) => {
            let (_, base) = read(c, keys, Some(at)).await?;
            let base = entries(&base);
            let touched: BTreeSet<&String> =
                mine.keys().chain(base.keys()).filter(|k| mine.get(*k) != base.get(*k)).collect();
            let mut todo = Vec::new();
            for k in touched {
                let (was, is) = (base.get(k), now.get(k));
                if is.map(|e| &e.0) == mine.get(k) {
                    continue;
                }
                if is.map(|e| &e.0) != was {
                    return Err(conflict(k, is.map_or(rev, |e| e.1), at));
                }
                todo.push(Put { entry: k.clone(), value: mine.get(k).cloned(), expect: is.map_or(0, |e| e.1) });
            }
            todo
        }
        None => puts(&now, &mine),
    };
    commit(c, keys, todo, rev, serde_json::Value::Null, dry_run, state.revision).await
}

fn conflict(entry: &str, written: i64, since: i64) -> String {
    format!(
        "conflict: shared entry {entry} was changed at revision {written}, after revision {since} that this change \
         was based on; nothing was written. Read it again (vswitchctl dump --cluster) and redo the change"
    )
}

async fn commit(
    c: &mut Client,
    keys: &Keys,
    todo: Vec<Put>,
    rev: i64,
    reply: serde_json::Value,
    dry_run: bool,
    based_on: Option<i64>,
) -> Result<SharedWrite, String> {
    let changes: Vec<String> = todo.iter().map(describe).collect();
    if todo.is_empty() || dry_run {
        return Ok(SharedWrite { revision: rev, changes, written: false, reply });
    }
    if todo.len() > MAX_WRITE {
        return Err(format!(
            "{} shared entries would change at once; one write takes at most {MAX_WRITE}: apply it in parts",
            todo.len()
        ));
    }
    let key = |p: &Put| keys.shared_entry(&p.entry);
    let compares: Vec<Compare> =
        todo.iter().map(|p| Compare::mod_revision(key(p), CompareOp::Equal, p.expect)).collect();
    let ops: Vec<TxnOp> = todo
        .iter()
        .map(|p| match &p.value {
            Some(v) => TxnOp::put(key(p), v.as_str(), None),
            None => TxnOp::delete(key(p), None),
        })
        .collect();
    let done =
        timed("writing the shared state", c.txn(Txn::new().when(compares).and_then(ops))).await.map_err(|e| {
            format!(
                "{e}. The store did not confirm the write: it may or may not have been written \
             (vswitchctl dump --cluster shows what is there; nothing was written if it is not)"
            )
        })?;
    if !done.succeeded() {
        // Someone wrote one of these entries between the read and the write: name it.
        let (now_rev, now) = read(c, keys, None).await?;
        let moved = todo.iter().find(|p| now.get(&p.entry).map_or(0, |e| e.1) != p.expect);
        let (entry, at) = match moved {
            Some(p) => (p.entry.clone(), now.get(&p.entry).map_or(now_rev, |e| e.1)),
            None => (todo[0].entry.clone(), now_rev),
        };
        return Err(conflict(&entry, at, based_on.unwrap_or(rev)));
    }
    let revision = done.header().map(|h| h.revision()).unwrap_or(rev);
    tracing::info!(target: "audit", "cluster: shared state at revision {revision}: {}", changes.join(", "));
    Ok(SharedWrite { revision, changes, written: true, reply })
}
