//! Estimating the uplink (throughput and round-trip time) from the transfers the runtime
//! makes anyway, so that the decision to offload can predict what an upload will cost.
//!
//! Estimator: a **windowed median** per quantity, over the last `window` samples that are
//! younger than `max_age`. Cellular links stall for seconds during handovers and a single
//! stalled transfer must not swing the estimate (an EWMA would carry it for many samples);
//! the median ignores up to half the window being outliers, needs no tuning of a smoothing
//! factor, always stays between the smallest and largest sample it saw, equals the true value
//! on a constant stream after one sample and tracks the median of a stationary noisy one,
//! while the window bound and the age bound make it follow a changing link within `window`
//! samples or `max_age`. The lower quartile is reported too, for callers that plan
//! pessimistically.
//!
//! Samples come from three places: RTT probes (`GET /v2/health/ready`), direct throughput
//! samples, and whole request/reply exchanges, where the upload time is the wall time minus
//! the server's reported compute time minus one RTT (request and reply headers each cross
//! once). Staleness is reported so a caller knows when to probe instead of trusting an old
//! figure.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Tuning of a [`NetworkEstimator`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EstimatorConfig {
    /// Most recent samples kept per quantity.
    pub window: usize,
    /// Samples older than this are forgotten.
    pub max_age: Duration,
    /// An estimate whose newest sample is older than this is stale: probe.
    pub stale_after: Duration,
    /// Exchanges uploading fewer bytes than this say more about the RTT than about the
    /// throughput: they give an RTT sample instead of a throughput sample.
    pub min_transfer_bytes: u64,
}

impl Default for EstimatorConfig {
    fn default() -> Self {
        EstimatorConfig {
            window: 16,
            max_age: Duration::from_secs(60),
            stale_after: Duration::from_secs(5),
            min_transfer_bytes: 4096,
        }
    }
}

/// What the estimator believes at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetworkEstimate {
    /// Median round-trip time, `None` without a live sample.
    pub rtt: Option<Duration>,
    /// Median uplink throughput in bit/s.
    pub uplink_bps: Option<f64>,
    /// Lower quartile of the uplink throughput (a pessimistic figure).
    pub uplink_bps_low: Option<f64>,
    /// Age of the newest RTT / throughput sample.
    pub rtt_age: Option<Duration>,
    pub uplink_age: Option<Duration>,
    pub rtt_samples: usize,
    pub uplink_samples: usize,
}

impl NetworkEstimate {
    /// Predicted time to upload `bytes` and get a reply header back: one RTT plus the bytes
    /// at the median throughput. `None` until both are known.
    pub fn upload_time(&self, bytes: u64) -> Option<Duration> {
        let rtt = self.rtt?;
        let bps = self.uplink_bps.filter(|b| *b > 0.0)?;
        Some(rtt + Duration::from_secs_f64(bytes as f64 * 8.0 / bps))
    }
}

/// Samples of one quantity, newest last.
#[derive(Debug, Clone, Default)]
struct Window {
    samples: VecDeque<(Instant, f64)>,
}

impl Window {
    fn push(&mut self, at: Instant, value: f64, cap: usize) {
        self.samples.push_back((at, value));
        while self.samples.len() > cap.max(1) {
            self.samples.pop_front();
        }
    }

    fn live(&self, now: Instant, max_age: Duration) -> Vec<f64> {
        self.samples
            .iter()
            .filter(|(at, _)| now.saturating_duration_since(*at) <= max_age)
            .map(|&(_, v)| v)
            .collect()
    }

    fn newest_age(&self, now: Instant, max_age: Duration) -> Option<Duration> {
        self.samples
            .iter()
            .map(|(at, _)| now.saturating_duration_since(*at))
            .filter(|age| *age <= max_age)
            .min()
    }
}

/// Quantile `q` in [0, 1] of `values` by linear interpolation between order statistics
/// (`q = 0.5` is the median). Always between the smallest and largest value.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    Some(v[lo] + (v[hi] - v[lo]) * frac)
}

/// Uplink throughput and RTT from recent transfers; see the module documentation.
#[derive(Debug, Clone)]
pub struct NetworkEstimator {
    config: EstimatorConfig,
    rtt: Window,
    uplink: Window,
}

impl Default for NetworkEstimator {
    fn default() -> Self {
        Self::new(EstimatorConfig::default())
    }
}

impl NetworkEstimator {
    pub fn new(config: EstimatorConfig) -> Self {
        NetworkEstimator {
            config,
            rtt: Window::default(),
            uplink: Window::default(),
        }
    }

    pub fn config(&self) -> EstimatorConfig {
        self.config
    }

    /// A measured round trip (e.g. a readiness probe). Zero or absurd values are kept: they
    /// are what was measured, and the median discounts them if they are rare.
    pub fn observe_rtt(&mut self, at: Instant, rtt: Duration) {
        self.rtt.push(at, rtt.as_secs_f64(), self.config.window);
    }

    /// A directly measured uplink throughput in bit/s; non-finite or negative values are
    /// ignored.
    pub fn observe_throughput(&mut self, at: Instant, bits_per_second: f64) {
        if bits_per_second.is_finite() && bits_per_second >= 0.0 {
            self.uplink.push(at, bits_per_second, self.config.window);
        }
    }

    /// A whole exchange: `upload_bytes` sent, reply complete after `wall`, of which the
    /// server says it computed for `server_time`. Small uploads give an RTT sample; large
    /// ones a throughput sample over `wall - server_time - RTT` (when that is positive; an
    /// exchange faster than the RTT estimate says nothing about throughput).
    pub fn observe_exchange(
        &mut self,
        at: Instant,
        upload_bytes: u64,
        wall: Duration,
        server_time: Option<Duration>,
    ) {
        let net = wall.saturating_sub(server_time.unwrap_or_default());
        if upload_bytes < self.config.min_transfer_bytes {
            self.observe_rtt(at, net);
            return;
        }
        let rtt = self.estimate(at).rtt.unwrap_or_default();
        let transfer = net.saturating_sub(rtt).as_secs_f64();
        if transfer > 0.0 {
            self.observe_throughput(at, upload_bytes as f64 * 8.0 / transfer);
        } else {
            tracing::trace!(
                upload_bytes,
                wall_ms = wall.as_secs_f64() * 1e3,
                "exchange within one RTT: no throughput sample"
            );
        }
    }

    /// The estimate at `now` from the samples that are still live.
    pub fn estimate(&self, now: Instant) -> NetworkEstimate {
        let age = self.config.max_age;
        let rtts = self.rtt.live(now, age);
        let ups = self.uplink.live(now, age);
        NetworkEstimate {
            rtt: quantile(&rtts, 0.5).map(Duration::from_secs_f64),
            uplink_bps: quantile(&ups, 0.5),
            uplink_bps_low: quantile(&ups, 0.25),
            rtt_age: self.rtt.newest_age(now, age),
            uplink_age: self.uplink.newest_age(now, age),
            rtt_samples: rtts.len(),
            uplink_samples: ups.len(),
        }
    }

    /// True when the RTT or the throughput has no sample younger than `stale_after`: the
    /// caller should probe (or offload a small request) before trusting the estimate.
    pub fn is_stale(&self, now: Instant) -> bool {
        let e = self.estimate(now);
        let fresh = |a: Option<Duration>| a.is_some_and(|a| a <= self.config.stale_after);
        !(fresh(e.rtt_age) && fresh(e.uplink_age))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn one_stall_does_not_move_the_median() {
        let t0 = Instant::now();
        let mut e = NetworkEstimator::default();
        for i in 0..9 {
            e.observe_rtt(t0 + ms(i * 100), ms(50 + i % 3));
        }
        e.observe_rtt(t0 + ms(1000), ms(5000));
        let est = e.estimate(t0 + ms(1000));
        assert!(est.rtt.unwrap() <= ms(52), "{:?}", est.rtt);
    }

    #[test]
    fn exchanges_recover_the_link() {
        // 2 Mbit/s uplink, 80 ms RTT, server computes 30 ms.
        let t0 = Instant::now();
        let mut e = NetworkEstimator::default();
        e.observe_exchange(t0, 300, ms(80 + 30), Some(ms(30)));
        for i in 1..=5u64 {
            let bytes = 50_000 * i;
            let upload = Duration::from_secs_f64(bytes as f64 * 8.0 / 2e6);
            e.observe_exchange(t0 + ms(i), bytes, ms(80) + upload + ms(30), Some(ms(30)));
        }
        let est = e.estimate(t0 + ms(10));
        assert_eq!(est.rtt, Some(ms(80)));
        let bps = est.uplink_bps.unwrap();
        assert!((bps - 2e6).abs() < 2e6 * 0.001, "{bps}");
        let predicted = est.upload_time(100_000).unwrap();
        assert!(
            (predicted.as_secs_f64() - 0.48).abs() < 0.001,
            "{predicted:?}"
        );
    }

    #[test]
    fn staleness_and_expiry() {
        let t0 = Instant::now();
        let cfg = EstimatorConfig {
            stale_after: ms(1000),
            max_age: ms(3000),
            ..EstimatorConfig::default()
        };
        let mut e = NetworkEstimator::new(cfg);
        assert!(e.is_stale(t0));
        e.observe_rtt(t0, ms(40));
        e.observe_throughput(t0, 1e6);
        assert!(!e.is_stale(t0 + ms(999)));
        assert!(e.is_stale(t0 + ms(1001)));
        assert_eq!(e.estimate(t0 + ms(2000)).rtt_age, Some(ms(2000)));
        let gone = e.estimate(t0 + ms(3001));
        assert_eq!(
            (gone.rtt, gone.uplink_bps, gone.rtt_age),
            (None, None, None)
        );
    }

    #[test]
    fn window_follows_a_changed_link() {
        let t0 = Instant::now();
        let mut e = NetworkEstimator::default();
        for i in 0..16 {
            e.observe_throughput(t0 + ms(i), 10e6);
        }
        for i in 16..25 {
            e.observe_throughput(t0 + ms(i), 1e6);
        }
        assert_eq!(e.estimate(t0 + ms(30)).uplink_bps, Some(1e6));
    }

    proptest! {
        #[test]
        fn estimates_stay_within_observed_samples(
            samples in proptest::collection::vec((0u64..500, 1e3f64..1e8, 1u64..2000), 1..80),
            window in 1usize..32,
        ) {
            let t0 = Instant::now();
            let mut e = NetworkEstimator::new(EstimatorConfig { window, ..EstimatorConfig::default() });
            let mut t = t0;
            let (mut lo_b, mut hi_b) = (f64::INFINITY, f64::NEG_INFINITY);
            let (mut lo_r, mut hi_r) = (Duration::MAX, Duration::ZERO);
            for (dt, bps, rtt_ms) in samples {
                t += ms(dt);
                e.observe_throughput(t, bps);
                e.observe_rtt(t, ms(rtt_ms));
                lo_b = lo_b.min(bps);
                hi_b = hi_b.max(bps);
                lo_r = lo_r.min(ms(rtt_ms));
                hi_r = hi_r.max(ms(rtt_ms));
                let est = e.estimate(t);
                let b = est.uplink_bps.unwrap();
                let low = est.uplink_bps_low.unwrap();
                prop_assert!(lo_b <= b && b <= hi_b, "{} not in [{}, {}]", b, lo_b, hi_b);
                prop_assert!(lo_b <= low && low <= b);
                let r = est.rtt.unwrap();
                // Durations round-trip through f64 seconds: allow a nanosecond.
                prop_assert!(lo_r.saturating_sub(Duration::from_nanos(1)) <= r && r <= hi_r + Duration::from_nanos(1));
            }
        }

        #[test]
        fn converges_on_a_stationary_stream_with_outliers(
            truth in 1e5f64..1e8,
            noise in proptest::collection::vec(-0.1f64..0.1, 40..120),
            outlier_up in proptest::collection::vec(any::<bool>(), 40..120),
        ) {
            // Every fifth sample is an outlier (a stall or a burst): at most a fifth of any
            // window, so the median must stay inside the noise band around the truth.
            let t0 = Instant::now();
            let mut e = NetworkEstimator::default();
            for (i, n) in noise.iter().enumerate() {
                let v = if i % 5 == 4 {
                    if outlier_up[i % outlier_up.len()] { truth * 20.0 } else { truth / 20.0 }
                } else {
                    truth * (1.0 + n)
                };
                e.observe_throughput(t0 + ms(i as u64), v);
            }
            let b = e.estimate(t0 + ms(noise.len() as u64)).uplink_bps.unwrap();
            prop_assert!((b / truth - 1.0).abs() <= 0.1 + 1e-9, "{} vs {}", b, truth);
        }

        #[test]
        fn quantile_is_monotone_and_bounded(v in proptest::collection::vec(-1e6f64..1e6, 1..50), a in 0f64..1.0, b in 0f64..1.0) {
            let (qa, qb) = (quantile(&v, a.min(b)).unwrap(), quantile(&v, a.max(b)).unwrap());
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            prop_assert!(lo <= qa && qa <= qb && qb <= hi);
        }
    }
}
