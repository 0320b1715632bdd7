//! The durable desired state: a snapshot (the desired-state file, as `dump` prints it) and
//! a journal beside it (`<file>.journal`) of the changes made since, OVSDB's shape.
//!
//! A change is a record appended to the journal and synced (fdatasync) before its reply;
//! the changes that arrive while one sync runs share the next (group commit: the server
//! hands the switch every request waiting, and the switch commits once). When the journal
//! outgrows the snapshot, the state is written as a new snapshot and the journal starts
//! over (compaction). Every step leaves the files in a state `open` reads back: a crash
//! loses nothing acknowledged.
//!
//! Compaction, step by step: the next journal, naming the new snapshot by its length and
//! checksum, is written as `<file>.journal.next`; the snapshot replaces the old one
//! (temp file, fsync, rename); `.next` replaces the journal. At start, the journal whose
//! header names the snapshot there is the one read.
pub mod change;
pub mod journal;

use crate::state::{DesiredState, STATE_FORMAT};
use change::{Change, Image};
use journal::{Base, Record};
use std::{
    fs,
    io::Write,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::Arc,
};

/// Below this size the journal is never compacted, however small the snapshot.
pub const DEFAULT_COMPACT_MIN: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the state file {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("the state file {path} is corrupt or truncated ({err}); vswitchd will not overwrite it: repair it, or move it away to start empty")]
    Corrupt { path: PathBuf, err: String },
    #[error("the state file {path} has format {found}, this vswitchd reads format {STATE_FORMAT}")]
    Format { path: PathBuf, found: u32 },
    #[error("cannot write the state file {path}: {err}")]
    Write { path: PathBuf, err: std::io::Error },
    #[error("the journal {path} is damaged at offset {offset}: {what}. vswitchd will not overwrite it. The changes before offset {offset} are intact: to keep them and lose the rest, `truncate -s {offset} {path}`; or move the journal away to start from the snapshot {snapshot}")]
    Damaged { path: PathBuf, offset: u64, what: String, snapshot: PathBuf },
    #[error("the journal {path} does not belong to the state file {snapshot} (it extends a snapshot of {expected} bytes; this one has {found}); vswitchd will not guess: put back the state file it was written with, or move the journal away to start from {snapshot}")]
    Mismatch { path: PathBuf, snapshot: PathBuf, expected: u64, found: u64 },
    #[error("cannot write the journal {path}: {err}; the change was not made")]
    Journal { path: PathBuf, err: std::io::Error },
    #[error("the journal {path} could not be repaired after a failed write ({why}); no change can be made durable until vswitchd restarts")]
    Broken { path: PathBuf, why: String },
}

/// One commit's bytes on their way to the journal (written off the control task).
pub struct Append {
    file: Arc<fs::File>,
    at: u64,
    bytes: Vec<u8>,
}

impl Append {
    /// Writes the record where the journal ends and syncs it. A sync slower than a
    /// second is logged: every change waits for it, and a stalled disk looks like a
    /// stalled switch from outside.
    pub fn write(&self) -> std::io::Result<()> {
        let started = std::time::Instant::now();
        self.file.write_all_at(&self.bytes, self.at)?;
        self.file.sync_data()?;
        let took = started.elapsed();
        if took > std::time::Duration::from_secs(1) {
            tracing::warn!(
                "the journal took {took:.1?} to reach the disk ({} bytes): changes waited for it; the disk \
                 under the state file is slow or busy",
                self.bytes.len()
            );
        }
        Ok(())
    }
}

pub struct Store {
    path: PathBuf,
    journal_path: PathBuf,
    next_path: PathBuf,
    journal: Arc<fs::File>,
    journal_len: u64,
    snapshot_len: u64,
    /// Sequence number of the last record written.
    seq: u64,
    staged: Vec<Change>,
    compact_min: u64,
    broken: Option<String>,
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    fs::File::open(dir_of(path))?.sync_all()
}

fn read_opt(path: &Path) -> Result<Option<Vec<u8>>, StateError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(StateError::Read { path: path.to_path_buf(), err }),
    }
}

/// Writes a whole file durably: created (or truncated), written, synced.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Replaces `path` with `bytes` so that a crash leaves either the old file or the new
/// one, never a mix (temporary file, sync, rename, sync of the directory).
pub fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    write_synced(&tmp, bytes)?;
    fs::rename(&tmp, path)?;
    sync_dir(path)
}

/// The snapshot file's contents for `state`: what `dump` prints.
fn snapshot_bytes(state: &DesiredState) -> Result<Vec<u8>, StateError> {
    let mut bytes = serde_json::to_vec_pretty(state)
        .map_err(|e| StateError::Corrupt { path: PathBuf::from("(new snapshot)"), err: e.to_string() })?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn parse_snapshot(path: &Path, bytes: &[u8]) -> Result<DesiredState, StateError> {
    let state: DesiredState = serde_json::from_slice(bytes)
        .map_err(|e| StateError::Corrupt { path: path.to_path_buf(), err: e.to_string() })?;
    if state.format != STATE_FORMAT {
        return Err(StateError::Format { path: path.to_path_buf(), found: state.format });
    }
    Ok(state)
}

/// What `open` found on disk.
struct Found {
    state: DesiredState,
    snapshot_len: u64,
    base: Base,
    /// The journal to append to: its last sequence number and where its records end.
    journal: Option<(u64, u64)>,
}

impl Store {
    /// Reads the snapshot and the journal beside it, drops a record a crash cut short,
    /// and opens the journal for appending; a state file without a journal (an earlier
    /// vswitchd's) gets one. Refuses, naming file and offset, anything damaged.
    pub fn open(path: impl Into<PathBuf>, compact_min: u64) -> Result<(Store, DesiredState), StateError> {
        let path = path.into();
        let journal_path = with_suffix(&path, ".journal");
        let next_path = with_suffix(&path, ".journal.next");
        let mut found = Self::read(&path, &journal_path, &next_path, true)?;
        let werr = |err| StateError::Write { path: journal_path.clone(), err };
        let (journal_len, seq) = match found.journal {
            Some((seq, good_len)) => (good_len, seq),
            None => {
                // First start, or a state file from before the journal: start one.
                fs::create_dir_all(dir_of(&path)).map_err(werr)?;
                if found.snapshot_len == 0 {
                    // The state file exists from the first start on, as it always has.
                    let bytes = snapshot_bytes(&found.state)?;
                    let tmp = with_suffix(&path, ".tmp");
                    let serr = |err| StateError::Write { path: path.clone(), err };
                    write_synced(&tmp, &bytes).map_err(serr)?;
                    fs::rename(&tmp, &path).map_err(serr)?;
                    found.base = Base::of(&bytes);
                    found.snapshot_len = bytes.len() as u64;
                }
                let tmp = with_suffix(&path, ".journal.tmp");
                write_synced(&tmp, &journal::header(found.base)).map_err(werr)?;
                fs::rename(&tmp, &journal_path).map_err(werr)?;
                sync_dir(&journal_path).map_err(werr)?;
                if found.snapshot_len > 0 {
                    tracing::info!(
                        "state file {} has no journal yet: started {}",
                        path.display(),
                        journal_path.display()
                    );
                }
                (journal::HEADER_LEN as u64, 0)
            }
        };
        let file = fs::OpenOptions::new().read(true).write(true).open(&journal_path).map_err(werr)?;
        let store = Store {
            path,
            journal_path,
            next_path,
            journal: Arc::new(file),
            journal_len,
            snapshot_len: found.snapshot_len,
            seq,
            staged: Vec::new(),
            compact_min,
            broken: None,
        };
        Ok((store, found.state))
    }

    /// The desired state the files hold now, read without changing them.
    pub fn load(path: &Path) -> Result<DesiredState, StateError> {
        let (j, n) = (with_suffix(path, ".journal"), with_suffix(path, ".journal.next"));
        Ok(Self::read(path, &j, &n, false)?.state)
    }

    /// Snapshot plus journal. With `repair`, a torn tail is cut off, a journal that a
    /// compaction left as `.next` takes the journal's place, and stale files go.
    fn read(path: &Path, journal_path: &Path, next_path: &Path, repair: bool) -> Result<Found, StateError> {
        let snapshot = read_opt(path)?;
        let state = match &snapshot {
            Some(b) => parse_snapshot(path, b)?,
            None => DesiredState::new(),
        };
        let snap_bytes = snapshot.unwrap_or_default();
        let base = Base::of(&snap_bytes);
        let damaged = |p: &Path, offset: u64, what: String| StateError::Damaged {
            path: p.to_path_buf(),
            offset,
            what,
            snapshot: path.to_path_buf(),
        };
        let werr = |p: &Path| {
            let p = p.to_path_buf();
            move |err| StateError::Write { path: p, err }
        };
        let journal = read_opt(journal_path)?;
        let next = read_opt(next_path)?;
        let next_fits = next.as_deref().is_some_and(|b| journal::read_header(b).ok() == Some(base));
        let (jpath, bytes) = match journal {
            Some(b) if journal::read_header(&b).ok() == Some(base) => {
                if next.is_some() && repair {
                    // A compaction that stopped before its snapshot was in place.
                    fs::remove_file(next_path).map_err(werr(next_path))?;
                }
                (journal_path, b)
            }
            _ if next_fits => {
                // A compaction that stopped after its snapshot was in place: the journal
                // it started is the one to use, the old one is inside the snapshot.
                let b = next.unwrap_or_default();
                if repair {
                    fs::rename(next_path, journal_path).map_err(werr(journal_path))?;
                    sync_dir(journal_path).map_err(werr(journal_path))?;
                    tracing::info!("finished the compaction a stop interrupted ({})", journal_path.display());
                    (journal_path, b)
                } else {
                    (next_path, b)
                }
            }
            Some(b) => {
                return Err(match journal::read_header(&b) {
                    Err(what) => damaged(journal_path, 0, what),
                    Ok(other) => StateError::Mismatch {
                        path: journal_path.to_path_buf(),
                        snapshot: path.to_path_buf(),
                        expected: other.len,
                        found: base.len,
                    },
                });
            }
            None => {
                if next.is_some() && repair {
                    fs::remove_file(next_path).map_err(werr(next_path))?;
                }
                return Ok(Found { state, snapshot_len: snap_bytes.len() as u64, base, journal: None });
            }
        };
        let scan = journal::scan(&bytes).map_err(|d| damaged(jpath, d.offset, d.what))?;
        if scan.torn > 0 {
            tracing::warn!(
                "dropped the last {} bytes of the journal {} (from offset {}): a change a crash cut short, never acknowledged",
                scan.torn,
                jpath.display(),
                scan.good_len
            );
            if repair {
                let f = fs::OpenOptions::new().write(true).open(jpath).map_err(werr(jpath))?;
                f.set_len(scan.good_len).and_then(|()| f.sync_all()).map_err(werr(jpath))?;
            }
        }
        let state = if scan.records.is_empty() {
            state
        } else {
            let n = scan.records.len();
            let replay = |state: DesiredState| -> Result<DesiredState, String> {
                let v = serde_json::to_value(&state).map_err(|e| e.to_string())?;
                let mut img = Image::from_value(v)?;
                for r in &scan.records {
                    for c in &r.changes {
                        img.apply(c.clone()).map_err(|e| format!("record {}: {e}", r.seq))?;
                    }
                }
                serde_json::from_value(img.to_value()).map_err(|e| e.to_string())
            };
            let state = replay(state).map_err(|what| damaged(jpath, journal::HEADER_LEN as u64, what))?;
            tracing::info!("replayed {n} journal records from {}", jpath.display());
            state
        };
        let last_seq = scan.records.last().map_or(0, |r| r.seq);
        Ok(Found { state, snapshot_len: snap_bytes.len() as u64, base, journal: Some((last_seq, scan.good_len)) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn journal_path(&self) -> &Path {
        &self.journal_path
    }

    /// Bytes in the journal now, header included.
    pub fn journal_len(&self) -> u64 {
        self.journal_len
    }

    /// Adds changes to the next commit.
    pub fn stage(&mut self, changes: impl IntoIterator<Item = Change>) {
        self.staged.extend(changes);
    }

    /// Changes staged for the next commit.
    pub fn staged_len(&self) -> usize {
        self.staged.len()
    }

    /// What was staged from the `from`-th change on, briefly: each change's section and
    /// key.
    pub fn staged_summary(&self, from: usize) -> String {
        let all: Vec<String> = self.staged.iter().skip(from).map(Change::summary).collect();
        all.join(", ")
    }

    /// Forgets what was staged (the requests it belonged to were taken back).
    pub fn discard_staged(&mut self) {
        self.staged.clear();
    }

    /// The next record, ready to be written off this task; None if nothing is staged.
    pub fn prepare(&mut self) -> Result<Option<Append>, StateError> {
        if self.staged.is_empty() {
            return Ok(None);
        }
        if let Some(why) = &self.broken {
            self.staged.clear();
            return Err(StateError::Broken { path: self.journal_path.clone(), why: why.clone() });
        }
        let record = Record { seq: self.seq + 1, changes: std::mem::take(&mut self.staged) };
        Ok(Some(Append { file: self.journal.clone(), at: self.journal_len, bytes: journal::record(&record) }))
    }

    /// Takes the outcome of `Append::write`. A failed write is cut off again, so the
    /// journal never holds a half record ahead of later ones.
    pub fn finish(&mut self, append: Append, written: std::io::Result<()>) -> Result<(), StateError> {
        match written {
            Ok(()) => {
                self.journal_len = append.at + append.bytes.len() as u64;
                self.seq += 1;
                Ok(())
            }
            Err(err) => {
                if let Err(e) = self.journal.set_len(append.at).and_then(|()| self.journal.sync_all()) {
                    self.broken = Some(e.to_string());
                }
                Err(StateError::Journal { path: self.journal_path.clone(), err })
            }
        }
    }

    /// Writes what is staged as one record and syncs it, on this thread. (The switch
    /// writes off its task: `prepare`, `Append::write` elsewhere, `finish`.)
    pub fn commit_blocking(&mut self) -> Result<(), StateError> {
        let Some(append) = self.prepare()? else { return Ok(()) };
        let written = append.write();
        self.finish(append, written)
    }

    /// The journal has grown past the snapshot (and past the minimum).
    pub fn wants_compaction(&self) -> bool {
        self.journal_len > self.compact_min.max(self.snapshot_len)
    }

    /// Writes `state` (which must be everything committed) as the new snapshot and starts
    /// an empty journal after it. Nothing may be staged.
    pub fn compact(&mut self, state: &DesiredState) -> Result<(), StateError> {
        debug_assert!(self.staged.is_empty(), "compaction with staged changes");
        if let Some(why) = &self.broken {
            return Err(StateError::Broken { path: self.journal_path.clone(), why: why.clone() });
        }
        let bytes = snapshot_bytes(state)?;
        let base = Base::of(&bytes);
        let jerr = |p: &Path| {
            let p = p.to_path_buf();
            move |err| StateError::Write { path: p, err }
        };
        fs::create_dir_all(dir_of(&self.path)).map_err(jerr(&self.path))?;
        // 1. The journal that follows the new snapshot.
        write_synced(&self.next_path, &journal::header(base)).map_err(jerr(&self.next_path))?;
        // 2. The snapshot.
        let tmp = with_suffix(&self.path, ".tmp");
        let placed =
            write_synced(&tmp, &bytes).and_then(|()| fs::rename(&tmp, &self.path)).and_then(|()| sync_dir(&self.path));
        if let Err(err) = placed {
            let _ = fs::remove_file(&tmp);
            let _ = fs::remove_file(&self.next_path);
            return Err(StateError::Write { path: self.path.clone(), err });
        }
        // 3. From here the old journal is inside the snapshot; the next one takes its place.
        let swapped = fs::rename(&self.next_path, &self.journal_path)
            .and_then(|()| sync_dir(&self.journal_path))
            .and_then(|()| fs::OpenOptions::new().read(true).write(true).open(&self.journal_path));
        match swapped {
            Ok(f) => {
                self.journal = Arc::new(f);
                self.journal_len = journal::HEADER_LEN as u64;
                self.snapshot_len = bytes.len() as u64;
                Ok(())
            }
            Err(err) => {
                // The files are consistent (a restart finishes the swap), but appends to
                // the old journal would be lost: stop taking changes.
                self.broken = Some(format!("compaction could not put {} in place: {err}", self.next_path.display()));
                Err(StateError::Write { path: self.journal_path.clone(), err })
            }
        }
    }
}

#[cfg(test)]
mod tests;
