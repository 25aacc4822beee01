//! `detect FILE…`: the detection rules over anything `replay` reads, as a report: per rule its severity, count
//! and top users, source addresses and objects; plus the 403 reports (the seed query "403 on list, grouped by
//! username", and 403s by user and resource). `--json` gives the same as JSON.
//!
//! `detect --conformance` runs the rule set against Falco's and Panther's suites and our own cases, and prints
//! `N passed, M failed` per suite (exit 1 on a failure that is not a documented deviation).

use crate::replay::{DEFAULT_MAX_DECOMPRESSED, EXIT_USAGE};
use anyhow::Context as _;
use kaf_envelope::EnvelopeStats;
use kaf_envelope::sniff::{FileContext, decode_file};
use kaf_pipeline::detect::{Detector, conformance};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Files to read (what `replay` reads: CloudWatch events and payloads, AKS records, audit JSON lines).
    #[arg(required_unless_present = "conformance")]
    files: Vec<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// A rule file: with `extends: builtin` it amends the built-in rules, otherwise it replaces them.
    #[arg(long, env = "DETECTIONS_FILE", value_name = "FILE")]
    detections: Option<PathBuf>,
    /// Run the conformance suites (Falco, Panther, ours) from the fixtures folder instead.
    #[arg(long)]
    conformance: bool,
    /// The fixtures folder for --conformance.
    #[arg(long, default_value = "tests/fixtures", value_name = "DIR")]
    fixtures: PathBuf,
    /// Name the cluster (for CloudWatch payloads that do not say).
    #[arg(long, default_value = "local")]
    cluster: String,
    /// How many users, addresses and objects to list per rule.
    #[arg(long, default_value_t = 3)]
    top: usize,
}

/// The rules an operator asked for: the built-in set, amended or replaced by `file`.
pub fn load_detector(file: Option<&PathBuf>) -> anyhow::Result<Detector> {
    kaf_pipeline::load_detector(file.map(PathBuf::as_path))
        .map_err(|e| anyhow::anyhow!("detection rules {e}"))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let detector = load_detector(args.detections.as_ref())?;
    if args.conformance {
        return conformance_report(&args, &detector);
    }
    let format = kaf_upload::format::SITE24X7;
    let pipeline = kaf_pipeline::Pipeline::new(None, format)?;
    let mut report = Report::new(args.top);
    let mut unreadable = 0;
    for path in &args.files {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).with_context(|| format!("reading {origin}"))?;
        let ctx = FileContext {
            origin: &origin,
            cluster: &args.cluster,
            stream_prefix: kaf_envelope::cloudwatch::AUDIT_STREAM_PREFIX,
            max_decompressed: DEFAULT_MAX_DECOMPRESSED,
        };
        let batches = match decode_file(&bytes, &ctx, &mut EnvelopeStats::default()) {
            Ok(batches) => batches,
            Err(e) => {
                eprintln!("error: decoding {origin}: {e}");
                unreadable += 1;
                continue;
            }
        };
        for batch in batches {
            let read = pipeline.audit_events(batch);
            report.unparsable += read.unparsable;
            report.non_audit += read.non_audit;
            report.repeated += read.repeated;
            for event in read.events {
                report.add(&detector, &event);
            }
        }
    }
    if args.json {
        println!("{}", report.to_json(&detector));
    } else {
        print!("{}", report.to_table(&detector));
    }
    Ok(if unreadable > 0 {
        ExitCode::from(EXIT_USAGE)
    } else {
        ExitCode::SUCCESS
    })
}

fn conformance_report(args: &Args, detector: &Detector) -> anyhow::Result<ExitCode> {
    let suites = conformance::all(&args.fixtures, detector)
        .with_context(|| format!("reading the suites under {}", args.fixtures.display()))?;
    let mut regressions = 0;
    for suite in &suites {
        println!("{}", suite.summary());
        for case in &suite.cases {
            if let conformance::Outcome::Failed(why) = &case.outcome {
                match conformance::deviation(&case.name) {
                    Some(known) => println!("  known deviation: {}: {why} ({known})", case.name),
                    None => println!("  FAILED {}: {why}", case.name),
                }
            }
        }
        regressions += suite.unexpected_failures().len();
    }
    Ok(if regressions == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Counts by key, with the most frequent first (ties by name, so output is stable).
#[derive(Default)]
struct Tally(HashMap<String, u64>);

impl Tally {
    fn add(&mut self, key: String) {
        *self.0.entry(key).or_default() += 1;
    }
    fn top(&self, n: usize) -> Vec<(&str, u64)> {
        let mut all: Vec<_> = self.0.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        all.truncate(n);
        all
    }
}

#[derive(Default)]
struct RuleTally {
    count: u64,
    users: Tally,
    source_ips: Tally,
    objects: Tally,
}

struct Report {
    top: usize,
    events: u64,
    /// What was read but is not an event the rules saw.
    unparsable: u64,
    non_audit: u64,
    repeated: u64,
    matched: u64,
    rules: HashMap<String, RuleTally>,
    forbidden_list_by_user: Tally,
    forbidden_by_user_resource: Tally,
}

fn text<'a>(event: &'a Value, pointer: &str) -> &'a str {
    event.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The user a person reads first: the impersonated one when the request impersonated.
fn user_of(event: &Value) -> String {
    let user = text(event, "/user/username");
    match event
        .pointer("/impersonatedUser/username")
        .and_then(Value::as_str)
    {
        Some(as_user) => format!("{as_user} (impersonated by {user})"),
        None if user.is_empty() => "(unauthenticated)".into(),
        None => user.to_string(),
    }
}

fn object_of(event: &Value) -> String {
    let resource = match text(event, "/objectRef/subresource") {
        "" => text(event, "/objectRef/resource").to_string(),
        sub => format!("{}/{sub}", text(event, "/objectRef/resource")),
    };
    if resource.is_empty() {
        return text(event, "/requestURI")
            .split('?')
            .next()
            .unwrap_or("")
            .to_string();
    }
    [
        text(event, "/objectRef/namespace"),
        &resource,
        text(event, "/objectRef/name"),
    ]
    .iter()
    .filter(|s| !s.is_empty())
    .copied()
    .collect::<Vec<_>>()
    .join("/")
}

impl Report {
    fn new(top: usize) -> Self {
        Self {
            top,
            events: 0,
            unparsable: 0,
            non_audit: 0,
            repeated: 0,
            matched: 0,
            rules: HashMap::new(),
            forbidden_list_by_user: Tally::default(),
            forbidden_by_user_resource: Tally::default(),
        }
    }

    fn add(&mut self, detector: &Detector, event: &Value) {
        self.events += 1;
        let found = detector.detect(event);
        if !found.is_empty() {
            self.matched += 1;
        }
        for id in found.ids {
            let tally = self.rules.entry(id.to_string()).or_default();
            tally.count += 1;
            tally.users.add(user_of(event));
            tally
                .source_ips
                .add(text(event, "/sourceIPs/0").to_string());
            tally.objects.add(object_of(event));
        }
        let code = event
            .pointer("/responseStatus/code")
            .and_then(Value::as_u64);
        // One count per request: the final stage only (or events that carry no stage).
        let final_stage = matches!(
            event.get("stage").and_then(Value::as_str),
            None | Some("ResponseComplete")
        );
        if code == Some(403) && final_stage {
            let user = user_of(event);
            if text(event, "/verb") == "list" {
                self.forbidden_list_by_user.add(user.clone());
            }
            let resource = match text(event, "/objectRef/resource") {
                "" => text(event, "/requestURI")
                    .split('?')
                    .next()
                    .unwrap_or("")
                    .to_string(),
                r => r.to_string(),
            };
            self.forbidden_by_user_resource
                .add(format!("{user}\t{} {resource}", text(event, "/verb")));
        }
    }

    /// Rules that fired, in rule-file order.
    fn fired<'d>(
        &self,
        detector: &'d Detector,
    ) -> Vec<(&'d kaf_pipeline::detect::Rule, &RuleTally)> {
        detector
            .rules()
            .iter()
            .filter_map(|rule| self.rules.get(&rule.id).map(|t| (rule, t)))
            .collect()
    }

    fn to_json(&self, detector: &Detector) -> Value {
        let pairs = |tally: &Tally| -> Value {
            tally
                .top(self.top)
                .into_iter()
                .map(|(k, n)| json!({"name": k, "count": n}))
                .collect()
        };
        let rules: Vec<Value> = self
            .fired(detector)
            .into_iter()
            .map(|(rule, t)| {
                json!({"id": rule.id, "title": rule.title, "severity": rule.severity.as_str(),
                       "mitre": rule.mitre, "count": t.count, "users": pairs(&t.users),
                       "sourceIPs": pairs(&t.source_ips), "objects": pairs(&t.objects)})
            })
            .collect();
        let by_user_resource: Vec<Value> = self
            .forbidden_by_user_resource
            .top(usize::MAX)
            .into_iter()
            .map(|(k, n)| {
                let (user, what) = k.split_once('\t').unwrap_or((k, ""));
                json!({"user": user, "request": what, "count": n})
            })
            .collect();
        json!({
            "events": self.events,
            "skipped": {"notJson": self.unparsable, "notAuditEvents": self.non_audit, "repeats": self.repeated},
            "eventsWithDetections": self.matched,
            "rules": rules,
            "forbiddenListByUser": self.forbidden_list_by_user.top(usize::MAX).into_iter()
                .map(|(k, n)| json!({"user": k, "count": n})).collect::<Vec<_>>(),
            "forbiddenByUserAndResource": by_user_resource,
        })
    }

    fn to_table(&self, detector: &Detector) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let list = |tally: &Tally| {
            tally
                .top(self.top)
                .into_iter()
                .map(|(k, n)| format!("{} ({n})", if k.is_empty() { "-" } else { k }))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "{} events, {} with detections; skipped: {} not JSON, {} not an audit event, {} repeated\n",
            self.events, self.matched, self.unparsable, self.non_audit, self.repeated
        );
        let fired = self.fired(detector);
        if fired.is_empty() {
            out.push_str("no detections\n");
        } else {
            let width = fired
                .iter()
                .map(|(r, _)| r.id.len())
                .max()
                .unwrap_or(4)
                .max(4);
            let _ = writeln!(
                out,
                "{:width$}  {:8}  {:>6}  top users / source IPs / objects",
                "rule", "severity", "count"
            );
            for (rule, t) in fired {
                let _ = writeln!(
                    out,
                    "{:width$}  {:8}  {:>6}  {}",
                    rule.id,
                    rule.severity.as_str(),
                    t.count,
                    list(&t.users)
                );
                // The source addresses and the objects go on the lines below the users.
                for more in [&t.source_ips, &t.objects] {
                    let _ = writeln!(out, "{:width$}  {:8}  {:>6}  {}", "", "", "", list(more));
                }
            }
        }
        out.push_str("\n403 on list, by username (responsestatus_code=403 and verb=\"list\" groupby username):\n");
        let forbidden_lists = self.forbidden_list_by_user.top(usize::MAX);
        if forbidden_lists.is_empty() {
            out.push_str("  none\n");
        }
        for (user, n) in forbidden_lists {
            let _ = writeln!(out, "  {n:>6}  {user}");
        }
        out.push_str("\n403 by user and request:\n");
        let forbidden = self.forbidden_by_user_resource.top(usize::MAX);
        if forbidden.is_empty() {
            out.push_str("  none\n");
        }
        for (key, n) in forbidden {
            let (user, what) = key.split_once('\t').unwrap_or((key, ""));
            let _ = writeln!(out, "  {n:>6}  {user}  {what}");
        }
        out
    }
}
