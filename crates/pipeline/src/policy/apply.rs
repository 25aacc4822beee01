//! Applying a decision to an event: drop it, strip what its level does not carry, or keep it.

use super::{Applied, Level, Policy, evaluate::attributes};
use serde_json::Value;

impl Policy {
    /// Apply to a parsed audit event: drop it, reduce it, or keep it as it is.
    pub fn apply(&self, event: &mut Value) -> Applied {
        let decision = self.evaluate(&attributes(event));
        if decision.level == Level::None {
            return Applied::Dropped;
        }
        let Value::Object(map) = event else {
            return Applied::Dropped;
        };
        if map
            .get("stage")
            .and_then(Value::as_str)
            .is_some_and(|s| decision.omit_stages.contains(s))
        {
            return Applied::Dropped;
        }
        let mut changed = false;
        let event_level = map
            .get("level")
            .and_then(Value::as_str)
            .and_then(Level::parse);
        if event_level.is_some_and(|l| l > decision.level) {
            map.insert(
                "level".into(),
                Value::String(decision.level.as_str().into()),
            );
            map.remove("responseObject");
            if decision.level == Level::Metadata {
                map.remove("requestObject");
                // patch.webhook… annotations are recorded from level Request on.
                if let Some(Value::Object(annotations)) = map.get_mut("annotations") {
                    annotations.retain(|k, _| !k.starts_with("patch.webhook.admission.k8s.io/"));
                }
            }
            changed = true;
        }
        if decision.omit_managed_fields {
            for key in ["requestObject", "responseObject"] {
                if let Some(object) = map.get_mut(key) {
                    changed |= strip_managed_fields(object);
                }
            }
        }
        if changed {
            Applied::Reduced
        } else {
            Applied::Kept
        }
    }
}

fn strip_managed_fields(v: &mut Value) -> bool {
    let mut changed = false;
    if let Value::Object(map) = v {
        if let Some(Value::Object(meta)) = map.get_mut("metadata") {
            changed |= meta.remove("managedFields").is_some();
        }
        if let Some(Value::Array(items)) = map.get_mut("items") {
            for item in items {
                changed |= strip_managed_fields(item);
            }
        }
        // meta.k8s.io Table rows carry (partial) objects.
        if let Some(Value::Array(rows)) = map.get_mut("rows") {
            for row in rows {
                if let Some(object) = row.get_mut("object") {
                    changed |= strip_managed_fields(object);
                }
            }
        }
    }
    changed
}
