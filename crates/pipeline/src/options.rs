//! The settings every binary reads the same way, beside the logtypeconfig.

use crate::{Pipeline, policy, redact};

/// The forwarder-wide pipeline settings, read the same way by every binary: `REDACT_SECRETS`, and
/// `AUDIT_POLICY` (inline YAML or base64) or `AUDIT_POLICY_FILE`.
#[derive(Debug, Clone)]
pub struct Options {
    pub redact_secrets: bool,
    pub policy: Option<policy::Policy>,
}

impl Options {
    /// From variables read through `var`; errors name the variable.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        Ok(Self {
            redact_secrets: redact::enabled_from_env(var("REDACT_SECRETS").as_deref())?,
            policy: policy::from_env(
                var("AUDIT_POLICY").as_deref(),
                var("AUDIT_POLICY_FILE").as_deref(),
            )?,
        })
    }

    /// What a start-up log should say about these settings.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings: Vec<String> = self
            .policy
            .iter()
            .flat_map(|p| p.warnings.iter().map(|w| format!("audit policy: {w}")))
            .collect();
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
    }
}
