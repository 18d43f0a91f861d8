//! Data shared by the bench and the training-time example: real sample images when the shared
//! data directory is present, synthetic stand-ins (announced on stderr) when it is not.

#![allow(dead_code)]

use std::path::PathBuf;

use image::{Rgb, RgbImage};
use triage_premodel::prelude::*;
use triage_premodel::rng::SplitMix64;

pub const N_VARIANTS: usize = 4;
pub const LATENCY_MS: [f32; N_VARIANTS] = [3.0, 8.0, 20.0, 45.0];

pub fn shared_dir() -> PathBuf {
    std::env::var_os("TRIAGE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared").into())
}

/// Decoded sample images with their metadata (at most `limit`).
pub fn sample_images(limit: usize) -> Vec<(RgbImage, ImageMeta)> {
    let dir = shared_dir().join("datasets/imagenet-sample/images");
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "JPEG"))
            .collect(),
        Err(e) => {
            eprintln!(
                "note: no sample images at {} ({e}); using synthetic images",
                dir.display()
            );
            Vec::new()
        }
    };
    paths.sort();
    let mut out: Vec<(RgbImage, ImageMeta)> = paths
        .iter()
        .take(limit)
        .filter_map(|p| {
            let bytes = std::fs::read(p).ok()?;
            let img = image::load_from_memory(&bytes).ok()?.to_rgb8();
            let meta = ImageMeta {
                width: img.width(),
                height: img.height(),
                byte_len: bytes.len() as u64,
            };
            Some((img, meta))
        })
        .collect();
    if out.is_empty() {
        let mut r = SplitMix64::new(1);
        for k in 0..limit.min(50) {
            let img = RgbImage::from_fn(500, 375, |x, y| {
                let v = ((x / (4 + k as u32 % 9) + y / 7) % 2) as u8 * 120 + (r.below(100) as u8);
                Rgb([v, v / 2, 255 - v])
            });
            out.push((
                img,
                ImageMeta {
                    width: 500,
                    height: 375,
                    byte_len: 60_000,
                },
            ));
        }
    }
    out
}

/// A peaked softmax-like vector over 1000 classes.
pub fn probe_vector(seed: u64) -> Vec<f32> {
    let mut r = SplitMix64::new(seed);
    let mut p: Vec<f32> = (0..1000).map(|_| r.next_f32().powi(8)).collect();
    p[r.below(1000)] += 20.0;
    let s: f32 = p.iter().sum();
    p.iter_mut().for_each(|v| *v /= s);
    p
}

/// `n` training rows of `set` features: real image feature rows jittered by 10% of each
/// feature's spread (so the distribution looks like real data), with correctness driven by a
/// noisy difficulty score over a few features.
pub fn training_set(base: &[Vec<f32>], n: usize, seed: u64) -> (Matrix, Correctness) {
    let d = base[0].len();
    let nb = base.len() as f32;
    let mean: Vec<f32> = (0..d)
        .map(|c| base.iter().map(|r| r[c]).sum::<f32>() / nb)
        .collect();
    let sd: Vec<f32> = (0..d)
        .map(|c| {
            let v = base.iter().map(|r| (r[c] - mean[c]).powi(2)).sum::<f32>() / nb;
            v.sqrt().max(1e-6)
        })
        .collect();
    let mut r = SplitMix64::new(seed);
    let mut x = Matrix::zeros(n, d);
    let mut y = Vec::with_capacity(n * N_VARIANTS);
    for i in 0..n {
        let src = &base[r.below(base.len())];
        let row = x.row_mut(i);
        for c in 0..d {
            row[c] = src[c] + 0.1 * sd[c] * r.normal();
        }
        let z = |c: usize| (row[c % d] - mean[c % d]) / sd[c % d];
        let difficulty = -0.8 * z(0) + 0.4 * z(4) + 0.3 * z(6) - 0.2 * z(1) + 0.7 * r.normal();
        for t in [-0.6f32, 0.0, 0.6, 1.2] {
            y.push(difficulty < t);
        }
    }
    (
        x,
        Correctness::new(n, N_VARIANTS, y).expect("shape is right by construction"),
    )
}

/// Feature rows of the sample images for `set`.
pub fn feature_rows(images: &[(RgbImage, ImageMeta)], set: FeatureSet) -> Vec<Vec<f32>> {
    images
        .iter()
        .enumerate()
        .map(|(i, (img, meta))| {
            set.extract(img, meta, Some(&probe_vector(i as u64)))
                .expect("sample image features")
        })
        .collect()
}

/// Default parameters per learner, as the compiler would start from.
pub fn configs(set: FeatureSet) -> Vec<PremodelConfig> {
    LearnerKind::ALL
        .into_iter()
        .map(|k| PremodelConfig::new(set, k.default_params()))
        .collect()
}
