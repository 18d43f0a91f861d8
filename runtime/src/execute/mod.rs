//! Executing one request of a plan: the decision, the policy walk with budget admission, and
//! the offload, against a [`Backend`] that runs variants and talks to the server. The
//! [`Runtime`](crate::Runtime) is this plus the zoo and the v2 client; tests and simulations
//! substitute a backend with scripted answers to drive thousands of requests through exactly
//! the same code (the scripted backends of this crate's tests and of the decision
//! benchmark are examples).

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use triage_compiler::plan::{Plan, PlanRemote};
use triage_compiler::policy::{Pool, RouterKind};
use triage_compiler::profile::round_to_profile_precision;
use triage_premodel::features::FeatureSet;
use triage_premodel::Premodel;

use crate::budget::{unix_ms_now, Budget, Cost, Reservation};
use crate::decide::{Decision, Ladder, NetworkView, Request};
use crate::executor::{Outcome, RemoteUse, RuntimeConfig, RuntimeError};
use crate::network::NetworkEstimator;
use crate::remote::RemoteTiming;

/// A successful upload: the servers' probabilities (summed over the option's servers) and
/// the timing of each call.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub probs_sum: Vec<f32>,
    pub timings: Vec<RemoteTiming>,
}

/// A failed upload: why, and whether any request may have reached the server.
#[derive(Debug, Clone)]
pub struct UploadFailure {
    pub error: String,
    pub reached_server: bool,
}

/// What a request needs from the outside world.
pub trait Backend {
    /// Called once, before anything else, with the variants the point may run: decode the
    /// image at a scale that serves them.
    fn prepare(&mut self, variants: &[usize]) -> Result<(), RuntimeError>;
    /// Raw logits of plan variant `v` on the image.
    fn run(&mut self, v: usize) -> Result<Vec<f32>, RuntimeError>;
    /// Router features (`probe`: the cheapest variant's softmax, for probe feature sets).
    fn features(&mut self, set: FeatureSet, probe: Option<&[f32]>) -> Result<Vec<f32>, String>;
    /// Whether a server is configured and not shut out by its circuit breaker.
    fn remote_available(&self) -> bool;
    /// Encodes and uploads the image for `opt`, finishing by `deadline`.
    fn upload(&mut self, opt: &PlanRemote, deadline: Instant) -> Result<Uploaded, UploadFailure>;
}

#[derive(Debug, Default)]
struct Arrivals {
    last: Option<Instant>,
    ewma_ms: Option<f64>,
    count: u64,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The plan-executing state shared by all requests.
pub struct Executor {
    pub(crate) plan: Plan,
    ladder: Ladder,
    routers: [Option<Premodel>; 2],
    pub(crate) budget: Mutex<Budget>,
    pub(crate) estimator: Mutex<NetworkEstimator>,
    arrivals: Mutex<Arrivals>,
    /// Modelled energy of each plan variant (preprocessing + inference), mJ.
    stage_mj: Vec<f64>,
    assumed_network: Option<NetworkView>,
    request_interval: Option<Duration>,
    remote_timeout: Duration,
    max_attempts: u32,
    /// The radio the plan's offloading tables were built for.
    link: String,
}

impl Executor {
    pub fn new(plan: Plan, budget: Budget, config: &RuntimeConfig) -> Result<Self, RuntimeError> {
        let mut routers: [Option<Premodel>; 2] = [None, None];
        for m in &plan.premodels {
            let model =
                Premodel::from_bytes(&m.bytes).map_err(|source| RuntimeError::Premodel {
                    label: m.label.clone(),
                    source,
                })?;
            let slot = match m.router {
                RouterKind::Start => 0,
                RouterKind::AfterProbe => 1,
            };
            routers[slot] = Some(model);
        }
        if config.remote_timeout.is_zero() {
            return Err(RuntimeError::Config(
                "remote timeout must be positive".into(),
            ));
        }
        let stage_mj = plan
            .variants
            .iter()
            .map(|v| plan.device.compute_mj(v.prep_ms + v.mean_ms))
            .collect();
        let link = plan
            .points
            .iter()
            .find_map(|p| p.offload.as_ref().map(|t| t.link.clone()))
            .unwrap_or_default();
        Ok(Executor {
            ladder: Ladder::from_plan(&plan),
            plan,
            routers,
            budget: Mutex::new(budget),
            estimator: Mutex::new(NetworkEstimator::new(config.estimator)),
            arrivals: Mutex::new(Arrivals::default()),
            stage_mj,
            assumed_network: config.assumed_network,
            request_interval: config.request_interval,
            remote_timeout: config.remote_timeout,
            max_attempts: config.remote.max_retries + 1,
            link,
        })
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Feeds the network estimator (e.g. from a simulated link).
    pub fn observe_network(&self, rtt: Option<Duration>, uplink_bps: Option<f64>) {
        let now = Instant::now();
        let mut e = lock(&self.estimator);
        if let Some(r) = rtt {
            e.observe_rtt(now, r);
        }
        if let Some(b) = uplink_bps {
            e.observe_throughput(now, b);
        }
    }

    /// Spent plus reserved in the current budget horizon.
    pub fn budget_used(&self) -> Cost {
        lock(&self.budget).used()
    }

    pub fn requests(&self) -> u64 {
        lock(&self.arrivals).count
    }

    pub fn network_view(&self, now: Instant) -> Option<NetworkView> {
        let e = lock(&self.estimator).estimate(now);
        let assumed = self.assumed_network;
        match (e.uplink_bps, e.rtt) {
            (Some(bps), Some(rtt)) => Some(NetworkView {
                up_mbps: bps / 1e6,
                rtt_ms: rtt.as_secs_f64() * 1e3,
            }),
            (Some(bps), None) => assumed.map(|a| NetworkView {
                up_mbps: bps / 1e6,
                ..a
            }),
            (None, Some(rtt)) => assumed.map(|a| NetworkView {
                rtt_ms: rtt.as_secs_f64() * 1e3,
                ..a
            }),
            (None, None) => assumed,
        }
    }

    /// Expected time to the next request: measured (EWMA of inter-arrival times) or
    /// configured.
    fn next_interval(&self, now: Instant) -> Duration {
        let mut a = lock(&self.arrivals);
        a.count += 1;
        if let Some(last) = a.last {
            let dt = now.saturating_duration_since(last).as_secs_f64() * 1e3;
            a.ewma_ms = Some(a.ewma_ms.map_or(dt, |e| 0.8 * e + 0.2 * dt));
        }
        a.last = Some(now);
        let configured = self
            .request_interval
            .map_or(self.plan.device.request_interval_ms, |d| {
                d.as_secs_f64() * 1e3
            });
        Duration::from_secs_f64(a.ewma_ms.unwrap_or(configured).max(0.001) / 1e3)
    }

    /// The decision for a request arriving now.
    pub fn decide(&self, req: &Request) -> Decision {
        let now = Instant::now();
        let interval = self.next_interval(now);
        let allowance = lock(&self.budget).allowance(unix_ms_now(), interval);
        self.ladder.decide(req, &allowance, self.network_view(now))
    }

    fn reserve(&self, cost: Cost) -> Result<Option<Reservation>, RuntimeError> {
        Ok(lock(&self.budget).reserve(cost, unix_ms_now())?)
    }

    fn settle(&self, r: Reservation, actual: Cost) {
        lock(&self.budget).settle(r, actual);
    }

    /// Radio energy of keeping the radio active `active_ms` at `up_mbps`, tail included, mJ.
    fn radio_mj(&self, active_ms: f64, up_mbps: f64) -> f64 {
        self.plan
            .device
            .radio_held_mj(&self.link, active_ms, up_mbps)
            .unwrap_or(0.0)
    }

    /// Executes one request; `classes` names the answer.
    pub fn execute(
        &self,
        backend: &mut dyn Backend,
        req: &Request,
        label_of: &dyn Fn(usize) -> String,
    ) -> Result<Outcome, RuntimeError> {
        let start = Instant::now();
        let decision = self.decide(req);
        let deadline = req.deadline.map(|d| start + d);
        let point = &self.plan.points[decision.point];
        let policy = &point.policy;
        let chain = &policy.chain;
        let last = chain.len() - 1;
        let device = &self.plan.device;
        let scale = device.compute.latency_scale;
        let mut notes = Vec::new();
        let mut needed: Vec<usize> = chain.clone();
        needed.push(0);
        backend.prepare(&needed)?;

        let time_left = |ms: f64| -> bool {
            deadline
                .is_none_or(|d| Instant::now() + Duration::from_secs_f64(ms.max(0.0) / 1e3) <= d)
        };
        let jump = |from: usize, p: &[f32], min_prob: f32| -> usize {
            (from..=last)
                .find(|&k| p.get(chain[k]).is_some_and(|&x| x >= min_prob))
                .unwrap_or(last)
        };
        let floor_mj = self.stage_mj.first().copied().unwrap_or(0.0);
        let mut charged = Cost::ZERO;
        let mut energy_mj = device.compute_mj(self.plan.decode_ms);
        let mut s = 0;
        if let Some(r) = policy.router.filter(|r| r.kind == RouterKind::Start) {
            if let Some(m) = &self.routers[0] {
                match backend
                    .features(FeatureSet::Image, None)
                    .and_then(|f| m.predict_proba(&f).map_err(|e| e.to_string()))
                {
                    Ok(p) => s = jump(0, &p, r.min_prob),
                    Err(e) => notes.push(format!("start router failed ({e}); first stage")),
                }
            }
        }
        let mut run: Vec<usize> = Vec::new();
        let mut probs_run: Vec<Vec<f32>> = Vec::new();
        // The ensemble of what ran, for ensembling policies: each stage's logarithms once.
        let mut pooled = Pool::default();
        let mut probe_logits: Option<Vec<f32>> = None;
        let mut answer: Option<Vec<f32>> = None;
        let after_probe = policy
            .router
            .is_some_and(|r| r.kind == RouterKind::AfterProbe);
        loop {
            let planned = chain[s];
            let first = run.is_empty();
            let cost = if first {
                (self.stage_mj[planned] - floor_mj).max(0.0)
            } else {
                self.stage_mj[planned]
            };
            let v = &self.plan.variants[planned];
            if !first && !time_left((v.prep_ms + v.mean_ms) * scale) {
                notes.push(format!("deadline: skipped {} and later stages", v.name));
                break;
            }
            let reservation = if cost > 0.0 {
                self.reserve(Cost::new(cost, 0.0))?
            } else {
                None
            };
            let mut ran = planned;
            if cost > 0.0 && reservation.is_none() {
                if !first {
                    notes.push(format!(
                        "energy budget: skipped {} and later stages",
                        v.name
                    ));
                    break;
                }
                notes.push(format!(
                    "energy budget: ran {} instead of {}",
                    self.plan.variants[0].name, v.name
                ));
                ran = 0;
            }
            let result = backend.run(ran);
            if let Some(r) = reservation {
                // Modelled energy: the stage's cost is committed once it started.
                self.settle(r, r.cost());
                charged = charged + r.cost();
            }
            let mut logits = match result {
                Ok(l) => l,
                Err(e) => {
                    notes.push(format!("{} failed: {e}", self.plan.variants[ran].name));
                    if !probs_run.is_empty() {
                        break;
                    }
                    if ran == 0 {
                        return Err(e);
                    }
                    // Still owe an answer: the floor variant, which is never budgeted.
                    ran = 0;
                    backend.run(0)?
                }
            };
            // Decide on the logits at the precision the plan was fitted on.
            round_to_profile_precision(&mut logits);
            energy_mj += self.stage_mj[ran];
            let t = self.plan.variants[ran].temperature as f32;
            if ran == 0 && after_probe {
                probe_logits = Some(logits.clone());
            }
            let probs = triage_zoo::logits::softmax(&logits, t);
            if policy.ensemble {
                pooled.add(&probs);
            }
            probs_run.push(probs);
            run.push(ran);
            let conf = if policy.ensemble && probs_run.len() > 1 {
                let q = pooled.probs();
                let c = q.iter().copied().fold(0.0f32, f32::max);
                answer = Some(q);
                c
            } else {
                answer = None;
                probs_run
                    .last()
                    .map_or(0.0, |p| p.iter().copied().fold(0.0f32, f32::max))
            };
            if ran != planned || s == last || conf >= policy.thresholds[s] {
                break;
            }
            s = match policy.router.filter(|r| r.kind == RouterKind::AfterProbe) {
                Some(r) if s == 0 => match (&self.routers[1], &probe_logits) {
                    (Some(m), Some(z)) => {
                        let probe = triage_zoo::logits::softmax(z, 1.0);
                        match backend
                            .features(FeatureSet::ImageAndProbe, Some(&probe))
                            .and_then(|f| m.predict_proba(&f).map_err(|e| e.to_string()))
                        {
                            Ok(p) => jump(1, &p, r.min_prob),
                            Err(e) => {
                                notes.push(format!("probe router failed ({e}); next stage"));
                                1
                            }
                        }
                    }
                    _ => 1,
                },
                _ => s + 1,
            };
        }
        // The answer: the last ensemble, or the last stage's probabilities.
        let mut probs = match answer {
            Some(a) => a,
            None => probs_run.pop().unwrap_or_default(),
        };
        let conf = probs.iter().copied().fold(0.0f32, f32::max);

        // Offload the unsure answers when the table says so.
        let mut remote = None;
        let mut usd = 0.0;
        let mut answered_remotely = false;
        if let Some(cell) = decision.offload.filter(|c| conf < c.below) {
            if let Some(opt) = self.plan.remote.get(cell.option) {
                if let Some(o) = self.offload(backend, opt, deadline, &mut notes)? {
                    usd += o.cost.usd;
                    charged = charged + o.cost;
                    energy_mj += o.cost.energy_mj;
                    if let Some(p) = o.probs {
                        probs = p;
                        answered_remotely = true;
                    }
                    remote = Some(o.used);
                }
            }
        }

        let top = triage_zoo::logits::top_k(&probs, 5);
        let class = top.first().copied().unwrap_or(0);
        Ok(Outcome {
            class,
            label: label_of(class),
            top5: top.iter().map(|&c| (c, probs[c])).collect(),
            confidence: probs.get(class).copied().unwrap_or(0.0),
            variants_run: run
                .iter()
                .map(|&v| self.plan.variants[v].name.clone())
                .collect(),
            remote,
            answered_remotely,
            latency_ms: start.elapsed().as_secs_f64() * 1e3,
            energy_mj,
            usd,
            charged,
            point: point.name.clone(),
            point_index: decision.point,
            notes,
        })
    }

    /// One admitted offload, or `None` when it was not admitted (no server, open breaker, no
    /// time, no budget).
    fn offload(
        &self,
        backend: &mut dyn Backend,
        opt: &PlanRemote,
        deadline: Option<Instant>,
        notes: &mut Vec<String>,
    ) -> Result<Option<Offloaded>, RuntimeError> {
        let now = Instant::now();
        if !backend.remote_available() {
            notes.push("offload skipped: no server or circuit open".into());
            return Ok(None);
        }
        let Some(net) = self.network_view(now) else {
            return Ok(None);
        };
        let timeout = match deadline {
            Some(d) => d.saturating_duration_since(now).min(self.remote_timeout),
            None => self.remote_timeout,
        };
        let timeout_ms = timeout.as_secs_f64() * 1e3;
        let predicted_ms = net.rtt_ms
            + opt.mean_upload_bytes * 8.0 / (net.up_mbps.max(1e-3) * 1e3)
            + opt.server_ms * self.plan.device.server.latency_scale;
        if predicted_ms > timeout_ms {
            notes.push(format!(
                "offload skipped: predicted {predicted_ms:.0} ms exceeds the {timeout_ms:.0} ms left"
            ));
            return Ok(None);
        }
        let per_call_usd = self.plan.device.server_usd(opt.server_ms);
        let calls = opt.servers.len().max(1) as f64;
        // Worst case: the radio active until the call gives up (plus scheduling slack), and
        // every attempt of every call billed.
        let worst = Cost::new(
            self.radio_mj(timeout_ms + 100.0, net.up_mbps),
            per_call_usd * calls * f64::from(self.max_attempts),
        );
        let Some(reservation) = self.reserve(worst)? else {
            notes.push("offload skipped: budget".into());
            return Ok(None);
        };
        let t0 = Instant::now();
        let result = backend.upload(opt, now + timeout);
        let wall_ms = t0.elapsed().as_secs_f64() * 1e3;
        let (probs, used, actual) = match result {
            Ok(up) => {
                let mut est = lock(&self.estimator);
                for t in &up.timings {
                    est.observe_exchange(Instant::now(), t.upload_bytes, t.wall, t.server_compute);
                }
                drop(est);
                let attempts: u32 = up.timings.iter().map(|t| t.attempts).sum();
                let k = opt.servers.len().max(1) as f32;
                // Calibrate like the compiler: the log of the averaged server probabilities at
                // the option's temperature.
                let logp: Vec<f32> = up
                    .probs_sum
                    .iter()
                    .map(|&x| (x / k).max(1e-30).ln())
                    .collect();
                let probs = triage_zoo::logits::softmax(&logp, opt.temperature as f32);
                let used = RemoteUse {
                    option: opt.name.clone(),
                    upload_bytes: up.timings.iter().map(|t| t.upload_bytes).sum(),
                    wall_ms,
                    attempts,
                    error: None,
                };
                let actual = Cost::new(
                    self.radio_mj(wall_ms, net.up_mbps),
                    per_call_usd * f64::from(attempts),
                );
                (Some(probs), used, actual)
            }
            Err(f) => {
                notes.push(format!("remote failed, local answer kept: {}", f.error));
                let used = RemoteUse {
                    option: opt.name.clone(),
                    upload_bytes: 0,
                    wall_ms,
                    attempts: 0,
                    error: Some(f.error),
                };
                // How many attempts reached the server is unknown: bill the worst case.
                let actual = if f.reached_server {
                    Cost::new(self.radio_mj(wall_ms, net.up_mbps), worst.usd)
                } else {
                    Cost::ZERO
                };
                (None, used, actual)
            }
        };
        let actual = Cost::new(
            actual.energy_mj.min(worst.energy_mj),
            actual.usd.min(worst.usd),
        );
        self.settle(reservation, actual);
        Ok(Some(Offloaded {
            probs,
            used,
            cost: actual,
        }))
    }
}

struct Offloaded {
    probs: Option<Vec<f32>>,
    used: RemoteUse,
    cost: Cost,
}

#[cfg(test)]
mod tests;
