//! JSON pointers (RFC 6901) with two extensions:
//! - a `*` token stands for every element of an array, or every value of an object;
//! - a pointer may start with `{pod}`, every pod spec the request object carries (a Pod's `spec`, a workload's
//!   `spec/template/spec`, a CronJob's `spec/jobTemplate/spec/template/spec`), or `{containers}`, every
//!   container, init container and ephemeral container of those, so one rule covers pods and workloads.

use serde_json::Value;
use std::sync::LazyLock;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    text: String,
    root: Root,
    /// The path from each of the root's values.
    tail: Vec<Token>,
    /// The same number for every pointer of one rule set with this text: what a reader may remember the
    /// pointer's values by, within one event (rules share pointers: `/sourceIPs`, `{containers}/image`).
    pub(crate) slot: Option<usize>,
    /// The head field this pointer reads, when it reads one (`/objectRef/namespace`): string tests on it
    /// are answered from the head.
    pub(crate) head: Option<HeadField>,
}

/// A string field of [`super::Head`] that a pointer can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadField {
    Verb,
    User,
    UserAgent,
    ApiGroup,
    Resource,
    Subresource,
    Namespace,
    Name,
}

impl HeadField {
    fn of(pointer: &str) -> Option<Self> {
        Some(match pointer {
            "/verb" => Self::Verb,
            "/user/username" => Self::User,
            "/userAgent" => Self::UserAgent,
            "/objectRef/apiGroup" => Self::ApiGroup,
            "/objectRef/resource" => Self::Resource,
            "/objectRef/subresource" => Self::Subresource,
            "/objectRef/namespace" => Self::Namespace,
            "/objectRef/name" => Self::Name,
            _ => return None,
        })
    }
}

/// Where a pointer starts: the event, or each pod spec, or each container of those (the same few objects for
/// every rule that looks into a pod, so a reader may find them once per event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Root {
    Event,
    Pods,
    Containers,
}

const POD_SPECS: [&str; 3] = [
    "/requestObject/spec",
    "/requestObject/spec/template/spec",
    "/requestObject/spec/jobTemplate/spec/template/spec",
];
const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    Key(String),
    Each,
}

impl Pointer {
    /// `/requestObject/spec/containers/*/securityContext/privileged`; `~1` is `/`, `~0` is `~`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (root, rest) = if let Some(rest) = text.strip_prefix("{pod}") {
            (Root::Pods, rest)
        } else if let Some(rest) = text.strip_prefix("{containers}") {
            (Root::Containers, rest)
        } else {
            (Root::Event, text)
        };
        if !rest.is_empty() && !rest.starts_with('/') {
            return Err(format!(
                "`{text}` must start with `/`, `{{pod}}/` or `{{containers}}/`"
            ));
        }
        if root == Root::Event && rest.is_empty() {
            return Err(format!("`{text}` must start with `/`"));
        }
        Ok(Self {
            text: text.to_string(),
            root,
            tail: tokens(text, rest)?,
            slot: None,
            head: HeadField::of(text),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub(crate) fn root(&self) -> Root {
        self.root
    }

    /// The path from each of the root's values.
    pub(crate) fn tail(&self) -> &[Token] {
        &self.tail
    }

    /// Every value the pointer reaches in `root` (none when a step is missing or has the wrong type).
    pub fn resolve<'v>(&self, event: &'v Value, out: &mut Vec<&'v Value>) {
        for start in starts(self.root, event) {
            walk(start, &self.tail, out);
        }
    }
}

/// The paths from the event to each pod spec it may carry.
pub(crate) static POD_SPEC_PATHS: LazyLock<Vec<Vec<Token>>> = LazyLock::new(|| {
    POD_SPECS
        .iter()
        .map(|path| tokens(path, path).expect("valid built-in paths"))
        .collect()
});

/// The paths from a pod spec to each of its containers.
pub(crate) static CONTAINER_PATHS: LazyLock<Vec<Vec<Token>>> = LazyLock::new(|| {
    CONTAINER_LISTS
        .iter()
        .map(|list| vec![Token::Key(list.to_string()), Token::Each])
        .collect()
});

/// The values a pointer with this root starts from.
fn starts(root: Root, event: &Value) -> Vec<&Value> {
    fn below<'v>(from: Vec<&'v Value>, paths: &[Vec<Token>]) -> Vec<&'v Value> {
        let mut out = Vec::new();
        for value in from {
            for path in paths {
                walk(value, path, &mut out);
            }
        }
        out
    }
    match root {
        Root::Event => vec![event],
        Root::Pods => below(vec![event], &POD_SPEC_PATHS),
        Root::Containers => below(below(vec![event], &POD_SPEC_PATHS), &CONTAINER_PATHS),
    }
}

/// The tokens of `/a/b~1c` (empty for ""); `whole` names the pointer in errors.
fn tokens(whole: &str, text: &str) -> Result<Vec<Token>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let rest = text
        .strip_prefix('/')
        .ok_or_else(|| format!("`{whole}` must start with `/`"))?;
    let mut tokens = Vec::new();
    for raw in rest.split('/') {
        if raw == "*" {
            tokens.push(Token::Each);
            continue;
        }
        let mut key = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c != '~' {
                key.push(c);
                continue;
            }
            match chars.next() {
                Some('0') => key.push('~'),
                Some('1') => key.push('/'),
                _ => return Err(format!("`{whole}`: `~` must be followed by 0 or 1")),
            }
        }
        tokens.push(Token::Key(key));
    }
    Ok(tokens)
}

fn walk<'v>(value: &'v Value, tokens: &[Token], out: &mut Vec<&'v Value>) {
    let Some((first, rest)) = tokens.split_first() else {
        out.push(value);
        return;
    };
    match (first, value) {
        (Token::Each, Value::Array(items)) => items.iter().for_each(|v| walk(v, rest, out)),
        (Token::Each, Value::Object(map)) => map.values().for_each(|v| walk(v, rest, out)),
        (Token::Key(key), Value::Object(map)) => {
            if let Some(v) = map.get(key) {
                walk(v, rest, out)
            }
        }
        (Token::Key(key), Value::Array(items)) => {
            if let Some(v) = key.parse::<usize>().ok().and_then(|i| items.get(i)) {
                walk(v, rest, out)
            }
        }
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn all(p: &str, v: &Value) -> Vec<Value> {
        let mut out = Vec::new();
        Pointer::parse(p).unwrap().resolve(v, &mut out);
        out.into_iter().cloned().collect()
    }

    #[test]
    fn star_reaches_every_element_and_escapes_decode() {
        let v = json!({"spec": {"containers": [{"image": "a"}, {"name": "x"}, {"image": "b"}]},
                       "annotations": {"authorization.k8s.io/decision": "allow"}, "a/~b": 1});
        assert_eq!(
            all("/spec/containers/*/image", &v),
            vec![json!("a"), json!("b")]
        );
        assert_eq!(all("/spec/containers/1/name", &v), vec![json!("x")]);
        assert_eq!(
            all("/annotations/authorization.k8s.io~1decision", &v),
            vec![json!("allow")]
        );
        assert_eq!(all("/a~1~0b", &v), vec![json!(1)]);
        assert!(all("/spec/containers/*/image/deeper", &v).is_empty());
        assert!(all("/missing/*", &v).is_empty());
    }

    #[test]
    fn bad_pointers_are_refused() {
        assert!(Pointer::parse("spec").is_err());
        assert!(Pointer::parse("/a~2").is_err());
        assert!(Pointer::parse("/a~").is_err());
        assert!(Pointer::parse("{pod}hostNetwork").is_err());
        assert!(Pointer::parse("").is_err());
    }

    #[test]
    fn pod_and_container_roots_cover_pods_and_workloads() {
        let pod = json!({"requestObject": {"spec": {"hostPID": true,
            "containers": [{"image": "a"}], "initContainers": [{"image": "i"}]}}});
        let deployment = json!({"requestObject": {"spec": {"template": {"spec": {"hostPID": true,
            "containers": [{"image": "b"}]}}}}});
        let cronjob = json!({"requestObject": {"spec": {"jobTemplate": {"spec": {"template": {"spec": {
            "ephemeralContainers": [{"image": "c"}]}}}}}}});
        assert_eq!(all("{pod}/hostPID", &pod), vec![json!(true)]);
        assert_eq!(all("{pod}/hostPID", &deployment), vec![json!(true)]);
        assert_eq!(
            all("{containers}/image", &pod),
            vec![json!("a"), json!("i")]
        );
        assert_eq!(all("{containers}/image", &deployment), vec![json!("b")]);
        assert_eq!(all("{containers}/image", &cronjob), vec![json!("c")]);
        assert_eq!(all("{containers}", &pod).len(), 2);
    }
}
