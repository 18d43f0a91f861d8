//! A complete, deployable premodel: which features it reads, which of them survived
//! correlation reduction, how they are standardised, and the fitted learner. This is the unit
//! the compiler trains and cross-validates and the runtime loads and evaluates.

use serde::{Deserialize, Serialize};

use crate::data::{Correctness, Matrix};
use crate::error::{Error, Result};
use crate::features::{reduce_correlated, FeatureSet, Standardizer, FEATURE_SET_VERSION};
use crate::learners::{choose_variant, AnyLearner, Learner, LearnerParams};

/// How to build a premodel from a feature matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PremodelConfig {
    /// The features the matrix columns hold.
    pub feature_set: FeatureSet,
    pub learner: LearnerParams,
    /// If set, drop the later feature of every pair with |Pearson r| above this (fitted on the
    /// training rows only).
    pub correlation_threshold: Option<f32>,
}

impl PremodelConfig {
    pub fn new(feature_set: FeatureSet, learner: LearnerParams) -> Self {
        Self {
            feature_set,
            learner,
            correlation_threshold: None,
        }
    }

    pub fn with_correlation_threshold(mut self, t: Option<f32>) -> Self {
        self.correlation_threshold = t;
        self
    }

    /// A short label for reports, e.g. `knn/image+probe/r0.9`.
    pub fn label(&self) -> String {
        let mut s = format!("{}/{}", self.learner.kind().name(), self.feature_set.name());
        if let Some(t) = self.correlation_threshold {
            s.push_str(&format!("/r{t}"));
        }
        s
    }
}

/// A trained premodel.
#[derive(Debug, Serialize, Deserialize)]
pub struct Premodel {
    feature_set: FeatureSet,
    feature_set_version: u32,
    /// Indices into `feature_set.names()` of the columns the learner sees, ascending.
    kept: Vec<usize>,
    scaler: Standardizer,
    learner: AnyLearner,
}

impl Premodel {
    /// Reduces features (if configured), fits the standardiser and then the learner, all on
    /// exactly the rows given, so cross-validation can call this per fold without leakage.
    pub fn fit(
        config: &PremodelConfig,
        features: &Matrix,
        correctness: &Correctness,
        seed: u64,
    ) -> Result<Self> {
        config.learner.validate()?;
        if features.n_cols() != config.feature_set.len() {
            return Err(Error::Shape {
                what: "feature columns (for the configured feature set)",
                expected: config.feature_set.len(),
                got: features.n_cols(),
            });
        }
        features.check_finite("training features")?;
        let kept = match config.correlation_threshold {
            Some(t) => reduce_correlated(features, t)?,
            None => (0..features.n_cols()).collect(),
        };
        if kept.is_empty() {
            return Err(Error::Shape {
                what: "features surviving reduction (all were constant)",
                expected: 1,
                got: 0,
            });
        }
        let x = features.select_cols(&kept);
        let scaler = Standardizer::fit(&x)?;
        let z = scaler.transform(&x)?;
        let learner = AnyLearner::fit(&z, correctness, &config.learner, seed)?;
        Ok(Self {
            feature_set: config.feature_set,
            feature_set_version: FEATURE_SET_VERSION,
            kept,
            scaler,
            learner,
        })
    }

    pub fn feature_set(&self) -> FeatureSet {
        self.feature_set
    }

    /// Feature-set version the model was trained with.
    pub fn feature_set_version(&self) -> u32 {
        self.feature_set_version
    }

    /// Indices (into the feature set) of the features the learner uses.
    pub fn kept_features(&self) -> &[usize] {
        &self.kept
    }

    /// Names of the features the learner uses.
    pub fn kept_feature_names(&self) -> Vec<&'static str> {
        let names = self.feature_set.names();
        self.kept
            .iter()
            .filter_map(|&i| names.get(i).copied())
            .collect()
    }

    pub fn scaler(&self) -> &Standardizer {
        &self.scaler
    }

    pub fn learner(&self) -> &AnyLearner {
        &self.learner
    }

    pub fn n_variants(&self) -> usize {
        self.learner.n_variants()
    }

    /// Per-variant probability of being correct, from a full feature row of
    /// [`Premodel::feature_set`] (as computed by [`FeatureSet::compute`]).
    pub fn predict_proba_into(&self, features: &[f32], out: &mut [f32]) -> Result<()> {
        if features.len() != self.feature_set.len() {
            return Err(Error::Shape {
                what: "feature row",
                expected: self.feature_set.len(),
                got: features.len(),
            });
        }
        let mut selected = Vec::with_capacity(self.kept.len());
        for &i in &self.kept {
            selected.push(
                *features
                    .get(i)
                    .ok_or_else(|| Error::Corrupt("kept feature index out of range".into()))?,
            );
        }
        let mut z = vec![0f32; selected.len()];
        self.scaler.transform_into(&selected, &mut z)?;
        self.learner.predict_proba_into(&z, out)
    }

    pub fn predict_proba(&self, features: &[f32]) -> Result<Vec<f32>> {
        let mut out = vec![0.0; self.n_variants()];
        self.predict_proba_into(features, &mut out)?;
        Ok(out)
    }

    /// The cheapest variant predicted correct with probability at least `min_prob` (see
    /// [`Learner::choose`]).
    pub fn choose(&self, features: &[f32], variant_costs: &[f32], min_prob: f32) -> Result<usize> {
        choose_variant(&self.predict_proba(features)?, variant_costs, min_prob)
    }

    /// Internal consistency after loading untrusted bytes.
    pub(crate) fn check_consistent(&self) -> Result<()> {
        let n = self.feature_set.len();
        let sorted = self.kept.windows(2).all(|w| w[0] < w[1]);
        if self.kept.is_empty()
            || !sorted
            || self.kept.iter().any(|&i| i >= n)
            || self.scaler.len() != self.kept.len()
            || self.learner.n_features() != self.kept.len()
        {
            return Err(Error::Corrupt(
                "feature selection, scaler and learner disagree".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learners::testdata::synthetic;
    use crate::learners::{KnnParams, LearnerKind, LogisticParams, MlpParams, TreeParams};

    fn x_y() -> (Matrix, Correctness) {
        synthetic(400, FeatureSet::Image.len(), 13)
    }

    #[test]
    fn training_is_deterministic_for_a_fixed_seed() {
        let (x, y) = x_y();
        for kind in LearnerKind::ALL {
            let learner = match kind {
                LearnerKind::Mlp => LearnerParams::Mlp(MlpParams::new().with_max_epochs(10)),
                k => k.default_params(),
            };
            let config = PremodelConfig::new(FeatureSet::Image, learner);
            let a = Premodel::fit(&config, &x, &y, 42)
                .unwrap()
                .to_bytes()
                .unwrap();
            let b = Premodel::fit(&config, &x, &y, 42)
                .unwrap()
                .to_bytes()
                .unwrap();
            assert!(a == b, "{}: {} vs {} bytes", kind.name(), a.len(), b.len());
        }
    }

    #[test]
    fn mlp_seed_changes_the_model() {
        let (x, y) = x_y();
        let config = PremodelConfig::new(
            FeatureSet::Image,
            LearnerParams::Mlp(MlpParams::new().with_max_epochs(3)),
        );
        let a = Premodel::fit(&config, &x, &y, 1)
            .unwrap()
            .to_bytes()
            .unwrap();
        let b = Premodel::fit(&config, &x, &y, 2)
            .unwrap()
            .to_bytes()
            .unwrap();
        assert!(a != b);
    }

    #[test]
    fn reduction_drops_duplicated_feature_and_prediction_uses_full_rows() {
        let (mut x, y) = x_y();
        // Make column 5 an exact copy of column 0.
        for i in 0..x.n_rows() {
            let v = x.row(i)[0];
            x.row_mut(i)[5] = v;
        }
        let config = PremodelConfig::new(
            FeatureSet::Image,
            LearnerParams::Logistic(LogisticParams::new()),
        )
        .with_correlation_threshold(Some(0.95));
        let m = Premodel::fit(&config, &x, &y, 0).unwrap();
        assert!(m.kept_features().contains(&0));
        assert!(!m.kept_features().contains(&5));
        assert!(!m
            .kept_feature_names()
            .contains(&FeatureSet::Image.names()[5]));
        let p = m.predict_proba(x.row(0)).unwrap();
        assert_eq!(p.len(), 3);
        assert!(matches!(
            m.predict_proba(&x.row(0)[1..]),
            Err(Error::Shape { .. })
        ));
        let c = m.choose(x.row(0), &[1.0, 2.0, 3.0], 0.5).unwrap();
        assert!(c < 3);
    }

    #[test]
    fn fit_checks_feature_count_and_params() {
        let (x, y) = synthetic(50, 4, 1);
        let config = PremodelConfig::new(FeatureSet::Image, LearnerParams::Knn(KnnParams::new()));
        assert!(matches!(
            Premodel::fit(&config, &x, &y, 0),
            Err(Error::Shape { .. })
        ));
        let (x, y) = x_y();
        let bad = PremodelConfig::new(
            FeatureSet::Image,
            LearnerParams::Tree(TreeParams::new().with_min_samples_leaf(0)),
        );
        assert!(matches!(
            Premodel::fit(&bad, &x, &y, 0),
            Err(Error::InvalidParam { .. })
        ));
    }
}
