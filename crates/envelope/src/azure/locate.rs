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

/// The byte ranges of `Data.<binding>` (when it is a string literal, quotes included) and of `Metadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Located {
    pub events: Range<usize>,
    pub metadata: Option<Range<usize>>,
}

pub(super) fn locate(request: &[u8], binding: &str) -> Option<Located> {
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
                    if &request[key] == binding.as_bytes() {
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
