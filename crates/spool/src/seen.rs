//! Remembered event keys, bounded by age and count.

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::collections::{HashSet, VecDeque};

/// 128 bits of SHA-256 over the event's identity: fixed size, stable across versions and restarts.
pub(crate) type Key = [u8; 16];

/// The key of an event ([`kaf_pipeline::event_identity`]: `auditID`, `stage` and timestamps), if it has one.
pub(crate) fn key_of(event: &Value) -> Option<Key> {
    let identity = kaf_pipeline::event_identity(event)?;
    let digest = Sha256::digest(identity.as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    Some(key)
}

/// The key of an item kept as raw text (it has no readable identity): its text, so a resent batch still
/// finds it a repeat.
pub(crate) fn raw_key(raw: &str) -> Key {
    let mut hasher = Sha256::new();
    hasher.update(b"raw item\0");
    hasher.update(raw.as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&hasher.finalize()[..16]);
    key
}

pub(crate) fn journal_line(secs: u64, key: &Key) -> String {
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    format!("{secs} {hex}\n")
}

/// A journal line, or `None` for a torn or foreign one (the last line after a crash may be cut).
pub(crate) fn parse_journal_line(line: &str) -> Option<(u64, Key)> {
    let (secs, hex) = line.split_once(' ')?;
    if hex.len() != 32 {
        return None;
    }
    let mut key = [0u8; 16];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some((secs.parse().ok()?, key))
}

pub(crate) struct Seen {
    keys: HashSet<Key>,
    order: VecDeque<(u64, Key)>,
    window_secs: u64,
    capacity: usize,
}

impl Seen {
    pub(crate) fn new(window_secs: u64, capacity: usize) -> Self {
        Self {
            keys: HashSet::new(),
            order: VecDeque::new(),
            window_secs,
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn contains(&self, key: &Key) -> bool {
        self.keys.contains(key)
    }

    /// Remember `key` as of `secs`; forget what is older than the window or over the capacity.
    pub(crate) fn insert(&mut self, key: Key, secs: u64, now: u64) {
        if secs + self.window_secs < now || !self.keys.insert(key) {
            return;
        }
        self.order.push_back((secs, key));
        while let Some(&(oldest, old_key)) = self.order.front() {
            if self.order.len() <= self.capacity && oldest + self.window_secs >= now {
                break;
            }
            self.order.pop_front();
            self.keys.remove(&old_key);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = (u64, Key)> + '_ {
        self.order.iter().copied()
    }
}
