//! MLP training: Adam on mini-batches with burn's autodiff over the pure-Rust `flex` CPU
//! backend, early-stopped on a validation split carved from the training rows.
//!
//! Determinism: initial weights and batch order come from our own seeded generator (never the
//! backend's global RNG, which concurrent trainings would share), and the backend runs
//! single-threaded, so a seed reproduces the model bit for bit.

use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{activation, Device, Tensor, TensorData};

use super::net::Weights;
use super::MlpParams;
use crate::data::Matrix;
use crate::error::{Error, Result};
use crate::learners::TargetForm;
use crate::rng::SplitMix64;

/// Training targets, row-major `n x d_out`: 0/1 correctness (multi-label) or one-hot
/// cheapest-correct class.
pub(super) struct Targets {
    pub values: Vec<f32>,
    pub d_out: usize,
    pub form: TargetForm,
}

/// Trains and returns the weights with the lowest validation loss.
pub(super) fn train(x: &Matrix, t: &Targets, p: &MlpParams, seed: u64) -> Result<Weights> {
    let n = x.n_rows();
    let d_in = x.n_cols();
    if n < 2 {
        return Err(Error::TooFewRows {
            what: "mlp (training plus validation)",
            needed: 2,
            got: n,
        });
    }
    let mut order: Vec<usize> = (0..n).collect();
    SplitMix64::derive(seed, 1).shuffle(&mut order);
    let n_val = ((n as f64 * p.validation_fraction).round() as usize).clamp(1, n - 1);
    let (val_idx, train_idx) = order.split_at(n_val);
    let mut train_idx = train_idx.to_vec();

    let mut weights = init_weights(d_in, p.hidden, t, &train_idx, seed);
    let device = Device::flex().autodiff();
    let mut net = weights.to_net(&device);
    let mut optim = AdamConfig::new()
        .with_weight_decay((p.weight_decay > 0.0).then(|| WeightDecayConfig::new(p.weight_decay)))
        .init();

    let mut best = (validation_loss(&weights, x, t, val_idx), weights.clone());
    let mut stale = 0;
    let mut batch_rng = SplitMix64::derive(seed, 2);
    for epoch in 0..p.max_epochs {
        batch_rng.shuffle(&mut train_idx);
        for batch in train_idx.chunks(p.batch_size) {
            let b = batch.len();
            let mut xb = Vec::with_capacity(b * d_in);
            let mut yb = Vec::with_capacity(b * t.d_out);
            for &i in batch {
                xb.extend_from_slice(x.row(i));
                yb.extend_from_slice(&t.values[i * t.d_out..(i + 1) * t.d_out]);
            }
            let xb = Tensor::<2>::from_data(TensorData::new(xb, [b, d_in]), &device);
            let yb = Tensor::<2>::from_data(TensorData::new(yb, [b, t.d_out]), &device);
            let z = net.forward(xb);
            let loss = match t.form {
                // BCE with logits: -(y log s(z) + (1 - y) log s(-z)), averaged.
                TargetForm::MultiLabel => (yb.clone() * activation::log_sigmoid(z.clone())
                    + yb.neg().add_scalar(1.0) * activation::log_sigmoid(z.neg()))
                .mean()
                .neg(),
                // Cross-entropy over one-hot classes, averaged over rows.
                TargetForm::CheapestCorrect => (yb * activation::log_softmax(z, 1))
                    .sum()
                    .div_scalar(b as f32)
                    .neg(),
            };
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optim.step(p.learning_rate, net, grads);
        }
        weights = Weights::from_net(&net)?;
        let loss = validation_loss(&weights, x, t, val_idx);
        tracing::debug!(epoch, val_loss = loss, "mlp epoch");
        if !loss.is_finite() {
            break;
        }
        if loss < best.0 - 1e-6 {
            best = (loss, weights.clone());
            stale = 0;
        } else {
            stale += 1;
            if stale >= p.patience {
                break;
            }
        }
    }
    Ok(best.1)
}

/// He-uniform hidden layer, Glorot-uniform output layer, zero hidden bias, and output bias set
/// to the training base rates (log-odds or log-frequency) so training starts at the constant
/// predictor rather than at 50%.
fn init_weights(d_in: usize, hidden: usize, t: &Targets, rows: &[usize], seed: u64) -> Weights {
    let mut r = SplitMix64::derive(seed, 0);
    let mut w = Weights::zeros(d_in, hidden, t.d_out);
    let a1 = (6.0 / d_in as f32).sqrt();
    w.w1.iter_mut()
        .for_each(|v| *v = (2.0 * r.next_f32() - 1.0) * a1);
    let a2 = (6.0 / (hidden + t.d_out) as f32).sqrt();
    w.w2.iter_mut()
        .for_each(|v| *v = (2.0 * r.next_f32() - 1.0) * a2);
    let n = rows.len() as f32;
    for (k, b) in w.b2.iter_mut().enumerate() {
        let rate = rows.iter().map(|&i| t.values[i * t.d_out + k]).sum::<f32>() / n;
        let rate = rate.clamp(1e-3, 1.0 - 1e-3);
        *b = match t.form {
            TargetForm::MultiLabel => (rate / (1.0 - rate)).ln(),
            TargetForm::CheapestCorrect => rate.ln(),
        };
    }
    w
}

/// Mean loss of `w` on the validation rows (the same loss training minimises).
fn validation_loss(w: &Weights, x: &Matrix, t: &Targets, idx: &[usize]) -> f64 {
    let mut scratch = vec![0f32; w.hidden];
    let mut z = vec![0f32; t.d_out];
    let mut total = 0f64;
    for &i in idx {
        w.logits(x.row(i), &mut scratch, &mut z);
        let y = &t.values[i * t.d_out..(i + 1) * t.d_out];
        total += match t.form {
            TargetForm::MultiLabel => {
                z.iter()
                    .zip(y)
                    .map(|(&z, &y)| f64::from(softplus(z) - y * z))
                    .sum::<f64>()
                    / t.d_out as f64
            }
            TargetForm::CheapestCorrect => {
                let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let lse = max + z.iter().map(|v| (v - max).exp()).sum::<f32>().ln();
                z.iter()
                    .zip(y)
                    .map(|(&z, &y)| f64::from(y * (lse - z)))
                    .sum::<f64>()
            }
        };
    }
    total / idx.len().max(1) as f64
}

/// `ln(1 + e^z)` without overflow.
fn softplus(z: f32) -> f32 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}
