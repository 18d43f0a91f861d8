//! Scoring rules for per-variant probability predictions.

/// Area under the ROC curve of `scores` for the positive labels, as the Mann-Whitney U
/// statistic: the probability that a random positive outscores a random negative, counting
/// ties as one half. `None` when either class is absent (AUC is undefined then).
///
/// O(n log n): ranks with ties averaged, then `U = R_pos - n_pos (n_pos + 1) / 2`.
pub fn roc_auc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    let n = scores.len().min(labels.len());
    let n_pos = labels[..n].iter().filter(|&&l| l).count();
    let n_neg = n - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum_pos = 0f64;
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && scores[idx[j]].total_cmp(&scores[idx[i]]).is_eq() {
            j += 1;
        }
        // Ranks i+1 ..= j share their average.
        let avg = (i + 1 + j) as f64 / 2.0;
        let pos_in_tie = idx[i..j].iter().filter(|&&k| labels[k]).count();
        rank_sum_pos += avg * pos_in_tie as f64;
        i = j;
    }
    let u = rank_sum_pos - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos as f64 * n_neg as f64))
}

/// Brier score: mean squared difference between predicted probability and outcome (0 is
/// perfect, 0.25 is an uninformed 50% guess). `None` for no predictions.
pub fn brier(probs: &[f32], labels: &[bool]) -> Option<f64> {
    let n = probs.len().min(labels.len());
    if n == 0 {
        return None;
    }
    let total: f64 = probs[..n]
        .iter()
        .zip(&labels[..n])
        .map(|(&p, &l)| {
            let t = if l { 1.0 } else { 0.0 };
            (f64::from(p) - t).powi(2)
        })
        .sum();
    Some(total / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Direct pairwise definition.
    fn auc_pairs(scores: &[f32], labels: &[bool]) -> Option<f64> {
        let (mut wins, mut pairs) = (0f64, 0f64);
        for (i, &li) in labels.iter().enumerate() {
            for (j, &lj) in labels.iter().enumerate() {
                if li && !lj {
                    pairs += 1.0;
                    if scores[i] > scores[j] {
                        wins += 1.0;
                    } else if scores[i] == scores[j] {
                        wins += 0.5;
                    }
                }
            }
        }
        (pairs > 0.0).then(|| wins / pairs)
    }

    fn scored() -> impl Strategy<Value = Vec<(f32, bool)>> {
        // Few distinct score values so ties are common.
        prop::collection::vec(
            ((0u8..6).prop_map(|v| f32::from(v) / 5.0), any::<bool>()),
            0..60,
        )
    }

    proptest! {
        #[test]
        fn auc_matches_pairwise_definition(data in scored()) {
            let (s, l): (Vec<f32>, Vec<bool>) = data.into_iter().unzip();
            match (roc_auc(&s, &l), auc_pairs(&s, &l)) {
                (None, None) => {}
                (Some(a), Some(b)) => prop_assert!((a - b).abs() < 1e-9, "{a} vs {b}"),
                other => prop_assert!(false, "{other:?}"),
            }
        }

        #[test]
        fn auc_is_in_unit_interval_and_flips_with_negated_scores(data in scored()) {
            let (s, l): (Vec<f32>, Vec<bool>) = data.into_iter().unzip();
            if let Some(a) = roc_auc(&s, &l) {
                prop_assert!((0.0..=1.0).contains(&a));
                let neg: Vec<f32> = s.iter().map(|v| -v).collect();
                let b = roc_auc(&neg, &l).unwrap();
                prop_assert!((a + b - 1.0).abs() < 1e-9);
            }
        }

        #[test]
        fn auc_invariant_under_monotone_transform(data in scored()) {
            let (s, l): (Vec<f32>, Vec<bool>) = data.into_iter().unzip();
            let t: Vec<f32> = s.iter().map(|v| v * v * 3.0 + 1.0).collect(); // monotone on [0, 1]
            prop_assert_eq!(roc_auc(&s, &l), roc_auc(&t, &l));
        }

        #[test]
        fn brier_bounds_and_perfection(
            data in prop::collection::vec((0f32..=1.0, any::<bool>()), 1..60)
        ) {
            let (p, l): (Vec<f32>, Vec<bool>) = data.into_iter().unzip();
            let b = brier(&p, &l).unwrap();
            prop_assert!((0.0..=1.0).contains(&b));
            let perfect: Vec<f32> = l.iter().map(|&x| if x { 1.0 } else { 0.0 }).collect();
            prop_assert_eq!(brier(&perfect, &l), Some(0.0));
            let half = vec![0.5f32; l.len()];
            prop_assert!((brier(&half, &l).unwrap() - 0.25).abs() < 1e-12);
        }
    }

    #[test]
    fn auc_edge_cases() {
        assert_eq!(roc_auc(&[0.1, 0.9], &[false, true]), Some(1.0));
        assert_eq!(roc_auc(&[0.9, 0.1], &[false, true]), Some(0.0));
        assert_eq!(roc_auc(&[0.5, 0.5], &[false, true]), Some(0.5));
        assert_eq!(roc_auc(&[0.5, 0.7], &[true, true]), None);
        assert_eq!(roc_auc(&[], &[]), None);
        assert_eq!(brier(&[], &[]), None);
    }
}
