//! Follow the kube-apiserver's audit log backend (`--audit-log-path`) the way its writer, lumberjack,
//! rotates it: the live file is renamed to `<name>-<timestamp><ext>` (optionally compressed afterwards to
//! `…<ext>.gz`, the uncompressed copy removed), and a new live file is created. Truncation in place
//! (copytruncate) is detected too.
//!
//! A [`Follower`] hands out [`Chunk`]s of complete lines, each event with an id `<head>@<offset>` that names
//! the file (hash of its first line, stable across rename and compression) and the line's byte offset, so a
//! resent chunk gets the same `upload-id`. The caller owns delivery and the [`Checkpoint`]: write
//! [`Chunk::pending`] before sending, [`Chunk::delivered`] after. On start the follower finds the
//! checkpointed file among the live file and its backups, reads the rotated backlog in order, then follows
//! the live file.

pub mod checkpoint;
mod files;

pub use checkpoint::{Checkpoint, CheckpointError};
use files::{Candidate, Reader};
use kaf_envelope::{Payload, RawEvent};
use std::io;
use std::path::{Path, PathBuf};

/// Where to begin when there is no checkpoint to resume from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Resume from a checkpoint: the batch in flight (if any) first, exactly as it was.
    Checkpoint(Checkpoint),
    /// The oldest rotated backup, then every newer one, then the live file.
    FromStart,
    /// The beginning of the live file (rotated backups are not read).
    LiveFile,
}

/// Complete lines of one file, `[start, end)` in its uncompressed bytes.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub events: Vec<RawEvent>,
    pub head: String,
    pub dev: u64,
    pub ino: u64,
    pub start: u64,
    pub end: u64,
    /// The file it was read from, as named when it was opened.
    pub path: PathBuf,
}

impl Chunk {
    /// The checkpoint to write before sending this chunk.
    pub fn pending(&self) -> Checkpoint {
        Checkpoint {
            head: self.head.clone(),
            dev: self.dev,
            ino: self.ino,
            offset: self.start,
            pending_end: Some(self.end),
        }
    }

    /// The checkpoint to write once it is delivered.
    pub fn delivered(&self) -> Checkpoint {
        Checkpoint {
            offset: self.end,
            pending_end: None,
            ..self.pending()
        }
    }
}

/// What to open next.
#[derive(Debug, Clone)]
enum Next {
    At {
        checkpoint: Checkpoint,
    },
    /// The file after this one (everything in it has been read).
    After {
        key: String,
        dev: u64,
        ino: u64,
        head: Option<String>,
    },
    FromStart,
    LiveFile,
}

struct Cursor {
    path: PathBuf,
    key: String,
    head: Option<String>,
    dev: u64,
    ino: u64,
    reader: Reader,
    /// Bytes of complete lines consumed.
    offset: u64,
    /// Bytes after `offset` read without their newline yet.
    partial: Vec<u8>,
    /// Rotated away: it will not grow, and a last line without newline is complete.
    complete: bool,
}

pub struct Follower {
    live: PathBuf,
    cursor: Option<Cursor>,
    next: Next,
    /// End of the first chunk after a restart with a batch in flight.
    limit: Option<u64>,
}

impl Follower {
    /// Follow `live` (e.g. `/var/log/kubernetes/audit/audit.log`).
    pub fn new(live: &Path, start: Start) -> Self {
        let (next, limit) = match start {
            Start::Checkpoint(checkpoint) => {
                let limit = checkpoint.pending_end;
                (Next::At { checkpoint }, limit)
            }
            Start::FromStart => (Next::FromStart, None),
            Start::LiveFile => (Next::LiveFile, None),
        };
        Self {
            live: live.to_path_buf(),
            cursor: None,
            next,
            limit,
        }
    }

    /// The files a start from the beginning reads, in order: the backups oldest first, then the live file (for
    /// a progress display).
    pub fn backlog(live: &Path) -> io::Result<Vec<PathBuf>> {
        Ok(files::candidates(live)?
            .into_iter()
            .map(|c| c.path)
            .collect())
    }

    /// The next complete lines, at most `max_events` and about `max_bytes`; `None` when there is nothing new
    /// yet (poll again later).
    pub fn poll(&mut self, max_events: usize, max_bytes: usize) -> io::Result<Option<Chunk>> {
        // Bounded: each pass either returns, or moves to another file or state.
        for _ in 0..64 {
            if self.cursor.is_none() && !self.open_next()? {
                return Ok(None);
            }
            let Some(cursor) = self.cursor.as_mut() else {
                return Ok(None);
            };
            let start = cursor.offset;
            let limit = self.limit;
            let events = cursor.read_lines(max_events, max_bytes, limit)?;
            if limit.is_some_and(|l| cursor.offset >= l) {
                self.limit = None;
            }
            if cursor.offset > start {
                return Ok(Some(Chunk {
                    events,
                    head: cursor.head.clone().unwrap_or_default(),
                    dev: cursor.dev,
                    ino: cursor.ino,
                    start,
                    end: cursor.offset,
                    path: cursor.path.clone(),
                }));
            }
            if cursor.complete {
                self.next = Next::After {
                    key: cursor.key.clone(),
                    dev: cursor.dev,
                    ino: cursor.ino,
                    head: cursor.head.clone(),
                };
                self.cursor = None;
                continue;
            }
            // The live file, at its end: rotated, truncated, or just quiet?
            let live = match files::identity(&self.live) {
                Ok(id) => id,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            if (live.dev, live.ino) != (cursor.dev, cursor.ino) {
                // Renamed away: drain what is left of it, then move on to its successors.
                cursor.complete = true;
                if let Some(key) = files::backup_key_of(&self.live, cursor.dev, cursor.ino)? {
                    cursor.key = key;
                }
                continue;
            }
            if live.len < cursor.offset + cursor.partial.len() as u64 {
                tracing::warn!(file = %self.live.display(), "audit log truncated in place; reading it from the beginning");
                self.cursor = None;
                self.next = Next::LiveFile;
                continue;
            }
            return Ok(None);
        }
        Ok(None)
    }

    /// Open what [`Next`] names; `false` when it does not exist (yet).
    ///
    /// Files are renamed, compressed and deleted while they are listed and read (lumberjack removes a backup's
    /// plain copy once its `.gz` is written). A candidate gone between the listing and its reading means the
    /// listing is stale: it is listed again, rather than the checkpointed file taken for deleted, which
    /// re-reads the whole backlog from its oldest file and sends it all again.
    fn open_next(&mut self) -> io::Result<bool> {
        const LISTINGS: usize = 8;
        for _ in 0..LISTINGS {
            match self.open_listed(&files::candidates(&self.live)?) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                opened => return opened,
            }
        }
        // Still moving: the next poll lists again.
        Ok(false)
    }

    /// [`Follower::open_next`] among `candidates`; `NotFound` when one of them has gone since it was listed.
    fn open_listed(&mut self, candidates: &[Candidate]) -> io::Result<bool> {
        let (candidate, offset) = match &self.next {
            Next::LiveFile => match candidates.last().filter(|c| c.is_live) {
                Some(c) => (c.clone(), 0),
                None => return Ok(false),
            },
            Next::FromStart => match candidates.first() {
                Some(c) => (c.clone(), 0),
                None => return Ok(false),
            },
            Next::At { checkpoint } => {
                match files::find_by_head(
                    candidates,
                    &checkpoint.head,
                    checkpoint.dev,
                    checkpoint.ino,
                )? {
                    Some(c) => (c, checkpoint.offset),
                    None => {
                        // Deleted since: lumberjack deletes the oldest backups first, so what is left is newer.
                        tracing::warn!(file = %self.live.display(), "checkpointed file is gone; reading the oldest file left");
                        self.limit = None;
                        self.next = Next::FromStart;
                        return self.open_listed(candidates);
                    }
                }
            }
            Next::After {
                key,
                dev,
                ino,
                head,
            } => {
                let position = candidates
                    .iter()
                    .position(|c| !c.compressed && (c.dev, c.ino) == (*dev, *ino));
                let position = match (position, head) {
                    (Some(p), _) => Some(p),
                    (None, Some(head)) => files::find_by_head(candidates, head, *dev, *ino)?
                        .and_then(|found| candidates.iter().position(|c| c.path == found.path)),
                    (None, None) => None,
                };
                let next = match position {
                    Some(p) => candidates.get(p + 1),
                    // Renamed and gone before its new name was seen (lumberjack never deletes its newest
                    // backup, so this should not happen): go on with the live file rather than wait forever.
                    None if key == files::LIVE_KEY => {
                        tracing::warn!(file = %self.live.display(), "rotated file vanished; continuing with the live file");
                        candidates
                            .last()
                            .filter(|c| c.is_live && (c.dev, c.ino) != (*dev, *ino))
                    }
                    None => candidates.iter().find(|c| c.key > *key),
                };
                match next {
                    Some(c) => (c.clone(), 0),
                    None => return Ok(false),
                }
            }
        };
        // Renamed or compressed between listing and opening: `NotFound`, and the caller lists again.
        self.cursor = Some(Cursor::open(&candidate, offset)?);
        Ok(true)
    }
}

impl Cursor {
    fn open(candidate: &Candidate, offset: u64) -> io::Result<Self> {
        let (mut reader, head) = Reader::open(candidate)?;
        let skipped = reader.skip(offset)?;
        Ok(Self {
            path: candidate.path.clone(),
            key: candidate.key.clone(),
            head,
            dev: candidate.dev,
            ino: candidate.ino,
            reader,
            offset: skipped,
            partial: Vec::new(),
            complete: !candidate.is_live,
        })
    }

    fn read_lines(
        &mut self,
        max_events: usize,
        max_bytes: usize,
        limit: Option<u64>,
    ) -> io::Result<Vec<RawEvent>> {
        let mut events = Vec::new();
        let mut bytes = 0;
        while events.len() < max_events
            && bytes < max_bytes
            && limit.is_none_or(|l| self.offset < l)
        {
            let mut line = std::mem::take(&mut self.partial);
            let n = self.reader.read_until(b'\n', &mut line)?;
            let ended = line.last() == Some(&b'\n');
            // A last line without newline counts only once the file is rotated away and fully read.
            let finished = ended || (self.complete && n == 0);
            if line.is_empty() || !finished {
                // Nothing, or a line still being written: keep it for later.
                self.partial = line;
                break;
            }
            let at = self.offset;
            self.offset += line.len() as u64;
            if at == 0 {
                self.head = Some(files::head_hash(&line));
            }
            bytes += line.len();
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\n', '\r']);
            if text.trim().is_empty() {
                continue;
            }
            events.push(RawEvent {
                id: format!("{}@{at}", self.head.as_deref().unwrap_or_default()),
                envelope_time_ms: None,
                payload: Payload::Text(text.to_string()),
            });
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests;
