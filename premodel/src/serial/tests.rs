use super::*;
use crate::data::{Correctness, Matrix};
use crate::features::FeatureSet;
use crate::learners::testdata::synthetic;
use crate::learners::{
    KnnParams, LearnerKind, LearnerParams, LogisticParams, MlpParams, TargetForm, TreeParams,
};
use crate::premodel::PremodelConfig;
use crate::rng::SplitMix64;

fn data() -> (Matrix, Correctness) {
    synthetic(300, FeatureSet::Image.len(), 9)
}

fn all_configs() -> Vec<PremodelConfig> {
    let mut v = Vec::new();
    for target in [TargetForm::MultiLabel, TargetForm::CheapestCorrect] {
        for learner in [
            LearnerParams::Knn(KnnParams::new().with_target(target)),
            LearnerParams::Tree(TreeParams::new().with_target(target)),
            LearnerParams::Logistic(LogisticParams::new().with_target(target)),
            LearnerParams::Mlp(MlpParams::new().with_target(target).with_max_epochs(5)),
        ] {
            v.push(
                PremodelConfig::new(FeatureSet::Image, learner)
                    .with_correlation_threshold(Some(0.95)),
            );
        }
    }
    v
}

fn fit(config: &PremodelConfig) -> Premodel {
    let (x, y) = data();
    Premodel::fit(config, &x, &y, 3).unwrap()
}

#[test]
fn every_learner_round_trips_with_identical_predictions() {
    let (x, _) = data();
    for config in all_configs() {
        let model = fit(&config);
        let bytes = model.to_bytes().unwrap();
        let back = Premodel::from_bytes(&bytes).unwrap();
        assert_eq!(back.kind_for_test(), config.learner.kind());
        assert_eq!(back.kept_features(), model.kept_features());
        for i in (0..x.n_rows()).step_by(37) {
            assert_eq!(
                model.predict_proba(x.row(i)).unwrap(),
                back.predict_proba(x.row(i)).unwrap(),
                "{}",
                config.label()
            );
        }
        // Serialization is itself deterministic.
        assert_eq!(back.to_bytes().unwrap(), bytes, "{}", config.label());
    }
}

impl Premodel {
    fn kind_for_test(&self) -> LearnerKind {
        self.learner().kind()
    }
}

#[test]
fn truncated_bytes_are_clean_errors() {
    for config in all_configs().iter().take(4) {
        let bytes = fit(config).to_bytes().unwrap();
        let step = (bytes.len() / 97).max(1);
        for cut in (0..bytes.len()).step_by(step) {
            assert!(
                Premodel::from_bytes(&bytes[..cut]).is_err(),
                "{} cut at {cut}",
                config.label()
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            Premodel::from_bytes(&longer),
            Err(Error::Corrupt(_))
        ));
    }
}

#[test]
fn flipped_payload_bit_fails_the_checksum() {
    let bytes = fit(&all_configs()[1]).to_bytes().unwrap();
    for pos in [HEADER_LEN, HEADER_LEN + 10, bytes.len() - 1] {
        let mut b = bytes.clone();
        b[pos] ^= 0x10;
        assert!(matches!(Premodel::from_bytes(&b), Err(Error::Corrupt(_))));
    }
}

#[test]
fn header_fields_are_checked() {
    let bytes = fit(&all_configs()[2]).to_bytes().unwrap();
    let mut b = bytes.clone();
    b[0] = b'X';
    assert!(matches!(Premodel::from_bytes(&b), Err(Error::Corrupt(_))));

    let mut b = bytes.clone();
    b[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    assert!(matches!(
        Premodel::from_bytes(&b),
        Err(Error::FormatVersion { found, .. }) if found == FORMAT_VERSION + 1
    ));

    let mut b = bytes;
    b[12..16].copy_from_slice(&(FEATURE_SET_VERSION + 1).to_le_bytes());
    assert!(matches!(
        Premodel::from_bytes(&b),
        Err(Error::FeatureSetVersion { found, expected })
            if found == FEATURE_SET_VERSION + 1 && expected == FEATURE_SET_VERSION
    ));
}

/// Rewrites the checksum so tampering reaches the decoder and the consistency checks.
fn reseal(b: &mut [u8]) {
    let sum = fnv1a64(&b[HEADER_LEN..]);
    b[24..32].copy_from_slice(&sum.to_le_bytes());
}

#[test]
fn tampered_payload_with_valid_checksum_never_panics() {
    let (x, _) = data();
    let mut r = SplitMix64::new(77);
    for config in all_configs() {
        let bytes = fit(&config).to_bytes().unwrap();
        for _ in 0..60 {
            let mut b = bytes.clone();
            for _ in 0..1 + r.below(3) {
                let pos = HEADER_LEN + r.below(b.len() - HEADER_LEN);
                b[pos] = r.next_u64() as u8;
            }
            reseal(&mut b);
            // Either a clean error or a model that still answers with errors or numbers.
            if let Ok(m) = Premodel::from_bytes(&b) {
                let _ = m.predict_proba(x.row(0));
            }
        }
    }
}
