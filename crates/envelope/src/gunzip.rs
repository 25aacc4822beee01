//! Bounded gunzip: every gzip input (CloudWatch `awslogs.data`, replay files) expands through here, so a
//! hostile or broken stream fails alone with [`EnvelopeError::TooLarge`] once it passes the limit, and memory
//! never grows past the limit (a 1.4 MB bomb used to reach 1.9 GB). Multi-member streams are read whole
//! (Kinesis and Firehose concatenate members).

use crate::EnvelopeError;
use std::io::Read as _;

/// The default bound for one CloudWatch subscription payload: Lambda's async payloads are at most 1 MB of
/// base64 (≈ 750 KB of gzip), and audit JSON compresses 10–30×, so real payloads stay well below 32 MiB.
pub const DEFAULT_PAYLOAD_LIMIT: usize = 64 * 1024 * 1024;

/// `compressed` decompressed, or an error when it is not gzip or expands past `limit` bytes.
///
/// Memory stays near the output size: the buffer is sized from the gzip trailer (exact for the usual single
/// member), and only a stream that outgrows it is read on in 4 MiB chunks and joined once at the end. A
/// doubling `Vec` would reach twice the limit before failing.
pub fn gunzip(compressed: &[u8], limit: usize) -> Result<Vec<u8>, EnvelopeError> {
    const CHUNK: usize = 4 * 1024 * 1024;
    // `&[u8]` is already buffered: the bufread decoder reads it in place, without a copy through a BufReader.
    let mut decoder = flate2::bufread::MultiGzDecoder::new(compressed).take(limit as u64 + 1);
    let first_len = size_hint(compressed).min(limit).saturating_add(1);
    let mut first = Vec::with_capacity(first_len);
    (&mut decoder)
        .take(first_len as u64)
        .read_to_end(&mut first)
        .map_err(EnvelopeError::Gzip)?;
    let mut total = first.len();
    let mut rest = Vec::new();
    if total == first_len {
        // More than the trailer announced (several members, or a lying trailer): read on, bounded.
        loop {
            let mut chunk = Vec::with_capacity(CHUNK);
            (&mut decoder)
                .take(CHUNK as u64)
                .read_to_end(&mut chunk)
                .map_err(EnvelopeError::Gzip)?;
            if chunk.is_empty() {
                break;
            }
            total += chunk.len();
            rest.push(chunk);
        }
    }
    if total > limit {
        return Err(EnvelopeError::TooLarge { limit });
    }
    if rest.is_empty() {
        return Ok(first);
    }
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&first);
    drop(first);
    for chunk in rest {
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The uncompressed size a gzip stream announces (its last member's ISIZE, mod 4 GiB); a guess from the
/// compressed size when there is no trailer. Only a capacity hint: the caller caps it at the limit.
fn size_hint(compressed: &[u8]) -> usize {
    match compressed
        .len()
        .checked_sub(4)
        .and_then(|at| compressed.get(at..))
    {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]) as usize,
        _ => compressed.len().saturating_mul(8),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write as _;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::best());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn a_bomb_stops_at_the_limit_and_honest_data_passes() {
        // 4 MiB of zeros compress to ~4 KB, repeated as 8 members: stopped after limit + 1 bytes.
        let bomb = gzip(&vec![0u8; 4 * 1024 * 1024]).repeat(8);
        assert!(bomb.len() < 50_000);
        assert!(matches!(
            gunzip(&bomb, 1024 * 1024),
            Err(EnvelopeError::TooLarge { limit: 1_048_576 })
        ));
        let text = b"{\"kind\":\"Event\"}".repeat(1000);
        assert_eq!(gunzip(&gzip(&text), text.len()).unwrap(), text);
        assert!(gunzip(&gzip(&text), text.len() - 1).is_err());
        // Two members, as Firehose writes them.
        let mut two = gzip(b"ab");
        two.extend(gzip(b"cd"));
        assert_eq!(gunzip(&two, 10).unwrap(), b"abcd");
        assert!(matches!(
            gunzip(b"not gzip", 10),
            Err(EnvelopeError::Gzip(_))
        ));
    }
}
