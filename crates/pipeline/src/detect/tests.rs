#![allow(clippy::unwrap_used)]

use super::*;
use serde_json::json;

fn refused(text: &str) -> String {
    Detector::parse(text).unwrap_err().to_string()
}

#[test]
fn builtin_set_loads_with_the_ids_other_tooling_keys_on() {
    let detector = Detector::builtin();
    for id in [
        "pod-exec",
        "pod-attach",
        "pod-portforward",
        "ephemeral-container",
        "privileged-pod",
        "host-network-pod",
        "host-pid-pod",
        "host-ipc-pod",
        "sensitive-mount-pod",
        "cluster-admin-binding",
        "wildcard-role",
        "anonymous-allowed",
        "system-role-modified",
        "serviceaccount-token-created",
        "secrets-listed-all-namespaces",
        "nodeport-service",
    ] {
        assert!(
            detector.rules().iter().any(|r| r.id == id && r.enabled),
            "{id} missing"
        );
    }
}

#[test]
fn bad_rules_are_refused_naming_the_rule_and_field() {
    let cases = [
        (
            "rules: [{id: x, title: t, severity: urgent}]",
            "rules[0] (x): field `severity`",
        ),
        (
            "rules: [{id: Pod_Exec, title: t, severity: low}]",
            "field `id`: must be kebab-case",
        ),
        (
            "rules: [{id: x, severity: low}]",
            "rules[0] (x): field `title`",
        ),
        (
            "rules: [{id: off, title: t, severity: low}]",
            "field `id`: reads as `false`, not text (YAML takes yes/no/on/off as booleans): quote it",
        ),
        (
            "rules: [{id: x, title: 42, severity: low}]",
            "field `title`: reads as `42`, not text",
        ),
        (
            "rules: [{id: x, title: t, severity: low, match: {verb: [get]}}]",
            "field `match.verb`: unknown field",
        ),
        (
            "rules: [{id: x, title: t, severity: low, match: {stages: [Done]}}]",
            "field `match.stages`: `Done` is not one of",
        ),
        (
            "rules: [{id: x, title: t, severity: low, match: {codes: [\"500-400\"]}}]",
            "field `match.codes`",
        ),
        (
            "rules: [{id: x, title: t, severity: low, where: [{pointer: spec, exists: true}]}]",
            "field `where[0].pointer`",
        ),
        (
            "rules: [{id: x, title: t, severity: low, where: [{pointer: /a, exists: true, equals: 1}]}]",
            "field `where[0]`: needs exactly one test",
        ),
        (
            "rules: [{id: x, title: t, severity: low, any: [{pointer: /a, prefixes: [b]}]}]",
            "field `any[0].prefixes`: unknown field",
        ),
        (
            "rules: [{id: x, title: t, severity: low, mitre: ATT-1}]",
            "field `mitre`",
        ),
        (
            "rules: [{id: x, title: t, severity: low}, {id: x, title: u, severity: low}]",
            "rules[1] (x): field `id`: used twice",
        ),
        (
            "rules: [{id: x, title: t, severity: low, except: [{}]}]",
            "field `except[0]`",
        ),
        ("rules: {id: x}", "field `rules`"),
        ("rules: [", "not valid YAML"),
    ];
    for (text, expected) in cases {
        let error = refused(text);
        assert!(error.contains(expected), "{text}: {error}");
    }
}

fn rule_file(body: &str) -> Detector {
    Detector::parse(body).unwrap()
}

fn ids(detector: &Detector, event: &serde_json::Value) -> Vec<String> {
    detector
        .detect(event)
        .ids
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn selector_fields_each_narrow_the_match() {
    let d = rule_file(
        r#"
rules:
  - id: r
    title: t
    severity: low
    match:
      verbs: [list]
      resources: [secrets]
      namespaces: [""]
      users: ["alice*"]
      groups: [devs]
      codes: ["200-299"]
      decision: allow
      userAgents: [kubectl/]
"#,
    );
    let base = json!({"verb": "list", "stage": "ResponseComplete",
        "user": {"username": "alice@example.com", "groups": ["devs"]},
        "objectRef": {"resource": "secrets"}, "responseStatus": {"code": 200},
        "annotations": {"authorization.k8s.io/decision": "allow"}, "userAgent": "kubectl/v1.30"});
    assert_eq!(ids(&d, &base), ["r"]);
    for (pointer, value) in [
        ("/verb", json!("get")),
        ("/objectRef/resource", json!("configmaps")),
        ("/objectRef/namespace", json!("default")),
        ("/user/username", json!("bob")),
        ("/user/groups", json!(["ops"])),
        ("/responseStatus/code", json!(403)),
        (
            "/annotations/authorization.k8s.io~1decision",
            json!("forbid"),
        ),
        ("/userAgent", json!("curl/8")),
    ] {
        let mut event = base.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let key = key.replace("~1", "/");
        event.pointer_mut(parent).unwrap()[key] = value;
        assert!(ids(&d, &event).is_empty(), "{pointer} should narrow");
    }
}

#[test]
fn predicates_exceptions_and_severity() {
    let d = rule_file(
        r#"
rules:
  - id: priv
    title: t
    severity: high
    where: [{pointer: "{containers}/securityContext/privileged", equals: true}]
    except: [{images: [nginx]}, {users: [ops], namespaces: [infra]}]
  - id: caps
    title: t
    severity: medium
    where: [{pointer: "{containers}/securityContext/capabilities/add", intersects: [SYS_ADMIN]}]
  - id: disabled
    title: t
    severity: critical
    enabled: false
"#,
    );
    let pod = |images: &[&str], user: &str, ns: &str| {
        let containers: Vec<_> = images
            .iter()
            .enumerate()
            .map(|(i, image)| {
                json!({"image": image, "securityContext": {"privileged": i == 0,
                "capabilities": {"add": ["SYS_ADMIN"]}}})
            })
            .collect();
        json!({"user": {"username": user}, "objectRef": {"resource": "pods", "namespace": ns},
               "requestObject": {"spec": {"containers": containers}}})
    };
    let found = d.detect(&pod(&["evil:1"], "bob", "default"));
    assert_eq!(found.ids, ["priv", "caps"]);
    assert_eq!(found.severity, Some(Severity::High));
    // Trusted image: excepted; but a trusted image next to an untrusted one is not.
    assert_eq!(ids(&d, &pod(&["nginx:1.25"], "bob", "default")), ["caps"]);
    assert_eq!(
        ids(&d, &pod(&["nginx:1.25", "evil"], "bob", "default")),
        ["priv", "caps"]
    );
    // An entry applies only when all its fields match.
    assert_eq!(ids(&d, &pod(&["evil"], "ops", "infra")), ["caps"]);
    assert_eq!(ids(&d, &pod(&["evil"], "ops", "default")), ["priv", "caps"]);
    assert!(d.detect(&json!({"verb": "get"})).is_empty());
}

#[test]
fn an_operator_file_extends_or_replaces_the_builtin_set() {
    let extended = Detector::builtin()
        .with_file(
            r#"
extends: builtin
exceptions:
  privileged-pod: [{images: [registry.example.com/cni]}]
disable: [pod-exec]
enable: [disallowed-user]
rules:
  - {id: my-rule, title: Mine, severity: info, match: {verbs: [escalate]}}
"#,
        )
        .unwrap();
    let rule = |id: &str| extended.rules().iter().find(|r| r.id == id).unwrap();
    assert!(!rule("pod-exec").enabled);
    assert!(rule("disallowed-user").enabled);
    assert!(rule("my-rule").enabled);
    assert!(
        rule("privileged-pod")
            .exceptions
            .iter()
            .any(|e| e.images == ["registry.example.com/cni"])
    );

    let replaced = Detector::builtin()
        .with_file("rules: [{id: only, title: t, severity: low}]")
        .unwrap();
    assert_eq!(replaced.rules().len(), 1);

    let error = Detector::builtin()
        .with_file("extends: builtin\ndisable: [no-such-rule]")
        .unwrap_err()
        .to_string();
    assert!(error.contains("no rule `no-such-rule`"), "{error}");
    let error = Detector::builtin()
        .with_file("extends: builtin\nexceptions: {pod-exec: [{user: [x]}]}")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("exceptions.pod-exec") && error.contains("`[0].user`"),
        "{error}"
    );
}

#[test]
fn public_ip_needs_every_parsable_address_public() {
    let d = rule_file(
        "rules: [{id: p, title: t, severity: low, where: [{pointer: /sourceIPs, publicIp: true}]}]",
    );
    let with = |ips: serde_json::Value| ids(&d, &json!({"sourceIPs": ips}));
    assert_eq!(with(json!(["1.2.3.4"])), ["p"]);
    assert!(with(json!(["10.0.1.5", "54.212.83.236"])).is_empty());
    assert!(with(json!(["not-an-ip", "10.0.1.5"])).is_empty());
    assert!(with(json!([])).is_empty());
    assert_eq!(with(json!(["not-an-ip", "8.8.8.8"])), ["p"]);
}

#[test]
fn impersonating_a_system_account_does_not_launder_a_request() {
    let d = rule_file(
        r#"
rules:
  - id: r
    title: t
    severity: high
    match: {users: [bob]}
    except: [{users: ["system:*"]}]
"#,
    );
    let as_bob =
        json!({"user": {"username": "system:admin"}, "impersonatedUser": {"username": "bob"}});
    assert_eq!(
        ids(&d, &as_bob),
        ["r"],
        "the selector sees the impersonated user"
    );
    let bob_as_system = json!({"user": {"username": "bob"},
        "impersonatedUser": {"username": "system:serviceaccount:kube-system:x"}});
    assert_eq!(
        ids(&d, &bob_as_system),
        ["r"],
        "the exception must cover both identities"
    );
    assert!(ids(&d, &json!({"user": {"username": "system:x"}})).is_empty());
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// JSON shaped like audit events: the keys rules read, with values of any type, nested.
    fn audit_like() -> impl Strategy<Value = serde_json::Value> {
        let key = prop::sample::select(vec![
            "verb",
            "stage",
            "user",
            "username",
            "groups",
            "impersonatedUser",
            "objectRef",
            "resource",
            "subresource",
            "namespace",
            "name",
            "responseStatus",
            "code",
            "annotations",
            "authorization.k8s.io/decision",
            "requestObject",
            "spec",
            "containers",
            "template",
            "securityContext",
            "privileged",
            "hostPID",
            "volumes",
            "hostPath",
            "path",
            "sourceIPs",
            "requestURI",
            "rules",
            "verbs",
            "resources",
            "roleRef",
            "data",
            "image",
            "capabilities",
            "add",
            "tls",
        ]);
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            prop::sample::select(vec![
                "create",
                "get",
                "pods",
                "exec",
                "kube-system",
                "system:anonymous",
                "allow",
                "ResponseComplete",
                "ResponseStarted",
                "*",
                "8.8.8.8",
                "10.0.0.1",
                "nginx",
                "/proc",
                "cluster-admin",
                "NodePort",
                "",
                "ünï",
                "system:node:x",
            ])
            .prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 64, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map(key.clone(), inner, 0..6).prop_map(|m| {
                    serde_json::Value::Object(
                        m.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
                    )
                }),
            ]
        })
    }

    /// The resources the built-in rules name (their first segments, and whole specs), and some they do not.
    fn resources() -> Vec<&'static str> {
        static BUILTIN: std::sync::LazyLock<Detector> = std::sync::LazyLock::new(Detector::builtin);
        let mut out: Vec<&'static str> = BUILTIN
            .rules()
            .iter()
            .flat_map(|r| &r.selector.resources)
            .flat_map(|spec| [spec.as_str(), resource_key(spec)])
            .chain(["", "*", "widgets", "pods/exec"])
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    proptest! {
        /// Any event shape: evaluation never panics, ids are enabled rules in file order, and the
        /// severity is theirs.
        #[test]
        fn any_event_gives_consistent_detections(event in audit_like()) {
            let detector = Detector::builtin();
            let found = detector.detect(&event);
            let enabled: Vec<&str> = detector.rules().iter().filter(|r| r.enabled).map(|r| r.id.as_str()).collect();
            let positions: Vec<usize> = found.ids.iter()
                .map(|id| enabled.iter().position(|e| e == id).expect("an enabled rule"))
                .collect();
            prop_assert!(positions.windows(2).all(|w| w[0] < w[1]));
            let highest = found.ids.iter()
                .map(|id| detector.rules().iter().find(|r| r.id == *id).map(|r| r.severity))
                .max()
                .flatten();
            prop_assert_eq!(found.severity, highest);
            // A rule that fires selects the event.
            let selecting = detector.selecting(&event);
            prop_assert!(found.ids.iter().all(|id| selecting.contains(id)));
        }

        /// A resource spec takes only resources whose first segment is its own, unless its own is `*`: what
        /// the index by resource assumes.
        #[test]
        fn a_spec_takes_only_resources_of_its_key(
            spec in "[ab*/]{0,4}",
            resource in "[ab*/]{0,3}",
            subresource in "[ab*/]{0,2}",
        ) {
            if crate::policy::resource_matches(&spec, &resource, &subresource) {
                let key = resource_key(&spec);
                prop_assert!(key == "*" || key == resource_key(&resource), "{spec} {resource} {subresource}");
            }
        }

        /// Every rule whose selector takes an event is among the candidates the index gives for its verb and
        /// resource: the index only skips rules that could not match.
        #[test]
        fn the_index_keeps_every_rule_that_selects_the_event(
            verb in prop::sample::select(vec!["create", "update", "patch", "get", "list", "watch", "delete", "deletecollection", "proxy", ""]),
            resource in prop::sample::select(resources()),
            subresource in prop::sample::select(vec!["", "exec", "attach", "portforward", "ephemeralcontainers", "token", "scale", "status", "proxy", "x"]),
            api_group in prop::sample::select(vec!["", "rbac.authorization.k8s.io", "apps", "batch", "admissionregistration.k8s.io", "certificates.k8s.io", "networking.k8s.io"]),
            namespace in prop::sample::select(vec!["", "default", "kube-system", "kube-public"]),
            user in prop::sample::select(vec!["alice", "system:anonymous", "system:serviceaccount:kube-system:x", "system:node:n1", "system:kube-controller-manager"]),
            code in prop::sample::select(vec![200u16, 201, 403, 404, 500]),
            has_object in any::<bool>(),
        ) {
            let mut event = json!({
                "kind": "Event", "verb": verb, "stage": "ResponseComplete", "user": {"username": user, "groups": ["system:authenticated"]},
                "sourceIPs": ["8.8.8.8"], "responseStatus": {"code": code},
                "annotations": {"authorization.k8s.io/decision": "allow"},
            });
            if has_object {
                event["objectRef"] = json!({"resource": resource, "subresource": subresource, "apiGroup": api_group, "namespace": namespace, "name": "cluster-admin"});
            }
            let detector = Detector::builtin();
            let candidates: Vec<&str> = detector
                .candidates(verb, has_object.then_some(resource))
                .map(|r| r.id.as_str())
                .collect();
            for id in detector.selecting(&event) {
                prop_assert!(candidates.contains(&id), "{id} selects {event} but is no candidate");
            }
        }

        /// Any text as a pointer: parsed or refused, never a panic.
        #[test]
        fn any_pointer_text_parses_or_is_refused(text in ".{0,40}") {
            if let Ok(p) = Pointer::parse(&text) {
                let mut out = Vec::new();
                p.resolve(&json!({"a": [1, {"b": 2}]}), &mut out);
            }
        }
    }
}

/// `templates/site24x7/queries.md` gives a query for every built-in rule, by id, and the seed query.
#[test]
fn every_rule_has_a_site24x7_query() {
    let queries = include_str!("../../../../templates/site24x7/queries.md");
    for rule in Detector::builtin().rules() {
        let query = format!("detections CONTAINS \"{}\"", rule.id);
        assert!(queries.contains(&query), "no query for {}", rule.id);
    }
    assert!(queries.contains("responsestatus_code=403 and verb=\"list\" groupby username"));
}

proptest::proptest! {
    /// A glob answers as its definition reads (a trailing `*` makes a prefix, anything else is exact), for any
    /// pattern and name: multi-byte characters included, where a prefix's length can fall inside a character.
    #[test]
    fn a_glob_matches_as_its_definition_reads(
        pattern in "(system|é|ü|[a-c:]){0,4}\\*?",
        name in "(system|é|ü|[a-c:]){0,5}",
    ) {
        let expected = match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == pattern,
        };
        proptest::prop_assert_eq!(Glob::new(&pattern).matches(&name), expected);
    }
}

#[test]
fn globs_exact_prefix_and_anything() {
    let cases = [
        ("system:*", "system:serviceaccount:kube-system:x", true),
        ("system:*", "systemd", false),
        ("admin", "admin", true),
        ("admin", "admins", false),
        ("admin", "bdmin", false),
        ("*", "", true),
        ("", "", true),
        ("é*", "e\u{301}", false),
        ("\u{e9}x*", "\u{e9}", false),
    ];
    for (pattern, name, expected) in cases {
        assert_eq!(
            Glob::new(pattern).matches(name),
            expected,
            "{pattern} {name}"
        );
    }
}
