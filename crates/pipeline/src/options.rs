//! The settings every binary reads the same way, beside the logtypeconfig.

use crate::detect::Detector;
use crate::{Pipeline, policy, redact};
use std::path::Path;
use std::sync::Arc;

/// The forwarder-wide pipeline settings, read the same way by every binary: `REDACT_SECRETS`;
/// `AUDIT_POLICY` (inline YAML or base64) or `AUDIT_POLICY_FILE`; `DETECTIONS` (`on` by default, or `off`),
/// `DETECTIONS_FILE` and `DETECTIONS_ONLY`.
#[derive(Debug, Clone)]
pub struct Options {
    pub redact_secrets: bool,
    pub policy: Option<policy::Policy>,
    /// The rules records are tagged with; `None`: detections off.
    pub detector: Option<Arc<Detector>>,
    /// Forward only events that raised a detection.
    pub detections_only: bool,
}

impl Options {
    /// From variables read through `var`; errors name the variable (and, for a rule file, the rule and the
    /// field).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let detections = flag("DETECTIONS", var("DETECTIONS").as_deref(), true)?;
        let detections_only = flag("DETECTIONS_ONLY", var("DETECTIONS_ONLY").as_deref(), false)?;
        if detections_only && !detections {
            return Err("DETECTIONS_ONLY=true needs detections on (DETECTIONS is off)".into());
        }
        let file = var("DETECTIONS_FILE").filter(|f| !f.trim().is_empty());
        Ok(Self {
            redact_secrets: redact::enabled_from_env(var("REDACT_SECRETS").as_deref())?,
            policy: policy::from_env(
                var("AUDIT_POLICY").as_deref(),
                var("AUDIT_POLICY_FILE").as_deref(),
            )?,
            detector: match (detections, file) {
                (false, _) => None,
                (true, file) => Some(Arc::new(
                    load_detector(file.as_deref().map(Path::new))
                        .map_err(|e| format!("DETECTIONS_FILE {e}"))?,
                )),
            },
            detections_only,
        })
    }

    /// How many detection rules are enabled (0: detections off).
    pub fn detection_rules(&self) -> usize {
        self.detector
            .as_ref()
            .map_or(0, |d| d.rules().iter().filter(|r| r.enabled).count())
    }

    /// What a start-up log should say about these settings.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings: Vec<String> = self
            .policy
            .iter()
            .flat_map(|p| p.warnings.iter().map(|w| format!("audit policy: {w}")))
            .collect();
        if self.detector.is_none() {
            warnings.push(
                "detections are off (DETECTIONS=off): records are not tagged with threat rules"
                    .into(),
            );
        }
        if self.detections_only {
            warnings.push("detections-only mode (DETECTIONS_ONLY=true): events that raise no detection are not forwarded".into());
        }
        if !self.redact_secrets {
            warnings.push("secret redaction is off (REDACT_SECRETS=false): Secret values are forwarded in clear".into());
        }
        warnings
    }

    /// `pipeline` with these settings.
    pub fn apply(&self, pipeline: Pipeline) -> Pipeline {
        pipeline
            .with_secret_redaction(self.redact_secrets)
            .with_policy(self.policy.clone())
            .with_detections(self.detector.clone(), self.detections_only)
    }
}

/// The built-in rules, amended or replaced by the operator's `file`. An error names the file, and the rule and
/// field at fault.
pub fn load_detector(file: Option<&Path>) -> Result<Detector, String> {
    let builtin = Detector::builtin();
    let Some(path) = file else {
        return Ok(builtin);
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    builtin
        .with_file(&text)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A yes/no variable: `true`/`false` and the usual synonyms; `default` when unset or empty.
pub fn flag(name: &str, value: Option<&str>, default: bool) -> Result<bool, String> {
    match value.map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if v.is_empty() => Ok(default),
        Some(v) if ["true", "1", "yes", "on"].contains(&v.as_str()) => Ok(true),
        Some(v) if ["false", "0", "no", "off"].contains(&v.as_str()) => Ok(false),
        Some(_) => Err(format!("{name} must be on or off (true or false)")),
    }
}
