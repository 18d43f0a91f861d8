//! Correlation-based feature reduction (Taylor et al. 2018, section 5.2): of every pair of
//! features whose absolute Pearson correlation exceeds a threshold, keep only the one listed
//! first. Feature sets list the features believed most informative first, so the survivor of a
//! redundant pair is the more useful one. Fewer, less redundant features make KNN distances
//! and tree splits less noisy and the runtime a little cheaper.

use crate::data::Matrix;
use crate::error::{Error, Result};

/// Pearson correlation of two equally long samples; 0 when either is constant (a constant
/// feature is correlated with nothing, and is dropped separately).
pub fn pearson(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len());
    if n == 0 {
        return 0.0;
    }
    let nf = n as f64;
    let ma = a[..n].iter().map(|&v| f64::from(v)).sum::<f64>() / nf;
    let mb = b[..n].iter().map(|&v| f64::from(v)).sum::<f64>() / nf;
    let (mut sab, mut saa, mut sbb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a[..n].iter().zip(&b[..n]) {
        let (dx, dy) = (f64::from(x) - ma, f64::from(y) - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa <= 0.0 || sbb <= 0.0 {
        return 0.0;
    }
    (sab / (saa.sqrt() * sbb.sqrt())).clamp(-1.0, 1.0)
}

/// Indices (ascending) of the features of `x` that survive reduction at `threshold`
/// (in `(0, 1]`): a feature is kept if it is not constant on `x` and its |r| with every
/// already-kept feature is at most `threshold`. Fit on training rows only.
pub fn reduce_correlated(x: &Matrix, threshold: f32) -> Result<Vec<usize>> {
    if !(threshold > 0.0 && threshold <= 1.0) {
        return Err(Error::InvalidParam {
            learner: "feature reduction",
            param: "correlation threshold",
            reason: format!("must be in (0, 1], got {threshold}"),
        });
    }
    x.check_finite("feature reduction rows")?;
    let cols: Vec<Vec<f32>> = (0..x.n_cols())
        .map(|c| x.rows().map(|r| r[c]).collect())
        .collect();
    let mut kept: Vec<usize> = Vec::new();
    for (c, col) in cols.iter().enumerate() {
        let constant = col.windows(2).all(|w| w[0] == w[1]);
        if constant {
            continue;
        }
        let redundant = kept
            .iter()
            .any(|&k| pearson(col, &cols[k]).abs() > f64::from(threshold));
        if !redundant {
            kept.push(c);
        }
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_later_member_of_correlated_pair_and_constants() {
        // col1 = 2 * col0 (r = 1), col2 independent-ish, col3 constant.
        let rows: Vec<[f32; 4]> = (0..20)
            .map(|i| {
                let a = i as f32;
                [a, 2.0 * a + 1.0, ((i * 7) % 5) as f32, 3.0]
            })
            .collect();
        let x = Matrix::from_rows(&rows).unwrap();
        assert_eq!(reduce_correlated(&x, 0.9).unwrap(), vec![0, 2]);
        assert_eq!(reduce_correlated(&x, 1.0).unwrap(), vec![0, 1, 2]);
    }

    #[test]
    fn pearson_of_anticorrelated_is_minus_one() {
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [4.0, 3.0, 2.0, 1.0];
        assert!((pearson(&a, &b) + 1.0).abs() < 1e-12);
        assert_eq!(pearson(&a, &[1.0; 4]), 0.0);
    }

    #[test]
    fn rejects_bad_threshold() {
        let x = Matrix::zeros(3, 2);
        assert!(reduce_correlated(&x, 0.0).is_err());
        assert!(reduce_correlated(&x, f32::NAN).is_err());
    }
}
