//! The per-request decision, separated from execution so that it can be tested on millions
//! of simulated requests and benchmarked on its own: which operating point of the plan's
//! ladder to use, given the paced budget allowance, the request's deadline and preference and
//! the measured network, and whether that point's offloading table applies.
//!
//! Rule (MCDNN's greedy choice, MobiSys 2016, over the compiler's Pareto ladder instead of
//! single models): the request's ceiling (the plan's default point, or what the preference
//! asks for) when its expected energy above the floor fits the paced allowance (times the
//! stream's priority) and its expected p95 latency fits the deadline; otherwise the most
//! accurate cheaper point that fits; the fastest point when none does. The expectations are the compiler's out-of-fold estimates. This choice is
//! about *expected* spending; the hard guarantee comes from reserving each step's worst case
//! (see [`crate::budget`]).

use std::time::Duration;

use triage_compiler::offload::{Cell, OffloadTable};
use triage_compiler::plan::Plan;

use crate::budget::{Allowance, Cost};

/// What the caller prefers when nothing else constrains the choice.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Preference {
    /// The plan's default point (the one compiled for the user's targets).
    #[default]
    Default,
    /// The most accurate point.
    MostAccurate,
    /// The fastest point.
    Fastest,
    /// The most accurate point whose expected mean latency is at most this (device ms).
    LatencyMs(f64),
    /// Exactly this point of the plan (budgets still admit each stage and upload).
    Point(usize),
}

/// Per-request options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request {
    /// Time from the call until the answer is due.
    pub deadline: Option<Duration>,
    pub preference: Preference,
    /// Share of the paced allowance this request may use (streams of higher priority get
    /// more; 1.0 is neutral).
    pub priority: f64,
}

impl Default for Request {
    fn default() -> Self {
        Request {
            deadline: None,
            preference: Preference::Default,
            priority: 1.0,
        }
    }
}

/// Measured (or assumed) network conditions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetworkView {
    pub up_mbps: f64,
    pub rtt_ms: f64,
}

/// The decision for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// Index into the plan's points.
    pub point: usize,
    /// The offloading cell to apply after the local policy, if any.
    pub offload: Option<Cell>,
}

#[derive(Debug, Clone)]
struct PointInfo {
    top1: f64,
    mean_ms: f64,
    p95_ms: f64,
    /// Expected modelled energy above the floor per request, mJ.
    above_floor_mj: f64,
    energy_mj: f64,
    offload: Option<OffloadTable>,
}

/// The plan's ladder, prepared for fast decisions.
#[derive(Debug, Clone)]
pub struct Ladder {
    points: Vec<PointInfo>,
    default_point: usize,
    most_accurate: usize,
}

impl Ladder {
    pub fn from_plan(plan: &Plan) -> Self {
        let d = &plan.device;
        let floor_mj = plan
            .variants
            .first()
            .map_or(0.0, |v| d.compute_mj(v.prep_ms + v.mean_ms));
        let decode_mj = d.compute_mj(plan.decode_ms);
        let points: Vec<PointInfo> = plan
            .points
            .iter()
            .map(|p| PointInfo {
                top1: p.expected.top1,
                mean_ms: p.expected.mean_ms,
                p95_ms: p.expected.p95_ms,
                above_floor_mj: (p.expected.energy_mj - decode_mj - floor_mj).max(0.0),
                energy_mj: p.expected.energy_mj,
                offload: p.offload.clone(),
            })
            .collect();
        let most_accurate = points
            .iter()
            .enumerate()
            .max_by(|a, b| {
                a.1.top1
                    .total_cmp(&b.1.top1)
                    .then(b.1.mean_ms.total_cmp(&a.1.mean_ms))
            })
            .map_or(0, |(k, _)| k);
        Ladder {
            points,
            default_point: plan.default_point,
            most_accurate,
        }
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Expected energy above the floor of point `k`, mJ.
    pub fn above_floor_mj(&self, k: usize) -> f64 {
        self.points.get(k).map_or(0.0, |p| p.above_floor_mj)
    }

    fn ceiling(&self, pref: Preference) -> usize {
        match pref {
            Preference::Default => self.default_point,
            Preference::MostAccurate => self.most_accurate,
            Preference::Fastest => 0,
            Preference::Point(k) => k,
            Preference::LatencyMs(ms) => self
                .points
                .iter()
                .enumerate()
                .filter(|(_, p)| p.mean_ms <= ms)
                .max_by(|a, b| a.1.top1.total_cmp(&b.1.top1))
                .map_or(0, |(k, _)| k),
        }
    }

    /// The decision for `req` under `allowance` and `network`.
    pub fn decide(
        &self,
        req: &Request,
        allowance: &Allowance,
        network: Option<NetworkView>,
    ) -> Decision {
        let ceiling = self
            .ceiling(req.preference)
            .min(self.points.len().saturating_sub(1));
        let cap_ms = self
            .points
            .get(ceiling)
            .map_or(f64::INFINITY, |p| p.mean_ms);
        let w = if req.priority.is_finite() {
            req.priority.max(0.0)
        } else {
            1.0
        };
        let paced = Cost::new(allowance.paced.energy_mj * w, allowance.paced.usd * w);
        let deadline_ms = req.deadline.map(|d| d.as_secs_f64() * 1e3);
        let fits_time = |ms: f64| deadline_ms.is_none_or(|d| ms <= d);
        let fits = |p: &PointInfo| leq(p.above_floor_mj, paced.energy_mj) && fits_time(p.p95_ms);
        // The ceiling itself when it fits (or is pinned); otherwise the most accurate point
        // below it that fits.
        let mut best: Option<usize> = match self.points.get(ceiling) {
            Some(_) if matches!(req.preference, Preference::Point(_)) => Some(ceiling),
            Some(p) if fits(p) => Some(ceiling),
            _ => None,
        };
        if best.is_none() {
            for (k, p) in self.points.iter().enumerate() {
                if p.mean_ms > cap_ms + 1e-9 || !fits(p) {
                    continue;
                }
                let better = best.is_none_or(|b| {
                    let q = &self.points[b];
                    p.top1 > q.top1 + 1e-12 || (p.top1 > q.top1 - 1e-12 && p.mean_ms < q.mean_ms)
                });
                if better {
                    best = Some(k);
                }
            }
        }
        let point = best.unwrap_or(0);
        let offload = self.points.get(point).and_then(|p| {
            let table = p.offload.as_ref()?;
            let net = network?;
            let cell = *table.lookup(net.up_mbps, net.rtt_ms)?;
            let e = &cell.expected;
            let extra_mj = (e.energy_mj - p.energy_mj).max(0.0);
            let fits = leq(p.above_floor_mj + extra_mj, paced.energy_mj)
                && leq(e.usd_per_1000 / 1e3, paced.usd)
                && fits_time(e.mean_ms);
            fits.then_some(cell)
        });
        Decision { point, offload }
    }
}

/// `a <= b` where an infinite `b` means unlimited.
fn leq(a: f64, b: f64) -> bool {
    b.is_infinite() || a <= b + 1e-12
}
