//! `logtypeconfig`: the user's base64 JSON, decoded and compiled once at start-up.
//!
//! Sits before everything else: the binaries read the text (env, secret, flag), call [`LogTypeConfig::decode`],
//! and hand the compiled [`LogTypeConfig`] to the pipeline (profile, filters, masks, dates) and to the upload
//! client (apiKey, logType, uploadDomain). Raw → compiled happens here only, so a bad regex or an unknown date
//! directive fails at start-up with an error that names the field, never at the first event.
//!
//! The whole config is a secret (it carries `apiKey`): [`ApiKey`] and [`LogTypeConfig`] redact themselves in
//! `Debug`, and no error ever quotes a value from the config, only field names.
//!
//! ```
//! use base64::Engine as _;
//! let json = r#"{"apiKey":"k","logType":"Kubernetes Audit Logs","uploadDomain":"site24x7.com"}"#;
//! let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
//! let cfg = kaf_config::LogTypeConfig::decode(&text).unwrap();
//! assert_eq!(cfg.upload_url(), "https://logc.site24x7.com/upload");
//! assert!(!format!("{cfg:?}").contains("\"k\""));
//! ```

mod date;
mod error;
mod rules;

pub use date::{DateFormat, DateParseError, EARLIEST_PLAUSIBLE_MS, plausible_ms};
pub use error::ConfigError;
pub use rules::{DeriveRule, FieldFilter, HashRule, JsonPathEntry, MaskRule, ValueType};

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value};
use std::fmt;

/// The upload API key. Never printed: `Debug` shows a placeholder and there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }
    /// The key itself, for the one place that needs it: the `X-DeviceKey` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// A validated and compiled `logtypeconfig`.
#[derive(Clone)]
pub struct LogTypeConfig {
    pub api_key: ApiKey,
    pub log_type: String,
    /// Host (and optional port) that receives `POST /upload`, after the Site24x7 domain mapping.
    pub upload_host: String,
    /// `None`: use the default Kubernetes audit profile.
    pub json_path: Option<Vec<JsonPathEntry>>,
    pub date_field: Option<String>,
    pub date_format: Option<DateFormat>,
    pub filters: Vec<FieldFilter>,
    pub masks: Vec<MaskRule>,
    pub hashes: Vec<HashRule>,
    pub derives: Vec<DeriveRule>,
    pub ignored_fields: Vec<String>,
    /// `apiUpload: false` in the config: the account forbids API uploads.
    pub api_upload: bool,
    /// Non-fatal remarks found while compiling (e.g. a regex parser config that JSON input ignores).
    pub warnings: Vec<String>,
}

impl fmt::Debug for LogTypeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Masking strings and filter values can be sensitive too: show only shapes.
        f.debug_struct("LogTypeConfig")
            .field("api_key", &self.api_key)
            .field("log_type", &self.log_type)
            .field("upload_host", &self.upload_host)
            .field("json_path_entries", &self.json_path.as_ref().map(Vec::len))
            .field("date_field", &self.date_field)
            .field("filters", &self.filters.len())
            .field("masks", &self.masks.len())
            .field("hashes", &self.hashes.len())
            .field("derives", &self.derives.len())
            .field("ignored_fields", &self.ignored_fields)
            .finish_non_exhaustive()
    }
}

/// Standard or URL-safe alphabet, padding optional: what Site24x7's own setup pages and scripts produce.
fn base64_engines() -> [GeneralPurpose; 2] {
    let lenient =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    [
        GeneralPurpose::new(&base64::alphabet::STANDARD, lenient),
        GeneralPurpose::new(&base64::alphabet::URL_SAFE, lenient),
    ]
}

impl LogTypeConfig {
    /// Decode the base64 text of a `logtypeconfig` (surrounding whitespace allowed) and compile it.
    pub fn decode(text: &str) -> Result<Self, ConfigError> {
        let compact: String = text.split_whitespace().collect();
        if compact.is_empty() {
            return Err(ConfigError::Empty);
        }
        if compact.starts_with("@Microsoft.KeyVault(") {
            return Err(ConfigError::UnresolvedKeyVaultReference);
        }
        let bytes = base64_engines()
            .iter()
            .find_map(|engine| engine.decode(compact.as_bytes()).ok())
            .ok_or(ConfigError::Base64)?;
        let json = String::from_utf8(bytes).map_err(|_| ConfigError::Utf8)?;
        Self::from_json(&json)
    }

    /// Compile a `logtypeconfig` given as JSON text (already base64-decoded).
    pub fn from_json(json: &str) -> Result<Self, ConfigError> {
        let value: Value = serde_json::from_str(json).map_err(|e| ConfigError::Json {
            line: e.line(),
            column: e.column(),
        })?;
        let Value::Object(obj) = value else {
            return Err(ConfigError::NotAnObject);
        };
        Self::compile(&obj)
    }

    fn compile(obj: &Map<String, Value>) -> Result<Self, ConfigError> {
        let mut warnings = Vec::new();
        let api_key = ApiKey(required_str(obj, "apiKey")?);
        let log_type = required_str(obj, "logType")?;
        let upload_host = upload_host(&required_str(obj, "uploadDomain")?)?;

        let json_path = match first_present(obj, &["jsonPath", "json_path"]) {
            Some((field, value)) => Some(rules::json_path(field, value)?),
            None => None,
        };
        let date_field = optional_str(obj, "dateField")?;
        let timezone = optional_str(obj, "timezone")?;
        let date_format = match optional_str(obj, "dateFormat")? {
            Some(pattern) => Some(DateFormat::compile(&pattern, timezone.as_deref())?),
            None if timezone.is_some() => Some(DateFormat::rfc3339_with_zone(timezone.as_deref())?),
            None => None,
        };
        for field in ["regex", "ml_regex", "ml_end_regex", "dateRegex"] {
            if let Some(pattern) = optional_str(obj, field)? {
                // Compiled only to report typos early; audit input is JSON, so the line parsers are unused.
                regex::Regex::new(&pattern).map_err(|e| ConfigError::regex(field, &e))?;
                if field != "dateRegex" {
                    warnings.push(format!(
                        "field `{field}` is ignored: audit events are parsed as JSON"
                    ));
                }
            }
        }
        let filters = match obj.get("filterConfig") {
            Some(v) => rules::filters(v)?,
            None => Vec::new(),
        };
        let masks = match first_present(obj, &["maskingConfig", "masking"]) {
            Some((field, v)) => rules::masks(field, v, &mut warnings)?,
            None => Vec::new(),
        };
        let hashes = match first_present(obj, &["hashingConfig", "hashing"]) {
            Some((field, v)) => rules::hashes(field, v)?,
            None => Vec::new(),
        };
        let derives = match first_present(obj, &["derivedConfig", "derived"]) {
            Some((field, v)) => rules::derives(field, v)?,
            None => Vec::new(),
        };
        let ignored_fields = match first_present(obj, &["ignoredFields", "ignored_fields"]) {
            Some((field, v)) => string_list(field, v)?,
            None => Vec::new(),
        };
        let api_upload = match obj.get("apiUpload") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => !s.eq_ignore_ascii_case("false"),
            Some(_) => return Err(ConfigError::wrong_type("apiUpload", "a boolean")),
        };
        Ok(Self {
            api_key,
            log_type,
            upload_host,
            json_path,
            date_field,
            date_format,
            filters,
            masks,
            hashes,
            derives,
            ignored_fields,
            api_upload,
            warnings,
        })
    }

    /// `https://<uploadDomain>/upload`. Always HTTPS.
    pub fn upload_url(&self) -> String {
        format!("https://{}/upload", self.upload_host)
    }
}

/// Site24x7 data-centre domains map to their log collectors; anything else (a proxy, a test receiver) is used as given.
///
/// Only a host with an optional port gets through: a DNS name, an IPv4 address or a bracketed IPv6 address.
/// Userinfo (`logc.site24x7.com@attacker.example` would send the key to `attacker.example`), a path, a query,
/// a fragment or whitespace is refused, naming the field and never the value. A pasted `https://` prefix and
/// a trailing `/` are tolerated.
fn upload_host(domain: &str) -> Result<String, ConfigError> {
    let domain = domain.trim();
    if domain.starts_with("http://") {
        return Err(ConfigError::InsecureUploadDomain);
    }
    let domain = domain.strip_prefix("https://").unwrap_or(domain);
    let domain = domain.strip_suffix('/').unwrap_or(domain);
    if !is_host_and_port(domain) {
        return Err(ConfigError::wrong_type(
            "uploadDomain",
            "a host name or IP address, optionally with :port (no user, path, query or fragment)",
        ));
    }
    const DATA_CENTRES: [&str; 6] = ["com", "in", "eu", "net.au", "cn", "jp"];
    match domain.strip_prefix("site24x7.") {
        Some(tld) if DATA_CENTRES.contains(&tld) => Ok(format!("logc.site24x7.{tld}")),
        _ => Ok(domain.to_string()),
    }
}

/// `host[:port]` with host a DNS name (letters, digits, `-` between them, dot-separated labels of ≤63 bytes,
/// ≤253 in all), an IPv4 address, or `[IPv6]`; port 1–65535.
fn is_host_and_port(text: &str) -> bool {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return false;
        };
        if inside.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return false,
            },
        }
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(text), None),
        }
    };
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u16>().is_ok_and(|n| n > 0)
    });
    let host_ok = host.is_none_or(|h| h.parse::<std::net::Ipv4Addr>().is_ok() || is_dns_name(h));
    port_ok && host_ok
}

fn is_dns_name(host: &str) -> bool {
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    // All-numeric dotted names are IPv4 or nothing (`1.2.3.999` must not pass as a name).
    let numeric = host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    (1..=253).contains(&host.len()) && !numeric && host.split('.').all(label_ok)
}

fn first_present<'a>(
    obj: &'a Map<String, Value>,
    names: &[&'static str],
) -> Option<(&'static str, &'a Value)> {
    names
        .iter()
        .find_map(|name| obj.get(*name).filter(|v| !v.is_null()).map(|v| (*name, v)))
}

fn required_str(obj: &Map<String, Value>, field: &'static str) -> Result<String, ConfigError> {
    match optional_str(obj, field)? {
        Some(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(ConfigError::Missing(field)),
    }
}

fn optional_str(
    obj: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, ConfigError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ConfigError::wrong_type(field, "a string")),
    }
}

fn string_list(field: &str, value: &Value) -> Result<Vec<String>, ConfigError> {
    let Value::Array(items) = value else {
        return Err(ConfigError::wrong_type(field, "an array of strings"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Ok(s.clone()),
            _ => Err(ConfigError::wrong_type(format!("{field}[{i}]"), "a string")),
        })
        .collect()
}

/// Compile a `jsonPath` array given on its own (profile templates); `field` names it in errors.
pub fn compile_json_path(field: &str, value: &Value) -> Result<Vec<JsonPathEntry>, ConfigError> {
    rules::json_path(field, value)
}

#[cfg(test)]
mod tests;
