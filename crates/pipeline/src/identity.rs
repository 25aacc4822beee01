//! Which events are the same event: the identity deduplication uses.

use serde_json::Value;

/// The identity of an audit event for deduplication: `auditID` and `stage`, plus both timestamps.
///
/// A retried delivery repeats an event byte for byte, so the timestamps match. `auditID` alone is not
/// enough, because it is client-settable (`Audit-ID` header): a client could reuse the ID of an earlier
/// request, and its own request would then be dropped as a repeat. Events without an `auditID` have no
/// identity and are never deduplicated.
pub fn event_identity(event: &Value) -> Option<String> {
    identity_parts(event).map(|[id, stage, received, staged]| {
        format!("{id}\u{0}{stage}\u{0}{received}\u{0}{staged}")
    })
}

/// The four parts of [`event_identity`], borrowed.
pub(crate) fn identity_parts(event: &Value) -> Option<[&str; 4]> {
    let id = event.get("auditID")?.as_str().filter(|s| !s.is_empty())?;
    let text = |key: &str| event.get(key).and_then(Value::as_str).unwrap_or_default();
    Some([
        id,
        text("stage"),
        text("requestReceivedTimestamp"),
        text("stageTimestamp"),
    ])
}

/// Identities seen in one batch (see [`event_identity`]), kept as 128-bit keyed hashes: no allocation per
/// event, and with per-process random keys a client cannot craft a collision to have an event dropped.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    keys: (std::hash::RandomState, std::hash::RandomState),
    seen: std::collections::HashSet<u128>,
}

impl Seen {
    pub(crate) fn first_time(&mut self, doc: &Value) -> bool {
        self.first_time_parts(identity_parts(doc))
    }

    /// `parts`: `auditID`, `stage` and the two timestamps; `None` (no auditID) is never a repeat.
    pub(crate) fn first_time_parts(&mut self, parts: Option<[&str; 4]>) -> bool {
        let key = self.key(parts);
        self.first_time_key(key)
    }

    pub(crate) fn first_time_key(&mut self, key: Option<u128>) -> bool {
        key.is_none_or(|k| self.seen.insert(k))
    }

    pub(crate) fn key(&self, parts: Option<[&str; 4]>) -> Option<u128> {
        use std::hash::{BuildHasher as _, Hasher as _};
        let parts = parts?;
        let hash = |state: &std::hash::RandomState| {
            let mut h = state.build_hasher();
            for part in parts {
                h.write(part.as_bytes());
                // Never part of UTF-8 text: the parts cannot run into each other.
                h.write_u8(0xff);
            }
            h.finish()
        };
        Some((u128::from(hash(&self.keys.0)) << 64) | u128::from(hash(&self.keys.1)))
    }
}
