//! Probe features: once a policy has already run the cheapest variant, its softmax says a lot
//! about whether a bigger variant is needed. A confident, peaked distribution usually means the
//! cheap answer is right; a flat one means escalate.

/// Names of the probe features, in output order.
pub const PROBE_FEATURE_NAMES: [&str; 4] = [
    "probe_max_prob",
    "probe_margin",
    "probe_entropy",
    "probe_top5_mass",
];

/// Writes max probability, top-1/top-2 margin, entropy (nats) and top-5 mass of `probs` into
/// `out` (length 4). Entries that are negative or not finite are treated as zero so that a
/// corrupted vector degrades the features instead of poisoning them with NaN.
pub fn probe_features(probs: &[f32], out: &mut [f32; 4]) {
    let mut top = [0f32; 5];
    let mut entropy = 0f64;
    for &p in probs {
        let p = if p.is_finite() && p > 0.0 { p } else { 0.0 };
        if p > 0.0 {
            entropy -= f64::from(p * p.ln());
        }
        if p > top[4] {
            // Insertion into the descending top-5 list.
            let mut i = 4;
            while i > 0 && top[i - 1] < p {
                top[i] = top[i - 1];
                i -= 1;
            }
            top[i] = p;
        }
    }
    out[0] = top[0];
    out[1] = top[0] - top[1];
    out[2] = entropy as f32;
    out[3] = top.iter().sum();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hot_is_maximally_confident() {
        let mut p = vec![0.0; 1000];
        p[3] = 1.0;
        let mut out = [0.0; 4];
        probe_features(&p, &mut out);
        assert_eq!(out, [1.0, 1.0, 0.0, 1.0]);
    }

    #[test]
    fn uniform_has_log_n_entropy() {
        let p = vec![0.001f32; 1000];
        let mut out = [0.0; 4];
        probe_features(&p, &mut out);
        assert!((out[2] - 1000f32.ln()).abs() < 1e-2);
        assert!(out[1].abs() < 1e-9);
        assert!((out[3] - 0.005).abs() < 1e-6);
    }

    #[test]
    fn top_five_in_any_order() {
        let p = [0.05, 0.3, 0.02, 0.4, 0.1, 0.08, 0.05];
        let mut out = [0.0; 4];
        probe_features(&p, &mut out);
        assert_eq!(out[0], 0.4);
        assert!((out[1] - 0.1).abs() < 1e-6);
        assert!((out[3] - (0.4 + 0.3 + 0.1 + 0.08 + 0.05)).abs() < 1e-6);
    }

    #[test]
    fn garbage_entries_are_ignored() {
        let p = [f32::NAN, -1.0, 0.5, f32::INFINITY, 0.5];
        let mut out = [0.0; 4];
        probe_features(&p, &mut out);
        assert!(out.iter().all(|v| v.is_finite()));
        assert_eq!(out[0], 0.5);
    }
}
