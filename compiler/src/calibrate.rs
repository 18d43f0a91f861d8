//! Confidence calibration by temperature scaling (Guo et al., ICML 2017): one temperature per
//! variant and per remote option, fitted by minimising the negative log-likelihood, always on
//! data the scored predictions did not come from (out-of-fold).
//!
//! Every confidence threshold in a plan is on probabilities calibrated this way, so that "accept
//! when confidence >= 0.8" means what it says (confidence-based offloading, INFOCOM 2022, relies
//! on exactly this).

use serde::{Deserialize, Serialize};

/// Numerically stable log-softmax of `logits / t` at index `label`.
fn log_prob(logits: &[f32], label: usize, t: f64) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let mut sum = 0.0;
    for &z in logits {
        sum += ((f64::from(z) - max) / t).exp();
    }
    (f64::from(logits[label]) - max) / t - sum.ln()
}

/// Mean negative log-likelihood of `labels` under `softmax(logits / t)`.
pub fn nll(logits: &[&[f32]], labels: &[usize], t: f64) -> f64 {
    if logits.is_empty() {
        return 0.0;
    }
    let s: f64 = logits
        .iter()
        .zip(labels)
        .map(|(z, &y)| -log_prob(z, y, t))
        .sum();
    s / logits.len() as f64
}

/// The temperature in `[0.05, 20]` minimising the NLL: golden-section search on `ln t` (the
/// NLL is unimodal in `t` for temperature scaling).
pub fn fit_temperature(logits: &[&[f32]], labels: &[usize]) -> f64 {
    if logits.is_empty() {
        return 1.0;
    }
    let f = |lt: f64| nll(logits, labels, lt.exp());
    let (mut a, mut b) = (0.05f64.ln(), 20f64.ln());
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let mut c = b - g * (b - a);
    let mut d = a + g * (b - a);
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..60 {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - g * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + g * (b - a);
            fd = f(d);
        }
        if (b - a).abs() < 1e-5 {
            break;
        }
    }
    ((a + b) / 2.0).exp()
}

/// Reliability-diagram data and expected calibration error over equal-width confidence bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reliability {
    /// Per bin: number of predictions.
    pub count: Vec<u32>,
    /// Per bin: mean confidence (0 for empty bins).
    pub confidence: Vec<f64>,
    /// Per bin: accuracy (0 for empty bins).
    pub accuracy: Vec<f64>,
    /// Expected calibration error: bin-size-weighted mean |accuracy - confidence|.
    pub ece: f64,
}

impl Reliability {
    /// Bins `(confidence, correct)` pairs into `bins` equal-width bins over [0, 1].
    pub fn of(pairs: &[(f32, bool)], bins: usize) -> Self {
        let bins = bins.max(1);
        let mut count = vec![0u32; bins];
        let mut conf = vec![0f64; bins];
        let mut acc = vec![0f64; bins];
        for &(c, ok) in pairs {
            let c = f64::from(c).clamp(0.0, 1.0);
            let b = ((c * bins as f64) as usize).min(bins - 1);
            count[b] += 1;
            conf[b] += c;
            acc[b] += f64::from(u8::from(ok));
        }
        let n = pairs.len().max(1) as f64;
        let mut ece = 0.0;
        for b in 0..bins {
            if count[b] > 0 {
                let k = f64::from(count[b]);
                conf[b] /= k;
                acc[b] /= k;
                ece += k / n * (acc[b] - conf[b]).abs();
            }
        }
        Reliability {
            count,
            confidence: conf,
            accuracy: acc,
            ece,
        }
    }
}

/// Calibration of one predictor (variant or remote option).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub name: String,
    /// Temperature fitted on all profiled images (what the plan uses).
    pub temperature: f64,
    /// Out-of-fold NLL and reliability before (t = 1) and after scaling.
    pub nll_before: f64,
    pub nll_after: f64,
    pub before: Reliability,
    pub after: Reliability,
    /// Out of fold: how well the calibrated confidence ranks right answers above wrong ones
    /// (ROC AUC), the signal a cascade's acceptance thresholds act on. `None` when every
    /// answer is right or every answer wrong.
    pub confidence_auc: Option<f64>,
}

/// Number of bins for ECE, as in Guo et al.
pub const ECE_BINS: usize = 15;

/// Fits temperature scaling for one predictor with `folds` (lists of row indices covering every
/// row once): each fold is scored with a temperature fitted on the other folds. Returns the
/// calibration report and the out-of-fold temperature of every row.
pub fn calibrate(
    name: &str,
    logits: &[&[f32]],
    labels: &[usize],
    folds: &[Vec<usize>],
) -> (Calibration, Vec<f64>) {
    let n = logits.len();
    let mut row_t = vec![1.0; n];
    for (f, test) in folds.iter().enumerate() {
        let train = triage_premodel::cv::train_indices(folds, &[f]);
        let tl: Vec<&[f32]> = train.iter().map(|&i| logits[i]).collect();
        let ty: Vec<usize> = train.iter().map(|&i| labels[i]).collect();
        let t = fit_temperature(&tl, &ty);
        for &i in test {
            row_t[i] = t;
        }
    }
    let pairs = |t_of: &dyn Fn(usize) -> f64| -> (f64, Vec<(f32, bool)>) {
        let mut nll_sum = 0.0;
        let mut pairs = Vec::with_capacity(n);
        for i in 0..n {
            let t = t_of(i);
            nll_sum -= log_prob(logits[i], labels[i], t);
            let p = triage_zoo::logits::softmax(logits[i], t as f32);
            let top = triage_zoo::logits::argmax(&p);
            pairs.push((p[top], top == labels[i]));
        }
        (nll_sum / n.max(1) as f64, pairs)
    };
    let (nll_before, before) = pairs(&|_| 1.0);
    let (nll_after, after) = pairs(&|i| row_t[i]);
    let cal = Calibration {
        name: name.to_string(),
        temperature: fit_temperature(logits, labels),
        nll_before,
        nll_after,
        before: Reliability::of(&before, ECE_BINS),
        after: Reliability::of(&after, ECE_BINS),
        confidence_auc: {
            let (conf, ok): (Vec<f32>, Vec<bool>) = after.iter().copied().unzip();
            triage_premodel::cv::roc_auc(&conf, &ok)
        },
    };
    (cal, row_t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Logits of a model that is right 70% of the time but says so with near certainty.
    fn overconfident(n: usize) -> (Vec<Vec<f32>>, Vec<usize>) {
        let mut logits = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let label = i % 10;
            let pred = if i % 10 < 7 { label } else { (label + 1) % 10 };
            let mut z = vec![0f32; 10];
            z[pred] = 8.0;
            logits.push(z);
            labels.push(label);
        }
        (logits, labels)
    }

    #[test]
    fn overconfidence_is_cooled_and_ece_drops() {
        let (logits, labels) = overconfident(200);
        let refs: Vec<&[f32]> = logits.iter().map(Vec::as_slice).collect();
        let t = fit_temperature(&refs, &labels);
        assert!(t > 1.5, "temperature {t}");
        // At the optimum the confidence equals the accuracy: p_max = 0.7.
        let p = triage_zoo::logits::softmax(&logits[0], t as f32);
        assert!((p[0] - 0.7).abs() < 0.01, "{}", p[0]);
        let folds: Vec<Vec<usize>> = (0..5).map(|f| (f * 40..(f + 1) * 40).collect()).collect();
        let (cal, row_t) = calibrate("m", &refs, &labels, &folds);
        assert!(cal.after.ece < cal.before.ece / 5.0, "{cal:?}");
        assert!(cal.nll_after < cal.nll_before);
        assert!(row_t.iter().all(|&t| t > 1.5));
    }

    #[test]
    fn confidence_auc_sees_a_signal_that_separates() {
        // Sure when right (logit 6), unsure when wrong (logit 1).
        let mut logits = Vec::new();
        let mut labels = Vec::new();
        for i in 0..100 {
            let label = i % 10;
            let right = i % 4 != 0;
            let mut z = vec![0f32; 10];
            z[if right { label } else { (label + 1) % 10 }] = if right { 6.0 } else { 1.0 };
            logits.push(z);
            labels.push(label);
        }
        let refs: Vec<&[f32]> = logits.iter().map(Vec::as_slice).collect();
        let folds: Vec<Vec<usize>> = (0..4).map(|f| (f * 25..(f + 1) * 25).collect()).collect();
        let (cal, _) = calibrate("m", &refs, &labels, &folds);
        assert!(cal.confidence_auc.unwrap() > 0.99, "{cal:?}");
    }

    #[test]
    fn reliability_bins() {
        let r = Reliability::of(
            &[(0.95, true), (0.95, false), (0.05, false), (1.0, true)],
            10,
        );
        assert_eq!(r.count[9], 3);
        assert_eq!(r.count[0], 1);
        assert!((r.accuracy[9] - 2.0 / 3.0).abs() < 1e-9);
        let expect = 0.75 * ((2.0 / 3.0) - (0.95 + 0.95 + 1.0) / 3.0f64).abs() + 0.25 * 0.05;
        assert!((r.ece - expect).abs() < 1e-6, "{}", r.ece);
    }

    proptest! {
        /// The fitted temperature is never worse than t = 1 or the interval ends.
        #[test]
        fn fitted_temperature_minimises_nll(seed in 0u64..500, scale in 0.1f32..10.0) {
            let mut logits = Vec::new();
            let mut labels = Vec::new();
            let mut s = seed;
            for i in 0..40 {
                let mut z = vec![0f32; 5];
                for v in z.iter_mut() {
                    s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    *v = ((s >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * scale;
                }
                logits.push(z);
                labels.push(i % 5);
            }
            let refs: Vec<&[f32]> = logits.iter().map(Vec::as_slice).collect();
            let t = fit_temperature(&refs, &labels);
            let best = nll(&refs, &labels, t);
            for other in [0.05, 0.5, 1.0, 2.0, 20.0] {
                prop_assert!(best <= nll(&refs, &labels, other) + 1e-6);
            }
        }
    }
}
