//! Energy and cloud-cost budgets that are never exceeded, paced over a horizon, and survive
//! restarts.
//!
//! **What is budgeted.** Every request is guaranteed an answer from the plan's cheapest
//! variant; its energy (and the decode every answer needs) is the *floor* and is not charged.
//! The energy budget pays for everything above the floor: further DNN stages, uploads (radio
//! energy including the tail) and on-device encoding; the cloud budget pays for server
//! requests. Energies are *modelled* from the device profile (profiled stage latency x active
//! power, Huang et al.'s radio model), so a charge is known before the work runs.
//!
//! **Never exceeded.** Work is admitted by [`Budget::reserve`] with its worst-case cost (for
//! an upload: the radio held active for the whole remote timeout, every retry billed); the
//! reservation is deducted at once, so concurrent requests cannot jointly overspend, and
//! [`Budget::settle`] refunds what the work did not use. A reservation that does not fit the
//! remaining budget is refused and the caller answers with what it already has.
//!
//! **Pacing** (MCDNN, MobiSys 2016): the rate a request may spend is the remaining budget
//! divided by the remaining time of the horizon, times the expected time to the next request
//! ([`Budget::allowance`]). The runtime moves down the plan's ladder when the allowance
//! shrinks and back up when it grows. When a horizon ends, a new one starts with the full
//! budget ("so many joules per hour").
//!
//! **Checkpoints with a lease.** The state file records a *committed* spend that is always at
//! least what has been spent or reserved: when spending would pass it, the runtime first
//! writes a new commitment a lease (a small fraction of the budget) higher, atomically
//! (write, fsync, rename). A crash therefore loses at most unused lease, never spent money,
//! and a restarted runtime resumes from the commitment. A file that fails its checksum or
//! its validation is an error, never a silent reset.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Schema tag of the state file.
pub const STATE_SCHEMA: &str = "triage.budget/1";

/// Errors of budget state handling.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error("budget state {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("budget state {path} is corrupted: {reason}")]
    Corrupted { path: PathBuf, reason: String },
    #[error("invalid budget: {0}")]
    Invalid(String),
}

/// Budgets per horizon.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetConfig {
    /// Energy above the floor per horizon, mJ (`None`: unlimited).
    pub energy_mj: Option<f64>,
    /// Cloud spending per horizon, USD (`None`: unlimited).
    pub usd: Option<f64>,
    pub horizon: Duration,
    /// Where the state is checkpointed (`None`: in memory only).
    pub state_file: Option<PathBuf>,
    /// Lease as a fraction of each budget.
    pub lease_fraction: f64,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            energy_mj: None,
            usd: None,
            horizon: Duration::from_secs(3600),
            state_file: None,
            lease_fraction: 0.02,
        }
    }
}

impl BudgetConfig {
    fn validate(&self) -> Result<(), BudgetError> {
        for (what, v) in [("energy", self.energy_mj), ("cloud", self.usd)] {
            if let Some(v) = v {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(BudgetError::Invalid(format!(
                        "{what} budget must be a non-negative number, got {v}"
                    )));
                }
            }
        }
        if self.horizon.is_zero() {
            return Err(BudgetError::Invalid("horizon must be positive".into()));
        }
        if !(self.lease_fraction > 0.0 && self.lease_fraction <= 1.0) {
            return Err(BudgetError::Invalid(format!(
                "lease fraction {} outside (0, 1]",
                self.lease_fraction
            )));
        }
        Ok(())
    }
}

/// Amounts of both resources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    pub energy_mj: f64,
    pub usd: f64,
}

impl Cost {
    pub const ZERO: Cost = Cost {
        energy_mj: 0.0,
        usd: 0.0,
    };

    pub fn new(energy_mj: f64, usd: f64) -> Self {
        Cost { energy_mj, usd }
    }

    fn is_valid(&self) -> bool {
        self.energy_mj.is_finite()
            && self.usd.is_finite()
            && self.energy_mj >= 0.0
            && self.usd >= 0.0
    }
}

impl std::ops::Add for Cost {
    type Output = Cost;
    fn add(self, o: Cost) -> Cost {
        Cost::new(self.energy_mj + o.energy_mj, self.usd + o.usd)
    }
}

/// What was admitted and must be settled.
#[derive(Debug, Clone, Copy, PartialEq)]
#[must_use = "a reservation must be settled"]
pub struct Reservation {
    cost: Cost,
    period: u64,
}

impl Reservation {
    pub fn cost(&self) -> Cost {
        self.cost
    }
}

/// The checkpointed state. Amounts are integers (nanojoules, pico-USD), rounded up, so that
/// the file round-trips exactly and the checksum covers exactly what is read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct State {
    schema: String,
    /// Start of the current horizon, ms since the Unix epoch.
    period_start_unix_ms: u64,
    horizon_ms: u64,
    /// Committed spend of the current horizon (at least what was spent or reserved), nJ.
    committed_nj: u64,
    /// Committed cloud spend, pico-USD.
    committed_pusd: u64,
    /// sha256 of the fields above.
    checksum: String,
}

const NJ_PER_MJ: f64 = 1e6;
const PUSD_PER_USD: f64 = 1e12;

fn to_units(x: f64, per: f64) -> u64 {
    let u = (x * per).ceil();
    if u.is_finite() && u > 0.0 {
        u.min(u64::MAX as f64) as u64
    } else {
        0
    }
}

impl State {
    fn new(period_start_unix_ms: u64, horizon_ms: u64, committed: Cost) -> Self {
        let committed_nj = to_units(committed.energy_mj, NJ_PER_MJ);
        let committed_pusd = to_units(committed.usd, PUSD_PER_USD);
        State {
            schema: STATE_SCHEMA.into(),
            period_start_unix_ms,
            horizon_ms,
            committed_nj,
            committed_pusd,
            checksum: State::digest(
                period_start_unix_ms,
                horizon_ms,
                committed_nj,
                committed_pusd,
            ),
        }
    }

    fn committed(&self) -> Cost {
        Cost::new(
            self.committed_nj as f64 / NJ_PER_MJ,
            self.committed_pusd as f64 / PUSD_PER_USD,
        )
    }

    fn digest(period_start_unix_ms: u64, horizon_ms: u64, nj: u64, pusd: u64) -> String {
        let text = format!("{STATE_SCHEMA}|{period_start_unix_ms}|{horizon_ms}|{nj}|{pusd}");
        Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn load(path: &Path) -> Result<Option<State>, BudgetError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(BudgetError::Io {
                    path: path.into(),
                    source,
                })
            }
        };
        let bad = |reason: String| BudgetError::Corrupted {
            path: path.into(),
            reason,
        };
        let s: State = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if s.schema != STATE_SCHEMA {
            return Err(bad(format!(
                "schema '{}', expected '{STATE_SCHEMA}'",
                s.schema
            )));
        }
        let digest = State::digest(
            s.period_start_unix_ms,
            s.horizon_ms,
            s.committed_nj,
            s.committed_pusd,
        );
        if s.checksum != digest {
            return Err(bad("checksum mismatch".into()));
        }
        if s.horizon_ms == 0 {
            return Err(bad("zero horizon".into()));
        }
        Ok(Some(s))
    }

    fn save(&self, path: &Path) -> Result<(), BudgetError> {
        use std::io::Write;
        let io = |source| BudgetError::Io {
            path: path.into(),
            source,
        };
        let tmp = path.with_extension("tmp");
        let text = serde_json::to_string_pretty(self).map_err(|e| BudgetError::Corrupted {
            path: path.into(),
            reason: e.to_string(),
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(io)
    }
}

/// How much the next request may spend, by pacing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Allowance {
    /// Paced per-request allowance (infinite when unlimited).
    pub paced: Cost,
    /// What is left of the horizon's budget (infinite when unlimited).
    pub remaining: Cost,
    /// Fraction of the horizon left, in (0, 1].
    pub time_left: f64,
}

/// Budget accounting; see the module documentation. Not thread-safe by itself: the runtime
/// keeps it behind a mutex.
#[derive(Debug)]
pub struct Budget {
    config: BudgetConfig,
    period_start_ms: u64,
    period: u64,
    spent: Cost,
    reserved: Cost,
    committed: Cost,
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Budget {
    /// Opens the budget at time `now_ms`, resuming the state file when there is one.
    pub fn open(config: BudgetConfig, now_ms: u64) -> Result<Self, BudgetError> {
        config.validate()?;
        let horizon_ms = config.horizon.as_millis().max(1) as u64;
        let mut b = Budget {
            period_start_ms: now_ms,
            period: 0,
            spent: Cost::ZERO,
            reserved: Cost::ZERO,
            committed: Cost::ZERO,
            config,
        };
        if let Some(path) = b.config.state_file.clone() {
            if let Some(s) = State::load(&path)? {
                if s.period_start_unix_ms > now_ms.saturating_add(horizon_ms) {
                    return Err(BudgetError::Corrupted {
                        path,
                        reason: "the horizon starts in the future".into(),
                    });
                }
                b.period_start_ms = s.period_start_unix_ms;
                // What may have been spent before the restart is what was committed (never
                // more than the budget: rounding up when saving must not invent overspending).
                let limit = b.limit();
                let c = s.committed();
                let c = Cost::new(c.energy_mj.min(limit.energy_mj), c.usd.min(limit.usd));
                b.spent = c;
                b.committed = c;
                tracing::info!(energy_mj = c.energy_mj, usd = c.usd, "resumed budget state");
            }
            b.roll(now_ms);
            b.checkpoint()?;
        }
        Ok(b)
    }

    pub fn config(&self) -> &BudgetConfig {
        &self.config
    }

    fn horizon_ms(&self) -> u64 {
        self.config.horizon.as_millis().max(1) as u64
    }

    fn limit(&self) -> Cost {
        Cost::new(
            self.config.energy_mj.unwrap_or(f64::INFINITY),
            self.config.usd.unwrap_or(f64::INFINITY),
        )
    }

    /// Starts a new horizon when the current one is over.
    fn roll(&mut self, now_ms: u64) -> bool {
        let h = self.horizon_ms();
        if now_ms < self.period_start_ms.saturating_add(h) {
            return false;
        }
        let periods = (now_ms - self.period_start_ms) / h;
        self.period_start_ms += periods * h;
        self.period += 1;
        self.spent = Cost::ZERO;
        self.committed = self.reserved;
        true
    }

    /// Spent plus reserved in the current horizon.
    pub fn used(&self) -> Cost {
        self.spent + self.reserved
    }

    /// What is left of the current horizon's budgets at `now_ms`.
    pub fn allowance(&mut self, now_ms: u64, next_request_in: Duration) -> Allowance {
        if self.roll(now_ms) {
            self.persist_best_effort();
        }
        let h = self.horizon_ms() as f64;
        let left_ms = (self.period_start_ms as f64 + h - now_ms as f64).clamp(1.0, h);
        let limit = self.limit();
        let used = self.used();
        let remaining = Cost::new(
            (limit.energy_mj - used.energy_mj).max(0.0),
            (limit.usd - used.usd).max(0.0),
        );
        let share = (next_request_in.as_secs_f64() * 1e3 / left_ms).min(1.0);
        let pace = |r: f64| if r.is_infinite() { r } else { r * share };
        Allowance {
            paced: Cost::new(pace(remaining.energy_mj), pace(remaining.usd)),
            remaining,
            time_left: left_ms / h,
        }
    }

    /// Admits work of worst-case cost `cost` if it fits what is left; `Ok(None)` when it
    /// does not. Fails only when the commitment cannot be checkpointed (then nothing is
    /// admitted).
    pub fn reserve(&mut self, cost: Cost, now_ms: u64) -> Result<Option<Reservation>, BudgetError> {
        if !cost.is_valid() {
            return Ok(None);
        }
        if self.roll(now_ms) {
            self.persist_best_effort();
        }
        let limit = self.limit();
        let after = self.used() + cost;
        if after.energy_mj > limit.energy_mj || after.usd > limit.usd {
            return Ok(None);
        }
        if after.energy_mj > self.committed.energy_mj || after.usd > self.committed.usd {
            let lease = Cost::new(
                finite_or_zero(limit.energy_mj) * self.config.lease_fraction,
                finite_or_zero(limit.usd) * self.config.lease_fraction,
            );
            let previous = self.committed;
            self.committed = Cost::new(
                (after.energy_mj.max(self.committed.energy_mj) + lease.energy_mj)
                    .min(limit.energy_mj),
                (after.usd.max(self.committed.usd) + lease.usd).min(limit.usd),
            );
            if let Err(e) = self.checkpoint() {
                self.committed = previous;
                return Err(e);
            }
        }
        self.reserved = self.reserved + cost;
        Ok(Some(Reservation {
            cost,
            period: self.period,
        }))
    }

    /// Settles a reservation with what the work actually cost (clamped to what was
    /// reserved: the reservation is the bound the model promised).
    pub fn settle(&mut self, r: Reservation, actual: Cost) {
        let actual = Cost::new(
            finite_or_zero(actual.energy_mj).clamp(0.0, r.cost.energy_mj),
            finite_or_zero(actual.usd).clamp(0.0, r.cost.usd),
        );
        // A reservation from a horizon that has since ended was carried over into the
        // current one (see `roll`), so it is settled here either way.
        if r.period != self.period {
            tracing::debug!("settling a reservation carried over from the previous horizon");
        }
        self.reserved = Cost::new(
            (self.reserved.energy_mj - r.cost.energy_mj).max(0.0),
            (self.reserved.usd - r.cost.usd).max(0.0),
        );
        self.spent = self.spent + actual;
    }

    /// Spent in the current horizon (settled work only).
    pub fn spent(&self) -> Cost {
        self.spent
    }

    /// The budgets per horizon (infinite when unlimited).
    pub fn limits(&self) -> Cost {
        self.limit()
    }

    /// Writes the state file (if any) now.
    pub fn checkpoint(&self) -> Result<(), BudgetError> {
        let Some(path) = &self.config.state_file else {
            return Ok(());
        };
        State::new(self.period_start_ms, self.horizon_ms(), self.committed).save(path)
    }

    fn persist_best_effort(&self) {
        if let Err(e) = self.checkpoint() {
            tracing::warn!(error = %e, "could not checkpoint the budget at a new horizon");
        }
    }
}

fn finite_or_zero(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg(dir: &Path) -> BudgetConfig {
        BudgetConfig {
            energy_mj: Some(1000.0),
            usd: Some(0.01),
            horizon: Duration::from_secs(3600),
            state_file: Some(dir.join("budget.json")),
            lease_fraction: 0.05,
        }
    }

    #[test]
    fn reservations_never_pass_the_budget_and_settle_refunds() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Budget::open(cfg(dir.path()), 0).unwrap();
        let r = b.reserve(Cost::new(600.0, 0.0), 1).unwrap().unwrap();
        assert!(b.reserve(Cost::new(500.0, 0.0), 2).unwrap().is_none());
        b.settle(r, Cost::new(100.0, 0.0));
        assert_eq!(b.spent().energy_mj, 100.0);
        let r2 = b.reserve(Cost::new(500.0, 0.0), 3).unwrap().unwrap();
        b.settle(r2, Cost::new(900.0, 0.0)); // clamped to the reservation
        assert_eq!(b.spent().energy_mj, 600.0);
        assert!(b.reserve(Cost::new(0.0, 0.02), 4).unwrap().is_none());
    }

    #[test]
    fn state_survives_a_restart_and_never_undercounts() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Budget::open(cfg(dir.path()), 0).unwrap();
        let r = b.reserve(Cost::new(300.0, 0.001), 10).unwrap().unwrap();
        b.settle(r, Cost::new(250.0, 0.001));
        drop(b);
        // A restart (even a crash: nothing was written at drop) resumes at the commitment.
        let b = Budget::open(cfg(dir.path()), 20).unwrap();
        assert!(b.spent().energy_mj >= 250.0 && b.spent().usd >= 0.001);
        assert!(b.spent().energy_mj <= 300.0 + 50.0 + 1e-9);
    }

    #[test]
    fn corrupted_state_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path());
        let mut b = Budget::open(c.clone(), 0).unwrap();
        let r = b.reserve(Cost::new(300.0, 0.0), 1).unwrap().unwrap();
        b.settle(r, Cost::new(300.0, 0.0));
        let path = c.state_file.clone().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let tampered = text.replacen("\"committed_nj\": 3", "\"committed_nj\": 1", 1);
        assert_ne!(tampered, text);
        std::fs::write(&path, tampered).unwrap();
        let e = Budget::open(c.clone(), 2).unwrap_err().to_string();
        assert!(e.contains("budget.json") && e.contains("checksum"), "{e}");
        std::fs::write(&path, &text[..text.len() / 2]).unwrap();
        let e = Budget::open(c, 2).unwrap_err().to_string();
        assert!(e.contains("corrupted"), "{e}");
    }

    #[test]
    fn a_new_horizon_restores_the_budget_and_pacing_spreads_it() {
        let mut b = Budget::open(
            BudgetConfig {
                state_file: None,
                ..cfg(Path::new("."))
            },
            0,
        )
        .unwrap();
        let a = b.allowance(0, Duration::from_secs(36));
        assert!((a.paced.energy_mj - 10.0).abs() < 1e-9, "{a:?}");
        let r = b.reserve(Cost::new(1000.0, 0.0), 1).unwrap().unwrap();
        b.settle(r, Cost::new(1000.0, 0.0));
        assert_eq!(
            b.allowance(5, Duration::from_secs(1)).remaining.energy_mj,
            0.0
        );
        let a = b.allowance(3_600_000, Duration::from_secs(36));
        assert_eq!(a.remaining.energy_mj, 1000.0);
        // Half the horizon left: the remaining budget is spread over half the time.
        let a = b.allowance(3_600_000 + 1_800_000, Duration::from_secs(36));
        assert!((a.paced.energy_mj - 20.0).abs() < 1e-6, "{a:?}");
    }

    proptest! {
        /// Random interleavings of reserve/settle with random (even over-reporting) actual
        /// costs, across restarts: settled spending never passes either budget.
        #[test]
        fn spending_never_exceeds_the_budget(
            ops in proptest::collection::vec((0.0f64..400.0, 0.0f64..0.004, 0.0f64..2.0, any::<bool>()), 1..200)
        ) {
            let dir = tempfile::tempdir().unwrap();
            let c = cfg(dir.path());
            let mut b = Budget::open(c.clone(), 0).unwrap();
            let mut pending = Vec::new();
            for (t, (e, u, factor, restart)) in ops.into_iter().enumerate() {
                if let Some(r) = b.reserve(Cost::new(e, u), t as u64).unwrap() {
                    pending.push(r);
                }
                if pending.len() > 3 {
                    let r = pending.remove(0);
                    b.settle(r, Cost::new(e * factor, u * factor));
                }
                prop_assert!(b.used().energy_mj <= 1000.0 + 1e-9);
                prop_assert!(b.used().usd <= 0.01 + 1e-12);
                if restart {
                    pending.clear();
                    b = Budget::open(c.clone(), t as u64).unwrap();
                }
            }
        }
    }
}
