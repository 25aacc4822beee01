//! Evaluating the rules on one event: selector, then predicates, then exceptions.

use super::{CodeRange, Detections, Detector, Exception, Glob, Match, Predicate, Rule, Test};
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
    pub groups: Vec<Cow<'e, str>>,
    /// Who the request acted as (`impersonatedUser`), when it impersonated.
    pub impersonated: Option<(Cow<'e, str>, Vec<Cow<'e, str>>)>,
    pub user_agent: Cow<'e, str>,
    pub code: Option<u64>,
    pub decision: Option<Cow<'e, str>>,
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

/// An event and its head.
struct View<'e> {
    event: &'e Value,
    head: Head<'e>,
}

fn text<'e>(v: &'e Value, key: &str) -> Cow<'e, str> {
    Cow::Borrowed(v.get(key).and_then(Value::as_str).unwrap_or(""))
}

fn groups(user: &Value) -> Vec<Cow<'_, str>> {
    user.get("groups")
        .and_then(Value::as_array)
        .map(|g| {
            g.iter()
                .filter_map(Value::as_str)
                .map(Cow::Borrowed)
                .collect()
        })
        .unwrap_or_default()
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
            groups: groups(user),
            impersonated: event
                .get("impersonatedUser")
                .filter(|u| u.is_object())
                .map(|u| (text(u, "username"), groups(u))),
            user_agent: text(event, "userAgent"),
            code: event
                .get("responseStatus")
                .and_then(|s| s.get("code"))
                .and_then(Value::as_u64),
            decision: event
                .get("annotations")
                .and_then(|a| a.get("authorization.k8s.io/decision"))
                .and_then(Value::as_str)
                .map(Cow::Borrowed),
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

    /// The identities behind the request: the authenticated user, and the impersonated one if any.
    fn identities(&self) -> impl Iterator<Item = (&str, &[Cow<'e, str>])> {
        std::iter::once((&*self.user, self.groups.as_slice())).chain(
            self.impersonated
                .as_ref()
                .map(|(name, groups)| (&**name, groups.as_slice())),
        )
    }
}

impl Detector {
    /// Which enabled rules `event` matches.
    pub fn detect(&self, event: &Value) -> Detections<'_> {
        let view = View {
            event,
            head: Head::of(event),
        };
        let mut found = Detections::default();
        for rule in self.rules.iter().filter(|r| r.enabled) {
            if rule_matches(rule, &view) {
                found.ids.push(rule.id.as_str());
                found.severity = found.severity.max(Some(rule.severity));
            }
        }
        found
    }
}

impl Detector {
    /// The enabled rules whose selector (verbs, resources, …) takes `event`, whatever their predicates and
    /// exceptions then say: a case where such a rule stays quiet tests those.
    pub fn selecting(&self, event: &Value) -> Vec<&str> {
        let head = Head::of(event);
        self.rules
            .iter()
            .filter(|r| r.enabled && selector_matches(&r.selector, &head))
            .map(|r| r.id.as_str())
            .collect()
    }

    /// Whether any enabled rule's selector takes an event with this head: when none does, the event raises
    /// nothing, and need not be built.
    pub(crate) fn selects(&self, head: &Head<'_>) -> bool {
        self.rules
            .iter()
            .any(|r| r.enabled && selector_matches(&r.selector, head))
    }
}

fn rule_matches(rule: &Rule, view: &View<'_>) -> bool {
    selector_matches(&rule.selector, &view.head)
        && rule.all.iter().all(|p| holds(p, view.event))
        && (rule.any.is_empty() || rule.any.iter().any(|p| holds(p, view.event)))
        && !rule.none.iter().any(|p| holds(p, view.event))
        && !rule.exceptions.iter().any(|e| exception_applies(e, view))
}

fn any_glob(globs: &[Glob], s: &str) -> bool {
    globs.iter().any(|g| g.matches(s))
}

fn listed(list: &[String], s: &str) -> bool {
    list.iter().any(|x| x == s)
}

fn selector_matches(m: &Match, v: &Head<'_>) -> bool {
    let object_needed = !m.resources.is_empty() || !m.api_groups.is_empty() || !m.names.is_empty();
    if object_needed && v.object.is_none() {
        return false;
    }
    let object = v.object.as_ref();
    (m.verbs.is_empty() || listed(&m.verbs, &v.verb))
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
        && (m.users.is_empty() || v.identities().any(|(user, _)| any_glob(&m.users, user)))
        && (m.groups.is_empty()
            || v.identities().any(|(_, groups)| groups.iter().any(|g| any_glob(&m.groups, g))))
        && (m.codes.is_empty() || v.code.is_some_and(|c| m.codes.iter().any(|r| in_range(*r, c))))
        && m.decision.as_deref().is_none_or(|d| v.decision.as_deref() == Some(d))
        && (m.user_agents.is_empty() || m.user_agents.iter().any(|p| v.user_agent.starts_with(p.as_str())))
}

fn in_range(range: CodeRange, code: u64) -> bool {
    (u64::from(range.min)..=u64::from(range.max)).contains(&code)
}

fn holds(p: &Predicate, event: &Value) -> bool {
    let mut reached = Vec::new();
    p.pointer.resolve(event, &mut reached);
    reached.retain(|v| !v.is_null());
    match &p.test {
        Test::Exists(want) => reached.is_empty() != *want,
        Test::Equals(x) => reached.contains(&x),
        Test::In(xs) => reached.iter().any(|v| xs.contains(v)),
        Test::Prefix(ps) => strs(&reached).any(|s| ps.iter().any(|p| s.starts_with(p.as_str()))),
        Test::Contains(ps) => strs(&reached).any(|s| ps.iter().any(|p| s.contains(p.as_str()))),
        Test::Intersects(xs) => reached.iter().any(|v| match v {
            Value::Array(items) => items.iter().any(|i| xs.contains(i)),
            scalar => xs.contains(scalar),
        }),
        Test::PublicIp(want) => {
            let ips: Vec<IpAddr> = reached
                .iter()
                .flat_map(|v| match v {
                    Value::Array(items) => items.iter().collect::<Vec<_>>(),
                    one => vec![*one],
                })
                .filter_map(|v| v.as_str()?.trim().parse().ok())
                .collect();
            let public = !ips.is_empty() && ips.iter().all(|ip| is_public(*ip));
            public == *want
        }
    }
}

fn strs<'v>(values: &'v [&'v Value]) -> impl Iterator<Item = &'v str> {
    values.iter().filter_map(|v| v.as_str())
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

fn images(event: &Value) -> Vec<&str> {
    static IMAGES: std::sync::LazyLock<super::Pointer> = std::sync::LazyLock::new(|| {
        super::Pointer::parse("{containers}/image").expect("a valid pointer")
    });
    let mut reached = Vec::new();
    IMAGES.resolve(event, &mut reached);
    reached.iter().filter_map(|v| v.as_str()).collect()
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
fn exception_applies(e: &Exception, view: &View<'_>) -> bool {
    let v = &view.head;
    (e.users.is_empty() || v.identities().all(|(user, _)| any_glob(&e.users, user)))
        && (e.groups.is_empty()
            || v.identities()
                .all(|(_, groups)| groups.iter().any(|g| any_glob(&e.groups, g))))
        && (e.namespaces.is_empty() || any_glob(&e.namespaces, v.namespace()))
        && (e.names.is_empty()
            || v.object
                .as_ref()
                .is_some_and(|o| any_glob(&e.names, &o.name)))
        && (e.user_agents.is_empty()
            || e.user_agents
                .iter()
                .any(|p| v.user_agent.starts_with(p.as_str())))
        && (e.images.is_empty() || {
            let images = images(view.event);
            !images.is_empty()
                && images.iter().all(|image| {
                    e.images
                        .iter()
                        .any(|allowed| allowed == image || allowed == repository(image))
                })
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
