//! The premodel learners - k-nearest neighbours, decision tree, logistic regression and a small
//! MLP - all behind the one [`Learner`] trait, so the compiler can cross-validate them side by
//! side and the runtime can evaluate whichever one a plan names.
//!
//! Every learner predicts, for one standardised feature row, the probability that each variant
//! (ordered by cost, cheapest first) classifies the image correctly. [`Learner::choose`] turns
//! that into a decision: the cheapest variant predicted adequate.

mod any;
mod knn;
mod logistic;
mod mlp;
mod tree;

use serde::{Deserialize, Serialize};

pub use self::any::{AnyLearner, LearnerKind, LearnerParams};
pub use self::knn::{Knn, KnnIndex, KnnParams, Weighting};
pub use self::logistic::{Logistic, LogisticParams};
pub use self::mlp::{Mlp, MlpParams};
pub use self::tree::{Tree, TreeParams};
use crate::data::{Correctness, Matrix};
use crate::error::{Error, Result};

/// What a learner is trained to predict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TargetForm {
    /// One correctness probability per variant, learned independently (multi-label).
    #[default]
    MultiLabel,
    /// The single label "cheapest correct variant" (Taylor et al. 2018), with an extra class
    /// for images no variant gets right (see [`Correctness::cheapest_label`]). The predicted
    /// class distribution becomes per-variant adequacy as P(variant j adequate) =
    /// P(label <= j): if a cheaper variant is already right, so (by assumption) is `j`.
    CheapestCorrect,
}

/// A trained premodel learner. Rows are standardised feature vectors.
pub trait Learner: Sized {
    /// Hyper-parameters, validated by `fit` before any work is done.
    type Params;

    /// Trains on `x` (one row per image) against `y` (same images, variants cheapest first).
    /// `seed` fixes every random choice, so equal inputs give bit-identical models.
    fn fit(x: &Matrix, y: &Correctness, params: &Self::Params, seed: u64) -> Result<Self>;

    /// Number of features a row must have.
    fn n_features(&self) -> usize;

    /// Number of variants predicted for.
    fn n_variants(&self) -> usize;

    /// Writes P(variant j classifies this image correctly) for every variant into `out`.
    fn predict_proba_into(&self, row: &[f32], out: &mut [f32]) -> Result<()>;

    /// [`Learner::predict_proba_into`] into a new vector.
    fn predict_proba(&self, row: &[f32]) -> Result<Vec<f32>> {
        let mut out = vec![0.0; self.n_variants()];
        self.predict_proba_into(row, &mut out)?;
        Ok(out)
    }

    /// The cheapest variant (by `variant_costs`) whose predicted probability of being correct is
    /// at least `min_prob`; if none is, the variant with the highest predicted probability.
    fn choose(&self, row: &[f32], variant_costs: &[f32], min_prob: f32) -> Result<usize> {
        let p = self.predict_proba(row)?;
        choose_variant(&p, variant_costs, min_prob)
    }
}

/// The decision rule behind [`Learner::choose`], usable on stored probabilities. Ties in cost
/// or probability go to the lower index (the cheaper variant by ordering).
pub fn choose_variant(probs: &[f32], variant_costs: &[f32], min_prob: f32) -> Result<usize> {
    if probs.is_empty() {
        return Err(Error::Shape {
            what: "variant probabilities",
            expected: 1,
            got: 0,
        });
    }
    if variant_costs.len() != probs.len() {
        return Err(Error::Shape {
            what: "variant costs",
            expected: probs.len(),
            got: variant_costs.len(),
        });
    }
    let mut best: Option<usize> = None;
    for (j, (&p, &c)) in probs.iter().zip(variant_costs).enumerate() {
        if p >= min_prob && best.is_none_or(|b| c < variant_costs[b]) {
            best = Some(j);
        }
    }
    if let Some(b) = best {
        return Ok(b);
    }
    let mut arg = 0;
    for (j, &p) in probs.iter().enumerate() {
        if p > probs[arg] {
            arg = j;
        }
    }
    Ok(arg)
}

/// Turns a distribution over the `n_variants + 1` cheapest-correct classes into per-variant
/// adequacy (the cumulative sum over the first `n_variants` classes).
pub(crate) fn adequacy_from_classes(class_probs: &[f32], out: &mut [f32]) {
    let mut acc = 0f32;
    for (o, p) in out.iter_mut().zip(class_probs) {
        acc += p;
        *o = acc.clamp(0.0, 1.0);
    }
}

/// Shared precondition of every `fit`: matching, non-empty, finite training data.
pub(crate) fn check_training(x: &Matrix, y: &Correctness, learner: &'static str) -> Result<()> {
    if x.n_rows() != y.n_images() {
        return Err(Error::Shape {
            what: "correctness rows (one per feature row)",
            expected: x.n_rows(),
            got: y.n_images(),
        });
    }
    if x.n_rows() == 0 {
        return Err(Error::TooFewRows {
            what: learner,
            needed: 1,
            got: 0,
        });
    }
    if x.n_cols() == 0 {
        return Err(Error::Shape {
            what: "feature columns",
            expected: 1,
            got: 0,
        });
    }
    x.check_finite("training features")
}

/// Shared precondition of every prediction: right row and output lengths, finite values.
pub(crate) fn check_row(
    row: &[f32],
    n_features: usize,
    out: &[f32],
    n_variants: usize,
) -> Result<()> {
    if row.len() != n_features {
        return Err(Error::Shape {
            what: "feature row",
            expected: n_features,
            got: row.len(),
        });
    }
    if out.len() != n_variants {
        return Err(Error::Shape {
            what: "probability output",
            expected: n_variants,
            got: out.len(),
        });
    }
    match row.iter().position(|v| !v.is_finite()) {
        Some(col) => Err(Error::NonFinite {
            what: "feature row",
            row: 0,
            col,
        }),
        None => Ok(()),
    }
}

/// Per-image class labels for the chosen target form, for one variant (multi-label) or for
/// the cheapest-correct form, with the number of classes.
pub(crate) fn class_labels(y: &Correctness, form: LabelTarget) -> (Vec<usize>, usize) {
    match form {
        LabelTarget::Variant(j) => (
            (0..y.n_images())
                .map(|i| usize::from(y.get(i, j)))
                .collect(),
            2,
        ),
        LabelTarget::Cheapest => (
            (0..y.n_images()).map(|i| y.cheapest_label(i)).collect(),
            y.n_variants() + 1,
        ),
    }
}

/// Which single-label problem to pose.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LabelTarget {
    Variant(usize),
    Cheapest,
}

#[cfg(test)]
pub(crate) mod testdata;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choose_prefers_cheapest_adequate_then_most_likely() {
        let costs = [1.0, 2.0, 4.0];
        assert_eq!(choose_variant(&[0.9, 0.95, 0.99], &costs, 0.8).unwrap(), 0);
        assert_eq!(choose_variant(&[0.5, 0.85, 0.99], &costs, 0.8).unwrap(), 1);
        assert_eq!(choose_variant(&[0.1, 0.6, 0.3], &costs, 0.8).unwrap(), 1);
        // Costs need not follow index order.
        assert_eq!(
            choose_variant(&[0.9, 0.9, 0.9], &[3.0, 1.0, 2.0], 0.5).unwrap(),
            1
        );
        assert!(choose_variant(&[0.9], &costs, 0.5).is_err());
        assert!(choose_variant(&[], &[], 0.5).is_err());
    }

    #[test]
    fn adequacy_is_cumulative() {
        let mut out = [0.0; 3];
        adequacy_from_classes(&[0.2, 0.3, 0.1, 0.4], &mut out);
        assert!((out[0] - 0.2).abs() < 1e-6);
        assert!((out[1] - 0.5).abs() < 1e-6);
        assert!((out[2] - 0.6).abs() < 1e-6);
    }
}
