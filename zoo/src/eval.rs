//! Accuracy of variants over a dataset, using every core: each image is decoded once (at the
//! smallest scale all the variants can use) and every variant's input is derived from it.
//! A bad image is recorded and skipped; it never stops the run.

use std::path::PathBuf;
use std::time::Instant;

use rayon::prelude::*;

use crate::dataset::Dataset;
use crate::decode::{decode_file, DecodeOptions};
use crate::error::Result;
use crate::zoo::{Variant, Zoo};

/// Per-variant tallies.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct VariantScore {
    pub name: String,
    /// Images scored (the dataset minus the images that failed to decode).
    pub n: usize,
    pub top1_correct: usize,
    pub top5_correct: usize,
    /// Sum over images of preprocessing + inference wall time on one core, seconds.
    pub seconds: f64,
}

impl VariantScore {
    pub fn top1(&self) -> f64 {
        self.top1_correct as f64 / self.n.max(1) as f64
    }
    pub fn top5(&self) -> f64 {
        self.top5_correct as f64 / self.n.max(1) as f64
    }
    pub fn ms_per_image(&self) -> f64 {
        1e3 * self.seconds / self.n.max(1) as f64
    }
}

/// The outcome of [`evaluate`].
#[derive(Debug, Clone, Default)]
pub struct EvalReport {
    pub variants: Vec<VariantScore>,
    /// Images that could not be decoded or run, with the error.
    pub failures: Vec<(PathBuf, String)>,
    /// Total decode time over the scored images, seconds.
    pub decode_seconds: f64,
}

struct ImageResult {
    decode_s: f64,
    /// Per variant: (top-1 correct, top-5 correct, seconds).
    per_variant: Vec<(bool, bool, f64)>,
}

/// Scores `variants` on every image of `data`. `progress` is called once per image.
pub fn evaluate(
    variants: &[&Variant],
    data: &Dataset,
    base: DecodeOptions,
    progress: &(dyn Fn() + Sync),
) -> Result<EvalReport> {
    for v in variants {
        v.load()?;
    }
    let opts = Zoo::decode_options_for(variants.iter().copied(), base);
    let results: Vec<std::result::Result<ImageResult, (PathBuf, String)>> = data
        .samples()
        .par_iter()
        .map(|s| {
            let r = score_image(variants, &s.path, s.label, &opts)
                .map_err(|e| (s.path.clone(), e.to_string()));
            progress();
            r
        })
        .collect();

    let mut report = EvalReport {
        variants: variants
            .iter()
            .map(|v| VariantScore {
                name: v.name().to_string(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    for r in results {
        match r {
            Ok(img) => {
                report.decode_seconds += img.decode_s;
                for (score, (t1, t5, s)) in report.variants.iter_mut().zip(img.per_variant) {
                    score.n += 1;
                    score.top1_correct += usize::from(t1);
                    score.top5_correct += usize::from(t5);
                    score.seconds += s;
                }
            }
            Err(f) => {
                tracing::warn!(path = %f.0.display(), error = %f.1, "image skipped");
                report.failures.push(f);
            }
        }
    }
    Ok(report)
}

fn score_image(
    variants: &[&Variant],
    path: &std::path::Path,
    label: usize,
    opts: &DecodeOptions,
) -> Result<ImageResult> {
    let t = Instant::now();
    let img = decode_file(path, opts)?;
    let decode_s = t.elapsed().as_secs_f64();
    let mut per_variant = Vec::with_capacity(variants.len());
    for v in variants {
        let t = Instant::now();
        let logits = v.classify(&img)?;
        let secs = t.elapsed().as_secs_f64();
        let top5 = logits.top_k(5);
        per_variant.push((top5.first() == Some(&label), top5.contains(&label), secs));
    }
    Ok(ImageResult {
        decode_s,
        per_variant,
    })
}
