//! Cross-validation of premodel configurations: out-of-fold predictions for every image, then
//! the numbers the compiler needs to pick a learner - how often the chosen variant is the
//! oracle's, how well each variant's correctness is ranked (AUC) and calibrated (Brier), and
//! what top-1 and latency a policy following the premodel would get.
//!
//! Folds come from [`kfold`]: a SplitMix64 shuffle (see [`crate::rng`]) dealt round-robin, so
//! a seed always gives the same folds and fold sizes differ by at most one.

mod metrics;

use serde::{Deserialize, Serialize};

pub use self::metrics::{brier, roc_auc};
use crate::data::{Correctness, Matrix};
use crate::error::{Error, Result};
use crate::learners::choose_variant;
use crate::premodel::{Premodel, PremodelConfig};
use crate::rng::SplitMix64;

/// The test folds of a `k`-fold split of `n` items: every index in exactly one fold, each fold
/// sorted ascending.
pub fn kfold(n: usize, k: usize, seed: u64) -> Result<Vec<Vec<usize>>> {
    if k < 2 {
        return Err(Error::InvalidParam {
            learner: "cross-validation",
            param: "k",
            reason: format!("must be at least 2, got {k}"),
        });
    }
    if n < k {
        return Err(Error::TooFewRows {
            what: "k-fold split",
            needed: k,
            got: n,
        });
    }
    let mut order: Vec<usize> = (0..n).collect();
    SplitMix64::new(seed).shuffle(&mut order);
    let mut folds = vec![Vec::with_capacity(n / k + 1); k];
    for (pos, i) in order.into_iter().enumerate() {
        folds[pos % k].push(i);
    }
    folds.iter_mut().for_each(|f| f.sort_unstable());
    Ok(folds)
}

/// Every index of `folds` except those of the folds numbered in `skip`: the training rows
/// when the skipped folds are held out.
pub fn train_indices(folds: &[Vec<usize>], skip: &[usize]) -> Vec<usize> {
    folds
        .iter()
        .enumerate()
        .filter(|(g, _)| !skip.contains(g))
        .flat_map(|(_, idx)| idx.iter().copied())
        .collect()
}

/// Cross-validation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CvOptions {
    /// Number of folds.
    pub k: usize,
    /// Fold assignment seed; fold `f` trains its learner with a seed derived from this.
    pub seed: u64,
    /// Probability threshold the simulated policy uses (see `Learner::choose`).
    pub min_prob: f32,
}

impl Default for CvOptions {
    fn default() -> Self {
        Self {
            k: 5,
            seed: 0,
            min_prob: 0.5,
        }
    }
}

/// Top-1 and mean latency of a fixed selection rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Fraction of images whose chosen variant is correct.
    pub top1: f64,
    /// Mean latency of the chosen variants, in ms.
    pub mean_latency_ms: f64,
}

/// Cross-validated quality of one premodel configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LearnerReport {
    pub config: PremodelConfig,
    /// `config.label()`, for tables.
    pub label: String,
    /// Out-of-fold P(correct) for every image and variant.
    pub oof_probs: Matrix,
    /// Variant the premodel would run for every image.
    pub chosen: Vec<usize>,
    /// Fraction of images where `chosen` equals the oracle choice (cheapest correct variant,
    /// or the cheapest variant when none is correct).
    pub selection_accuracy: f64,
    /// Per-variant ROC AUC of `oof_probs` against correctness (`None`: one class only).
    pub auc: Vec<Option<f64>>,
    /// Per-variant Brier score.
    pub brier: Vec<f64>,
    /// The policy "run the chosen variant".
    pub outcome: Outcome,
}

/// Cross-validation of several configurations on the same folds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CvReport {
    pub options: CvOptions,
    pub n_images: usize,
    pub learners: Vec<LearnerReport>,
    /// Always running variant `j`, for every `j`.
    pub fixed: Vec<Outcome>,
    /// Running the oracle choice: the upper bound any premodel approaches.
    pub oracle: Outcome,
}

fn outcome(chosen: &[usize], y: &Correctness, latency: &[f32]) -> Outcome {
    let n = chosen.len().max(1) as f64;
    let top1 = chosen
        .iter()
        .enumerate()
        .filter(|&(i, &c)| y.get(i, c))
        .count() as f64
        / n;
    let lat = chosen.iter().map(|&c| f64::from(latency[c])).sum::<f64>() / n;
    Outcome {
        top1,
        mean_latency_ms: lat,
    }
}

/// Cross-validates every configuration in `configs` on the same `opts.k` folds of
/// (`features`, `correctness`). Each fold's premodel (feature reduction, scaler and learner) is
/// fitted on the other folds only. Latencies are per variant, cheapest first, in ms; the
/// reported latency is that of the chosen variant alone (a probe's cost, if any, is the
/// caller's to add).
pub fn cross_validate(
    configs: &[PremodelConfig],
    features: &Matrix,
    correctness: &Correctness,
    variant_latency_ms: &[f32],
    opts: &CvOptions,
) -> Result<CvReport> {
    let n = features.n_rows();
    let nv = correctness.n_variants();
    if correctness.n_images() != n {
        return Err(Error::Shape {
            what: "correctness rows (one per feature row)",
            expected: n,
            got: correctness.n_images(),
        });
    }
    if variant_latency_ms.len() != nv {
        return Err(Error::Shape {
            what: "variant latencies",
            expected: nv,
            got: variant_latency_ms.len(),
        });
    }
    let folds = kfold(n, opts.k, opts.seed)?;
    let mut learners = Vec::with_capacity(configs.len());
    for config in configs {
        let mut oof = Matrix::zeros(n, nv);
        for (f, test) in folds.iter().enumerate() {
            let train = train_indices(&folds, &[f]);
            let fold_seed = SplitMix64::derive(opts.seed, f as u64 + 1).next_u64();
            let model = Premodel::fit(
                config,
                &features.select_rows(&train),
                &correctness.select_rows(&train),
                fold_seed,
            )?;
            for &i in test {
                model.predict_proba_into(features.row(i), oof.row_mut(i))?;
            }
        }
        let chosen = (0..n)
            .map(|i| choose_variant(oof.row(i), variant_latency_ms, opts.min_prob))
            .collect::<Result<Vec<_>>>()?;
        let agree = (0..n)
            .filter(|&i| chosen[i] == correctness.oracle_choice(i))
            .count();
        let mut auc = Vec::with_capacity(nv);
        let mut brier_v = Vec::with_capacity(nv);
        for j in 0..nv {
            let p: Vec<f32> = (0..n).map(|i| oof.row(i)[j]).collect();
            let l: Vec<bool> = (0..n).map(|i| correctness.get(i, j)).collect();
            auc.push(roc_auc(&p, &l));
            brier_v.push(brier(&p, &l).unwrap_or(f64::NAN));
        }
        learners.push(LearnerReport {
            label: config.label(),
            config: config.clone(),
            outcome: outcome(&chosen, correctness, variant_latency_ms),
            selection_accuracy: agree as f64 / n as f64,
            oof_probs: oof,
            chosen,
            auc,
            brier: brier_v,
        });
    }
    let fixed = (0..nv)
        .map(|j| outcome(&vec![j; n], correctness, variant_latency_ms))
        .collect();
    let oracle_choice: Vec<usize> = (0..n).map(|i| correctness.oracle_choice(i)).collect();
    Ok(CvReport {
        options: opts.clone(),
        n_images: n,
        learners,
        fixed,
        oracle: outcome(&oracle_choice, correctness, variant_latency_ms),
    })
}

#[cfg(test)]
mod tests;
