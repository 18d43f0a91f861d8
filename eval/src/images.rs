//! The profiled images themselves, in any ImageNet validation layout: checking that a dataset
//! is the image list a profile measured, and recomputing premodel image features from the
//! pixels when the profile's features come from another feature-set version.

use std::collections::HashMap;

use rayon::prelude::*;
use triage_compiler::profile::Profile;
use triage_premodel::features::{FeatureSet, ImageMeta, IMAGE_FEATURE_NAMES};
use triage_premodel::Matrix;
use triage_zoo::{decode_file, Dataset, DecodeOptions};

use crate::error::{Error, Result};

fn file_name(rel: &str) -> &str {
    rel.rsplit('/').next().unwrap_or(rel)
}

/// Checks that `data` holds exactly the images `profile` measured (same file names and
/// labels, whatever the layout or location).
pub fn check_dataset(profile: &Profile, data: &Dataset) -> Result<()> {
    let want = &profile.header.dataset.identity;
    if &data.identity() != want {
        return Err(Error::Mismatch(format!(
            "dataset {} ({:?} layout, {} images) is not the image list the profile measured ({} images from {}): file names or labels differ",
            data.root().display(),
            data.layout(),
            data.len(),
            profile.header.dataset.n_total,
            profile.header.dataset.root
        )));
    }
    Ok(())
}

/// Image features of every measured image of `profile`, recomputed from `data`'s files, in
/// the order [`crate::data::EvalData`] uses. `step` is called once per image.
pub fn features_from_images(
    profile: &Profile,
    data: &Dataset,
    decode: &DecodeOptions,
    step: &(dyn Fn() + Sync),
) -> Result<Matrix> {
    check_dataset(profile, data)?;
    let by_name: HashMap<&str, &std::path::Path> = data
        .samples()
        .iter()
        .map(|s| (file_name(&s.rel), s.path.as_path()))
        .collect();
    let rows: Vec<Result<Vec<f32>>> = profile
        .images
        .par_iter()
        .filter(|r| r.measured().is_some())
        .map(|r| {
            let path = by_name.get(file_name(&r.rel)).ok_or_else(|| {
                Error::Mismatch(format!("{} is not in {}", r.rel, data.root().display()))
            })?;
            let img = decode_file(path, decode)?;
            let meta = ImageMeta {
                width: img.width,
                height: img.height,
                byte_len: img.byte_len,
            };
            let f = FeatureSet::Image.extract(&img.rgb, &meta, None)?;
            step();
            Ok(f)
        })
        .collect();
    let mut flat = Vec::with_capacity(rows.len() * IMAGE_FEATURE_NAMES.len());
    let n = rows.len();
    for r in rows {
        flat.extend(r?);
    }
    Ok(Matrix::new(n, IMAGE_FEATURE_NAMES.len(), flat)?)
}
