//! Who gets a connection. Slow or idle clients must not starve the apiserver: open connections are capped
//! (`--max-connections`, never above what the descriptor limit allows), and when the cap is reached, or
//! `accept` runs out of descriptors, the oldest connection with no request in flight is closed to make room.
//! A client trickling its headers has no request in flight, so it is the first to go; the timeouts for the
//! handshake, the headers and the body bound every other wait.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::Notify;

/// The open connections, oldest first (ids grow).
pub struct Connections {
    max: usize,
    inner: Mutex<BTreeMap<u64, Slot>>,
    next_id: std::sync::atomic::AtomicU64,
    /// Signalled when a connection closes (room for a waiting accept).
    released: Notify,
}

struct Slot {
    /// Requests in flight on the connection.
    busy: usize,
    close: Arc<Notify>,
}

/// A connection's place; dropping it frees the place.
pub struct Admitted {
    pub id: u64,
    /// Notified when the connection must close to make room.
    pub close: Arc<Notify>,
    connections: Arc<Connections>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.connections.lock().remove(&self.id);
        self.connections.released.notify_one();
    }
}

impl Connections {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            inner: Mutex::new(BTreeMap::new()),
            next_id: std::sync::atomic::AtomicU64::new(0),
            released: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Slot>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn open(&self) -> usize {
        self.lock().len()
    }

    /// Wait until a new connection may be accepted: below the cap, or after closing the oldest idle one.
    /// Returns how many were closed for it (0 or 1).
    pub async fn room(&self) -> u64 {
        loop {
            let released = self.released.notified();
            if self.lock().len() < self.max {
                return 0;
            }
            if self.evict_idle() {
                return 1;
            }
            // Every connection has a request in flight: wait for one to finish.
            released.await;
        }
    }

    /// Close the oldest connection without a request in flight; `false` if there is none.
    pub fn evict_idle(&self) -> bool {
        let mut open = self.lock();
        let Some((&id, _)) = open.iter().find(|(_, slot)| slot.busy == 0) else {
            return false;
        };
        if let Some(slot) = open.remove(&id) {
            slot.close.notify_one();
        }
        true
    }

    /// Take a place for a new connection (call after [`Connections::room`]).
    pub fn admit(self: &Arc<Self>) -> Admitted {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let close = Arc::new(Notify::new());
        self.lock().insert(
            id,
            Slot {
                busy: 0,
                close: close.clone(),
            },
        );
        Admitted {
            id,
            close,
            connections: self.clone(),
        }
    }

    /// A request started (`true`) or finished (`false`) on connection `id`.
    pub fn request(&self, id: u64, started: bool) {
        if let Some(slot) = self.lock().get_mut(&id) {
            if started {
                slot.busy += 1;
            } else {
                slot.busy = slot.busy.saturating_sub(1);
            }
        }
    }
}

/// The soft limit on open file descriptors (`ulimit -n`), from `/proc/self/limits`.
pub fn descriptor_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Descriptors kept back from connections: listener, spool files, the upload client, logs.
pub const RESERVED_DESCRIPTORS: usize = 64;

/// `accept` failed for lack of descriptors (EMFILE, ENFILE) or kernel memory (ENOBUFS, ENOMEM): not the
/// client's fault, and retrying at once would spin.
pub fn is_resource_exhaustion(error: &std::io::Error) -> bool {
    // Linux errno values: EMFILE 24, ENFILE 23, ENOBUFS 105, ENOMEM 12.
    matches!(error.raw_os_error(), Some(24 | 23 | 105 | 12))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_oldest_idle_connection_makes_room() {
        let connections = Connections::new(2);
        assert_eq!(connections.room().await, 0);
        let first = connections.admit();
        let second = connections.admit();
        // The first has a request in flight: the second, idle, is closed for the third.
        connections.request(first.id, true);
        assert_eq!(connections.room().await, 1);
        tokio::time::timeout(Duration::from_millis(1), second.close.notified())
            .await
            .expect("the idle connection was told to close");
        let third = connections.admit();
        assert_eq!(connections.open(), 2);
        // Both busy now: room waits until one finishes.
        connections.request(third.id, true);
        let waiting = tokio::time::timeout(Duration::from_secs(5), connections.room()).await;
        assert!(waiting.is_err(), "no room while every connection is busy");
        drop(first);
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), connections.room())
                .await
                .unwrap(),
            0
        );
    }

    #[test]
    fn the_descriptor_limit_is_read() {
        assert!(descriptor_limit().is_some_and(|n| n > 0));
        assert!(is_resource_exhaustion(&std::io::Error::from_raw_os_error(
            24
        )));
        assert!(!is_resource_exhaustion(&std::io::Error::from_raw_os_error(
            104
        )));
    }
}
