//! Detections at the edge: which threat rules an audit event matches, computed on the original event (before
//! redaction and mapping), so rules can look into the request and response objects.
//!
//! The rule set is data (`templates/detections/rules.yaml`, built in). A rule is a policy-like selector
//! (verbs, resources as the audit policy writes them, namespaces, stages, users, groups, response codes, the
//! authorization decision, user agents), plus predicates on the event by JSON pointer with `*` over arrays, plus
//! exceptions that operators extend from their own file without editing ours.
//!
//! Loading (`load.rs`) refuses a bad rule file naming the rule and the field. Evaluating (`evaluate.rs`)
//! answers only rule ids and a severity: a detection never carries a value from the event.

pub mod conformance;
mod evaluate;
mod load;
mod pointer;

pub(crate) use evaluate::{Head, ObjectRef, Values, all_public};
pub use pointer::Pointer;
pub(crate) use pointer::{CONTAINER_PATHS, HeadField, POD_SPEC_PATHS, Root, Token};

use std::fmt;

/// The built-in rule set.
pub const BUILTIN_RULES: &str = include_str!("../../../templates/detections/rules.yaml");

/// Severities, ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Self::Info,
        Self::Low,
        Self::Medium,
        Self::High,
        Self::Critical,
    ];
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a rule file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetectError {
    #[error("detection rules are not valid YAML or JSON: {0}")]
    Syntax(String),
    #[error("detection rules, {rule}: field `{field}`: {reason}")]
    Invalid {
        /// `rules[3] (pod-exec)`, or `(file)` for the file's own fields.
        rule: String,
        field: String,
        reason: String,
    },
}

/// A name pattern: exact, or a prefix when it ends in `*` (`system:*`, `*` for anything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    /// The pattern without its `*`.
    text: String,
    prefix: bool,
}

impl Glob {
    pub fn new(pattern: &str) -> Self {
        match pattern.strip_suffix('*') {
            Some(prefix) => Self {
                text: prefix.to_string(),
                prefix: true,
            },
            None => Self {
                text: pattern.to_string(),
                prefix: false,
            },
        }
    }

    /// Allowlists are read for every event a rule selects: most names differ in length or first byte, which
    /// answers without a call to `memcmp`.
    pub fn matches(&self, s: &str) -> bool {
        match self.prefix {
            // A head of `s` that ends inside a character cannot equal the whole characters of `text`.
            true => s
                .get(..self.text.len())
                .is_some_and(|head| same(head, &self.text)),
            false => same(s, &self.text),
        }
    }
}

/// `a == b`, answered by the length and the first byte when they differ, as most compared names and keys
/// do, without a call to `memcmp` (the compiled path's member keys, the rules' verbs and resources, globs).
#[inline]
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.as_bytes().first() == b.as_bytes().first() && a == b
}

/// An inclusive range of HTTP status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeRange {
    pub min: u16,
    pub max: u16,
}

/// The selector: every field given must match; an empty list matches anything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Match {
    pub verbs: Vec<String>,
    /// As an audit policy writes them: `pods`, `pods/exec`, `*/scale`, `pods/*`, `*`.
    pub resources: Vec<String>,
    pub api_groups: Vec<String>,
    /// `""` selects requests without a namespace (cluster-scoped, or across all namespaces).
    pub namespaces: Vec<Glob>,
    /// An event without a `stage` (some exporters strip it) matches any list.
    pub stages: Vec<String>,
    pub users: Vec<Glob>,
    pub groups: Vec<Glob>,
    pub codes: Vec<CodeRange>,
    /// `allow` or `forbid` (`authorization.k8s.io/decision`).
    pub decision: Option<String>,
    /// Prefixes of the user agent.
    pub user_agents: Vec<String>,
    /// `objectRef.name`.
    pub names: Vec<Glob>,
}

/// What a predicate tests about each value its pointer reaches.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Equals(serde_json::Value),
    In(Vec<serde_json::Value>),
    /// `true`: the pointer reaches a value that is not null; `false`: it reaches none.
    Exists(bool),
    /// A string value starts with one of these.
    Prefix(Vec<String>),
    /// A string value contains one of these.
    Contains(Vec<String>),
    /// An array value shares an element with these (a scalar counts as a one-element array).
    Intersects(Vec<serde_json::Value>),
    /// Every IP address in the value (a string or an array of strings) is public, and there is one.
    PublicIp(bool),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Predicate {
    pub pointer: Pointer,
    pub test: Test,
}

/// One allowlist entry: it applies when every field it gives matches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exception {
    pub users: Vec<Glob>,
    pub groups: Vec<Glob>,
    pub namespaces: Vec<Glob>,
    pub names: Vec<Glob>,
    /// Container images (with or without tag/digest): applies when **every** image of the pod is listed, so a
    /// trusted sidecar cannot launder an untrusted container.
    pub images: Vec<String>,
    pub user_agents: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    pub mitre: Option<String>,
    pub enabled: bool,
    pub selector: Match,
    /// All must hold.
    pub all: Vec<Predicate>,
    /// When given, at least one must hold.
    pub any: Vec<Predicate>,
    /// When given, none may hold.
    pub none: Vec<Predicate>,
    pub exceptions: Vec<Exception>,
}

/// A validated rule set.
#[derive(Debug, Clone, PartialEq)]
pub struct Detector {
    rules: Vec<Rule>,
    /// Which enabled rules can take a request with each verb some rule names: most events are reads and
    /// controllers' updates, which only a handful of rules select. Built with the set; `rules` is private
    /// so the two cannot drift.
    by_verb: Vec<(String, Candidates)>,
    /// For the verbs no rule names.
    any_verb: Candidates,
}

/// The rules of one verb, by the resource they can take, in rule-file order. A resource spec (`pods`,
/// `pods/exec`, `pods/*`) takes only resources of its first segment, unless that is `*` (`*`, `*/scale`):
/// see [`resource_key`].
#[derive(Debug, Clone, PartialEq, Default)]
struct Candidates {
    by_resource: Vec<(String, Vec<usize>)>,
    /// The rules that take any resource (no resource spec, or a `*` one), for every other resource and for
    /// non-resource requests.
    any_resource: Vec<usize>,
}

impl Candidates {
    /// `rules`, in file order, indexed by the resources their specs name.
    fn new(all: &[Rule], rules: Vec<usize>) -> Self {
        let keys = |i: usize| {
            all[i]
                .selector
                .resources
                .iter()
                .map(|spec| resource_key(spec))
        };
        let takes_any =
            |i: &usize| all[*i].selector.resources.is_empty() || keys(*i).any(|key| key == "*");
        let mut named: Vec<&str> = rules.iter().flat_map(|&i| keys(i)).collect();
        named.retain(|key| *key != "*");
        named.sort_unstable();
        named.dedup();
        let by_resource = named
            .into_iter()
            .map(|key| {
                let takers = rules
                    .iter()
                    .copied()
                    .filter(|i| takes_any(i) || keys(*i).any(|k| k == key))
                    .collect();
                (key.to_string(), takers)
            })
            .collect();
        Self {
            by_resource,
            any_resource: rules.iter().copied().filter(takes_any).collect(),
        }
    }

    /// The rules that can take `resource` (`None`: a non-resource request).
    fn taking(&self, resource: Option<&str>) -> &[usize] {
        resource
            .map(resource_key)
            .and_then(|key| self.by_resource.iter().find(|(k, _)| same(k, key)))
            .map_or(&self.any_resource, |(_, rules)| rules)
    }
}

/// The first `/`-segment of a resource spec or of an event's resource: a spec takes a resource only when the
/// two agree or the spec's is `*` (whatever the subresource; `policy::resource_matches`).
fn resource_key(resource: &str) -> &str {
    match resource.as_bytes().iter().position(|&b| b == b'/') {
        Some(slash) => &resource[..slash],
        None => resource,
    }
}

impl Detector {
    fn new(mut rules: Vec<Rule>) -> Self {
        let mut texts: Vec<String> = Vec::new();
        for rule in &mut rules {
            for predicate in rule
                .all
                .iter_mut()
                .chain(&mut rule.any)
                .chain(&mut rule.none)
            {
                let text = predicate.pointer.as_str();
                let slot = match texts.iter().position(|t| t == text) {
                    Some(slot) => slot,
                    None => {
                        texts.push(text.to_string());
                        texts.len() - 1
                    }
                };
                predicate.pointer.slot = Some(slot);
            }
        }
        let enabled = || rules.iter().enumerate().filter(|(_, r)| r.enabled);
        let any_verb: Vec<usize> = enabled()
            .filter(|(_, r)| r.selector.verbs.is_empty())
            .map(|(i, _)| i)
            .collect();
        // A handful of verbs: a list scans faster than a map hashes.
        let mut verbs: Vec<&String> = enabled().flat_map(|(_, r)| &r.selector.verbs).collect();
        verbs.sort();
        verbs.dedup();
        let by_verb = verbs
            .into_iter()
            .map(|verb| {
                let takers = enabled()
                    .filter(|(_, r)| r.selector.verbs.is_empty() || r.selector.verbs.contains(verb))
                    .map(|(i, _)| i)
                    .collect();
                (verb.clone(), Candidates::new(&rules, takers))
            })
            .collect();
        Self {
            any_verb: Candidates::new(&rules, any_verb),
            by_verb,
            rules,
        }
    }

    /// The rules, in file order (disabled ones included).
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The enabled rules that can take a request with `verb` on `resource`, in file order: their selectors
    /// decide.
    fn candidates(&self, verb: &str, resource: Option<&str>) -> impl Iterator<Item = &Rule> {
        self.by_verb
            .iter()
            .find(|(v, _)| same(v, verb))
            .map_or(&self.any_verb, |(_, rules)| rules)
            .taking(resource)
            .iter()
            .map(|&i| &self.rules[i])
    }
}

/// What the rules say about one event: the ids that matched, in rule-file order, and the highest severity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detections<'a> {
    pub ids: Vec<&'a str>,
    pub severity: Option<Severity>,
}

impl Detections<'_> {
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests;
