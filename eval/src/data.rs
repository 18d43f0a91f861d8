//! A profile seen as replay data: per image, what every variant and remote option answered
//! and what it cost, with variants in one fixed column order (cheapest first).

use triage_compiler::profile::Profile;
use triage_premodel::features::{FeatureSet, IMAGE_FEATURE_NAMES, PROBE_FEATURE_NAMES};
use triage_premodel::{Correctness, Matrix};

use crate::error::{Error, Result};

/// One local variant's answers.
#[derive(Debug, Clone)]
pub struct VariantData {
    pub name: String,
    pub sha256: String,
    /// Preprocessing + warm inference median on the profiling host, ms.
    pub stage_ms: f64,
    /// `[image]`: logits over the 1000 classes.
    pub logits: Vec<Vec<f32>>,
    /// `[image]`: top-1 is right.
    pub correct: Vec<bool>,
    /// `[image]`: the label is among the top five.
    pub top5: Vec<bool>,
}

/// One remote option's answers and upload costs.
#[derive(Debug, Clone)]
pub struct RemoteData {
    pub name: String,
    /// Server time per request on the profiling host (sum over its server variants), ms.
    pub server_ms: f64,
    pub logits: Vec<Vec<f32>>,
    pub correct: Vec<bool>,
    pub top5: Vec<bool>,
    /// `[image]`: bytes uploaded.
    pub upload_bytes: Vec<f64>,
    /// `[image]`: resize + JPEG encode on the device (host ms).
    pub encode_ms: Vec<f64>,
}

/// Replay data of one profile. Images are the profile's measured images in profile order;
/// an image's position here is its place in the evaluated sequence.
#[derive(Debug, Clone)]
pub struct EvalData {
    /// Index into `profile.images` of each image.
    pub rows: Vec<usize>,
    /// Path relative to the dataset root.
    pub rel: Vec<String>,
    pub labels: Vec<usize>,
    /// Local variants, cheapest first (by the profile's median latency unless an order was
    /// imposed).
    pub variants: Vec<VariantData>,
    pub remote: Vec<RemoteData>,
    /// Per image: decode time (host ms), the fixed cost of every policy.
    pub decode_ms: Vec<f64>,
    /// Per image: premodel image-feature extraction time (host ms).
    pub features_ms: Vec<f64>,
    /// Image features ([`FeatureSet::Image`]), one row per image.
    pub features: Matrix,
    pub zoo_fingerprint: String,
    pub dataset_identity: String,
    pub dataset_root: String,
    pub n_failed: usize,
    pub host_cpu: String,
}

impl EvalData {
    /// Builds replay data from every measured image of `profile`. `order` imposes the
    /// variant column order by name (to line a test profile up with a training profile);
    /// `None` orders by the profile's measured cost.
    pub fn from_profile(profile: &Profile, order: Option<&[String]>) -> Result<Self> {
        let h = &profile.header;
        let cols: Vec<usize> = match order {
            None => profile.variants_by_cost(),
            Some(names) => names
                .iter()
                .map(|n| {
                    profile.variant_index(n).ok_or_else(|| {
                        Error::Mismatch(format!(
                            "variant {n} is not in the profile of {} (another zoo?)",
                            h.dataset.root
                        ))
                    })
                })
                .collect::<Result<_>>()?,
        };
        if cols.is_empty() {
            return Err(Error::InvalidArgument("the profile has no variants".into()));
        }
        let measured: Vec<(usize, &triage_compiler::profile::ImageRecord)> = profile
            .images
            .iter()
            .enumerate()
            .filter(|(_, r)| r.measured().is_some())
            .collect();
        if measured.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "the profile of {} holds no measured image",
                h.dataset.root
            )));
        }
        let labels: Vec<usize> = measured.iter().map(|(_, r)| usize::from(r.label)).collect();
        let m = |r: &triage_compiler::profile::ImageRecord| {
            r.measured()
                .ok_or_else(|| Error::InvalidArgument("unmeasured image".into()))
                .cloned()
        };
        let ms: Vec<triage_compiler::profile::Measured> =
            measured.iter().map(|(_, r)| m(r)).collect::<Result<_>>()?;
        let variants = cols
            .iter()
            .map(|&v| {
                let c = &profile.costs.variants[v];
                let logits: Vec<Vec<f32>> = ms.iter().map(|x| x.local[v].logits_f32()).collect();
                VariantData {
                    name: h.variants[v].name.clone(),
                    sha256: h.variants[v].sha256.clone(),
                    stage_ms: c.stage_ms(),
                    correct: ms
                        .iter()
                        .zip(&labels)
                        .map(|(x, &y)| x.local[v].top1() == y)
                        .collect(),
                    top5: ms
                        .iter()
                        .zip(&labels)
                        .map(|(x, &y)| x.local[v].top5.iter().any(|&c| usize::from(c) == y))
                        .collect(),
                    logits,
                }
            })
            .collect();
        let remote = h
            .remote
            .iter()
            .enumerate()
            .map(|(r, opt)| {
                let server_ms = opt
                    .servers
                    .iter()
                    .filter_map(|s| profile.variant_index(s))
                    .map(|v| profile.costs.variants[v].stage_ms())
                    .sum();
                RemoteData {
                    name: opt.name(),
                    server_ms,
                    logits: ms
                        .iter()
                        .map(|x| x.remote[r].prediction.logits_f32())
                        .collect(),
                    correct: ms
                        .iter()
                        .zip(&labels)
                        .map(|(x, &y)| x.remote[r].prediction.top1() == y)
                        .collect(),
                    top5: ms
                        .iter()
                        .zip(&labels)
                        .map(|(x, &y)| {
                            x.remote[r]
                                .prediction
                                .top5
                                .iter()
                                .any(|&c| usize::from(c) == y)
                        })
                        .collect(),
                    upload_bytes: ms
                        .iter()
                        .map(|x| f64::from(x.remote[r].upload_bytes))
                        .collect(),
                    encode_ms: ms
                        .iter()
                        .map(|x| f64::from(x.remote[r].encode_us) / 1e3)
                        .collect(),
                }
            })
            .collect();
        let features_ok = has_current_features(profile);
        let nf = IMAGE_FEATURE_NAMES.len();
        let features = if features_ok {
            let mut rows = Vec::with_capacity(ms.len() * nf);
            for x in &ms {
                rows.extend_from_slice(&x.features);
            }
            Matrix::new(ms.len(), nf, rows)?
        } else {
            // Recomputed from the images by `with_features` when the dataset is given.
            Matrix::zeros(0, nf)
        };
        Ok(EvalData {
            rows: measured.iter().map(|(k, _)| *k).collect(),
            rel: measured.iter().map(|(_, r)| r.rel.clone()).collect(),
            labels,
            variants,
            remote,
            decode_ms: ms.iter().map(|x| f64::from(x.decode_us) / 1e3).collect(),
            features_ms: ms.iter().map(|x| f64::from(x.features_us) / 1e3).collect(),
            features,
            zoo_fingerprint: h.zoo_fingerprint.clone(),
            dataset_identity: h.dataset.identity.clone(),
            dataset_root: h.dataset.root.clone(),
            n_failed: profile.images.len() - measured.len(),
            host_cpu: h.host.cpu.clone(),
        })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn n_variants(&self) -> usize {
        self.variants.len()
    }

    /// Variant names in column order.
    pub fn variant_names(&self) -> Vec<String> {
        self.variants.iter().map(|v| v.name.clone()).collect()
    }

    /// Column of a variant by name.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.variants.iter().position(|v| v.name == name)
    }

    /// Whether the image features are present (they are unless the profile was made with
    /// another feature-set version and no dataset was given to recompute them).
    pub fn has_features(&self) -> bool {
        self.features.n_rows() == self.len()
    }

    /// Replaces the image features (recomputed from the images).
    pub fn with_features(mut self, features: Matrix) -> Result<Self> {
        if features.n_rows() != self.len() || features.n_cols() != IMAGE_FEATURE_NAMES.len() {
            return Err(Error::InvalidArgument(format!(
                "{} feature rows of {} columns for {} images",
                features.n_rows(),
                features.n_cols(),
                self.len()
            )));
        }
        self.features = features;
        Ok(self)
    }

    /// Fails with a message naming the fix when features are missing.
    pub fn require_features(&self) -> Result<()> {
        if self.has_features() {
            Ok(())
        } else {
            Err(Error::Mismatch(format!(
                "the profile's image features are from another feature-set version than this build's ({}); pass the profiled images with --data to recompute them",
                triage_premodel::features::FEATURE_SET_VERSION
            )))
        }
    }

    /// Top-1 correctness of every variant, columns in this data's order.
    pub fn correctness(&self) -> Result<Correctness> {
        let nv = self.n_variants();
        let mut data = Vec::with_capacity(self.len() * nv);
        for i in 0..self.len() {
            data.extend(self.variants.iter().map(|v| v.correct[i]));
        }
        Ok(Correctness::new(self.len(), nv, data)?)
    }

    /// Probe features of `col`'s softmax at temperature 1 followed by the image features of
    /// image `i` ([`FeatureSet::ImageAndProbe`]).
    pub fn probe_row(&self, col: usize, i: usize) -> Vec<f32> {
        let probs = triage_zoo::logits::softmax(&self.variants[col].logits[i], 1.0);
        let mut probe = [0f32; PROBE_FEATURE_NAMES.len()];
        triage_premodel::features::probe_features(&probs, &mut probe);
        let mut row = probe.to_vec();
        row.extend_from_slice(self.features.row(i));
        debug_assert_eq!(row.len(), FeatureSet::ImageAndProbe.len());
        row
    }

    /// Checks that `other` measured the same zoo (variants, weights, remote options).
    pub fn check_same_zoo(&self, other: &EvalData) -> Result<()> {
        if self.zoo_fingerprint != other.zoo_fingerprint {
            return Err(Error::Mismatch(format!(
                "the profiles of {} and {} are of different zoos (fingerprints {} and {})",
                self.dataset_root, other.dataset_root, self.zoo_fingerprint, other.zoo_fingerprint
            )));
        }
        let names = |d: &EvalData| d.remote.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        if names(self) != names(other) {
            return Err(Error::Mismatch(format!(
                "the profiles of {} and {} have different remote options ({:?} vs {:?})",
                self.dataset_root,
                other.dataset_root,
                names(self),
                names(other)
            )));
        }
        Ok(())
    }
}

/// Whether the profile's stored image features are this build's feature set.
pub fn has_current_features(profile: &Profile) -> bool {
    let h = &profile.header;
    h.feature_set_version == triage_premodel::features::FEATURE_SET_VERSION
        && h.feature_names.len() == IMAGE_FEATURE_NAMES.len()
        && h.feature_names
            .iter()
            .zip(IMAGE_FEATURE_NAMES.iter())
            .all(|(a, b)| a == b)
}

/// Largest softmax probability of `logits / t`, computed without building the vector.
pub fn confidence(logits: &[f32], t: f64) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    if !max.is_finite() {
        return 0.0;
    }
    let sum: f64 = logits
        .iter()
        .map(|&z| ((f64::from(z) - max) / t).exp())
        .sum();
    1.0 / sum
}

/// A profile holding only the given images of `profile` (by index into `profile.images`),
/// for compiling on training folds.
pub fn subset_profile(profile: &Profile, rows: &[usize]) -> Profile {
    Profile {
        header: profile.header.clone(),
        costs: profile.costs.clone(),
        images: rows
            .iter()
            .filter_map(|&r| profile.images.get(r).cloned())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidence_is_the_top_softmax_probability() {
        let z = [1.0f32, 3.0, 0.5];
        for t in [0.5, 1.0, 2.0] {
            let p = triage_zoo::logits::softmax(&z, t as f32);
            let top = p.iter().copied().fold(0f32, f32::max);
            assert!((confidence(&z, t) - f64::from(top)).abs() < 1e-6);
        }
        assert_eq!(confidence(&[], 1.0), 0.0);
    }
}
