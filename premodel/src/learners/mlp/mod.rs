//! A small multi-layer perceptron (one hidden ReLU layer) trained with `burn`: the most
//! flexible learner, able to combine features non-linearly (e.g. "low contrast *and* many
//! keypoints"), at the price of training time and seed sensitivity.
//!
//! Multi-label targets use sigmoid outputs with binary cross-entropy; the cheapest-correct form
//! uses a softmax over `n_variants + 1` classes with cross-entropy. The serialized model keeps
//! the weights in burn's own record format (burnpack bytes).

mod net;
mod train;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use self::net::Weights;
use self::train::Targets;
use super::{adequacy_from_classes, check_row, check_training, Learner, TargetForm};
use crate::data::{Correctness, Matrix};
use crate::error::{Error, Result};

/// MLP hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpParams {
    /// Hidden units.
    pub hidden: usize,
    /// Adam step size.
    pub learning_rate: f64,
    /// Decoupled L2 weight decay passed to Adam (0 disables it).
    pub weight_decay: f32,
    pub batch_size: usize,
    /// Upper bound on passes over the training rows.
    pub max_epochs: usize,
    /// Stop after this many epochs without a validation-loss improvement.
    pub patience: usize,
    /// Fraction of the training rows held out (by seed) for early stopping.
    pub validation_fraction: f64,
    pub target: TargetForm,
}

impl Default for MlpParams {
    fn default() -> Self {
        Self {
            hidden: 32,
            learning_rate: 3e-3,
            weight_decay: 1e-4,
            batch_size: 128,
            max_epochs: 100,
            patience: 8,
            validation_fraction: 0.15,
            target: TargetForm::default(),
        }
    }
}

impl MlpParams {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with_hidden(mut self, h: usize) -> Self {
        self.hidden = h;
        self
    }
    pub fn with_learning_rate(mut self, lr: f64) -> Self {
        self.learning_rate = lr;
        self
    }
    pub fn with_weight_decay(mut self, wd: f32) -> Self {
        self.weight_decay = wd;
        self
    }
    pub fn with_batch_size(mut self, b: usize) -> Self {
        self.batch_size = b;
        self
    }
    pub fn with_max_epochs(mut self, e: usize) -> Self {
        self.max_epochs = e;
        self
    }
    pub fn with_patience(mut self, p: usize) -> Self {
        self.patience = p;
        self
    }
    pub fn with_validation_fraction(mut self, f: f64) -> Self {
        self.validation_fraction = f;
        self
    }
    pub fn with_target(mut self, t: TargetForm) -> Self {
        self.target = t;
        self
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |param, reason: &str| {
            Err(Error::InvalidParam {
                learner: "mlp",
                param,
                reason: reason.into(),
            })
        };
        if self.hidden == 0 || self.hidden > 4096 {
            return bad("hidden", "must be in 1..=4096");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad("learning_rate", "must be finite and positive");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight_decay", "must be finite and non-negative");
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1");
        }
        if self.max_epochs == 0 {
            return bad("max_epochs", "must be at least 1");
        }
        if self.patience == 0 {
            return bad("patience", "must be at least 1");
        }
        if !(self.validation_fraction > 0.0 && self.validation_fraction < 1.0) {
            return bad("validation_fraction", "must be in (0, 1)");
        }
        Ok(())
    }
}

/// A fitted MLP premodel.
#[derive(Debug, Clone)]
pub struct Mlp {
    state: MlpState,
    weights: Weights,
}

/// What is serialized: hyper-parameters, shapes and the burn record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct MlpState {
    params: MlpParams,
    n_features: usize,
    n_variants: usize,
    record: Vec<u8>,
}

impl Mlp {
    pub fn params(&self) -> &MlpParams {
        &self.state.params
    }

    fn d_out(params: &MlpParams, n_variants: usize) -> usize {
        match params.target {
            TargetForm::MultiLabel => n_variants,
            TargetForm::CheapestCorrect => n_variants + 1,
        }
    }

    fn from_state(state: MlpState) -> Result<Self> {
        let d_out = Self::d_out(&state.params, state.n_variants);
        let weights = Weights::from_record_bytes(
            &state.record,
            state.n_features,
            state.params.hidden,
            d_out,
        )?;
        Ok(Self { state, weights })
    }
}

impl Learner for Mlp {
    type Params = MlpParams;

    fn fit(x: &Matrix, y: &Correctness, params: &MlpParams, seed: u64) -> Result<Self> {
        params.validate()?;
        check_training(x, y, "mlp")?;
        let nv = y.n_variants();
        let d_out = Self::d_out(params, nv);
        let mut values = vec![0f32; y.n_images() * d_out];
        for (i, t) in values.chunks_exact_mut(d_out).enumerate() {
            match params.target {
                TargetForm::MultiLabel => {
                    for (v, &c) in t.iter_mut().zip(y.row(i)) {
                        *v = f32::from(u8::from(c));
                    }
                }
                TargetForm::CheapestCorrect => t[y.cheapest_label(i)] = 1.0,
            }
        }
        let targets = Targets {
            values,
            d_out,
            form: params.target,
        };
        let weights = train::train(x, &targets, params, seed)?;
        let record = weights.to_record_bytes()?;
        Ok(Self {
            state: MlpState {
                params: params.clone(),
                n_features: x.n_cols(),
                n_variants: nv,
                record,
            },
            weights,
        })
    }

    fn n_features(&self) -> usize {
        self.state.n_features
    }

    fn n_variants(&self) -> usize {
        self.state.n_variants
    }

    fn predict_proba_into(&self, row: &[f32], out: &mut [f32]) -> Result<()> {
        check_row(row, self.state.n_features, out, self.state.n_variants)?;
        let w = &self.weights;
        let mut scratch = vec![0f32; w.hidden];
        let mut z = vec![0f32; w.d_out];
        w.logits(row, &mut scratch, &mut z);
        match self.state.params.target {
            TargetForm::MultiLabel => {
                for (o, z) in out.iter_mut().zip(&z) {
                    *o = 1.0 / (1.0 + (-z).exp());
                }
            }
            TargetForm::CheapestCorrect => {
                let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                z.iter_mut().for_each(|v| *v = (*v - max).exp());
                let total: f32 = z.iter().sum();
                z.iter_mut().for_each(|v| *v /= total);
                adequacy_from_classes(&z, out);
            }
        }
        Ok(())
    }
}

impl Serialize for Mlp {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.state.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Mlp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Mlp::from_state(MlpState::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learners::testdata::{constant_brier, mean_brier, synthetic};

    #[test]
    fn mlp_beats_constant_on_synthetic_data() {
        let (x, y) = synthetic(1500, 4, 1);
        let (xt, yt) = synthetic(500, 4, 2);
        for target in [TargetForm::MultiLabel, TargetForm::CheapestCorrect] {
            let p = MlpParams::new().with_target(target).with_max_epochs(40);
            let m = Mlp::fit(&x, &y, &p, 7).unwrap();
            let b = mean_brier(&m, &xt, &yt);
            let c = constant_brier(&y, &yt);
            assert!(b < 0.7 * c, "{target:?}: mlp {b} vs constant {c}");
        }
    }

    #[test]
    fn rejects_bad_params_and_tiny_data() {
        let (x, y) = synthetic(20, 2, 1);
        for p in [
            MlpParams::new().with_hidden(0),
            MlpParams::new().with_learning_rate(0.0),
            MlpParams::new().with_batch_size(0),
            MlpParams::new().with_validation_fraction(1.0),
            MlpParams::new().with_patience(0),
        ] {
            assert!(matches!(
                Mlp::fit(&x, &y, &p, 0),
                Err(Error::InvalidParam { .. })
            ));
        }
        let (x1, y1) = synthetic(1, 2, 1);
        assert!(matches!(
            Mlp::fit(&x1, &y1, &MlpParams::new(), 0),
            Err(Error::TooFewRows { .. })
        ));
    }
}
