//! The decompressed subscription payload read in one pass, each message unescaped in place as it is met.
//!
//! A payload is nearly all `message` literals: audit events as JSON text, a quote escaped every few bytes.
//! serde, asked for the messages' places, checks every byte of those literals while skipping them, and
//! unescaping then read them all again: the two passes were about a quarter of a 1 000-event invocation's
//! instructions. Here each literal is checked as serde checks it (see
//! [`crate::escape::unescape_literal_in_place`]) while it is unescaped, in the one pass that finds its end.
//!
//! Only the shape CloudWatch writes is taken: an object whose keys have no escapes, `messageType`,
//! `logGroup` and `logStream` plain strings, `logEvents` an array of objects with a plain string `id`, an
//! integer `timestamp` and a string `message`, no member twice, nothing after the object. Anything else gives
//! `None`, and the caller reads the payload again, from its compressed form, with serde ([`with_serde`]),
//! which decides what it is. Other members (`owner`, `subscriptionFilters`) are skipped without being
//! checked: a payload whose events can be read is taken.

use crate::escape::unescape_literal_in_place;
use crate::skip::Cursor;
use std::ops::Range;

/// What the batch needs of a payload; each message is `buffer[range]`, unescaped, and the messages lie side
/// by side in `buffer[..written]`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Read {
    pub message_type: String,
    pub log_group: String,
    pub log_stream: String,
    pub events: Vec<(String, i64, Range<usize>)>,
    pub written: usize,
}

/// The payload in `buffer`, its messages unescaped to the front of it; `None` for any other shape, after
/// which `buffer` may be partly rewritten.
pub(super) fn in_place(buffer: &mut [u8]) -> Option<Read> {
    let mut at = Cursor::new(buffer);
    let (mut message_type, mut log_group, mut log_stream, mut events) = (None, None, None, None);
    let mut written = 0;
    at.members(|at, key| {
        match named(
            at,
            key,
            [b"messageType", b"logGroup", b"logStream", b"logEvents"],
        ) {
            Some(0) => once(&mut message_type, plain_string(at)?),
            Some(1) => once(&mut log_group, plain_string(at)?),
            Some(2) => once(&mut log_stream, plain_string(at)?),
            Some(_) => {
                let mut list = Vec::new();
                at.elements(|at| {
                    list.push(log_event(at, &mut written)?);
                    Some(())
                })?;
                once(&mut events, list)
            }
            _ => at.value().map(drop),
        }
    })?;
    at.at_end().then_some(())?;
    Some(Read {
        message_type: message_type?,
        log_group: log_group?,
        log_stream: log_stream?,
        events: events?,
        written,
    })
}

/// One element of `logEvents`, its message unescaped from `written` on.
fn log_event(
    at: &mut Cursor<&mut [u8]>,
    written: &mut usize,
) -> Option<(String, i64, Range<usize>)> {
    let (mut id, mut timestamp, mut message) = (None, None, None);
    at.members(
        |at, key| match named(at, key, [b"id", b"timestamp", b"message"]) {
            Some(0) => once(&mut id, plain_string(at)?),
            Some(1) => once(&mut timestamp, integer(at)?),
            Some(_) => {
                let (end, until) = unescape_literal_in_place(at.bytes, at.at, *written)?;
                at.at = end;
                let range = *written..until;
                *written = until;
                once(&mut message, range)
            }
            _ => at.value().map(drop),
        },
    )?;
    Some((id?, timestamp?, message?))
}

/// Which of `names` the key at `key` is.
fn named<const N: usize>(
    at: &Cursor<&mut [u8]>,
    key: Range<usize>,
    names: [&[u8]; N],
) -> Option<usize> {
    let key = &at.bytes[key];
    names.iter().position(|name| *name == key)
}

/// `value` in `slot`, unless a value is there already (serde refuses a member twice).
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    slot.replace(value).is_none().then_some(())
}

/// A string without escapes, as serde reads it (no raw control character, UTF-8).
fn plain_string(at: &mut Cursor<&mut [u8]>) -> Option<String> {
    let literal = at.value()?;
    let bytes = at
        .bytes
        .get(literal.start + 1..literal.end.checked_sub(1)?)?;
    let plain = at.bytes[literal.start] == b'"' && !bytes.iter().any(|&b| b < 0x20 || b == b'\\');
    plain.then_some(())?;
    String::from_utf8(bytes.to_vec()).ok()
}

/// An integer as JSON writes one (no leading zero, no fraction or exponent) that fits an `i64`.
fn integer(at: &mut Cursor<&mut [u8]>) -> Option<i64> {
    let range = at.value()?;
    let text = std::str::from_utf8(at.bytes.get(range)?).ok()?;
    let digits = text.strip_prefix('-').unwrap_or(text);
    let grammar = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    grammar.then_some(())?;
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn read_text(payload: &str) -> Option<(Read, String)> {
        let mut buffer = payload.as_bytes().to_vec();
        let read = in_place(&mut buffer)?;
        let messages = String::from_utf8(buffer[..read.written].to_vec()).ok()?;
        Some((read, messages))
    }

    #[test]
    fn the_shape_cloudwatch_writes_is_read_in_place() {
        let payload = r#" {"messageType":"DATA_MESSAGE","owner":"1","logGroup":"/aws/eks/c/cluster","logStream":"s","subscriptionFilters":["f",{"x":"]\""}],
            "logEvents":[{"id":"1","timestamp":-0,"message":"{\"a\":\"\u00e9\\\"\"}"} , {"message":"","timestamp":17,"id":"2","extra":[1]}]} "#;
        let (read, messages) = read_text(payload).unwrap();
        assert_eq!(
            (
                read.message_type.as_str(),
                read.log_group.as_str(),
                read.log_stream.as_str()
            ),
            ("DATA_MESSAGE", "/aws/eks/c/cluster", "s")
        );
        assert_eq!(
            read.events,
            [("1".into(), 0, 0..12), ("2".into(), 17, 12..12)]
        );
        assert_eq!(messages, "{\"a\":\"é\\\"\"}");
        let (read, _) = read_text(
            r#"{"messageType":"CONTROL_MESSAGE","logGroup":"","logStream":"","logEvents":[]}"#,
        )
        .unwrap();
        assert!(read.events.is_empty());
    }

    #[test]
    fn other_shapes_are_left_to_serde() {
        let event = r#"{"id":"1","timestamp":1,"message":"m"}"#;
        let with = |events: &str, extra: &str| {
            format!(
                r#"{{"messageType":"DATA_MESSAGE","logGroup":"g","logStream":"s","logEvents":[{events}]{extra}}}"#
            )
        };
        for payload in [
            with(event, r#","logStream":"t""#),
            with(event, r#","logEvents":[]"#),
            with(r#"{"id":"1","timestamp":1,"message":"m","message":"n"}"#, ""),
            with(r#"{"id":"1","timestamp":1}"#, ""),
            with(r#"{"id":"1","timestamp":1.0,"message":"m"}"#, ""),
            with(r#"{"id":"1","timestamp":01,"message":"m"}"#, ""),
            with(r#"{"id":"1","timestamp":"1","message":"m"}"#, ""),
            with(r#"{"id":"1","timestamp":99999999999999999999,"message":"m"}"#, ""),
            with(r#"{"id":"\u0031","timestamp":1,"message":"m"}"#, ""),
            with(r#"{"id":"1","timestamp":1,"message":"\x"}"#, ""),
            with(r#"{"id":"1","timestamp":1,"message":"a\u0001"}"#.replace("\\u0001", "\u{1}").as_str(), ""),
            with(r#"{"id":"1","timestamp":1,"message":{}}"#, ""),
            with(event, "").replace(r#""logGroup""#, r#""log\u0047roup""#),
            format!("{} x", with(event, "")),
            with(event, "").replace(r#""logStream":"s","#, ""),
            r#"{"logEvents":[]}"#.to_string(),
            "[]".to_string(),
        ] {
            assert!(read_text(&payload).is_none(), "{payload}");
        }
    }

    /// A payload as serde_json writes one (the struct's field order: `logEvents` last).
    fn payload(ids: &[String], messages: &[String]) -> Vec<u8> {
        let events: Vec<super::super::LogEvent> = ids
            .iter()
            .zip(messages)
            .enumerate()
            .map(|(i, (id, message))| super::super::LogEvent {
                id: id.clone(),
                timestamp: 1_760_000_000_000 + i as i64,
                message: message.clone(),
            })
            .collect();
        let payload = super::super::SubscriptionPayload {
            message_type: "DATA_MESSAGE".into(),
            owner: "111122223333".into(),
            log_group: "/aws/eks/c1/cluster".into(),
            log_stream: "kube-apiserver-audit-1".into(),
            subscription_filters: vec!["f".into()],
            log_events: events,
        };
        serde_json::to_vec(&payload).unwrap_or_default()
    }

    /// What the serde route reads from `bytes`: the parts and the messages.
    fn by_serde(bytes: &[u8]) -> Option<(Read, Vec<u8>)> {
        let mut buffer = bytes.to_vec();
        let read = super::super::with_serde(&mut buffer).ok()?;
        buffer.truncate(read.written);
        Some((read, buffer))
    }

    proptest! {
        /// On payloads with messages of any characters, and on those payloads with bytes replaced, inserted
        /// or removed among their log events: whenever the one-pass reader takes a payload, serde takes it
        /// too and reads the same parts and messages; unmutated payloads are always taken.
        #[test]
        fn the_reader_reads_what_serde_reads(
            messages in proptest::collection::vec("\\PC{0,40}|[\"\\\\/\u{0}-\u{1f}é😀<>&]{0,12}", 1..6),
            ids in proptest::collection::vec("[0-9]{1,5}|\\PC{0,3}", 6),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 0..4),
        ) {
            let clean = payload(&ids[..messages.len()], &messages);
            let mut bytes = clean.clone();
            // Only among the log events: the members the reader skips unchecked come before them.
            let events_at = clean.windows(11).position(|w| w == b"\"logEvents\"").unwrap_or(0);
            for (at, byte, kind) in &edits {
                let at = events_at + at.index(bytes.len() - events_at);
                match kind {
                    0 => bytes[at] = *byte,
                    1 => bytes.insert(at, *byte),
                    _ => {
                        bytes.remove(at);
                    }
                }
            }
            let mut buffer = bytes.clone();
            match in_place(&mut buffer) {
                Some(read) => {
                    buffer.truncate(read.written);
                    // UTF-8 is checked by the caller, over all messages at once (serde refuses it here).
                    let utf8 = std::str::from_utf8(&buffer).is_ok();
                    prop_assert_eq!(Some((read, buffer)).filter(|_| utf8), by_serde(&bytes));
                }
                None => prop_assert!(!edits.is_empty() || ids.iter().any(|id| id.chars().any(|c| c < ' ' || c == '"' || c == '\\'))),
            }
        }

        /// A message literal of escapes of every kind, valid or not (lone and reversed surrogates, unknown
        /// letters, raw control characters): unescaped exactly as serde_json reads it, or refused as it refuses.
        #[test]
        fn message_literals_unescape_as_serde_reads_them(
            pieces in proptest::collection::vec(prop_oneof![
                "[ -~&&[^\"\\\\]]{1,6}",
                "\\\\[\"\\\\/bfnrtxu0]",
                "\\\\u[0-9a-fA-F]{4}",
                "\\\\u[dD][89abAB][0-9a-f]{2}(\\\\u[dD][c-fC-F][0-9a-f]{2})?",
                "\\\\u[dD][c-f][0-9a-f]{2}",
                "[\u{0}-\u{1f}]",
                "é|😀",
            ], 0..12),
        ) {
            let literal = format!("\"{}\"", pieces.concat());
            let mut buffer = format!("{literal},").into_bytes();
            let ours = unescape_literal_in_place(&mut buffer, 0, 0)
                .and_then(|(end, until)| (end == literal.len()).then(|| String::from_utf8(buffer[..until].to_vec()).ok()).flatten());
            prop_assert_eq!(ours, serde_json::from_str::<String>(&literal).ok(), "{}", literal);
        }
    }
}
