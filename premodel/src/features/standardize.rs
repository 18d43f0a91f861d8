//! Per-feature standardisation (zero mean, unit variance), fitted on training rows only and
//! stored with the model so the runtime scales features exactly as training did.
//!
//! KNN distances, logistic regularisation and MLP optimisation all assume comparable feature
//! scales; megapixels and edge density differ by orders of magnitude otherwise.

use serde::{Deserialize, Serialize};

use crate::data::Matrix;
use crate::error::{Error, Result};

/// Means and standard deviations per feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    mean: Vec<f32>,
    /// Reciprocal of the standard deviation; 1 for constant features, which then map to 0.
    inv_std: Vec<f32>,
}

impl Standardizer {
    /// Fits on `x`, which must be non-empty and finite.
    pub fn fit(x: &Matrix) -> Result<Self> {
        if x.n_rows() == 0 {
            return Err(Error::TooFewRows {
                what: "standardizer",
                needed: 1,
                got: 0,
            });
        }
        x.check_finite("standardizer training rows")?;
        let d = x.n_cols();
        let n = x.n_rows() as f64;
        let mut mean = vec![0f64; d];
        for row in x.rows() {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += f64::from(*v);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0f64; d];
        for row in x.rows() {
            for ((s, v), m) in var.iter_mut().zip(row).zip(&mean) {
                let dv = f64::from(*v) - m;
                *s += dv * dv;
            }
        }
        let inv_std = var
            .iter()
            .map(|s| {
                let sd = (s / n).sqrt();
                // Constant (or numerically constant) features carry no information; scaling
                // them by 1 keeps them at exactly 0 after centring.
                if sd > 1e-12 {
                    (1.0 / sd) as f32
                } else {
                    1.0
                }
            })
            .collect();
        Ok(Self {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            inv_std,
        })
    }

    /// Number of features this was fitted on.
    pub fn len(&self) -> usize {
        self.mean.len()
    }

    pub fn is_empty(&self) -> bool {
        self.mean.is_empty()
    }

    pub fn means(&self) -> &[f32] {
        &self.mean
    }

    /// Standard deviations (1 for features that were constant in training).
    pub fn stds(&self) -> Vec<f32> {
        self.inv_std.iter().map(|s| 1.0 / s).collect()
    }

    /// Standardises `row` into `out`. A non-finite input value is replaced by the training
    /// mean (0 after scaling): at run time one broken feature should cost accuracy, not crash
    /// or poison the prediction.
    pub fn transform_into(&self, row: &[f32], out: &mut [f32]) -> Result<()> {
        if row.len() != self.len() || out.len() != self.len() {
            return Err(Error::Shape {
                what: "standardizer row",
                expected: self.len(),
                got: if row.len() != self.len() {
                    row.len()
                } else {
                    out.len()
                },
            });
        }
        for (((o, v), m), s) in out.iter_mut().zip(row).zip(&self.mean).zip(&self.inv_std) {
            let z = (v - m) * s;
            *o = if z.is_finite() { z } else { 0.0 };
        }
        Ok(())
    }

    /// Standardises every row of `x`.
    pub fn transform(&self, x: &Matrix) -> Result<Matrix> {
        let mut out = Matrix::zeros(x.n_rows(), x.n_cols());
        for i in 0..x.n_rows() {
            self.transform_into(x.row(i), out.row_mut(i))?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn transformed_training_rows_have_zero_mean_unit_std(
            rows in prop::collection::vec(prop::collection::vec(-1e3f32..1e3, 3), 2..40)
        ) {
            let x = Matrix::from_rows(&rows).unwrap();
            let s = Standardizer::fit(&x).unwrap();
            let z = s.transform(&x).unwrap();
            for c in 0..3 {
                let col: Vec<f64> = z.rows().map(|r| f64::from(r[c])).collect();
                let n = col.len() as f64;
                let mean = col.iter().sum::<f64>() / n;
                let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
                prop_assert!(mean.abs() < 1e-3, "mean {mean}");
                // Constant columns map to all zeros, others to unit variance.
                prop_assert!(var < 1e-6 || (var - 1.0).abs() < 1e-2, "var {var}");
            }
        }

        #[test]
        fn transform_is_affine_and_order_preserving(
            rows in prop::collection::vec(prop::collection::vec(-1e3f32..1e3, 2), 2..30),
            a in -1e3f32..1e3, b in -1e3f32..1e3,
        ) {
            let x = Matrix::from_rows(&rows).unwrap();
            let s = Standardizer::fit(&x).unwrap();
            let mut za = [0.0; 2];
            let mut zb = [0.0; 2];
            s.transform_into(&[a, a], &mut za).unwrap();
            s.transform_into(&[b, b], &mut zb).unwrap();
            for c in 0..2 {
                if a < b { prop_assert!(za[c] <= zb[c]); }
            }
        }
    }

    #[test]
    fn non_finite_input_maps_to_mean() {
        let x = Matrix::from_rows(&[[1.0, 2.0], [3.0, 6.0]]).unwrap();
        let s = Standardizer::fit(&x).unwrap();
        let mut out = [9.0; 2];
        s.transform_into(&[f32::NAN, 4.0], &mut out).unwrap();
        assert_eq!(out, [0.0, 0.0]);
    }

    #[test]
    fn rejects_empty_and_non_finite_training_data() {
        assert!(Standardizer::fit(&Matrix::zeros(0, 3)).is_err());
        let x = Matrix::from_rows(&[[1.0], [f32::INFINITY]]).unwrap();
        assert!(matches!(
            Standardizer::fit(&x),
            Err(Error::NonFinite { .. })
        ));
    }
}
