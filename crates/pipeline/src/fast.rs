//! The fast path for the default profile: an event's text is read into borrowed, typed fields and written
//! straight into the record's JSON, without a generic `Value` tree, a field map or a second serialisation.
//! `requestObject` and `responseObject` are passed through as the apiserver's own compact JSON text.
//!
//! It only takes events where the result is the generic path's: [`map_event`] returns `None` (and the caller
//! runs the generic path) for anything unusual — a key that Site24x7's lookup rules would treat specially
//! (a dotted key, another letter case), a value of an unexpected type, anything secret redaction might touch,
//! a record over the size limit, or text that is not a well-formed audit event. A differential test holds
//! the two paths equal on every bundled sample.

use crate::{Seen, is_agent_field};
use kaf_config::{DateFormat, JsonPathEntry, ValueType};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Number;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::io::Write as _;

type Text<'a> = Option<Str<'a>>;
type List<'a> = Option<Vec<Str<'a>>>;

/// A string borrowed from the event's text when it has no escapes. (serde's own `Cow<str>` always copies.)
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Str<'a>(Cow<'a, str>);

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

/// The default profile's fields as the fast path writes them: (output name, source key, value type), in
/// the byte order of the names (the generic path's map order, so both write the same bytes).
const FIELDS: [(&str, &str, ValueType); 36] = [
    ("annotations", "annotations", ValueType::JsonObject),
    ("apiversion", "apiVersion", ValueType::Plain),
    ("auditid", "auditID", ValueType::Plain),
    (
        "authorization_decision",
        "annotations.authorization.k8s.io/decision",
        ValueType::Plain,
    ),
    (
        "authorization_reason",
        "annotations.authorization.k8s.io/reason",
        ValueType::Plain,
    ),
    (
        "impersonateduser_groups",
        "impersonatedUser.groups",
        ValueType::Plain,
    ),
    (
        "impersonateduser_username",
        "impersonatedUser.username",
        ValueType::Plain,
    ),
    ("level", "level", ValueType::Plain),
    ("objectref_apigroup", "objectRef.apiGroup", ValueType::Plain),
    (
        "objectref_apiversion",
        "objectRef.apiVersion",
        ValueType::Plain,
    ),
    ("objectref_name", "objectRef.name", ValueType::Plain),
    (
        "objectref_namespace",
        "objectRef.namespace",
        ValueType::Plain,
    ),
    ("objectref_resource", "objectRef.resource", ValueType::Plain),
    (
        "objectref_subresource",
        "objectRef.subresource",
        ValueType::Plain,
    ),
    ("requestobject", "requestObject", ValueType::Plain),
    (
        "requestreceivedtimestamp",
        "requestReceivedTimestamp",
        ValueType::Plain,
    ),
    ("requesturi", "requestURI", ValueType::Plain),
    ("responseobject", "responseObject", ValueType::Plain),
    (
        "responsestatus_code",
        "responseStatus.code",
        ValueType::Plain,
    ),
    (
        "responsestatus_message",
        "responseStatus.message",
        ValueType::Plain,
    ),
    (
        "responsestatus_reason",
        "responseStatus.reason",
        ValueType::Plain,
    ),
    (
        "responsestatus_status",
        "responseStatus.status",
        ValueType::Plain,
    ),
    ("sourceip", "sourceIPs.0", ValueType::Plain),
    ("sourceips", "sourceIPs", ValueType::Plain),
    ("stage", "stage", ValueType::Plain),
    ("stagetimestamp", "stageTimestamp", ValueType::Plain),
    (
        "user_accesskeyid",
        "user.extra.accessKeyId.0",
        ValueType::Plain,
    ),
    ("user_arn", "user.extra.arn.0", ValueType::Plain),
    (
        "user_canonicalarn",
        "user.extra.canonicalArn.0",
        ValueType::Plain,
    ),
    (
        "user_principalid",
        "user.extra.principalId.0",
        ValueType::Plain,
    ),
    (
        "user_sessionname",
        "user.extra.sessionName.0",
        ValueType::Plain,
    ),
    ("useragent", "userAgent", ValueType::Plain),
    ("usergroups", "user.groups", ValueType::Plain),
    ("username", "user.username", ValueType::Plain),
    ("useruid", "user.uid", ValueType::Plain),
    ("verb", "verb", ValueType::Plain),
];

/// Whether the fast path writes exactly what `entries`, `date_field` and `date_format` ask for.
pub(crate) fn covers(
    entries: &[JsonPathEntry],
    date_field: &str,
    date_format: &DateFormat,
) -> bool {
    let mut profile: Vec<(&str, &str, ValueType)> = entries
        .iter()
        .filter(|e| e.pattern.is_none())
        .map(|e| (e.name.as_str(), e.key.as_str(), e.value_type))
        .collect();
    profile.sort_by(|a, b| a.0.cmp(b.0));
    profile.len() == entries.len()
        && profile == FIELDS
        && date_field == "requestreceivedtimestamp"
        && *date_format == DateFormat::default()
}

/// What the caller adds to every record, and the limits.
pub(crate) struct Context<'a> {
    pub cluster: &'a str,
    pub stream: &'a str,
    pub redact_secrets: bool,
    pub max_record_bytes: usize,
    pub now_ms: i64,
    pub envelope_time_ms: Option<i64>,
}

/// A record made by the fast path.
pub(crate) struct Mapped {
    /// The key of [`crate::event_identity`] in the batch's [`Seen`], for deduplication.
    pub identity: Option<u128>,
    pub json: String,
    pub log_size: u64,
    /// The event time was unreadable: the envelope or ingest time was used.
    pub timestamp_fallback: bool,
}

/// Map one event's text, or `None` to leave it to the generic path.
pub(crate) fn map_event(text: &str, ctx: &Context<'_>, seen: &Seen) -> Option<Mapped> {
    let event: Event<'_> = serde_json::from_str(text).ok()?;
    // What `check_event` accepts; anything else is the generic path's to reject and count.
    match event.kind.as_deref() {
        Some("Event") => {}
        None if event.audit_id.is_some() && event.stage.is_some() => {}
        _ => return None,
    }
    if ctx.redact_secrets && may_need_redaction(&event) {
        return None;
    }
    let identity = seen.key(identity(&event));
    // v1beta1 archives: the v1 timestamps from `timestamp` and `metadata.creationTimestamp`.
    let received = event
        .request_received
        .as_deref()
        .or(event.timestamp.as_deref());
    let stage_time = event
        .stage_timestamp
        .as_deref()
        .or_else(|| event.metadata.as_ref()?.creation_timestamp.as_deref());
    let (time_ms, timestamp_fallback) = match received
        .filter(|t| !t.is_empty())
        .and_then(|t| DateFormat::default().parse_text_ms(t, ctx.now_ms).ok())
    {
        Some(ms) => (ms, false),
        None => (crate::fallback_time(ctx.envelope_time_ms, ctx.now_ms), true),
    };

    // Objects grow by their escaped quotes; a little slack saves most reallocations.
    let mut out = Writer::with_capacity(text.len() + text.len() / 4 + 256);
    out.number("_zl_timestamp", time_ms);
    if let Some(annotations) = &event.annotations {
        out.key_value_list("annotations", annotations);
    }
    out.text("apiversion", event.api_version.as_deref());
    out.text("auditid", event.audit_id.as_deref());
    let annotation = |key: &str| {
        event
            .annotations
            .as_ref()?
            .iter()
            .find(|(k, _)| **k == *key)
            .map(|(_, v)| &**v)
    };
    out.text("authorization_decision", annotation(DECISION));
    out.text("authorization_reason", annotation(REASON));
    let impersonated = event.impersonated_user.as_ref();
    out.list_json(
        "impersonateduser_groups",
        impersonated.and_then(|u| u.groups.as_deref()),
    );
    out.text(
        "impersonateduser_username",
        impersonated.and_then(|u| u.username.as_deref()),
    );
    out.text("level", event.level.as_deref());
    out.text_always("logstream", ctx.stream);
    let object_ref = event.object_ref.as_ref();
    fn field<'e, 'a: 'e>(
        o: Option<&'e ObjectRef<'a>>,
        f: fn(&'e ObjectRef<'a>) -> Option<&'e str>,
    ) -> Option<&'e str> {
        o.and_then(f)
    }
    out.text(
        "objectref_apigroup",
        field(object_ref, |o| o.api_group.as_deref()),
    );
    out.text(
        "objectref_apiversion",
        field(object_ref, |o| o.api_version.as_deref()),
    );
    out.text("objectref_name", field(object_ref, |o| o.name.as_deref()));
    out.text(
        "objectref_namespace",
        field(object_ref, |o| o.namespace.as_deref()),
    );
    out.text(
        "objectref_resource",
        field(object_ref, |o| o.resource.as_deref()),
    );
    out.text(
        "objectref_subresource",
        field(object_ref, |o| o.subresource.as_deref()),
    );
    out.raw_json("requestobject", event.request_object)?;
    out.text("requestreceivedtimestamp", received);
    out.text("requesturi", event.request_uri.as_deref());
    out.raw_json("responseobject", event.response_object)?;
    let status = event.response_status.as_ref();
    if let Some(code) = status.and_then(|s| s.code.as_ref()) {
        out.number_value("responsestatus_code", code);
    }
    out.text(
        "responsestatus_message",
        status.and_then(|s| s.message.as_deref()),
    );
    out.text(
        "responsestatus_reason",
        status.and_then(|s| s.reason.as_deref()),
    );
    out.text(
        "responsestatus_status",
        status.and_then(|s| s.status.as_deref()),
    );
    out.text_always("s247agentuid", ctx.cluster);
    let source_ips = event.source_ips.as_deref();
    out.text(
        "sourceip",
        source_ips.and_then(<[_]>::first).map(|ip| &**ip),
    );
    out.list_json("sourceips", source_ips);
    out.text("stage", event.stage.as_deref());
    out.text("stagetimestamp", stage_time);
    let user = event.user.as_ref();
    let extras = user.and_then(|u| u.extra.as_ref());
    fn extra<'e, 'a: 'e>(
        x: Option<&'e Extra<'a>>,
        f: fn(&'e Extra<'a>) -> Option<&'e [Str<'a>]>,
    ) -> Option<&'e str> {
        x.and_then(f).and_then(<[_]>::first).map(|s| &**s)
    }
    out.text(
        "user_accesskeyid",
        extra(extras, |x| x.access_key_id.as_deref()),
    );
    out.text("user_arn", extra(extras, |x| x.arn.as_deref()));
    out.text(
        "user_canonicalarn",
        extra(extras, |x| x.canonical_arn.as_deref()),
    );
    out.text(
        "user_principalid",
        extra(extras, |x| x.principal_id.as_deref()),
    );
    out.text(
        "user_sessionname",
        extra(extras, |x| x.session_name.as_deref()),
    );
    out.text("useragent", event.user_agent.as_deref());
    out.list_json("usergroups", user.and_then(|u| u.groups.as_deref()));
    out.text("username", user.and_then(|u| u.username.as_deref()));
    out.text("useruid", user.and_then(|u| u.uid.as_deref()));
    out.text("verb", event.verb.as_deref());
    let (json, log_size) = out.finish();
    if json.len() > ctx.max_record_bytes {
        return None;
    }
    Some(Mapped {
        identity,
        json,
        log_size,
        timestamp_fallback,
    })
}

fn identity<'e>(event: &'e Event<'_>) -> Option<[&'e str; 4]> {
    let id = event.audit_id.as_deref().filter(|s| !s.is_empty())?;
    let text = |t: &'e Text<'_>| t.as_deref().unwrap_or_default();
    Some([
        id,
        text(&event.stage),
        text(&event.request_received),
        text(&event.stage_timestamp),
    ])
}

/// Could [`crate::redact::redact_event`] change this event? Conservative: `true` sends it down the generic
/// path, which redacts. Kinds are found as JSON string tokens (`"Secret…`), and text that spells letters as
/// `\u00xx` escapes (which could hide a kind from that search) is never taken.
fn may_need_redaction(event: &Event<'_>) -> bool {
    let objects = [event.request_object, event.response_object];
    let has_object = objects.iter().any(Option::is_some);
    let resource = event
        .object_ref
        .as_ref()
        .and_then(|o| o.resource.as_deref())
        .unwrap_or_default();
    if has_object
        && ["secrets", "configmaps", "serviceaccounts", "tokenreviews"].contains(&resource)
    {
        return true;
    }
    let suspicious = |raw: &RawValue| {
        let text = raw.get();
        ["\"Secret", "\"ConfigMap", "\"Token"]
            .iter()
            .any(|k| text.contains(k))
            || text
                .match_indices("\\u00")
                .any(|(i, _)| matches!(text.as_bytes().get(i + 4), Some(b'4'..=b'7')))
    };
    if objects.into_iter().flatten().any(suspicious) {
        return true;
    }
    event
        .request_uri
        .as_deref()
        .is_some_and(crate::redact::uri_may_carry_secret)
}

const DECISION: &str = "authorization.k8s.io/decision";
const REASON: &str = "authorization.k8s.io/reason";

/// The record's JSON, written field by field, and its `Log-Size`.
struct Writer {
    buf: Vec<u8>,
    log_size: u64,
}

impl Writer {
    fn with_capacity(n: usize) -> Self {
        let mut buf = Vec::with_capacity(n);
        buf.push(b'{');
        Self { buf, log_size: 0 }
    }

    fn key(&mut self, name: &str) {
        if self.buf.len() > 1 {
            self.buf.push(b',');
        }
        self.buf.push(b'"');
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    fn string(&mut self, s: &str) {
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
    fn text(&mut self, name: &str, value: Option<&str>) {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            self.key(name);
            self.string(v);
            if !is_agent_field(name) {
                self.log_size += v.len() as u64;
            }
        }
    }

    /// A string field the generic path always adds, even empty.
    fn text_always(&mut self, name: &str, value: &str) {
        self.key(name);
        self.string(value);
        if !is_agent_field(name) {
            self.log_size += value.len() as u64;
        }
    }

    fn number(&mut self, name: &str, value: i64) {
        self.key(name);
        let _ = write!(self.buf, "{value}");
    }

    /// A number as JSON writes it, counted as its text.
    fn number_value(&mut self, name: &str, value: &Number) {
        self.key(name);
        let start = self.buf.len();
        let _ = write!(self.buf, "{value}");
        self.log_size += (self.buf.len() - start) as u64;
    }

    /// A list of strings as JSON text (what the generic path makes of an array).
    fn list_json(&mut self, name: &str, list: Option<&[Str<'_>]>) {
        let Some(list) = list else { return };
        self.key(name);
        if list.iter().all(|item| plain(item)) {
            // Items that need no escape: `"[\"a\",\"b\"]"` written directly.
            self.buf.extend_from_slice(b"\"[");
            let mut len = 2;
            for (i, item) in list.iter().enumerate() {
                if i > 0 {
                    self.buf.push(b',');
                }
                self.buf.extend_from_slice(b"\\\"");
                self.buf.extend_from_slice(item.as_bytes());
                self.buf.extend_from_slice(b"\\\"");
                len += item.len() + 2 + usize::from(i > 0);
            }
            self.buf.extend_from_slice(b"]\"");
            self.log_size += len as u64;
        } else {
            let text = serde_json::to_string(list).unwrap_or_default();
            self.string(&text);
            self.log_size += text.len() as u64;
        }
    }

    /// An object as JSON text: the raw text, with insignificant whitespace removed. `None` (the generic path
    /// then runs) when the value is not an object or array.
    fn raw_json(&mut self, name: &str, raw: Option<&RawValue>) -> Option<()> {
        let Some(raw) = raw else { return Some(()) };
        match raw.get().as_bytes().first() {
            Some(b'{' | b'[') => {}
            Some(b'n') => return Some(()),
            _ => return None,
        }
        self.key(name);
        self.log_size += write_json_text(&mut self.buf, raw.get()) as u64;
        Some(())
    }

    /// Annotations as `[{"key":…,"value":…},…]` in key order, counted as that JSON text.
    fn key_value_list(&mut self, name: &str, pairs: &[(Str<'_>, Str<'_>)]) {
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
        self.log_size += (self.buf.len() - start) as u64;
    }

    fn finish(mut self) -> (String, u64) {
        self.buf.push(b'}');
        // Only whole UTF-8 strings and ASCII were written.
        (
            String::from_utf8(self.buf).unwrap_or_default(),
            self.log_size,
        )
    }
}

/// Whether `s` can be written between quotes as it is (no quote, backslash or control character).
fn plain(s: &str) -> bool {
    s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\')
}

/// Write the JSON value `raw` as a JSON string holding its compact text: whitespace outside strings dropped,
/// every `"` and `\` escaped. Returns the length of the compact text (the string's value, for `Log-Size`).
///
/// Valid JSON text (serde_json checked it) has no control characters inside strings, so these two escapes
/// are all a JSON string needs; the result is what `serde_json` writes for the compact text as a string.
fn write_json_text(buf: &mut Vec<u8>, raw: &str) -> usize {
    let bytes = raw.as_bytes();
    let start = buf.len();
    let mut escapes = 0;
    buf.push(b'"');
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // A string: copy runs up to the next quote or backslash.
                buf.extend_from_slice(b"\\\"");
                escapes += 1;
                i += 1;
                while let Some(j) = memchr::memchr2(b'"', b'\\', &bytes[i..]) {
                    buf.extend_from_slice(&bytes[i..i + j]);
                    i += j;
                    if bytes[i] == b'"' {
                        buf.extend_from_slice(b"\\\"");
                        escapes += 1;
                        i += 1;
                        break;
                    }
                    // Go's encoder writes `<`, `>` and `&` as `\u003c`, `\u003e`, `\u0026`: keep them
                    // readable (and searchable), as the generic path's re-serialisation does.
                    if let Some(c) = go_html_escape(&bytes[i..]) {
                        buf.push(c);
                        i += 6;
                        continue;
                    }
                    // An escape sequence: its backslash, then the escaped character (itself escaped if it
                    // is a quote or a backslash).
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
                    i += 2;
                }
            }
            b' ' | b'\n' | b'\r' | b'\t' => i += 1,
            c => {
                buf.push(c);
                i += 1;
            }
        }
    }
    buf.push(b'"');
    buf.len() - start - 2 - escapes
}

/// `<`, `>` or `&` if `text` starts with its `\u00XX` escape.
fn go_html_escape(text: &[u8]) -> Option<u8> {
    let escape = text.get(..6)?;
    if !escape.starts_with(b"\\u00") {
        return None;
    }
    match [escape[4], escape[5].to_ascii_lowercase()] {
        [b'3', b'c'] => Some(b'<'),
        [b'3', b'e'] => Some(b'>'),
        [b'2', b'6'] => Some(b'&'),
        _ => None,
    }
}

// ---- Typed, borrowing views of an audit event ------------------------------------------------------------
//
// Hand-written visitors, because the generic lookup gives some keys a meaning a derived struct would ignore:
// a dotted key (`user.username` at the top) or another letter case (`auditid`, `User`) is found by Site24x7's
// rules. Such a key makes the visitor fail, and the event goes down the generic path.

/// Is `key`, not one of `known`, one that the generic lookup could pick up in place of a known one?
fn shadows(key: &str, known: &[&str]) -> bool {
    !known.contains(&key)
        && known.iter().any(|k| {
            key.eq_ignore_ascii_case(k)
                || (key.len() > k.len()
                    && key.as_bytes()[k.len()] == b'.'
                    && key[..k.len()].eq_ignore_ascii_case(k))
        })
}

/// Visit a JSON object: `field` takes each key it knows (returning `true`); other keys are skipped unless
/// they shadow one of `known`.
fn visit_object<'de, A: MapAccess<'de>>(
    mut map: A,
    known: &[&str],
    mut field: impl FnMut(&str, &mut A) -> Result<bool, A::Error>,
) -> Result<(), A::Error> {
    while let Some(key) = map.next_key::<Str<'de>>()? {
        if field(&key, &mut map)? {
            continue;
        }
        if shadows(&key, known) {
            return Err(de::Error::custom("a key the lookup rules treat specially"));
        }
        map.next_value::<IgnoredAny>()?;
    }
    Ok(())
}

macro_rules! object_visitor {
    ($ty:ident, $expecting:literal, $known:expr, |$key:ident, $map:ident, $out:ident| $body:block) => {
        impl<'de: 'a, 'a> Deserialize<'de> for $ty<'a> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V<'a>(std::marker::PhantomData<&'a ()>);
                impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
                    type Value = $ty<'a>;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<$ty<'a>, A::Error> {
                        let mut $out = $ty::default();
                        visit_object(map, $known, |$key, $map| $body)?;
                        Ok($out)
                    }
                }
                d.deserialize_map(V(std::marker::PhantomData))
            }
        }
    };
}

#[derive(Default)]
struct Event<'a> {
    kind: Text<'a>,
    api_version: Text<'a>,
    level: Text<'a>,
    audit_id: Text<'a>,
    stage: Text<'a>,
    request_uri: Text<'a>,
    verb: Text<'a>,
    user: Option<User<'a>>,
    impersonated_user: Option<User<'a>>,
    source_ips: List<'a>,
    user_agent: Text<'a>,
    object_ref: Option<ObjectRef<'a>>,
    response_status: Option<Status<'a>>,
    request_object: Option<&'a RawValue>,
    response_object: Option<&'a RawValue>,
    request_received: Text<'a>,
    stage_timestamp: Text<'a>,
    annotations: Option<Vec<(Str<'a>, Str<'a>)>>,
    /// v1beta1
    timestamp: Text<'a>,
    metadata: Option<Metadata<'a>>,
}

object_visitor!(
    Event,
    "an audit event",
    &[
        "kind",
        "apiVersion",
        "level",
        "auditID",
        "stage",
        "requestURI",
        "verb",
        "user",
        "impersonatedUser",
        "sourceIPs",
        "userAgent",
        "objectRef",
        "responseStatus",
        "requestObject",
        "responseObject",
        "requestReceivedTimestamp",
        "stageTimestamp",
        "annotations",
        "timestamp",
        "metadata",
    ],
    |key, map, e| {
        match key {
            "kind" => e.kind = map.next_value()?,
            "apiVersion" => e.api_version = map.next_value()?,
            "level" => e.level = map.next_value()?,
            "auditID" => e.audit_id = map.next_value()?,
            "stage" => e.stage = map.next_value()?,
            "requestURI" => e.request_uri = map.next_value()?,
            "verb" => e.verb = map.next_value()?,
            "user" => e.user = map.next_value()?,
            "impersonatedUser" => e.impersonated_user = map.next_value()?,
            "sourceIPs" => e.source_ips = map.next_value()?,
            "userAgent" => e.user_agent = map.next_value()?,
            "objectRef" => e.object_ref = map.next_value()?,
            "responseStatus" => e.response_status = map.next_value()?,
            "requestObject" => e.request_object = map.next_value()?,
            "responseObject" => e.response_object = map.next_value()?,
            "requestReceivedTimestamp" => e.request_received = map.next_value()?,
            "stageTimestamp" => e.stage_timestamp = map.next_value()?,
            "annotations" => {
                e.annotations = map.next_value::<Option<Annotations<'_>>>()?.map(|a| a.0)
            }
            "timestamp" => e.timestamp = map.next_value()?,
            "metadata" => e.metadata = map.next_value()?,
            _ => return Ok(false),
        }
        Ok(true)
    }
);

#[derive(Default)]
struct User<'a> {
    username: Text<'a>,
    uid: Text<'a>,
    groups: List<'a>,
    extra: Option<Extra<'a>>,
}

object_visitor!(
    User,
    "user info",
    &["username", "uid", "groups", "extra"],
    |key, map, u| {
        match key {
            "username" => u.username = map.next_value()?,
            "uid" => u.uid = map.next_value()?,
            "groups" => u.groups = map.next_value()?,
            "extra" => u.extra = map.next_value()?,
            _ => return Ok(false),
        }
        Ok(true)
    }
);

#[derive(Default)]
struct Extra<'a> {
    session_name: List<'a>,
    arn: List<'a>,
    canonical_arn: List<'a>,
    principal_id: List<'a>,
    access_key_id: List<'a>,
}

object_visitor!(
    Extra,
    "user extra",
    &[
        "sessionName",
        "arn",
        "canonicalArn",
        "principalId",
        "accessKeyId"
    ],
    |key, map, x| {
        match key {
            "sessionName" => x.session_name = map.next_value()?,
            "arn" => x.arn = map.next_value()?,
            "canonicalArn" => x.canonical_arn = map.next_value()?,
            "principalId" => x.principal_id = map.next_value()?,
            "accessKeyId" => x.access_key_id = map.next_value()?,
            _ => return Ok(false),
        }
        Ok(true)
    }
);

#[derive(Default)]
struct ObjectRef<'a> {
    resource: Text<'a>,
    subresource: Text<'a>,
    namespace: Text<'a>,
    name: Text<'a>,
    api_group: Text<'a>,
    api_version: Text<'a>,
}

object_visitor!(
    ObjectRef,
    "an object reference",
    &[
        "resource",
        "subresource",
        "namespace",
        "name",
        "apiGroup",
        "apiVersion"
    ],
    |key, map, o| {
        match key {
            "resource" => o.resource = map.next_value()?,
            "subresource" => o.subresource = map.next_value()?,
            "namespace" => o.namespace = map.next_value()?,
            "name" => o.name = map.next_value()?,
            "apiGroup" => o.api_group = map.next_value()?,
            "apiVersion" => o.api_version = map.next_value()?,
            _ => return Ok(false),
        }
        Ok(true)
    }
);

#[derive(Default)]
struct Status<'a> {
    code: Option<Number>,
    status: Text<'a>,
    reason: Text<'a>,
    message: Text<'a>,
}

object_visitor!(
    Status,
    "a response status",
    &["code", "status", "reason", "message"],
    |key, map, s| {
        match key {
            "code" => s.code = map.next_value()?,
            "status" => s.status = map.next_value()?,
            "reason" => s.reason = map.next_value()?,
            "message" => s.message = map.next_value()?,
            _ => return Ok(false),
        }
        Ok(true)
    }
);

#[derive(Default)]
struct Metadata<'a> {
    creation_timestamp: Text<'a>,
}

object_visitor!(
    Metadata,
    "object metadata",
    &["creationTimestamp"],
    |key, map, m| {
        if key != "creationTimestamp" {
            return Ok(false);
        }
        m.creation_timestamp = map.next_value()?;
        Ok(true)
    }
);

/// Annotations in key order, a repeated key keeping its last value (as a JSON map does). Keys that the
/// lookup of the two authorization annotations could descend into instead make the visitor fail.
struct Annotations<'a>(Vec<(Str<'a>, Str<'a>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Annotations<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Annotations<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("annotations")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Annotations<'a>, A::Error> {
                let mut pairs: Vec<(Str<'a>, Str<'a>)> = Vec::new();
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    let lookup_prefix = [DECISION, REASON].iter().any(|target| {
                        &*key != *target
                            && (key.eq_ignore_ascii_case(target)
                                || target.len() > key.len()
                                    && target.as_bytes()[key.len()] == b'.'
                                    && target[..key.len()].eq_ignore_ascii_case(&key))
                    });
                    if lookup_prefix {
                        return Err(de::Error::custom("a key the lookup rules treat specially"));
                    }
                    let value: Str<'de> = map.next_value()?;
                    match pairs.iter_mut().find(|(k, _)| *k == key) {
                        Some(pair) => pair.1 = value,
                        None => pairs.push((key, value)),
                    }
                }
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(Annotations(pairs))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
