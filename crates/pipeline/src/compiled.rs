//! The compiled mapping path: any profile (the default one or a config's `jsonPath`, with its `dateField`
//! and `dateFormat`) compiled once into a [`Plan`], which reads each event once, from its text, borrowing,
//! and writes the record's JSON directly ([`crate::render`]).
//!
//! The event is parsed lazily: an object becomes its members (keys and raw values) only when a lookup goes
//! into it, once per event; values are never built into a `Value` tree. Lookups follow Site24x7's rules
//! exactly as [`crate::lookup`] does (literal key first, then a lower-cased leaf key, then dotted descent
//! with a `Capitalized` parent, numeric array indexes, the last of duplicate keys).
//!
//! Where the result might differ from the generic path, [`Plan::map_event`] declines (`None`) and the
//! generic path runs: a JSON string that must be parsed on the way, text that does not parse whole, a record
//! over the size limit. v1beta1 timestamps are normalised here, as the generic path does.
//! Secret redaction runs here on the few events it might change: the objects it changes are parsed and
//! redacted by [`redact`]'s own code, then written back as text (see [`redact_event`]).
//! An audit policy is applied here too ([`policy`]): it drops events, and removes what a lower level does
//! not carry, without building the event.
//! So are the config's record rules (filters, masks, hashes, derived fields, `ignoredFields`), on the mapped
//! values, and so are `jsonPath` entries with a `pattern` (its named groups replace the field). A profile
//! whose pattern groups share a name with another field (which then depends on the entries' order) runs the
//! generic path. The differential tests count the declines.

use crate::detect::{
    CONTAINER_PATHS, Detections, Detector, Head, ObjectRef, POD_SPEC_PATHS, Pointer, Root, Token,
    Values, all_public,
};
use crate::lookup::looks_like_json;
use crate::policy::Applied;
use crate::render::{Str, Writer};
use crate::rules::{self, RecordRules};
use crate::{DETECTION_SEVERITY_FIELD, DETECTIONS_FIELD, Profile, RecordFormat, Seen, redact};
use kaf_config::{DateFormat, ValueType};
use kaf_config::{DeriveRule, FieldFilter, HashRule, MaskRule};
use places::Places;
use scan::Raw;
use serde_json::{Number, Value};
use std::borrow::Cow;
use std::ops::Range;

/// A profile compiled for one kind of document.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    fields: Vec<Field>,
    /// The record in name order: what each position writes.
    slots: Vec<Slot>,
    /// The output field `dateField` names, if the profile has one of that name.
    date_field: Option<usize>,
    /// Else `dateField` as a path in the document.
    date_path: Key,
    date_format: DateFormat,
    /// The keys are relative to the audit event inside the envelope (the default profile on AKS records),
    /// not to the whole document.
    rooted: bool,
    /// The delivery side's fields, added to every record after the profile's (so they win over a profile
    /// field of the same name), and its limit.
    format: RecordFormat,
    /// The profile has a field named like a detection field: a tagged event is the generic path's, which
    /// overwrites it.
    detection_fields_taken: bool,
    /// The config's record rules, on the fields by index.
    rules: Rules,
    /// The patterns of `jsonPath` entries, by [`Candidate::captures`].
    captures: Vec<Captures>,
}

/// A `jsonPath` entry's `pattern`: when the value the entry found matches (its string form), the named groups
/// that took part become fields, as strings, and the entry sets nothing else; otherwise the entry sets its
/// field as one without a pattern does.
#[derive(Debug, Clone)]
struct Captures {
    pattern: regex::Regex,
    /// Each named group, with the field it writes.
    groups: Vec<(String, usize)>,
}

/// [`crate::rules::RecordRules`] with each field name resolved to a field of the plan (`None`: a field no
/// record has when the rules run, on which a rule does nothing).
#[derive(Debug, Clone, Default)]
struct Rules {
    filters: Vec<(Option<usize>, FieldFilter)>,
    masks: Vec<(Option<usize>, MaskRule)>,
    hashes: Vec<(Option<usize>, HashRule)>,
    derives: Vec<(Option<usize>, DeriveRule)>,
    /// The field each derived name (a pattern's named group) writes; names the delivery side overwrites
    /// have none.
    derived_fields: Vec<(String, usize)>,
    ignored: Vec<usize>,
}

#[derive(Debug, Clone)]
struct Field {
    name: String,
    /// The `jsonPath` entries with this name, the last one first: the first that finds a value wins (the
    /// generic path lets a later entry overwrite an earlier one only when it found something).
    candidates: Vec<Candidate>,
}

impl Captures {
    /// `Some(true)` when the pattern matches the found value's string form: its groups that took part are
    /// added to `captured` (field, value). `None` declines (a value without the generic path's string form).
    fn capture(&self, found: &FieldValue<'_>, captured: &mut Vec<(usize, String)>) -> Option<bool> {
        let text = found.string_form()?;
        let Some(caps) = self.pattern.captures(&text) else {
            return Some(false);
        };
        for (group, at) in &self.groups {
            if let Some(m) = caps.name(group) {
                captured.push((*at, m.as_str().to_string()));
            }
        }
        Some(true)
    }
}

#[derive(Debug, Clone)]
struct Candidate {
    key: Key,
    value_type: ValueType,
    /// The entry's pattern, an index into [`Plan::captures`].
    captures: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Field(usize),
    Timestamp,
    Agent,
    Stream,
    Detections,
    DetectionSeverity,
}

/// What the caller adds to every record, and the limits.
pub(crate) struct Context<'a> {
    pub cluster: &'a str,
    pub stream: &'a str,
    pub redact_secrets: bool,
    pub now_ms: i64,
    pub envelope_time_ms: Option<i64>,
    pub detector: Option<&'a Detector>,
    /// What the detector worked out from text alone, kept for the batch.
    pub detect_memo: &'a DetectMemo,
    /// The vectors the batch's documents pass on to each other.
    pub spare: &'a std::cell::Cell<Spare>,
    pub detections_only: bool,
    pub policy: Option<&'a crate::policy::Policy>,
}

/// What detection predicates worked out from an event's text alone, kept across the events of one batch:
/// a batch comes mostly from a few clients, so its `sourceIPs` repeat (the public-address rule tests them
/// for most controller traffic).
#[derive(Debug, Default)]
pub(crate) struct DetectMemo {
    /// `sourceIPs` texts and their address verdict, the latest few.
    addresses: std::cell::RefCell<Vec<(String, bool)>>,
}

impl DetectMemo {
    /// How many address texts are kept: a batch's clients, give or take.
    const ADDRESSES: usize = 8;
    /// The longest text kept: a client or a chain of proxies. `sourceIPs` carries what clients put in
    /// `X-Forwarded-For`, so it can be as long as a request header; such texts are not copied.
    const ADDRESS_TEXT: usize = 256;

    /// The verdict for the raw value `text`, computed once per distinct text (`None` is not kept).
    fn address_verdict(&self, text: &str, compute: impl FnOnce() -> Option<bool>) -> Option<bool> {
        if text.len() > Self::ADDRESS_TEXT {
            return compute();
        }
        if let Some((_, verdict)) = self.addresses.borrow().iter().find(|(t, _)| t == text) {
            return Some(*verdict);
        }
        let verdict = compute()?;
        let mut addresses = self.addresses.borrow_mut();
        if addresses.len() == Self::ADDRESSES {
            addresses.remove(0);
        }
        addresses.push((text.to_string(), verdict));
        Some(verdict)
    }
}

/// What the compiled path made of one event.
pub(crate) enum Compiled<'d> {
    Record(Mapped<'d>),
    /// Not forwarded, and why (each counted once, unless it repeats an event of the batch).
    Skipped {
        identity: Option<u128>,
        why: Skip,
    },
}

pub(crate) enum Skip {
    /// Detections-only mode, and the event raised none.
    NotDetected,
    /// The audit policy dropped the event (level `None`, or an omitted stage).
    PolicyDropped,
    /// A `filterConfig` rule dropped the record (after its time was read, as the generic path counts it).
    Filtered {
        timestamp_fallback: bool,
        /// The audit policy had reduced the event.
        reduced: bool,
        /// Values redaction replaced (it ran before the filter).
        redacted: u64,
    },
}

/// A record made by the compiled path.
pub(crate) struct Mapped<'d> {
    /// The key of [`crate::event_identity`] in the batch's [`Seen`], for deduplication.
    pub identity: Option<u128>,
    pub json: String,
    pub billed_bytes: u64,
    /// The event time was unreadable: the envelope or ingest time was used.
    pub timestamp_fallback: bool,
    /// The detection rule ids the event raised.
    pub detections: Vec<&'d str>,
    /// The audit policy reduced the event.
    pub reduced: bool,
    /// Values redaction replaced.
    pub redacted: u64,
}

impl Plan {
    /// `None` when the profile has something the compiled path does not do (a pattern group named like
    /// another field).
    /// `rooted`: the profile's keys are read inside the envelope's event (see [`Plan::rooted`]).
    pub(crate) fn compile(
        profile: &Profile,
        record_rules: &RecordRules,
        rooted: bool,
        format: RecordFormat,
    ) -> Option<Self> {
        let agent_fields = [format.time_field, format.source_field, format.stream_field];
        // Pattern groups become fields of their own. One that shares a name with another field (an entry, a
        // derived field, another group, the date field, a field the delivery side writes) depends on the
        // order the generic path inserts them: such profiles are the generic path's.
        let mut group_names: Vec<&str> = Vec::new();
        let derive_names: Vec<&str> = record_rules
            .derives
            .iter()
            .flat_map(|d| d.patterns.iter().flat_map(|p| p.capture_names().flatten()))
            .collect();
        let entries_named = |name: &str| profile.entries.iter().filter(|e| e.name == name).count();
        for entry in &profile.entries {
            let Some(pattern) = &entry.pattern else {
                continue;
            };
            for group in pattern.capture_names().flatten() {
                let taken = entries_named(group) > 0
                    || group_names.contains(&group)
                    || derive_names.contains(&group)
                    || agent_fields.contains(&group)
                    || [DETECTIONS_FIELD, DETECTION_SEVERITY_FIELD].contains(&group)
                    || group == profile.date_field;
                if taken {
                    return None;
                }
                group_names.push(group);
            }
        }
        let mut by_name: std::collections::BTreeMap<&str, Vec<Candidate>> = Default::default();
        let mut patterns = Vec::new();
        for entry in &profile.entries {
            let captures = entry.pattern.as_ref().map(|pattern| {
                patterns.push(pattern);
                patterns.len() - 1
            });
            by_name
                .entry(entry.name.as_str())
                .or_default()
                .push(Candidate {
                    key: Key::new(&entry.key),
                    value_type: entry.value_type,
                    captures,
                });
        }
        // The delivery side's fields overwrite profile fields of the same name.
        let rules_read = |name: &str| {
            let r = record_rules;
            r.filters.iter().any(|f| f.field == name)
                || r.masks.iter().any(|m| m.field == name)
                || r.hashes.iter().any(|h| h.field == name)
                || r.derives.iter().any(|d| d.field == name)
        };
        // Entries named like a field the delivery side writes set nothing that is sent, but their patterns'
        // groups are fields: those entries are looked up for their patterns alone.
        let mut pattern_only: Vec<(&str, Vec<Candidate>)> = Vec::new();
        for agent in agent_fields {
            let Some(candidates) = by_name.remove(agent) else {
                continue;
            };
            // The generic path reads a `dateField` naming one from the profile's value, before the agent's,
            // and so do the record rules.
            if profile.date_field == agent || rules_read(agent) {
                return None;
            }
            let patterned: Vec<Candidate> = candidates
                .into_iter()
                .filter(|c| c.captures.is_some())
                .collect();
            if !patterned.is_empty() {
                pattern_only.push((agent, patterned));
            }
        }
        for group in &group_names {
            by_name.entry(group).or_default();
        }
        // Derived fields are fields of the record (without a lookup), unless the delivery side's overwrite them.
        for rule in &record_rules.derives {
            for name in rule
                .patterns
                .iter()
                .flat_map(|p| p.capture_names().flatten())
            {
                if ![format.time_field, format.source_field, format.stream_field].contains(&name) {
                    by_name.entry(name).or_default();
                }
            }
        }
        let field = |(name, mut candidates): (&str, Vec<Candidate>)| {
            candidates.reverse();
            Field {
                name: name.to_string(),
                candidates,
            }
        };
        let mut fields: Vec<Field> = by_name.into_iter().map(field).collect();
        let written = fields.len();
        // After the written ones, and without a slot: never written.
        fields.extend(pattern_only.into_iter().map(field));
        let mut named: Vec<(&str, Slot)> = fields[..written]
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.as_str(), Slot::Field(i)))
            .collect();
        let detection_fields_taken = named
            .iter()
            .any(|(name, _)| [DETECTIONS_FIELD, DETECTION_SEVERITY_FIELD].contains(name));
        named.extend([
            (format.time_field, Slot::Timestamp),
            (format.source_field, Slot::Agent),
            (format.stream_field, Slot::Stream),
        ]);
        if !detection_fields_taken {
            named.extend([
                (DETECTIONS_FIELD, Slot::Detections),
                (DETECTION_SEVERITY_FIELD, Slot::DetectionSeverity),
            ]);
        }
        // Byte order of the names: the order of the generic path's map, so both write the same bytes.
        named.sort_by(|a, b| a.0.cmp(b.0));
        let index = |name: &str| fields.iter().position(|f| f.name == name);
        // Each rule with the field it acts on.
        fn on_fields<R: Clone>(
            rules: &[R],
            field: fn(&R) -> &str,
            index: impl Fn(&str) -> Option<usize>,
        ) -> Vec<(Option<usize>, R)> {
            rules.iter().map(|r| (index(field(r)), r.clone())).collect()
        }
        let r = record_rules;
        let rules = Rules {
            filters: on_fields(&r.filters, |f| &f.field, index),
            masks: on_fields(&r.masks, |m| &m.field, index),
            hashes: on_fields(&r.hashes, |h| &h.field, index),
            derives: on_fields(&r.derives, |d| &d.field, index),
            derived_fields: r
                .derives
                .iter()
                .flat_map(|d| d.patterns.iter().flat_map(|p| p.capture_names().flatten()))
                .filter_map(|name| Some((name.to_string(), index(name)?)))
                .collect(),
            ignored: r.ignored_fields.iter().filter_map(|f| index(f)).collect(),
        };
        let captures = patterns
            .into_iter()
            .map(|pattern| Captures {
                groups: pattern
                    .capture_names()
                    .flatten()
                    .filter_map(|group| Some((group.to_string(), index(group)?)))
                    .collect(),
                pattern: pattern.clone(),
            })
            .collect();
        Some(Self {
            rules,
            captures,
            date_field: fields.iter().position(|f| f.name == profile.date_field),
            slots: named.into_iter().map(|(_, slot)| slot).collect(),
            fields,
            date_path: Key::new(&profile.date_field),
            date_format: profile.date_format.clone(),
            format,
            rooted,
            detection_fields_taken,
        })
    }

    /// Map one document's text (`pointer`: where the audit event sits in it, as JSON text), or `None` to
    /// leave it to the generic path.
    pub(crate) fn map_event<'d>(
        &self,
        text: &str,
        pointer: Option<&str>,
        ctx: &Context<'d>,
        seen: &Seen,
    ) -> Option<Compiled<'d>> {
        // Outlives the document, which borrows from it.
        let texts = Texts::default();
        let mut doc = Doc::reusing(ctx.spare.take());
        let mapped = self.map_text(&mut doc, &texts, text, pointer, ctx, seen);
        ctx.spare.set(doc.into_spare());
        mapped
    }

    /// [`Plan::map_event`] in `doc`.
    fn map_text<'a, 'd>(
        &self,
        doc: &mut Doc<'a>,
        texts: &'a Texts,
        text: &'a str,
        pointer: Option<&str>,
        ctx: &Context<'d>,
        seen: &Seen,
    ) -> Option<Compiled<'d>> {
        let document = doc.root(text)?;
        let audit = match pointer {
            None => document,
            Some(pointer) => {
                // AKS: the event is JSON text at `pointer` (ending in `\n`); the generic path parses it in
                // place, so lookups from the record see the parsed event where its text was.
                let at = doc.pointer(document, pointer)?;
                let event_text: &str = texts.inner.get_or_init(|| {
                    // Unescaping made a new string (the log always has escapes): trimmed in place, not copied.
                    let mut text = string_of(at).map(Cow::into_owned).unwrap_or_default();
                    text.truncate(text.trim_end().len());
                    text
                });
                let event = doc.root(event_text)?;
                doc.substitute = Some((key_of(at), event));
                event
            }
        };
        let root = if pointer.is_some() && !self.rooted {
            document
        } else {
            audit
        };
        let event = Event {
            root,
            audit,
            text_len: text.len(),
        };
        self.map_document(doc, event, &texts.redacted, ctx, seen)
    }

    fn map_document<'a, 'd>(
        &self,
        doc: &mut Doc<'a>,
        event: Event,
        redacted_texts: &'a RedactedTexts,
        ctx: &Context<'d>,
        seen: &Seen,
    ) -> Option<Compiled<'d>> {
        let Event {
            root,
            audit,
            text_len,
        } = event;
        if !is_audit_event(doc, audit)? {
            return None;
        }
        let parts = identity(doc, audit);
        let identity = seen.key(parts.as_ref().map(|p| [&*p[0], &*p[1], &*p[2], &*p[3]]));
        normalise(doc, audit)?;
        let detections = self.detections(ctx, doc, audit)?;
        if detections.is_empty() && ctx.detections_only {
            return Some(Compiled::Skipped {
                identity,
                why: Skip::NotDetected,
            });
        }
        let mut reduced = false;
        if let Some(audit_policy) = ctx.policy {
            match policy::apply(audit_policy, doc, audit)? {
                Applied::Dropped => {
                    return Some(Compiled::Skipped {
                        identity,
                        why: Skip::PolicyDropped,
                    });
                }
                Applied::Reduced => reduced = true,
                Applied::Kept => {}
            }
        }
        // After the detections (they see the original event) and on what the policy left, as the generic path.
        let redacted = match ctx.redact_secrets && may_need_redaction(doc, audit)? {
            true => redact_event(doc, audit, redacted_texts)?,
            false => 0,
        };

        let mut values: Vec<Option<FieldValue<'a>>> = Vec::with_capacity(self.fields.len());
        let mut captured: Vec<(usize, String)> = Vec::new();
        for field in &self.fields {
            // Every candidate is looked up, even after one was found: one that declines (a JSON string the
            // generic path would parse in place, changing what later entries see) declines the event.
            let mut value = None;
            for candidate in &field.candidates {
                if let Some(raw) = doc.lookup(root, &candidate.key)? {
                    let found = field_value(doc, raw, candidate.value_type)?;
                    if let (Some(at), Some(found)) = (candidate.captures, &found)
                        && self.captures[at].capture(found, &mut captured)?
                    {
                        continue;
                    }
                    if value.is_none() {
                        value = found;
                    }
                }
            }
            values.push(value);
        }
        // No two patterns' groups share a field (see `compile`), so the order they are written in is moot.
        for (at, value) in captured {
            values[at] = Some(FieldValue::Rewritten(value));
        }

        let time = match self.date_field.and_then(|i| values[i].as_ref()) {
            Some(value) => value.parse_time(&self.date_format, ctx.now_ms)?,
            None => match doc.lookup(root, &self.date_path)? {
                Some(raw) => parse_raw_time(raw, &self.date_format, ctx.now_ms),
                None => None,
            },
        };
        let (time_ms, timestamp_fallback) = match time {
            Some(ms) => (ms, false),
            None => (crate::fallback_time(ctx.envelope_time_ms, ctx.now_ms), true),
        };
        if !self.apply_rules(&mut values)? {
            return Some(Compiled::Skipped {
                identity,
                why: Skip::Filtered {
                    timestamp_fallback,
                    reduced,
                    redacted,
                },
            });
        }

        let estimate = text_len + text_len / 4 + 256;
        let format = &self.format;
        let mut out = Writer::with_capacity(estimate, format.is_metadata_field);
        for slot in &self.slots {
            match *slot {
                Slot::Timestamp => out.number(format.time_field, time_ms),
                Slot::Agent => out.text_always(format.source_field, ctx.cluster),
                Slot::Stream => out.text_always(format.stream_field, ctx.stream),
                Slot::Detections if !detections.is_empty() => {
                    out.text_list(DETECTIONS_FIELD, &detections.ids);
                }
                Slot::DetectionSeverity => {
                    if let Some(severity) = detections.severity {
                        out.text_always(DETECTION_SEVERITY_FIELD, severity.as_str());
                    }
                }
                Slot::Detections => {}
                Slot::Field(i) => {
                    if let Some(value) = &values[i] {
                        value.write(&mut out, &self.fields[i].name)?;
                    }
                }
            }
        }
        let (json, billed_bytes) = out.finish();
        if json.len() > format.max_record_bytes {
            return None;
        }
        Some(Compiled::Record(Mapped {
            identity,
            json,
            billed_bytes,
            timestamp_fallback,
            detections: detections.ids,
            reduced,
            redacted,
        }))
    }
}

impl Plan {
    /// [`RecordRules::apply`] on the mapped values: `Some(false)` a filter drops the record, `None` declines (a
    /// rule on a value whose string form is an object's text, which the generic path writes with its keys
    /// sorted).
    fn apply_rules(&self, values: &mut [Option<FieldValue<'_>>]) -> Option<bool> {
        let rules = &self.rules;
        for (at, filter) in &rules.filters {
            if !rules::keeps(filter, string_at(values, *at)?.as_deref()) {
                return Some(false);
            }
        }
        let masks = rules.masks.iter().map(|(at, r)| (*at, Rewrite::Mask(r)));
        let hashes = rules.hashes.iter().map(|(at, r)| (*at, Rewrite::Hash(r)));
        for (at, rewrite) in masks.chain(hashes) {
            let (Some(i), Some(text)) = (at, string_at(values, at)?) else {
                continue;
            };
            let rewritten = match rewrite {
                Rewrite::Mask(rule) => rules::masked(rule, &text),
                Rewrite::Hash(rule) => rules::hashed(rule, &text),
            };
            if let Some(out) = rewritten {
                values[i] = Some(FieldValue::Rewritten(out));
            }
        }
        for (at, rule) in &rules.derives {
            let Some(text) = string_at(values, *at)? else {
                continue;
            };
            for (name, value) in rules::derived(rule, &text) {
                if let Some((_, i)) = rules.derived_fields.iter().find(|(n, _)| n == name) {
                    values[*i] = Some(FieldValue::Rewritten(value));
                }
            }
        }
        for i in &rules.ignored {
            values[*i] = None;
        }
        Some(true)
    }

    /// What the context's detector raises for the event; `None` declines (a tagged event whose detection
    /// fields the profile has taken is the generic path's).
    fn detections<'d>(
        &self,
        ctx: &Context<'d>,
        doc: &mut Doc<'_>,
        audit: NodeId,
    ) -> Option<Detections<'d>> {
        let detections = match ctx.detector {
            Some(detector) => detect(detector, ctx.detect_memo, doc, audit)?,
            None => Detections::default(),
        };
        if !detections.is_empty() && self.detection_fields_taken {
            return None;
        }
        Some(detections)
    }
}

/// A mask or a hash rule, applied in the config's order (masks first).
enum Rewrite<'r> {
    Mask(&'r MaskRule),
    Hash(&'r HashRule),
}

/// The string form of the value at `at`: `Some(None)` when the record has none, `None` to decline.
fn string_at<'v>(
    values: &'v [Option<FieldValue<'_>>],
    at: Option<usize>,
) -> Option<Option<Cow<'v, str>>> {
    match at.and_then(|i| values[i].as_ref()) {
        None => Some(None),
        Some(value) => value.string_form().map(Some),
    }
}

/// Where the audit event sits in the document being mapped.
struct Event {
    /// What the profile's keys are relative to.
    root: NodeId,
    audit: NodeId,
    /// The whole document's length.
    text_len: usize,
}

/// What `detector` raises for the event: its head is read from the document, and a selected rule's
/// predicates parse only the parts their pointers reach (most events are selected by no rule, and read
/// nothing more). `None` declines.
fn detect<'d>(
    detector: &'d Detector,
    memo: &DetectMemo,
    doc: &mut Doc<'_>,
    audit: NodeId,
) -> Option<Detections<'d>> {
    let head = head(doc, audit)?;
    detector.detect_in(&head, &mut DocValues::new(doc, audit, memo))
}

/// The event's document as a source of values for predicates: a pointer's path is followed through the lazy
/// nodes, and only the values it reaches are built. The pod specs and containers, where most rules look, are
/// found once per event.
struct DocValues<'x, 'a> {
    doc: &'x mut Doc<'a>,
    event: NodeId,
    memo: &'x DetectMemo,
    /// Every value reached so far, each pointer's in one run (and the pod specs' and the containers'): one
    /// vector for the event instead of one per predicate.
    found: Vec<Raw<'a>>,
    pods: Option<Range<usize>>,
    containers: Option<Range<usize>>,
    /// Where in `found` each pointer slot's values are, once read.
    reached: Vec<(usize, Range<usize>)>,
    /// Each slot's address test, once made (two rules test `sourceIPs`).
    public: Vec<(usize, bool)>,
}

impl<'x, 'a> DocValues<'x, 'a> {
    fn new(doc: &'x mut Doc<'a>, event: NodeId, memo: &'x DetectMemo) -> Self {
        Self {
            doc,
            event,
            memo,
            found: Vec::new(),
            pods: None,
            containers: None,
            reached: Vec::new(),
            public: Vec::new(),
        }
    }

    /// Where in `found` the raw values, `null` included, that `pointer` reaches are.
    fn raw(&mut self, pointer: &Pointer) -> Option<Range<usize>> {
        if let Some(slot) = pointer.slot
            && let Some((_, values)) = self.reached.iter().find(|(s, _)| *s == slot)
        {
            return Some(values.clone());
        }
        let values = self.resolve(pointer)?;
        if let Some(slot) = pointer.slot {
            self.reached.push((slot, values.clone()));
        }
        Some(values)
    }

    fn resolve(&mut self, pointer: &Pointer) -> Option<Range<usize>> {
        let starts = match pointer.root() {
            Root::Event => None,
            root => Some(self.starts(root)?),
        };
        let first = self.found.len();
        match starts {
            None => walk(self.doc, self.event, pointer.tail(), &mut self.found)?,
            Some(starts) => {
                for i in starts {
                    let start = self.found[i];
                    below(self.doc, start, pointer.tail(), &mut self.found)?;
                }
            }
        }
        Some(first..self.found.len())
    }

    /// Where in `found` the pod specs, or the containers, of the event are.
    fn starts(&mut self, root: Root) -> Option<Range<usize>> {
        if self.pods.is_none() {
            let first = self.found.len();
            for path in POD_SPEC_PATHS.iter() {
                walk(self.doc, self.event, path, &mut self.found)?;
            }
            self.pods = Some(first..self.found.len());
        }
        if root == Root::Pods {
            return self.pods.clone();
        }
        if self.containers.is_none() {
            let first = self.found.len();
            for i in self.pods.clone().unwrap_or_default() {
                let pod = self.found[i];
                for path in CONTAINER_PATHS.iter() {
                    below(self.doc, pod, path, &mut self.found)?;
                }
            }
            self.containers = Some(first..self.found.len());
        }
        self.containers.clone()
    }
}

impl Values for DocValues<'_, '_> {
    fn reach(&mut self, pointer: &Pointer) -> Option<Vec<Cow<'_, Value>>> {
        let values = self.raw(pointer)?;
        self.found[values]
            .iter()
            .filter(|raw| raw.get() != "null")
            .map(|raw| serde_json::from_str(raw.get()).ok().map(Cow::Owned))
            .collect()
    }

    fn exists(&mut self, pointer: &Pointer) -> Option<bool> {
        let values = self.raw(pointer)?;
        Some(self.found[values].iter().any(|raw| raw.get() != "null"))
    }

    fn any_equals(&mut self, pointer: &Pointer, wanted: &[Value], spread: bool) -> Option<bool> {
        for i in self.raw(pointer)? {
            let raw = self.found[i];
            if spread && raw.get().starts_with('[') {
                let node = self.doc.node(raw)?;
                let Node::Array(items) = &self.doc.nodes[node.0].1 else {
                    continue;
                };
                for item in items {
                    if equals_any(*item, wanted)? {
                        return Some(true);
                    }
                }
            } else if raw.get() != "null" && equals_any(raw, wanted)? {
                return Some(true);
            }
        }
        Some(false)
    }

    fn strings(&mut self, pointer: &Pointer, spread: bool) -> Option<Vec<Cow<'_, str>>> {
        let mut out = Vec::new();
        for i in self.raw(pointer)? {
            let raw = self.found[i];
            if raw.get().starts_with('"') {
                out.push(string_of(raw)?);
            } else if spread && raw.get().starts_with('[') {
                let node = self.doc.node(raw)?;
                if let Node::Array(items) = &self.doc.nodes[node.0].1 {
                    out.extend(items.iter().filter_map(|item| string_of(*item)));
                }
            }
        }
        Some(out)
    }

    fn all_public(&mut self, pointer: &Pointer) -> Option<bool> {
        if let Some((_, public)) = self.public.iter().find(|(s, _)| Some(*s) == pointer.slot) {
            return Some(*public);
        }
        // `/sourceIPs`: one member of the event, whose text repeats across the batch (the memo's verdict).
        let public = match (pointer.root(), pointer.tail()) {
            (Root::Event, [Token::Key(key)]) => match self.doc.get(self.event, key) {
                Some(raw) => self
                    .memo
                    .address_verdict(raw.get(), || plain_all_public(raw.get())),
                None => Some(false),
            },
            _ => None,
        };
        let public = match public {
            Some(public) => public,
            None => all_public(self.strings(pointer, true)?.iter().map(|s| &**s)),
        };
        if let Some(slot) = pointer.slot {
            self.public.push((slot, public));
        }
        Some(public)
    }

    fn groups(&mut self, impersonated: bool) -> Option<Vec<Cow<'_, str>>> {
        let user = match impersonated {
            true => "impersonatedUser",
            false => "user",
        };
        match self.doc.get(self.event, user) {
            Some(raw) if raw.get().starts_with('{') => {
                let id = self.doc.object(raw)?;
                strings(self.doc, id, "groups")
            }
            _ => Some(Vec::new()),
        }
    }

    fn decision(&mut self) -> Option<Option<Cow<'_, str>>> {
        Some(match self.doc.get(self.event, "annotations") {
            Some(raw) if raw.get().starts_with('{') => {
                let id = self.doc.object(raw)?;
                self.doc.text(id, "authorization.k8s.io/decision")
            }
            _ => None,
        })
    }
}

/// Whether `raw` equals one of `wanted` as built values compare (the usual scalars without building one).
fn equals_any(raw: Raw<'_>, wanted: &[Value]) -> Option<bool> {
    let text = raw.get();
    // Each read once, when a wanted value first needs it (a role's verbs are tested against a list).
    let (mut string, mut built) = (None, None);
    for want in wanted {
        let equal = match want {
            Value::Bool(true) => text == "true",
            Value::Bool(false) => text == "false",
            Value::Null => text == "null",
            Value::String(s) if text.starts_with('"') => {
                if string.is_none() {
                    string = Some(string_of(raw)?);
                }
                string.as_deref() == Some(s.as_str())
            }
            Value::String(_) => false,
            other => {
                if built.is_none() {
                    built = Some(serde_json::from_str::<Value>(text).ok()?);
                }
                built.as_ref() == Some(other)
            }
        };
        if equal {
            return Some(true);
        }
    }
    Some(false)
}

/// [`all_public`] of the raw value `text` when it is a string or an array of strings without escapes (what
/// `sourceIPs` holds); `None` for the general route.
fn plain_all_public(text: &str) -> Option<bool> {
    match text.as_bytes().first() {
        Some(b'[') => {
            let mut strings = Vec::new();
            push_plain_strings(text, &mut strings).then(|| all_public(strings.into_iter()))
        }
        Some(b'"') => plain_string(text).map(|s| all_public(std::iter::once(s))),
        // Neither a string nor an array: no address.
        _ => Some(false),
    }
}

/// The elements of the JSON array `text` onto `out` when every one is a string without escapes (what
/// `sourceIPs` holds); `false`, with `out` as it was, for anything else (the caller then parses the array).
fn push_plain_strings<'a>(text: &'a str, out: &mut Vec<&'a str>) -> bool {
    let Some(inner) = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .map(|t| t.trim_matches(JSON_WHITESPACE))
    else {
        return false;
    };
    let before = out.len();
    if inner.is_empty() {
        return true;
    }
    for element in inner.split(',') {
        match plain_string(element) {
            Some(string) => out.push(string),
            None => {
                out.truncate(before);
                return false;
            }
        }
    }
    true
}

/// The JSON string `text` (whitespace around it allowed) when it has no escapes.
fn plain_string(text: &str) -> Option<&str> {
    text.trim_matches(JSON_WHITESPACE)
        .strip_prefix('"')
        .and_then(|e| e.strip_suffix('"'))
        .filter(|e| !e.contains(['"', '\\']) && !e.bytes().any(|b| b < 0x20))
}

const JSON_WHITESPACE: &[char] = &[' ', '\t', '\n', '\r'];

/// [`Pointer::resolve`] on the document from the value `start`: itself when `tokens` is empty.
fn below<'a>(
    doc: &mut Doc<'a>,
    start: Raw<'a>,
    tokens: &[Token],
    out: &mut Vec<Raw<'a>>,
) -> Option<()> {
    if tokens.is_empty() {
        out.push(start);
    } else if matches!(start.get().as_bytes().first(), Some(b'{' | b'[')) {
        let node = doc.node(start)?;
        walk(doc, node, tokens, out)?;
    }
    Some(())
}

/// What `tokens` (at least one) reach from the object or array `node`.
fn walk<'a>(
    doc: &mut Doc<'a>,
    node: NodeId,
    tokens: &[Token],
    out: &mut Vec<Raw<'a>>,
) -> Option<()> {
    let (first, rest) = tokens.split_first()?;
    match first {
        Token::Key(key) => {
            let found = match &doc.nodes[node.0].1 {
                Node::Object(..) => doc.get(node, key),
                Node::Array(items) => key
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| items.get(i).copied()),
            };
            if let Some(value) = found {
                below(doc, value, rest, out)?;
            }
        }
        Token::Each => {
            let children: Vec<Raw<'a>> = match &doc.nodes[node.0].1 {
                Node::Array(items) => {
                    // By index, not copied out: the walk below adds nodes, never changes this one.
                    for i in 0..items.len() {
                        let Node::Array(items) = &doc.nodes[node.0].1 else {
                            break;
                        };
                        let item = items[i];
                        below(doc, item, rest, out)?;
                    }
                    return Some(());
                }
                // A built object keeps the last of duplicate keys: a look ahead for each member of a small
                // object (a ConfigMap's data), a set for a large one.
                Node::Object(members, _) if members.len() <= 16 => members
                    .iter()
                    .enumerate()
                    .filter(|(i, (key, _))| !members[i + 1..].iter().any(|(k, _)| k == key))
                    .map(|(_, (_, value))| *value)
                    .collect(),
                Node::Object(members, _) => {
                    let mut seen = std::collections::HashSet::with_capacity(members.len());
                    let mut last: Vec<Raw<'a>> = members
                        .iter()
                        .rev()
                        .filter(|(key, _)| seen.insert(&**key))
                        .map(|(_, value)| *value)
                        .collect();
                    last.reverse();
                    last
                }
            };
            for value in children {
                below(doc, value, rest, out)?;
            }
        }
    }
    Some(())
}

/// [`Head::of`], read from the document.
fn head<'a>(doc: &mut Doc<'a>, event: NodeId) -> Option<Head<'a>> {
    let text = |raw: Option<Raw<'a>>| raw.and_then(string_of);
    let [user, impersonated, status, object, verb, stage, user_agent] = doc.pick(
        event,
        [
            "user",
            "impersonatedUser",
            "responseStatus",
            "objectRef",
            "verb",
            "stage",
            "userAgent",
        ],
    );
    let mut member = |raw: Option<Raw<'a>>, key: &str| -> Option<Option<Cow<'a, str>>> {
        match raw {
            Some(raw) if raw.get().starts_with('{') => {
                let id = doc.object(raw)?;
                Some(Some(text(doc.get(id, key)).unwrap_or_default()))
            }
            _ => Some(None),
        }
    };
    let user = member(user, "username")?.unwrap_or_default();
    let impersonated = member(impersonated, "username")?;
    let code = match status {
        Some(raw) if raw.get().starts_with('{') => {
            let id = doc.object(raw)?;
            doc.get(id, "code")
                .and_then(|c| c.get().parse::<u64>().ok())
        }
        _ => None,
    };
    let object = match object {
        Some(raw) if raw.get().starts_with('{') => {
            let id = doc.object(raw)?;
            let [api_group, resource, subresource, namespace, name] = doc
                .pick(
                    id,
                    ["apiGroup", "resource", "subresource", "namespace", "name"],
                )
                .map(|raw| text(raw).unwrap_or_default());
            Some(ObjectRef {
                api_group,
                resource,
                subresource,
                namespace,
                name,
            })
        }
        _ => None,
    };
    Some(Head {
        verb: text(verb).unwrap_or_default(),
        stage: text(stage),
        user,
        impersonated,
        user_agent: text(user_agent).unwrap_or_default(),
        code,
        object,
    })
}

/// The strings of the array `key` in the object `id` (other elements skipped, as `Value::as_str` does).
fn strings<'a>(doc: &mut Doc<'a>, id: NodeId, key: &str) -> Option<Vec<Cow<'a, str>>> {
    let Some(raw) = doc.get(id, key).filter(|r| r.get().starts_with('[')) else {
        return Some(Vec::new());
    };
    let node = doc.node(raw)?;
    Some(match &doc.nodes[node.0].1 {
        Node::Array(items) => items.iter().filter_map(|item| string_of(*item)).collect(),
        Node::Object(..) => Vec::new(),
    })
}

/// A field's value as the generic path's [`crate::field_value`] makes it.
enum FieldValue<'a> {
    Text(Cow<'a, str>),
    Number(Number),
    Bool(bool),
    /// An object or array, as its compact JSON text without the holes (byte ranges of its text) the policy
    /// cut out.
    Json(Raw<'a>, Vec<(usize, usize)>),
    /// `json-object`: `[{"key":…,"value":…}]` in key order.
    KeyValues(Vec<(Str<'a>, Str<'a>)>),
    /// A value the record rules wrote (a mask, a hash, a derived field): a string, kept even when empty.
    Rewritten(String),
}

impl FieldValue<'_> {
    /// `None`: the writer cannot write it as the generic path would.
    fn write(&self, out: &mut Writer, name: &str) -> Option<()> {
        match self {
            Self::Text(text) => out.text(name, Some(text.as_ref())),
            Self::Number(n) => out.number_value(name, n),
            Self::Bool(b) => out.boolean(name, *b),
            Self::Json(raw, holes) => out.raw_json(name, Some(raw.get()), holes)?,
            Self::KeyValues(pairs) => out.key_value_list(name, pairs),
            Self::Rewritten(text) => out.text_always(name, text),
        }
        Some(())
    }

    /// The string form the record rules read ([`rules::string_form`] of the generic path's value). An
    /// object's or list's is the generic path's JSON text (keys sorted), built only for a rule that reads
    /// it; `None` declines (a text the policy cut, or `json-object` pairs).
    fn string_form(&self) -> Option<Cow<'_, str>> {
        Some(match self {
            Self::Text(text) => Cow::Borrowed(text.as_ref()),
            Self::Rewritten(text) => Cow::Borrowed(text.as_str()),
            Self::Number(n) => Cow::Owned(n.to_string()),
            Self::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Self::Json(raw, holes) if holes.is_empty() => {
                Cow::Owned(serde_json::from_str::<Value>(raw.get()).ok()?.to_string())
            }
            Self::Json(..) | Self::KeyValues(_) => return None,
        })
    }

    /// The event time from this field, as the generic path parses the record's value. `Some(None)`: no
    /// usable time; `None`: decline (a value only the generic path turns into text).
    fn parse_time(&self, format: &DateFormat, now_ms: i64) -> Option<Option<i64>> {
        Some(match self {
            Self::Text(text) => format.parse_text_ms(text, now_ms).ok(),
            Self::Number(n) => format.parse_ms(&Value::Number(n.clone()), now_ms).ok(),
            Self::Bool(b) => format.parse_ms(&Value::Bool(*b), now_ms).ok(),
            Self::Json(..) | Self::KeyValues(_) | Self::Rewritten(_) => return None,
        })
    }
}

/// The event time from a document value found at the `dateField` path.
fn parse_raw_time(raw: Raw<'_>, format: &DateFormat, now_ms: i64) -> Option<i64> {
    match string_of(raw) {
        Some(text) => format.parse_text_ms(&text, now_ms).ok(),
        None => {
            let value: Value = serde_json::from_str(raw.get()).ok()?;
            format.parse_ms(&value, now_ms).ok()
        }
    }
}

/// `Some(None)` for what the generic path leaves out (`null`, `""`); `None` to decline.
fn field_value<'a>(
    doc: &mut Doc<'a>,
    raw: Raw<'a>,
    value_type: ValueType,
) -> Option<Option<FieldValue<'a>>> {
    // The whole AKS event as one field: the generic path's to render.
    if doc.substitute.is_some_and(|(at, _)| at == key_of(raw)) {
        return None;
    }
    Some(Some(match raw.get().as_bytes().first()? {
        b'n' => return Some(None),
        b'"' => {
            let text = string_of(raw)?;
            if text.is_empty() {
                return Some(None);
            }
            // `json-object` parses a string holding an object: the generic path's to do.
            if value_type == ValueType::JsonObject && looks_like_json(&text) {
                return None;
            }
            FieldValue::Text(text)
        }
        b't' => FieldValue::Bool(true),
        b'f' => FieldValue::Bool(false),
        b'{' if value_type == ValueType::JsonObject => {
            let members = doc.object(raw)?;
            let mut pairs: Vec<(Str<'a>, Raw<'a>)> = doc.members(members).to_vec();
            // A map: in key order, the last of duplicate keys.
            pairs.reverse();
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            pairs.dedup_by(|later, earlier| later.0 == earlier.0);
            let mut out = Vec::with_capacity(pairs.len());
            for (key, value) in pairs {
                let text = match value.get().as_bytes().first()? {
                    b'"' => string_of(value)?,
                    b'{' | b'[' => return None,
                    b't' | b'f' | b'n' => Cow::Borrowed(value.get()),
                    _ => Cow::Owned(
                        serde_json::from_str::<Number>(value.get())
                            .ok()?
                            .to_string(),
                    ),
                };
                out.push((key, Str(text)));
            }
            FieldValue::KeyValues(out)
        }
        b'{' | b'[' => FieldValue::Json(raw, policy::holes_in(doc, raw)),
        _ => FieldValue::Number(serde_json::from_str(raw.get()).ok()?),
    }))
}

/// A JSON string's value, borrowed when it has no escapes; `None` if `raw` is not a string.
fn string_of(raw: Raw<'_>) -> Option<Cow<'_, str>> {
    let text = raw.get();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    // Escaped ones can be long (an AKS record's `properties.log`): unescaped eight bytes at a time, refusing
    // what serde refuses. Most are short (a verb, a namespace): the backslash is looked for eight bytes at a
    // time too, where `contains` went byte by byte below 16 bytes and paid a set-up above.
    if kaf_envelope::escape::first_backslash(inner.as_bytes()).is_some() {
        kaf_envelope::escape::unescape_json_string(text).map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(inner))
    }
}

/// Where a raw value sits in the text: identifies it in the document's cache.
fn key_of(raw: Raw<'_>) -> (usize, usize) {
    (raw.get().as_ptr() as usize, raw.get().len())
}

enum Node<'a> {
    /// The members, and a bit per key length (mod 64) present: most lookups miss, and most misses are
    /// answered by that bit without comparing a key.
    Object(Vec<(Str<'a>, Raw<'a>)>, u64),
    Array(Vec<Raw<'a>>),
}

fn object_node<'a>(members: Vec<(Str<'a>, Raw<'a>)>) -> Node<'a> {
    let lengths = members
        .iter()
        .fold(0u64, |m, (k, _)| m | length_bit(k.len()));
    Node::Object(members, lengths)
}

fn length_bit(len: usize) -> u64 {
    1 << (len & 63)
}

/// A `jsonPath` key prepared for lookups: where its dots are, and its last segment lower-cased (the
/// fallback for a leaf key with capitals).
#[derive(Debug, Clone)]
struct Key {
    text: String,
    dots: Vec<usize>,
    tail_lower: Option<String>,
}

impl Key {
    fn new(text: &str) -> Self {
        let dots: Vec<usize> = text.match_indices('.').map(|(i, _)| i).collect();
        let tail = &text[dots.last().map_or(0, |d| d + 1)..];
        Self {
            text: text.to_string(),
            tail_lower: tail
                .bytes()
                .any(|b| b.is_ascii_uppercase())
                .then(|| tail.to_ascii_lowercase()),
            dots,
        }
    }
}

/// The vectors a batch's documents pass on to each other (each split's members, the node list, the bracket
/// ends): allocated for the first events of a batch, not for every object of every event.
#[derive(Default)]
pub(crate) struct Spare {
    members: Vec<Vec<(Str<'static>, Raw<'static>)>>,
    items: Vec<Vec<Raw<'static>>>,
    nodes: Vec<((usize, usize), Node<'static>)>,
    places: Places,
    ends: scan::Ends,
}

impl Spare {
    /// How many split vectors of each kind are kept, and the largest kept: a document's worth, so that one
    /// huge event does not leave its memory to the rest of the batch.
    const VECTORS: usize = 64;
    const CAPACITY: usize = 256;

    fn keep<T>(spares: &mut Vec<Vec<T>>, vector: Vec<T>) {
        if spares.len() < Self::VECTORS && vector.capacity() <= Self::CAPACITY {
            spares.push(vector);
        }
    }
}

/// `vector` emptied, as a vector of the same type for another lifetime, its allocation kept (collecting a
/// vector's own iterator into one of the same layout reuses its allocation).
fn emptied<T, U>(mut vector: Vec<T>) -> Vec<U> {
    vector.clear();
    vector.into_iter().filter_map(|_| None).collect()
}

/// One event's document, parsed as far as lookups went: each object or array visited becomes a node once.
#[derive(Default)]
struct Doc<'a> {
    nodes: Vec<((usize, usize), Node<'a>)>,
    /// Which node each key is, once there are more than [`Doc::FEW_NODES`].
    places: Places,
    /// Empty vectors for the next splits (see [`Spare`]).
    spare_members: Vec<Vec<(Str<'a>, Raw<'a>)>>,
    spare_items: Vec<Vec<Raw<'a>>>,
    /// A JSON string that stands for a parsed object (AKS `properties.log`, the audit event).
    substitute: Option<((usize, usize), NodeId)>,
    /// Byte ranges (addresses) of the text that the policy removed from objects written as text.
    holes: Vec<(usize, usize)>,
    /// Where the objects and arrays read over so far end: splitting one of them later skips its insides.
    ends: scan::Ends,
}

/// A node of [`Doc`], by index.
#[derive(Clone, Copy)]
struct NodeId(usize);

impl<'a> Doc<'a> {
    /// Up to this many nodes (most events' documents), a scan of the list finds a node faster than the table.
    const FEW_NODES: usize = 12;

    /// An empty document in the vectors of `spare`.
    fn reusing(spare: Spare) -> Self {
        Self {
            nodes: emptied(spare.nodes),
            places: spare.places,
            spare_members: spare.members.into_iter().map(emptied).collect(),
            spare_items: spare.items.into_iter().map(emptied).collect(),
            ends: spare.ends,
            ..Self::default()
        }
    }

    /// The document's vectors, emptied, for the next one.
    fn into_spare(mut self) -> Spare {
        let mut spare = Spare {
            members: self.spare_members.into_iter().map(emptied).collect(),
            items: self.spare_items.into_iter().map(emptied).collect(),
            ..Spare::default()
        };
        for (_, node) in self.nodes.drain(..) {
            match node {
                Node::Object(members, _) => Spare::keep(&mut spare.members, emptied(members)),
                Node::Array(items) => Spare::keep(&mut spare.items, emptied(items)),
            }
        }
        spare.nodes = emptied(self.nodes);
        self.places.clear();
        spare.places = self.places;
        self.ends.clear();
        spare.ends = self.ends;
        spare
    }

    /// The object that is the whole `text`, checked as serde checks it (one pass over it, which notes where
    /// every object and array inside ends).
    fn root(&mut self, text: &'a str) -> Option<NodeId> {
        let into = self.spare_members.pop().unwrap_or_default();
        let members = scan::validated_object(text, &mut self.ends, into)?;
        Some(self.add((text.as_ptr() as usize, text.len()), object_node(members)))
    }

    /// `node`, the split of the text at `key`, kept.
    // Inlined: a split's node is then built in place, not moved into a call.
    #[inline(always)]
    fn add(&mut self, key: (usize, usize), node: Node<'a>) -> NodeId {
        let id = self.nodes.len();
        self.nodes.push((key, node));
        if self.nodes.len() > Self::FEW_NODES {
            let nodes = &self.nodes;
            // The table starts with the node that outgrows a scan.
            let new = if self.places.is_empty() { 0 } else { id };
            for (i, (key, _)) in nodes.iter().enumerate().skip(new) {
                self.places.insert(*key, i, |i| nodes[i].0);
            }
        }
        NodeId(id)
    }

    /// The node of `raw`, parsed on first use. `None` when it does not parse (the generic path decides).
    fn node(&mut self, raw: Raw<'a>) -> Option<NodeId> {
        let key = key_of(raw);
        if let Some((_, id)) = self.substitute.filter(|(at, _)| *at == key) {
            return Some(id);
        }
        let cached = match self.nodes.len() > Self::FEW_NODES {
            true => self.places.find(key, |i| self.nodes[i].0),
            false => self.nodes.iter().rposition(|(k, _)| *k == key),
        };
        if let Some(i) = cached {
            return Some(NodeId(i));
        }
        let node = match raw.get().as_bytes().first()? {
            // Inside a text serde has already parsed whole: split, not parsed again.
            b'{' => {
                let into = self.spare_members.pop().unwrap_or_default();
                object_node(scan::object(raw.get(), &mut self.ends, into)?)
            }
            b'[' => {
                let into = self.spare_items.pop().unwrap_or_default();
                Node::Array(scan::array(raw.get(), &mut self.ends, into)?)
            }
            _ => return None,
        };
        Some(self.add(key, node))
    }

    /// `raw` as an object node; `None` if it is not one.
    fn object(&mut self, raw: Raw<'a>) -> Option<NodeId> {
        raw.get().starts_with('{').then_some(())?;
        self.node(raw)
    }

    fn members(&self, id: NodeId) -> &[(Str<'a>, Raw<'a>)] {
        match &self.nodes[id.0].1 {
            Node::Object(members, _) => members,
            Node::Array(_) => &[],
        }
    }

    /// The member `key` exactly (the last of duplicates, as a map keeps it).
    fn get(&self, id: NodeId, key: &str) -> Option<Raw<'a>> {
        if !self.may_have_length(id, key.len()) {
            return None;
        }
        self.members(id)
            .iter()
            .rev()
            .find(|(k, _)| crate::detect::same(k, key))
            .map(|(_, v)| *v)
    }

    /// The members `keys` of the object `id`, in one pass over it (each the last of duplicates, as
    /// [`Doc::get`] finds it): for the several fields read together.
    fn pick<const N: usize>(&self, id: NodeId, keys: [&str; N]) -> [Option<Raw<'a>>; N] {
        let mut found = [None; N];
        for (member, value) in self.members(id) {
            let member: &str = member;
            for (slot, key) in found.iter_mut().zip(keys) {
                if crate::detect::same(member, key) {
                    *slot = Some(*value);
                }
            }
        }
        found
    }

    fn may_have_length(&self, id: NodeId, len: usize) -> bool {
        match &self.nodes[id.0].1 {
            Node::Object(_, lengths) => lengths & length_bit(len) != 0,
            Node::Array(_) => false,
        }
    }

    /// A JSON pointer of plain keys (`/properties/log`), exactly as `Value::pointer` reads it.
    fn pointer(&mut self, root: NodeId, pointer: &str) -> Option<Raw<'a>> {
        let mut node = root;
        let mut found = None;
        for segment in pointer.strip_prefix('/')?.split('/') {
            if segment.contains('~') {
                return None;
            }
            if let Some(raw) = found {
                node = self.object(raw)?;
            }
            found = Some(self.get(node, segment)?);
        }
        found
    }

    /// [`crate::lookup::with_value`] on this document: `Some(Some(value))` found, `Some(None)` missing,
    /// `None` declined (a JSON string would have to be parsed on the way, or a part does not parse).
    fn lookup(&mut self, root: NodeId, key: &Key) -> Option<Option<Raw<'a>>> {
        match self.walk_object(root, key, 0) {
            Walk::Found(v) => Some(Some(v)),
            Walk::Missing => Some(None),
            Walk::Decline => None,
        }
    }

    /// `key` from byte `start` on, in the object `id`: the literal rest, then (a leaf) lower-cased, then
    /// each split at a dot with the parent as written or `Capitalized`.
    fn walk_object(&mut self, id: NodeId, key: &Key, start: usize) -> Walk<'a> {
        let rest = &key.text[start..];
        if let Some(v) = self.get(id, rest) {
            return Walk::Found(v);
        }
        let first_dot = key.dots.iter().position(|d| *d >= start);
        if first_dot.is_none()
            && let Some(lower) = &key.tail_lower
            && let Some(v) = self.get(id, lower)
        {
            return Walk::Found(v);
        }
        for &dot in &key.dots[first_dot.unwrap_or(key.dots.len())..] {
            if let Some(child) = self.child(id, &key.text[start..dot]) {
                match self.walk(child, key, dot + 1) {
                    Walk::Missing => {}
                    other => return other,
                }
            }
        }
        Walk::Missing
    }

    fn walk(&mut self, raw: Raw<'a>, key: &Key, start: usize) -> Walk<'a> {
        let is_substitute = self.substitute.is_some_and(|(at, _)| at == key_of(raw));
        match raw.get().as_bytes().first() {
            Some(b'{') => match self.node(raw) {
                Some(id) => self.walk_object(id, key, start),
                None => Walk::Decline,
            },
            _ if is_substitute => match self.node(raw) {
                Some(id) => self.walk_object(id, key, start),
                None => Walk::Decline,
            },
            Some(b'[') => {
                let Some(id) = self.node(raw) else {
                    return Walk::Decline;
                };
                let next_dot = key.dots.iter().find(|d| **d >= start).copied();
                let head = &key.text[start..next_dot.unwrap_or(key.text.len())];
                let item = match (&self.nodes[id.0].1, head.parse::<usize>()) {
                    (Node::Array(items), Ok(i)) => items.get(i).copied(),
                    _ => None,
                };
                match (item, next_dot) {
                    (Some(item), None) => Walk::Found(item),
                    (Some(item), Some(dot)) => self.walk(item, key, dot + 1),
                    (None, _) => Walk::Missing,
                }
            }
            Some(b'"') => match string_of(raw) {
                Some(text) if looks_like_json(&text) => Walk::Decline,
                Some(_) => Walk::Missing,
                None => Walk::Decline,
            },
            _ => Walk::Missing,
        }
    }

    /// The parent as written, then `Capitalized` (compared in place: no copy of the key).
    fn child(&self, id: NodeId, parent: &str) -> Option<Raw<'a>> {
        self.get(id, parent).or_else(|| {
            let (first, rest) = parent.as_bytes().split_first()?;
            if !first.is_ascii_lowercase() {
                return None;
            }
            let upper = first.to_ascii_uppercase();
            if !self.may_have_length(id, parent.len()) {
                return None;
            }
            self.members(id)
                .iter()
                .rev()
                .find(|(k, _)| k.as_bytes().split_first() == Some((&upper, rest)))
                .map(|(_, v)| *v)
        })
    }

    /// A top-level string of the event, exactly (what the audit checks and the identity read).
    fn text(&self, id: NodeId, key: &str) -> Option<Cow<'a, str>> {
        string_of(self.get(id, key)?)
    }
}

enum Walk<'a> {
    Found(Raw<'a>),
    Missing,
    Decline,
}

/// [`crate::check_event`]: `Some(false)` is not an audit event (the generic path counts it).
fn is_audit_event(doc: &Doc<'_>, event: NodeId) -> Option<bool> {
    Some(match doc.get(event, "kind") {
        Some(kind) => string_of(kind).is_some_and(|k| k == "Event"),
        None => doc.text(event, "auditID").is_some() && doc.text(event, "stage").is_some(),
    })
}

/// [`crate::normalize`]: v1beta1 archives carry the v1 timestamps as `timestamp` and
/// `metadata.creationTimestamp`; a missing (or `null`) v1 field gets their value, as a member added last
/// (the last of duplicate keys is the one a lookup finds).
fn normalise<'a>(doc: &mut Doc<'a>, event: NodeId) -> Option<()> {
    let missing = |doc: &Doc<'a>, key: &str| doc.get(event, key).is_none_or(|v| v.get() == "null");
    let mut added = Vec::new();
    if missing(doc, "requestReceivedTimestamp")
        && let Some(ts) = doc
            .get(event, "timestamp")
            .filter(|v| v.get().starts_with('"'))
    {
        added.push(("requestReceivedTimestamp", ts));
    }
    if missing(doc, "stageTimestamp")
        && let Some(metadata) = doc
            .get(event, "metadata")
            .filter(|v| v.get().starts_with('{'))
    {
        let id = doc.object(metadata)?;
        if let Some(ts) = doc
            .get(id, "creationTimestamp")
            .filter(|v| v.get().starts_with('"'))
        {
            added.push(("stageTimestamp", ts));
        }
    }
    if let Node::Object(members, lengths) = &mut doc.nodes[event.0].1 {
        for (key, value) in added {
            *lengths |= length_bit(key.len());
            members.push((Str(Cow::Borrowed(key)), value));
        }
    }
    Some(())
}

/// [`crate::identity_parts`], read from the text.
fn identity<'a>(doc: &Doc<'a>, event: NodeId) -> Option<[Cow<'a, str>; 4]> {
    let id = doc.text(event, "auditID").filter(|s| !s.is_empty())?;
    let text = |key: &str| doc.text(event, key).unwrap_or_default();
    Some([
        id,
        text("stage"),
        text("requestReceivedTimestamp"),
        text("stageTimestamp"),
    ])
}

/// Texts made while an event is mapped, which its document borrows: they outlive the document.
#[derive(Default)]
struct Texts {
    /// The AKS event's own text, unescaped from the record.
    inner: std::cell::OnceCell<String>,
    redacted: RedactedTexts,
}

/// `requestObject`, `responseObject` and `requestURI` as redaction rewrote them.
type RedactedTexts = [std::cell::OnceCell<String>; 3];

/// [`redact::redact_event`] on the document: an object it changes is parsed, redacted by the same code, and
/// put back as the JSON text the generic path would write for it; so is a `requestURI` it changes. How many
/// values were replaced; `None` declines (an object the policy cut holes in, whose text is not what the
/// generic path would redact).
fn redact_event<'a>(doc: &mut Doc<'a>, event: NodeId, texts: &'a RedactedTexts) -> Option<u64> {
    let target = match doc.get(event, "objectRef") {
        Some(object_ref) if object_ref.get().starts_with('{') => {
            let id = doc.object(object_ref)?;
            let field = |key: &str| doc.text(id, key).unwrap_or_default();
            redact::Target::new(
                &field("resource"),
                &field("subresource"),
                &field("apiGroup"),
            )
        }
        _ => redact::Target::new("", "", ""),
    };
    let [request, response, uri] = texts;
    let mut count = 0;
    for (key, text) in [("requestObject", request), ("responseObject", response)] {
        let Some(raw) = doc.get(event, key) else {
            continue;
        };
        if !policy::holes_in(doc, raw).is_empty() {
            return None;
        }
        let mut object: Value = serde_json::from_str(raw.get()).ok()?;
        let replaced = target.redact_object(&mut object);
        if replaced > 0 {
            let text = text.get_or_init(|| object.to_string());
            policy::set_member(doc, event, key, Raw::new(text));
            count += replaced;
        }
    }
    if let Some((redacted, replaced)) = doc
        .text(event, "requestURI")
        .and_then(|text| redact::redact_uri(&text))
    {
        let text = uri.get_or_init(|| Value::String(redacted).to_string());
        policy::set_member(doc, event, "requestURI", Raw::new(text));
        count += replaced;
    }
    Some(count)
}

/// Could [`redact::redact_event`] change this event? Read as `redact_event` reads it; `None` declines.
fn may_need_redaction<'a>(doc: &mut Doc<'a>, event: NodeId) -> Option<bool> {
    let resource = match doc.get(event, "objectRef") {
        Some(object_ref) if object_ref.get().starts_with('{') => {
            let id = doc.object(object_ref)?;
            doc.text(id, "resource")
        }
        _ => None,
    };
    let objects: Vec<&str> = ["requestObject", "responseObject"]
        .iter()
        .filter_map(|k| doc.get(event, k))
        .map(|raw| raw.get())
        .filter(|text| *text != "null")
        .collect();
    let uri = doc.text(event, "requestURI");
    Some(redact::may_change(
        resource.as_deref().unwrap_or_default(),
        &objects,
        uri.as_deref(),
    ))
}

mod places;
mod policy;
#[cfg(test)]
mod props;
mod scan;
#[cfg(test)]
pub(crate) mod tests;
