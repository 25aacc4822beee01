//! The pieces of JSON string escapes every unescaper shares (`contracts` payloads nest JSON in JSON strings,
//! so several places undo escapes without building values), and the searches for where a string's plain run
//! and a number or literal end, which the pipeline's JSON reader uses too.

/// The byte a one-character escape (`\n`, `\"`, …) stands for; `None` for `u` and anything invalid.
pub(crate) fn short_escape(escape: u8) -> Option<u8> {
    Some(match escape {
        b'"' => b'"',
        b'\\' => b'\\',
        b'/' => b'/',
        b'b' => 0x08,
        b'f' => 0x0c,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        _ => return None,
    })
}

/// Exactly four hex digits (no sign, which `from_str_radix` alone would take) as a UTF-16 code unit.
pub(crate) fn hex_unit(digits: &[u8]) -> Option<u16> {
    if digits.len() != 4 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u16::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// The character of a `\u` escape with code unit `first`; a high surrogate takes its low one from `low` (the
/// next `\u` escape). `None` for a lone or mismatched surrogate.
pub(crate) fn utf16_char(first: u16, low: impl FnOnce() -> Option<u16>) -> Option<char> {
    if !(0xD800..0xDC00).contains(&first) {
        return char::from_u32(u32::from(first));
    }
    let low = low()?;
    if !(0xDC00..0xE000).contains(&low) {
        return None;
    }
    char::from_u32(0x10000 + ((u32::from(first) - 0xD800) << 10) + (u32::from(low) - 0xDC00))
}

const ONES: u64 = u64::MAX / 255;
const HIGH_BITS: u64 = ONES << 7;

/// The high bit set in (at least) the lowest byte of `word` equal to `byte`, and possibly in later ones.
fn has_byte(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x
}

/// The index of the first byte `is` picks, eight bytes at a time: `flags` sets the high bit of (at least) the
/// lowest such byte of a little-endian word.
#[inline(always)]
fn first_flagged(
    bytes: &[u8],
    flags: impl Fn(u64) -> u64,
    is: impl Fn(u8) -> bool,
) -> Option<usize> {
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().ok()?);
        // Only the lowest flag is exact (a borrow can flag a later byte), and only the lowest is read.
        let found = flags(word) & HIGH_BITS;
        if found != 0 {
            return Some(offset + found.trailing_zeros() as usize / 8);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| is(b))
        .map(|i| offset + i)
}

/// The index of the first `"`, `\` or control character in `bytes`, eight bytes at a time (the test
/// serde_json makes): where a JSON string's plain run ends.
pub fn first_special(bytes: &[u8]) -> Option<usize> {
    first_flagged(
        bytes,
        |word| {
            (word.wrapping_sub(ONES * 0x20) & !word) | has_byte(word, b'"') | has_byte(word, b'\\')
        },
        |b| b < 0x20 || b == b'"' || b == b'\\',
    )
}

/// The text a JSON string literal (`raw`, quotes included) stands for, or `None` if it is not one. Unlike
/// serde's, whose scratch buffer grows by doubling (a 34 MB `Data.events` then briefly takes 96 MB), the
/// output is allocated once: it is never longer than the literal; and plain runs are found eight bytes at a
/// time. Refuses what serde refuses (invalid escapes, lone surrogates, a quote or raw control character).
pub fn unescape_json_string(raw: &str) -> Option<String> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut rest = inner;
    while let Some(at) = first_special(rest.as_bytes()) {
        out.push_str(&rest[..at]);
        let bytes = rest.as_bytes();
        if bytes[at] != b'\\' {
            // A quote inside, or a raw control character (serde refuses them anywhere).
            return None;
        }
        let escape = *bytes.get(at + 1)?;
        rest = &rest[at + 2..];
        if escape != b'u' {
            out.push(char::from(short_escape(escape)?));
            continue;
        }
        let unit = |text: &str| hex_unit(text.as_bytes().get(..4)?);
        let first = unit(rest)?;
        rest = &rest[4..];
        let c = utf16_char(first, || {
            let low = rest.strip_prefix("\\u").and_then(unit)?;
            rest = &rest[6..];
            Some(low)
        })?;
        out.push(c);
    }
    out.push_str(rest);
    Some(out)
}

/// The index of the first `"` or `\` in `bytes`, eight bytes at a time: where a JSON string's plain run ends
/// when control characters need no check (a text already validated).
pub fn first_quote_or_backslash(bytes: &[u8]) -> Option<usize> {
    first_flagged(
        bytes,
        |word| has_byte(word, b'"') | has_byte(word, b'\\'),
        |b| b == b'"' || b == b'\\',
    )
}

/// The index of the first `\` in `bytes`, eight bytes at a time: whether a validated JSON string's content has
/// escapes.
pub fn first_backslash(bytes: &[u8]) -> Option<usize> {
    first_flagged(bytes, |word| has_byte(word, b'\\'), |b| b == b'\\')
}

/// Unescape the JSON string literal whose opening quote is `buffer[open]`, writing its value from
/// `buffer[out]` on (`out <= open`: what is written never passes what is read), and checking it as serde_json
/// does: no raw control character, every escape complete and known, surrogates paired. Returns the index just
/// past the closing quote and the end of what was written; `None` if the literal is not valid (the buffer is
/// then partly rewritten). UTF-8 is the caller's to check.
pub(crate) fn unescape_literal_in_place(
    buffer: &mut [u8],
    open: usize,
    out: usize,
) -> Option<(usize, usize)> {
    (buffer.get(open) == Some(&b'"') && out <= open).then_some(())?;
    let (mut read, mut write) = (open + 1, out);
    loop {
        let run = first_special(buffer.get(read..)?)?;
        if write != read {
            buffer.copy_within(read..read + run, write);
        }
        read += run;
        write += run;
        match buffer[read] {
            b'"' => return Some((read + 1, write)),
            b'\\' => {}
            // A raw control character.
            _ => return None,
        }
        let escape = *buffer.get(read + 1)?;
        read += 2;
        if escape != b'u' {
            buffer[write] = short_escape(escape)?;
            write += 1;
            continue;
        }
        let first = hex_unit(buffer.get(read..read + 4)?)?;
        read += 4;
        let c = utf16_char(first, || {
            if buffer.get(read..read + 2)? != b"\\u" {
                return None;
            }
            let low = hex_unit(buffer.get(read + 2..read + 6)?)?;
            read += 6;
            Some(low)
        })?;
        let mut utf8 = [0u8; 4];
        let encoded = c.encode_utf8(&mut utf8).as_bytes();
        buffer[write..write + encoded.len()].copy_from_slice(encoded);
        write += encoded.len();
    }
}

/// The length of the number or literal (`true`, `null`, …) that starts `bytes`: up to the first delimiter
/// (`,`, `}`, `]` or whitespace), unchecked.
pub fn scalar_len(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
        .unwrap_or(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Bytes where the searched-for ones are common, at every offset within and across eight-byte words.
    fn texts() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![
                4 => b'a'..=b'z',
                1 => Just(b'"'),
                1 => Just(b'\\'),
                1 => 0u8..0x20,
                1 => any::<u8>(),
            ],
            0..40,
        )
    }

    proptest! {
        /// Each eight-bytes-at-a-time search finds what a byte-by-byte search finds.
        #[test]
        fn the_word_searches_agree_with_a_byte_by_byte_search(text in texts()) {
            let position = |is: fn(u8) -> bool| text.iter().position(|&b| is(b));
            prop_assert_eq!(first_backslash(&text), position(|b| b == b'\\'));
            prop_assert_eq!(first_quote_or_backslash(&text), position(|b| b == b'"' || b == b'\\'));
            prop_assert_eq!(
                first_special(&text),
                position(|b| b < 0x20 || b == b'"' || b == b'\\')
            );
        }
    }
}
