//! [`Runtime`]: executes a schedule plan, image by image.
//!
//! Per request: pick the operating point ([`crate::decide`]), decode the image at the
//! smallest JPEG scale the point's variants need, run the point's policy exactly as the
//! compiler replayed it (premodel routers, cascade stages accepted on calibrated confidence,
//! ensembles of what already ran), and, when the point's offloading table says so for the
//! measured network and the local answer is unsure, send the image to the server. Every
//! stage beyond the guaranteed cheapest-variant answer and every upload is admitted against
//! the budgets with its worst-case cost first; what does not fit is skipped and the request
//! is answered with what it has. A remote failure of any kind (timeout, error, malformed
//! reply, open circuit) leaves the local answer in place.
//!
//! Variants are loaded on first use and unloaded least-recently-used when loading another
//! would pass the memory cap (MCDNN's behaviour under memory pressure). The runtime is
//! `Send + Sync`: several threads or streams may classify at once and share one budget.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use triage_compiler::plan::{Plan, PlanRemote};
use triage_compiler::policy::RouterKind;
use triage_compiler::profile::RemoteOption;
use triage_premodel::features::{FeatureSet, ImageMeta};
use triage_premodel::Premodel;
use triage_zoo::{DecodeOptions, DecodedImage, Zoo};

use crate::budget::{unix_ms_now, Budget, BudgetConfig, BudgetError, Cost, Reservation};
use crate::decide::{Decision, Ladder, NetworkView, Request};
use crate::network::{EstimatorConfig, NetworkEstimator};
use crate::remote::{BreakerState, RemoteClient, RemoteConfig, RemoteError};

/// Errors of opening a runtime or classifying an image.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Plan(#[from] triage_compiler::Error),
    #[error(transparent)]
    Zoo(#[from] triage_zoo::Error),
    #[error("plan {plan} does not match the zoo at {zoo}: {reason}")]
    ZooMismatch {
        plan: PathBuf,
        zoo: PathBuf,
        reason: String,
    },
    #[error("plan premodel '{label}': {source}")]
    Premodel {
        label: String,
        #[source]
        source: triage_premodel::Error,
    },
    #[error("{path}: cannot decode the image: {source}")]
    Decode {
        path: PathBuf,
        #[source]
        source: triage_zoo::Error,
    },
    #[error(transparent)]
    Budget(#[from] BudgetError),
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("invalid runtime configuration: {0}")]
    Config(String),
}

/// How a [`Runtime`] runs.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub budget: BudgetConfig,
    /// Upper bound on the estimated memory of loaded variants, bytes (`None`: no bound).
    pub memory_cap_bytes: Option<u64>,
    /// Base URL of an Open Inference Protocol v2 server for offloading (`None`: local only).
    pub server: Option<String>,
    pub remote: RemoteConfig,
    /// Longest a remote call may take (shortened by the request's deadline).
    pub remote_timeout: Duration,
    pub estimator: EstimatorConfig,
    /// Network conditions assumed before anything was measured (default: a modest LTE
    /// uplink, 2 Mbit/s and 70 ms, so that the first offload measures the real link; `None`:
    /// do not offload until measurements exist).
    pub assumed_network: Option<NetworkView>,
    /// Expected time between requests, for pacing, until measured (`None`: the device
    /// profile's `request_interval_ms`).
    pub request_interval: Option<Duration>,
    /// Check every variant file's sha256 against the plan when opening (reads every file).
    pub verify_hashes: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            budget: BudgetConfig::default(),
            memory_cap_bytes: None,
            server: None,
            remote: RemoteConfig::default(),
            remote_timeout: Duration::from_secs(2),
            estimator: EstimatorConfig::default(),
            assumed_network: Some(NetworkView {
                up_mbps: 2.0,
                rtt_ms: 70.0,
            }),
            request_interval: None,
            verify_hashes: true,
        }
    }
}

/// How the remote part of a request went.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteUse {
    /// The remote option, e.g. `efficientnet_lite2@224q90`.
    pub option: String,
    pub upload_bytes: u64,
    pub wall_ms: f64,
    pub attempts: u32,
    /// Why the remote answer was not used, when it was not.
    pub error: Option<String>,
}

/// The answer to one request.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub class: usize,
    pub label: String,
    /// Top-5 classes with calibrated probabilities.
    pub top5: Vec<(usize, f32)>,
    pub confidence: f32,
    /// Local variants run, in order.
    pub variants_run: Vec<String>,
    /// Set when an upload was attempted.
    pub remote: Option<RemoteUse>,
    /// Whether the answer came from the server.
    pub answered_remotely: bool,
    /// Measured wall time of the whole request, ms.
    pub latency_ms: f64,
    /// Modelled energy of the request on the plan's device (decode included), mJ.
    pub energy_mj: f64,
    /// Modelled cloud cost, USD.
    pub usd: f64,
    /// What was charged to the budgets (energy above the floor, cloud cost).
    pub charged: Cost,
    /// The operating point used.
    pub point: String,
    pub point_index: usize,
    /// Steps skipped for a budget, a deadline or a failure, in words.
    pub notes: Vec<String>,
}

/// A snapshot of the runtime's state, for monitoring.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub spent: Cost,
    pub limits: Cost,
    pub loaded_variants: Vec<String>,
    pub loaded_bytes: u64,
    pub network: Option<(f64, f64)>,
    pub requests: u64,
}

#[derive(Debug, Default)]
struct Lru {
    tick: u64,
    last_used: Vec<u64>,
}

#[derive(Debug, Default)]
struct Arrivals {
    last: Option<Instant>,
    ewma_ms: Option<f64>,
    count: u64,
}

/// An embedded Triage runtime; see the module documentation.
pub struct Runtime {
    plan: Plan,
    plan_path: PathBuf,
    ladder: Ladder,
    zoo: RwLock<Zoo>,
    /// Plan variant -> zoo variant index.
    zoo_index: Vec<usize>,
    /// Estimated memory per plan variant, bytes.
    memory: Vec<u64>,
    routers: [Option<Premodel>; 2],
    budget: Mutex<Budget>,
    client: Option<RemoteClient>,
    estimator: Mutex<NetworkEstimator>,
    lru: Mutex<Lru>,
    arrivals: Mutex<Arrivals>,
    config: RuntimeConfig,
    /// Modelled energy of each plan variant (preprocessing + inference), mJ.
    stage_mj: Vec<f64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A stream of requests sharing the runtime (and its budgets) at a priority.
pub struct Stream<'a> {
    runtime: &'a Runtime,
    name: String,
    priority: f64,
}

impl Stream<'_> {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// [`Runtime::classify_bytes`] at this stream's priority.
    pub fn classify_bytes(
        &self,
        bytes: &[u8],
        name: &Path,
        deadline: Option<Duration>,
    ) -> Result<Outcome, RuntimeError> {
        let req = Request {
            deadline,
            priority: self.priority,
            ..Request::default()
        };
        self.runtime.classify_bytes(bytes, name, &req)
    }
}

impl Runtime {
    /// Loads and verifies `plan_path` against the zoo in `zoo_dir` and opens the budget.
    pub fn open(
        plan_path: &Path,
        zoo_dir: &Path,
        config: RuntimeConfig,
    ) -> Result<Self, RuntimeError> {
        let plan = Plan::load(plan_path)?;
        Self::with_plan(plan, plan_path, zoo_dir, config)
    }

    /// As [`Runtime::open`] with a plan already in memory (`plan_path` names it in errors).
    pub fn with_plan(
        plan: Plan,
        plan_path: &Path,
        zoo_dir: &Path,
        config: RuntimeConfig,
    ) -> Result<Self, RuntimeError> {
        let zoo = Zoo::open(zoo_dir)?;
        let mismatch = |reason: String| RuntimeError::ZooMismatch {
            plan: plan_path.into(),
            zoo: zoo_dir.into(),
            reason,
        };
        let mut zoo_index = Vec::new();
        let mut memory = Vec::new();
        for v in &plan.variants {
            let i = zoo
                .variants()
                .iter()
                .position(|z| z.name() == v.name)
                .ok_or_else(|| mismatch(format!("the zoo has no variant '{}'", v.name)))?;
            let spec = zoo.variants()[i].spec();
            if spec.sha256 != v.sha256 {
                return Err(mismatch(format!(
                    "variant '{}' has sha256 {} in the zoo, {} in the plan",
                    v.name, spec.sha256, v.sha256
                )));
            }
            // Weights plus tract's packed copies and activations: about twice the file.
            memory.push(spec.file_size_bytes.saturating_mul(2));
            zoo_index.push(i);
        }
        for r in &plan.remote {
            for s in &r.servers {
                if !zoo.variants().iter().any(|z| z.name() == s) {
                    tracing::warn!(server = %s, "remote option names a variant this zoo lacks; the server must have it");
                }
            }
        }
        if config.verify_hashes {
            for (name, result) in zoo.verify() {
                if plan.variants.iter().any(|v| v.name == name) {
                    result.map_err(|e| mismatch(format!("variant '{name}': {e}")))?;
                }
            }
        }
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
        let client = match &config.server {
            Some(url) => Some(RemoteClient::new(url, config.remote.clone())?),
            None => None,
        };
        let budget = Budget::open(config.budget.clone(), unix_ms_now())?;
        let stage_mj = plan
            .variants
            .iter()
            .map(|v| plan.device.compute_mj(v.prep_ms + v.median_ms))
            .collect();
        let n = plan.variants.len();
        Ok(Runtime {
            ladder: Ladder::from_plan(&plan),
            plan,
            plan_path: plan_path.into(),
            zoo: RwLock::new(zoo),
            zoo_index,
            memory,
            routers,
            budget: Mutex::new(budget),
            client,
            estimator: Mutex::new(NetworkEstimator::new(config.estimator)),
            lru: Mutex::new(Lru {
                tick: 0,
                last_used: vec![0; n],
            }),
            arrivals: Mutex::new(Arrivals::default()),
            config,
            stage_mj,
        })
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn plan_path(&self) -> &Path {
        &self.plan_path
    }

    /// A stream sharing this runtime and its budgets at `priority` (1.0 is neutral).
    pub fn stream(&self, name: &str, priority: f64) -> Stream<'_> {
        Stream {
            runtime: self,
            name: name.into(),
            priority,
        }
    }

    /// Current spending, loaded variants and network estimate.
    pub fn status(&self) -> Status {
        let (spent, limits) = {
            let b = lock(&self.budget);
            (b.used(), b.limits())
        };
        let zoo = self.zoo.read().unwrap_or_else(|p| p.into_inner());
        let mut loaded = Vec::new();
        let mut bytes = 0;
        for (pv, &zi) in self.zoo_index.iter().enumerate() {
            if zoo.variants()[zi].is_loaded() {
                loaded.push(self.plan.variants[pv].name.clone());
                bytes += self.memory[pv];
            }
        }
        Status {
            spent,
            limits,
            loaded_variants: loaded,
            loaded_bytes: bytes,
            network: self
                .network_view(Instant::now())
                .map(|n| (n.up_mbps, n.rtt_ms)),
            requests: lock(&self.arrivals).count,
        }
    }

    /// Writes the budget state file now (it is also written whenever spending passes the
    /// committed lease).
    pub fn checkpoint(&self) -> Result<(), RuntimeError> {
        Ok(lock(&self.budget).checkpoint()?)
    }

    /// Reads and classifies an image file.
    pub fn classify_file(&self, path: &Path, req: &Request) -> Result<Outcome, RuntimeError> {
        let bytes = std::fs::read(path).map_err(|e| RuntimeError::Decode {
            path: path.into(),
            source: triage_zoo::Error::Io {
                path: path.into(),
                source: e,
            },
        })?;
        self.classify_bytes(&bytes, path, req)
    }

    fn network_view(&self, now: Instant) -> Option<NetworkView> {
        let e = lock(&self.estimator).estimate(now);
        match (e.uplink_bps, e.rtt) {
            (Some(bps), Some(rtt)) => Some(NetworkView {
                up_mbps: bps / 1e6,
                rtt_ms: rtt.as_secs_f64() * 1e3,
            }),
            (Some(bps), None) => self.config.assumed_network.map(|a| NetworkView {
                up_mbps: bps / 1e6,
                ..a
            }),
            (None, Some(rtt)) => self.config.assumed_network.map(|a| NetworkView {
                rtt_ms: rtt.as_secs_f64() * 1e3,
                ..a
            }),
            (None, None) => self.config.assumed_network,
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
            .config
            .request_interval
            .map_or(self.plan.device.request_interval_ms, |d| {
                d.as_secs_f64() * 1e3
            });
        Duration::from_secs_f64(a.ewma_ms.unwrap_or(configured).max(0.001) / 1e3)
    }

    /// The decision a request would get now (no work is done); exposed for benchmarks and
    /// monitoring.
    pub fn decide(&self, req: &Request) -> Decision {
        let now = Instant::now();
        let interval = self.next_interval(now);
        let allowance = lock(&self.budget).allowance(unix_ms_now(), interval);
        self.ladder.decide(req, &allowance, self.network_view(now))
    }

    fn reserve(&self, cost: Cost) -> Result<Option<Reservation>, RuntimeError> {
        if cost.energy_mj <= 0.0 && cost.usd <= 0.0 {
            return Ok(None);
        }
        Ok(lock(&self.budget).reserve(cost, unix_ms_now())?)
    }

    fn settle(&self, r: Reservation, actual: Cost) {
        lock(&self.budget).settle(r, actual);
    }

    /// Makes sure plan variant `pv` can be loaded within the memory cap, unloading the least
    /// recently used others if needed.
    fn make_room(&self, pv: usize) {
        let mut lru = lock(&self.lru);
        lru.tick += 1;
        let tick = lru.tick;
        lru.last_used[pv] = tick;
        let Some(cap) = self.config.memory_cap_bytes else {
            return;
        };
        let loaded: Vec<usize> = {
            let zoo = self.zoo.read().unwrap_or_else(|p| p.into_inner());
            (0..self.zoo_index.len())
                .filter(|&v| zoo.variants()[self.zoo_index[v]].is_loaded())
                .collect()
        };
        if loaded.contains(&pv) {
            return;
        }
        let mut total: u64 = loaded.iter().map(|&v| self.memory[v]).sum();
        let mut victims: Vec<usize> = loaded;
        victims.sort_by_key(|&v| lru.last_used[v]);
        let mut evict = Vec::new();
        for v in victims {
            if total.saturating_add(self.memory[pv]) <= cap {
                break;
            }
            total = total.saturating_sub(self.memory[v]);
            evict.push(v);
        }
        if !evict.is_empty() {
            let mut zoo = self.zoo.write().unwrap_or_else(|p| p.into_inner());
            for v in evict {
                tracing::debug!(variant = %self.plan.variants[v].name, "unloading (memory cap)");
                zoo.variants_mut()[self.zoo_index[v]].unload();
            }
        }
    }

    /// Runs plan variant `pv` on `img`; calibrated probabilities and raw logits.
    fn run_variant(
        &self,
        pv: usize,
        img: &DecodedImage,
    ) -> Result<(Vec<f32>, Vec<f32>), triage_zoo::Error> {
        self.make_room(pv);
        let zoo = self.zoo.read().unwrap_or_else(|p| p.into_inner());
        let v = &zoo.variants()[self.zoo_index[pv]];
        let logits = v.classify(img)?;
        let t = self.plan.variants[pv].temperature as f32;
        Ok((logits.softmax(t), logits.0))
    }

    /// Classifies one encoded image (`name` is used in errors and logs).
    pub fn classify_bytes(
        &self,
        bytes: &[u8],
        name: &Path,
        req: &Request,
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

        // Decode at the smallest scale that serves every variant the point may run.
        let opts = {
            let zoo = self.zoo.read().unwrap_or_else(|p| p.into_inner());
            Zoo::decode_options_for(
                chain
                    .iter()
                    .chain(std::iter::once(&0))
                    .map(|&v| &zoo.variants()[self.zoo_index[v]]),
                DecodeOptions::default(),
            )
        };
        let img = triage_zoo::decode_bytes(bytes, name, &opts).map_err(|source| {
            RuntimeError::Decode {
                path: name.into(),
                source,
            }
        })?;
        let meta = ImageMeta {
            width: img.width,
            height: img.height,
            byte_len: img.byte_len,
        };
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
                match FeatureSet::Image
                    .extract(&img.rgb, &meta, None)
                    .and_then(|f| m.predict_proba(&f))
                {
                    Ok(p) => s = jump(0, &p, r.min_prob),
                    Err(e) => notes.push(format!("start router failed ({e}); first stage")),
                }
            }
        }
        let mut run: Vec<usize> = Vec::new();
        let mut probs_run: Vec<Vec<f32>> = Vec::new();
        let mut probe_logits: Option<Vec<f32>> = None;
        let mut answer: Option<Vec<f32>> = None;
        loop {
            let mut v = chain[s];
            let first = run.is_empty();
            let cost = if first {
                (self.stage_mj[v] - floor_mj).max(0.0)
            } else {
                self.stage_mj[v]
            };
            let stage_ms =
                (self.plan.variants[v].prep_ms + self.plan.variants[v].median_ms) * scale;
            if !first && !time_left(stage_ms) {
                notes.push(format!(
                    "deadline: skipped {} and later stages",
                    self.plan.variants[v].name
                ));
                break;
            }
            let reservation = self.reserve(Cost::new(cost, 0.0))?;
            if cost > 0.0 && reservation.is_none() {
                if first {
                    notes.push(format!(
                        "energy budget: ran {} instead of {}",
                        self.plan.variants[0].name, self.plan.variants[v].name
                    ));
                    v = 0;
                } else {
                    notes.push(format!(
                        "energy budget: skipped {} and later stages",
                        self.plan.variants[v].name
                    ));
                    break;
                }
            }
            let result = self.run_variant(v, &img);
            if let Some(r) = reservation {
                // Modelled energy: the stage ran (or failed after its cost was committed).
                let used = if v == chain[s] { r.cost() } else { Cost::ZERO };
                self.settle(r, used);
                charged = charged + used;
            }
            match result {
                Ok((p, logits)) => {
                    energy_mj += self.stage_mj[v];
                    if v == 0 {
                        probe_logits = Some(logits);
                    }
                    run.push(v);
                    probs_run.push(p);
                }
                Err(e) => {
                    notes.push(format!("{} failed: {e}", self.plan.variants[v].name));
                    if answer.is_none() && v != 0 {
                        // Still owe an answer: the floor variant.
                        let (p, _) = self.run_variant(0, &img)?;
                        energy_mj += self.stage_mj[0];
                        run.push(0);
                        probs_run.push(p);
                        answer = probs_run.last().cloned();
                    }
                    if answer.is_none() {
                        return Err(e.into());
                    }
                    break;
                }
            }
            let current = if policy.ensemble {
                average(&probs_run)
            } else {
                probs_run.last().cloned().unwrap_or_default()
            };
            let conf = current.iter().copied().fold(0.0f32, f32::max);
            answer = Some(current);
            if v != chain[s] || s == last || conf >= policy.thresholds[s] {
                break;
            }
            s = match policy.router.filter(|r| r.kind == RouterKind::AfterProbe) {
                Some(r) if s == 0 => match (&self.routers[1], &probe_logits) {
                    (Some(m), Some(z)) => {
                        let probe = triage_zoo::logits::softmax(z, 1.0);
                        match FeatureSet::ImageAndProbe
                            .extract(&img.rgb, &meta, Some(&probe))
                            .and_then(|f| m.predict_proba(&f))
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
        let mut probs = answer.unwrap_or_default();
        let conf = probs.iter().copied().fold(0.0f32, f32::max);

        // Offload the unsure answers when the table says so.
        let mut remote_use = None;
        let mut usd = 0.0;
        let mut answered_remotely = false;
        if let (Some(cell), Some(client)) = (decision.offload, &self.client) {
            if conf < cell.below {
                if let Some(opt) = self.plan.remote.get(cell.option) {
                    let r = self.offload(client, opt, bytes, name, &img, deadline, &mut notes)?;
                    if let Some((p, used, cost, energy)) = r {
                        usd += cost.usd;
                        charged = charged + cost;
                        energy_mj += energy;
                        if let Some(p) = p {
                            probs = p;
                            answered_remotely = true;
                        }
                        remote_use = Some(used);
                    }
                }
            }
        }

        let top = triage_zoo::logits::top_k(&probs, 5);
        let class = top.first().copied().unwrap_or(0);
        let label = {
            let zoo = self.zoo.read().unwrap_or_else(|p| p.into_inner());
            let c = zoo.classes();
            if class < c.len() {
                c.name(class).to_string()
            } else {
                String::new()
            }
        };
        Ok(Outcome {
            class,
            label,
            top5: top.iter().map(|&c| (c, probs[c])).collect(),
            confidence: probs.get(class).copied().unwrap_or(0.0),
            variants_run: run
                .iter()
                .map(|&v| self.plan.variants[v].name.clone())
                .collect(),
            remote: remote_use,
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

    /// Worst-case and actual radio energy of an exchange that keeps the radio active for
    /// `active_ms` at the estimated uplink rate, tail included.
    fn radio_mj(&self, link: &str, active_ms: f64, up_mbps: f64) -> f64 {
        let d = &self.plan.device;
        d.radio.get(link).map_or(0.0, |r| {
            active_ms * (r.base_w + r.up_w_per_mbps * up_mbps)
                + r.tail_ms.min(d.request_interval_ms) * r.tail_w
        })
    }

    /// One offload attempt: `Ok(None)` when it was not admitted; otherwise the remote
    /// probabilities (if the call succeeded), what happened, the cost charged and the radio
    /// energy.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn offload(
        &self,
        client: &RemoteClient,
        opt: &PlanRemote,
        bytes: &[u8],
        name: &Path,
        img: &DecodedImage,
        deadline: Option<Instant>,
        notes: &mut Vec<String>,
    ) -> Result<Option<(Option<Vec<f32>>, RemoteUse, Cost, f64)>, RuntimeError> {
        let now = Instant::now();
        if client.breaker_state() == BreakerState::Open {
            notes.push("offload skipped: circuit open".into());
            return Ok(None);
        }
        let Some(net) = self.network_view(now) else {
            return Ok(None);
        };
        let link = self
            .plan
            .points
            .iter()
            .find_map(|p| p.offload.as_ref().map(|t| t.link.clone()))
            .unwrap_or_default();
        let timeout = match deadline {
            Some(d) => d
                .saturating_duration_since(now)
                .min(self.config.remote_timeout),
            None => self.config.remote_timeout,
        };
        let predicted_ms = net.rtt_ms
            + opt.mean_upload_bytes * 8.0 / (net.up_mbps.max(1e-3) * 1e3)
            + opt.server_ms * self.plan.device.server.latency_scale;
        if predicted_ms > timeout.as_secs_f64() * 1e3 {
            notes.push(format!(
                "offload skipped: predicted {predicted_ms:.0} ms exceeds the {:.0} ms left",
                timeout.as_secs_f64() * 1e3
            ));
            return Ok(None);
        }
        let per_call_usd = self.plan.device.server_usd(opt.server_ms);
        let calls = opt.servers.len().max(1) as f64;
        let attempts_max = f64::from(client.config().max_retries + 1);
        let worst = Cost::new(
            self.radio_mj(&link, timeout.as_secs_f64() * 1e3 + 100.0, net.up_mbps),
            per_call_usd * calls * attempts_max,
        );
        let Some(reservation) = self.reserve(worst)? else {
            notes.push("offload skipped: budget".into());
            return Ok(None);
        };
        let option = RemoteOption {
            servers: opt.servers.clone(),
            shorter_side: opt.shorter_side,
            quality: opt.quality,
        };
        // The upload needs the image at the option's resolution; re-decode when the local
        // decode was at a smaller JPEG scale.
        let need = opt.shorter_side;
        let shorter = img.rgb.width().min(img.rgb.height());
        let full_shorter = img.width.min(img.height);
        let redecoded;
        let src = if need.map_or(shorter < full_shorter, |n| shorter < n.min(full_shorter)) {
            let o = DecodeOptions {
                min_shorter_side: need,
                ..DecodeOptions::default()
            };
            redecoded = triage_zoo::decode_bytes(bytes, name, &o).map_err(|source| {
                RuntimeError::Decode {
                    path: name.into(),
                    source,
                }
            })?;
            &redecoded.rgb
        } else {
            &img.rgb
        };
        let upload = match triage_compiler::profile::run::encode_upload(src, &option) {
            Ok(u) => u,
            Err(e) => {
                self.settle(reservation, Cost::ZERO);
                notes.push(format!("offload skipped: encoding failed: {e}"));
                return Ok(None);
            }
        };
        let call_deadline = Instant::now() + timeout;
        let mut acc: Option<Vec<f32>> = None;
        let mut used = RemoteUse {
            option: opt.name.clone(),
            upload_bytes: 0,
            wall_ms: 0.0,
            attempts: 0,
            error: None,
        };
        let t0 = Instant::now();
        for server in &opt.servers {
            match client.infer_image(server, &upload, call_deadline) {
                Ok(reply) => {
                    let t = reply.timing;
                    lock(&self.estimator).observe_exchange(
                        Instant::now(),
                        t.upload_bytes,
                        t.wall,
                        t.server_compute,
                    );
                    used.upload_bytes += t.upload_bytes;
                    used.attempts += t.attempts;
                    let p = reply.logits.softmax(1.0);
                    acc = Some(match acc {
                        None => p,
                        Some(a) => a.iter().zip(&p).map(|(x, y)| x + y).collect(),
                    });
                }
                Err(e) => {
                    used.error = Some(e.to_string());
                    used.attempts += 1;
                    acc = None;
                    break;
                }
            }
        }
        used.wall_ms = t0.elapsed().as_secs_f64() * 1e3;
        // Calibrate the (averaged) server output like the compiler did: log of the averaged
        // probabilities at the option's temperature.
        let probs = acc.map(|a| {
            let k = opt.servers.len().max(1) as f32;
            let logp: Vec<f32> = a.iter().map(|&x| (x / k).max(1e-30).ln()).collect();
            triage_zoo::logits::softmax(&logp, opt.temperature as f32)
        });
        let actual = if used.error.is_some() {
            // The number of attempts that reached the server is unknown: bill the worst case.
            worst
        } else {
            Cost::new(
                self.radio_mj(&link, used.wall_ms, net.up_mbps),
                per_call_usd * f64::from(used.attempts),
            )
        };
        let actual = Cost::new(
            actual.energy_mj.min(worst.energy_mj),
            actual.usd.min(worst.usd),
        );
        self.settle(reservation, actual);
        if let Some(e) = &used.error {
            notes.push(format!("remote failed, local answer kept: {e}"));
        }
        Ok(Some((probs, used, actual, actual.energy_mj)))
    }

    /// Measures the RTT to the server when the estimate is stale (a `GET` of the readiness
    /// endpoint); call between requests. Returns the measured RTT.
    pub fn probe_if_stale(&self) -> Option<Duration> {
        let client = self.client.as_ref()?;
        let now = Instant::now();
        if !lock(&self.estimator).is_stale(now) {
            return None;
        }
        let rtt = client.probe(now + self.config.remote_timeout).ok()?;
        lock(&self.estimator).observe_rtt(Instant::now(), rtt);
        Some(rtt)
    }
}

fn average(ps: &[Vec<f32>]) -> Vec<f32> {
    let Some(first) = ps.first() else {
        return Vec::new();
    };
    let k = ps.len() as f32;
    let mut out = vec![0f32; first.len()];
    for p in ps {
        for (o, x) in out.iter_mut().zip(p) {
            *o += x / k;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Runtime>();
    }

    #[test]
    fn averages() {
        let a = average(&[vec![1.0, 0.0], vec![0.0, 1.0]]);
        assert_eq!(a, vec![0.5, 0.5]);
        assert!(average(&[]).is_empty());
    }
}
