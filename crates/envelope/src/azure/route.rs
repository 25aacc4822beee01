//! What decides where a record goes (its category, its cluster's resource id, its time), read from a record
//! its body's parse has already validated.
//!
//! serde, asked for a record's head, validates every byte again, the escaped `properties.log` above all (the
//! audit event as a JSON string, its quotes escaped every few bytes), only to skip it. Here members are
//! skipped by their quotes and brackets alone. Only the usual shape is taken: an object whose keys have no
//! escapes, each wanted member at most once, and each wanted value a string without escapes or `null`, no
//! `records` of its own. Anything else gives `None`, and the caller asks serde, which decides what it is.

use crate::skip::Cursor;

/// The members of a record that route it; `None` for one absent or `null`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Route<'a> {
    pub category: Option<&'a str>,
    pub resource_id: Option<&'a str>,
    pub time: Option<&'a str>,
}

/// The members serde's `Head` reads, in the order of the slots below.
const WANTED: [&[u8]; 6] = [
    b"category",
    b"Category",
    b"resourceId",
    b"ResourceId",
    b"time",
    b"properties",
];

/// `record`'s route, when it has the usual shape (see the module's doc); the record must be valid JSON.
pub(crate) fn route(record: &str) -> Option<Route<'_>> {
    let bytes = record.as_bytes();
    (bytes.first() == Some(&b'{')).then_some(())?;
    let mut at = Cursor::new(bytes);
    // Per wanted member: not seen, seen as `null`, or seen with a string's text.
    let mut seen: [Option<Option<&str>>; 6] = [None; 6];
    at.members(|at, key| {
        let key = &bytes[key];
        let Some(slot) = WANTED.iter().position(|w| *w == key) else {
            // A record holding records of its own is a body: serde's to read.
            return (key != b"records" && key != b"Records")
                .then(|| at.value())
                .flatten()
                .map(drop);
        };
        let value = record.get(at.value()?)?;
        let text = match value {
            _ if slot == WANTED.len() - 1 => Some(""),
            "null" => None,
            literal => {
                let inner = literal.strip_prefix('"')?.strip_suffix('"')?;
                (!inner.contains('\\')).then_some(inner)?;
                Some(inner)
            }
        };
        // A second one: serde refuses duplicate fields.
        seen[slot].replace(text).is_none().then_some(())
    })?;
    at.at_end().then_some(())?;
    let [
        category,
        category_upper,
        resource_id,
        resource_id_upper,
        time,
        _,
    ] = seen.map(Option::flatten);
    Some(Route {
        category: category.or(category_upper),
        resource_id: resource_id.or(resource_id_upper),
        time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Owned = (Option<String>, Option<String>, Option<String>);

    fn owned(route: Route<'_>) -> Owned {
        let own = |s: Option<&str>| s.map(str::to_string);
        (own(route.category), own(route.resource_id), own(route.time))
    }

    /// serde's reading of the same record, as the splitter took it before.
    fn serde_route(record: &str) -> Option<Owned> {
        let head: super::super::Head<'_> = serde_json::from_str(record).ok()?;
        record.starts_with('{').then_some(())?;
        Some(owned(head.route()))
    }

    /// A member of a record: the wanted ones with values of every kind, others, and records of its own.
    fn member() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("category"),
            Just("Category"),
            Just("resourceId"),
            Just("ResourceId"),
            Just("time"),
            Just("properties"),
            Just("records"),
            Just("operationName"),
            Just("cat\\u0065gory"),
        ];
        let value = prop_oneof![
            Just("\"kube-audit\"".to_string()),
            Just("\"/SUBSCRIPTIONS/S/PROVIDERS/X/MANAGEDCLUSTERS/AKS-1\"".to_string()),
            Just("null".to_string()),
            Just("12".to_string()),
            Just("[]".to_string()),
            Just("\"with \\\"escape\\\"\"".to_string()),
            Just("{\"log\":\"{\\\"kind\\\":\\\"Event\\\",\\\"a\\\":\\\"}]\\\\\\\\\\\"}\\n\",\"stream\":\"stdout\"}".to_string()),
            Just("[{\"category\":\"x\"}]".to_string()),
        ];
        (key, value, " ?").prop_map(|(k, v, space)| format!("\"{k}\"{space}:{space}{v}"))
    }

    proptest! {
        /// Whatever this reads, serde reads the same; what it leaves, serde decides. Records built from valid
        /// JSON members (as the body's parse guarantees).
        #[test]
        fn a_located_route_is_serdes(members in prop::collection::vec(member(), 0..8), spaced in any::<bool>()) {
            let gap = if spaced { " " } else { "" };
            let record = format!("{{{gap}{}{gap}}}", members.join(&format!(",{gap}")));
            prop_assert!(serde_json::from_str::<serde_json::Value>(&record).is_ok(), "{}", record);
            if let Some(found) = route(&record) {
                prop_assert_eq!(Some(owned(found)), serde_route(&record), "{}", record);
            }
        }
    }

    /// As the host writes one: members in serde's order (`properties` before `resourceId` and `time`), the
    /// event a JSON string in `properties.log` with escaped strings of its own and brackets inside strings.
    /// Left to serde, the output would not change, only its cost: this is the test that notices.
    #[test]
    fn a_production_shaped_record_is_located_not_left_to_serde() {
        let event = serde_json::json!({
            "kind": "Event", "auditID": "a1", "verb": "create",
            "requestObject": {
                "metadata": {"annotations": {"note": "quoted \"x\" and \\ and ]} {["}},
                "spec": {"containers": vec![serde_json::json!({"args": ["--a=\"b\"", "c\\d"]}); 20]},
            },
            "responseStatus": {"message": "pods \"p\" is forbidden: User \"bob\" cannot"},
        });
        let record = serde_json::json!({
            "category": "kube-audit",
            "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
            "properties": {"containerID": "0123", "log": format!("{event}\n"), "pod": "p", "stream": "stdout"},
            "resourceId": "/SUBSCRIPTIONS/S/PROVIDERS/X/MANAGEDCLUSTERS/AKS-1",
            "time": "2026-04-20T16:29:59.995191417Z",
        })
        .to_string();
        assert!(record.len() > 1000, "{}", record.len());
        let found = route(&record).expect("located");
        assert_eq!(Some(owned(found)), serde_route(&record));
    }

    #[test]
    fn an_aks_record_is_located_and_odd_ones_are_left_to_serde() {
        let record = r#"{"time": "2026-04-20T16:29:59Z", "resourceId": "/R/AKS", "category": "kube-audit", "operationName": "x", "properties": {"log": "{\"kind\":\"Event\"}\n", "stream": "stdout"}}"#;
        assert_eq!(
            route(record),
            Some(Route {
                category: Some("kube-audit"),
                resource_id: Some("/R/AKS"),
                time: Some("2026-04-20T16:29:59Z"),
            })
        );
        assert_eq!(
            route(r#"{"Category":null,"category":"a"}"#).and_then(|r| r.category),
            Some("a")
        );
        for odd in [
            r#"{"category":"a","category":"b"}"#,
            r#"{"category":"k\u0065"}"#,
            r#"{"c\u0061tegory":"a"}"#,
            r#"{"category":1}"#,
            r#"{"records":[]}"#,
            r#"[{"category":"a"}]"#,
            r#"{"category":"a"} x"#,
        ] {
            assert_eq!(route(odd), None, "{odd}");
        }
    }
}
