//! L2-regularised logistic regression (`linfa-logistic`, L-BFGS): one binary model per variant
//! (multi-label) or one multinomial model over cheapest-correct classes. A linear baseline
//! that is small, fast and well calibrated when difficulty is roughly monotone in the features.
//!
//! Fitted weights are copied out of linfa into plain vectors, so prediction is a dot product
//! per variant and the serialized model does not depend on linfa's internal layout.

use linfa::dataset::Dataset;
use linfa::traits::Fit;
use linfa_logistic::{LogisticRegression, MultiLogisticRegression};
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use super::{
    adequacy_from_classes, check_row, check_training, class_labels, LabelTarget, Learner,
    TargetForm,
};
use crate::data::{Correctness, Matrix};
use crate::error::{Error, Result};

/// Logistic-regression hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogisticParams {
    /// L2 penalty strength (linfa's `alpha`); larger = simpler model.
    pub l2: f64,
    pub max_iterations: u64,
    /// L-BFGS stops when the gradient norm falls below this.
    pub gradient_tolerance: f64,
    pub target: TargetForm,
}

impl Default for LogisticParams {
    fn default() -> Self {
        Self {
            l2: 1.0,
            max_iterations: 200,
            gradient_tolerance: 1e-4,
            target: TargetForm::default(),
        }
    }
}

impl LogisticParams {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with_l2(mut self, l2: f64) -> Self {
        self.l2 = l2;
        self
    }
    pub fn with_max_iterations(mut self, n: u64) -> Self {
        self.max_iterations = n;
        self
    }
    pub fn with_gradient_tolerance(mut self, t: f64) -> Self {
        self.gradient_tolerance = t;
        self
    }
    pub fn with_target(mut self, t: TargetForm) -> Self {
        self.target = t;
        self
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |param, reason: &str| {
            Err(Error::InvalidParam {
                learner: "logistic",
                param,
                reason: reason.into(),
            })
        };
        if !(self.l2.is_finite() && self.l2 >= 0.0) {
            return bad("l2", "must be finite and non-negative");
        }
        if self.max_iterations == 0 {
            return bad("max_iterations", "must be at least 1");
        }
        if !(self.gradient_tolerance.is_finite() && self.gradient_tolerance > 0.0) {
            return bad("gradient_tolerance", "must be finite and positive");
        }
        Ok(())
    }
}

/// One variant's binary model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Unit {
    /// `sigmoid(w . x + b)`.
    Linear { w: Vec<f32>, b: f32 },
    /// Training labels were all one class: predict the (smoothed) training rate.
    Constant(f32),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Model {
    PerVariant(Vec<Unit>),
    /// Softmax over `n_variants + 1` classes; `w` is row-major `classes x features`. Classes
    /// absent from training get weight 0 and bias -inf (probability 0).
    Multinomial {
        w: Vec<f32>,
        b: Vec<f32>,
    },
}

/// A fitted logistic-regression premodel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logistic {
    params: LogisticParams,
    n_features: usize,
    n_variants: usize,
    model: Model,
}

fn backend(e: impl std::fmt::Display) -> Error {
    Error::Backend {
        learner: "logistic",
        message: e.to_string(),
    }
}

fn fit_binary(x: &Array2<f64>, labels: Vec<usize>, p: &LogisticParams) -> Result<Unit> {
    let n = labels.len();
    let pos = labels.iter().filter(|&&l| l == 1).count();
    if pos == 0 || pos == n {
        // Half a pseudo-count each way keeps the constant away from exactly 0 or 1.
        return Ok(Unit::Constant((pos as f32 + 0.5) / (n as f32 + 1.0)));
    }
    let fitted = LogisticRegression::default()
        .alpha(p.l2)
        .max_iterations(p.max_iterations)
        .gradient_tolerance(p.gradient_tolerance)
        .fit(&Dataset::new(x.clone(), Array1::from(labels)))
        .map_err(backend)?;
    // linfa models P(larger label); with labels {0, 1} that is "correct", but check.
    let sign = if fitted.labels().pos.class == 1 {
        1.0
    } else {
        -1.0
    };
    Ok(Unit::Linear {
        w: fitted.params().iter().map(|v| (sign * v) as f32).collect(),
        b: (sign * fitted.intercept()) as f32,
    })
}

fn fit_multinomial(
    x: &Array2<f64>,
    labels: Vec<usize>,
    n_classes: usize,
    p: &LogisticParams,
) -> Result<Model> {
    let d = x.ncols();
    let mut w = vec![0f32; n_classes * d];
    let mut b = vec![f32::NEG_INFINITY; n_classes];
    let mut present: Vec<usize> = labels.clone();
    present.sort_unstable();
    present.dedup();
    if let [only] = present[..] {
        b[only] = 0.0;
        return Ok(Model::Multinomial { w, b });
    }
    let fitted = MultiLogisticRegression::default()
        .alpha(p.l2)
        .max_iterations(p.max_iterations)
        .gradient_tolerance(p.gradient_tolerance)
        .fit(&Dataset::new(x.clone(), Array1::from(labels)))
        .map_err(backend)?;
    let params = fitted.params(); // features x present classes
    for (k, &class) in fitted.classes().iter().enumerate() {
        if class >= n_classes {
            return Err(backend(format!("unexpected class {class}")));
        }
        for f in 0..d {
            w[class * d + f] = params[(f, k)] as f32;
        }
        b[class] = fitted.intercept()[k] as f32;
    }
    Ok(Model::Multinomial { w, b })
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl Logistic {
    pub fn params(&self) -> &LogisticParams {
        &self.params
    }
}

impl Learner for Logistic {
    type Params = LogisticParams;

    fn fit(x: &Matrix, y: &Correctness, params: &LogisticParams, _seed: u64) -> Result<Self> {
        params.validate()?;
        check_training(x, y, "logistic")?;
        let xa = Array2::from_shape_vec(
            (x.n_rows(), x.n_cols()),
            x.as_slice().iter().map(|&v| f64::from(v)).collect(),
        )
        .map_err(backend)?;
        let nv = y.n_variants();
        let model = match params.target {
            TargetForm::MultiLabel => Model::PerVariant(
                (0..nv)
                    .map(|j| fit_binary(&xa, class_labels(y, LabelTarget::Variant(j)).0, params))
                    .collect::<Result<_>>()?,
            ),
            TargetForm::CheapestCorrect => {
                let (labels, k) = class_labels(y, LabelTarget::Cheapest);
                fit_multinomial(&xa, labels, k, params)?
            }
        };
        Ok(Self {
            params: params.clone(),
            n_features: x.n_cols(),
            n_variants: nv,
            model,
        })
    }

    fn n_features(&self) -> usize {
        self.n_features
    }

    fn n_variants(&self) -> usize {
        self.n_variants
    }

    fn predict_proba_into(&self, row: &[f32], out: &mut [f32]) -> Result<()> {
        check_row(row, self.n_features, out, self.n_variants)?;
        let corrupt = || Error::Corrupt("logistic weights do not match feature count".into());
        match &self.model {
            Model::PerVariant(units) => {
                if units.len() != out.len() {
                    return Err(corrupt());
                }
                for (o, u) in out.iter_mut().zip(units) {
                    *o = match u {
                        Unit::Constant(p) => *p,
                        Unit::Linear { w, b } if w.len() == row.len() => sigmoid(dot(w, row) + b),
                        Unit::Linear { .. } => return Err(corrupt()),
                    };
                }
            }
            Model::Multinomial { w, b } => {
                let d = row.len();
                if w.len() != b.len() * d || b.len() != out.len() + 1 {
                    return Err(corrupt());
                }
                let logits: Vec<f32> = b
                    .iter()
                    .enumerate()
                    .map(|(c, bc)| dot(&w[c * d..(c + 1) * d], row) + bc)
                    .collect();
                let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut probs: Vec<f32> = logits.iter().map(|z| (z - max).exp()).collect();
                let total: f32 = probs.iter().sum();
                probs.iter_mut().for_each(|p| *p /= total);
                adequacy_from_classes(&probs, out);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learners::testdata::{constant_brier, mean_brier, synthetic};

    #[test]
    fn logistic_beats_constant_on_synthetic_data() {
        let (x, y) = synthetic(2000, 4, 1);
        let (xt, yt) = synthetic(500, 4, 2);
        for target in [TargetForm::MultiLabel, TargetForm::CheapestCorrect] {
            let p = LogisticParams::new().with_target(target);
            let m = Logistic::fit(&x, &y, &p, 0).unwrap();
            let b = mean_brier(&m, &xt, &yt);
            let c = constant_brier(&y, &yt);
            assert!(b < 0.7 * c, "{target:?}: logistic {b} vs constant {c}");
        }
    }

    #[test]
    fn single_class_variant_gets_constant_predictor() {
        let (x, y) = synthetic(200, 3, 5);
        // Variant 1 always right, variant 0 as synthesised.
        let rows: Vec<[bool; 2]> = (0..200).map(|i| [y.get(i, 0), true]).collect();
        let y2 = Correctness::from_rows(&rows).unwrap();
        let m = Logistic::fit(&x, &y2, &LogisticParams::new(), 0).unwrap();
        let p = m.predict_proba(x.row(0)).unwrap();
        assert!((p[1] - 200.5 / 201.0).abs() < 1e-6);
        // Cheapest-correct: only classes 0 and 1 occur; the "none" class gets 0.
        let p = LogisticParams::new().with_target(TargetForm::CheapestCorrect);
        let m = Logistic::fit(&x, &y2, &p, 0).unwrap();
        let pr = m.predict_proba(x.row(0)).unwrap();
        assert!((pr[1] - 1.0).abs() < 1e-6, "{pr:?}");
    }

    #[test]
    fn all_rows_one_class_in_multinomial() {
        let (x, _) = synthetic(30, 2, 5);
        let y = Correctness::new(30, 2, vec![false; 60]).unwrap();
        let p = LogisticParams::new().with_target(TargetForm::CheapestCorrect);
        let m = Logistic::fit(&x, &y, &p, 0).unwrap();
        assert_eq!(m.predict_proba(x.row(0)).unwrap(), vec![0.0, 0.0]);
    }

    #[test]
    fn rejects_bad_params() {
        let (x, y) = synthetic(20, 2, 1);
        for p in [
            LogisticParams::new().with_l2(-1.0),
            LogisticParams::new().with_l2(f64::NAN),
            LogisticParams::new().with_max_iterations(0),
            LogisticParams::new().with_gradient_tolerance(0.0),
        ] {
            assert!(matches!(
                Logistic::fit(&x, &y, &p, 0),
                Err(Error::InvalidParam { .. })
            ));
        }
    }
}
