//! A circuit breaker for one remote server.
//!
//! While the server keeps failing, every further request would cost a full timeout (energy
//! and latency on the device) for nothing; the breaker turns that into an immediate refusal
//! so the caller runs locally instead. Closed: requests pass and consecutive failures are
//! counted; after `failure_threshold` of them it opens. Open: requests are refused until
//! `cool_down` has passed. Half-open: exactly one probe request is let through; its success
//! closes the breaker, its failure opens it for another cool-down. A probe that never reports
//! back (a caller that gave up) frees the slot after one more cool-down.
//!
//! Time is passed in by the caller so that the state machine is tested without sleeping.

use std::time::{Duration, Instant};

/// When to open and how long to stay open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (at least 1).
    pub failure_threshold: u32,
    /// Time the breaker stays open before it lets one probe through.
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 3,
            cool_down: Duration::from_secs(5),
        }
    }
}

/// What a caller can observe of the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests pass.
    Closed,
    /// Requests are refused until the cool-down ends.
    Open,
    /// The cool-down has ended: the next request is a probe (or a probe is in flight).
    HalfOpen,
}

#[derive(Debug, Clone, Copy)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_since: Instant },
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    inner: Inner,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig) -> Self {
        CircuitBreaker {
            config: BreakerConfig {
                failure_threshold: config.failure_threshold.max(1),
                ..config
            },
            inner: Inner::Closed { failures: 0 },
        }
    }

    pub fn config(&self) -> BreakerConfig {
        self.config
    }

    /// The state as of `now` (an open breaker whose cool-down is over reads as half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.inner {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { until } if now < until => BreakerState::Open,
            Inner::Open { .. } | Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Consecutive failures counted while closed.
    pub fn consecutive_failures(&self) -> u32 {
        match self.inner {
            Inner::Closed { failures } => failures,
            Inner::Open { .. } | Inner::HalfOpen { .. } => self.config.failure_threshold,
        }
    }

    /// Asks to send one request at `now`. `Err(wait)` refuses it; `wait` is how long until a
    /// probe may be tried. Every `Ok` must be followed by [`record_success`] or
    /// [`record_failure`].
    ///
    /// [`record_success`]: CircuitBreaker::record_success
    /// [`record_failure`]: CircuitBreaker::record_failure
    pub fn try_acquire(&mut self, now: Instant) -> Result<(), Duration> {
        match self.inner {
            Inner::Closed { .. } => Ok(()),
            Inner::Open { until } => {
                if now >= until {
                    tracing::debug!("circuit half-open: sending one probe");
                    self.inner = Inner::HalfOpen { probe_since: now };
                    Ok(())
                } else {
                    Err(until - now)
                }
            }
            Inner::HalfOpen { probe_since } => {
                let free_at = probe_since + self.config.cool_down;
                if now >= free_at {
                    self.inner = Inner::HalfOpen { probe_since: now };
                    Ok(())
                } else {
                    Err(free_at - now)
                }
            }
        }
    }

    /// The server answered (even with a request error: it is alive): close the breaker.
    pub fn record_success(&mut self) {
        if !matches!(self.inner, Inner::Closed { .. }) {
            tracing::info!("circuit closed: the remote server answered");
        }
        self.inner = Inner::Closed { failures: 0 };
    }

    /// The request failed at `now` for a reason that says the server or the path to it is
    /// unhealthy.
    pub fn record_failure(&mut self, now: Instant) {
        match self.inner {
            Inner::Closed { failures } => {
                let failures = failures + 1;
                if failures >= self.config.failure_threshold {
                    tracing::warn!(
                        failures,
                        cool_down_ms = self.config.cool_down.as_millis() as u64,
                        "circuit open"
                    );
                    self.inner = Inner::Open {
                        until: now + self.config.cool_down,
                    };
                } else {
                    self.inner = Inner::Closed { failures };
                }
            }
            Inner::HalfOpen { .. } => {
                tracing::warn!("circuit probe failed: open again");
                self.inner = Inner::Open {
                    until: now + self.config.cool_down,
                };
            }
            // A request admitted before the breaker opened: it is open already.
            Inner::Open { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(k: u32, cool_ms: u64) -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig {
            failure_threshold: k,
            cool_down: Duration::from_millis(cool_ms),
        })
    }

    #[test]
    fn opens_after_k_consecutive_failures_only() {
        let t0 = Instant::now();
        let mut b = breaker(3, 1000);
        for _ in 0..2 {
            b.try_acquire(t0).unwrap();
            b.record_failure(t0);
        }
        // A success in between resets the count.
        b.try_acquire(t0).unwrap();
        b.record_success();
        assert_eq!(b.consecutive_failures(), 0);
        for i in 0..3 {
            assert_eq!(b.state(t0), BreakerState::Closed, "after {i} failures");
            b.try_acquire(t0).unwrap();
            b.record_failure(t0);
        }
        assert_eq!(b.state(t0), BreakerState::Open);
        assert_eq!(b.try_acquire(t0), Err(Duration::from_millis(1000)));
        let later = t0 + Duration::from_millis(400);
        assert_eq!(b.try_acquire(later), Err(Duration::from_millis(600)));
    }

    #[test]
    fn half_open_lets_exactly_one_probe_through() {
        let t0 = Instant::now();
        let mut b = breaker(1, 100);
        b.try_acquire(t0).unwrap();
        b.record_failure(t0);
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(b.state(t1), BreakerState::HalfOpen);
        b.try_acquire(t1).unwrap();
        // A second caller during the probe is refused.
        assert!(b.try_acquire(t1 + Duration::from_millis(10)).is_err());
        // The probe fails: open for another cool-down.
        b.record_failure(t1 + Duration::from_millis(20));
        assert_eq!(b.state(t1 + Duration::from_millis(50)), BreakerState::Open);
        let t2 = t1 + Duration::from_millis(120);
        b.try_acquire(t2).unwrap();
        b.record_success();
        assert_eq!(b.state(t2), BreakerState::Closed);
        b.try_acquire(t2).unwrap();
    }

    #[test]
    fn a_lost_probe_frees_the_slot_after_a_cool_down() {
        let t0 = Instant::now();
        let mut b = breaker(1, 100);
        b.try_acquire(t0).unwrap();
        b.record_failure(t0);
        let t1 = t0 + Duration::from_millis(100);
        b.try_acquire(t1).unwrap(); // probe, never reported
        assert!(b.try_acquire(t1 + Duration::from_millis(99)).is_err());
        b.try_acquire(t1 + Duration::from_millis(100)).unwrap();
    }

    #[test]
    fn zero_threshold_is_treated_as_one() {
        let t0 = Instant::now();
        let mut b = breaker(0, 100);
        b.try_acquire(t0).unwrap();
        assert_eq!(b.state(t0), BreakerState::Closed);
        b.record_failure(t0);
        assert_eq!(b.state(t0), BreakerState::Open);
    }
}
