//! Profiles: what every variant of the zoo, and every remote option, says about every image of a
//! labelled dataset, and what each variant costs to run.
//!
//! A profile is the compiler's only view of the world: calibration, premodel training, policy
//! search and the evaluation harness all read it. It is written by [`run::profile`] as a
//! [`records`](crate::records) container that grows chunk by chunk (so a killed run resumes),
//! merged from shards by [`merge`], and summarised by [`summary::Summary`].
//!
//! File layout (schema [`SCHEMA`]): a [`Header`] record, a [`Costs`] record, any number of
//! chunk records (each a `Vec<ImageRecord>`, in any order), and a [`Footer`] once every image of
//! the header's range is present. [`Profile::load`] accepts only finished files.

pub mod grid;
pub mod legacy;
pub mod merge;
pub mod run;
pub mod summary;

use std::collections::BTreeMap;
use std::path::Path;

use half::f16;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::records::{self, Tail};
pub use grid::{RemoteGrid, RemoteOption};

/// File magic of profiles.
pub const MAGIC: &[u8; 8] = b"TRIAGEPF";
/// Schema version of the profile container; bump on any change to the records below.
/// Version 2 added [`Host::backend_version`] and made the backend part of a profile's identity.
pub const SCHEMA: u32 = 2;
/// The previous schema, still read: its profiles were all measured with tract, which is what
/// loading one records (see [`legacy`]).
pub const SCHEMA_V1: u32 = 1;

pub(crate) const KIND_HEADER: u8 = 1;
pub(crate) const KIND_COSTS: u8 = 2;
pub(crate) const KIND_CHUNK: u8 = 3;
pub(crate) const KIND_FOOTER: u8 = 4;

/// A zoo variant as profiled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantInfo {
    pub name: String,
    pub sha256: String,
    pub macs: u64,
    pub input_size: u32,
    pub resize_shorter: u32,
    pub weights_bytes: u64,
}

/// Which images were profiled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// Where the dataset was read from (informational; identity is what matters).
    pub root: String,
    pub layout: String,
    /// [`triage_zoo::Dataset::identity`] of the whole (limited, unsharded) image list.
    pub identity: String,
    /// Images in the whole list; image indices run over `0..n_total`.
    pub n_total: u32,
}

/// Where and with what the measurements were taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub cpu: String,
    pub logical_cores: u32,
    /// Worker threads of the accuracy pass (each runs one image at a time).
    pub threads: u32,
    /// Threads inside one inference.
    pub intra_op_threads: u32,
    /// Inference backend that ran every variant (`tract`, `ort`): latencies in the costs
    /// record are this backend's, so the compiler plans for it.
    pub backend: String,
    /// Version of the backend's library (the tract crate, or the ONNX Runtime library).
    pub backend_version: String,
    /// tract version built into the binary (informational whatever the backend).
    pub tract_version: String,
    pub os: String,
}

/// Everything that defines a profile's content. Two runs with equal headers (ignoring
/// `created` and `host`) measure the same thing, which is what resuming and merging check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub tool_version: String,
    /// RFC 3339 time the run started.
    pub created: String,
    pub zoo_fingerprint: String,
    pub variants: Vec<VariantInfo>,
    pub remote: Vec<RemoteOption>,
    pub dataset: DatasetInfo,
    /// `(index, count)` when this file holds one shard.
    pub shard: Option<(u32, u32)>,
    /// Half-open range of image indices this file covers.
    pub range: (u32, u32),
    pub apply_orientation: bool,
    /// Shorter side JPEGs were decoded to (DCT scaling), `None` for full resolution.
    pub decode_min_shorter_side: Option<u32>,
    pub feature_set_version: u32,
    pub feature_names: Vec<String>,
    pub host: Host,
}

impl Header {
    /// The first field in which two headers describe different measurements, if any.
    pub fn incompatibility(&self, other: &Header, same_range: bool) -> Option<&'static str> {
        let checks: [(&'static str, bool); 9] = [
            ("zoo", self.zoo_fingerprint == other.zoo_fingerprint),
            ("backend", self.host.backend == other.host.backend),
            ("variants", self.variants == other.variants),
            ("remote options", self.remote == other.remote),
            ("dataset", self.dataset.identity == other.dataset.identity),
            (
                "dataset size",
                self.dataset.n_total == other.dataset.n_total,
            ),
            (
                "decoding",
                self.apply_orientation == other.apply_orientation
                    && self.decode_min_shorter_side == other.decode_min_shorter_side,
            ),
            (
                "feature set",
                self.feature_set_version == other.feature_set_version
                    && self.feature_names == other.feature_names,
            ),
            (
                "image range",
                !same_range || (self.range == other.range && self.shard == other.shard),
            ),
        ];
        checks.into_iter().find(|(_, ok)| !ok).map(|(what, _)| what)
    }
}

pub use triage_zoo::bench::LatencyStats;

/// What one variant costs on the profiling host, measured apart from the accuracy pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantCost {
    pub name: String,
    pub load_ms: f64,
    /// Warm single-image inference, one thread, preprocessing excluded, measured between runs
    /// of the other variants (see [`run::measure_costs`]).
    pub latency: LatencyStats,
    /// Preprocessing (resize, crop, normalize) of one decoded shared image, mean.
    pub prep_ms: f64,
    pub weights_bytes: u64,
    /// Growth of the peak resident set while loading and running the variant, when the OS
    /// reports it.
    pub peak_rss_growth_bytes: Option<u64>,
}

impl VariantCost {
    /// Expected time of running this variant as one stage of a policy: mean preprocessing
    /// plus mean inference. Means, not medians, because plans are compiled for mean latency.
    pub fn stage_ms(&self) -> f64 {
        self.latency.mean_ms + self.prep_ms
    }
}

/// The costs record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Costs {
    pub variants: Vec<VariantCost>,
}

/// Rounds logits, in place, to the precision profiles store them in (IEEE half). Plans are
/// fitted on these values, so a runtime that decides on them makes exactly the decisions a
/// replay of the profile predicts. The rounding keeps each logit within a relative 2^-11.
pub fn round_to_profile_precision(logits: &mut [f32]) {
    for x in logits {
        *x = f16::from_f32(*x).to_f32();
    }
}

/// One variant's (or one remote option's) answer for one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Logits over the 1000 classes as IEEE half-precision bits.
    pub logits: Vec<u16>,
    /// The five highest-scoring classes, best first.
    pub top5: [u16; 5],
    /// Preprocessing wall time on the worker thread, microseconds.
    pub prep_us: u32,
    /// Inference wall time on the worker thread, microseconds.
    pub infer_us: u32,
}

impl Prediction {
    /// Builds a prediction from full-precision logits.
    pub fn new(logits: &[f32], prep_us: u32, infer_us: u32) -> Self {
        let top = triage_zoo::logits::top_k(logits, 5);
        let mut top5 = [0u16; 5];
        for (slot, &c) in top5.iter_mut().zip(&top) {
            *slot = c as u16;
        }
        Prediction {
            logits: logits.iter().map(|&x| f16::from_f32(x).to_bits()).collect(),
            top5,
            prep_us,
            infer_us,
        }
    }

    /// The top-1 class.
    pub fn top1(&self) -> usize {
        usize::from(self.top5[0])
    }

    /// Logits back in f32.
    pub fn logits_f32(&self) -> Vec<f32> {
        self.logits
            .iter()
            .map(|&b| f16::from_bits(b).to_f32())
            .collect()
    }

    /// Softmax at temperature `t`.
    pub fn probs(&self, t: f32) -> Vec<f32> {
        triage_zoo::logits::softmax(&self.logits_f32(), t)
    }
}

/// A remote option's answer: the server's prediction on the re-encoded upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemotePrediction {
    pub upload_bytes: u32,
    /// Resize + JPEG encode on the device (worker thread), microseconds.
    pub encode_us: u32,
    pub prediction: Prediction,
}

/// Everything measured on one image that decoded and ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    pub decode_us: u32,
    /// Premodel image features ([`triage_premodel::features::FeatureSet::Image`]).
    pub features: Vec<f32>,
    pub features_us: u32,
    /// One per header variant, in header order.
    pub local: Vec<Prediction>,
    /// One per header remote option, in header order.
    pub remote: Vec<RemotePrediction>,
}

/// One image of the dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Position in the whole image list.
    pub index: u32,
    /// Path relative to the dataset root.
    pub rel: String,
    pub label: u16,
    /// Original size and encoded bytes (zero when the file could not be decoded).
    pub width: u32,
    pub height: u32,
    pub byte_len: u64,
    /// The measurements, or why there are none.
    pub result: std::result::Result<Measured, String>,
}

impl ImageRecord {
    pub fn measured(&self) -> Option<&Measured> {
        self.result.as_ref().ok()
    }
}

/// Written last: the file is complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Footer {
    pub n_images: u32,
    pub n_failed: u32,
}

/// A finished profile in memory.
#[derive(Debug, Clone)]
pub struct Profile {
    pub header: Header,
    pub costs: Costs,
    /// Sorted by index, one per index of `header.range`.
    pub images: Vec<ImageRecord>,
}

/// What a (possibly unfinished) profile file holds; used to resume.
#[derive(Debug)]
pub(crate) struct Partial {
    pub header: Header,
    pub costs: Option<Costs>,
    pub images: BTreeMap<u32, ImageRecord>,
    pub footer: Option<Footer>,
    pub tail: Tail,
}

impl Partial {
    pub(crate) fn read(path: &Path) -> Result<Self> {
        let mut header = None;
        let mut costs = None;
        let mut footer = None;
        let mut images = BTreeMap::new();
        let schema = match records::schema_of(path, MAGIC)? {
            SCHEMA_V1 => SCHEMA_V1,
            _ => SCHEMA,
        };
        let tail = records::scan(path, MAGIC, schema, |rec| {
            let misplaced = |what: &str| {
                Error::format(
                    path,
                    format!("{what} record at byte {} is out of place", rec.offset),
                )
            };
            match rec.kind {
                KIND_HEADER if header.is_none() && schema == SCHEMA_V1 => {
                    let old: legacy::HeaderV1 = records::decode(path, &rec, "header")?;
                    header = Some(old.into_current())
                }
                KIND_HEADER if header.is_none() => {
                    header = Some(records::decode(path, &rec, "header")?)
                }
                KIND_HEADER => return Err(misplaced("second header")),
                _ if header.is_none() => return Err(misplaced("first")),
                _ if footer.is_some() => return Err(misplaced("record after the footer:")),
                KIND_COSTS if costs.is_none() => {
                    costs = Some(records::decode(path, &rec, "costs")?)
                }
                KIND_CHUNK => {
                    let chunk: Vec<ImageRecord> = records::decode(path, &rec, "chunk")?;
                    for img in chunk {
                        let i = img.index;
                        if images.insert(i, img).is_some() {
                            return Err(Error::format(
                                path,
                                format!("image {i} appears twice (chunk at byte {})", rec.offset),
                            ));
                        }
                    }
                }
                KIND_FOOTER => footer = Some(records::decode(path, &rec, "footer")?),
                k => {
                    return Err(Error::format(
                        path,
                        format!("unknown record kind {k} at byte {}", rec.offset),
                    ))
                }
            }
            Ok(())
        })?;
        let header: Header = header
            .ok_or_else(|| Error::format(path, "no header: the file is empty or truncated"))?;
        Ok(Partial {
            header,
            costs,
            images,
            footer,
            tail,
        })
    }
}

impl Profile {
    /// Loads a finished profile, validating it thoroughly: a truncated, tampered or unfinished
    /// file is an error naming the problem.
    pub fn load(path: &Path) -> Result<Self> {
        let p = Partial::read(path)?;
        if let Tail::Torn { reason, .. } = &p.tail {
            return Err(Error::format(
                path,
                format!("truncated or damaged ({reason}); if a profiling run was interrupted, rerun it to resume"),
            ));
        }
        let footer = p.footer.ok_or_else(|| {
            Error::format(
                path,
                "unfinished profile (no footer); rerun the same `triage profile` command to complete it",
            )
        })?;
        let costs = p
            .costs
            .ok_or_else(|| Error::format(path, "no costs record"))?;
        let profile = Profile {
            header: p.header,
            costs,
            images: p.images.into_values().collect(),
        };
        profile.validate(path, &footer)?;
        Ok(profile)
    }

    fn validate(&self, path: &Path, footer: &Footer) -> Result<()> {
        let h = &self.header;
        let bad = |m: String| Err(Error::format(path, m));
        let (lo, hi) = h.range;
        if lo > hi || hi > h.dataset.n_total {
            return bad(format!(
                "image range {lo}..{hi} outside 0..{}",
                h.dataset.n_total
            ));
        }
        if self.images.len() != (hi - lo) as usize {
            return bad(format!(
                "holds {} images but its range {lo}..{hi} has {}",
                self.images.len(),
                hi - lo
            ));
        }
        if footer.n_images as usize != self.images.len() {
            return bad(format!(
                "footer counts {} images, file holds {}",
                footer.n_images,
                self.images.len()
            ));
        }
        if self.costs.variants.len() != h.variants.len()
            || self
                .costs
                .variants
                .iter()
                .zip(&h.variants)
                .any(|(c, v)| c.name != v.name)
        {
            return bad("costs record does not match the variant list".into());
        }
        let (nv, nr, nf) = (h.variants.len(), h.remote.len(), h.feature_names.len());
        for (k, img) in self.images.iter().enumerate() {
            if img.index != lo + k as u32 {
                return bad(format!(
                    "image index {} where {} was expected",
                    img.index,
                    lo + k as u32
                ));
            }
            if usize::from(img.label) >= triage_zoo::NUM_CLASSES {
                return bad(format!(
                    "image {}: label {} out of range",
                    img.index, img.label
                ));
            }
            let Some(m) = img.measured() else { continue };
            let preds = m.local.iter().chain(m.remote.iter().map(|r| &r.prediction));
            let shapes_ok = m.local.len() == nv
                && m.remote.len() == nr
                && m.features.len() == nf
                && preds.clone().all(|p| {
                    p.logits.len() == triage_zoo::NUM_CLASSES
                        && p.top5
                            .iter()
                            .all(|&c| usize::from(c) < triage_zoo::NUM_CLASSES)
                });
            if !shapes_ok {
                return bad(format!(
                    "image {} ({}): wrong number of predictions, logits or features",
                    img.index, img.rel
                ));
            }
        }
        let failed = self.images.iter().filter(|i| i.result.is_err()).count();
        if footer.n_failed as usize != failed {
            return bad(format!(
                "footer counts {} failed images, file holds {failed}",
                footer.n_failed
            ));
        }
        Ok(())
    }

    /// Index of a variant by name.
    pub fn variant_index(&self, name: &str) -> Option<usize> {
        self.header.variants.iter().position(|v| v.name == name)
    }

    /// The images that decoded and ran.
    pub fn measured(&self) -> impl Iterator<Item = (&ImageRecord, &Measured)> {
        self.images
            .iter()
            .filter_map(|i| i.measured().map(|m| (i, m)))
    }

    /// Variant indices ordered from cheapest to most expensive (median warm latency).
    pub fn variants_by_cost(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.header.variants.len()).collect();
        order.sort_by(|&a, &b| {
            self.costs.variants[a]
                .latency
                .median_ms
                .total_cmp(&self.costs.variants[b].latency.median_ms)
        });
        order
    }

    /// Writes this profile as a finished file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut w = records::Writer::create(path, MAGIC, SCHEMA)?;
        w.write_value(KIND_HEADER, &self.header)?;
        w.write_value(KIND_COSTS, &self.costs)?;
        for chunk in self.images.chunks(run::CHUNK) {
            w.write_value(KIND_CHUNK, &chunk)?;
        }
        w.write_value(
            KIND_FOOTER,
            &Footer {
                n_images: self.images.len() as u32,
                n_failed: self.images.iter().filter(|i| i.result.is_err()).count() as u32,
            },
        )
    }
}

#[cfg(test)]
pub(crate) mod tests;
