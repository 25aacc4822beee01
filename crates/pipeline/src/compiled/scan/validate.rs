//! The first read of an event's text: checked byte for byte as serde_json checks what it parses (strings,
//! escapes, numbers, literals, brackets, commas), and every object and array in it noted in [`Ends`] on the
//! way. It replaces serde's parse of the whole event (a fifth of the mapping's instructions), and a later
//! split of anything inside, a lookup's or a detection's, then reads only the level it splits: nothing below
//! the root is read twice.
//!
//! Accepting exactly what serde_json accepts matters: text that is not JSON must be declined here, so the
//! generic path reports it as serde does. Property tests hold the two equal on generated and mutated text.

use super::{Ends, Raw, Str};
use kaf_envelope::escape::first_special;
use std::borrow::Cow;

/// The members of the object that is the whole of `text` (whitespace around it allowed), when `text` is JSON
/// that serde_json accepts, or `None`. Every object and array in it is noted in `ends`; `text` must not have
/// been noted before (a document's root). One pass: the members are taken on the way, into `members` (an
/// empty vector, whose allocation is reused).
pub(crate) fn validated_object<'a>(
    text: &'a str,
    ends: &mut Ends,
    mut members: Vec<(Str<'a>, Raw<'a>)>,
) -> Option<Vec<(Str<'a>, Raw<'a>)>> {
    let bytes = text.as_bytes();
    let base = text.as_ptr() as usize;
    let mut at = skip_whitespace(bytes, 0);
    (bytes.get(at) == Some(&b'{')).then_some(())?;
    at = skip_whitespace(bytes, at + 1);
    members.reserve(16);
    if bytes.get(at) != Some(&b'}') {
        loop {
            (bytes.get(at) == Some(&b'"')).then_some(())?;
            let (key_end, escaped) = string_end(bytes, at + 1)?;
            let key = text.get(at..key_end)?;
            let key = match escaped {
                // Unescaped as serde reads a key (a lone surrogate is refused there).
                true => Cow::Owned(serde_json::from_str::<String>(key).ok()?),
                false => Cow::Borrowed(key.get(1..key.len() - 1)?),
            };
            at = skip_whitespace(bytes, key_end);
            (bytes.get(at) == Some(&b':')).then_some(())?;
            at = skip_whitespace(bytes, at + 1);
            let start = at;
            at = match *bytes.get(at)? {
                b'{' | b'[' => ends.noted(bytes, base, at, Ends::note_checked)?,
                _ => scalar_end(bytes, at)?,
            };
            members.push((Str(key), Raw::new(text.get(start..at)?)));
            at = skip_whitespace(bytes, at);
            match *bytes.get(at)? {
                b',' => at = skip_whitespace(bytes, at + 1),
                b'}' => break,
                _ => return None,
            }
        }
    }
    (skip_whitespace(bytes, at + 1) == bytes.len()).then_some(members)
}

impl Ends {
    /// [`Ends::note`] that also checks every byte: the index just past the value at `bytes[start]`, or `None`
    /// where serde_json would refuse the text.
    fn note_checked(&mut self, bytes: &[u8], base: usize, start: usize) -> Option<usize> {
        self.open.clear();
        let mut at = start;
        loop {
            // A value starts here.
            at = skip_whitespace(bytes, at);
            match *bytes.get(at)? {
                bracket @ (b'{' | b'[') => {
                    self.open.push((self.ends.len(), bracket));
                    self.ends.push((base + at, 0));
                    at = skip_whitespace(bytes, at + 1);
                    let empty = matches!(
                        (bracket, bytes.get(at)),
                        (b'{', Some(b'}')) | (b'[', Some(b']'))
                    );
                    if !empty {
                        if bracket == b'{' {
                            at = key_and_colon(bytes, at)?;
                        }
                        continue;
                    }
                }
                _ => at = scalar_end(bytes, at)?,
            }
            // After a value (or at an empty object's or array's closing bracket): close what ends here, up to
            // the comma before the next member or element.
            loop {
                let Some(&(opened, bracket)) = self.open.last() else {
                    return Some(at);
                };
                at = skip_whitespace(bytes, at);
                match (*bytes.get(at)?, bracket) {
                    (b',', _) => {
                        at += 1;
                        if bracket == b'{' {
                            at = key_and_colon(bytes, skip_whitespace(bytes, at))?;
                        }
                        break;
                    }
                    (b'}', b'{') | (b']', b'[') => {
                        self.ends.get_mut(opened)?.1 = base + at + 1;
                        self.open.pop();
                        at += 1;
                    }
                    _ => return None,
                }
            }
        }
    }
}

/// The index of the first byte at or after `at` that is not JSON whitespace.
pub(super) fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(at) {
        at += 1;
    }
    at
}

/// A member's key at `bytes[at]` and the colon after it: the index just past the colon.
fn key_and_colon(bytes: &[u8], at: usize) -> Option<usize> {
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    let at = skip_whitespace(bytes, string_end(bytes, at + 1)?.0);
    (bytes.get(at) == Some(&b':')).then_some(at + 1)
}

/// The index just past the string, number or literal at `bytes[at]`.
fn scalar_end(bytes: &[u8], at: usize) -> Option<usize> {
    match *bytes.get(at)? {
        b'"' => Some(string_end(bytes, at + 1)?.0),
        b't' => literal(bytes, at, b"true"),
        b'f' => literal(bytes, at, b"false"),
        b'n' => literal(bytes, at, b"null"),
        b'-' | b'0'..=b'9' => number_end(bytes, at),
        _ => None,
    }
}

fn literal(bytes: &[u8], at: usize, word: &[u8]) -> Option<usize> {
    let end = at + word.len();
    (bytes.get(at..end)? == word).then_some(end)
}

/// The index just past the number at `bytes[at]`: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`. What
/// follows is the caller's to check (`01` is refused there, at the `1`).
fn number_end(bytes: &[u8], mut at: usize) -> Option<usize> {
    let digits = |from: usize| {
        from + bytes.get(from..).map_or(0, |rest| {
            rest.iter().take_while(|b| b.is_ascii_digit()).count()
        })
    };
    if bytes.get(at) == Some(&b'-') {
        at += 1;
    }
    at = match *bytes.get(at)? {
        b'0' => at + 1,
        b'1'..=b'9' => digits(at + 1),
        _ => return None,
    };
    if bytes.get(at) == Some(&b'.') {
        let end = digits(at + 1);
        (end > at + 1).then_some(())?;
        at = end;
    }
    if let Some(b'e' | b'E') = bytes.get(at) {
        at += 1;
        if let Some(b'+' | b'-') = bytes.get(at) {
            at += 1;
        }
        let end = digits(at);
        (end > at).then_some(())?;
        at = end;
    }
    Some(at)
}

/// The index just past the quote that closes the string whose contents start at `from`, and whether it has
/// escapes, if every character is allowed: no raw control character, and only JSON's escapes (`\u` with four
/// hex digits; whether they make a valid character is the reader's business, as in serde's check).
fn string_end(bytes: &[u8], from: usize) -> Option<(usize, bool)> {
    let mut at = from;
    let mut escaped = false;
    loop {
        at += first_special(bytes.get(at..)?)?;
        match bytes[at] {
            b'"' => return Some((at + 1, escaped)),
            b'\\' => match *bytes.get(at + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                    escaped = true;
                    at += 2;
                }
                b'u' => {
                    let hex = bytes.get(at + 2..at + 6)?;
                    hex.iter().all(u8::is_ascii_hexdigit).then_some(())?;
                    escaped = true;
                    at += 6;
                }
                _ => return None,
            },
            // A raw control character.
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    // serde_json's verdict and split of the same text is the reference.
    use super::super::tests::{object_text, owned, serde_object as serde_members};

    fn ours(text: &str) -> Option<Vec<(String, String)>> {
        validated_object(text, &mut Ends::default(), Vec::new()).map(owned)
    }

    #[test]
    fn what_serde_refuses_is_refused() {
        for text in [
            "",
            "{",
            "{\"a\":1,}",
            "{\"a\":01}",
            "{\"a\":-}",
            "{\"a\":1.}",
            "{\"a\":1e}",
            "{\"a\":.5}",
            "{\"a\":+1}",
            "{\"a\":tru}",
            "{\"a\":nul}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\u12g4\"}",
            "{\"a\":\"tab\there\"}",
            "{\"a\":[1,]}",
            "{\"a\":[1 2]}",
            "{\"a\":{\"b\"}}",
            "{\"a\":{\"b\":1,}}",
            "{\"a\":[}",
            "{\"a\":{]}",
            "{\"a\":1} {}",
            "[1]",
            "{a:1}",
        ] {
            assert_eq!(serde_members(text), None, "serde accepts {text}");
            assert_eq!(ours(text), None, "{text}");
        }
        for text in [
            " {} ",
            "{\"a\":-0.5e+10,\"b\":[true,false,null,{}],\"c\":\"\\u00e9\\n\\\"\"}",
            "{\"a\":\"\\ud800\"}",
            "{\"\\u0061\":1,\"a\":2}",
        ] {
            assert_eq!(ours(text), serde_members(text), "{text}");
            assert!(ours(text).is_some(), "{text}");
        }
    }

    /// Hostile nesting: a member a million brackets deep is read without recursion (no stack to overflow),
    /// and a cut-short one is refused.
    #[test]
    fn a_million_brackets_deep_is_read_without_recursion() {
        let depth = 1_000_000;
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
        let mut ends = Ends::default();
        let members = validated_object(&deep, &mut ends, Vec::new()).unwrap();
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].1.get().len(), 2 * depth);
        let cut = &deep[..deep.len() - 2];
        assert!(validated_object(cut, &mut Ends::default(), Vec::new()).is_none());
    }

    /// Bytes that change what text means, for mutations.
    fn mutation_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            proptest::sample::select(b"\"\\{}[],:-+.0159eEtrufalsn \n\t/bu".to_vec()),
            0u8..0x20,
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3_000))]

        /// Generated objects, then one byte replaced, inserted or deleted: accepted exactly when serde accepts
        /// the text, with the same members.
        #[test]
        fn accepts_exactly_what_serde_accepts(
            text in object_text(),
            at in any::<prop::sample::Index>(),
            byte in mutation_byte(),
            how in 0..4u8,
        ) {
            let mut bytes = text.into_bytes();
            let i = at.index(bytes.len() + 1);
            match how {
                0 => {}
                1 if i < bytes.len() => bytes[i] = byte,
                2 if i < bytes.len() => { bytes.remove(i); }
                _ => bytes.insert(i, byte),
            }
            // Only text reaches here (a mutation inside a multi-byte character is not text).
            let Ok(text) = String::from_utf8(bytes) else { return Ok(()) };
            prop_assert_eq!(ours(&text), serde_members(&text), "{}", text);
        }

        /// Objects of near-JSON tokens (numbers cut short, literals misspelt, escapes half written, commas
        /// where they may not go), where the grammar's edges are: judged as serde judges them.
        #[test]
        fn near_json_is_judged_as_serde_judges_it(
            text in "\\{ ?(\"[a-z\\\\u0-9]{0,3}\" ?: ?(-?[0-9]{0,3}(\\.[0-9]{0,2})?([eE][+-]?[0-9]{0,2})?|tru|true|fals|false|null|nul|\"[a\\\\u0-9\"]{0,4}\"|\\[[0-9, ]{0,4}\\]|\\{\\}) ?,?){0,3}\\} ?",
        ) {
            prop_assert_eq!(ours(&text), serde_members(&text), "{}", text);
        }

        /// After the root is read, every object and array below splits as serde parses it, jumping over what
        /// the root's read noted.
        #[test]
        fn nested_levels_split_as_serde_parses_them_after_the_root(text in object_text()) {
            prop_assume!(serde_members(&text).is_some());
            let mut ends = Ends::default();
            let mut pending: Vec<&str> = validated_object(&text, &mut ends, Vec::new())
                .unwrap_or_default()
                .into_iter()
                .map(|(_, v)| v.get())
                .collect();
            while let Some(next) = pending.pop() {
                if next.starts_with('{') {
                    let split = super::super::object(next, &mut ends, Vec::new());
                    let ours: Option<Vec<(String, String)>> = split.as_ref().map(|members| {
                        members.iter().map(|(k, v)| (k.0.to_string(), v.get().to_string())).collect()
                    });
                    prop_assert_eq!(&ours, &serde_members(next));
                    pending.extend(split.unwrap_or_default().into_iter().map(|(_, v)| v.get()));
                } else if next.starts_with('[') {
                    let items = super::super::array(next, &mut ends, Vec::new());
                    let theirs: Option<Vec<String>> = serde_json::from_str::<Vec<&serde_json::value::RawValue>>(next)
                        .ok()
                        .map(|items| items.iter().map(|raw| raw.get().to_string()).collect());
                    let ours: Option<Vec<String>> =
                        items.as_ref().map(|items| items.iter().map(|raw| raw.get().to_string()).collect());
                    prop_assert_eq!(ours, theirs);
                    pending.extend(items.unwrap_or_default().into_iter().map(Raw::get));
                }
            }
        }
    }
}
