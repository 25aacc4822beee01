//! Property tests for every decoder (bounded case counts, so they run in `cargo test`): on arbitrary bytes
//! and on mutated real shapes, no decoder panics, and what a decoder accepts, it accounts for (every log
//! event, record or item is passed on or counted).

#![allow(clippy::unwrap_used)]

use crate::azure::{self, Invocation};
use crate::cloudwatch::Decoded;
use crate::sniff::{FileContext, decode_file};
use crate::webhook::{Item, event_list_items};
use crate::{EnvelopeStats, gunzip};
use base64::Engine as _;
use proptest::prelude::*;
use serde_json::{Value, json};
use std::io::Write as _;

const DEMO: &str =
    include_str!("../../../tests/fixtures/samples/liggitt__audit2rbac/testdata__demo.log");

fn demo_events() -> Vec<String> {
    DEMO.lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap_or_default();
    enc.finish().unwrap_or_default()
}

fn subscription(stream: &str, messages: &[String]) -> Value {
    json!({"messageType": "DATA_MESSAGE", "owner": "111122223333", "logGroup": "/aws/eks/c1/cluster",
           "logStream": stream, "subscriptionFilters": ["f"],
           "logEvents": messages.iter().enumerate().map(|(i, m)| json!({"id": format!("{i}"), "timestamp": 1_760_000_000_000_i64 + i as i64, "message": m})).collect::<Vec<_>>()})
}

fn lambda_event(payload: &[u8]) -> Vec<u8> {
    let data = base64::engine::general_purpose::STANDARD.encode(gzip(payload));
    json!({"awslogs": {"data": data}}).to_string().into_bytes()
}

/// `bytes` with up to a few bytes flipped, inserted or removed at random places.
fn mutated(bytes: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = bytes.len().max(1);
    proptest::collection::vec((0..len, any::<u8>(), 0..3u8), 0..6).prop_map(move |edits| {
        let mut out = bytes.clone();
        for (at, byte, kind) in edits {
            let at = at.min(out.len());
            match kind {
                0 if at < out.len() => out[at] = byte,
                1 => out.insert(at, byte),
                _ if at < out.len() => {
                    out.remove(at);
                }
                _ => {}
            }
        }
        out
    })
}

const CTX: FileContext<'static> = FileContext {
    origin: "prop",
    cluster: "local",
    stream_prefix: "kube-apiserver-audit-",
    max_decompressed: 1 << 22,
};

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn no_decoder_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Decoded::from_lambda_event(&bytes, 1 << 20);
        let _ = decode_file(&bytes, &CTX, &mut EnvelopeStats::default());
        let _ = decode_file(&gzip(&bytes), &CTX, &mut EnvelopeStats::default());
        let _ = azure::split_request(bytes.clone(), "events");
        let _ = azure::split(Invocation { bodies: vec![Ok(String::from_utf8_lossy(&bytes).into_owned())], ..Invocation::default() });
        let _ = event_list_items(&bytes);
        let _ = gunzip::gunzip(&bytes, 1 << 16);
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = crate::escape::unescape_json_string(text);
        }
    }

    /// A real Lambda event, mutated: decodes or fails cleanly; when it decodes, every log event of an audit
    /// stream is in the batch.
    #[test]
    fn mutated_lambda_events_decode_or_fail_cleanly(
        event in mutated(lambda_event(subscription("kube-apiserver-audit-1", &demo_events()[..5]).to_string().as_bytes())),
        payload in mutated(subscription("kube-apiserver-audit-1", &demo_events()[..5]).to_string().into_bytes()),
    ) {
        for bytes in [event, lambda_event(&payload)] {
            if let Ok(decoded) = Decoded::from_lambda_event(&bytes, 1 << 20) {
                let sent = decoded.events.len() as u64;
                // Every message is valid JSON text of what the payload held.
                for event in &decoded.events {
                    prop_assert!(event.buffer.get(event.range.clone()).is_some());
                }
                let mut stats = EnvelopeStats::default();
                let batch = decoded.into_batch("kube-apiserver-audit-", &mut stats);
                prop_assert_eq!(
                    batch.events.len() as u64 + stats.skipped_stream_events + stats.control_messages.min(1) * sent,
                    sent
                );
            }
        }
    }

    /// Messages unescaped in place come out as the payload held them, whatever characters they carry.
    #[test]
    fn messages_unescape_in_place_to_what_was_sent(
        messages in proptest::collection::vec("\\PC{0,40}|[\"\\\\/\u{0}-\u{1f}é😀<>&]{0,12}", 0..20),
    ) {
        let data = base64::engine::general_purpose::STANDARD.encode(gzip(subscription("kube-apiserver-audit-1", &messages).to_string().as_bytes()));
        let decoded = Decoded::from_awslogs_data(&data, 1 << 20).unwrap();
        let batch = decoded.into_batch("kube-apiserver-audit-", &mut EnvelopeStats::default());
        let texts: Vec<&str> = batch.events.iter().map(|e| e.payload.text().unwrap()).collect();
        prop_assert_eq!(texts, messages.iter().map(String::as_str).collect::<Vec<_>>());
    }

    /// Mutated JSON lines: every non-blank line becomes one event (the pipeline judges it).
    #[test]
    fn mutated_lines_become_one_event_each(text in mutated(DEMO.as_bytes()[..4000].to_vec())) {
        let text = String::from_utf8_lossy(&text).into_owned();
        if let Ok(batches) = decode_file(text.as_bytes(), &CTX, &mut EnvelopeStats::default()) {
            let events: usize = batches.iter().map(|b| b.events.len()).sum();
            let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
            // Unless a mutation made it one JSON document or a cloud shape, a file of lines gives one
            // event per line.
            let other_shape = serde_json::from_str::<Value>(&text).is_ok()
                || ["awslogs", "logEvents", "records", "eventId", "category"].iter().any(|k| text.contains(k));
            prop_assert!(other_shape || events == lines, "{} events from {} lines", events, lines);
        }
    }

    /// Generated invocations: every body is read or set aside, every record element counted once.
    #[test]
    fn every_body_and_record_of_an_invocation_is_accounted_for(
        bodies in proptest::collection::vec(
            prop_oneof![
                (1..4usize, 0..2usize).prop_map(|(records, junk)| Some((records, junk))),
                Just(None),
            ],
            0..6,
        ),
        sequence in proptest::collection::vec(0..3i64, 0..6),
        as_string in any::<bool>(),
    ) {
        let event = &demo_events()[0];
        let (mut texts, mut objects, mut not_objects, mut bad) = (Vec::new(), 0u64, 0u64, 0usize);
        for body in &bodies {
            match body {
                Some((records, junk)) => {
                    let mut items: Vec<Value> = (0..*records)
                        .map(|_| json!({"category": "kube-audit", "resourceId": "/X/MANAGEDCLUSTERS/C1",
                                        "time": "2026-04-20T16:29:59.995191417Z",
                                        "properties": {"log": format!("{event}\n")}}))
                        .collect();
                    items.extend((0..*junk).map(|i| json!(i)));
                    objects += *records as u64;
                    not_objects += *junk as u64;
                    texts.push(json!({"records": items}).to_string());
                }
                None => {
                    bad += 1;
                    texts.push("{\"records\": [ not json".to_string());
                }
            }
        }
        let events = if as_string { json!(serde_json::to_string(&texts).unwrap_or_default()) } else { json!(texts) };
        let request = json!({"Data": {"events": events}, "Metadata": {
            "PartitionContext": {"PartitionId": "0"}, "SequenceNumberArray": serde_json::to_string(&sequence).unwrap_or_default()}});
        let split = azure::split_request(request.to_string().into_bytes(), "events").unwrap();
        prop_assert_eq!(split.bodies, bodies.len());
        prop_assert_eq!((split.stats.records, split.stats.not_records, split.stats.bad_bodies.len()), (objects, not_objects, bad));
        let ids: std::collections::BTreeSet<&str> = split.groups.iter().flat_map(|g| g.batch.events.iter().map(|e| e.id.as_str())).collect();
        prop_assert_eq!(ids.len() as u64, objects, "ids are unique");
    }

    /// Every item of an EventList comes back, parsed or kept raw, whatever it holds.
    #[test]
    fn every_webhook_item_is_kept(
        items in proptest::collection::vec(
            prop_oneof![
                Just(demo_events()[1].clone()),
                Just(format!("{{\"auditID\":\"d\",\"x\":{}{}}}", "[".repeat(150), "]".repeat(150))),
                Just("{\"auditID\":\"n\",\"x\":-1e999}".to_string()),
                Just("\"a string\"".to_string()),
                Just("17".to_string()),
            ],
            0..10,
        ),
    ) {
        let body = format!("{{\"kind\":\"EventList\",\"items\":[{}]}}", items.join(","));
        let parsed = event_list_items(body.as_bytes()).unwrap();
        prop_assert_eq!(parsed.len(), items.len());
        for (item, text) in parsed.iter().zip(&items) {
            match item {
                Item::Event(v) => prop_assert_eq!(v, &serde_json::from_str::<Value>(text).unwrap()),
                Item::Unparsed { raw, .. } => prop_assert_eq!(raw, text),
            }
        }
    }

    /// Our JSON string unescape reads what serde_json reads, and refuses what it refuses.
    #[test]
    fn json_strings_unescape_like_serde(text in "\\PC{0,30}", raw in "\"([ -~]|[\\x00-\\x1f]|\\\\[nu\"]){0,20}\"") {
        let literal = serde_json::to_string(&text).unwrap();
        prop_assert_eq!(crate::escape::unescape_json_string(&literal), Some(text));
        prop_assert_eq!(crate::escape::unescape_json_string(&raw), serde_json::from_str::<String>(&raw).ok());
    }
}
