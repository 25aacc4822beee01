//! Azure: the Functions custom-handler invocation for an Event Hub trigger, and the AKS diagnostic records in
//! its event bodies (`contracts/azure-functions.md` §3, §7).
//!
//! The host's encoding is full of traps, all handled here: `Data.events` is a string holding a JSON array (or
//! an array), its elements are strings holding one body each (or objects); `Metadata.*Array` values are JSON
//! strings or arrays. One body that is not JSON is reported (with its text, for the failover) and never stops
//! the others. Each body is `{"records":[…]}`; a record's `properties.log` is the audit event as a JSON string
//! ending in `\n`, which the pipeline parses.
//!
//! Memory stays proportional to the invocation: the request is read as borrowed raw JSON, each body is
//! unescaped once, and records are kept as their own text (shared with the failover index, never copied
//! again), never as a `Value` tree. A 32 MB invocation peaks at about three times its size while it is
//! split, then holds about one.

mod locate;
mod route;

use crate::escape::{first_special, hex_unit, short_escape, unescape_json_string, utf16_char};
use crate::{Batch, Payload, RawEvent, Source};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Where the audit event sits inside an AKS record (a JSON pointer).
pub const EVENT_POINTER: &str = "/properties/log";

/// The invocation request the Functions host POSTs to `/<FunctionName>`.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    /// One entry per Event Hub event: its text (JSON is checked when its records are read), or why it
    /// could not even be taken as text.
    pub bodies: Vec<Result<String, BadBody>>,
    pub partition_id: Option<String>,
    /// Sequence numbers, aligned with `bodies` when the host sent them.
    pub sequence_numbers: Vec<Option<i64>>,
}

/// An event body that is not JSON. Its text is kept for the failover output (it may hold anything, so it is
/// never logged); `index` and `reason` are what a log line may say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadBody {
    pub index: usize,
    /// Its id, as a record id would start (`p0-s12`, `b3`).
    pub id: String,
    pub bytes: usize,
    pub reason: String,
    pub text: String,
}

/// A request that is not a custom-handler invocation at all.
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    #[error("request body is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("request has no `Data.{0}`")]
    MissingBinding(String),
}

/// One Event Hub event body as raw bytes (drain mode receives them so).
pub fn body_from_bytes(index: usize, bytes: &[u8]) -> Result<String, BadBody> {
    String::from_utf8(bytes.to_vec()).map_err(|e| BadBody {
        index,
        id: format!("b{index}"),
        bytes: bytes.len(),
        reason: "event body is not UTF-8 text".into(),
        text: String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(rename = "Data", borrow, default)]
    data: HashMap<Cow<'a, str>, &'a RawValue>,
    #[serde(rename = "Metadata", borrow, default)]
    metadata: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct Metadata<'a> {
    #[serde(rename = "PartitionContext", borrow, default)]
    partition_context: Option<&'a RawValue>,
    #[serde(rename = "SequenceNumberArray", borrow, default)]
    sequence_numbers: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct PartitionContext {
    #[serde(rename = "PartitionId", default)]
    partition_id: Option<String>,
}

/// A JSON value the host may have sent JSON-encoded as a string.
fn decoded<T: for<'de> Deserialize<'de>>(raw: &RawValue) -> Option<T> {
    match serde_json::from_str::<T>(raw.get()) {
        Ok(v) => Some(v),
        Err(_) => {
            let text: String = serde_json::from_str(raw.get()).ok()?;
            serde_json::from_str(&text).ok()
        }
    }
}

/// The text of one `Data.events` element: a string holds a body, anything else is the body.
fn element_text(raw: &RawValue) -> String {
    let text = raw.get();
    if text.starts_with('"') {
        unescape_json_string(text).unwrap_or_else(|| text.to_string())
    } else {
        text.to_string()
    }
}

/// The bodies in `Data.events` when it is a JSON string literal (`raw`, quotes included) holding a JSON array of
/// strings, the host's usual shape: both levels of escaping are undone in one pass, straight into each body's
/// text. Reading the literal first (an unescaped copy of the whole array, scanned again as JSON, then each
/// element unescaped again) cost most of an invocation's split (BENCHMARKS.md). `None` for anything else or
/// anything irregular (an element that is not a string, invalid escapes, a raw control character): the caller
/// then takes the general route, which decides what such a request is.
pub fn string_bodies(raw: &str) -> Option<Vec<String>> {
    let (bodies, end) = string_bodies_at(raw.as_bytes(), 0)?;
    (end == raw.len()).then_some(bodies)
}

/// [`string_bodies`] of the literal whose opening quote is `bytes[open]`, and the index just past its
/// closing quote (the bytes may go on after it).
fn string_bodies_at(bytes: &[u8], open: usize) -> Option<(Vec<String>, usize)> {
    (bytes.get(open) == Some(&b'"')).then_some(())?;
    let mut outer = Unescaped {
        bytes: &bytes[open + 1..],
        at: 0,
        pending: ([0; 4], 0, 0),
    };
    let mut bodies = Vec::new();
    let mut body: Vec<u8> = Vec::new();
    let mut last_len = 0;
    let mut state = ArrayState::Start;
    // The decoded (once-unescaped) text, one byte at a time, read as a JSON array of strings.
    loop {
        if state == ArrayState::InString {
            outer.plain_and_doubly_escaped(&mut body);
        }
        let Some(byte) = outer.next_byte()? else {
            break;
        };
        state = match (state, byte) {
            (
                ArrayState::Start | ArrayState::BeforeFirst | ArrayState::BeforeNext,
                b' ' | b'\t' | b'\n' | b'\r',
            )
            | (ArrayState::AfterElement | ArrayState::End, b' ' | b'\t' | b'\n' | b'\r') => state,
            (ArrayState::Start, b'[') => ArrayState::BeforeFirst,
            (ArrayState::BeforeFirst, b']') => ArrayState::End,
            (ArrayState::BeforeFirst | ArrayState::BeforeNext, b'"') => {
                // A body is likely about as long as the last one (the host packs them full): room for it at
                // once, rather than growing by doubling and copying.
                body.reserve(last_len);
                ArrayState::InString
            }
            (ArrayState::InString, b'"') => {
                last_len = body.len();
                bodies.push(String::from_utf8(std::mem::take(&mut body)).ok()?);
                ArrayState::AfterElement
            }
            (ArrayState::InString, b'\\') => {
                push_escape(&mut outer, &mut body)?;
                ArrayState::InString
            }
            (ArrayState::InString, byte) if byte >= 0x20 => {
                body.push(byte);
                ArrayState::InString
            }
            (ArrayState::AfterElement, b',') => ArrayState::BeforeNext,
            (ArrayState::AfterElement, b']') => ArrayState::End,
            _ => return None,
        };
    }
    (state == ArrayState::End).then_some((bodies, open + 1 + outer.at))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArrayState {
    Start,
    BeforeFirst,
    BeforeNext,
    InString,
    AfterElement,
    End,
}

/// The bytes a JSON string literal's inside stands for, one at a time (a `\u` escape as its UTF-8 bytes), up to
/// its closing quote.
struct Unescaped<'a> {
    bytes: &'a [u8],
    at: usize,
    pending: ([u8; 4], u8, u8),
}

impl<'a> Unescaped<'a> {
    /// Inside an element: onto `body`, the input bytes up to the next `\`, `"` or control character (each
    /// stands for itself), and the two escapes a body is dense with, undone at once, for as long as they come:
    /// its `"` and its `\` (a record's `properties.log` escapes every quote of the event) are `\\\"` and `\\\\`
    /// here. Nothing while a `\u` escape's bytes are pending.
    fn plain_and_doubly_escaped(&mut self, body: &mut Vec<u8>) {
        let (_, used, len) = self.pending;
        if used < len {
            return;
        }
        let bytes = self.bytes;
        let mut at = self.at;
        loop {
            let rest = &bytes[at..];
            let run = first_special(rest).unwrap_or(rest.len());
            body.extend_from_slice(&rest[..run]);
            at += run;
            let byte = match bytes.get(at..at + 4) {
                Some(br#"\\\""#) => b'"',
                Some(br"\\\\") => b'\\',
                _ => break,
            };
            body.push(byte);
            at += 4;
        }
        self.at = at;
    }

    /// `Some(None)` at the closing quote (stepped over), `None` for an invalid or unclosed literal.
    fn next_byte(&mut self) -> Option<Option<u8>> {
        let (buf, used, len) = &mut self.pending;
        if *used < *len {
            *used += 1;
            return Some(Some(buf[usize::from(*used) - 1]));
        }
        let &byte = self.bytes.get(self.at)?;
        self.at += 1;
        match byte {
            b'\\' => {}
            b'"' => return Some(None),
            byte if byte < 0x20 => return None,
            byte => return Some(Some(byte)),
        }
        let escape = *self.bytes.get(self.at)?;
        self.at += 1;
        if escape != b'u' {
            return short_escape(escape).map(Some);
        }
        let c = self.unicode()?;
        let mut buf = [0u8; 4];
        let len = c.encode_utf8(&mut buf).len() as u8;
        self.pending = (buf, 1, len);
        Some(Some(buf[0]))
    }

    /// The character of a `\u` escape whose `\u` was just read (a surrogate pair takes the next one too).
    fn unicode(&mut self) -> Option<char> {
        let first = self.hex4()?;
        utf16_char(first, || {
            if self.bytes.get(self.at..self.at + 2)? != b"\\u" {
                return None;
            }
            self.at += 2;
            self.hex4()
        })
    }

    fn hex4(&mut self) -> Option<u16> {
        let digits = self.bytes.get(self.at..self.at + 4)?;
        self.at += 4;
        hex_unit(digits)
    }
}

/// Four hex digits of the decoded text, as a `\u` escape's code unit.
fn decoded_hex4(outer: &mut Unescaped<'_>) -> Option<u16> {
    let mut digits = [0u8; 4];
    for digit in &mut digits {
        *digit = outer.next_byte()??;
    }
    hex_unit(&digits)
}

/// After a `\` inside an element (in the decoded text): that escape, undone, onto `body`.
fn push_escape(outer: &mut Unescaped<'_>, body: &mut Vec<u8>) -> Option<()> {
    let escape = outer.next_byte()??;
    if escape != b'u' {
        body.push(short_escape(escape)?);
        return Some(());
    }
    let first = decoded_hex4(outer)?;
    let c = utf16_char(first, || {
        if (outer.next_byte()??, outer.next_byte()??) != (b'\\', b'u') {
            return None;
        }
        decoded_hex4(outer)
    })?;
    let mut buf = [0u8; 4];
    body.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    Some(())
}

/// Parse the host's request and split its bodies into record batches per (category, cluster); `binding` is
/// the trigger's binding name (`events`).
///
/// The usual shape, a string holding an array of strings, is read by [`string_bodies`] in one pass into the
/// bodies; any other is unescaped into a buffer of its own first.
///
/// Memory: the request is freed once the bodies (or the unescaped events) are out of it, before the records
/// are taken, body by body (each body's text freed as soon as its records are copied out). The peak is the
/// request plus the bodies, or the bodies plus the records, whichever is larger: about twice the request,
/// never the three copies a naive parse holds at once.
pub fn split_request(request: Vec<u8>, binding: &str) -> Result<Split, InvocationError> {
    let parts = match located_bodies(&request, binding) {
        Some(found) => found,
        None => parsed_events(&request, binding)?,
    };
    drop(request);
    Ok(split_parts(parts))
}

/// The bodies' records, grouped.
fn split_parts((partition_id, sequence_numbers, events): Parts) -> Split {
    let mut splitter = Splitter::new(partition_id, sequence_numbers);
    match events {
        Events::Text(events) => match serde_json::from_str::<Vec<&RawValue>>(&events) {
            Ok(elements) => {
                for element in elements {
                    splitter.body(Ok(element_text(element)));
                }
            }
            Err(_) => splitter.body(Ok(events)),
        },
        Events::Bodies(bodies) => {
            for body in bodies {
                splitter.body(Ok(body));
            }
        }
    }
    splitter.finish()
}

/// The partition, the sequence numbers and the events of a request.
type Parts = (Option<String>, Vec<Option<i64>>, Events);

/// The usual request, read without serde going over `Data.events` ([`locate`]): its bodies, or `None` for
/// the general route.
fn located_bodies(request: &[u8], binding: &str) -> Option<Parts> {
    let found = locate::locate(request, binding, string_bodies_at)?;
    let bodies = found.events;
    let metadata = match found.metadata {
        Some(range) => Some(serde_json::from_slice::<&RawValue>(request.get(range)?).ok()?),
        None => None,
    };
    let (partition_id, sequence_numbers) = metadata_fields(metadata);
    Some((partition_id, sequence_numbers, Events::Bodies(bodies)))
}

/// The request parsed by serde: every shape the host may send, and the error for what is not a request.
fn parsed_events(request: &[u8], binding: &str) -> Result<Parts, InvocationError> {
    let parsed: Request<'_> = serde_json::from_slice(request).map_err(InvocationError::NotJson)?;
    let data = parsed
        .data
        .get(binding)
        .ok_or_else(|| InvocationError::MissingBinding(binding.to_string()))?;
    let (partition_id, sequence_numbers) = metadata_fields(parsed.metadata);
    let raw = data.get();
    let events = if let Some(bodies) = raw.starts_with('"').then(|| string_bodies(raw)).flatten() {
        Events::Bodies(bodies)
    } else if raw.starts_with('"') {
        // A string holding the array of bodies (or a single body, cardinality one).
        Events::Text(unescape_json_string(raw).ok_or_else(|| {
            InvocationError::NotJson(serde::de::Error::custom(
                "`Data` string is not a JSON string",
            ))
        })?)
    } else if raw.starts_with('[') {
        Events::Bodies(
            serde_json::from_str::<Vec<&RawValue>>(raw)
                .map_err(InvocationError::NotJson)?
                .into_iter()
                .map(element_text)
                .collect(),
        )
    } else {
        Events::Bodies(vec![raw.to_string()])
    };
    Ok((partition_id, sequence_numbers, events))
}

/// The partition id and the sequence numbers in `Metadata`, as far as they can be read.
fn metadata_fields(metadata: Option<&RawValue>) -> (Option<String>, Vec<Option<i64>>) {
    let metadata: Metadata<'_> = metadata
        .and_then(|m| serde_json::from_str(m.get()).ok())
        .unwrap_or_default();
    let partition_id = metadata
        .partition_context
        .and_then(decoded::<PartitionContext>)
        .and_then(|p| p.partition_id);
    let sequence_numbers: Vec<Option<i64>> = metadata
        .sequence_numbers
        .and_then(decoded::<Vec<serde_json::Value>>)
        .map(|a| a.iter().map(serde_json::Value::as_i64).collect())
        .unwrap_or_default();
    (partition_id, sequence_numbers)
}

/// `Data.events`, freed from the request: the unescaped string of bodies, or the bodies themselves.
enum Events {
    Text(String),
    Bodies(Vec<String>),
}

/// `…/MANAGEDCLUSTERS/<NAME>` → `<NAME>` (as emitted, upper-case), else the last segment.
pub fn cluster_from_resource_id(resource_id: &str) -> &str {
    let segments: Vec<&str> = resource_id.split('/').filter(|s| !s.is_empty()).collect();
    segments
        .iter()
        .position(|s| s.eq_ignore_ascii_case("managedclusters"))
        .and_then(|i| segments.get(i + 1))
        .or(segments.last())
        .copied()
        .unwrap_or("")
}

/// The category of a parsed record (`category`, or `Category` in some exports).
pub fn category(record: &serde_json::Value) -> Option<&str> {
    record
        .get("category")
        .or_else(|| record.get("Category"))
        .and_then(serde_json::Value::as_str)
}

/// Records of one category from one cluster, ready for the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryBatch {
    pub category: String,
    pub batch: Batch,
    /// The original records' text, by event id: what a failover keeps (shared with the batch's payloads).
    pub records: BTreeMap<String, Arc<str>>,
}

/// What [`batches`] counted and set aside.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordStats {
    pub records: u64,
    /// Elements of `records` that are not objects, and bodies without records.
    pub not_records: u64,
    /// Bodies that are not JSON, with their text.
    pub bad_bodies: Vec<BadBody>,
}

/// The fields of a record (or body) that decide where it goes; everything else is skipped unparsed.
#[derive(Deserialize, Default)]
struct Head<'a> {
    #[serde(borrow, default)]
    category: Option<Cow<'a, str>>,
    #[serde(rename = "Category", borrow, default)]
    category_upper: Option<Cow<'a, str>>,
    #[serde(rename = "resourceId", borrow, default)]
    resource_id: Option<Cow<'a, str>>,
    #[serde(rename = "ResourceId", borrow, default)]
    resource_id_upper: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    time: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    properties: Option<&'a RawValue>,
    /// A body's records, each as raw text: one pass over the body reads its head and splits its records
    /// (a `records` that is not an array makes the body unreadable, and so parked whole).
    #[serde(borrow, default)]
    records: Option<Vec<&'a RawValue>>,
    #[serde(rename = "Records", borrow, default)]
    records_upper: Option<Vec<&'a RawValue>>,
}

impl Head<'_> {
    fn category(&self) -> Option<&str> {
        self.category.as_deref().or(self.category_upper.as_deref())
    }

    fn route(&self) -> route::Route<'_> {
        route::Route {
            category: self.category(),
            resource_id: self
                .resource_id
                .as_deref()
                .or(self.resource_id_upper.as_deref()),
            time: self.time.as_deref(),
        }
    }
}

/// An invocation split into record batches.
#[derive(Debug, Clone, Default)]
pub struct Split {
    pub groups: Vec<CategoryBatch>,
    pub stats: RecordStats,
    /// Event Hub bodies in the invocation.
    pub bodies: usize,
}

/// Splits bodies into records as they come, grouped by (category, cluster). Body ids are stable across
/// redeliveries and unique within the invocation: `p<partition>-s<sequence>` when the host sent a
/// sequence number not seen before in this invocation, else that plus `-b<index>` (a repeated sequence
/// number must not make two records share an id: one would be parked twice, the other lost), and
/// `b<index>` without metadata. Record ids are `<body id>-r<record>`.
struct Splitter {
    partition_id: Option<String>,
    sequence_numbers: Vec<Option<i64>>,
    seen_sequences: std::collections::HashSet<i64>,
    groups: BTreeMap<(String, String), CategoryBatch>,
    stats: RecordStats,
    bodies: usize,
}

impl Splitter {
    fn new(partition_id: Option<String>, sequence_numbers: Vec<Option<i64>>) -> Self {
        Self {
            partition_id,
            sequence_numbers,
            seen_sequences: std::collections::HashSet::new(),
            groups: BTreeMap::new(),
            stats: RecordStats::default(),
            bodies: 0,
        }
    }

    fn next_body_id(&mut self) -> (usize, String) {
        let index = self.bodies;
        self.bodies += 1;
        let sequence = self.sequence_numbers.get(index).copied().flatten();
        let id = match (&self.partition_id, sequence) {
            (Some(p), Some(seq)) if self.seen_sequences.insert(seq) => format!("p{p}-s{seq}"),
            (Some(p), Some(seq)) => format!("p{p}-s{seq}-b{index}"),
            _ => format!("b{index}"),
        };
        (index, id)
    }

    /// Take one body's records; the body's text is dropped on return.
    fn body(&mut self, body: Result<String, BadBody>) {
        let (index, body_id) = self.next_body_id();
        let text = match body {
            Ok(text) => text,
            Err(mut bad) => {
                bad.id = body_id;
                self.stats.bad_bodies.push(bad);
                return;
            }
        };
        let mut head: Head<'_> = match serde_json::from_str(&text) {
            Ok(head) => head,
            Err(e) => {
                self.stats.bad_bodies.push(BadBody {
                    index,
                    id: body_id,
                    bytes: text.len(),
                    reason: format!("event body is not JSON ({e})"),
                    text,
                });
                return;
            }
        };
        let Some(records) = head.records.take().or(head.records_upper.take()) else {
            // A bare record (some exporters, failover files).
            if head.category().is_some() && head.properties.is_some() {
                add_record(
                    &mut self.groups,
                    &mut self.stats,
                    &format!("{body_id}-r0"),
                    &text,
                    head.route(),
                );
            } else {
                self.stats.not_records += 1;
            }
            return;
        };
        for (record_index, raw) in records.into_iter().enumerate() {
            let record_text = raw.get();
            // The body's parse validated the record: its route is found by quotes and brackets, and serde
            // reads only an unusual one.
            let parsed;
            let route = match route::route(record_text) {
                Some(route) => route,
                None => match serde_json::from_str::<Head<'_>>(record_text) {
                    Ok(head) if record_text.starts_with('{') => {
                        parsed = head;
                        parsed.route()
                    }
                    _ => {
                        self.stats.not_records += 1;
                        continue;
                    }
                },
            };
            add_record(
                &mut self.groups,
                &mut self.stats,
                &format!("{body_id}-r{record_index}"),
                record_text,
                route,
            );
        }
    }

    fn finish(self) -> Split {
        Split {
            groups: self.groups.into_values().collect(),
            stats: self.stats,
            bodies: self.bodies,
        }
    }
}

/// Split the bodies of `invocation` (drain mode, replay files), consuming it so each body's text is freed
/// as soon as its records are taken.
pub fn split(invocation: Invocation) -> Split {
    let mut splitter = Splitter::new(invocation.partition_id, invocation.sequence_numbers);
    for body in invocation.bodies {
        splitter.body(body);
    }
    splitter.finish()
}

fn add_record(
    groups: &mut BTreeMap<(String, String), CategoryBatch>,
    stats: &mut RecordStats,
    id: &str,
    text: &str,
    route: route::Route<'_>,
) {
    stats.records += 1;
    let category = route.category.unwrap_or("").to_string();
    let cluster = route
        .resource_id
        .map(cluster_from_resource_id)
        .unwrap_or("")
        .to_string();
    let envelope_time_ms = route
        .time
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis());
    let shared: Arc<str> = Arc::from(text);
    let group = groups
        .entry((category.clone(), cluster.clone()))
        .or_insert_with(|| CategoryBatch {
            category: category.clone(),
            batch: Batch {
                source: Source {
                    cluster,
                    stream: category,
                    event_pointer: Some(EVENT_POINTER),
                },
                events: Vec::new(),
            },
            records: BTreeMap::new(),
        });
    group.records.insert(id.to_string(), shared.clone());
    group.batch.events.push(RawEvent {
        id: id.to_string(),
        envelope_time_ms,
        payload: Payload::Shared(shared),
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    /// What the general route makes of a `Data.events` string literal: the literal unescaped, read as an
    /// array, each element unescaped (the whole text as one body when it is not an array).
    fn general_route(literal: &str) -> Option<Vec<String>> {
        let events = unescape_json_string(literal)?;
        Some(match serde_json::from_str::<Vec<&RawValue>>(&events) {
            Ok(elements) => elements.into_iter().map(element_text).collect(),
            Err(_) => vec![events],
        })
    }

    /// `text` with every character past ASCII, and every `/`, written as `\u` escapes (surrogate pairs
    /// included), as an encoder that escapes non-ASCII writes it.
    fn ascii_escaped(text: &str) -> String {
        let mut out = String::new();
        for c in text.chars() {
            if c.is_ascii() && c != '/' {
                out.push(c);
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04X}"));
                }
            }
        }
        out
    }

    /// Body texts: JSON-ish text with quotes, backslashes, escapes, control characters and characters past
    /// the BMP.
    fn body_text() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                4 => "[a-z{}:,\\[\\] ]{0,12}",
                1 => Just("\"".to_string()),
                1 => Just("\\".to_string()),
                1 => Just("\\\"".to_string()),
                1 => Just("\n\t\u{1}".to_string()),
                1 => Just("\u{e9}\u{1F600}\u{2028}".to_string()),
                1 => Just("\\u00e9".to_string()),
            ],
            0..12,
        )
        .prop_map(|parts| parts.concat())
    }

    /// An Event Hub body: a batch of AKS records around generated text, or text that is not JSON at all.
    fn event_body() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => (prop::collection::vec(body_text(), 1..4), "[a-z]{1,6}").prop_map(|(logs, cluster)| {
                let records: Vec<Value> = logs
                    .iter()
                    .map(|log| json!({
                        "category": "kube-audit",
                        "resourceId": format!("/SUBSCRIPTIONS/S/RESOURCEGROUPS/R/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/{cluster}"),
                        "time": "2026-04-20T16:29:59.995191417Z",
                        "properties": {"log": format!("{log}\n"), "stream": "stdout"},
                    }))
                    .collect();
                json!({"records": records}).to_string()
            }),
            1 => body_text(),
        ]
    }

    /// A host request around `bodies`: `Data.events` a string of an array of strings (escaped further or not),
    /// `Metadata` absent, first or last (its values as JSON or as JSON strings), another member anywhere, and
    /// whitespace or none between tokens.
    fn host_request(
        bodies: &[String],
        metadata_at: u8,
        stringified: bool,
        other: Option<&str>,
        spaced: bool,
        outer_ascii: bool,
    ) -> String {
        let array = serde_json::to_string(bodies).unwrap();
        let literal = serde_json::to_string(&array).unwrap();
        let literal = if outer_ascii {
            ascii_escaped(&literal)
        } else {
            literal
        };
        let sequence: Vec<i64> = (0..bodies.len() as i64).map(|i| 100 + i % 3).collect();
        let (partition, sequence) = if stringified {
            (
                serde_json::to_string(&json!({"PartitionId": "7"}).to_string()).unwrap(),
                serde_json::to_string(&serde_json::to_string(&sequence).unwrap()).unwrap(),
            )
        } else {
            (
                json!({"PartitionId": "7"}).to_string(),
                serde_json::to_string(&sequence).unwrap(),
            )
        };
        let (colon, comma) = if spaced { (" : ", " ,\n ") } else { (":", ",") };
        let data = format!("\"Data\"{colon}{{\"events\"{colon}{literal}}}");
        let metadata = format!(
            "\"Metadata\"{colon}{{\"PartitionContext\"{colon}{partition}{comma}\"SequenceNumberArray\"{colon}{sequence}}}"
        );
        let other =
            other.map(|text| format!("\"Other\"{colon}{}", serde_json::to_string(text).unwrap()));
        let mut members = vec![data];
        match metadata_at {
            0 => {}
            1 => members.insert(0, metadata),
            _ => members.push(metadata),
        }
        if let Some(other) = other {
            members.insert(members.len() / 2, other);
        }
        let body = members.join(comma);
        if spaced {
            format!(" {{ {body} }}\n")
        } else {
            format!("{{{body}}}")
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// However the host escapes the bodies (plain, `\u` escapes at either level, whitespace around the
        /// elements), the one-pass reading gives exactly the bodies, as the general route does.
        #[test]
        fn string_bodies_are_the_bodies_the_general_route_reads(
            bodies in prop::collection::vec(body_text(), 0..6),
            spaced in any::<bool>(),
            inner_ascii in any::<bool>(),
            outer_ascii in any::<bool>(),
        ) {
            let mut array = String::from(if spaced { "[ " } else { "[" });
            for (i, body) in bodies.iter().enumerate() {
                if i > 0 {
                    array.push_str(if spaced { " ,\r\n\t" } else { "," });
                }
                let element = serde_json::to_string(body).unwrap();
                array.push_str(&if inner_ascii { ascii_escaped(&element) } else { element });
            }
            array.push_str(if spaced { " ]\n" } else { "]" });
            let literal = serde_json::to_string(&array).unwrap();
            let literal = if outer_ascii { ascii_escaped(&literal) } else { literal };
            prop_assert_eq!(string_bodies(&literal), Some(bodies.clone()));
            prop_assert_eq!(general_route(&literal), Some(bodies));
        }

        /// On a damaged literal the one-pass reading declines, or agrees with the general route.
        /// Requests of the usual shape are read without serde going over `Data.events`, into exactly what the
        /// serde route makes of them: the same groups, records, ids and counts.
        #[test]
        fn located_requests_split_as_the_serde_route_splits_them(
            bodies in prop::collection::vec(event_body(), 0..5),
            metadata_at in 0u8..3,
            stringified in any::<bool>(),
            other in prop::option::of(body_text()),
            spaced in any::<bool>(),
            outer_ascii in any::<bool>(),
        ) {
            let request = host_request(&bodies, metadata_at, stringified, other.as_deref(), spaced, outer_ascii);
            prop_assert!(located_bodies(request.as_bytes(), "events").is_some(), "{}", request);
            let located = split_request(request.clone().into_bytes(), "events").unwrap();
            let parsed = split_parts(parsed_events(request.as_bytes(), "events").unwrap());
            prop_assert_eq!(located.bodies, parsed.bodies);
            prop_assert_eq!(&located.stats, &parsed.stats);
            prop_assert_eq!(&located.groups, &parsed.groups);
            // The metadata was read: record ids carry the partition and sequence numbers.
            if metadata_at != 0 {
                let mut ids = located.groups.iter().flat_map(|g| g.records.keys());
                prop_assert!(ids.all(|id| id.starts_with("p7-s10")));
            }
        }

        #[test]
        fn string_bodies_decline_or_agree_on_damaged_literals(
            bodies in prop::collection::vec(body_text(), 1..4),
            damage in prop::collection::vec(
                (any::<prop::sample::Index>(), prop::sample::select(&[
                    "\\", "\"", "u", "[", "]", ",", " ", "d8", "\\u", "\\\"", "\\\\", "+", "\u{7}", "",
                ][..])),
                1..4,
            ),
        ) {
            let array = serde_json::to_string(&bodies).unwrap();
            let mut literal = serde_json::to_string(&array).unwrap();
            for (at, insert) in damage {
                let mut at = at.index(literal.len());
                while !literal.is_char_boundary(at) {
                    at -= 1;
                }
                literal.insert_str(at, insert);
            }
            // The request parse has checked that `Data.events` is a JSON string before either route runs.
            if serde_json::from_str::<String>(&literal).is_ok()
                && let Some(read) = string_bodies(&literal)
            {
                prop_assert_eq!(Some(read), general_route(&literal));
            }
        }
    }

    #[test]
    fn string_bodies_decline_what_is_not_an_array_of_strings() {
        let object_element = serde_json::to_string(r#"[{"records":[]}]"#).unwrap();
        let not_array = serde_json::to_string(r#"{"records":[]}"#).unwrap();
        let trailing = serde_json::to_string(r#"["a"] x"#).unwrap();
        let open = serde_json::to_string(r#"["a""#).unwrap();
        let comma = serde_json::to_string(r#"["a",]"#).unwrap();
        let sign = serde_json::to_string(r#"["\u+041"]"#).unwrap();
        for literal in [object_element, not_array, trailing, open, comma, sign] {
            assert_eq!(string_bodies(&literal), None, "{literal}");
        }
        let empty = serde_json::to_string("[]").unwrap();
        assert_eq!(string_bodies(&empty), Some(vec![]));
    }

    fn record(category: &str, log: &str) -> Value {
        json!({"time": "2026-04-20T16:29:59.995191417Z", "category": category,
               "resourceId": "/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/PROD-AKS",
               "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
               "properties": {"log": log, "stream": "stdout", "pod": "kube-apiserver-1"}})
    }

    #[test]
    fn every_host_encoding_of_data_events_is_read_and_a_bad_body_stands_alone() {
        let body = json!({"records": [record("kube-audit", "{\"kind\":\"Event\"}\n")]}).to_string();
        let double_encoded = json!([body, "not json {", body]).to_string();
        for data in [
            json!(double_encoded),             // string holding an array of strings
            json!([body, "not json {", body]), // array of strings
            json!([
                serde_json::from_str::<Value>(&body).unwrap(),
                "not json {",
                body
            ]), // mixed
        ] {
            let request = json!({"Data": {"events": data}, "Metadata": {
                "PartitionContext": {"PartitionId": "3"}, "SequenceNumberArray": "[10, 11, 12]"}});
            let split = split_request(request.to_string().into_bytes(), "events").unwrap();
            assert_eq!((split.bodies, split.stats.records), (3, 2));
            assert_eq!(split.stats.bad_bodies.len(), 1);
            let bad = &split.stats.bad_bodies[0];
            assert_eq!(
                (bad.index, bad.id.as_str(), bad.text.as_str()),
                (1, "p3-s11", "not json {")
            );
            let ids: Vec<&str> = split.groups[0]
                .batch
                .events
                .iter()
                .map(|e| e.id.as_str())
                .collect();
            assert_eq!(ids, ["p3-s10-r0", "p3-s12-r0"]);
        }
        assert!(matches!(
            split_request(b"{}".to_vec(), "events"),
            Err(InvocationError::MissingBinding(_))
        ));
        assert!(matches!(
            split_request(b"<xml/>".to_vec(), "events"),
            Err(InvocationError::NotJson(_))
        ));
        // Cardinality one: a single body in the string, or the body as an object.
        for one in [
            json!({"Data": {"events": body}}),
            json!({"Data": {"events": serde_json::from_str::<Value>(&body).unwrap()}}),
        ] {
            let split = split_request(one.to_string().into_bytes(), "events").unwrap();
            assert_eq!((split.bodies, split.stats.records), (1, 1));
        }
    }

    #[test]
    fn records_are_grouped_by_category_with_stable_ids_and_their_own_text() {
        let r1 = record("kube-audit", "{\"kind\":\"Event\",\"auditID\":\"a\"}\n");
        let body1 = json!({"records": [r1, record("kube-audit-admin", "{\"kind\":\"Event\"}\n")]});
        let body2 = json!({"records": [record("kube-audit", "plain text line\n"), 7]});
        let inv = Invocation {
            bodies: vec![
                Ok(body1.to_string()),
                Ok(body2.to_string()),
                Ok(json!({"unexpected": true}).to_string()),
            ],
            partition_id: Some("0".into()),
            sequence_numbers: vec![Some(41), Some(42)],
        };
        let Split { groups, stats, .. } = split(inv);
        assert_eq!((stats.records, stats.not_records), (3, 2));
        assert_eq!(groups.len(), 2);
        let audit = groups.iter().find(|g| g.category == "kube-audit").unwrap();
        let ids: Vec<&str> = audit.batch.events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["p0-s41-r0", "p0-s42-r0"]);
        assert_eq!(audit.batch.source.cluster, "PROD-AKS");
        assert_eq!(audit.batch.source.event_pointer, Some(EVENT_POINTER));
        let Payload::Shared(first) = &audit.batch.events[0].payload else {
            panic!()
        };
        assert_eq!(serde_json::from_str::<Value>(first).unwrap(), r1);
        assert_eq!(&audit.records["p0-s41-r0"], first);
        assert_eq!(
            audit.batch.events[0].envelope_time_ms,
            Some(1_776_702_599_995)
        );
    }

    /// Regression: `SequenceNumberArray` `[5,5]` gave two records the id `p0-s5-r0`: one was parked twice,
    /// the other lost.
    #[test]
    fn ids_are_unique_even_when_sequence_numbers_repeat() {
        let body = json!({"records": [record("kube-audit", "{}"), record("kube-audit", "{}")]})
            .to_string();
        let inv = Invocation {
            bodies: vec![Ok(body.clone()), Ok(body.clone()), Ok(body)],
            partition_id: Some("0".into()),
            sequence_numbers: vec![Some(5), Some(5), None],
        };
        let groups = split(inv).groups;
        let ids: Vec<&str> = groups[0]
            .batch
            .events
            .iter()
            .map(|e| e.id.as_str())
            .collect();
        assert_eq!(
            ids,
            [
                "p0-s5-r0",
                "p0-s5-r1",
                "p0-s5-b1-r0",
                "p0-s5-b1-r1",
                "b2-r0",
                "b2-r1"
            ]
        );
        assert_eq!(groups[0].records.len(), 6);
    }

    #[test]
    fn json_strings_unescape_as_serde_reads_them() {
        for text in [
            "",
            "plain",
            "q\"b\\s/",
            "\u{0}\u{1f}\n\t",
            "é€😀\u{10ffff}",
            "\\u0041",
        ] {
            let literal = serde_json::to_string(text).unwrap();
            assert_eq!(
                unescape_json_string(&literal).as_deref(),
                Some(text),
                "{literal}"
            );
        }
        assert_eq!(
            unescape_json_string(r#""\ud83d\ude00\u00e9\/""#).as_deref(),
            Some("😀é/")
        );
        for bad in [
            r#""\ud83d""#,
            r#""\x""#,
            r#""a"b""#,
            "\"unterminated",
            "\"raw\ncontrol\"",
            "\"raw\u{1}before\\nan escape\"",
            r#""\u12""#,
        ] {
            assert_eq!(unescape_json_string(bad), None, "{bad}");
        }
    }

    #[test]
    fn cluster_names_come_from_resource_ids_in_any_case() {
        assert_eq!(
            cluster_from_resource_id(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/dev1"
            ),
            "dev1"
        );
        assert_eq!(cluster_from_resource_id("/X/Y/Z"), "Z");
        assert_eq!(cluster_from_resource_id(""), "");
    }
}
