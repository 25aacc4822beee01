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
        // The parts, each followed by 0xff (never part of UTF-8 text: the parts cannot run into each other),
        // as one run when they fit on the stack: SipHash reads a stream, so this hashes the same bytes with
        // two calls instead of sixteen.
        let mut joined = [0u8; 256];
        let mut len = 0;
        for part in parts {
            let end = len + part.len() + 1;
            if let Some(slot) = joined.get_mut(len..end) {
                slot[..part.len()].copy_from_slice(part.as_bytes());
                slot[part.len()] = 0xff;
            }
            len = end;
        }
        let hash = |state: &std::hash::RandomState| {
            let mut h = state.build_hasher();
            match joined.get(..len) {
                Some(run) => h.write(run),
                None => {
                    for part in parts {
                        h.write(part.as_bytes());
                        h.write_u8(0xff);
                    }
                }
            }
            h.finish()
        };
        Some((u128::from(hash(&self.keys.0)) << 64) | u128::from(hash(&self.keys.1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher as _, Hasher as _};

    /// The key with each part and separator written on its own, as before the parts were joined.
    fn key_part_by_part(seen: &Seen, parts: [&str; 4]) -> u128 {
        let hash = |state: &std::hash::RandomState| {
            let mut h = state.build_hasher();
            for part in parts {
                h.write(part.as_bytes());
                h.write_u8(0xff);
            }
            h.finish()
        };
        (u128::from(hash(&seen.keys.0)) << 64) | u128::from(hash(&seen.keys.1))
    }

    #[test]
    fn parts_joined_on_the_stack_or_too_long_for_it_hash_as_written_one_by_one() {
        let seen = Seen::default();
        let (fits, just_over, long) = ("y".repeat(252), "y".repeat(253), "x".repeat(300));
        for parts in [
            [
                "id-1",
                "ResponseComplete",
                "2026-04-20T16:29:59.995191Z",
                "2026-04-20T16:29:59.999Z",
            ],
            ["", "", "", ""],
            [&fits, "", "", ""],
            [&just_over, "", "", ""],
            [&long, "ResponseComplete", "", "é"],
        ] {
            assert_eq!(
                seen.key(Some(parts)),
                Some(key_part_by_part(&seen, parts)),
                "{parts:?}"
            );
        }
        // The separators keep parts from running into each other.
        assert_ne!(
            seen.key(Some(["ab", "c", "", ""])),
            seen.key(Some(["a", "bc", "", ""]))
        );
    }
}
