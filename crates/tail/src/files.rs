//! The live file and its lumberjack backups in one directory, and reading them (plain or gzip).

use flate2::read::MultiGzDecoder;
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// Sorts after every lumberjack timestamp (`2006-01-02T15-04-05.000`): the live file is the newest.
pub(crate) const LIVE_KEY: &str = "~live";

#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub path: PathBuf,
    /// Order: the backup's timestamp, or [`LIVE_KEY`].
    pub key: String,
    pub compressed: bool,
    pub is_live: bool,
    pub dev: u64,
    pub ino: u64,
}

pub(crate) struct Identity {
    pub dev: u64,
    pub ino: u64,
    pub len: u64,
}

pub(crate) fn identity(path: &Path) -> io::Result<Identity> {
    let meta = std::fs::metadata(path)?;
    Ok(Identity {
        dev: meta.dev(),
        ino: meta.ino(),
        len: meta.len(),
    })
}

/// `audit.log` → (`audit-`, `.log`): lumberjack names backups `audit-<timestamp>.log`.
fn backup_affixes(live: &Path) -> (String, String) {
    let name = live
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name.as_str(), ""),
    };
    (format!("{stem}-"), ext.to_string())
}

fn dir_of(live: &Path) -> &Path {
    live.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Backups oldest first, then the live file if it exists. A backup being compressed (both `x.log` and
/// `x.log.gz` present) is read from the uncompressed copy.
pub(crate) fn candidates(live: &Path) -> io::Result<Vec<Candidate>> {
    let (prefix, ext) = backup_affixes(live);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir_of(live))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let (key, compressed) = if let Some(key) = rest.strip_suffix(&format!("{ext}.gz")) {
            (key, true)
        } else if let Some(key) = rest.strip_suffix(&ext) {
            (key, false)
        } else {
            continue;
        };
        let Ok(meta) = entry.metadata() else { continue };
        out.push(Candidate {
            path: entry.path(),
            key: key.to_string(),
            compressed,
            is_live: false,
            dev: meta.dev(),
            ino: meta.ino(),
        });
    }
    let plain: std::collections::HashSet<String> = out
        .iter()
        .filter(|c| !c.compressed)
        .map(|c| c.key.clone())
        .collect();
    out.retain(|c| !c.compressed || !plain.contains(&c.key));
    out.sort_by(|a, b| a.key.cmp(&b.key));
    match std::fs::metadata(live) {
        Ok(meta) => out.push(Candidate {
            path: live.to_path_buf(),
            key: LIVE_KEY.to_string(),
            compressed: false,
            is_live: true,
            dev: meta.dev(),
            ino: meta.ino(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(out)
}

/// The backup name (timestamp key) the file `(dev, ino)` was renamed to, if it is still uncompressed.
pub(crate) fn backup_key_of(live: &Path, dev: u64, ino: u64) -> io::Result<Option<String>> {
    Ok(candidates(live)?
        .into_iter()
        .find(|c| !c.is_live && !c.compressed && (c.dev, c.ino) == (dev, ino))
        .map(|c| c.key))
}

/// The candidate whose first line hashes to `head`; the same inode wins among several. `NotFound` when a
/// candidate has gone since it was listed (the answer would be a guess: list again); a name that stays but
/// cannot be opened (a dangling link) is passed over.
pub(crate) fn find_by_head(
    candidates: &[Candidate],
    head: &str,
    dev: u64,
    ino: u64,
) -> io::Result<Option<Candidate>> {
    let mut found = None;
    for c in candidates {
        let c_head = match Reader::open(c) {
            Ok((_, h)) => h,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if std::fs::symlink_metadata(&c.path).is_ok() {
                    continue;
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        if c_head.as_deref() == Some(head) {
            if !c.compressed && (c.dev, c.ino) == (dev, ino) {
                return Ok(Some(c.clone()));
            }
            found.get_or_insert_with(|| c.clone());
        }
    }
    Ok(found)
}

/// 16 hex of SHA-256 over a file's first line (newline included): names the file across renames and
/// compression; audit lines carry a unique auditID and timestamps, so two files do not share one.
pub(crate) fn head_hash(first_line: &[u8]) -> String {
    Sha256::digest(first_line)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) enum Reader {
    Plain(BufReader<File>),
    Gzip(Box<BufReader<MultiGzDecoder<File>>>),
}

impl Reader {
    /// Open a candidate and read its head (the hash of its first complete line, if it has one).
    pub(crate) fn open(candidate: &Candidate) -> io::Result<(Self, Option<String>)> {
        let file = File::open(&candidate.path)?;
        let head = if candidate.compressed {
            let mut first = Vec::new();
            BufReader::new(MultiGzDecoder::new(File::open(&candidate.path)?))
                .read_until(b'\n', &mut first)?;
            first.ends_with(b"\n").then(|| head_hash(&first))
        } else {
            use std::os::unix::fs::FileExt as _;
            // Read the first line without moving the file position.
            let mut first = Vec::new();
            let mut buf = [0u8; 8192];
            let mut at = 0u64;
            loop {
                let n = file.read_at(&mut buf, at)?;
                if n == 0 {
                    break;
                }
                if let Some(i) = buf[..n].iter().position(|b| *b == b'\n') {
                    first.extend_from_slice(&buf[..=i]);
                    break;
                }
                first.extend_from_slice(&buf[..n]);
                at += n as u64;
            }
            first.ends_with(b"\n").then(|| head_hash(&first))
        };
        let reader = if candidate.compressed {
            Self::Gzip(Box::new(BufReader::new(MultiGzDecoder::new(file))))
        } else {
            Self::Plain(BufReader::new(file))
        };
        Ok((reader, head))
    }

    /// Move past the first `offset` bytes; returns how far it got (less if the file is now shorter).
    pub(crate) fn skip(&mut self, offset: u64) -> io::Result<u64> {
        match self {
            Self::Plain(r) => {
                let len = r.get_ref().metadata()?.len();
                let to = if offset > len { 0 } else { offset };
                io::Seek::seek(r, io::SeekFrom::Start(to))?;
                Ok(to)
            }
            Self::Gzip(r) => io::copy(&mut r.by_ref().take(offset), &mut io::sink()),
        }
    }

    pub(crate) fn read_until(&mut self, byte: u8, buf: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            Self::Plain(r) => r.read_until(byte, buf),
            Self::Gzip(r) => r.read_until(byte, buf),
        }
    }
}
