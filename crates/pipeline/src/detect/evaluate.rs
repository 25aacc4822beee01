//! Evaluating the rules on one event: selector, then predicates and exceptions, cheapest first.

use super::{
    CodeRange, Detections, Detector, Exception, Glob, HeadField, Match, Pointer, Predicate, Root,
    Rule, Test, same,
};
use crate::policy::resource_matches;
use serde_json::Value;
use std::borrow::Cow;
use std::net::IpAddr;

/// The parts of an event the selectors and exceptions read, borrowed: what the compiled path reads from an
/// event's text without building it, to learn whether any rule could take the event at all.
#[derive(Debug, Default)]
pub(crate) struct Head<'e> {
    pub verb: Cow<'e, str>,
    pub stage: Option<Cow<'e, str>>,
    pub user: Cow<'e, str>,
    /// Who the request acted as (`impersonatedUser`), when it impersonated.
    pub impersonated: Option<Cow<'e, str>>,
    pub user_agent: Cow<'e, str>,
    pub code: Option<u64>,
    /// `None` for a non-resource request (`/healthz`).
    pub object: Option<ObjectRef<'e>>,
}

#[derive(Debug, Default)]
pub(crate) struct ObjectRef<'e> {
    pub api_group: Cow<'e, str>,
    pub resource: Cow<'e, str>,
    pub subresource: Cow<'e, str>,
    pub namespace: Cow<'e, str>,
    pub name: Cow<'e, str>,
}

/// Where predicates read an event's values: the built event, or (on the compiled path) its text, parsed only
/// along the pointers' paths, so a rule that looks into a pod spec does not build the whole event.
pub(crate) trait Values {
    /// The values `pointer` reaches that are not null. `None`: this source cannot tell (the compiled path
    /// then declines the event, and the generic path decides).
    fn reach(&mut self, pointer: &Pointer) -> Option<Vec<Cow<'_, Value>>>;

    /// Whether `pointer` reaches a value that is not null (without building it, where the source can).
    fn exists(&mut self, pointer: &Pointer) -> Option<bool> {
        Some(!self.reach(pointer)?.is_empty())
    }

    /// Whether a value `pointer` reaches equals one of `wanted`; with `spread`, an array it reaches counts by
    /// its elements.
    fn any_equals(&mut self, pointer: &Pointer, wanted: &[Value], spread: bool) -> Option<bool> {
        Some(self.reach(pointer)?.iter().any(|v| match &**v {
            Value::Array(items) if spread => items.iter().any(|i| wanted.contains(i)),
            value => wanted.contains(value),
        }))
    }

    /// The strings `pointer` reaches, and with `spread` the strings in the arrays it reaches (without
    /// building values, where the source can).
    fn strings(&mut self, pointer: &Pointer, spread: bool) -> Option<Vec<Cow<'_, str>>>;

    /// Whether the strings `pointer` reaches (arrays spread) include an IP address and every address among
    /// them is public (strings that are not addresses are skipped).
    fn all_public(&mut self, pointer: &Pointer) -> Option<bool> {
        Some(all_public(
            self.strings(pointer, true)?.iter().map(|s| &**s),
        ))
    }

    /// The groups of the user, or with `impersonated` of the impersonated user (few rules read them).
    fn groups(&mut self, impersonated: bool) -> Option<Vec<Cow<'_, str>>>;

    /// The `authorization.k8s.io/decision` annotation (few rules read it).
    fn decision(&mut self) -> Option<Option<Cow<'_, str>>>;
}

/// A built event as a [`Values`] source.
struct Built<'e>(&'e Value);

impl Values for Built<'_> {
    fn reach(&mut self, pointer: &Pointer) -> Option<Vec<Cow<'_, Value>>> {
        let mut reached = Vec::new();
        pointer.resolve(self.0, &mut reached);
        Some(
            reached
                .into_iter()
                .filter(|v| !v.is_null())
                .map(Cow::Borrowed)
                .collect(),
        )
    }

    fn strings(&mut self, pointer: &Pointer, spread: bool) -> Option<Vec<Cow<'_, str>>> {
        let mut reached = Vec::new();
        pointer.resolve(self.0, &mut reached);
        let mut out = Vec::new();
        for value in reached {
            match value {
                Value::String(s) => out.push(Cow::Borrowed(s.as_str())),
                Value::Array(items) if spread => {
                    out.extend(items.iter().filter_map(Value::as_str).map(Cow::Borrowed))
                }
                _ => {}
            }
        }
        Some(out)
    }

    fn groups(&mut self, impersonated: bool) -> Option<Vec<Cow<'_, str>>> {
        let user = match impersonated {
            true => "impersonatedUser",
            false => "user",
        };
        Some(
            self.0
                .get(user)
                .and_then(|u| u.get("groups"))
                .and_then(Value::as_array)
                .map(|g| {
                    g.iter()
                        .filter_map(Value::as_str)
                        .map(Cow::Borrowed)
                        .collect()
                })
                .unwrap_or_default(),
        )
    }

    fn decision(&mut self) -> Option<Option<Cow<'_, str>>> {
        Some(
            self.0
                .get("annotations")
                .and_then(|a| a.get("authorization.k8s.io/decision"))
                .and_then(Value::as_str)
                .map(Cow::Borrowed),
        )
    }
}

fn text<'e>(v: &'e Value, key: &str) -> Cow<'e, str> {
    Cow::Borrowed(v.get(key).and_then(Value::as_str).unwrap_or(""))
}

impl<'e> Head<'e> {
    pub(crate) fn of(event: &'e Value) -> Self {
        let user = event.get("user").unwrap_or(&Value::Null);
        Self {
            verb: text(event, "verb"),
            stage: event
                .get("stage")
                .and_then(Value::as_str)
                .map(Cow::Borrowed),
            user: text(user, "username"),
            impersonated: event
                .get("impersonatedUser")
                .filter(|u| u.is_object())
                .map(|u| text(u, "username")),
            user_agent: text(event, "userAgent"),
            code: event
                .get("responseStatus")
                .and_then(|s| s.get("code"))
                .and_then(Value::as_u64),
            object: event
                .get("objectRef")
                .filter(|o| o.is_object())
                .map(|o| ObjectRef {
                    api_group: text(o, "apiGroup"),
                    resource: text(o, "resource"),
                    subresource: text(o, "subresource"),
                    namespace: text(o, "namespace"),
                    name: text(o, "name"),
                }),
        }
    }

    fn namespace(&self) -> &str {
        self.object.as_ref().map_or("", |o| &o.namespace)
    }

    /// A string field of the head, `""` when the event has none.
    fn field(&self, field: HeadField) -> &str {
        let object = self.object.as_ref();
        match field {
            HeadField::Verb => &self.verb,
            HeadField::User => &self.user,
            HeadField::UserAgent => &self.user_agent,
            HeadField::ApiGroup => object.map_or("", |o| &o.api_group),
            HeadField::Resource => object.map_or("", |o| &o.resource),
            HeadField::Subresource => object.map_or("", |o| &o.subresource),
            HeadField::Namespace => object.map_or("", |o| &o.namespace),
            HeadField::Name => object.map_or("", |o| &o.name),
        }
    }

    /// The identities behind the request: the authenticated user, and the impersonated one if any.
    fn identities(&self) -> impl Iterator<Item = &str> {
        std::iter::once(&*self.user).chain(self.impersonated.as_deref())
    }

    /// The groups of each identity, read only when a rule asks.
    fn groups(&self, values: &mut impl Values) -> Option<Vec<Vec<String>>> {
        let mut all = Vec::new();
        for impersonated in [false, true] {
            if impersonated && self.impersonated.is_none() {
                break;
            }
            let groups = values.groups(impersonated)?;
            all.push(groups.iter().map(|g| g.to_string()).collect());
        }
        Some(all)
    }
}

impl Detector {
    /// Which enabled rules `event` matches.
    pub fn detect(&self, event: &Value) -> Detections<'_> {
        self.detect_in(&Head::of(event), &mut Built(event))
            .unwrap_or_default()
    }

    /// Which enabled rules match the event with this head, its values read from `values`. Selectors are
    /// tried first: most events (reads, controllers' updates) are taken by none, and read no value at all.
    pub(crate) fn detect_in(
        &self,
        head: &Head<'_>,
        values: &mut impl Values,
    ) -> Option<Detections<'_>> {
        let mut found = Detections::default();
        let resource = head.object.as_ref().map(|o| &*o.resource);
        for rule in self.candidates(&head.verb, resource) {
            if selector_matches(&rule.selector, head, values)? && rule_holds(rule, head, values)? {
                found.ids.push(rule.id.as_str());
                found.severity = found.severity.max(Some(rule.severity));
            }
        }
        Some(found)
    }
}

impl Detector {
    /// The enabled rules whose selector (verbs, resources, …) takes `event`, whatever their predicates and
    /// exceptions then say: a case where such a rule stays quiet tests those.
    pub fn selecting(&self, event: &Value) -> Vec<&str> {
        let head = Head::of(event);
        self.rules
            .iter()
            .filter(|r| {
                r.enabled && selector_matches(&r.selector, &head, &mut Built(event)) == Some(true)
            })
            .map(|r| r.id.as_str())
            .collect()
    }
}

/// A selected rule's predicates and exceptions, in that order, each read only when the ones before it pass.
/// The checks most events fail cheaply come first: exceptions the head answers, then predicates on the
/// event itself, and only then public-address tests, pod specs and groups. The order changes what is read,
/// never the answer (a conjunction).
fn rule_holds(rule: &Rule, head: &Head<'_>, values: &mut impl Values) -> Option<bool> {
    let head_only = |e: &&Exception| e.groups.is_empty() && e.images.is_empty();
    for e in rule.exceptions.iter().filter(head_only) {
        if exception_applies(e, head, values)? {
            return Some(false);
        }
    }
    let any_first = rule.any.iter().all(cheap);
    for p in rule.all.iter().filter(|p| cheap(p)) {
        if !holds(p, head, values)? {
            return Some(false);
        }
    }
    if any_first && !any_holds(&rule.any, head, values)? {
        return Some(false);
    }
    for p in rule.all.iter().filter(|p| !cheap(p)) {
        if !holds(p, head, values)? {
            return Some(false);
        }
    }
    if !any_first && !any_holds(&rule.any, head, values)? {
        return Some(false);
    }
    for p in &rule.none {
        if holds(p, head, values)? {
            return Some(false);
        }
    }
    for e in rule.exceptions.iter().filter(|e| !head_only(e)) {
        if exception_applies(e, head, values)? {
            return Some(false);
        }
    }
    Some(true)
}

/// A predicate on the event's own fields that compares values; not an address test or a walk of pod specs.
fn cheap(p: &Predicate) -> bool {
    !matches!(p.test, Test::PublicIp(_)) && p.pointer.root() == Root::Event
}

/// An empty list holds; otherwise one of its predicates must.
fn any_holds(any: &[Predicate], head: &Head<'_>, values: &mut impl Values) -> Option<bool> {
    if any.is_empty() {
        return Some(true);
    }
    for p in any {
        if holds(p, head, values)? {
            return Some(true);
        }
    }
    Some(false)
}

fn any_glob(globs: &[Glob], s: &str) -> bool {
    globs.iter().any(|g| g.matches(s))
}

fn listed(list: &[String], s: &str) -> bool {
    list.iter().any(|x| same(x, s))
}

/// The head's fields first; the groups and the decision, which only a few rules read, only after those match.
fn selector_matches(m: &Match, v: &Head<'_>, values: &mut impl Values) -> Option<bool> {
    let object_needed = !m.resources.is_empty() || !m.api_groups.is_empty() || !m.names.is_empty();
    if object_needed && v.object.is_none() {
        return Some(false);
    }
    let object = v.object.as_ref();
    let head_matches = (m.verbs.is_empty() || listed(&m.verbs, &v.verb))
        && (m.resources.is_empty()
            || object.is_some_and(|o| {
                m.resources
                    .iter()
                    .any(|spec| resource_matches(spec, &o.resource, &o.subresource))
            }))
        && (m.api_groups.is_empty() || object.is_some_and(|o| listed(&m.api_groups, &o.api_group)))
        && (m.names.is_empty() || object.is_some_and(|o| any_glob(&m.names, &o.name)))
        && (m.namespaces.is_empty() || any_glob(&m.namespaces, v.namespace()))
        && (m.stages.is_empty() || v.stage.as_deref().is_none_or(|s| listed(&m.stages, s)))
        // A selector takes the request if either identity matches it...
        && (m.users.is_empty() || v.identities().any(|user| any_glob(&m.users, user)))
        && (m.codes.is_empty() || v.code.is_some_and(|c| m.codes.iter().any(|r| in_range(*r, c))))
        && (m.user_agents.is_empty() || m.user_agents.iter().any(|p| v.user_agent.starts_with(p.as_str())));
    if !head_matches {
        return Some(false);
    }
    if !m.groups.is_empty()
        && !v
            .groups(values)?
            .iter()
            .any(|groups| groups.iter().any(|g| any_glob(&m.groups, g)))
    {
        return Some(false);
    }
    match m.decision.as_deref() {
        Some(want) => Some(values.decision()?.as_deref() == Some(want)),
        None => Some(true),
    }
}

fn in_range(range: CodeRange, code: u64) -> bool {
    (u64::from(range.min)..=u64::from(range.max)).contains(&code)
}

fn holds(p: &Predicate, head: &Head<'_>, values: &mut impl Values) -> Option<bool> {
    if let Some(answer) = p
        .pointer
        .head
        .and_then(|field| head_holds(&p.test, head.field(field)))
    {
        return Some(answer);
    }
    let any_string = |values: &mut _, ps: &[String], test: fn(&str, &str) -> bool| {
        Some(
            Values::strings(values, &p.pointer, false)?
                .iter()
                .any(|s| ps.iter().any(|p| test(s, p))),
        )
    };
    match &p.test {
        Test::Exists(want) => Some(values.exists(&p.pointer)? == *want),
        Test::Prefix(ps) => any_string(values, ps, |s, p| s.starts_with(p)),
        Test::Contains(ps) => any_string(values, ps, |s, p| s.contains(p)),
        Test::PublicIp(want) => Some(values.all_public(&p.pointer)? == *want),
        Test::Equals(x) => values.any_equals(&p.pointer, std::slice::from_ref(x), false),
        Test::In(xs) => values.any_equals(&p.pointer, xs, false),
        Test::Intersects(xs) => values.any_equals(&p.pointer, xs, true),
    }
}

/// A string test on a field the head has read (`""` when it is missing or not a string), answered without
/// reading the event again. `None` when the head cannot tell: an empty needle or a wanted value that is not
/// a non-empty string, which a missing field and an empty one would answer differently.
fn head_holds(test: &Test, text: &str) -> Option<bool> {
    let needles = |ps: &[String]| ps.iter().all(|p| !p.is_empty()).then_some(());
    let wanted = |xs: &[Value]| {
        xs.iter()
            .all(|x| x.as_str().is_some_and(|s| !s.is_empty()))
            .then_some(())
    };
    match test {
        Test::Prefix(ps) => needles(ps).map(|_| ps.iter().any(|p| text.starts_with(p.as_str()))),
        Test::Contains(ps) => needles(ps).map(|_| ps.iter().any(|p| text.contains(p.as_str()))),
        Test::Equals(x) => wanted(std::slice::from_ref(x)).map(|_| x.as_str() == Some(text)),
        Test::In(xs) => wanted(xs).map(|_| xs.iter().any(|x| x.as_str() == Some(text))),
        Test::Exists(_) | Test::Intersects(_) | Test::PublicIp(_) => None,
    }
}

/// There is an address among `strings`, and every address is public.
pub(crate) fn all_public<'s>(strings: impl Iterator<Item = &'s str>) -> bool {
    let mut any = false;
    for s in strings {
        if let Ok(ip) = s.trim().parse::<IpAddr>() {
            if !is_public(ip) {
                return false;
            }
            any = true;
        }
    }
    any
}

/// Globally routable as far as a cluster is concerned: not private, loopback, link-local, CGNAT
/// (100.64.0.0/10), unspecified or broadcast. Documentation ranges count as public: they stand in for
/// public addresses in examples.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || (first & 0xfe00) == 0xfc00
                    || (first & 0xffc0) == 0xfe80)
            }
        },
    }
}

/// The pod's (or workload's) container images.
fn images(values: &mut impl Values) -> Option<Vec<String>> {
    static IMAGES: std::sync::LazyLock<Pointer> =
        std::sync::LazyLock::new(|| Pointer::parse("{containers}/image").expect("a valid pointer"));
    let images = values.strings(&IMAGES, false)?;
    Some(images.iter().map(|s| s.to_string()).collect())
}

/// `registry:5000/team/app:1.2@sha256:…` → `registry:5000/team/app`.
fn repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(colon) if !image[colon..].contains('/') => &image[..colon],
        _ => image,
    }
}

/// ...but an exception on users or groups must cover every identity, so impersonating a system account
/// does not launder a request.
fn exception_applies(e: &Exception, v: &Head<'_>, values: &mut impl Values) -> Option<bool> {
    let applies = (e.users.is_empty() || v.identities().all(|user| any_glob(&e.users, user)))
        && (e.namespaces.is_empty() || any_glob(&e.namespaces, v.namespace()))
        && (e.names.is_empty()
            || v.object
                .as_ref()
                .is_some_and(|o| any_glob(&e.names, &o.name)))
        && (e.user_agents.is_empty()
            || e.user_agents
                .iter()
                .any(|p| v.user_agent.starts_with(p.as_str())));
    if !applies {
        return Some(false);
    }
    if !e.groups.is_empty()
        && !v
            .groups(values)?
            .iter()
            .all(|groups| groups.iter().any(|g| any_glob(&e.groups, g)))
    {
        return Some(false);
    }
    if e.images.is_empty() {
        return Some(true);
    }
    let images = images(values)?;
    Some(
        !images.is_empty()
            && images.iter().all(|image| {
                e.images
                    .iter()
                    .any(|allowed| allowed == image || allowed == repository(image))
            }),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A string test on a head field gives what reading the event through the pointer gives, for missing,
    /// empty, non-string and escaped values, and for needles the head cannot judge (empty ones).
    #[test]
    fn head_answers_agree_with_reading_the_event() {
        let events = [
            json!({"verb": "get", "userAgent": "kubectl/v1", "user": {"username": "system:serviceaccount:kube-system:x"},
                   "objectRef": {"namespace": "kube-system", "name": "a", "resource": "pods", "subresource": "exec", "apiGroup": ""}}),
            json!({"verb": 5, "user": "not an object", "objectRef": 5}),
            json!({"user": {"username": 5}, "objectRef": {"namespace": "", "name": null}}),
            serde_json::from_str(r#"{"user": {"username": "ké-system:x"}, "objectRef": {"namespace": "kube-system"}}"#).unwrap(),
            json!({}),
        ];
        let tests = [
            Test::Prefix(vec!["system:".into(), "k".into()]),
            Test::Prefix(vec![String::new()]),
            Test::Contains(vec!["system".into()]),
            Test::Contains(vec![String::new()]),
            Test::Equals(json!("kube-system")),
            Test::Equals(json!("")),
            Test::In(vec![json!("get"), json!("pods")]),
            Test::In(vec![json!("get"), json!(5)]),
            Test::Exists(true),
        ];
        let pointers = [
            "/verb",
            "/user/username",
            "/userAgent",
            "/objectRef/apiGroup",
            "/objectRef/resource",
            "/objectRef/subresource",
            "/objectRef/namespace",
            "/objectRef/name",
        ];
        let mut answered = 0;
        for event in &events {
            let head = Head::of(event);
            for pointer in pointers {
                for test in &tests {
                    let mut p = Predicate {
                        pointer: Pointer::parse(pointer).unwrap(),
                        test: test.clone(),
                    };
                    assert!(p.pointer.head.is_some(), "{pointer}");
                    answered += usize::from(
                        head_holds(&p.test, head.field(p.pointer.head.unwrap())).is_some(),
                    );
                    let fast = holds(&p, &head, &mut Built(event));
                    p.pointer.head = None;
                    let read = holds(&p, &head, &mut Built(event));
                    assert_eq!(fast, read, "{pointer} {test:?} on {event}");
                }
            }
        }
        assert!(answered > 100, "{answered}");
    }

    #[test]
    fn repositories_and_public_addresses() {
        assert_eq!(repository("nginx"), "nginx");
        assert_eq!(repository("nginx:1.25"), "nginx");
        assert_eq!(
            repository("registry:5000/team/app:1.2@sha256:ab"),
            "registry:5000/team/app"
        );
        assert_eq!(
            repository("registry:5000/team/app"),
            "registry:5000/team/app"
        );
        for ip in [
            "8.8.8.8",
            "203.0.113.42",
            "2001:4860::8888",
            "::ffff:1.2.3.4",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "10.0.1.5",
            "192.168.99.1",
            "172.16.0.1",
            "127.0.0.1",
            "100.64.1.1",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
