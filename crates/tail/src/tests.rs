#![allow(clippy::unwrap_used)]
use super::*;
use std::io::Write as _;

fn line(i: usize) -> String {
    format!("{{\"auditID\":\"id-{i}\",\"stage\":\"ResponseComplete\"}}\n")
}

fn append(path: &Path, text: &str) {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

fn gzip(path: &Path) {
    let data = std::fs::read(path).unwrap();
    let gz_path = PathBuf::from(format!("{}.gz", path.display()));
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz_path).unwrap(),
        flate2::Compression::fast(),
    );
    gz.write_all(&data).unwrap();
    gz.finish().unwrap();
    std::fs::remove_file(path).unwrap();
}

/// The checkpoint once the first `lines` lines of the live file are delivered.
fn delivered_after(live: &Path, lines: usize) -> Checkpoint {
    Follower::new(live, Start::LiveFile)
        .poll(lines, 1 << 20)
        .unwrap()
        .unwrap()
        .delivered()
}

fn ids(chunk: &Chunk) -> Vec<String> {
    chunk
        .events
        .iter()
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(e.payload.text().unwrap()).unwrap()["auditID"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Everything the follower hands out until it has nothing new.
fn drain(f: &mut Follower) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(chunk) = f.poll(3, 1 << 20).unwrap() {
        out.extend(ids(&chunk));
    }
    out
}

fn expect(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("id-{i}")).collect()
}

#[test]
fn only_complete_lines_are_handed_out() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("audit.log");
    append(&live, &format!("{}{}", line(0), &line(1)[..10]));
    let mut f = Follower::new(&live, Start::LiveFile);
    assert_eq!(drain(&mut f), expect(0..1));
    append(&live, &format!("{}\n{}", &line(1)[10..], line(2)));
    assert_eq!(drain(&mut f), expect(1..3), "blank lines skipped");
}

#[test]
fn rotation_drains_the_renamed_file_then_follows_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("audit.log");
    append(&live, &(0..4).map(line).collect::<String>());
    let mut f = Follower::new(&live, Start::LiveFile);
    let first = f.poll(2, 1 << 20).unwrap().unwrap();
    assert_eq!(ids(&first), expect(0..2));
    // More lines land, then lumberjack renames, compresses and starts a new file; twice.
    append(&live, &(4..6).map(line).collect::<String>());
    let backup1 = dir.path().join("audit-2026-11-26T10-00-00.000.log");
    std::fs::rename(&live, &backup1).unwrap();
    append(&live, &(6..8).map(line).collect::<String>());
    gzip(&backup1);
    let backup2 = dir.path().join("audit-2026-11-26T10-05-00.000.log");
    std::fs::rename(&live, &backup2).unwrap();
    append(&live, &(8..9).map(line).collect::<String>());
    assert_eq!(drain(&mut f), expect(2..9));
}

#[test]
fn from_start_reads_the_backlog_in_order_compressed_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("audit.log");
    let old = dir.path().join("audit-2026-11-26T09-00-00.000.log");
    let mid = dir.path().join("audit-2026-11-26T09-30-00.000.log");
    append(&old, &(0..3).map(line).collect::<String>());
    gzip(&old);
    append(&mid, &(3..5).map(line).collect::<String>());
    append(&live, &(5..7).map(line).collect::<String>());
    // Not ours: other names in the directory.
    append(&dir.path().join("audit.log.kaf-checkpoint"), "{}");
    append(&dir.path().join("other-2026.log"), &line(99));
    assert_eq!(
        drain(&mut Follower::new(&live, Start::FromStart)),
        expect(0..7)
    );
    assert_eq!(
        drain(&mut Follower::new(&live, Start::LiveFile)),
        expect(5..7)
    );
}

#[test]
fn a_checkpoint_resumes_in_the_same_file_after_it_was_rotated_and_compressed() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("audit.log");
    append(&live, &(0..5).map(line).collect::<String>());
    let mut f = Follower::new(&live, Start::LiveFile);
    let chunk = f.poll(2, 1 << 20).unwrap().unwrap();
    let checkpoint = chunk.delivered();
    assert_eq!(checkpoint.pending_end, None);
    drop(f);
    // While stopped: rotation, compression, new lines.
    let backup = dir.path().join("audit-2026-11-26T11-00-00.000.log");
    std::fs::rename(&live, &backup).unwrap();
    gzip(&backup);
    append(&live, &(5..7).map(line).collect::<String>());
    let mut f = Follower::new(&live, Start::Checkpoint(checkpoint));
    assert_eq!(drain(&mut f), expect(2..7));
}

#[test]
fn the_batch_in_flight_at_a_crash_is_rebuilt_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("audit.log");
    append(&live, &(0..3).map(line).collect::<String>());
    let mut f = Follower::new(&live, Start::LiveFile);
    let _ = f.poll(1, 1 << 20).unwrap().unwrap();
    let in_flight = f.poll(10, 1 << 20).unwrap().unwrap();
    let pending = in_flight.pending();
    // More lines arrive before the restart: they must not join the resent batch.
    append(&live, &(3..6).map(line).collect::<String>());
    let mut f = Follower::new(&live, Start::Checkpoint(pending));
    let resent = f.poll(10, 1 << 20).unwrap().unwrap();
    let event_ids = |c: &Chunk| c.events.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    assert_eq!(event_ids(&resent), event_ids(&in_flight));
    assert_eq!((resent.start, resent.end), (in_flight.start, in_flight.end));
    assert_eq!(drain(&mut f), expect(3..6));
}

#[test]
fn truncation_in_place_restarts_at_the_beginning() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("audit.log");
    append(&live, &(0..3).map(line).collect::<String>());
    let mut f = Follower::new(&live, Start::LiveFile);
    assert_eq!(drain(&mut f), expect(0..3));
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&live)
        .unwrap();
    append(&live, &line(3));
    assert_eq!(drain(&mut f), expect(3..4));
}

#[test]
fn a_deleted_checkpointed_file_resumes_at_the_oldest_file_left() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("audit.log");
    append(&live, &(0..2).map(line).collect::<String>());
    let checkpoint = delivered_after(&live, 1);
    let backup = dir.path().join("audit-2026-11-26T12-00-00.000.log");
    std::fs::rename(&live, &backup).unwrap();
    std::fs::remove_file(&backup).unwrap();
    append(
        &dir.path().join("audit-2026-11-26T12-10-00.000.log"),
        &(2..4).map(line).collect::<String>(),
    );
    append(&live, &line(4));
    assert_eq!(
        drain(&mut Follower::new(&live, Start::Checkpoint(checkpoint))),
        expect(2..5)
    );
}

#[test]
fn event_ids_name_the_file_and_offset_and_checkpoints_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("audit.log");
    append(&live, &(0..2).map(line).collect::<String>());
    let chunk = Follower::new(&live, Start::LiveFile)
        .poll(5, 1 << 20)
        .unwrap()
        .unwrap();
    let head = files::head_hash(line(0).as_bytes());
    assert_eq!(chunk.events[1].id, format!("{head}@{}", line(0).len()));
    let path = dir.path().join("cp.json");
    assert_eq!(Checkpoint::load(&path).unwrap(), None);
    chunk.pending().save(&path).unwrap();
    assert_eq!(Checkpoint::load(&path).unwrap(), Some(chunk.pending()));
    std::fs::write(&path, "nope").unwrap();
    assert!(
        Checkpoint::load(&path)
            .unwrap_err()
            .to_string()
            .contains("cp.json")
    );
}

#[test]
fn a_rotated_file_that_vanishes_at_once_does_not_stall_the_follower() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("audit.log");
    append(&live, &(0..2).map(line).collect::<String>());
    let mut f = Follower::new(&live, Start::LiveFile);
    assert_eq!(drain(&mut f), expect(0..2));
    let backup = dir.path().join("audit-2026-11-26T13-00-00.000.log");
    std::fs::rename(&live, &backup).unwrap();
    std::fs::remove_file(&backup).unwrap();
    append(&live, &(2..4).map(line).collect::<String>());
    assert_eq!(drain(&mut f), expect(2..4));
}

#[test]
fn a_backup_compressed_while_the_checkpointed_file_is_sought_is_listed_again_not_taken_for_gone() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("audit.log");
    append(&live, &(0..5).map(line).collect::<String>());
    let checkpoint = delivered_after(&live, 2);
    let backup = dir.path().join("audit-2026-11-26T14-00-00.000.log");
    std::fs::rename(&live, &backup).unwrap();
    append(&live, &(5..7).map(line).collect::<String>());
    let mut f = Follower::new(&live, Start::Checkpoint(checkpoint));
    // Listed with its plain copy, which is gone (compressed) before it is read.
    let listed = files::candidates(&live).unwrap();
    gzip(&backup);
    assert_eq!(
        f.open_listed(&listed).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
    // Listed again: it resumes in the compressed copy, and nothing before the checkpoint is read again.
    assert_eq!(drain(&mut f), expect(2..7));
}

#[test]
fn a_dangling_backup_link_is_passed_over_not_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("audit.log");
    append(&live, &(0..3).map(line).collect::<String>());
    let checkpoint = delivered_after(&live, 1);
    std::os::unix::fs::symlink(
        dir.path().join("nowhere"),
        dir.path().join("audit-2026-11-26T10-00-00.000.log"),
    )
    .unwrap();
    assert_eq!(
        drain(&mut Follower::new(&live, Start::Checkpoint(checkpoint))),
        expect(1..3)
    );
}
