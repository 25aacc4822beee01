//! Writing a record's JSON directly, field by field, with its `Log-Size` counted on the way: what the
//! compiled and fast mapping paths share. The bytes are what `serde_json` writes for the same record (a
//! `BTreeMap` in name order), except that JSON objects passed through as text keep the apiserver's key order.

use kaf_envelope::escape::first_quote_or_backslash;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::Number;
use std::borrow::Cow;
use std::fmt;
use std::io::Write as _;

/// A string borrowed from the event's text when it has no escapes. (serde's own `Cow<str>` always copies.)
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Str<'a>(pub(crate) Cow<'a, str>);

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for Str<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// The record's JSON, written field by field, and the bytes it bills ([`crate::RecordFormat::billed_bytes`]).
pub(crate) struct Writer {
    buf: Vec<u8>,
    billed_bytes: u64,
    is_metadata_field: fn(&str) -> bool,
}

impl Writer {
    pub(crate) fn with_capacity(n: usize, is_metadata_field: fn(&str) -> bool) -> Self {
        let mut buf = Vec::with_capacity(n);
        buf.push(b'{');
        Self {
            buf,
            billed_bytes: 0,
            is_metadata_field,
        }
    }

    pub(crate) fn key(&mut self, name: &str) {
        if self.buf.len() > 1 {
            self.buf.push(b',');
        }
        self.buf.push(b'"');
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    pub(crate) fn string(&mut self, s: &str) {
        // Most values (names, URIs, timestamps) need no escape: copy them whole.
        if plain(s) {
            self.buf.push(b'"');
            self.buf.extend_from_slice(s.as_bytes());
            self.buf.push(b'"');
        } else {
            // Writing JSON into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut self.buf, s);
        }
    }

    /// A string field; absent when missing or empty (the generic path drops `null` and `""`).
    pub(crate) fn text(&mut self, name: &str, value: Option<&str>) {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            self.key(name);
            self.string(v);
            self.count(name, v.len());
        }
    }

    /// A string field the generic path always adds, even empty.
    pub(crate) fn text_always(&mut self, name: &str, value: &str) {
        self.key(name);
        self.string(value);
        self.count(name, value.len());
    }

    /// A list of strings, counted as its JSON text (as the generic path bills an array).
    pub(crate) fn text_list(&mut self, name: &str, values: &[&str]) {
        self.key(name);
        let start = self.buf.len();
        self.buf.push(b'[');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            self.string(v);
        }
        self.buf.push(b']');
        self.count(name, self.buf.len() - start);
    }

    pub(crate) fn number(&mut self, name: &str, value: i64) {
        self.key(name);
        let _ = write!(self.buf, "{value}");
    }

    /// A number as JSON writes it, counted as its text.
    pub(crate) fn number_value(&mut self, name: &str, value: &Number) {
        self.key(name);
        let start = self.buf.len();
        let _ = write!(self.buf, "{value}");
        self.count(name, self.buf.len() - start);
    }

    pub(crate) fn boolean(&mut self, name: &str, value: bool) {
        self.key(name);
        let text = if value { "true" } else { "false" };
        self.buf.extend_from_slice(text.as_bytes());
        self.count(name, text.len());
    }

    /// Every field is billed but the delivery side's own.
    fn count(&mut self, name: &str, bytes: usize) {
        if !(self.is_metadata_field)(name) {
            self.billed_bytes += bytes as u64;
        }
    }

    /// An object as JSON text: the raw text, with insignificant whitespace removed. `None` (the generic path
    /// then runs) when the value is not an object or array.
    /// `holes`: byte ranges of `raw`'s text left out (in order, none inside a string).
    pub(crate) fn raw_json(
        &mut self,
        name: &str,
        raw: Option<&str>,
        holes: &[(usize, usize)],
    ) -> Option<()> {
        let Some(raw) = raw else { return Some(()) };
        match raw.as_bytes().first() {
            Some(b'{' | b'[') => {}
            Some(b'n') => return Some(()),
            _ => return None,
        }
        self.key(name);
        let len = write_json_text_except(&mut self.buf, raw, holes);
        self.count(name, len);
        Some(())
    }

    /// Annotations as `[{"key":…,"value":…},…]` in key order, counted as that JSON text.
    pub(crate) fn key_value_list(&mut self, name: &str, pairs: &[(Str<'_>, Str<'_>)]) {
        self.key(name);
        let start = self.buf.len();
        self.buf.push(b'[');
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            self.buf.extend_from_slice(b"{\"key\":");
            self.string(k);
            self.buf.extend_from_slice(b",\"value\":");
            self.string(v);
            self.buf.push(b'}');
        }
        self.buf.push(b']');
        self.count(name, self.buf.len() - start);
    }

    pub(crate) fn finish(mut self) -> (String, u64) {
        self.buf.push(b'}');
        // Only whole UTF-8 strings and ASCII were written.
        (
            String::from_utf8(self.buf).unwrap_or_default(),
            self.billed_bytes,
        )
    }
}

/// Whether `s` can be written between quotes as it is (no quote, backslash or control character).
pub(crate) fn plain(s: &str) -> bool {
    // Eight bytes at a time: values run to tens of bytes (URIs, user agents, ids, timestamps).
    kaf_envelope::escape::first_special(s.as_bytes()).is_none()
}

/// Write the JSON value `raw` as a JSON string holding its compact text: whitespace outside strings dropped,
/// every `"` and `\` escaped. Returns the length of the compact text (the string's value, for `Log-Size`).
///
/// Valid JSON text (serde_json checked it) has no control characters inside strings, so these two escapes
/// are all a JSON string needs; the result is what `serde_json` writes for the compact text as a string.
///
/// `holes`: byte ranges of `raw` left out (in order, each starting and ending outside strings), what the
/// audit policy cut out of an object passed through as text.
pub(crate) fn write_json_text_except(
    buf: &mut Vec<u8>,
    raw: &str,
    holes: &[(usize, usize)],
) -> usize {
    let bytes = raw.as_bytes();
    let start = buf.len();
    let mut escapes = 0;
    buf.push(b'"');
    let mut at = 0;
    for &(from, to) in holes {
        if to <= at || from > bytes.len() {
            continue;
        }
        escapes += compact_escaped(buf, &bytes[at..from.max(at)]);
        at = to.min(bytes.len());
    }
    escapes += compact_escaped(buf, &bytes[at..]);
    buf.push(b'"');
    buf.len() - start - 2 - escapes
}

/// The compact text of `bytes` (whole JSON tokens), escaped for a JSON string; the escapes it added.
fn compact_escaped(buf: &mut Vec<u8>, bytes: &[u8]) -> usize {
    let mut escapes = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // A string: copy runs up to the next quote or backslash (eight bytes at a time: most strings
                // of an object are short keys and values, where a `memchr2` call costs more than it saves).
                buf.extend_from_slice(b"\\\"");
                escapes += 1;
                i += 1;
                while let Some(j) = first_quote_or_backslash(&bytes[i..]) {
                    buf.extend_from_slice(&bytes[i..i + j]);
                    i += j;
                    if bytes[i] == b'"' {
                        buf.extend_from_slice(b"\\\"");
                        escapes += 1;
                        i += 1;
                        break;
                    }
                    // An escape sequence, written as serde_json writes the character it stands for: `\uXXXX`
                    // and `\/` as the character itself (Go writes `<`, `>` and `&` as `\u003c`…), quotes,
                    // backslashes and control characters escaped (`\n`, `\u001f`). Each backslash of the
                    // compact text is escaped once more in the string that holds it.
                    let (decoded, consumed) = match bytes.get(i + 1) {
                        Some(b'u') => match unicode_escape(&bytes[i..]) {
                            Some(found) => found,
                            None => (None, 2),
                        },
                        Some(b'/') => (Some('/'), 2),
                        _ => (None, 2),
                    };
                    match decoded {
                        Some(c) => escapes += push_char(buf, c),
                        None => {
                            buf.extend_from_slice(b"\\\\");
                            escapes += 1;
                            match bytes.get(i + 1) {
                                Some(&c @ (b'"' | b'\\')) => {
                                    buf.push(b'\\');
                                    buf.push(c);
                                    escapes += 1;
                                }
                                Some(&c) => buf.push(c),
                                None => {}
                            }
                        }
                    }
                    i += consumed;
                    continue;
                }
            }
            b' ' | b'\n' | b'\r' | b'\t' => i += 1,
            c => {
                buf.push(c);
                i += 1;
            }
        }
    }
    escapes
}

/// The character of the `\uXXXX` escape (or surrogate pair) at the start of `text`, and the bytes it took.
/// `None` for a lone surrogate, which is then copied as written.
fn unicode_escape(text: &[u8]) -> Option<(Option<char>, usize)> {
    let hex = |at: usize| -> Option<u32> {
        let digits = std::str::from_utf8(text.get(at..at + 4)?).ok()?;
        u32::from_str_radix(digits, 16).ok()
    };
    let first = hex(2)?;
    if (0xD800..0xDC00).contains(&first) {
        if text.get(6..8) != Some(b"\\u") {
            return None;
        }
        let second = hex(8).filter(|s| (0xDC00..0xE000).contains(s))?;
        let c = char::from_u32(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00))?;
        return Some((Some(c), 12));
    }
    Some((Some(char::from_u32(first)?), 6))
}

/// `c` inside the compact text, as serde_json writes it, inside the string holding that text. Returns how
/// many bytes of escaping (beyond the compact text's own) it wrote.
fn push_char(buf: &mut Vec<u8>, c: char) -> usize {
    match c {
        // `\"` and `\\` in the compact text: each of their two characters escaped again.
        '"' | '\\' => {
            buf.extend_from_slice(b"\\\\\\");
            buf.push(c as u8);
            2
        }
        '\u{8}' | '\t' | '\n' | '\u{c}' | '\r' => {
            let short = match c {
                '\u{8}' => b'b',
                '\t' => b't',
                '\n' => b'n',
                '\u{c}' => b'f',
                _ => b'r',
            };
            buf.extend_from_slice(b"\\\\");
            buf.push(short);
            1
        }
        c if (c as u32) < 0x20 => {
            let _ = write!(buf, "\\\\u{:04x}", c as u32);
            1
        }
        c => {
            let mut utf8 = [0u8; 4];
            buf.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            0
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::Value;

    #[test]
    fn json_text_is_escaped_like_serde_escapes_the_compact_text() {
        for raw in [
            r#"{"a": [1, 2],
     "b": "x y\" z", "c": "\\", "d": "\u003c/\n\t", "e": {"f": null}}"#,
            r#"["a\"b","\\\"",{"k":"v w"}]"#,
            "{}",
            r#"{"only":"plain"}"#,
            r#"{"go":"a \u003cb\u003E \u0026\u0026 c \u00e9 \\u003c"}"#,
            r#"{"esc":"\/ \u0008\b \u000C \u001F \u0022 \u005c \ud83d\ude00 \u00E9"}"#,
            r#"{"z":1,"a":{"y":"\u0041","b":[true,null]}}"#,
        ] {
            let value: Value = serde_json::from_str(raw).unwrap();
            let raw_value: &serde_json::value::RawValue = serde_json::from_str(raw).unwrap();
            let mut buf = Vec::new();
            let len = write_json_text_except(&mut buf, raw_value.get(), &[]);
            let text: String = serde_json::from_slice(&buf).unwrap();
            assert_eq!(
                serde_json::from_str::<Value>(&text).unwrap(),
                value,
                "{raw}"
            );
            assert_eq!(len, text.len(), "{raw}");
            // serde_json's own compact text of the value: the same length (the keys may come in another
            // order), and the same bytes when the raw keys are already in order.
            let serde_text = serde_json::to_string(&value).unwrap();
            assert_eq!(text.len(), serde_text.len(), "{raw}");
            if !raw.contains("\"z\"") {
                assert_eq!(text, serde_text, "{raw}");
            }
            assert!(
                !text.contains('\n'),
                "whitespace outside strings dropped: {text}"
            );
            assert_eq!(buf, serde_json::to_vec(&text).unwrap(), "{raw}");
        }
        let mut buf = Vec::new();
        write_json_text_except(&mut buf, r#"{"go":"a \u003cb\u003E \u0026 \\u003c"}"#, &[]);
        let text: String = serde_json::from_slice(&buf).unwrap();
        assert_eq!(
            text, r#"{"go":"a <b> & \\u003c"}"#,
            "Go's HTML escapes undone, an escaped backslash kept"
        );
    }

    #[test]
    fn strings_are_written_as_serde_writes_them() {
        for text in [
            "plain",
            "",
            "quote \" and \\ slash",
            "tab\tnew\nline",
            "\u{1}",
            "é ünïcode \u{2028}",
            "</script>",
        ] {
            let mut w = Writer::with_capacity(0, crate::tests::FORMAT.is_metadata_field);
            w.buf.clear();
            w.string(text);
            assert_eq!(w.buf, serde_json::to_vec(text).unwrap(), "{text:?}");
        }
    }
}
