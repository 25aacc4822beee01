//! Where `Data.<binding>` and `Metadata` sit in the host's request, found without parsing the rest.
//!
//! The request is tens of MB, nearly all of it the one string literal `Data.events`. serde, asked for the
//! request's members, validates every byte of that literal while skipping it (~70 ms of a 200 ms split for
//! 50 MB, its escapes being dense); [`super::string_bodies`] then reads the same literal again, validating as
//! it unescapes. Here the literal's end is found by its quotes alone: inside a JSON string a quote is always
//! escaped, so the closing one is the first preceded by an even number of backslashes.
//!
//! Only the usual shape is taken: an object with at most one `Data` (an object with at most one member named
//! for the binding) and at most one `Metadata`, keys without escapes, nothing after the object. Anything
//! else gives `None` and the caller parses the request with serde, which decides what it is. The members
//! skipped here (other bindings, fields the host may add) are not validated: a request whose events can be
//! read is taken.

use std::ops::Range;

/// The byte ranges of `Data.<binding>` (when it is a string literal, quotes included) and of `Metadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Located {
    pub events: Range<usize>,
    pub metadata: Option<Range<usize>>,
}

pub(super) fn locate(request: &[u8], binding: &str) -> Option<Located> {
    let mut at = Cursor {
        bytes: request,
        at: 0,
    };
    let (mut events, mut metadata) = (None, None);
    let mut seen_data = false;
    at.members(|at, key| {
        match key {
            b"Data" => {
                if std::mem::replace(&mut seen_data, true) {
                    return None;
                }
                at.members(|at, key| {
                    if key == binding.as_bytes() {
                        let value = at.value()?;
                        let literal = request.get(value.clone())?.first() == Some(&b'"');
                        // A second member of that name, or one that is not a string: serde's to read.
                        (events.replace(value).is_none() && literal).then_some(())
                    } else {
                        at.value().map(drop)
                    }
                })
            }
            b"Metadata" => {
                let value = at.value()?;
                metadata.replace(value).is_none().then_some(())
            }
            _ => at.value().map(drop),
        }
    })?;
    at.whitespace();
    (at.at == request.len()).then_some(())?;
    Some(Located {
        events: events?,
        metadata,
    })
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn byte(&mut self, wanted: u8) -> Option<()> {
        self.whitespace();
        (*self.bytes.get(self.at)? == wanted).then_some(())?;
        self.at += 1;
        Some(())
    }

    /// An object's members: `each` gets the cursor at the value and the key (which has no escapes).
    fn members(&mut self, mut each: impl FnMut(&mut Self, &[u8]) -> Option<()>) -> Option<()> {
        self.byte(b'{')?;
        self.whitespace();
        if self.bytes.get(self.at) == Some(&b'}') {
            self.at += 1;
            return Some(());
        }
        loop {
            self.whitespace();
            (self.bytes.get(self.at) == Some(&b'"')).then_some(())?;
            let key = self.value()?;
            let key = self.bytes.get(key.start + 1..key.end - 1)?;
            if key.contains(&b'\\') {
                return None;
            }
            self.byte(b':')?;
            self.whitespace();
            each(self, key)?;
            self.whitespace();
            match *self.bytes.get(self.at)? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// The range of the value here, skipped.
    fn value(&mut self) -> Option<Range<usize>> {
        let start = self.at;
        self.at = match *self.bytes.get(start)? {
            b'"' => literal_end(self.bytes, start)? + 1,
            b'{' | b'[' => nested_end(self.bytes, start)?,
            _ => {
                let len = self.bytes[start..]
                    .iter()
                    .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                    .unwrap_or(self.bytes.len() - start);
                (len > 0).then_some(start + len)?
            }
        };
        Some(start..self.at)
    }
}

/// The index of the quote that closes the string literal opening at `open`: the first quote after it with an
/// even number of backslashes right before it.
fn literal_end(bytes: &[u8], open: usize) -> Option<usize> {
    let mut from = open + 1;
    loop {
        let quote = from + memchr::memchr(b'"', bytes.get(from..)?)?;
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

/// The index just past the object or array opening at `open`.
fn nested_end(bytes: &[u8], open: usize) -> Option<usize> {
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
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any bytes at all: found or left to serde, never a panic (the request is whatever was POSTed).
        #[test]
        fn any_request_is_located_or_left_to_serde(text in "[{}\\[\\]\",:\\\\ a1]{0,40}|\\{\"Data\":\\{\"events\":[\"\\\\a{}]{0,12}") {
            let _ = locate(text.as_bytes(), "events");
        }
    }

    fn texts(request: &str) -> Option<(String, Option<String>)> {
        let found = locate(request.as_bytes(), "events")?;
        Some((
            request[found.events].to_string(),
            found.metadata.map(|m| request[m].to_string()),
        ))
    }

    #[test]
    fn the_usual_shapes_are_found() {
        let with_metadata = r#"{"Data":{"events":"[\"{\\\"a\\\":1}\"]"},"Metadata":{"PartitionContext":{"PartitionId":"0"}}}"#;
        assert_eq!(
            texts(with_metadata),
            Some((
                r#""[\"{\\\"a\\\":1}\"]""#.to_string(),
                Some(r#"{"PartitionContext":{"PartitionId":"0"}}"#.to_string())
            ))
        );
        // Metadata first, whitespace everywhere, other members and bindings skipped.
        let spaced = " { \"Metadata\" : {\"x\":[1,\"]\\\"}\"]} ,\n \"Other\":\"a\\\\\" , \"Data\" : { \"more\" : {\"events\":1} , \"events\" : \"\\\\\" } } ";
        assert_eq!(
            texts(spaced),
            Some((
                "\"\\\\\"".to_string(),
                Some("{\"x\":[1,\"]\\\"}\"]}".to_string())
            ))
        );
    }

    #[test]
    fn unusual_shapes_are_left_to_serde() {
        for request in [
            r#"{"Data":{"events":["x"]}}"#,
            r#"{"Data":{}}"#,
            r#"{"Data":{"events":"x"},"Data":{"events":"y"}}"#,
            r#"{"Data":{"events":"x","events":"y"}}"#,
            r#"{"Data":{"events":"x"},"Metadata":{},"Metadata":{}}"#,
            r#"{"D\u0061ta":{"events":"x"}}"#,
            r#"{"Data":{"events":"x"}} trailing"#,
            r#"{"Data":{"events":"x"}"#,
            r#"{"Data":{"events":"x\"}}"#,
            r#"["Data"]"#,
            "",
        ] {
            assert_eq!(texts(request), None, "{request}");
        }
    }
}
