//! A forwarder-side `audit.k8s.io/v1` Policy, evaluated with exactly the kube-apiserver's semantics
//! (`pkg/audit/policy/checker.go`, `pkg/apis/audit/validation`; `contracts/k8s-audit.md` §4), so a policy that
//! managed clusters do not let you install can still cut what you ship and pay for.
//!
//! Loading (`load.rs`): YAML or JSON; unknown fields are ignored with a warning, as the apiserver's lenient fallback does
//! (a typo like `resource:` widens a rule, so the warning matters); invalid policies are refused with the
//! field named. Evaluation (`evaluate.rs`): rules in order, first match wins; a matched `None` is final; no match is `None`.
//! Applying to an event (`apply.rs`): `None` or an omitted stage drops it; a lower level than the event's strips the objects
//! the level does not carry; `omitManagedFields` strips `metadata.managedFields` (also in lists and Tables).

mod apply;
pub mod cases;
mod evaluate;
mod load;

pub use evaluate::{attributes, resource_matches};
pub use load::from_env;

use std::collections::BTreeSet;

/// Audit levels, ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    None,
    Metadata,
    Request,
    RequestResponse,
}

impl Level {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "None" => Some(Self::None),
            "Metadata" => Some(Self::Metadata),
            "Request" => Some(Self::Request),
            "RequestResponse" => Some(Self::RequestResponse),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Metadata => "Metadata",
            Self::Request => "Request",
            Self::RequestResponse => "RequestResponse",
        }
    }
}

/// Why a policy was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("audit policy is not valid YAML or JSON: {0}")]
    Syntax(String),
    #[error("audit policy field `{field}`: {reason}")]
    Invalid { field: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupResources {
    pub group: String,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub level: Level,
    pub users: Vec<String>,
    pub user_groups: Vec<String>,
    pub verbs: Vec<String>,
    pub resources: Vec<GroupResources>,
    pub namespaces: Vec<String>,
    pub non_resource_urls: Vec<String>,
    pub omit_stages: Vec<String>,
    pub omit_managed_fields: Option<bool>,
}

/// A validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub rules: Vec<Rule>,
    pub omit_stages: Vec<String>,
    pub omit_managed_fields: bool,
    /// Unknown fields that were ignored, e.g. `rules[1].resource`.
    pub warnings: Vec<String>,
}

/// What the evaluator sees of a request (`authorizer.Attributes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    /// `None`: the request failed authentication (not the same as `system:anonymous`).
    pub user: Option<String>,
    pub groups: Vec<String>,
    pub verb: String,
    pub resource_request: bool,
    /// URL path without the query string.
    pub path: String,
    pub namespace: String,
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
}

/// The evaluator's answer (`RequestAuditConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub level: Level,
    pub omit_stages: BTreeSet<String>,
    pub omit_managed_fields: bool,
}

/// What applying the policy did to one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Dropped,
    Reduced,
    Kept,
}

#[cfg(test)]
mod tests;
