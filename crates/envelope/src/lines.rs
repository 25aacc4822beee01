//! Plain audit JSON lines: the kube-apiserver log backend's format and what most tools export.
//! Each non-blank line is one event; a bad line is the pipeline's business (counted), not the file's.

use crate::{Payload, RawEvent};

/// Split `text` into events, one per non-blank line, with `origin:line` ids (1-based lines).
pub fn events(text: &str, origin: &str) -> Vec<RawEvent> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| RawEvent {
            id: format!("{origin}:{}", i + 1),
            envelope_time_ms: None,
            payload: Payload::Text(line.to_string()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_lines_are_skipped_and_ids_keep_line_numbers() {
        let events = events("{\"a\":1}\n\n  \n{\"b\":2}\r\n", "f.log");
        let ids: Vec<_> = events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["f.log:1", "f.log:4"]);
        assert_eq!(events[1].payload, Payload::Text("{\"b\":2}".into()));
    }
}
