#![allow(clippy::unwrap_used)]
use super::*;
use serde_json::json;

fn event(id: &str, stage: &str) -> Item {
    Item::Event(json!({"auditID": id, "stage": stage, "verb": "get", "requestURI": "/api/v1/pods"}))
}

/// Append one event (`ResponseComplete` of request `id`).
fn append_one(spool: &Spool, id: &str) -> Appended {
    spool.append(&[event(id, "ResponseComplete")]).unwrap()
}

fn options() -> SpoolOptions {
    SpoolOptions::default()
}

#[test]
fn appended_events_survive_reopen_and_retries_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), options()).unwrap();
    let batch = [
        event("a", "RequestReceived"),
        event("a", "ResponseComplete"),
    ];
    assert_eq!(
        spool.append(&batch).unwrap(),
        Appended {
            spooled: 2,
            duplicates: 0
        }
    );
    // The apiserver resends the whole list after a failed request.
    assert_eq!(
        spool.append(&batch).unwrap(),
        Appended {
            spooled: 0,
            duplicates: 2
        }
    );
    drop(spool);

    let spool = Spool::open(dir.path(), options()).unwrap();
    assert_eq!(spool.stats().events, 2);
    let mixed = [
        event("a", "ResponseComplete"),
        event("b", "ResponseComplete"),
    ];
    assert_eq!(
        spool.append(&mixed).unwrap(),
        Appended {
            spooled: 1,
            duplicates: 1
        }
    );
    // Repeats inside one list, and events without an auditID (never deduplicated).
    let odd = [
        event("c", "ResponseComplete"),
        event("c", "ResponseComplete"),
        Item::Event(json!({"x": 1})),
        Item::Event(json!({"x": 1})),
    ];
    assert_eq!(
        spool.append(&odd).unwrap(),
        Appended {
            spooled: 3,
            duplicates: 1
        }
    );
    assert_eq!(spool.stats().segments, 3);
}

#[test]
fn a_group_in_flight_is_resent_identically_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), options()).unwrap();
    for i in 0..4 {
        spool
            .append(&[
                event(&format!("e{i}"), "ResponseComplete"),
                event(&format!("f{i}"), "ResponseComplete"),
            ])
            .unwrap();
    }
    let group = spool.next_group(5).unwrap().unwrap();
    assert_eq!(
        group.segments,
        [1, 2],
        "whole segments up to the event bound"
    );
    let ids: Vec<String> = spool
        .read_group(&group)
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, ["1:1", "1:2", "2:1", "2:2"]);
    // Appended meanwhile: must not join the group in flight.
    spool.append(&[event("late", "ResponseComplete")]).unwrap();
    assert_eq!(spool.next_group(100).unwrap().unwrap(), group);
    drop(spool);

    let spool = Spool::open(dir.path(), options()).unwrap();
    assert_eq!(spool.next_group(100).unwrap().unwrap(), group);
    let again: Vec<String> = spool
        .read_group(&group)
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(again, ids);
    spool.complete(&group).unwrap();
    assert_eq!(spool.next_group(100).unwrap().unwrap().segments, [3, 4, 5]);
}

#[test]
fn delivered_keys_are_remembered_across_restarts_within_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), options()).unwrap();
    let batch = [event("a", "ResponseComplete")];
    spool.append(&batch).unwrap();
    let group = spool.next_group(10).unwrap().unwrap();
    spool.complete(&group).unwrap();
    assert_eq!(
        spool.stats(),
        SpoolStats {
            segments: 0,
            events: 0,
            bytes: 0,
            remembered_keys: 1
        }
    );
    assert!(!dir.path().join(MANIFEST).exists());
    drop(spool);

    let spool = Spool::open(dir.path(), options()).unwrap();
    assert_eq!(
        spool.append(&batch).unwrap().duplicates,
        1,
        "journal reloaded"
    );
    assert_eq!(spool.next_group(10).unwrap(), None);
    drop(spool);

    // A zero window forgets at once: the journal entry is too old when reopened a second later (on a
    // clock set ahead, instead of waiting).
    let short = SpoolOptions {
        dedupe_window: Duration::ZERO,
        clock: Clock::Ahead(2),
        ..options()
    };
    let spool = Spool::open(dir.path(), short).unwrap();
    assert_eq!(spool.append(&batch).unwrap().spooled, 1);
}

#[test]
fn capacity_bounds_what_is_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(
        dir.path(),
        SpoolOptions {
            dedupe_capacity: 2,
            ..options()
        },
    )
    .unwrap();
    for id in ["a", "b", "c"] {
        spool.append(&[event(id, "ResponseComplete")]).unwrap();
    }
    assert_eq!(spool.stats().remembered_keys, 2);
    assert_eq!(append_one(&spool, "a").spooled, 1, "oldest forgotten");
    assert_eq!(append_one(&spool, "c").duplicates, 1);
}

#[test]
fn a_full_spool_refuses_without_writing_and_recovers_after_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(
        dir.path(),
        SpoolOptions {
            max_bytes: 10,
            ..options()
        },
    )
    .unwrap();
    spool.append(&[event("a", "ResponseComplete")]).unwrap();
    let err = spool.append(&[event("b", "ResponseComplete")]).unwrap_err();
    assert!(matches!(err, SpoolError::Full { max: 10, .. }), "{err}");
    assert_eq!(spool.stats().segments, 1);
    // Refused events are not remembered: the apiserver's retry must be accepted later.
    let group = spool.next_group(10).unwrap().unwrap();
    spool.complete(&group).unwrap();
    assert_eq!(append_one(&spool, "b").spooled, 1);
}

#[test]
fn torn_writes_are_ignored_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), options()).unwrap();
    spool.append(&[event("a", "ResponseComplete")]).unwrap();
    drop(spool);
    // A crash during a segment write leaves a temp file; during a journal append, a cut line.
    std::fs::write(
        dir.path().join("seg-00000000000000000002.tmp"),
        "{\"auditID\":\"b\"",
    )
    .unwrap();
    std::fs::write(dir.path().join(JOURNAL), "123 abc\nnot a line\n").unwrap();
    std::fs::write(dir.path().join(MANIFEST), "{\"segments\":[7]}").unwrap();
    let spool = Spool::open(dir.path(), options()).unwrap();
    assert!(!dir.path().join("seg-00000000000000000002.tmp").exists());
    assert_eq!(spool.stats().segments, 1);
    assert_eq!(
        spool.next_group(10).unwrap().unwrap().segments,
        [1],
        "stale manifest dropped"
    );
    assert_eq!(append_one(&spool, "b").spooled, 1);
}

#[test]
fn segments_hold_one_compact_event_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), options()).unwrap();
    let pretty: Value = serde_json::from_str(
        "{\n  \"auditID\": \"p\",\n  \"stage\": \"ResponseComplete\",\n  \"note\": \"a\\nb\"\n}",
    )
    .unwrap();
    spool
        .append(&[Item::Event(pretty.clone()), event("q", "ResponseComplete")])
        .unwrap();
    let group = spool.next_group(10).unwrap().unwrap();
    let events = spool.read_group(&group).unwrap();
    assert_eq!(events.len(), 2);
    match &events[0].payload {
        Payload::Text(t) => assert_eq!(serde_json::from_str::<Value>(t).unwrap(), pretty),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_reused_audit_id_with_other_timestamps_is_spooled() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), options()).unwrap();
    let at = |t: &str| {
        Item::Event(
            json!({"auditID": "reused", "stage": "ResponseComplete", "requestReceivedTimestamp": t, "stageTimestamp": t}),
        )
    };
    spool.append(&[at("2026-11-26T10:00:00.000001Z")]).unwrap();
    assert_eq!(
        spool
            .append(&[at("2026-11-26T10:00:00.000001Z")])
            .unwrap()
            .duplicates,
        1
    );
    assert_eq!(
        spool
            .append(&[at("2026-11-26T10:00:09.000001Z")])
            .unwrap()
            .spooled,
        1
    );
}

/// An item the JSON parser could not take is spooled as its raw text, handed back unchanged, and
/// recognised as a repeat when the apiserver resends the batch, after a restart too.
#[test]
fn an_unparsed_item_is_spooled_raw_and_deduplicated_by_its_text() {
    let dir = tempfile::tempdir().unwrap();
    let raw = format!(
        "{{\"auditID\":\"deep\",\"requestObject\":{}{}}}",
        "[".repeat(200),
        "]".repeat(200)
    );
    let item = Item::Unparsed {
        raw: raw.clone(),
        reason: "recursion limit exceeded".into(),
    };
    let spool = Spool::open(dir.path(), options()).unwrap();
    let batch = [event("a", "ResponseComplete"), item.clone()];
    assert_eq!(spool.append(&batch).unwrap().spooled, 2);
    drop(spool);
    let spool = Spool::open(dir.path(), options()).unwrap();
    assert_eq!(spool.append(&batch).unwrap().duplicates, 2);
    let group = spool.next_group(10).unwrap().unwrap();
    let events = spool.read_group(&group).unwrap();
    assert_eq!(events[1].payload, Payload::Text(raw));
}
