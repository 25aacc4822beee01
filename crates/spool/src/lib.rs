//! A durable spool between the webhook receiver and the upload client.
//!
//! The receiver [`append`](Spool::append)s each accepted `EventList` as one segment file, written and
//! fsync'd before it answers 200, so an acknowledged event survives a crash. The delivery loop takes the
//! oldest segments as a [`Group`] ([`next_group`](Spool::next_group)), whose membership is itself written
//! down first: after a crash the same group is resent with the same event ids, hence the same `upload-id`.
//! Only after delivery are the segments removed ([`complete`](Spool::complete)).
//!
//! The apiserver resends a whole batch when a request fails, so events (by `auditID`, `stage` and timestamps) already spooled or
//! recently delivered are dropped on the way in. Their keys live in memory and in `seen.journal`, so a retry
//! that arrives after a restart is still recognised, within a bounded window.
//!
//! Files in the spool directory: `seg-<seq>.jsonl` (one event per line), `inflight.json` (the group being
//! delivered), `seen.journal` (`<unix seconds> <key>` lines) and `*.tmp` (incomplete writes, removed at start).

mod seen;

use kaf_envelope::webhook::Item;
use kaf_envelope::{Payload, RawEvent};
use seen::{Key, Seen};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MANIFEST: &str = "inflight.json";
const JOURNAL: &str = "seen.journal";

/// Limits of a spool.
#[derive(Debug, Clone, Copy)]
pub struct SpoolOptions {
    /// Bytes of undelivered segments past which [`Spool::append`] refuses with [`SpoolError::Full`].
    pub max_bytes: u64,
    /// How long a delivered event's identity is remembered to drop a retried batch.
    pub dedupe_window: Duration,
    /// At most this many keys are remembered (oldest forgotten first).
    pub dedupe_capacity: usize,
    /// The wall clock the dedupe window is measured on.
    pub clock: Clock,
}

/// The wall clock, in unix seconds: the system's, or (tests) shifted, so window expiry needs no waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Clock {
    #[default]
    System,
    /// The system clock plus this many seconds.
    Ahead(u64),
}

impl Clock {
    fn now(self) -> u64 {
        let system = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        match self {
            Self::System => system,
            Self::Ahead(secs) => system.saturating_add(secs),
        }
    }
}

impl Default for SpoolOptions {
    fn default() -> Self {
        Self {
            max_bytes: 512 * 1024 * 1024,
            dedupe_window: Duration::from_secs(15 * 60),
            dedupe_capacity: 1_000_000,
            clock: Clock::System,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool is full: {bytes} bytes undelivered, limit {max}")]
    Full { bytes: u64, max: u64 },
    #[error("spool {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What [`Spool::append`] did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Appended {
    /// Events written to the new segment.
    pub spooled: usize,
    /// Events dropped because their identity was already spooled or recently delivered.
    pub duplicates: usize,
}

/// Segments delivered together, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Group {
    pub segments: Vec<u64>,
}

/// Gauges of the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpoolStats {
    pub segments: usize,
    pub events: usize,
    pub bytes: u64,
    pub remembered_keys: usize,
}

struct Segment {
    bytes: u64,
    keys: Vec<Key>,
    events: usize,
}

struct Inner {
    next_seq: u64,
    segments: BTreeMap<u64, Segment>,
    bytes: u64,
    seen: Seen,
    inflight: Option<Group>,
    journal: File,
    journal_lines: usize,
}

pub struct Spool {
    dir: PathBuf,
    options: SpoolOptions,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool").field("dir", &self.dir).finish()
    }
}

impl Spool {
    /// Open (or create) the spool in `dir`: index the undelivered segments, reload the group in flight and
    /// the remembered keys, and drop incomplete writes.
    pub fn open(dir: &Path, options: SpoolOptions) -> Result<Self, SpoolError> {
        fs::create_dir_all(dir).map_err(io("create", dir))?;
        let now = options.clock.now();
        let mut seen = Seen::new(options.dedupe_window.as_secs(), options.dedupe_capacity);
        let journal_path = dir.join(JOURNAL);
        if let Ok(file) = File::open(&journal_path) {
            for line in BufReader::new(file).lines().map_while(Result::ok) {
                if let Some((secs, key)) = seen::parse_journal_line(&line) {
                    seen.insert(key, secs, now);
                }
            }
        }
        let mut segments = BTreeMap::new();
        let mut bytes = 0;
        let entries = fs::read_dir(dir).map_err(io("list", dir))?;
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                fs::remove_file(&path).map_err(io("remove", &path))?;
            } else if let Some(seq) = segment_seq(&name) {
                let segment = index_segment(&path)?;
                for key in &segment.keys {
                    seen.insert(*key, now, now);
                }
                bytes += segment.bytes;
                segments.insert(seq, segment);
            }
        }
        let manifest_path = dir.join(MANIFEST);
        let inflight = match fs::read(&manifest_path) {
            Ok(text) => serde_json::from_slice::<Group>(&text)
                .ok()
                .map(|g| Group {
                    segments: g
                        .segments
                        .into_iter()
                        .filter(|s| segments.contains_key(s))
                        .collect(),
                })
                .filter(|g| !g.segments.is_empty()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io("read", &manifest_path)(e)),
        };
        if inflight.is_none() {
            remove_if_exists(&manifest_path)?;
        }
        let next_seq = segments.keys().next_back().map_or(1, |s| s + 1);
        let (journal, journal_lines) = rewrite_journal(dir, &seen)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            options,
            inner: Mutex::new(Inner {
                next_seq,
                segments,
                bytes,
                seen,
                inflight,
                journal,
                journal_lines,
            }),
        })
    }

    /// Write `items` as one durable segment, minus the events already spooled or recently delivered. Returns
    /// only after the segment is fsync'd; refuses without writing when the spool is over its bound.
    pub fn append(&self, items: &[Item]) -> Result<Appended, SpoolError> {
        let mut inner = self.lock();
        let now = self.options.clock.now();
        let mut fresh = Vec::with_capacity(items.len());
        let mut keys = Vec::with_capacity(items.len());
        let mut batch_keys = std::collections::HashSet::new();
        for item in items {
            match item_key(item) {
                Some(key) if inner.seen.contains(&key) || !batch_keys.insert(key) => continue,
                Some(key) => keys.push(key),
                None => {}
            }
            fresh.push(item);
        }
        let duplicates = items.len() - fresh.len();
        if fresh.is_empty() {
            return Ok(Appended {
                spooled: 0,
                duplicates,
            });
        }
        if inner.bytes >= self.options.max_bytes {
            return Err(SpoolError::Full {
                bytes: inner.bytes,
                max: self.options.max_bytes,
            });
        }
        let mut text = Vec::new();
        for item in &fresh {
            // Compact serialisation: one event per line, whatever the apiserver's formatting.
            let written = match item {
                Item::Event(event) => serde_json::to_writer(&mut text, event),
                Item::Unparsed { raw, reason } => serde_json::to_writer(
                    &mut text,
                    &serde_json::json!({RAW_ITEM: raw, "reason": reason}),
                ),
            };
            written.map_err(|e| SpoolError::Io {
                action: "serialise",
                path: self.dir.clone(),
                source: e.into(),
            })?;
            text.push(b'\n');
        }
        let seq = inner.next_seq;
        let path = self.dir.join(segment_name(seq));
        write_durably(&self.dir, &path, &text)?;
        inner.next_seq += 1;
        for key in &keys {
            inner.seen.insert(*key, now, now);
        }
        inner.bytes += text.len() as u64;
        inner.segments.insert(
            seq,
            Segment {
                bytes: text.len() as u64,
                keys,
                events: fresh.len(),
            },
        );
        Ok(Appended {
            spooled: fresh.len(),
            duplicates,
        })
    }

    /// The group to deliver next: the one in flight (after a restart too), else the oldest segments up to
    /// `max_events` events (at least one segment), written down before it is returned.
    pub fn next_group(&self, max_events: usize) -> Result<Option<Group>, SpoolError> {
        let mut inner = self.lock();
        if let Some(group) = &inner.inflight {
            return Ok(Some(group.clone()));
        }
        let mut segments = Vec::new();
        let mut events = 0;
        for (seq, segment) in &inner.segments {
            if !segments.is_empty() && events + segment.events > max_events {
                break;
            }
            segments.push(*seq);
            events += segment.events;
        }
        if segments.is_empty() {
            return Ok(None);
        }
        let group = Group { segments };
        let text = serde_json::to_vec(&group).map_err(|e| SpoolError::Io {
            action: "serialise",
            path: self.dir.join(MANIFEST),
            source: e.into(),
        })?;
        write_durably(&self.dir, &self.dir.join(MANIFEST), &text)?;
        inner.inflight = Some(group.clone());
        Ok(Some(group))
    }

    /// The events of `group`, with ids `<segment>:<line>` that stay the same across restarts.
    pub fn read_group(&self, group: &Group) -> Result<Vec<RawEvent>, SpoolError> {
        let mut events = Vec::new();
        for seq in &group.segments {
            let path = self.dir.join(segment_name(*seq));
            let text = fs::read_to_string(&path).map_err(io("read", &path))?;
            events.extend(
                text.lines()
                    .enumerate()
                    .filter(|(_, line)| !line.is_empty())
                    .map(|(i, line)| RawEvent {
                        id: format!("{seq}:{}", i + 1),
                        envelope_time_ms: None,
                        // An item kept raw goes to the pipeline as it came, to be salvaged there.
                        payload: Payload::Text(raw_item(line).unwrap_or_else(|| line.to_string())),
                    }),
            );
        }
        Ok(events)
    }

    /// `group` was delivered: remember its keys durably, then remove its segments and the manifest.
    pub fn complete(&self, group: &Group) -> Result<(), SpoolError> {
        let mut inner = self.lock();
        let now = self.options.clock.now();
        let mut lines = String::new();
        for seq in &group.segments {
            if let Some(segment) = inner.segments.get(seq) {
                for key in &segment.keys {
                    lines.push_str(&seen::journal_line(now, key));
                }
            }
        }
        let journal_path = self.dir.join(JOURNAL);
        inner
            .journal
            .write_all(lines.as_bytes())
            .and_then(|()| inner.journal.sync_data())
            .map_err(io("append", &journal_path))?;
        inner.journal_lines += lines.lines().count();
        for seq in &group.segments {
            let path = self.dir.join(segment_name(*seq));
            remove_if_exists(&path)?;
            if let Some(segment) = inner.segments.remove(seq) {
                inner.bytes -= segment.bytes;
            }
        }
        remove_if_exists(&self.dir.join(MANIFEST))?;
        sync_dir(&self.dir)?;
        inner.inflight = None;
        if inner.journal_lines > 2 * inner.seen.len().max(4096) {
            let (journal, lines) = rewrite_journal(&self.dir, &inner.seen)?;
            inner.journal = journal;
            inner.journal_lines = lines;
        }
        Ok(())
    }

    pub fn stats(&self) -> SpoolStats {
        let inner = self.lock();
        SpoolStats {
            segments: inner.segments.len(),
            events: inner.segments.values().map(|s| s.events).sum(),
            bytes: inner.bytes,
            remembered_keys: inner.seen.len(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The key a spooled line's item is remembered by: its identity, or for an item kept raw, its text.
fn item_key(item: &Item) -> Option<Key> {
    match item {
        Item::Event(event) => seen::key_of(event),
        Item::Unparsed { raw, .. } => Some(seen::raw_key(raw)),
    }
}

/// The field of a spool line that holds an item kept raw (`{"kafRawItem": "<text>", "reason": "…"}`).
const RAW_ITEM: &str = "kafRawItem";

/// The raw text of a line written for an item kept raw.
fn raw_item(line: &str) -> Option<String> {
    if !line.starts_with("{\"kafRawItem\":") {
        return None;
    }
    serde_json::from_str::<Value>(line)
        .ok()?
        .get(RAW_ITEM)?
        .as_str()
        .map(str::to_string)
}

fn segment_name(seq: u64) -> String {
    format!("seg-{seq:020}.jsonl")
}

fn segment_seq(name: &str) -> Option<u64> {
    name.strip_prefix("seg-")?
        .strip_suffix(".jsonl")?
        .parse()
        .ok()
}

fn index_segment(path: &Path) -> Result<Segment, SpoolError> {
    let text = fs::read_to_string(path).map_err(io("read", path))?;
    let mut keys = Vec::new();
    let mut events = 0;
    for line in text.lines().filter(|l| !l.is_empty()) {
        events += 1;
        let key = match raw_item(line) {
            Some(raw) => Some(seen::raw_key(&raw)),
            None => serde_json::from_str::<Value>(line)
                .ok()
                .as_ref()
                .and_then(seen::key_of),
        };
        keys.extend(key);
    }
    Ok(Segment {
        bytes: text.len() as u64,
        keys,
        events,
    })
}

/// Write `bytes` to `path` so that after a crash it is either absent or complete: temp file, fsync,
/// rename, fsync of the directory.
fn write_durably(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(io("create", &tmp))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io("write", &tmp))?;
    fs::rename(&tmp, path).map_err(io("rename", path))?;
    sync_dir(dir)
}

fn rewrite_journal(dir: &Path, seen: &Seen) -> Result<(File, usize), SpoolError> {
    let path = dir.join(JOURNAL);
    let mut text = String::new();
    for (secs, key) in seen.entries() {
        text.push_str(&seen::journal_line(secs, &key));
    }
    write_durably(dir, &path, text.as_bytes())?;
    let file = OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(io("open", &path))?;
    Ok((file, seen.len()))
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", dir))
}

fn remove_if_exists(path: &Path) -> Result<(), SpoolError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", path)(e)),
        _ => Ok(()),
    }
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError {
    let path = path.to_path_buf();
    move |source| SpoolError::Io {
        action,
        path,
        source,
    }
}

#[cfg(test)]
mod tests;
