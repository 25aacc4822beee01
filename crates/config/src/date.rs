//! `dateFormat`: Python `strptime` patterns (what Site24x7 users write) compiled to chrono formats, plus the
//! special values `unix`, `unix…` (milliseconds) and `agent_time`.
//!
//! Differences from Python, on purpose: `%f` takes 0–9 digits (audit MicroTime has 6, AKS `time` has 9), `%z`
//! also takes `Z` and `+hh:mm`. With no `dateFormat` at all, any RFC 3339 timestamp is accepted.

use crate::ConfigError;
use chrono::format::{Item, Parsed, StrftimeItems};
use chrono::{DateTime, Datelike, FixedOffset, NaiveDateTime, TimeZone, Utc};
use serde_json::Value;

/// A compiled `dateFormat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DateFormat {
    /// Any RFC 3339 timestamp (also `YYYY-MM-DD hh:mm:ss[.f]` read as UTC); `zone` applies when none is given.
    Rfc3339 { zone: Option<FixedOffset> },
    /// `unix`: epoch seconds, number or string.
    UnixSeconds,
    /// Any other value containing `unix`: epoch milliseconds.
    UnixMillis,
    /// `agent_time`: the time the forwarder processed the event.
    AgentTime,
    /// A strptime pattern translated to chrono.
    Pattern {
        chrono_format: String,
        /// `chrono_format` parsed once: chrono's `parse_from_str` reads the format again for every value.
        items: Vec<Item<'static>>,
        has_zone: bool,
        has_year: bool,
        zone: Option<FixedOffset>,
        /// `chrono_format` is [`ISO_ZULU`]: its usual values are read byte by byte ([`iso_zulu_ms`]).
        iso_zulu: bool,
    },
}

/// Why one timestamp could not be read. Carries no part of the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateParseError {
    #[error("timestamp has the wrong JSON type")]
    WrongType,
    #[error("timestamp does not match the date format")]
    NoMatch,
    /// It parsed, but to a time no audit event can have: before 2000-01-01 or more than a day ahead
    /// (`0`, `1970-01-01T00:00:00Z`, `0001-01-01`, `1e300` seconds, a clock far off).
    #[error("timestamp is outside the plausible window (2000-01-01 to a day from now)")]
    Implausible,
}

/// 2000-01-01T00:00:00Z: nothing audited by Kubernetes is older.
pub const EARLIEST_PLAUSIBLE_MS: i64 = 946_684_800_000;
/// How far ahead of the forwarder's clock an event time may be (clock skew, year-less patterns).
pub const MAX_FUTURE_MS: i64 = 86_400_000;

/// Whether `ms` can be an event time seen at `now_ms`: from 2000-01-01 to a day after `now_ms`.
pub fn plausible_ms(ms: i64, now_ms: i64) -> bool {
    ms >= EARLIEST_PLAUSIBLE_MS && ms <= now_ms.saturating_add(MAX_FUTURE_MS)
}

fn checked(ms: Result<i64, DateParseError>, now_ms: i64) -> Result<i64, DateParseError> {
    match ms {
        Ok(ms) if !plausible_ms(ms, now_ms) => Err(DateParseError::Implausible),
        other => other,
    }
}

/// Epoch `value × scale` as whole milliseconds, refusing NaN, infinities and anything beyond `i64`.
fn epoch_ms(value: f64, scale: f64) -> Result<i64, DateParseError> {
    let ms = (value * scale).round();
    // 2^63 is exactly representable; anything at or beyond it does not fit.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if ms.is_finite() && ms > -LIMIT && ms < LIMIT {
        Ok(ms as i64)
    } else {
        Err(DateParseError::Implausible)
    }
}

const SUPPORTED: &str = "YmdHMSfzyBbAaIpjT%";

impl DateFormat {
    /// Compile a `dateFormat` value, with the optional `timezone` (`+hhmm`, `-hh:mm`).
    pub fn compile(pattern: &str, timezone: Option<&str>) -> Result<Self, ConfigError> {
        let zone = timezone.map(parse_zone).transpose()?;
        if pattern == "agent_time" {
            return Ok(Self::AgentTime);
        }
        if pattern == "unix" {
            return Ok(Self::UnixSeconds);
        }
        if pattern.contains("unix") {
            return Ok(Self::UnixMillis);
        }
        let mut chrono_format = String::with_capacity(pattern.len() + 4);
        let (mut has_zone, mut has_year) = (false, false);
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                // `.%f` is chrono's `%.f`: the dot and 0–9 digits, all optional.
                if c == '.' && chars.peek() == Some(&'%') {
                    let mut ahead = chars.clone();
                    ahead.next();
                    if ahead.peek() == Some(&'f') {
                        chars.next();
                        chars.next();
                        chrono_format.push_str("%.f");
                        continue;
                    }
                }
                chrono_format.push(c);
                continue;
            }
            let directive = chars
                .next()
                .ok_or(ConfigError::DateDirective { directive: '%' })?;
            if !SUPPORTED.contains(directive) {
                return Err(ConfigError::DateDirective { directive });
            }
            match directive {
                'z' => {
                    has_zone = true;
                    chrono_format.push_str("%#z");
                }
                'f' => chrono_format.push_str("%.f"),
                'Y' | 'y' => {
                    has_year = true;
                    chrono_format.push('%');
                    chrono_format.push(directive);
                }
                _ => {
                    chrono_format.push('%');
                    chrono_format.push(directive);
                }
            }
        }
        if !has_year {
            chrono_format.insert_str(0, "%Y ");
        }
        // A format chrono cannot read fails every value, as `parse_from_str` would.
        let items = StrftimeItems::new(&chrono_format)
            .parse_to_owned()
            .unwrap_or_else(|_| vec![Item::Error]);
        Ok(Self::Pattern {
            iso_zulu: chrono_format == ISO_ZULU,
            chrono_format,
            items,
            has_zone,
            has_year,
            zone,
        })
    }

    /// The default format (RFC 3339) with a `timezone` for values that carry none.
    pub fn rfc3339_with_zone(timezone: Option<&str>) -> Result<Self, ConfigError> {
        Ok(Self::Rfc3339 {
            zone: timezone.map(parse_zone).transpose()?,
        })
    }

    /// [`DateFormat::parse_ms`] for a string value, without building a JSON value for the common case.
    pub fn parse_text_ms(&self, text: &str, now_ms: i64) -> Result<i64, DateParseError> {
        match self {
            Self::Rfc3339 { zone } => checked(
                parse_rfc3339_ms(text.trim(), *zone).ok_or(DateParseError::NoMatch),
                now_ms,
            ),
            Self::Pattern { .. } => checked(self.pattern_ms(text.trim(), now_ms), now_ms),
            other => other.parse_ms(&Value::String(text.to_string()), now_ms),
        }
    }

    /// Milliseconds since the epoch for `value`; `now_ms` serves `agent_time` and year-less patterns. A time
    /// outside [`plausible_ms`] is an error like any unreadable one, so the caller falls back and counts it.
    pub fn parse_ms(&self, value: &Value, now_ms: i64) -> Result<i64, DateParseError> {
        checked(self.parse_unchecked(value, now_ms), now_ms)
    }

    fn parse_unchecked(&self, value: &Value, now_ms: i64) -> Result<i64, DateParseError> {
        match self {
            Self::AgentTime => Ok(now_ms),
            Self::UnixSeconds => number(value).and_then(|s| epoch_ms(s, 1000.0)),
            Self::UnixMillis => number(value).and_then(|ms| epoch_ms(ms, 1.0)),
            Self::Rfc3339 { zone } => {
                let text = value.as_str().ok_or(DateParseError::WrongType)?.trim();
                parse_rfc3339_ms(text, *zone).ok_or(DateParseError::NoMatch)
            }
            Self::Pattern { .. } => {
                let owned;
                let text = match value {
                    Value::String(s) => s.trim(),
                    Value::Number(n) => {
                        owned = n.to_string();
                        &owned
                    }
                    _ => return Err(DateParseError::WrongType),
                };
                self.pattern_ms(text, now_ms)
            }
        }
    }

    /// A [`DateFormat::Pattern`]'s reading of `text` (trimmed), unchecked.
    fn pattern_ms(&self, text: &str, now_ms: i64) -> Result<i64, DateParseError> {
        let Self::Pattern {
            items,
            has_zone,
            has_year,
            zone,
            iso_zulu,
            ..
        } = self
        else {
            return Err(DateParseError::NoMatch);
        };
        if *iso_zulu && let Some(ms) = iso_zulu_ms(text, *zone) {
            return Ok(ms);
        }
        let parsed = |text: &str| {
            let mut parsed = Parsed::new();
            chrono::format::parse(&mut parsed, text, items.iter())
                .map(|()| parsed)
                .map_err(|_| DateParseError::NoMatch)
        };
        if *has_zone {
            return parsed(text)?
                .to_datetime()
                .map(|t| t.timestamp_millis())
                .map_err(|_| DateParseError::NoMatch);
        }
        let local = |text: &str| {
            parsed(text)?
                .to_naive_datetime_with_offset(0)
                .map(|naive| naive_to_ms(naive, *zone))
                .map_err(|_| DateParseError::NoMatch)
        };
        if *has_year {
            return local(text);
        }
        in_guessed_year(text, now_ms, local)
    }
}

/// The chrono format of `%Y-%m-%dT%H:%M:%S.%fZ`, the `dateFormat` Site24x7's pages write for audit timestamps.
const ISO_ZULU: &str = "%Y-%m-%dT%H:%M:%S%.fZ";

/// [`ISO_ZULU`]'s usual values (`2017-09-11T19:55:05.123456Z`: four-digit year, two-digit fields, a second
/// below 60, 1–9 fraction digits or none) read byte by byte: chrono's general parser took ~1 500
/// instructions an event, a few per cent of the mapping. `None` for anything else, which chrono then reads or
/// refuses as before; what this reads, chrono reads the same (property test).
fn iso_zulu_ms(text: &str, zone: Option<FixedOffset>) -> Option<i64> {
    let bytes = text.as_bytes();
    let number = |digits: &[u8]| {
        digits.iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let field = |at: usize, len: usize| number(bytes.get(at..at + len)?);
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if !separators.iter().all(|&(at, b)| bytes.get(at) == Some(&b)) {
        return None;
    }
    let (year, month, day) = (field(0, 4)?, field(5, 2)?, field(8, 2)?);
    let (hour, minute, second) = (field(11, 2)?, field(14, 2)?, field(17, 2)?);
    let (nanos, rest) = match bytes.get(19..)? {
        [b'.', after @ ..] => {
            let len = after.iter().take_while(|d| d.is_ascii_digit()).count();
            (1..=9).contains(&len).then_some(())?;
            (
                number(&after[..len])? * 10u32.pow(9 - len as u32),
                &after[len..],
            )
        }
        rest => (0, rest),
    };
    (rest == b"Z" && second < 60).then_some(())?;
    let date = chrono::NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?;
    Some(naive_to_ms(
        date.and_hms_nano_opt(hour, minute, second, nanos)?,
        zone,
    ))
}

/// `text` read by `local` with a year put in front (a pattern without one): this year, unless that puts the
/// event more than a day ahead of `now_ms`, then last year.
fn in_guessed_year<E>(
    text: &str,
    now_ms: i64,
    local: impl Fn(&str) -> Result<i64, E>,
) -> Result<i64, E> {
    let year = Utc
        .timestamp_millis_opt(now_ms)
        .single()
        .map_or(1970, |t| t.year());
    let this_year = local(&format!("{year} {text}"))?;
    if this_year > now_ms.saturating_add(MAX_FUTURE_MS) {
        local(&format!("{} {text}", year - 1))
    } else {
        Ok(this_year)
    }
}

impl Default for DateFormat {
    fn default() -> Self {
        Self::Rfc3339 { zone: None }
    }
}

fn naive_to_ms(naive: NaiveDateTime, zone: Option<FixedOffset>) -> i64 {
    match zone {
        Some(offset) => offset.from_local_datetime(&naive).single().map_or_else(
            || naive.and_utc().timestamp_millis(),
            |t| t.timestamp_millis(),
        ),
        None => naive.and_utc().timestamp_millis(),
    }
}

/// RFC 3339 with any fraction and a zone; without a zone (`2022-11-29 00:09:04.38`), `zone` or UTC.
fn parse_rfc3339_ms(text: &str, zone: Option<FixedOffset>) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_millis());
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .map(|naive| naive_to_ms(naive, zone))
}

fn number(value: &Value) -> Result<f64, DateParseError> {
    match value {
        Value::Number(n) => n.as_f64().ok_or(DateParseError::NoMatch),
        Value::String(s) => s.trim().parse::<f64>().map_err(|_| DateParseError::NoMatch),
        _ => Err(DateParseError::WrongType),
    }
}

fn parse_zone(text: &str) -> Result<FixedOffset, ConfigError> {
    let t = text.trim();
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1, &t[1..]),
        Some(b'-') => (-1, &t[1..]),
        _ => return Err(ConfigError::Timezone),
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(ConfigError::Timezone);
    }
    let hours: i32 = digits[..2].parse().map_err(|_| ConfigError::Timezone)?;
    if hours > 23 {
        return Err(ConfigError::Timezone);
    }
    let minutes: i32 = digits[2..].parse().map_err(|_| ConfigError::Timezone)?;
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60)).ok_or(ConfigError::Timezone)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    /// What a pattern read before its format was parsed once: chrono's `parse_from_str` with the format text.
    fn by_format_text(format: &DateFormat, text: &str, now_ms: i64) -> Option<i64> {
        let DateFormat::Pattern {
            chrono_format,
            has_zone,
            has_year,
            zone,
            ..
        } = format
        else {
            return None;
        };
        let text = text.trim();
        if *has_zone {
            return DateTime::parse_from_str(text, chrono_format)
                .map(|t| t.timestamp_millis())
                .ok();
        }
        let local = |text: &str| {
            NaiveDateTime::parse_from_str(text, chrono_format)
                .map(|naive| naive_to_ms(naive, *zone))
        };
        if *has_year {
            return local(text).ok();
        }
        // The year is guessed as production guesses it: what is compared is the parsing.
        in_guessed_year(text, now_ms, local).ok()
    }

    /// The production pattern read by chrono alone, as before the byte-by-byte reading.
    fn by_chrono(format: &DateFormat, text: &str) -> Option<i64> {
        let DateFormat::Pattern { items, zone, .. } = format else {
            return None;
        };
        let mut parsed = Parsed::new();
        chrono::format::parse(&mut parsed, text.trim(), items.iter()).ok()?;
        let naive = parsed.to_naive_datetime_with_offset(0).ok()?;
        Some(naive_to_ms(naive, *zone))
    }

    #[test]
    fn audit_timestamps_are_read_without_chrono() {
        // The production pattern takes the byte-by-byte reading; others do not.
        let takes_it = |format: &str| {
            matches!(
                DateFormat::compile(format, None).unwrap(),
                DateFormat::Pattern { iso_zulu: true, .. }
            )
        };
        assert!(takes_it("%Y-%m-%dT%H:%M:%S.%fZ"));
        assert!(!takes_it("%Y-%m-%dT%H:%M:%S%z") && !takes_it("%d/%b/%Y:%H:%M:%S"));
        for text in [
            "2017-09-11T19:55:05.123456Z",
            "2026-04-20T16:29:59.995191417Z",
            "2024-02-29T23:59:59Z",
            "2000-01-01T00:00:00.5Z",
        ] {
            let fast = iso_zulu_ms(text, None);
            assert!(fast.is_some(), "{text}");
            let format = DateFormat::compile("%Y-%m-%dT%H:%M:%S.%fZ", None).unwrap();
            assert_eq!(fast, by_chrono(&format, text), "{text}");
        }
        for odd in [
            "2017-09-11T19:55:60Z",
            "2017-02-30T19:55:05Z",
            "2017-09-11T19:55:05.Z",
            "2017-09-11T19:55:05.1234567890Z",
            "2017-09-11 19:55:05Z",
            "2017-9-11T19:55:05Z",
            "2017-09-11T19:55:05+00:00",
        ] {
            assert_eq!(iso_zulu_ms(odd, None), None, "{odd}");
        }
    }

    proptest! {
        /// Wherever the byte-by-byte reading answers, chrono answers the same, with and without a timezone:
        /// every field from `00` to `99` (months past 12, the 30th of February, hour 24, second 60), fractions
        /// of 0–12 digits, and the end cut, extended or replaced.
        #[test]
        fn iso_zulu_reads_as_chrono_does(
            year in 1990u32..2100,
            month in prop_oneof![4 => 1u32..=12, 1 => 0u32..100],
            day in prop_oneof![4 => 1u32..=31, 1 => 0u32..100],
            hour in prop_oneof![4 => 0u32..24, 1 => 0u32..100],
            minute in prop_oneof![4 => 0u32..60, 1 => 0u32..100],
            second in prop_oneof![4 => 0u32..60, 1 => 0u32..100],
            fraction in "[0-9]{0,12}",
            dot in prop_oneof![4 => Just(true), 1 => Just(false)],
            end in prop_oneof![8 => Just("Z".to_string()), 1 => "Z |z|[+-]0[0-9]:00|Z[0-9]|"],
            zone in prop::option::of("[+-]0[0-9]:[03]0"),
        ) {
            let dot = if dot { "." } else { "" };
            let text = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{dot}{fraction}{end}");
            let format = DateFormat::compile("%Y-%m-%dT%H:%M:%S.%fZ", zone.as_deref()).unwrap();
            let DateFormat::Pattern { zone, .. } = &format else { unreachable!() };
            if let Some(ms) = iso_zulu_ms(&text, *zone) {
                prop_assert_eq!(Some(ms), by_chrono(&format, &text), "{}", text);
            }
        }

        /// The formats parsed once read every value as chrono reading the format text did: the production
        /// pattern, two with a zone, one without a year, on timestamps as written and cut or extended.
        #[test]
        fn a_pattern_parsed_once_reads_as_parsing_its_text_did(
            seconds in 0i64..4_102_444_800,
            nanos in 0u32..1_000_000_000,
            digits in 0usize..10,
            cut in 0usize..40,
            junk in "[0-9 :.TZ+-]{0,3}",
        ) {
            let now = 1_796_256_000_000;
            let time = DateTime::from_timestamp(seconds, nanos).unwrap().naive_utc();
            let fraction = format!("{:09}", nanos);
            let texts = [
                format!("{}.{}Z", time.format("%Y-%m-%dT%H:%M:%S"), &fraction[..digits]),
                format!("{} +02:00", time.format("%Y-%m-%d %H:%M:%S")),
                format!("{}", time.format("%b %d %H:%M:%S")),
                format!("{} -0700", time.format("%d/%b/%Y:%H:%M:%S")),
            ];
            for pattern in ["%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%d %H:%M:%S %z", "%b %d %H:%M:%S", "%d/%b/%Y:%H:%M:%S %z"] {
                let format = DateFormat::compile(pattern, None).unwrap();
                for text in &texts {
                    let mangled = format!("{}{junk}", &text[..cut.min(text.len())]);
                    for text in [text.as_str(), mangled.as_str()] {
                        prop_assert_eq!(
                            format.parse_text_ms(text, now).ok(),
                            by_format_text(&format, text, now).filter(|ms| plausible_ms(*ms, now)),
                            "{} on {}", pattern, text
                        );
                    }
                }
            }
        }
    }
}
