//! A profile seen as premodel training data: one feature row and one correctness row per
//! measured image, variants ordered cheapest first by measured latency.

use triage_premodel::features::{FeatureSet, IMAGE_FEATURE_NAMES, PROBE_FEATURE_NAMES};
use triage_premodel::{Correctness, Matrix};

use crate::error::{Error, Result};
use crate::profile::Profile;

/// Training arrays derived from a profile.
#[derive(Debug, Clone)]
pub struct TrainingSet {
    /// Profile variant index of each column, cheapest first.
    pub order: Vec<usize>,
    /// Variant names in column order.
    pub names: Vec<String>,
    /// Median warm latency in column order, ms.
    pub latency_ms: Vec<f32>,
    /// Index into `profile.images` of each row.
    pub rows: Vec<usize>,
    /// Top-1 correctness, one row per image, columns in `order`.
    pub correctness: Correctness,
    /// Image features ([`FeatureSet::Image`]).
    pub image_features: Matrix,
    /// Probe features of the cheapest variant followed by image features
    /// ([`FeatureSet::ImageAndProbe`]).
    pub probe_features: Matrix,
}

impl TrainingSet {
    /// Builds the arrays from every measured image of `profile`.
    pub fn from_profile(profile: &Profile) -> Result<Self> {
        let h = &profile.header;
        if h.feature_names.len() != IMAGE_FEATURE_NAMES.len()
            || h.feature_names
                .iter()
                .zip(IMAGE_FEATURE_NAMES.iter())
                .any(|(a, b)| a != b)
            || h.feature_set_version != triage_premodel::features::FEATURE_SET_VERSION
        {
            return Err(Error::Mismatch(format!(
                "the profile's image features (version {}) are not this build's (version {}); re-profile",
                h.feature_set_version,
                triage_premodel::features::FEATURE_SET_VERSION
            )));
        }
        let order = profile.variants_by_cost();
        let names = order.iter().map(|&v| h.variants[v].name.clone()).collect();
        let latency_ms = order
            .iter()
            .map(|&v| profile.costs.variants[v].stage_ms() as f32)
            .collect();
        let cheapest = *order
            .first()
            .ok_or_else(|| Error::InvalidArgument("the profile has no variants".into()))?;
        let mut rows = Vec::new();
        let mut correct = Vec::new();
        let mut image_rows = Vec::new();
        let mut probe_rows = Vec::new();
        for (r, img) in profile.images.iter().enumerate() {
            let Some(m) = img.measured() else { continue };
            rows.push(r);
            let label = usize::from(img.label);
            correct.extend(order.iter().map(|&v| m.local[v].top1() == label));
            image_rows.extend_from_slice(&m.features);
            let probs = m.local[cheapest].probs(1.0);
            let mut probe = [0f32; 4];
            triage_premodel::features::probe_features(&probs, &mut probe);
            probe_rows.extend_from_slice(&probe);
            probe_rows.extend_from_slice(&m.features);
        }
        let n = rows.len();
        let nf = IMAGE_FEATURE_NAMES.len();
        Ok(TrainingSet {
            correctness: Correctness::new(n, order.len(), correct)?,
            image_features: Matrix::new(n, nf, image_rows)?,
            probe_features: Matrix::new(n, PROBE_FEATURE_NAMES.len() + nf, probe_rows)?,
            order,
            names,
            latency_ms,
            rows,
        })
    }

    /// The feature matrix of a feature set.
    pub fn features(&self, set: FeatureSet) -> &Matrix {
        match set {
            FeatureSet::Image => &self.image_features,
            FeatureSet::ImageAndProbe => &self.probe_features,
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}
