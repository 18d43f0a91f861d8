use super::*;
use crate::features::FeatureSet;
use crate::learners::testdata::synthetic;
use crate::learners::{KnnParams, LearnerParams, LogisticParams, TreeParams};
use proptest::prelude::*;

proptest! {
    #[test]
    fn kfold_is_a_partition(n in 2usize..300, k in 2usize..12, seed in any::<u64>()) {
        prop_assume!(n >= k);
        let folds = kfold(n, k, seed).unwrap();
        prop_assert_eq!(folds.len(), k);
        let mut seen = vec![0u8; n];
        for f in &folds {
            for &i in f {
                seen[i] += 1;
            }
        }
        prop_assert!(seen.iter().all(|&c| c == 1));
        let sizes: Vec<usize> = folds.iter().map(Vec::len).collect();
        prop_assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
        prop_assert_eq!(&folds, &kfold(n, k, seed).unwrap());
    }
}

#[test]
fn kfold_rejects_bad_arguments_and_depends_on_seed() {
    assert!(matches!(kfold(10, 1, 0), Err(Error::InvalidParam { .. })));
    assert!(matches!(kfold(3, 5, 0), Err(Error::TooFewRows { .. })));
    assert_ne!(kfold(100, 5, 1).unwrap(), kfold(100, 5, 2).unwrap());
}

fn configs() -> Vec<PremodelConfig> {
    vec![
        PremodelConfig::new(
            FeatureSet::Image,
            LearnerParams::Knn(KnnParams::new().with_k(15)),
        ),
        PremodelConfig::new(FeatureSet::Image, LearnerParams::Tree(TreeParams::new())),
        PremodelConfig::new(
            FeatureSet::Image,
            LearnerParams::Logistic(LogisticParams::new()),
        )
        .with_correlation_threshold(Some(0.9)),
    ]
}

#[test]
fn cross_validation_reports_sensible_numbers() {
    let (x, y) = synthetic(900, FeatureSet::Image.len(), 21);
    let latency = [2.0, 5.0, 12.0];
    let opts = CvOptions {
        k: 4,
        seed: 5,
        min_prob: 0.6,
    };
    let report = cross_validate(&configs(), &x, &y, &latency, &opts).unwrap();
    assert_eq!(report.learners.len(), 3);
    assert_eq!(report.fixed.len(), 3);
    // The synthetic variants get monotonically more accurate and slower.
    assert!(report.fixed[0].top1 < report.fixed[2].top1);
    assert!(report.oracle.top1 >= report.fixed[2].top1);
    for l in &report.learners {
        assert_eq!(l.chosen.len(), 900);
        assert_eq!(l.oof_probs.n_rows(), 900);
        assert!(l
            .oof_probs
            .as_slice()
            .iter()
            .all(|p| (0.0..=1.0).contains(p)));
        for a in &l.auc {
            let a = a.unwrap();
            assert!(a > 0.75, "{}: auc {a}", l.label);
        }
        assert!(
            l.brier.iter().all(|b| (0.0..0.25).contains(b)),
            "{}",
            l.label
        );
        // A useful premodel beats always running the cheapest variant on accuracy and the
        // biggest on latency.
        assert!(l.outcome.top1 > report.fixed[0].top1, "{}", l.label);
        assert!(l.outcome.mean_latency_ms < latency[2] as f64, "{}", l.label);
        assert!(l.outcome.top1 <= report.oracle.top1 + 1e-12);
        assert!(
            l.selection_accuracy > 0.4,
            "{}: {}",
            l.label,
            l.selection_accuracy
        );
    }
}

#[test]
fn cross_validation_is_deterministic() {
    let (x, y) = synthetic(200, FeatureSet::Image.len(), 3);
    let opts = CvOptions::default();
    let a = cross_validate(&configs(), &x, &y, &[1.0, 2.0, 3.0], &opts).unwrap();
    let b = cross_validate(&configs(), &x, &y, &[1.0, 2.0, 3.0], &opts).unwrap();
    for (la, lb) in a.learners.iter().zip(&b.learners) {
        assert_eq!(la.oof_probs, lb.oof_probs);
    }
}

#[test]
fn cross_validation_checks_shapes() {
    let (x, y) = synthetic(50, FeatureSet::Image.len(), 3);
    let opts = CvOptions::default();
    assert!(matches!(
        cross_validate(&configs(), &x, &y, &[1.0, 2.0], &opts),
        Err(Error::Shape { .. })
    ));
    let (x2, _) = synthetic(40, FeatureSet::Image.len(), 3);
    assert!(matches!(
        cross_validate(&configs(), &x2, &y, &[1.0, 2.0, 3.0], &opts),
        Err(Error::Shape { .. })
    ));
}
