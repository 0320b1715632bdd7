//! One watched prefix: read whole at revision R, then watched from R+1. A broken
//! stream is watched again from where it stopped; a compacted history is read whole
//! again and the agent reconciles the difference. Nothing here touches the tables.
use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc::UnboundedSender, Notify};

/// What is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Sub {
    Nodes,
    Alive,
    Vni(u32),
    Shared,
}

/// A key's new value (`None`: deleted) and the revision that wrote it.
pub type Event = (String, Option<Vec<u8>>, i64);

#[derive(Debug)]
pub enum SubMsg {
    /// The prefix whole, as of `rev`: what is not in it is gone.
    Snapshot {
        sub: Sub,
        rev: i64,
        kvs: Vec<Event>,
    },
    Events {
        sub: Sub,
        events: Vec<Event>,
    },
    /// Everything up to `rev` has been delivered.
    Progress {
        sub: Sub,
        rev: i64,
    },
    Down {
        sub: Sub,
        error: String,
    },
    Compacted {
        sub: Sub,
    },
}

const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// How often a quiet watch asks how far it is (for `cluster status`'s lag).
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Waits `backoff`, or less if the agent hears from the store again (`kick`): a watch
/// retrying against a store that was away starts over as soon as it is back.
async fn pause(backoff: Duration, kick: &Notify) {
    tokio::select! {
        _ = tokio::time::sleep(backoff) => {}
        _ = kick.notified() => {}
    }
}

/// Runs until aborted.
pub async fn run(client: Client, prefix: String, sub: Sub, tx: UnboundedSender<SubMsg>, kick: Arc<Notify>) {
    let mut rev: Option<i64> = None;
    let mut backoff = RETRY_MIN;
    loop {
        if tx.is_closed() {
            return;
        }
        let mut c = client.clone();
        let Some(at) = rev else {
            let read =
                tokio::time::timeout(RETRY_MAX * 2, c.get(prefix.as_bytes(), Some(GetOptions::new().with_prefix())));
            match read.await.map_err(|_| "no answer".to_string()).and_then(|r| r.map_err(|e| e.to_string())) {
                Ok(r) => {
                    let at = r.header().map(|h| h.revision()).unwrap_or(0);
                    let kvs = r.kvs().iter().map(|kv| (key(kv.key()), Some(kv.value().to_vec()), kv.mod_revision()));
                    let _ = tx.send(SubMsg::Snapshot { sub, rev: at, kvs: kvs.collect() });
                    rev = Some(at);
                    backoff = RETRY_MIN;
                }
                Err(e) => {
                    let _ = tx.send(SubMsg::Down { sub, error: format!("reading {prefix}: {e}") });
                    pause(backoff, &kick).await;
                    backoff = (backoff * 2).min(RETRY_MAX);
                }
            }
            continue;
        };
        let opts = WatchOptions::new().with_prefix().with_start_revision(at + 1);
        let (mut watcher, mut stream) =
            match tokio::time::timeout(RETRY_MAX * 2, c.watch(prefix.as_bytes(), Some(opts))).await {
                Ok(Ok(w)) => {
                    tracing::debug!("cluster: watching {prefix} from revision {}", at + 1);
                    w
                }
                Err(_) => {
                    let _ = tx.send(SubMsg::Down { sub, error: format!("watching {prefix}: no answer") });
                    continue;
                }
                Ok(Err(e)) => {
                    let e = e.to_string();
                    let _ = tx.send(SubMsg::Down { sub, error: format!("watching {prefix}: {e}") });
                    pause(backoff, &kick).await;
                    backoff = (backoff * 2).min(RETRY_MAX);
                    continue;
                }
            };
        let mut progress = tokio::time::interval(PROGRESS_EVERY);
        loop {
            tokio::select! {
                m = stream.message() => match m {
                    Ok(Some(resp)) => {
                        if resp.compact_revision() != 0 {
                            tracing::debug!("cluster: {prefix} compacted at {} (watched from {})", resp.compact_revision(), at + 1);
                            // The history from `at` is gone: read the prefix whole again.
                            let _ = tx.send(SubMsg::Compacted { sub });
                            rev = None;
                            break;
                        }
                        if resp.canceled() {
                            let why = resp.cancel_reason().to_string();
                            let _ = tx.send(SubMsg::Down { sub, error: format!("watch of {prefix} cancelled: {why}") });
                            break;
                        }
                        backoff = RETRY_MIN;
                        let events: Vec<Event> = resp
                            .events()
                            .iter()
                            .filter_map(|e| {
                                let kv = e.kv()?;
                                let value = (e.event_type() == EventType::Put).then(|| kv.value().to_vec());
                                Some((key(kv.key()), value, kv.mod_revision()))
                            })
                            .collect();
                        if let Some(last) = events.iter().map(|e| e.2).max() {
                            tracing::debug!("cluster: {} events on {prefix} up to revision {last}", events.len());
                            rev = Some(last.max(at));
                            let _ = tx.send(SubMsg::Events { sub, events });
                        } else if !resp.created() {
                            // A progress answer: everything up to its header's revision is
                            // here. Only for the lag shown: etcd before 3.4.24 may answer
                            // ahead of events still on their way, so a watch resumes from
                            // the last event, never from here.
                            if let Some(h) = resp.header() {
                                let _ = tx.send(SubMsg::Progress { sub, rev: h.revision() });
                            }
                        }
                    }
                    Ok(None) => {
                        let _ = tx.send(SubMsg::Down { sub, error: format!("the watch of {prefix} ended") });
                        break;
                    }
                    Err(e) => {
                        let _ = tx.send(SubMsg::Down { sub, error: format!("watching {prefix}: {e}") });
                        break;
                    }
                },
                _ = progress.tick() => {
                    if watcher.request_progress().await.is_err() {
                        break;
                    }
                }
            }
        }
        pause(backoff, &kick).await;
        backoff = (backoff * 2).min(RETRY_MAX);
    }
}

fn key(k: &[u8]) -> String {
    String::from_utf8_lossy(k).into_owned()
}
