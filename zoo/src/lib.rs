//! # triage-zoo: the model catalogue and everything between an image file and a logit
//!
//! This crate owns the first stage of Triage's data flow (zoo -> compiler -> runtime):
//!
//! - [`manifest`]: `zoo.toml`, parsed and validated field by field;
//! - [`Zoo`] and [`Variant`]: each network, sha256-verified and loaded with `tract-onnx` lazily
//!   and once, run on a [`PreparedInput`] to [`Logits`] over the 1000 ImageNet classes;
//! - [`engine`]: the inference backends (tract, optional ONNX Runtime) behind one trait;
//! - [`decode`] and [`preprocess`]: an image decoded once (EXIF orientation applied, any colour
//!   model to RGB, scaled JPEG decoding when every consumer wants less than full resolution),
//!   then resized, centre-cropped and normalized per variant;
//! - [`dataset`]: labelled ImageNet-style datasets in every standard layout;
//! - [`eval`]: top-1/top-5 of variants over a dataset on all cores.
//!
//! Nothing here knows about profiles, plans or budgets.

pub mod bench;
pub mod corrupt;
pub mod dataset;
pub mod decode;
pub mod engine;
pub mod error;
pub mod eval;
pub mod hash;
pub mod logits;
pub mod manifest;
pub mod preprocess;
mod zoo;

pub use dataset::{Dataset, DatasetOptions, Layout, Sample, Shard};
pub use decode::{decode_bytes, decode_file, DecodeOptions, DecodedImage};
pub use engine::{Backend, Engine, EngineOptions};
pub use error::{Error, Result};
pub use logits::{ClassNames, Logits};
pub use manifest::{Manifest, ModelSpec, Preprocessing, Resample};
pub use preprocess::{resize_shorter, PreparedInput};
pub use zoo::{Variant, Zoo};

/// Version of `tract-onnx` this crate is built against (pinned in the workspace manifest);
/// recorded in profiles because latencies depend on it.
pub const TRACT_VERSION: &str = "0.23.9";

/// Number of ImageNet-1k classes every variant is mapped onto.
pub const NUM_CLASSES: usize = 1000;

/// [`Dataset::identity`] of the 700-image DEV set on which `zoo.toml`'s reference accuracies
/// (`top1_dev`, `top5_dev`) were measured. Recognising the set by its file list rather than
/// its path lets a check compare against the reference wherever the set is stored.
pub const DEV_SET_IDENTITY: &str =
    "3cd3292cce12b75e9fc733629315797afee350af684ef8b93371aa437f173b20";

#[cfg(test)]
mod tests {
    #[test]
    fn tract_version_matches_the_lockfile() {
        let lock = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock");
        let text = std::fs::read_to_string(&lock).unwrap();
        let needle = format!(
            "name = \"tract-onnx\"\nversion = \"{}\"",
            super::TRACT_VERSION
        );
        assert!(
            text.contains(&needle),
            "Cargo.lock does not pin tract-onnx {}",
            super::TRACT_VERSION
        );
    }
}
