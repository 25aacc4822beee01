//! Splitting records into upload requests within the API limits, and what each request carries besides the
//! records: `Log-Size` (licence accounting) and the deterministic `upload-id`.

use crate::gzip::Compressor;
use kaf_pipeline::OutRecord;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::ops::Range;

/// API limits per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_records: usize,
    /// Uncompressed bytes of the JSON array.
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_records: 500,
            max_bytes: 5_000_000,
        }
    }
}

/// Records grouped into requests.
#[derive(Debug, Clone)]
pub struct BatchPlan<'a> {
    records: &'a [OutRecord],
    pub requests: Vec<Range<usize>>,
}

impl<'a> BatchPlan<'a> {
    pub fn new(records: &'a [OutRecord], limits: Limits) -> Self {
        let mut requests = Vec::new();
        let mut start = 0;
        let mut bytes = 2; // the brackets
        for (i, record) in records.iter().enumerate() {
            let len = record.json.len();
            let added = len + usize::from(i > start);
            if i > start && (i - start >= limits.max_records || bytes + added > limits.max_bytes) {
                requests.push(start..i);
                start = i;
                bytes = 2 + len;
            } else {
                bytes += added;
            }
        }
        if start < records.len() {
            requests.push(start..records.len());
        }
        Self { records, requests }
    }

    /// The JSON array body for `range`.
    pub fn body(&self, range: Range<usize>) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.body_len(range.clone()));
        // Writing into a Vec cannot fail.
        let _ = self.write_body(range, &mut body);
        body
    }

    /// The body for `range`, gzip'd at `level`, and its uncompressed length.
    pub fn gzip_body(&self, range: Range<usize>, level: u32) -> std::io::Result<(Vec<u8>, usize)> {
        self.gzip_body_with(range, &mut Compressor::new(level))
    }

    /// [`BatchPlan::gzip_body`] with a compressor kept across requests. Records go to it piece by piece,
    /// never as a whole uncompressed body.
    pub fn gzip_body_with(
        &self,
        range: Range<usize>,
        compressor: &mut Compressor,
    ) -> std::io::Result<(Vec<u8>, usize)> {
        let len = self.body_len(range.clone());
        let records = &self.records[range];
        let pieces = std::iter::once(&b"["[..])
            .chain(records.iter().enumerate().flat_map(|(i, record)| {
                let comma: &[u8] = if i > 0 { b"," } else { b"" };
                [comma, record.json.as_bytes()]
            }))
            .chain(std::iter::once(&b"]"[..]));
        Ok((compressor.gzip(pieces, len)?, len))
    }

    /// Bytes of the body for `range`: the records, a comma between each two, and the brackets.
    fn body_len(&self, range: Range<usize>) -> usize {
        let parts = &self.records[range];
        2 + parts.iter().map(|r| r.json.len()).sum::<usize>() + parts.len().saturating_sub(1)
    }

    fn write_body(&self, range: Range<usize>, out: &mut impl Write) -> std::io::Result<()> {
        out.write_all(b"[")?;
        for (i, part) in self.records[range].iter().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            out.write_all(part.json.as_bytes())?;
        }
        out.write_all(b"]")
    }

    pub fn log_size(&self, range: Range<usize>) -> u64 {
        self.records[range].iter().map(|r| r.billed_bytes).sum()
    }
}

/// 32 hex characters naming one request: the same records from the same source always get the same id, so
/// a redelivered invocation (Lambda retry, replay) resends the ids the receiver may already have seen.
pub fn upload_id(
    source_key: &str,
    first_event: &str,
    last_event: &str,
    count: usize,
    part: &str,
) -> String {
    let mut h = Sha256::new();
    for piece in [
        source_key,
        first_event,
        last_event,
        &count.to_string(),
        part,
    ] {
        h.update(piece.as_bytes());
        h.update([0u8]);
    }
    h.finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn rec(i: usize, pad: usize) -> OutRecord {
        OutRecord::new(
            i.to_string(),
            json!({"n": i, "pad": "x".repeat(pad), "_zl_timestamp": 1, "s247agentuid": "c"})
                .as_object()
                .unwrap(),
            &crate::format::SITE24X7,
        )
    }

    #[test]
    fn requests_respect_both_limits_and_cover_every_record_once_in_order() {
        for (count, pad, limits) in [
            (1200, 10, Limits::default()),
            (
                50,
                900,
                Limits {
                    max_records: 500,
                    max_bytes: 10_000,
                },
            ),
            (
                7,
                5,
                Limits {
                    max_records: 3,
                    max_bytes: 1_000_000,
                },
            ),
            (
                1,
                5000,
                Limits {
                    max_records: 10,
                    max_bytes: 100,
                },
            ),
        ] {
            let records: Vec<_> = (0..count).map(|i| rec(i, pad)).collect();
            let plan = BatchPlan::new(&records, limits);
            let mut next = 0;
            for r in &plan.requests {
                assert_eq!(r.start, next);
                next = r.end;
                assert!(r.len() <= limits.max_records);
                let body = plan.body(r.clone());
                assert!(
                    body.len() <= limits.max_bytes || r.len() == 1,
                    "{} > {}",
                    body.len(),
                    limits.max_bytes
                );
                let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(parsed.as_array().unwrap().len(), r.len());
            }
            assert_eq!(next, count);
        }
    }

    #[test]
    fn the_gzip_body_is_the_body() {
        use std::io::Read as _;
        // Small and large records, so the staging buffer is flushed and bypassed.
        let records: Vec<_> = (0..300)
            .map(|i| rec(i, if i % 50 == 0 { 200_000 } else { 300 }))
            .collect();
        let plan = BatchPlan::new(
            &records,
            Limits {
                max_records: 500,
                max_bytes: usize::MAX,
            },
        );
        for range in [0..300, 5..6, 0..0] {
            let (gz, len) = plan.gzip_body(range.clone(), 3).unwrap();
            let mut body = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut body)
                .unwrap();
            assert_eq!(body, plan.body(range));
            assert_eq!(len, body.len());
        }
    }

    #[test]
    fn upload_ids_are_deterministic_and_distinct() {
        let a = upload_id("c/s", "1", "9", 9, "0");
        assert_eq!(a, upload_id("c/s", "1", "9", 9, "0"));
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, upload_id("c/s", "1", "9", 9, "1"));
        assert_ne!(a, upload_id("c/t", "1", "9", 9, "0"));
    }
}
