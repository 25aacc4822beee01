//! Start-up errors. Every variant names the field it is about and none carries a value from the config,
//! because any of them (not only `apiKey`) may be a secret.

/// Why a `logtypeconfig` was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("logtypeconfig is empty")]
    Empty,
    /// App Service leaves a Key Vault reference it could not resolve in the setting as it was written.
    #[error(
        "logtypeconfig is an unresolved Key Vault reference (@Microsoft.KeyVault(...)): App Service could not read the secret. The app's identity needs the Key Vault Secrets User role on the vault (a new role assignment takes a few minutes to apply); restart the app once it has it"
    )]
    UnresolvedKeyVaultReference,
    #[error("logtypeconfig is not valid base64 (standard or URL-safe alphabet expected)")]
    Base64,
    #[error("logtypeconfig decodes to bytes that are not UTF-8")]
    Utf8,
    #[error("logtypeconfig is not valid JSON (line {line}, column {column})")]
    Json { line: usize, column: usize },
    #[error("logtypeconfig must be a JSON object")]
    NotAnObject,
    #[error("logtypeconfig field `{0}` is missing or empty")]
    Missing(&'static str),
    #[error("logtypeconfig field `{field}` must be {expected}")]
    WrongType {
        field: String,
        expected: &'static str,
    },
    #[error("logtypeconfig field `{field}` holds a regex that does not compile: {reason}")]
    Regex { field: String, reason: String },
    #[error("logtypeconfig field `dateFormat` uses unsupported directive `%{directive}`")]
    DateDirective { directive: char },
    #[error("logtypeconfig field `timezone` must look like +hhmm or -hh:mm")]
    Timezone,
    #[error("logtypeconfig field `uploadDomain` must not use plain http: uploads are HTTPS only")]
    InsecureUploadDomain,
}

impl ConfigError {
    pub(crate) fn wrong_type(field: impl Into<String>, expected: &'static str) -> Self {
        Self::WrongType {
            field: field.into(),
            expected,
        }
    }

    /// The regex crate's message explains the syntax error with the pattern excerpt; the pattern is the user's
    /// own filter text, not a credential, but we keep only the last line (the reason) to stay short.
    pub(crate) fn regex(field: impl Into<String>, err: &regex::Error) -> Self {
        let reason = err
            .to_string()
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("invalid pattern")
            .trim()
            .to_string();
        Self::Regex {
            field: field.into(),
            reason,
        }
    }
}
