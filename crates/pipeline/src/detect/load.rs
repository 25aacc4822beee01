//! Loading a rule file: YAML or JSON, validated field by field. Unknown fields are errors: a typo in a
//! selector would silently widen or narrow a security rule.
//!
//! An operator's file either replaces the built-in set, or says `extends: builtin` and then adds rules
//! (a rule with a built-in id replaces it), adds `exceptions` per rule id, and `enable`s or `disable`s rules.

use super::{
    CodeRange, DetectError, Detector, Exception, Glob, Match, Pointer, Predicate, Rule, Severity,
    Test,
};
use serde_json::{Map, Value};

const STAGES: [&str; 4] = [
    "RequestReceived",
    "ResponseStarted",
    "ResponseComplete",
    "Panic",
];

/// Where in the file a problem is.
#[derive(Clone)]
struct At(String);

impl At {
    fn err(&self, field: &str, reason: impl Into<String>) -> DetectError {
        DetectError::Invalid {
            rule: self.0.clone(),
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

fn rule_mut<'r>(rules: &'r mut [Rule], id: &str, at: &At) -> Result<&'r mut Rule, DetectError> {
    rules
        .iter_mut()
        .find(|r| r.id == id)
        .ok_or_else(|| at.err("id", format!("no rule `{id}`")))
}

fn parse_text(text: &str) -> Result<Map<String, Value>, DetectError> {
    let value: Value =
        serde_saphyr::from_str(text).map_err(|e| DetectError::Syntax(e.to_string()))?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(At("(file)".into()).err("(root)", "must be a mapping")),
    }
}

impl Detector {
    /// The built-in rule set.
    pub fn builtin() -> Self {
        Self::parse(super::BUILTIN_RULES).expect("the built-in rule set is valid (tested)")
    }

    /// A complete rule set (a file without `extends`).
    pub fn parse(text: &str) -> Result<Self, DetectError> {
        let file = parse_text(text)?;
        let at = At("(file)".into());
        known_fields(&file, &at, &["rules"])?;
        let rules = rules(file.get("rules"), &at)?;
        let detector = Self::new(rules);
        detector.check_unique()?;
        Ok(detector)
    }

    /// An operator's file: with `extends: builtin` it amends `self`; without, it replaces it.
    pub fn with_file(self, text: &str) -> Result<Self, DetectError> {
        let mut set = self.rules;
        let file = parse_text(text)?;
        let at = At("(file)".into());
        match file.get("extends") {
            None => return Self::parse(text),
            Some(Value::String(s)) if s == "builtin" => {}
            Some(_) => return Err(at.err("extends", "the only value is `builtin`")),
        }
        known_fields(
            &file,
            &at,
            &["extends", "rules", "exceptions", "enable", "disable"],
        )?;
        if file.get("rules").is_some_and(|r| !r.is_null()) {
            for rule in rules(file.get("rules"), &at)? {
                match set.iter_mut().find(|r| r.id == rule.id) {
                    Some(existing) => *existing = rule,
                    None => set.push(rule),
                }
            }
        }
        if let Some(exceptions) = file.get("exceptions") {
            let map = exceptions
                .as_object()
                .ok_or_else(|| at.err("exceptions", "must map rule ids to lists of entries"))?;
            for (id, entries) in map {
                let at = At(format!("exceptions.{id}"));
                let parsed = exception_list(Some(entries), &at, "")?;
                rule_mut(&mut set, id, &at)?.exceptions.extend(parsed);
            }
        }
        for (field, enabled) in [("enable", true), ("disable", false)] {
            for id in strings(file.get(field), &at, field)? {
                rule_mut(&mut set, &id, &at)?.enabled = enabled;
            }
        }
        let detector = Self::new(set);
        detector.check_unique()?;
        Ok(detector)
    }

    fn check_unique(&self) -> Result<(), DetectError> {
        let mut seen = std::collections::BTreeSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if !seen.insert(rule.id.as_str()) {
                return Err(At(format!("rules[{i}] ({})", rule.id)).err("id", "used twice"));
            }
        }
        Ok(())
    }
}

fn known_fields(map: &Map<String, Value>, at: &At, known: &[&str]) -> Result<(), DetectError> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(at.err(
            unknown,
            format!("unknown field (known: {})", known.join(", ")),
        )),
        None => Ok(()),
    }
}

/// [`known_fields`] of a mapping inside the field `parent`, which the error names (`match.verbz`).
fn known_fields_under(
    map: &Map<String, Value>,
    at: &At,
    parent: &str,
    known: &[&str],
) -> Result<(), DetectError> {
    known_fields(map, at, known).map_err(|e| match e {
        DetectError::Invalid {
            rule,
            field,
            reason,
        } => DetectError::Invalid {
            rule,
            field: format!("{parent}.{field}"),
            reason,
        },
        other => other,
    })
}

fn rules(value: Option<&Value>, at: &At) -> Result<Vec<Rule>, DetectError> {
    let list = value
        .and_then(Value::as_array)
        .ok_or_else(|| at.err("rules", "must be a list of rules"))?;
    list.iter()
        .enumerate()
        .map(|(i, r)| {
            let id = r.get("id").and_then(Value::as_str).unwrap_or("?");
            rule(r, &At(format!("rules[{i}] ({id})")))
        })
        .collect()
}

fn rule(value: &Value, at: &At) -> Result<Rule, DetectError> {
    let map = value
        .as_object()
        .ok_or_else(|| at.err("(rule)", "must be a mapping"))?;
    known_fields(
        map,
        at,
        &[
            "id",
            "title",
            "severity",
            "mitre",
            "description",
            "enabled",
            "match",
            "where",
            "any",
            "none",
            "except",
        ],
    )?;
    let id = required_string(map, at, "id")?;
    let kebab = !id.is_empty()
        && id.split('-').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if !kebab {
        return Err(at.err("id", "must be kebab-case (a-z, 0-9, single dashes)"));
    }
    let severity_text = required_string(map, at, "severity")?;
    let severity = Severity::parse(&severity_text).ok_or_else(|| {
        at.err(
            "severity",
            format!("`{severity_text}` is not one of info, low, medium, high, critical"),
        )
    })?;
    let mitre = match map.get("mitre") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if is_technique(t) => Some(t.clone()),
        Some(_) => return Err(at.err("mitre", "must be a technique id such as T1609 or T1078.001")),
    };
    let enabled = match map.get("enabled") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(at.err("enabled", "must be true or false")),
    };
    Ok(Rule {
        title: required_string(map, at, "title")?,
        id,
        severity,
        mitre,
        enabled,
        selector: selector(map.get("match"), at)?,
        all: predicates(map.get("where"), at, "where")?,
        any: predicates(map.get("any"), at, "any")?,
        none: predicates(map.get("none"), at, "none")?,
        exceptions: exception_list(map.get("except"), at, "except")?,
    })
}

fn is_technique(t: &str) -> bool {
    let Some(digits) = t.strip_prefix('T') else {
        return false;
    };
    let (main, sub) = digits.split_once('.').unwrap_or((digits, "000"));
    main.len() == 4 && sub.len() == 3 && main.bytes().chain(sub.bytes()).all(|b| b.is_ascii_digit())
}

fn required_string(map: &Map<String, Value>, at: &At, field: &str) -> Result<String, DetectError> {
    match map.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        // YAML reads `off`, `yes`, `no`, … as booleans and `123` as a number, not as the text written.
        Some(scalar @ (Value::Bool(_) | Value::Number(_))) => Err(at.err(
            field,
            format!(
                "reads as `{scalar}`, not text (YAML takes yes/no/on/off as booleans): quote it"
            ),
        )),
        _ => Err(at.err(field, "required, a non-empty string")),
    }
}

fn strings(value: Option<&Value>, at: &At, field: &str) -> Result<Vec<String>, DetectError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(at.err(field, "must be a list of strings")),
            })
            .collect(),
        Some(_) => Err(at.err(field, "must be a list of strings")),
    }
}

fn globs(value: Option<&Value>, at: &At, field: &str) -> Result<Vec<Glob>, DetectError> {
    Ok(strings(value, at, field)?
        .iter()
        .map(|s| Glob::new(s))
        .collect())
}

fn selector(value: Option<&Value>, at: &At) -> Result<Match, DetectError> {
    let map = match value {
        None | Some(Value::Null) => return Ok(Match::default()),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(at.err("match", "must be a mapping")),
    };
    known_fields_under(
        map,
        at,
        "match",
        &[
            "verbs",
            "resources",
            "apiGroups",
            "namespaces",
            "stages",
            "users",
            "groups",
            "codes",
            "decision",
            "userAgents",
            "names",
        ],
    )?;
    let field = |name: &str| format!("match.{name}");
    let stages = strings(map.get("stages"), at, &field("stages"))?;
    if let Some(bad) = stages.iter().find(|s| !STAGES.contains(&s.as_str())) {
        return Err(at.err(
            &field("stages"),
            format!("`{bad}` is not one of {}", STAGES.join(", ")),
        ));
    }
    let decision = match map.get("decision") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) if d == "allow" || d == "forbid" => Some(d.clone()),
        Some(_) => return Err(at.err(&field("decision"), "must be `allow` or `forbid`")),
    };
    let codes = match map.get("codes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|c| {
                code_range(c).ok_or_else(|| {
                    at.err(
                        &field("codes"),
                        "each entry is a code (403) or a range (\"400-499\")",
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(at.err(&field("codes"), "must be a list")),
    };
    Ok(Match {
        verbs: strings(map.get("verbs"), at, &field("verbs"))?,
        resources: strings(map.get("resources"), at, &field("resources"))?,
        api_groups: strings(map.get("apiGroups"), at, &field("apiGroups"))?,
        namespaces: globs(map.get("namespaces"), at, &field("namespaces"))?,
        stages,
        users: globs(map.get("users"), at, &field("users"))?,
        groups: globs(map.get("groups"), at, &field("groups"))?,
        codes,
        decision,
        user_agents: strings(map.get("userAgents"), at, &field("userAgents"))?,
        names: globs(map.get("names"), at, &field("names"))?,
    })
}

fn code_range(value: &Value) -> Option<CodeRange> {
    let code = |s: &str| {
        s.trim()
            .parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c))
    };
    match value {
        Value::Number(n) => {
            let c = code(&n.to_string())?;
            Some(CodeRange { min: c, max: c })
        }
        Value::String(s) => {
            let (min, max) = match s.split_once('-') {
                Some((a, b)) => (code(a)?, code(b)?),
                None => (code(s)?, code(s)?),
            };
            (min <= max).then_some(CodeRange { min, max })
        }
        _ => None,
    }
}

const TESTS: [&str; 7] = [
    "equals",
    "in",
    "exists",
    "prefix",
    "contains",
    "intersects",
    "publicIp",
];

fn predicates(value: Option<&Value>, at: &At, field: &str) -> Result<Vec<Predicate>, DetectError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(at.err(field, "must be a list of predicates")),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, p)| predicate(p, at, &format!("{field}[{i}]")))
        .collect()
}

fn predicate(value: &Value, at: &At, field: &str) -> Result<Predicate, DetectError> {
    let map = value
        .as_object()
        .ok_or_else(|| at.err(field, "must be a mapping with `pointer` and one test"))?;
    let mut known = vec!["pointer"];
    known.extend(TESTS);
    known_fields_under(map, at, field, &known)?;
    let pointer_text = map
        .get("pointer")
        .and_then(Value::as_str)
        .ok_or_else(|| at.err(&format!("{field}.pointer"), "required, a JSON pointer"))?;
    let pointer =
        Pointer::parse(pointer_text).map_err(|e| at.err(&format!("{field}.pointer"), e))?;
    let given: Vec<_> = TESTS.iter().filter(|t| map.contains_key(**t)).collect();
    let [name] = given.as_slice() else {
        return Err(at.err(
            field,
            format!("needs exactly one test of {}", TESTS.join(", ")),
        ));
    };
    let arg = &map[**name];
    let field = format!("{field}.{name}");
    let list = |arg: &Value| match arg {
        Value::Array(items) if !items.is_empty() => Ok(items.clone()),
        _ => Err(at.err(&field, "must be a non-empty list")),
    };
    let text_list = |arg: &Value| {
        list(arg)?
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(at.err(&field, "must be a list of strings")),
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let flag = |arg: &Value| {
        arg.as_bool()
            .ok_or_else(|| at.err(&field, "must be true or false"))
    };
    let test = match **name {
        "equals" => Test::Equals(arg.clone()),
        "in" => Test::In(list(arg)?),
        "exists" => Test::Exists(flag(arg)?),
        "prefix" => Test::Prefix(text_list(arg)?),
        "contains" => Test::Contains(text_list(arg)?),
        "intersects" => Test::Intersects(list(arg)?),
        _ => Test::PublicIp(flag(arg)?),
    };
    Ok(Predicate { pointer, test })
}

fn exception_list(
    value: Option<&Value>,
    at: &At,
    field: &str,
) -> Result<Vec<Exception>, DetectError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(at.err(field, "must be a list of exception entries")),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let f = if field.is_empty() {
                format!("[{i}]")
            } else {
                format!("{field}[{i}]")
            };
            let map = entry
                .as_object()
                .filter(|m| !m.is_empty())
                .ok_or_else(|| at.err(&f, "must be a mapping with at least one field"))?;
            known_fields_under(
                map,
                at,
                &f,
                &[
                    "users",
                    "groups",
                    "namespaces",
                    "names",
                    "images",
                    "userAgents",
                ],
            )?;
            let sub = |name: &str| format!("{f}.{name}");
            Ok(Exception {
                users: globs(map.get("users"), at, &sub("users"))?,
                groups: globs(map.get("groups"), at, &sub("groups"))?,
                namespaces: globs(map.get("namespaces"), at, &sub("namespaces"))?,
                names: globs(map.get("names"), at, &sub("names"))?,
                images: strings(map.get("images"), at, &sub("images"))?,
                user_agents: strings(map.get("userAgents"), at, &sub("userAgents"))?,
            })
        })
        .collect()
}
