//! JSON pointers (RFC 6901) with two extensions:
//! - a `*` token stands for every element of an array, or every value of an object;
//! - a pointer may start with `{pod}`, every pod spec the request object carries (a Pod's `spec`, a workload's
//!   `spec/template/spec`, a CronJob's `spec/jobTemplate/spec/template/spec`), or `{containers}`, every
//!   container, init container and ephemeral container of those, so one rule covers pods and workloads.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    text: String,
    /// Alternatives: the value set is the union of what each reaches.
    paths: Vec<Vec<Token>>,
}

const POD_SPECS: [&str; 3] = [
    "/requestObject/spec",
    "/requestObject/spec/template/spec",
    "/requestObject/spec/jobTemplate/spec/template/spec",
];
const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Key(String),
    Each,
}

impl Pointer {
    /// `/requestObject/spec/containers/*/securityContext/privileged`; `~1` is `/`, `~0` is `~`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (roots, rest): (Vec<String>, &str) = if let Some(rest) = text.strip_prefix("{pod}") {
            (POD_SPECS.iter().map(|s| s.to_string()).collect(), rest)
        } else if let Some(rest) = text.strip_prefix("{containers}") {
            let roots = POD_SPECS
                .iter()
                .flat_map(|spec| {
                    CONTAINER_LISTS
                        .iter()
                        .map(move |list| format!("{spec}/{list}/*"))
                })
                .collect();
            (roots, rest)
        } else {
            (vec![String::new()], text)
        };
        if !rest.is_empty() && !rest.starts_with('/') {
            return Err(format!(
                "`{text}` must start with `/`, `{{pod}}/` or `{{containers}}/`"
            ));
        }
        if roots.len() == 1 && rest.is_empty() {
            return Err(format!("`{text}` must start with `/`"));
        }
        let tail = tokens(text, rest)?;
        let paths = roots
            .iter()
            .map(|root| {
                let mut path = tokens(text, root)?;
                path.extend(tail.iter().cloned());
                Ok(path)
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            text: text.to_string(),
            paths,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Every value the pointer reaches in `root` (none when a step is missing or has the wrong type).
    pub fn resolve<'v>(&self, root: &'v Value, out: &mut Vec<&'v Value>) {
        for path in &self.paths {
            walk(root, path, out);
        }
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
