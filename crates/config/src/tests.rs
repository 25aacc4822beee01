#![allow(clippy::unwrap_used)]

use super::*;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::DateTime;
use serde_json::json;

const SECRET: &str = "sk-ab+/cd==SECRET-KEY-123";

fn encode(value: &Value) -> String {
    STANDARD.encode(value.to_string())
}

fn minimal() -> Value {
    json!({"apiKey": SECRET, "logType": "Kubernetes Audit Logs", "uploadDomain": "site24x7.eu"})
}

#[test]
fn accepts_standard_and_url_safe_base64_with_or_without_padding_and_whitespace() {
    // A payload whose base64 has '+', '/' and padding, so the alphabets really differ.
    let json =
        json!({"apiKey": "??>>~~", "logType": "t", "uploadDomain": "site24x7.com", "x": "ÿÿ"})
            .to_string();
    let standard = STANDARD.encode(&json);
    assert!(standard.contains('+') || standard.contains('/'));
    let url_safe = URL_SAFE_NO_PAD.encode(&json);
    let wrapped = format!("  {}\n{}\n", &standard[..10], &standard[10..]);
    for text in [
        standard.as_str(),
        standard.trim_end_matches('='),
        url_safe.as_str(),
        wrapped.as_str(),
    ] {
        let cfg = LogTypeConfig::decode(text).unwrap();
        assert_eq!(cfg.api_key.expose(), "??>>~~");
    }
}

#[test]
fn upload_domain_is_a_host_and_port_and_nothing_else() {
    let mut v = minimal();
    for ok in [
        "logc.site24x7.com",
        "https://logc.site24x7.com/",
        "127.0.0.1:8443",
        "[::1]:8443",
        "[2001:db8::1]",
        "proxy-1.internal.example:443",
        "localhost",
    ] {
        v["uploadDomain"] = json!(ok);
        assert!(LogTypeConfig::decode(&encode(&v)).is_ok(), "{ok}");
    }
    for bad in [
        "logc.site24x7.com@attacker.example",
        "user:pw@logc.site24x7.com",
        "logc.site24x7.com/upload",
        "logc.site24x7.com?x=1",
        "logc.site24x7.com#frag",
        "logc.site24x7.com bad",
        "logc.site\t24x7.com",
        "logc.site24x7.com:0",
        "logc.site24x7.com:99999",
        "logc.site24x7.com:",
        "logc.site24x7.com:+443",
        "-bad.example",
        "bad-.example",
        "a..b",
        "1.2.3.999",
        "[::1",
        "[not-v6]:443",
        "::1",
        "exa_mple.com",
        "",
    ] {
        v["uploadDomain"] = json!(bad);
        let Err(err) = LogTypeConfig::decode(&encode(&v)) else {
            panic!("accepted {bad:?}")
        };
        let text = err.to_string();
        assert!(
            text.contains("`uploadDomain`") || bad.is_empty(),
            "{bad:?}: {text}"
        );
        // The message names the field, never the value.
        assert!(bad.is_empty() || !text.contains(bad), "{text}");
    }
}

#[test]
fn site24x7_domains_map_to_collectors_and_others_pass_through() {
    let mut v = minimal();
    let cfg = LogTypeConfig::decode(&encode(&v)).unwrap();
    assert_eq!(cfg.upload_url(), "https://logc.site24x7.eu/upload");
    v["uploadDomain"] = json!("127.0.0.1:8443");
    assert_eq!(
        LogTypeConfig::decode(&encode(&v)).unwrap().upload_url(),
        "https://127.0.0.1:8443/upload"
    );
    v["uploadDomain"] = json!("http://evil.example");
    assert_eq!(
        LogTypeConfig::decode(&encode(&v)).unwrap_err(),
        ConfigError::InsecureUploadDomain
    );
}

#[test]
fn errors_name_the_field_and_never_the_value() {
    let cases: Vec<(Value, &str)> = vec![
        (json!({"logType": "t", "uploadDomain": "d"}), "`apiKey`"),
        (json!({"apiKey": SECRET, "uploadDomain": "d"}), "`logType`"),
        (json!({"apiKey": SECRET, "logType": "t"}), "`uploadDomain`"),
        (
            json!({"apiKey": SECRET, "logType": "t", "uploadDomain": "d", "jsonPath": [{"key": "x"}]}),
            "`jsonPath[0].name`",
        ),
        (
            json!({"apiKey": SECRET, "logType": "t", "uploadDomain": "d", "filterConfig": {"verb": {"match": true, "values": ["ok", "(unclosed"]}}}),
            "`filterConfig.verb.values[1]`",
        ),
        (
            json!({"apiKey": SECRET, "logType": "t", "uploadDomain": "d", "maskingConfig": {"username": {"regex": "[", "string": SECRET}}}),
            "`maskingConfig.username.regex`",
        ),
        (
            json!({"apiKey": SECRET, "logType": "t", "uploadDomain": "d", "derivedConfig": {"requesturi": ["(?<x>a", "b"]}}),
            "`derivedConfig.requesturi[0]`",
        ),
        (
            json!({"apiKey": SECRET, "logType": "t", "uploadDomain": "d", "dateFormat": "%Y-%Q"}),
            "`%Q`",
        ),
        (
            json!({"apiKey": SECRET, "logType": "t", "uploadDomain": "d", "timezone": "EST"}),
            "`timezone`",
        ),
        (
            json!({"apiKey": 42, "logType": "t", "uploadDomain": "d"}),
            "`apiKey`",
        ),
    ];
    for (value, expected) in cases {
        let message = LogTypeConfig::decode(&encode(&value))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains(expected),
            "{message:?} should name {expected}"
        );
        assert!(!message.contains("SECRET"), "{message:?} leaks the key");
    }
    assert_eq!(
        LogTypeConfig::decode("!!!not base64!!!").unwrap_err(),
        ConfigError::Base64
    );
    assert_eq!(
        LogTypeConfig::decode(&STANDARD.encode("{\"apiKey\": ")).unwrap_err(),
        ConfigError::Json {
            line: 1,
            column: 11
        }
    );
    assert_eq!(
        LogTypeConfig::decode(&STANDARD.encode("[1]")).unwrap_err(),
        ConfigError::NotAnObject
    );
    assert_eq!(
        LogTypeConfig::decode("  \n").unwrap_err(),
        ConfigError::Empty
    );
}

#[test]
fn debug_output_never_shows_the_key_or_mask_strings() {
    let mut v = minimal();
    v["maskingConfig"] = json!({"username": {"regex": "(.*)", "string": "MASK-SECRET"}});
    let cfg = LogTypeConfig::decode(&encode(&v)).unwrap();
    let debug = format!("{cfg:?} {:?}", cfg.api_key);
    assert!(!debug.contains("SECRET"), "{debug}");
}

#[test]
fn aliases_and_all_documented_fields_are_read() {
    let v = json!({
        "apiKey": SECRET, "logType": "t", "uploadDomain": "d",
        "json_path": [{"name": "verb"}, {"name": "annotations", "type": "json-object"}],
        "dateField": "requestreceivedtimestamp", "dateFormat": "%Y-%m-%dT%H:%M:%S.%fZ", "timezone": "+05:30",
        "filterConfig": {"verb": {"match": false, "values": ["get", "list"], "exact": true}},
        "masking": {"username": {"regex": "user-(\\d+)", "string": "***"}},
        "hashing": {"sourceip": {"regex": "(.*)"}},
        "derived": {"requesturi": ["/api/(?<apiversion>v\\d)/"]},
        "ignored_fields": ["useragent"],
        "regex": "(?P<x>.*)", "dateRegex": "^\\d", "configTypes": {"x": "@filepath:1"},
        "apiUpload": true, "someFutureKey": 1
    });
    let cfg = LogTypeConfig::decode(&encode(&v)).unwrap();
    let paths = cfg.json_path.as_ref().unwrap();
    assert_eq!(
        (paths[0].name.as_str(), paths[0].key.as_str()),
        ("verb", "verb")
    );
    assert_eq!(paths[1].value_type, ValueType::JsonObject);
    assert_eq!(cfg.filters.len(), 1);
    assert!(!cfg.filters[0].include);
    assert!(cfg.filters[0].regex.is_match("get") && !cfg.filters[0].regex.is_match("getx"));
    assert_eq!(
        (cfg.masks.len(), cfg.hashes.len(), cfg.derives.len()),
        (1, 1, 1)
    );
    assert_eq!(cfg.ignored_fields, vec!["useragent".to_string()]);
    assert!(cfg.warnings.iter().any(|w| w.contains("`regex`")));
    assert!(matches!(
        cfg.date_format,
        Some(DateFormat::Pattern {
            has_zone: false,
            ..
        })
    ));
}

#[test]
fn missing_date_settings_are_not_fatal() {
    let cfg = LogTypeConfig::decode(&encode(&minimal())).unwrap();
    assert!(cfg.date_format.is_none() && cfg.date_field.is_none());
}

#[test]
fn strptime_patterns_accept_nine_fraction_digits_zulu_and_offsets() {
    let f = DateFormat::compile("%Y-%m-%dT%H:%M:%S.%fZ", None).unwrap();
    let micro = f
        .parse_ms(&json!("2026-04-20T16:32:59.930178Z"), NOW)
        .unwrap();
    assert_eq!(micro, 1_776_702_779_930);
    assert_eq!(
        f.parse_ms(&json!("2026-04-20T16:32:59.930178417Z"), NOW)
            .unwrap(),
        micro
    );
    assert_eq!(
        f.parse_ms(&json!("2026-04-20T16:32:59Z"), NOW).unwrap(),
        micro - 930
    );

    let zoned = DateFormat::compile("%Y-%m-%dT%H:%M:%S%z", Some("+0100")).unwrap();
    assert_eq!(
        zoned
            .parse_ms(&json!("2026-04-20T18:32:59+02:00"), NOW)
            .unwrap(),
        micro - 930
    );
    assert_eq!(
        zoned.parse_ms(&json!("2026-04-20T16:32:59Z"), NOW).unwrap(),
        micro - 930
    );

    // timezone applies only without %z.
    let local = DateFormat::compile("%d/%b/%Y:%H:%M:%S", Some("+0530")).unwrap();
    assert_eq!(
        local.parse_ms(&json!("20/Apr/2026:22:02:59"), NOW).unwrap(),
        micro - 930
    );
    assert_eq!(
        f.parse_ms(&json!("yesterday"), NOW),
        Err(DateParseError::NoMatch)
    );
    assert_eq!(
        f.parse_ms(&json!(null), NOW),
        Err(DateParseError::WrongType)
    );
}

/// 2026-12-03T00:00:00Z: the tests' "now".
const NOW: i64 = 1_796_256_000_000;

#[test]
fn implausible_times_are_errors_never_zero_or_saturated() {
    let unix = DateFormat::compile("unix", None).unwrap();
    let millis = DateFormat::compile("unix_ms", None).unwrap();
    for value in [
        json!("NaN"),
        json!("inf"),
        json!("-inf"),
        json!(1e300),
        json!(0),
        json!(-5),
        json!("1e19"),
    ] {
        assert_eq!(
            unix.parse_ms(&value, NOW),
            Err(DateParseError::Implausible),
            "{value}"
        );
        assert_eq!(
            millis.parse_ms(&value, NOW),
            Err(DateParseError::Implausible),
            "{value}"
        );
    }
    let rfc = DateFormat::default();
    for text in [
        "1970-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
        "1999-12-31T23:59:59Z",
        "2026-12-04T00:00:01Z",
        "9999-12-31T23:59:59Z",
    ] {
        assert_eq!(
            rfc.parse_text_ms(text, NOW),
            Err(DateParseError::Implausible),
            "{text}"
        );
    }
    let pattern = DateFormat::compile("%Y-%m-%d %H:%M:%S", None).unwrap();
    assert_eq!(
        pattern.parse_ms(&json!("0001-01-01 00:00:00"), NOW),
        Err(DateParseError::Implausible)
    );
    // The window's edges: 2000-01-01 and a day ahead are still fine.
    assert_eq!(
        rfc.parse_text_ms("2000-01-01T00:00:00Z", NOW),
        Ok(EARLIEST_PLAUSIBLE_MS)
    );
    assert_eq!(
        rfc.parse_text_ms("2026-12-04T00:00:00Z", NOW),
        Ok(NOW + 86_400_000)
    );
}

#[test]
fn unix_and_agent_time_formats() {
    let s = DateFormat::compile("unix", None).unwrap();
    assert_eq!(
        s.parse_ms(&json!(1_700_000_000), NOW).unwrap(),
        1_700_000_000_000
    );
    assert_eq!(
        s.parse_ms(&json!("1700000000.5"), NOW).unwrap(),
        1_700_000_000_500
    );
    let ms = DateFormat::compile("unix_ms", None).unwrap();
    assert_eq!(
        ms.parse_ms(&json!("1700000000123"), NOW).unwrap(),
        1_700_000_000_123
    );
    let agent = DateFormat::compile("agent_time", None).unwrap();
    assert_eq!(agent.parse_ms(&json!("whatever"), NOW).unwrap(), NOW);
}

#[test]
fn year_less_pattern_uses_last_year_when_this_year_is_in_the_future() {
    let f = DateFormat::compile("%b %d %H:%M:%S", None).unwrap();
    let now = DateTime::parse_from_rfc3339("2026-01-02T00:00:00Z")
        .unwrap()
        .timestamp_millis();
    let dec = f.parse_ms(&json!("Dec 31 23:00:00"), now).unwrap();
    assert_eq!(
        dec,
        DateTime::parse_from_rfc3339("2025-12-31T23:00:00Z")
            .unwrap()
            .timestamp_millis()
    );
    let jan = f.parse_ms(&json!("Jan 01 23:00:00"), now).unwrap();
    assert_eq!(
        jan,
        DateTime::parse_from_rfc3339("2026-01-01T23:00:00Z")
            .unwrap()
            .timestamp_millis()
    );
}

#[test]
fn default_format_reads_rfc3339_and_naive_utc() {
    let f = DateFormat::default();
    assert_eq!(
        f.parse_ms(&json!("2026-04-20T18:32:59.930+02:00"), NOW)
            .unwrap(),
        1_776_702_779_930
    );
    assert_eq!(
        f.parse_ms(&json!("2022-11-29 00:09:04.38"), NOW).unwrap(),
        1_669_680_544_380
    );
}

/// App Service leaves `@Microsoft.KeyVault(...)` in the setting when it cannot read the secret: say that, not
/// "not valid base64".
#[test]
fn an_unresolved_key_vault_reference_is_named_as_such() {
    let error = LogTypeConfig::decode(
        "@Microsoft.KeyVault(SecretUri=https://kv-kaf.vault.azure.net/secrets/logtypeconfig/)",
    )
    .unwrap_err();
    assert_eq!(error, ConfigError::UnresolvedKeyVaultReference);
    let message = error.to_string();
    assert!(message.contains("Key Vault Secrets User"), "{message}");
    assert!(message.contains("restart the app"), "{message}");
}
