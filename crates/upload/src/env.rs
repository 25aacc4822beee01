//! [`UploadSettings`] from environment variables, shared by every binary so the knobs have one name each.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `UPLOAD_MAX_RECORDS` | 500 | records per request (at most 500) |
//! | `UPLOAD_MAX_BYTES` | 5000000 | uncompressed bytes per request (at most 5 MB) |
//! | `UPLOAD_CONCURRENCY` | 4 | requests in flight |
//! | `UPLOAD_REQUEST_TIMEOUT_MS` | 30000 | one request |
//! | `UPLOAD_BACKOFF_BASE_MS` / `UPLOAD_BACKOFF_MAX_MS` | 500 / 30000 | retry backoff |
//! | `DEADLINE_SAFETY_MARGIN_MS` | 1500 | stop retrying this long before the deadline |
//! | `UPLOAD_GZIP_LEVEL` | 6 | 0–9 |
//! | `UPLOAD_CA_FILE` | (system store) | trust only this PEM bundle |

use crate::{Limits, TrustRoots, UploadSettings};
use std::time::Duration;

/// A variable that is set but not a valid value.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {name} must be {expected}")]
pub struct EnvError {
    pub name: &'static str,
    pub expected: &'static str,
}

impl UploadSettings {
    /// Defaults overridden by the variables above, read through `var` (e.g. `|k| std::env::var(k).ok()`).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, EnvError> {
        let number = |name: &'static str, min: u64, max: u64| -> Result<Option<u64>, EnvError> {
            match var(name) {
                None => Ok(None),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
                    _ => Err(EnvError {
                        name,
                        expected: "a whole number in its documented range",
                    }),
                },
            }
        };
        let mut s = Self::default();
        let defaults = Limits::default();
        if let Some(n) = number("UPLOAD_MAX_RECORDS", 1, defaults.max_records as u64)? {
            s.limits.max_records = n as usize;
        }
        if let Some(n) = number("UPLOAD_MAX_BYTES", 1024, defaults.max_bytes as u64)? {
            s.limits.max_bytes = n as usize;
        }
        if let Some(n) = number("UPLOAD_CONCURRENCY", 1, 64)? {
            s.concurrency = n as usize;
        }
        let ms = |name, min, max| number(name, min, max).map(|o| o.map(Duration::from_millis));
        if let Some(d) = ms("UPLOAD_REQUEST_TIMEOUT_MS", 100, 300_000)? {
            s.request_timeout = d;
        }
        if let Some(d) = ms("UPLOAD_BACKOFF_BASE_MS", 1, 60_000)? {
            s.backoff_base = d;
        }
        if let Some(d) = ms("UPLOAD_BACKOFF_MAX_MS", 1, 600_000)? {
            s.backoff_max = d;
        }
        if let Some(d) = ms("DEADLINE_SAFETY_MARGIN_MS", 0, 60_000)? {
            s.safety_margin = d;
        }
        if let Some(n) = number("UPLOAD_GZIP_LEVEL", 0, 9)? {
            s.gzip_level = n as u32;
        }
        if let Some(path) = var("UPLOAD_CA_FILE").filter(|p| !p.trim().is_empty()) {
            s.trust = TrustRoots::PemFile(path.into());
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn variables_override_defaults_and_bad_values_name_the_variable() {
        let s = UploadSettings::from_env(|k| match k {
            "UPLOAD_MAX_RECORDS" => Some("100".into()),
            "DEADLINE_SAFETY_MARGIN_MS" => Some("250".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            (s.limits.max_records, s.safety_margin),
            (100, Duration::from_millis(250))
        );
        assert_eq!(s.limits.max_bytes, 5_000_000);
        let err = UploadSettings::from_env(|k| (k == "UPLOAD_MAX_RECORDS").then(|| "501".into()))
            .unwrap_err();
        assert_eq!(err.name, "UPLOAD_MAX_RECORDS");
    }
}
