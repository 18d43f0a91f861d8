//! Synthetic training data shared by the learner tests: image "difficulty" is a noisy linear
//! function of the first two features, and variant `j` is correct when the difficulty is below
//! its threshold, so bigger variants are right more often, as with real DNN families.

use crate::data::{Correctness, Matrix};
use crate::rng::SplitMix64;

pub(crate) const N_VARIANTS: usize = 3;

pub(crate) fn synthetic(n: usize, d: usize, seed: u64) -> (Matrix, Correctness) {
    let mut r = SplitMix64::new(seed);
    let mut x = Matrix::zeros(n, d);
    let mut y = Vec::with_capacity(n * N_VARIANTS);
    for i in 0..n {
        let row = x.row_mut(i);
        for v in row.iter_mut() {
            *v = r.normal();
        }
        let difficulty = row[0] + 0.5 * row[1.min(d - 1)] + 0.3 * r.normal();
        for t in [-0.5f32, 0.3, 1.0] {
            y.push(difficulty < t);
        }
    }
    (x, Correctness::new(n, N_VARIANTS, y).unwrap())
}

/// Mean Brier score over variants of a learner's predictions on `(x, y)`.
pub(crate) fn mean_brier<L: super::Learner>(l: &L, x: &Matrix, y: &Correctness) -> f64 {
    let mut total = 0.0;
    for i in 0..x.n_rows() {
        let p = l.predict_proba(x.row(i)).unwrap();
        for (j, pj) in p.iter().enumerate() {
            let t = if y.get(i, j) { 1.0 } else { 0.0 };
            total += (f64::from(*pj) - t).powi(2);
        }
    }
    total / (x.n_rows() * y.n_variants()) as f64
}

/// Brier score of the best constant predictor (training base rates) evaluated on `(x, y)`.
pub(crate) fn constant_brier(train: &Correctness, y: &Correctness) -> f64 {
    let mut total = 0.0;
    for j in 0..y.n_variants() {
        let rate = (0..train.n_images()).filter(|&i| train.get(i, j)).count() as f64
            / train.n_images() as f64;
        for i in 0..y.n_images() {
            let t = if y.get(i, j) { 1.0 } else { 0.0 };
            total += (rate - t).powi(2);
        }
    }
    total / (y.n_images() * y.n_variants()) as f64
}
