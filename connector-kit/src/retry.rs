//! Retries with capped exponential backoff and full jitter.
//!
//! A task's calls may block, but not for long: `put` must return well within
//! the consumer's poll interval, and the worker retries whole calls itself
//! (ARCHITECTURE.md, invariant 7). Retry inside a call only to ride out a
//! blip (a reset connection, one 503), with a small `max_elapsed`; return
//! `Retriable` for an outage and let the worker back off.
//!
//! ```
//! use std::time::Duration;
//! use connector_kit::retry::{retry, RetryPolicy};
//!
//! let policy = RetryPolicy::default().max_attempts(3).initial(Duration::ZERO);
//! let mut calls = 0;
//! let got: Result<u32, &str> = retry(&policy, |_attempt| {
//!     calls += 1;
//!     if calls < 3 { Err("reset") } else { Ok(7) }
//! }, |e| *e == "reset");
//! assert_eq!((got, calls), (Ok(7), 3));
//! ```

use std::time::{Duration, Instant};

/// How often and how long to retry.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: no retry).
    pub max_attempts: u32,
    /// No new attempt starts after this long since the first one.
    pub max_elapsed: Option<Duration>,
    /// The backoff ceiling of the first retry.
    pub initial: Duration,
    /// The ceiling never grows past this.
    pub max_delay: Duration,
    /// The ceiling's growth per retry.
    pub multiplier: f64,
    /// Full jitter (a uniform delay in `[0, ceiling]`, AWS's recommendation
    /// for many clients retrying at once); without it the delay is the ceiling.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    /// Four attempts over at most 30 s, from 100 ms doubling up to 5 s, jittered.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            max_elapsed: Some(Duration::from_secs(30)),
            initial: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            multiplier: 2.0,
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retry (the worker retries the whole call).
    pub fn none() -> Self {
        RetryPolicy { max_attempts: 1, ..RetryPolicy::default() }
    }
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }
    pub fn max_elapsed(mut self, d: Option<Duration>) -> Self {
        self.max_elapsed = d;
        self
    }
    pub fn initial(mut self, d: Duration) -> Self {
        self.initial = d;
        self
    }
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }
    pub fn multiplier(mut self, m: f64) -> Self {
        self.multiplier = m.max(1.0);
        self
    }
    pub fn jitter(mut self, on: bool) -> Self {
        self.jitter = on;
        self
    }

    /// The ceiling of the delay before retry `retry` (0 for the first retry):
    /// `min(max_delay, initial × multiplier^retry)`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = self.multiplier.powi(retry.min(64) as i32);
        let secs = (self.initial.as_secs_f64() * factor).min(self.max_delay.as_secs_f64());
        Duration::try_from_secs_f64(secs).unwrap_or(self.max_delay)
    }

    /// A fresh backoff schedule starting now.
    pub fn backoff(&self) -> Backoff {
        Backoff { policy: self.clone(), retries: 0, started: Instant::now(), rng: fastrand::Rng::new() }
    }
}

/// One run of a policy: the delays before each retry, until it gives up.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    retries: u32,
    started: Instant,
    rng: fastrand::Rng,
}

impl Backoff {
    /// The same schedule with a seeded jitter (for tests).
    pub fn seeded(mut self, seed: u64) -> Self {
        self.rng = fastrand::Rng::with_seed(seed);
        self
    }

    /// Retries so far.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// The delay before the next attempt, or `None` when the policy gives up.
    /// `hint` is what the other side asked for (`Retry-After`): it is waited
    /// for instead of the backoff when longer, but never past `max_delay`.
    pub fn next_delay(&mut self, hint: Option<Duration>) -> Option<Duration> {
        if self.retries + 1 >= self.policy.max_attempts {
            return None;
        }
        let ceiling = self.policy.ceiling(self.retries);
        let mut delay = if self.policy.jitter { ceiling.mul_f64(self.rng.f64()) } else { ceiling };
        if let Some(hint) = hint {
            delay = delay.max(hint.min(self.policy.max_delay));
        }
        if let Some(max) = self.policy.max_elapsed {
            if self.started.elapsed() + delay > max {
                return None;
            }
        }
        self.retries += 1;
        Some(delay)
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Give up: return this error.
    Stop,
    /// Retry after the policy's backoff.
    Retry,
    /// Retry, waiting at least this long (the server's `Retry-After`).
    RetryAfter(Duration),
}

/// Runs `op` (given the attempt number, from 0) until it succeeds, the error
/// is not retriable, or the policy gives up; returns the last result.
pub fn retry<T, E>(
    policy: &RetryPolicy,
    op: impl FnMut(u32) -> Result<T, E>,
    is_retriable: impl Fn(&E) -> bool,
) -> Result<T, E> {
    retry_with(policy, op, |e| if is_retriable(e) { Decision::Retry } else { Decision::Stop })
}

/// [`retry`] where each error decides, and may carry the server's
/// `Retry-After` ([`Decision::RetryAfter`]).
pub fn retry_with<T, E>(
    policy: &RetryPolicy,
    op: impl FnMut(u32) -> Result<T, E>,
    decide: impl Fn(&E) -> Decision,
) -> Result<T, E> {
    retry_sleeping(&mut policy.backoff(), op, decide, std::thread::sleep)
}

/// [`retry_with`] over a given schedule and sleep function (tests pass one
/// that records the delays instead of sleeping).
pub fn retry_sleeping<T, E>(
    backoff: &mut Backoff,
    mut op: impl FnMut(u32) -> Result<T, E>,
    decide: impl Fn(&E) -> Decision,
    mut sleep: impl FnMut(Duration),
) -> Result<T, E> {
    let mut attempt = 0;
    loop {
        let e = match op(attempt) {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let hint = match decide(&e) {
            Decision::Stop => return Err(e),
            Decision::Retry => None,
            Decision::RetryAfter(d) => Some(d),
        };
        let Some(delay) = backoff.next_delay(hint) else { return Err(e) };
        if !delay.is_zero() {
            sleep(delay);
        }
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ceilings_grow_exponentially_up_to_the_cap() {
        let p = RetryPolicy::default().initial(100 * MS).max_delay(1000 * MS).multiplier(2.0);
        let table = [(0, 100), (1, 200), (2, 400), (3, 800), (4, 1000), (40, 1000), (u32::MAX, 1000)];
        for (retry, ms) in table {
            assert_eq!(p.ceiling(retry), ms * MS, "retry {retry}");
        }
    }

    #[test]
    fn jitter_stays_under_the_ceiling_and_attempts_are_bounded() {
        let p = RetryPolicy::default().max_attempts(6).initial(100 * MS).max_delay(300 * MS).max_elapsed(None);
        let mut b = p.backoff().seeded(7);
        let delays: Vec<Duration> = std::iter::from_fn(|| b.next_delay(None)).collect();
        assert_eq!(delays.len(), 5, "six attempts: five retries");
        for (i, d) in delays.iter().enumerate() {
            assert!(*d <= p.ceiling(i as u32), "retry {i}: {d:?}");
        }
        assert!(delays.iter().collect::<std::collections::HashSet<_>>().len() > 1, "jittered: {delays:?}");
        let mut plain = p.clone().jitter(false).backoff();
        let delays: Vec<Duration> = std::iter::from_fn(|| plain.next_delay(None)).collect();
        assert_eq!(delays, [100 * MS, 200 * MS, 300 * MS, 300 * MS, 300 * MS]);
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap_and_elapsed_time_bounds_the_schedule() {
        let p = RetryPolicy::default().max_attempts(10).initial(MS).max_delay(2000 * MS).jitter(false);
        let mut b = p.clone().max_elapsed(None).backoff();
        assert_eq!(b.next_delay(Some(1500 * MS)), Some(1500 * MS));
        assert_eq!(b.next_delay(Some(9000 * MS)), Some(2000 * MS), "capped");
        assert_eq!(b.next_delay(None), Some(4 * MS));
        let mut short = p.max_elapsed(Some(1000 * MS)).backoff();
        assert_eq!(short.next_delay(Some(1500 * MS)), None, "would end past max_elapsed");
        assert_eq!(RetryPolicy::none().backoff().next_delay(None), None);
    }

    #[test]
    fn retry_runs_until_success_or_a_final_error() {
        let p = RetryPolicy::default().max_attempts(4).jitter(false).initial(10 * MS).max_elapsed(None);
        // (failures before success, retriable?, want result, want attempts, want sleeps)
        type Case = (u32, bool, Result<u32, u32>, u32, &'static [u64]);
        let table: &[Case] = &[
            (0, true, Ok(0), 1, &[]),
            (2, true, Ok(2), 3, &[10, 20]),
            (9, true, Err(3), 4, &[10, 20, 40]),
            (9, false, Err(0), 1, &[]),
        ];
        for (fail, retriable, want, attempts, sleeps) in table {
            let mut calls = 0;
            let mut slept = Vec::new();
            let got = retry_sleeping(
                &mut p.backoff(),
                |attempt| {
                    calls += 1;
                    if attempt < *fail {
                        Err(attempt)
                    } else {
                        Ok(attempt)
                    }
                },
                |_| if *retriable { Decision::Retry } else { Decision::Stop },
                |d| slept.push(d.as_millis() as u64),
            );
            assert_eq!((got, calls, slept.as_slice()), (*want, *attempts, *sleeps), "{fail} failures");
        }
    }

    #[test]
    fn retry_with_passes_the_servers_delay() {
        let p = RetryPolicy::default().jitter(false).initial(MS).max_elapsed(None);
        let mut slept = Vec::new();
        let got: Result<(), &str> = retry_sleeping(
            &mut p.backoff(),
            |a| if a == 0 { Err("429") } else { Ok(()) },
            |_| Decision::RetryAfter(700 * MS),
            |d| slept.push(d),
        );
        assert_eq!((got, slept), (Ok(()), vec![700 * MS]));
    }
}
