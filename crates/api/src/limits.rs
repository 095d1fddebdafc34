//! Per-key rate limits: one token bucket for reads and one for writes per API key (governor's
//! GCRA, the same algorithm as a token bucket), so one tenant's loop cannot take the capacity
//! every other tenant shares. A refused request is a 429 in the Gcore error body with
//! `Retry-After`, which the official clients honour before retrying.

use std::num::NonZeroU32;
use std::time::Duration;

use axum::http::Method;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::error::ApiError;

type KeyedLimiter = RateLimiter<i64, HashMapStateStore<i64>, DefaultClock>;

/// The limits of one kind of request: `per_second` sustained, bursts of twice as many.
pub struct RateLimits {
    reads: Option<KeyedLimiter>,
    writes: Option<KeyedLimiter>,
    clock: DefaultClock,
}

fn limiter(per_second: u32) -> Option<KeyedLimiter> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(per_second.saturating_mul(2)).unwrap_or(rate);
    Some(RateLimiter::hashmap(Quota::per_second(rate).allow_burst(burst)))
}

impl RateLimits {
    /// `0` turns a limit off.
    pub fn new(reads_per_second: u32, writes_per_second: u32) -> RateLimits {
        RateLimits { reads: limiter(reads_per_second), writes: limiter(writes_per_second), clock: DefaultClock::default() }
    }

    /// Takes one token of `key_id`'s bucket for this kind of request, or says how long to wait.
    pub fn check(&self, key_id: i64, method: &Method) -> Result<(), ApiError> {
        let (limiter, kind) = if matches!(*method, Method::GET | Method::HEAD) { (&self.reads, "reads") } else { (&self.writes, "writes") };
        let Some(limiter) = limiter else { return Ok(()) };
        limiter.check_key(&key_id).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            ApiError::TooManyRequests {
                message: format!("Too many {kind} with this API key; retry in {} ms", wait.as_millis().max(1)),
                retry_after: retry_after_seconds(wait),
            }
        })
    }
}

/// `Retry-After` is whole seconds: round up, at least 1.
fn retry_after_seconds(wait: Duration) -> u64 {
    (wait.as_secs_f64().ceil() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_waits_and_other_keys_are_untouched() {
        let limits = RateLimits::new(5, 1);
        for _ in 0..10 {
            limits.check(1, &Method::GET).expect("a burst of twice the rate");
        }
        let Err(ApiError::TooManyRequests { retry_after, .. }) = limits.check(1, &Method::GET) else { panic!("the 11th read is refused") };
        assert_eq!(retry_after, 1);
        limits.check(2, &Method::GET).expect("another key has its own bucket");
        limits.check(1, &Method::POST).expect("writes have their own bucket");
        limits.check(1, &Method::DELETE).expect("a burst of two writes");
        assert!(limits.check(1, &Method::PATCH).is_err());
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let limits = RateLimits::new(0, 0);
        for _ in 0..10_000 {
            limits.check(1, &Method::POST).unwrap();
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1001)), 2);
    }
}
