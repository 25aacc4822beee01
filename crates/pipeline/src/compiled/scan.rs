//! Reading one level of an object or array out of JSON text that has already been parsed whole, without
//! checking it again.
//!
//! The compiled path parses each event's text once with serde (which validates all of it), keeping every
//! member as raw text. A lookup or a detection that goes into a member then reads that member's own text.
//! With serde that was another validating parse of every byte below it, so an object four levels deep
//! (`requestObject/spec/containers/*/securityContext`) was parsed four times over. Here each level is only
//! split: strings are skipped to their closing quote, scalars to the next delimiter, and nested objects and
//! arrays by bracket depth, the first time. That first skip notes where every bracket inside it closes
//! ([`Ends`]), so a later split of anything below jumps over its nested values instead of reading them
//! again: each byte is read about once, however deep the lookups go.
//!
//! Anything that does not have the shape of JSON (a caller's mistake, never an event's) gives `None`, so the
//! generic path decides, and nothing here can panic.

use crate::render::Str;
use kaf_envelope::escape::first_special;
use std::borrow::Cow;

mod validate;
use validate::skip_whitespace;
pub(crate) use validate::validated_object;

/// The text of one JSON value, from its first byte to its last: a string with its quotes, a number, a
/// literal, or an object or array with everything inside. Where it sits in the event's text identifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Raw<'a>(&'a str);

impl<'a> Raw<'a> {
    /// `text` must be the text of one JSON value, as serde's `RawValue` holds it.
    pub(crate) fn new(text: &'a str) -> Self {
        Self(text)
    }

    pub(crate) fn get(self) -> &'a str {
        self.0
    }
}

/// Where the objects and arrays skipped so far end, by the address of their opening bracket (addresses in
/// the event's text, sorted), so that splitting them later does not read what is inside them again.
#[derive(Debug, Default)]
pub(crate) struct Ends {
    ends: Vec<(usize, usize)>,
    /// Scratch: the brackets open while one value is skipped (their index in `ends`, and the bracket).
    open: Vec<(usize, u8)>,
}

impl Ends {
    /// Empty, its vectors kept.
    pub(crate) fn clear(&mut self) {
        self.ends.clear();
        self.open.clear();
    }

    /// The address just past the object or array that opens at address `open`, if it was skipped before.
    fn get(&self, open: usize) -> Option<usize> {
        self.ends
            .binary_search_by_key(&open, |(at, _)| *at)
            .ok()
            .map(|i| self.ends[i].1)
    }

    /// The index just past the object or array that opens at `bytes[start]` (`base`: the address of
    /// `bytes`), noting where it and everything in it end.
    fn skip(&mut self, bytes: &[u8], base: usize, start: usize) -> Option<usize> {
        if let Some(end) = self.get(base + start) {
            return end.checked_sub(base);
        }
        self.noted(bytes, base, start, Self::note)
    }

    /// Runs `note` over the value at `bytes[start]` (not noted before), and puts the brackets it added where
    /// their addresses belong; on failure, as it was.
    fn noted(
        &mut self,
        bytes: &[u8],
        base: usize,
        start: usize,
        note: fn(&mut Self, &[u8], usize, usize) -> Option<usize>,
    ) -> Option<usize> {
        let first = self.ends.len();
        let Some(end) = note(self, bytes, base, start) else {
            self.ends.truncate(first);
            return None;
        };
        // The new run is in address order; it goes where its first address belongs (values skipped are
        // disjoint from those skipped before, or inside none of them).
        let place = self.ends[..first].partition_point(|(at, _)| *at < base + start);
        let added = self.ends.len() - first;
        self.ends[place..].rotate_right(added);
        Some(end)
    }

    /// [`Ends::skip`] of a value not skipped before: its brackets are added at the end, in address order.
    fn note(&mut self, bytes: &[u8], base: usize, start: usize) -> Option<usize> {
        self.open.clear();
        let mut at = start;
        loop {
            match *bytes.get(at)? {
                b'"' => at = string_end(bytes, at + 1)?.0,
                bracket @ (b'{' | b'[') => {
                    self.open.push((self.ends.len(), bracket));
                    self.ends.push((base + at, 0));
                }
                b'}' | b']' => {
                    let (opened, _) = self.open.pop()?;
                    self.ends.get_mut(opened)?.1 = base + at + 1;
                    if self.open.is_empty() {
                        return Some(at + 1);
                    }
                }
                _ => {}
            }
            at += 1;
        }
    }
}

/// The members of the object whose text is `text`, in order (duplicates kept), keys unescaped, into `members`
/// (an empty vector, whose allocation is reused).
pub(crate) fn object<'a>(
    text: &'a str,
    ends: &mut Ends,
    mut members: Vec<(Str<'a>, Raw<'a>)>,
) -> Option<Vec<(Str<'a>, Raw<'a>)>> {
    members.reserve(16);
    let mut at = Cursor::after(text, b'{')?;
    if at.empty(b'}') {
        return at.end().then_some(members);
    }
    loop {
        let key = at.key()?;
        at.expect(b':')?;
        members.push((key, at.value(ends)?));
        if at.close(b'}')? {
            return at.end().then_some(members);
        }
    }
}

/// The elements of the array whose text is `text`, in order, into `items` (an empty vector, whose allocation
/// is reused).
pub(crate) fn array<'a>(
    text: &'a str,
    ends: &mut Ends,
    mut items: Vec<Raw<'a>>,
) -> Option<Vec<Raw<'a>>> {
    items.reserve(8);
    let mut at = Cursor::after(text, b'[')?;
    if at.empty(b']') {
        return at.end().then_some(items);
    }
    loop {
        items.push(at.value(ends)?);
        if at.close(b']')? {
            return at.end().then_some(items);
        }
    }
}

struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    /// Past `open` and the whitespace after it.
    fn after(text: &'a str, open: u8) -> Option<Self> {
        let mut cursor = Self { text, at: 0 };
        cursor.expect(open)?;
        Some(cursor)
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn skip_whitespace(&mut self) {
        self.at = skip_whitespace(self.bytes(), self.at);
    }

    /// `byte`, with whitespace before and after it.
    fn expect(&mut self, byte: u8) -> Option<()> {
        self.skip_whitespace();
        (*self.bytes().get(self.at)? == byte).then_some(())?;
        self.at += 1;
        self.skip_whitespace();
        Some(())
    }

    /// Right after the opening bracket: the closing one (consumed) when the object or array is empty.
    fn empty(&mut self, bracket: u8) -> bool {
        let empty = self.bytes().get(self.at) == Some(&bracket);
        if empty {
            self.at += 1;
            self.skip_whitespace();
        }
        empty
    }

    /// After a member or element: `true` at the closing bracket (consumed), `false` past a comma.
    fn close(&mut self, bracket: u8) -> Option<bool> {
        self.skip_whitespace();
        let byte = *self.bytes().get(self.at)?;
        self.at += 1;
        self.skip_whitespace();
        match byte {
            b',' => Some(false),
            b if b == bracket => Some(true),
            _ => None,
        }
    }

    /// Nothing but whitespace is left (the brackets closed at the end of the text).
    fn end(&self) -> bool {
        self.at == self.text.len()
    }

    fn key(&mut self) -> Option<Str<'a>> {
        let start = self.at;
        (*self.bytes().get(start)? == b'"').then_some(())?;
        let (end, escaped) = string_end(self.bytes(), start + 1)?;
        self.at = end + 1;
        let inner = self.text.get(start + 1..end)?;
        Some(Str(if escaped {
            Cow::Owned(serde_json::from_str::<String>(self.text.get(start..=end)?).ok()?)
        } else {
            Cow::Borrowed(inner)
        }))
    }

    /// The value here, skipped whole.
    fn value(&mut self, ends: &mut Ends) -> Option<Raw<'a>> {
        let start = self.at;
        let bytes = self.bytes();
        self.at = match *bytes.get(start)? {
            b'"' => string_end(bytes, start + 1)?.0 + 1,
            b'{' | b'[' => ends.skip(bytes, self.text.as_ptr() as usize, start)?,
            _ => {
                let len = kaf_envelope::escape::scalar_len(&bytes[start..]);
                (len > 0).then_some(start + len)?
            }
        };
        self.text.get(start..self.at).map(Raw)
    }
}

/// The index of the quote that closes the string whose contents start at `from`, and whether the string has
/// escapes.
fn string_end(bytes: &[u8], from: usize) -> Option<(usize, bool)> {
    let mut at = from;
    let mut escaped = false;
    loop {
        // Eight bytes at a time (most keys and values are short, where `memchr`'s set-up costs more than the
        // search); it also stops at control characters, which text serde has parsed cannot hold in a string.
        at += first_special(bytes.get(at..)?)?;
        match bytes[at] {
            b'"' => return Some((at, escaped)),
            b'\\' => {
                escaped = true;
                // The escaped character, whatever it is (`\"`, `\\`, or the first of `\uXXXX`).
                at += 2;
            }
            _ => at += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;
    use serde_json::value::RawValue;

    /// What serde makes of the same text: the reference.
    pub(super) fn serde_object(text: &str) -> Option<Vec<(String, String)>> {
        let map: Vec<(String, &RawValue)> = serde_json::from_str::<Pairs<'_>>(text).ok()?.0;
        Some(
            map.into_iter()
                .map(|(k, v)| (k, v.get().to_string()))
                .collect(),
        )
    }

    /// An object's members in order, duplicates kept (a map would fold them).
    struct Pairs<'a>(Vec<(String, &'a RawValue)>);

    impl<'de> serde::Deserialize<'de> for Pairs<'de> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Pairs<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Pairs<'de>, A::Error> {
                    let mut out = Vec::new();
                    while let Some(key) = map.next_key::<String>()? {
                        out.push((key, map.next_value::<&'de RawValue>()?));
                    }
                    Ok(Pairs(out))
                }
            }
            d.deserialize_map(V)
        }
    }

    /// Members as owned text, to compare with [`serde_object`]'s.
    pub(super) fn owned(members: Vec<(Str<'_>, Raw<'_>)>) -> Vec<(String, String)> {
        members
            .into_iter()
            .map(|(k, v)| (k.0.into_owned(), v.get().to_string()))
            .collect()
    }

    fn ours(text: &str) -> Option<Vec<(String, String)>> {
        object(text, &mut Ends::default(), Vec::new()).map(owned)
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let text = prop_oneof![
            "[a-z]{0,6}",
            // Quotes, backslashes, brackets and control characters inside strings, escaped by serde.
            "[\"\\\\{}\\[\\],: \n\t\u{1}é☃𝄞a]{0,8}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            text.clone().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 40, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((text.clone(), inner), 0..6)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    /// JSON text of an object, compact or with whitespace everywhere it may go, keys escaped or not.
    pub(super) fn object_text() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(("[a-z\"\\\\é]{0,4}", json_value()), 0..6),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(members, pretty, escape_keys)| {
                let map: serde_json::Map<String, Value> = members.into_iter().collect();
                let text = if pretty {
                    serde_json::to_string_pretty(&Value::Object(map)).unwrap_or_default()
                } else {
                    serde_json::to_string(&Value::Object(map)).unwrap_or_default()
                };
                if escape_keys {
                    // `\u0061` for every `a`: valid JSON that only unescaping reads as `a`.
                    text.replace('a', "\\u0061")
                } else {
                    text
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn objects_split_as_serde_parses_them(text in object_text()) {
            let theirs = serde_object(&text);
            // `\u0061` for an `a` outside a string (`false`) is not JSON; such text never gets here.
            prop_assume!(theirs.is_some());
            prop_assert_eq!(ours(&text), theirs);
        }

        #[test]
        fn arrays_split_as_serde_parses_them(items in prop::collection::vec(json_value(), 0..6), pretty: bool) {
            let value = Value::Array(items);
            let text = if pretty {
                serde_json::to_string_pretty(&value).unwrap_or_default()
            } else {
                serde_json::to_string(&value).unwrap_or_default()
            };
            let theirs: Vec<String> = serde_json::from_str::<Vec<&RawValue>>(&text)
                .unwrap_or_default()
                .iter()
                .map(|raw| raw.get().to_string())
                .collect();
            let ours: Option<Vec<String>> =
                array(&text, &mut Ends::default(), Vec::new()).map(|items| items.iter().map(|raw| raw.get().to_string()).collect());
            prop_assert_eq!(ours, Some(theirs));
        }

        /// Every object and array inside, split parents first with one [`Ends`] (as a document reads them, the
        /// later splits jumping over what the first ones noted), in document order or the reverse: each level
        /// as serde parses it.
        #[test]
        fn nested_levels_split_with_noted_ends_as_serde_parses_them(text in object_text(), reverse: bool) {
            prop_assume!(serde_object(&text).is_some());
            let mut ends = Ends::default();
            let mut pending = vec![text.as_str()];
            let mut levels = 0;
            while let Some(next) = pending.pop() {
                let children: Vec<&str> = if next.starts_with('{') {
                    let theirs = serde_object(next);
                    let split = object(next, &mut ends, Vec::new());
                    let ours: Option<Vec<(String, String)>> = split.as_ref().map(|members| {
                        members.iter().map(|(k, v)| (k.0.to_string(), v.get().to_string())).collect()
                    });
                    prop_assert_eq!(&ours, &theirs);
                    split.unwrap_or_default().into_iter().map(|(_, v)| v.get()).collect()
                } else {
                    let theirs: Option<Vec<&str>> = serde_json::from_str::<Vec<&RawValue>>(next)
                        .ok()
                        .map(|items| items.iter().map(|raw| raw.get()).collect());
                    let ours: Option<Vec<&str>> =
                        array(next, &mut ends, Vec::new()).map(|items| items.iter().map(|raw| raw.get()).collect());
                    prop_assert_eq!(&ours, &theirs);
                    ours.unwrap_or_default()
                };
                levels += 1;
                let mut nested: Vec<&str> =
                    children.into_iter().filter(|c| c.starts_with(['{', '['])).collect();
                if !reverse {
                    nested.reverse();
                }
                pending.extend(nested);
            }
            prop_assert!(levels >= 1);
        }

        /// Any text at all: an answer or `None`, never a panic (text that is not JSON never reaches here, but
        /// nothing may crash the forwarder).
        #[test]
        fn any_text_is_split_or_refused(text in "[{}\\[\\]\",:\\\\ a1]{0,24}") {
            let _ = object(&text, &mut Ends::default(), Vec::new());
            let _ = array(&text, &mut Ends::default(), Vec::new());
        }
    }

    #[test]
    fn shapes_that_are_not_one_object_are_refused() {
        for text in [
            "",
            "{",
            "}",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{,\"a\":1}",
            "{\"a\":1} x",
            "[1,]",
            "[1 2]",
        ] {
            assert_eq!(ours(text), None, "{text}");
        }
        for text in ["[1,]", "[1 2]", "[,1]", "[", "]"] {
            assert_eq!(
                array(text, &mut Ends::default(), Vec::new()),
                None,
                "{text}"
            );
        }
        assert_eq!(
            object("{}", &mut Ends::default(), Vec::new()).map(|m| m.len()),
            Some(0)
        );
        assert_eq!(
            array(" [ ] ", &mut Ends::default(), Vec::new()).map(|m| m.len()),
            Some(0)
        );
    }
}
