//! The one retry schedule of the project: capped exponential backoff with jitter, plus what a server may
//! say about it (`Retry-After`). The upload client, drain mode, `serve`'s delivery loop, `tail` and the
//! Lambda's secret fetch all wait through [`Backoff`], so they behave alike and are tested once.
//!
//! Waiting uses tokio's clock ([`Backoff::wait`]), so tests drive it with `tokio::time::pause` instead of
//! sleeping; the jitter source can be seeded ([`Backoff::seeded`]) so a schedule is reproducible.

use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// Capped exponential backoff. Attempt `n` (0-based) waits a uniform time in
/// `[min(base, ceiling)/2, ceiling]` with `ceiling = min(max, base·2ⁿ)` ("equal jitter"): spread out so
/// many clients do not retry in step, never less than half the base.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
    rng: fastrand::Rng,
    jitter: bool,
}

impl Backoff {
    /// Jitter from a random seed.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base: base.max(Duration::from_millis(1)),
            max: max.max(base),
            attempt: 0,
            rng: fastrand::Rng::new(),
            jitter: true,
        }
    }

    /// Jitter from `seed`: the same schedule on every run.
    pub fn seeded(base: Duration, max: Duration, seed: u64) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(seed),
            ..Self::new(base, max)
        }
    }

    /// No jitter: exactly `min(max, base·2ⁿ)` (for loops where one process alone retries, like `tail`).
    pub fn exact(base: Duration, max: Duration) -> Self {
        Self {
            jitter: false,
            ..Self::new(base, max)
        }
    }

    /// The smallest delay this schedule waits: a server's `Retry-After` is never honoured below it.
    pub fn floor(&self) -> Duration {
        self.base
    }

    /// Attempts made since the last [`Backoff::reset`].
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Start over (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The delay before the next attempt; advances the schedule.
    pub fn next_delay(&mut self) -> Duration {
        let base = millis(self.base);
        let cap = millis(self.max);
        let ceiling = base
            .saturating_mul(1u64 << self.attempt.min(32))
            .min(cap)
            .max(1);
        self.attempt = self.attempt.saturating_add(1);
        if !self.jitter {
            return Duration::from_millis(ceiling);
        }
        Duration::from_millis(self.rng.u64((base.min(ceiling) / 2)..=ceiling))
    }

    /// The delay before the next attempt when the server asked for `hint` (`Retry-After`): the hint, but never
    /// less than [`Backoff::floor`] (`Retry-After: 0` would otherwise make a tight loop). Advances the schedule.
    pub fn next_delay_with_hint(&mut self, hint: Option<Duration>) -> Duration {
        let own = self.next_delay();
        match hint {
            Some(hint) => hint.max(self.base),
            None => own,
        }
    }

    /// Wait `delay` on tokio's clock, unless that would pass `stop_at`: then return `false` at once, without
    /// waiting (there is no point in waiting for an attempt that may not be made). Overflow-safe for any delay.
    pub async fn wait(delay: Duration, stop_at: Option<Instant>) -> bool {
        let now = Instant::now();
        let Some(wake) = now.checked_add(delay) else {
            return false;
        };
        if stop_at.is_some_and(|stop| wake >= stop) {
            return false;
        }
        tokio::time::sleep_until(wake).await;
        true
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The longest `Retry-After` taken literally; anything longer means "not within any deadline we have".
const MAX_RETRY_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// A `Retry-After` value (RFC 9110 §10.2.3): delay-seconds or an HTTP-date, relative to `now`. A date in the
/// past is zero; absurd values are clamped (never an overflow); anything else unreadable is `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(
        date.duration_since(now)
            .unwrap_or_default()
            .min(MAX_RETRY_AFTER),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_within_the_jitter_band() {
        let mut b = Backoff::seeded(Duration::from_millis(100), Duration::from_secs(1), 7);
        let delays: Vec<u64> = (0..8).map(|_| b.next_delay().as_millis() as u64).collect();
        for (n, d) in delays.iter().enumerate() {
            let ceiling = (100u64 << n).min(1000);
            assert!((50..=ceiling).contains(d), "attempt {n}: {d} ms");
        }
        assert_eq!(b.attempts(), 8);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
        let mut exact = Backoff::exact(Duration::from_secs(1), Duration::from_secs(60));
        let schedule: Vec<u64> = (0..8).map(|_| exact.next_delay().as_secs()).collect();
        assert_eq!(schedule, [1, 2, 4, 8, 16, 32, 60, 60]);
        // Far past any attempt count, no overflow.
        let mut b = Backoff::new(Duration::from_secs(u64::MAX / 2), Duration::MAX);
        for _ in 0..100 {
            b.next_delay();
        }
    }

    #[test]
    fn a_server_hint_is_floored_at_the_base() {
        let mut b = Backoff::seeded(Duration::from_millis(500), Duration::from_secs(30), 1);
        assert_eq!(
            b.next_delay_with_hint(Some(Duration::ZERO)),
            Duration::from_millis(500)
        );
        assert_eq!(
            b.next_delay_with_hint(Some(Duration::from_secs(20))),
            Duration::from_secs(20)
        );
        assert!(b.next_delay_with_hint(None) <= Duration::from_secs(2));
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates_and_never_overflows() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("18446744073709551615", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999999", now),
            Some(MAX_RETRY_AFTER)
        );
        // 2015-10-21 07:28:00 GMT is `now`; a minute later, and a date in the past.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:29:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        for bad in ["", "-1", "1.5", "soon", "Wed, 99 Oct 2015 07:29:00 GMT"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_past_the_stop_time_returns_at_once() {
        let start = Instant::now();
        let stop = start + Duration::from_secs(10);
        assert!(Backoff::wait(Duration::from_secs(3), Some(stop)).await);
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        assert!(!Backoff::wait(Duration::from_secs(30), Some(stop)).await);
        assert!(!Backoff::wait(Duration::MAX, None).await);
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }
}
