//! Which configuration serves which diagnostic category, decided per record: `S247_<category>` with `-`
//! replaced by `_` (`S247_kube_audit_admin`) or removed (`S247_kubeauditadmin`), else `logTypeConfig`.
//! A category with no configuration is skipped and counted — never the rest of the batch.

use anyhow::{Context as _, bail};
use kaf_config::LogTypeConfig;
use kaf_pipeline::{Options, Pipeline};
use kaf_upload::{UploadSettings, Uploader};
use std::collections::BTreeMap;

/// A compiled configuration: its pipeline and its upload client.
pub struct Target {
    /// The environment variable it came from (for logs; never the value).
    pub source: String,
    pub pipeline: Pipeline,
    pub uploader: Uploader,
}

pub struct Routes {
    /// Normalised `S247_…` name (lower-case, no `_`) → target.
    by_category: BTreeMap<String, Target>,
    fallback: Option<Target>,
}

fn normalise(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

impl Routes {
    pub fn from_env(
        env: &[(String, String)],
        settings: &UploadSettings,
        options: &Options,
    ) -> anyhow::Result<Self> {
        let target = |name: &str, text: &str| -> anyhow::Result<Target> {
            let config = LogTypeConfig::decode(text)
                .with_context(|| format!("environment variable {name}"))?;
            if !config.api_upload {
                bail!(
                    "environment variable {name}: apiUpload is false, the account accepts no API uploads"
                );
            }
            for warning in &config.warnings {
                tracing::warn!(variable = %name, %warning, "logtypeconfig");
            }
            Ok(Target {
                source: name.to_string(),
                pipeline: options
                    .apply(Pipeline::new(Some(&config), kaf_upload::format::SITE24X7)?),
                uploader: Uploader::new(&config, settings.clone())?,
            })
        };
        let mut by_category = BTreeMap::new();
        let mut fallback = None;
        for (name, value) in env.iter().filter(|(_, v)| !v.trim().is_empty()) {
            if let Some(category) = name
                .strip_prefix("S247_")
                .or_else(|| name.strip_prefix("s247_"))
            {
                by_category.insert(normalise(category), target(name, value)?);
            } else if name == "logTypeConfig" {
                fallback = Some(target(name, value)?);
            }
        }
        if by_category.is_empty() && fallback.is_none() {
            bail!("no configuration: set S247_kube_audit / S247_kube_audit_admin or logTypeConfig");
        }
        Ok(Self {
            by_category,
            fallback,
        })
    }

    /// The target for records of `category`, if any.
    pub fn get(&self, category: &str) -> Option<&Target> {
        self.by_category
            .get(&normalise(category))
            .or(self.fallback.as_ref())
    }

    /// `kube_audit→S247_kube_audit, *→logTypeConfig` — names only.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .by_category
            .iter()
            .map(|(c, t)| format!("{c}→{}", t.source))
            .collect();
        if let Some(t) = &self.fallback {
            parts.push(format!("*→{}", t.source));
        }
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn both_spellings_of_a_category_normalise_alike() {
        for name in [
            "kube_audit_admin",
            "kubeauditadmin",
            "kube-audit-admin",
            "KUBE_AUDIT_ADMIN",
        ] {
            assert_eq!(super::normalise(name), "kubeauditadmin");
        }
    }
}
