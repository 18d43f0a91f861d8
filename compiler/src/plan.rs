//! The schedule plan: everything the runtime needs to execute what the compiler chose, in one
//! versioned, self-checking file.
//!
//! Container: magic `TRIAGEPL`, schema [`SCHEMA`], one record holding the [`Plan`] (see
//! [`records`](crate::records)). The plan also carries the sha256 of its own serialized
//! content (shown by `triage plan show`) and the sha256 of every zoo variant it names, so a
//! runtime can refuse a zoo it was not compiled for.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::calibrate::Calibration;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::offload::OffloadTable;
use crate::policy::{Policy, RouterKind, Rule};
use crate::records;

pub const MAGIC: &[u8; 8] = b"TRIAGEPL";
pub const SCHEMA: u32 = 4;
const KIND_PLAN: u8 = 1;

/// A zoo variant the plan may run, in cost order (policies index this list).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanVariant {
    pub name: String,
    pub sha256: String,
    pub input_size: u32,
    /// Calibration temperature: probabilities are `softmax(logits / temperature)`.
    pub temperature: f64,
    /// Profiled mean warm inference and mean preprocessing, host ms.
    pub mean_ms: f64,
    pub prep_ms: f64,
}

/// A remote option with its calibration and measured upload size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRemote {
    pub name: String,
    pub servers: Vec<String>,
    pub shorter_side: Option<u32>,
    pub quality: u8,
    pub temperature: f64,
    pub mean_upload_bytes: f64,
    /// Top-1 of the option on the profile.
    pub top1: f64,
    /// Server time per request on the profiling host, ms.
    pub server_ms: f64,
}

/// A serialized premodel used by a router.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanPremodel {
    pub router: RouterKind,
    /// `PremodelConfig::label()`, e.g. `logistic/image`.
    pub label: String,
    pub feature_set_version: u32,
    /// `Premodel::to_bytes()`.
    pub bytes: Vec<u8>,
}

/// What an operating point is expected to achieve, estimated out of fold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expected {
    pub top1: f64,
    pub top1_ci95: (f64, f64),
    pub mean_ms: f64,
    pub mean_ms_ci95: (f64, f64),
    pub p95_ms: f64,
    pub energy_mj: f64,
    pub usd_per_1000: f64,
    pub upload_kb: f64,
}

/// One rung of the ladder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatingPoint {
    pub name: String,
    /// How the point was chosen (applied on training folds for the estimate, on all images
    /// for the policy stored here).
    pub rule: Rule,
    pub policy: Policy,
    /// When and where to offload after the local policy, by network condition.
    pub offload: Option<OffloadTable>,
    /// Out-of-fold estimate of what this rule achieves on unseen images.
    pub expected: Expected,
    /// The same policy scored on all profiled images (in-sample; for reference only).
    pub in_sample_top1: f64,
    pub in_sample_ms: f64,
}

/// Where the plan came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub tool_version: String,
    pub created: String,
    /// sha256 of each profile file compiled from.
    pub profiles: Vec<String>,
    pub dataset_identity: String,
    pub n_images: usize,
    pub folds: usize,
    pub seed: u64,
    /// Selection margin the points were chosen with (`CompileOptions::selection_z`).
    pub selection_z: f64,
    pub zoo_fingerprint: String,
}

/// A schedule plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub provenance: Provenance,
    pub device: Device,
    pub variants: Vec<PlanVariant>,
    pub remote: Vec<PlanRemote>,
    pub premodels: Vec<PlanPremodel>,
    /// Sorted by expected latency, cheapest first.
    pub points: Vec<OperatingPoint>,
    /// Index into `points` of the point that meets the compile targets.
    pub default_point: usize,
    /// Mean decode time per image on the profiling host, ms (part of every point's latency).
    pub decode_ms: f64,
    /// The JPEG decode the profile measured the variants on: the smallest scale keeping this
    /// shorter side (`None`: full resolution). The runtime decodes the same way, so each
    /// variant sees the pixels its calibration and thresholds were fitted on.
    pub decode_min_shorter_side: Option<u32>,
    /// Mean premodel feature time per image on the profiling host, ms.
    pub features_ms: f64,
    pub calibration: Vec<Calibration>,
}

impl Plan {
    /// Checks internal consistency: every policy names existing variants, thresholds fit
    /// chains, routers have their premodel, numbers are finite.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let nv = self.variants.len();
        if nv == 0 || nv > 16 {
            return Err(format!("{nv} variants (1..=16 supported)"));
        }
        if self.points.is_empty() {
            return Err("no operating points".into());
        }
        if self.default_point >= self.points.len() {
            return Err(format!(
                "default point {} of {}",
                self.default_point,
                self.points.len()
            ));
        }
        let nonneg = |x: f64| x.is_finite() && x >= 0.0;
        if !(nonneg(self.decode_ms) && nonneg(self.features_ms)) {
            return Err("decode or feature time is not a non-negative number".into());
        }
        for v in &self.variants {
            if !(v.mean_ms.is_finite()
                && v.mean_ms >= 0.0
                && v.prep_ms.is_finite()
                && v.prep_ms >= 0.0)
            {
                return Err(format!(
                    "variant {}: latency {} + {} ms",
                    v.name, v.prep_ms, v.mean_ms
                ));
            }
            if !(v.temperature.is_finite() && v.temperature > 0.0) {
                return Err(format!("variant {}: temperature {}", v.name, v.temperature));
            }
            if v.sha256.len() != 64 {
                return Err(format!("variant {}: sha256 '{}'", v.name, v.sha256));
            }
        }
        for (k, p) in self.points.iter().enumerate() {
            if self.points[..k].iter().any(|q| q.name == p.name) {
                return Err(format!("two operating points are named {}", p.name));
            }
            let pol = &p.policy;
            if pol.chain.is_empty() || pol.chain.iter().any(|&v| v >= nv) {
                return Err(format!(
                    "point {}: chain {:?} names unknown variants",
                    p.name, pol.chain
                ));
            }
            if pol.chain.windows(2).any(|w| w[0] >= w[1]) {
                return Err(format!(
                    "point {}: chain {:?} is not in cost order",
                    p.name, pol.chain
                ));
            }
            if pol.thresholds.len() + 1 != pol.chain.len() {
                return Err(format!(
                    "point {}: {} thresholds for {} stages",
                    p.name,
                    pol.thresholds.len(),
                    pol.chain.len()
                ));
            }
            if let Some(r) = pol.router {
                if !self.premodels.iter().any(|m| m.router == r.kind) {
                    return Err(format!(
                        "point {}: router {:?} has no premodel",
                        p.name, r.kind
                    ));
                }
            }
            let e = &p.expected;
            if ![e.top1, e.mean_ms, e.energy_mj, e.usd_per_1000]
                .iter()
                .all(|x| x.is_finite())
            {
                return Err(format!("point {}: non-finite expectation", p.name));
            }
            if let Some(t) = &p.offload {
                if !t.latency_limit_ms.is_finite() {
                    return Err(format!("point {}: offload latency limit", p.name));
                }
                if !self.device.radio.contains_key(&t.link) {
                    return Err(format!(
                        "point {}: offload radio '{}' not in device",
                        p.name, t.link
                    ));
                }
                t.validate(self.remote.len())
                    .map_err(|m| format!("point {}: offload table: {m}", p.name))?;
            }
        }
        for m in &self.premodels {
            triage_premodel::Premodel::from_bytes(&m.bytes)
                .map_err(|e| format!("premodel {}: {e}", m.label))?;
        }
        Ok(())
    }

    /// sha256 of the serialized plan content.
    pub fn content_sha256(&self) -> Result<String> {
        let bytes = records::encode(self)?;
        let d = Sha256::digest(&bytes);
        Ok(d.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Writes the plan (validated first).
    pub fn save(&self, path: &Path) -> Result<()> {
        self.validate().map_err(|m| {
            Error::InvalidArgument(format!("refusing to write an invalid plan: {m}"))
        })?;
        let tmp = path.with_extension("tmp");
        let mut w = records::Writer::create(&tmp, MAGIC, SCHEMA)?;
        w.write_value(KIND_PLAN, self)?;
        drop(w);
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }

    /// Reads and validates a plan.
    pub fn load(path: &Path) -> Result<Self> {
        let mut plan = None;
        let tail = records::scan(path, MAGIC, SCHEMA, |rec| {
            if rec.kind != KIND_PLAN || plan.is_some() {
                return Err(Error::format(
                    path,
                    format!("unexpected record at byte {}", rec.offset),
                ));
            }
            plan = Some(records::decode::<Plan>(path, &rec, "plan")?);
            Ok(())
        })?;
        if let records::Tail::Torn { reason, .. } = tail {
            return Err(Error::format(
                path,
                format!("truncated or damaged: {reason}"),
            ));
        }
        let plan =
            plan.ok_or_else(|| Error::format(path, "no plan record: the file is truncated"))?;
        plan.validate()
            .map_err(|m| Error::format(path, format!("invalid plan: {m}")))?;
        Ok(plan)
    }

    /// Checks that a zoo holds every variant of this plan with the same sha256.
    pub fn check_zoo(&self, zoo: &triage_zoo::Zoo) -> Result<()> {
        for v in &self.variants {
            let z = zoo.variant(&v.name)?;
            if z.spec().sha256 != v.sha256 {
                return Err(Error::Mismatch(format!(
                    "variant {}: the plan was compiled for sha256 {} but the zoo has {}",
                    v.name,
                    v.sha256,
                    z.spec().sha256
                )));
            }
        }
        Ok(())
    }
}
