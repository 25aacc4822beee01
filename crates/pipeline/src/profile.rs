//! The profile: which fields a record has, where they come from in the event, and where its time is.

use kaf_config::{ConfigError, DateFormat, JsonPathEntry, LogTypeConfig};
use serde_json::Value;

/// The default profile for Kubernetes audit events, shipped as data (documented field by field there).
pub const DEFAULT_PROFILE_JSON: &str =
    include_str!("../../../templates/logtypes/kubernetes-audit.json");

/// Which fields a record has and where the event time comes from.
#[derive(Debug, Clone)]
pub struct Profile {
    pub entries: Vec<JsonPathEntry>,
    /// An output field name, or else a dotted path on the source event.
    pub date_field: String,
    pub date_format: DateFormat,
}

impl Profile {
    /// The shipped Kubernetes audit profile.
    pub fn kubernetes_audit() -> Result<Self, ConfigError> {
        let doc: Value =
            serde_json::from_str(DEFAULT_PROFILE_JSON).map_err(|e| ConfigError::Json {
                line: e.line(),
                column: e.column(),
            })?;
        let entries =
            kaf_config::compile_json_path("jsonPath", doc.get("jsonPath").unwrap_or(&Value::Null))?;
        let date_field = doc
            .get("dateField")
            .and_then(Value::as_str)
            .unwrap_or("requestreceivedtimestamp")
            .to_string();
        Ok(Self {
            entries,
            date_field,
            date_format: DateFormat::default(),
        })
    }

    /// The same profile with every key under `prefix` (the default profile, for documents that carry the event
    /// inside an envelope: AKS records at `properties.log`).
    pub(crate) fn rooted_at(&self, prefix: &str) -> Self {
        let mut profile = self.clone();
        for entry in &mut profile.entries {
            entry.key = format!("{prefix}.{}", entry.key);
        }
        profile
    }

    /// The config's own `jsonPath` if it has one, else the default profile; date settings from the config win.
    pub fn from_config(config: &LogTypeConfig) -> Result<Self, ConfigError> {
        let mut profile = match &config.json_path {
            Some(entries) => Self {
                entries: entries.clone(),
                date_field: "requestReceivedTimestamp".into(),
                date_format: DateFormat::default(),
            },
            None => Self::kubernetes_audit()?,
        };
        if let Some(field) = &config.date_field {
            profile.date_field = field.clone();
        }
        if let Some(format) = &config.date_format {
            profile.date_format = format.clone();
        }
        Ok(profile)
    }
}
