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

use crate::skip::Cursor;
use std::ops::Range;

/// What `read_events` made of `Data.<binding>` (a string literal), and the byte range of `Metadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Located<T> {
    pub events: T,
    pub metadata: Option<Range<usize>>,
}

/// `read_events` reads the literal whose opening quote is at the index it is given, and returns what it
/// read with the index just past the closing quote: the literal is read once, by its consumer, which finds
/// its end on the way (searching for the end first cost as much again, its escapes being dense).
pub(super) fn locate<T>(
    request: &[u8],
    binding: &str,
    mut read_events: impl FnMut(&[u8], usize) -> Option<(T, usize)>,
) -> Option<Located<T>> {
    let mut at = Cursor::new(request);
    let (mut events, mut metadata) = (None, None);
    let mut seen_data = false;
    at.members(|at, key| {
        match &request[key] {
            b"Data" => {
                if std::mem::replace(&mut seen_data, true) {
                    return None;
                }
                at.members(|at, key| {
                    if &request[key] != binding.as_bytes() {
                        return at.value().map(drop);
                    }
                    // A second member of that name, or one that is not a string: serde's to read.
                    (events.is_none() && at.peek() == Some(b'"')).then_some(())?;
                    let (read, end) = read_events(request, at.at)?;
                    at.at = end;
                    events = Some(read);
                    Some(())
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
    at.at_end().then_some(())?;
    Some(Located {
        events: events?,
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any bytes at all: found or left to serde, never a panic (the request is whatever was POSTed).
        #[test]
        fn any_request_is_located_or_left_to_serde(text in "[{}\\[\\]\",:\\\\ a1]{0,40}|\\{\"Data\":\\{\"events\":[\"\\\\a{}]{0,12}") {
            let _ = locate(text.as_bytes(), "events", literal);
        }
    }

    /// The literal's range, as a consumer that only finds its end reads it.
    fn literal(bytes: &[u8], open: usize) -> Option<(Range<usize>, usize)> {
        let end = crate::skip::literal_end(bytes, open)? + 1;
        Some((open..end, end))
    }

    fn texts(request: &str) -> Option<(String, Option<String>)> {
        let found = locate(request.as_bytes(), "events", literal)?;
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
