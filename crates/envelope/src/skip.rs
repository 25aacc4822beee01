//! JSON values skipped by their quotes and brackets alone, without validating what is inside: for the
//! locators that find the few members a payload's consumer needs in a text serde would otherwise read whole.

use std::ops::Range;

/// A position in a JSON text (`B`: the bytes, borrowed or, for a reader that rewrites what it has read,
/// borrowed mutably).
pub(crate) struct Cursor<B> {
    pub bytes: B,
    pub at: usize,
}

impl<B: AsRef<[u8]>> Cursor<B> {
    pub fn new(bytes: B) -> Self {
        Self { bytes, at: 0 }
    }

    /// The byte here, if any.
    pub fn peek(&self) -> Option<u8> {
        self.bytes.as_ref().get(self.at).copied()
    }

    pub fn whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// `wanted` next (after whitespace), stepped over.
    pub fn byte(&mut self, wanted: u8) -> Option<()> {
        self.whitespace();
        (self.peek()? == wanted).then_some(())?;
        self.at += 1;
        Some(())
    }

    /// Nothing but whitespace left.
    pub fn at_end(&mut self) -> bool {
        self.whitespace();
        self.at == self.bytes.as_ref().len()
    }

    /// An object's members: `each` gets the cursor at the value and the key's range (the key has no escapes).
    pub fn members(
        &mut self,
        mut each: impl FnMut(&mut Self, Range<usize>) -> Option<()>,
    ) -> Option<()> {
        self.byte(b'{')?;
        self.whitespace();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Some(());
        }
        loop {
            self.whitespace();
            (self.peek() == Some(b'"')).then_some(())?;
            let key = self.value()?;
            let key = key.start + 1..key.end - 1;
            if self.bytes.as_ref().get(key.clone())?.contains(&b'\\') {
                return None;
            }
            self.byte(b':')?;
            self.whitespace();
            each(self, key)?;
            self.whitespace();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// An array's elements: `each` gets the cursor at each element.
    pub fn elements(&mut self, mut each: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.byte(b'[')?;
        self.whitespace();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Some(());
        }
        loop {
            self.whitespace();
            each(self)?;
            self.whitespace();
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// The range of the value here, skipped.
    pub fn value(&mut self) -> Option<Range<usize>> {
        let bytes = self.bytes.as_ref();
        let start = self.at;
        self.at = match *bytes.get(start)? {
            b'"' => literal_end(bytes, start)? + 1,
            b'{' | b'[' => nested_end(bytes, start)?,
            _ => {
                let len = crate::escape::scalar_len(&bytes[start..]);
                (len > 0).then_some(start + len)?
            }
        };
        Some(start..self.at)
    }
}

/// The index of the quote that closes the string literal opening at `open`: the first quote after it that no
/// backslash escapes. Escapes are stepped over as they come, each `\` with the byte after it: the literals
/// skipped here (an AKS record's escaped event) have an escaped quote every few bytes, and searching for each
/// quote and then counting the backslashes before it cost several times as much.
pub(crate) fn literal_end(bytes: &[u8], open: usize) -> Option<usize> {
    let mut at = open + 1;
    loop {
        at += crate::escape::first_quote_or_backslash(bytes.get(at..)?)?;
        if bytes[at] == b'"' {
            return Some(at);
        }
        at += 2;
    }
}

/// The index just past the object or array opening at `open`.
pub(crate) fn nested_end(bytes: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut at = open;
    while let Some(&byte) = bytes.get(at) {
        match byte {
            b'"' => at = literal_end(bytes, at)?,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(at + 1);
                }
            }
            _ => {}
        }
        at += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    /// The closing quote found one quote at a time, counting the backslashes before each.
    fn literal_end_by_counting(bytes: &[u8], open: usize) -> Option<usize> {
        let mut from = open + 1;
        loop {
            let quote = from + bytes.get(from..)?.iter().position(|&b| b == b'"')?;
            let backslashes = bytes[open + 1..quote]
                .iter()
                .rev()
                .take_while(|b| **b == b'\\')
                .count();
            if backslashes % 2 == 0 {
                return Some(quote);
            }
            from = quote + 1;
        }
    }

    /// JSON values nested a few levels, with strings holding brackets, quotes and backslashes.
    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<i32>().prop_map(serde_json::Value::from),
            "[a-z{}\\[\\]\"\\\\]{0,8}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map("[a-z\\]\"]{0,4}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// An object or array ends where serde wrote it to, whatever follows.
        #[test]
        fn a_nested_value_ends_where_it_was_written(
            value in json_value(),
            pretty in any::<bool>(),
            after in "[,}\\] \"]{0,3}",
        ) {
            let written = if pretty {
                serde_json::to_string_pretty(&value).unwrap()
            } else {
                value.to_string()
            };
            let text = format!("{written}{after}");
            let expected = matches!(value, serde_json::Value::Array(_) | serde_json::Value::Object(_))
                .then_some(written.len());
            prop_assert_eq!(nested_end(text.as_bytes(), 0), expected);
        }

        /// Runs of backslashes of every length, quotes anywhere, long plain runs, and the end of the text.
        #[test]
        fn the_closing_quote_is_the_first_unescaped_one(
            parts in prop::collection::vec(prop_oneof![
                3 => "[a-z\u{e9}]{0,20}",
                2 => "\\\\{1,5}",
                1 => Just("\"".to_string()),
                1 => Just("\\\\\"".to_string()),
            ], 0..40),
            open in 0usize..100,
        ) {
            let text = format!("\"{}", parts.concat());
            let open = open.min(text.len() - 1);
            prop_assert_eq!(literal_end(text.as_bytes(), open), literal_end_by_counting(text.as_bytes(), open));
        }
    }
}
