//! gzip for request bodies, with the compressor kept from one request to the next.
//!
//! A new deflate stream allocates and zeroes about 256 KiB of state (window, chains, hash heads). For the
//! one-record bodies of a quiet cluster that was a large part of what compressing cost, on every request
//! (issue "Small invocations"). A [`Compressor`] resets its stream instead, and keeps the buffer records are
//! staged in; [`Compressors`] lends one to each request in flight. The gzip wrapper (RFC 1952: a fixed
//! 10-byte header, then the deflate data, then CRC-32 and length) is written here around a raw deflate stream.

use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use std::io;
use std::sync::Mutex;

/// Records are copied into this much staging before being deflated: one call per few records, not per
/// record, without ever holding a whole uncompressed body.
const STAGING: usize = 128 * 1024;

/// A deflate stream at one level, and its staging buffer, reused for body after body.
pub struct Compressor {
    level: u32,
    deflate: Compress,
    staging: Vec<u8>,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("level", &self.level)
            .finish_non_exhaustive()
    }
}

impl Compressor {
    /// `level` 0–9 (higher is clamped to 9).
    pub fn new(level: u32) -> Self {
        let level = level.min(9);
        Self {
            level,
            deflate: Compress::new(Compression::new(level), false),
            staging: Vec::new(),
        }
    }

    /// The concatenation of `pieces` as one gzip member; `expected` is the uncompressed size, a capacity hint.
    pub fn gzip<'p>(
        &mut self,
        pieces: impl IntoIterator<Item = &'p [u8]>,
        expected: usize,
    ) -> io::Result<Vec<u8>> {
        self.deflate.reset();
        self.staging.clear();
        let mut out = Vec::with_capacity(expected / 6 + 64);
        out.extend_from_slice(&self.header());
        let mut crc = Crc::new();
        for piece in pieces {
            if self.staging.len() + piece.len() > STAGING {
                self.flush(&mut out, &mut crc, FlushCompress::None)?;
            }
            if piece.len() >= STAGING {
                // A record larger than the staging buffer goes straight in.
                crc.update(piece);
                deflate(&mut self.deflate, piece, &mut out, FlushCompress::None)?;
            } else {
                self.staging.extend_from_slice(piece);
            }
        }
        self.flush(&mut out, &mut crc, FlushCompress::Finish)?;
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&crc.amount().to_le_bytes());
        // A very large body does not keep its staging memory for the small ones after it.
        self.staging.shrink_to(STAGING);
        Ok(out)
    }

    fn flush(&mut self, out: &mut Vec<u8>, crc: &mut Crc, mode: FlushCompress) -> io::Result<()> {
        crc.update(&self.staging);
        deflate(&mut self.deflate, &self.staging, out, mode)?;
        self.staging.clear();
        Ok(())
    }

    /// What flate2's `GzEncoder` writes: no name, no time, OS "unknown", and the extra flags its level implies.
    fn header(&self) -> [u8; 10] {
        let extra_flags = match self.level {
            9 => 2,
            0 | 1 => 4,
            _ => 0,
        };
        [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, extra_flags, 255]
    }
}

/// Deflate all of `input` into `out`, growing it as needed; with `Finish`, end the stream.
fn deflate(
    stream: &mut Compress,
    mut input: &[u8],
    out: &mut Vec<u8>,
    mode: FlushCompress,
) -> io::Result<()> {
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(4096));
        }
        let before = stream.total_in();
        let status = stream
            .compress_vec(input, out, mode)
            .map_err(io::Error::other)?;
        let consumed = usize::try_from(stream.total_in() - before).unwrap_or(input.len());
        input = input.get(consumed..).unwrap_or_default();
        match (status, mode) {
            (Status::StreamEnd, _) => return Ok(()),
            // Everything taken: what the stream holds back comes out with later input, or at the finish.
            (_, FlushCompress::None) if input.is_empty() => return Ok(()),
            _ => {}
        }
    }
}

/// Compressors for the requests in flight: each request borrows one and gives it back.
#[derive(Debug)]
pub struct Compressors {
    level: u32,
    idle: Mutex<Vec<Compressor>>,
}

impl Compressors {
    pub fn new(level: u32) -> Self {
        Self {
            level,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Run `f` with an idle compressor, or a new one when every one is in use.
    pub fn with<R>(&self, f: impl FnOnce(&mut Compressor) -> R) -> R {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut compressor = idle.unwrap_or_else(|| Compressor::new(self.level));
        let result = f(&mut compressor);
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(compressor);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;
    use std::io::Read as _;

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// One compressor, reused for body after body of any sizes (pieces small, around the staging size and
        /// larger, empty bodies too): each gunzips to exactly its pieces.
        #[test]
        fn a_reused_compressor_gives_each_body_exactly(
            bodies in prop::collection::vec(
                prop::collection::vec(
                    prop_oneof![0usize..64, 1_000usize..5_000, (STAGING - 10)..(STAGING + 10), (2 * STAGING)..(2 * STAGING + 5)],
                    0..6,
                ),
                1..5,
            ),
            level in 0u32..10,
        ) {
            let mut compressor = Compressor::new(level);
            for (n, sizes) in bodies.iter().enumerate() {
                // Text that compresses, with a different byte per piece so order matters.
                let pieces: Vec<Vec<u8>> = sizes
                    .iter()
                    .enumerate()
                    .map(|(i, len)| {
                        let text = b"{\"verb\":\"get\",\"code\":200}";
                        (0..*len).map(|j| text[(i + j + n) % text.len()]).collect()
                    })
                    .collect();
                let expected: Vec<u8> = pieces.concat();
                let gz = compressor.gzip(pieces.iter().map(Vec::as_slice), expected.len()).unwrap();
                prop_assert_eq!(gunzip(&gz), expected);
            }
        }
    }

    #[test]
    fn the_header_and_trailer_are_what_gzip_readers_expect() {
        let mut compressor = Compressor::new(3);
        let gz = compressor.gzip([&b"[{\"a\":1}]"[..]], 9).unwrap();
        assert_eq!(&gz[..4], &[0x1f, 0x8b, 8, 0]);
        assert_eq!(&gz[gz.len() - 4..], &9u32.to_le_bytes());
        // Byte for byte what flate2's encoder writes at the same level.
        let mut theirs = flate2::write::GzEncoder::new(Vec::new(), Compression::new(3));
        std::io::Write::write_all(&mut theirs, b"[{\"a\":1}]").unwrap();
        assert_eq!(gz, theirs.finish().unwrap());
    }

    #[test]
    fn compressors_are_lent_and_given_back() {
        let compressors = Compressors::new(3);
        let idle = || compressors.idle.lock().unwrap().len();
        compressors.with(|_| ());
        compressors.with(|_| ());
        assert_eq!(
            idle(),
            1,
            "one request after another: one compressor, reused"
        );
        compressors.with(|_| compressors.with(|_| ()));
        assert_eq!(idle(), 2, "two in flight at once: two, both given back");
    }
}
