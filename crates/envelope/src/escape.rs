//! The pieces of JSON string escapes every unescaper here shares (`contracts` payloads nest JSON in JSON
//! strings, so several places undo escapes without building values).

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
