//! One summary per invocation or run: what came in, what the pipeline did, what the upload did. The Lambda
//! returns and logs it, the CLI prints it on stderr. Counts only: no content, no secret.

use crate::UploadStats;
use kaf_envelope::EnvelopeStats;
use kaf_pipeline::PipelineStats;
use serde::Serialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    #[serde(flatten)]
    pub envelope: EnvelopeStats,
    #[serde(flatten)]
    pub pipeline: PipelineStats,
    #[serde(flatten)]
    pub upload: UploadStats,
    pub duration_ms: u64,
}

impl Summary {
    /// One JSON line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}
