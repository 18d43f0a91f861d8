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
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use triage_compiler::plan::{Plan, PlanRemote};
use triage_compiler::profile::RemoteOption;
use triage_premodel::features::{FeatureSet, ImageMeta};
use triage_zoo::{DecodeOptions, DecodedImage, Zoo};

use crate::budget::{unix_ms_now, Budget, BudgetConfig, BudgetError, Cost};
use crate::decide::{Decision, NetworkView, Request};
use crate::execute::{lock, Backend, Executor, UploadFailure, Uploaded};
use crate::network::EstimatorConfig;
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

/// An embedded Triage runtime; see the module documentation.
pub struct Runtime {
    exec: Executor,
    plan_path: PathBuf,
    zoo: RwLock<Zoo>,
    /// Plan variant -> zoo variant index.
    zoo_index: Vec<usize>,
    /// Estimated memory per plan variant, bytes.
    memory: Vec<u64>,
    client: Option<RemoteClient>,
    lru: Mutex<Lru>,
    memory_cap: Option<u64>,
    remote_timeout: Duration,
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
            if config.verify_hashes {
                zoo.variants()[i]
                    .verify()
                    .map_err(|e| mismatch(format!("variant '{}': {e}", v.name)))?;
            }
            // Weights plus tract's packed copies and activations: about twice the file.
            memory.push(spec.file_size_bytes.saturating_mul(2));
            zoo_index.push(i);
        }
        let client = match &config.server {
            Some(url) => Some(RemoteClient::new(url, config.remote.clone())?),
            None => None,
        };
        let budget = Budget::open(config.budget.clone(), unix_ms_now())?;
        let n = plan.variants.len();
        Ok(Runtime {
            exec: Executor::new(plan, budget, &config)?,
            plan_path: plan_path.into(),
            zoo: RwLock::new(zoo),
            zoo_index,
            memory,
            client,
            lru: Mutex::new(Lru {
                tick: 0,
                last_used: vec![0; n],
            }),
            memory_cap: config.memory_cap_bytes,
            remote_timeout: config.remote_timeout,
        })
    }

    pub fn plan(&self) -> &Plan {
        &self.exec.plan
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
            let b = lock(&self.exec.budget);
            (b.used(), b.limits())
        };
        let zoo = self.zoo.read().unwrap_or_else(|p| p.into_inner());
        let mut loaded = Vec::new();
        let mut bytes = 0;
        for (pv, &zi) in self.zoo_index.iter().enumerate() {
            if zoo.variants()[zi].is_loaded() {
                loaded.push(self.exec.plan.variants[pv].name.clone());
                bytes += self.memory[pv];
            }
        }
        Status {
            spent,
            limits,
            loaded_variants: loaded,
            loaded_bytes: bytes,
            network: self
                .exec
                .network_view(Instant::now())
                .map(|n| (n.up_mbps, n.rtt_ms)),
            requests: self.exec.requests(),
        }
    }

    /// Writes the budget state file now (it is also written whenever spending passes the
    /// committed lease).
    pub fn checkpoint(&self) -> Result<(), RuntimeError> {
        Ok(lock(&self.exec.budget).checkpoint()?)
    }

    /// The decision a request would get now (no work is done; counts as an arrival for
    /// pacing). For benchmarks and monitoring.
    pub fn decide(&self, req: &Request) -> Decision {
        self.exec.decide(req)
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

    /// Classifies one encoded image (`name` is used in errors and logs).
    pub fn classify_bytes(
        &self,
        bytes: &[u8],
        name: &Path,
        req: &Request,
    ) -> Result<Outcome, RuntimeError> {
        let mut backend = ZooBackend {
            rt: self,
            bytes,
            name,
            img: None,
        };
        let label_of = |c: usize| {
            let zoo = self.zoo.read().unwrap_or_else(|p| p.into_inner());
            let names = zoo.classes();
            if c < names.len() {
                names.name(c).to_string()
            } else {
                String::new()
            }
        };
        self.exec.execute(&mut backend, req, &label_of)
    }

    /// Measures the RTT to the server when the estimate is stale (a `GET` of the readiness
    /// endpoint); call between requests. Returns the measured RTT.
    pub fn probe_if_stale(&self) -> Option<Duration> {
        let client = self.client.as_ref()?;
        let now = Instant::now();
        if !lock(&self.exec.estimator).is_stale(now) {
            return None;
        }
        let rtt = client.probe(now + self.remote_timeout).ok()?;
        lock(&self.exec.estimator).observe_rtt(Instant::now(), rtt);
        Some(rtt)
    }

    /// Makes sure plan variant `pv` can be loaded within the memory cap, unloading the least
    /// recently used others if needed.
    fn make_room(&self, pv: usize) {
        let mut lru = lock(&self.lru);
        lru.tick += 1;
        let tick = lru.tick;
        lru.last_used[pv] = tick;
        let Some(cap) = self.memory_cap else {
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
        let mut victims = loaded;
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
                tracing::debug!(variant = %self.exec.plan.variants[v].name, "unloading (memory cap)");
                zoo.variants_mut()[self.zoo_index[v]].unload();
            }
        }
    }
}

/// The real backend of one request: the zoo's variants on the decoded image, and the v2
/// client.
struct ZooBackend<'a> {
    rt: &'a Runtime,
    bytes: &'a [u8],
    name: &'a Path,
    img: Option<DecodedImage>,
}

impl ZooBackend<'_> {
    fn decode(&self, opts: &DecodeOptions) -> Result<DecodedImage, RuntimeError> {
        triage_zoo::decode_bytes(self.bytes, self.name, opts).map_err(|source| {
            RuntimeError::Decode {
                path: self.name.into(),
                source,
            }
        })
    }

    fn image(&self) -> Result<&DecodedImage, RuntimeError> {
        self.img
            .as_ref()
            .ok_or_else(|| RuntimeError::Config("the image was used before it was prepared".into()))
    }

    fn meta(img: &DecodedImage) -> ImageMeta {
        ImageMeta {
            width: img.width,
            height: img.height,
            byte_len: img.byte_len,
        }
    }
}

impl Backend for ZooBackend<'_> {
    fn prepare(&mut self, _variants: &[usize]) -> Result<(), RuntimeError> {
        // Decode as the profile did, whichever variants this point may run: a smaller JPEG
        // scale would be faster for points of small variants, but would hand them pixels
        // their calibration and thresholds were not fitted on.
        let opts = DecodeOptions {
            min_shorter_side: self.rt.exec.plan.decode_min_shorter_side,
            ..DecodeOptions::default()
        };
        self.img = Some(self.decode(&opts)?);
        Ok(())
    }

    fn run(&mut self, v: usize) -> Result<Vec<f32>, RuntimeError> {
        self.rt.make_room(v);
        let img = self.image()?;
        let zoo = self.rt.zoo.read().unwrap_or_else(|p| p.into_inner());
        Ok(zoo.variants()[self.rt.zoo_index[v]].classify(img)?.0)
    }

    fn features(&mut self, set: FeatureSet, probe: Option<&[f32]>) -> Result<Vec<f32>, String> {
        let img = self.image().map_err(|e| e.to_string())?;
        set.extract(&img.rgb, &Self::meta(img), probe)
            .map_err(|e| e.to_string())
    }

    fn remote_available(&self) -> bool {
        self.rt
            .client
            .as_ref()
            .is_some_and(|c| c.breaker_state() != BreakerState::Open)
    }

    fn upload(&mut self, opt: &PlanRemote, deadline: Instant) -> Result<Uploaded, UploadFailure> {
        let fail = |error: String, reached_server: bool| UploadFailure {
            error,
            reached_server,
        };
        let client = self
            .rt
            .client
            .as_ref()
            .ok_or_else(|| fail("no server configured".into(), false))?;
        let img = self.image().map_err(|e| fail(e.to_string(), false))?;
        // The upload needs the image at the option's resolution; decode again when the
        // local decode was at a smaller JPEG scale.
        let shorter = img.rgb.width().min(img.rgb.height());
        let full = img.width.min(img.height);
        let want = opt.shorter_side.map_or(full, |s| s.min(full));
        let redecoded;
        let src = if shorter < want {
            let o = DecodeOptions {
                min_shorter_side: opt.shorter_side,
                ..DecodeOptions::default()
            };
            redecoded = self.decode(&o).map_err(|e| fail(e.to_string(), false))?;
            &redecoded.rgb
        } else {
            &img.rgb
        };
        let option = RemoteOption {
            servers: opt.servers.clone(),
            shorter_side: opt.shorter_side,
            quality: opt.quality,
        };
        let upload = triage_compiler::profile::run::encode_upload(src, &option)
            .map_err(|e| fail(format!("encoding the upload: {e}"), false))?;
        let mut probs_sum: Vec<f32> = Vec::new();
        let mut timings = Vec::new();
        for server in &opt.servers {
            let reply = client.infer_image(server, &upload, deadline).map_err(|e| {
                let reached = !matches!(e, RemoteError::CircuitOpen { .. });
                fail(e.to_string(), reached)
            })?;
            let p = reply.logits.softmax(1.0);
            if probs_sum.is_empty() {
                probs_sum = p;
            } else {
                probs_sum.iter_mut().zip(&p).for_each(|(a, b)| *a += b);
            }
            timings.push(reply.timing);
        }
        Ok(Uploaded { probs_sum, timings })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Runtime>();
    }
}
