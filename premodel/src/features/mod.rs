//! Cheap per-image features the premodel decides on, and the preprocessing fitted on them.
//!
//! A [`FeatureSet`] names its features with stable strings and carries [`FEATURE_SET_VERSION`]:
//! any change to how a feature is computed must bump the version, because a serialized
//! premodel trained on the old numbers would otherwise be silently wrong.

mod correlation;
mod edges;
mod fast;
mod image;
mod probe;
mod resize;
mod standardize;

use ::image::RgbImage;
use serde::{Deserialize, Serialize};

pub use self::correlation::{pearson, reduce_correlated};
pub use self::image::IMAGE_FEATURE_NAMES;
pub use self::probe::{probe_features, PROBE_FEATURE_NAMES};
pub use self::resize::{downsize, working_size, WORKING_LONG_SIDE_MAX, WORKING_SHORT_SIDE};
pub use self::standardize::Standardizer;
use crate::error::{Error, Result};

/// Version of the feature definitions (names, order, formulas, working resolution). Bump on
/// any change that alters a computed value.
pub const FEATURE_SET_VERSION: u32 = 1;

/// Facts about the original file that the decoded, downsized pixels no longer show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageMeta {
    /// Original width in pixels.
    pub width: u32,
    /// Original height in pixels.
    pub height: u32,
    /// Size of the encoded file in bytes (JPEG compressibility is a texture proxy).
    pub byte_len: u64,
}

/// Which features a premodel sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FeatureSet {
    /// Image and file features only: usable before any DNN has run.
    Image,
    /// Probe features from the cheapest variant's softmax, then the image features. Probe
    /// features come first so correlation-based reduction keeps them over image features they
    /// correlate with.
    ImageAndProbe,
}

const N_IMAGE: usize = IMAGE_FEATURE_NAMES.len();
const N_PROBE: usize = PROBE_FEATURE_NAMES.len();

/// [`FeatureSet::ImageAndProbe`] names: probe names followed by image names.
const IMAGE_AND_PROBE_NAMES: [&str; N_PROBE + N_IMAGE] = {
    let mut out = [""; N_PROBE + N_IMAGE];
    let mut i = 0;
    while i < N_PROBE {
        out[i] = PROBE_FEATURE_NAMES[i];
        i += 1;
    }
    let mut j = 0;
    while j < N_IMAGE {
        out[N_PROBE + j] = IMAGE_FEATURE_NAMES[j];
        j += 1;
    }
    out
};

impl FeatureSet {
    /// Every feature set, for CLIs and reports.
    pub const ALL: [FeatureSet; 2] = [FeatureSet::Image, FeatureSet::ImageAndProbe];

    /// Stable name used in plans and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FeatureSet::Image => "image",
            FeatureSet::ImageAndProbe => "image+probe",
        }
    }

    /// Parses [`FeatureSet::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Feature names in output order.
    pub fn names(self) -> &'static [&'static str] {
        match self {
            FeatureSet::Image => &IMAGE_FEATURE_NAMES,
            FeatureSet::ImageAndProbe => &IMAGE_AND_PROBE_NAMES,
        }
    }

    /// Number of features.
    pub fn len(self) -> usize {
        self.names().len()
    }

    /// Never true; present because `len` is.
    pub fn is_empty(self) -> bool {
        false
    }

    /// Whether computing this set needs the cheapest variant's probabilities.
    pub fn uses_probe(self) -> bool {
        matches!(self, FeatureSet::ImageAndProbe)
    }

    /// Computes the features of `img`, which must already be at the working resolution
    /// (see [`downsize`]), into `out` (length [`FeatureSet::len`]). `probe` is the cheapest
    /// variant's softmax; it is required by [`FeatureSet::ImageAndProbe`] and ignored otherwise.
    pub fn compute_into(
        self,
        img: &RgbImage,
        meta: &ImageMeta,
        probe: Option<&[f32]>,
        out: &mut [f32],
    ) -> Result<()> {
        if out.len() != self.len() {
            return Err(Error::Shape {
                what: "feature buffer",
                expected: self.len(),
                got: out.len(),
            });
        }
        match self {
            FeatureSet::Image => image::image_features(img, meta, out),
            FeatureSet::ImageAndProbe => {
                let probs = probe.ok_or(Error::MissingProbe {
                    feature_set: self.name(),
                })?;
                let (head, tail) = out.split_at_mut(N_PROBE);
                let mut p = [0f32; N_PROBE];
                probe::probe_features(probs, &mut p);
                head.copy_from_slice(&p);
                image::image_features(img, meta, tail)
            }
        }
    }

    /// [`FeatureSet::compute_into`] into a new vector.
    pub fn compute(
        self,
        img: &RgbImage,
        meta: &ImageMeta,
        probe: Option<&[f32]>,
    ) -> Result<Vec<f32>> {
        let mut out = vec![0.0; self.len()];
        self.compute_into(img, meta, probe, &mut out)?;
        Ok(out)
    }

    /// Features of a decoded image of any size: downsizes it to the working resolution first
    /// unless it already is at that size.
    pub fn extract(
        self,
        decoded: &RgbImage,
        meta: &ImageMeta,
        probe: Option<&[f32]>,
    ) -> Result<Vec<f32>> {
        let (w, h) = decoded.dimensions();
        if w > 0 && h > 0 && working_size(w, h) == (w, h) {
            self.compute(decoded, meta, probe)
        } else {
            self.compute(&downsize(decoded), meta, probe)
        }
    }
}

#[cfg(test)]
mod tests;
