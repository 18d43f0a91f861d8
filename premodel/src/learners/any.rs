//! Run-time choice of learner: the compiler and the CLI pick a learner by name, and the plan
//! stores whichever one won, so they are wrapped in enums that implement [`Learner`] by
//! delegation.

use serde::{Deserialize, Serialize};

use super::{Knn, KnnParams, Learner, Logistic, LogisticParams, Mlp, MlpParams, Tree, TreeParams};
use crate::data::{Correctness, Matrix};
use crate::error::Result;

/// The learner families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LearnerKind {
    Knn,
    Tree,
    Logistic,
    Mlp,
}

impl LearnerKind {
    pub const ALL: [LearnerKind; 4] = [
        LearnerKind::Knn,
        LearnerKind::Tree,
        LearnerKind::Logistic,
        LearnerKind::Mlp,
    ];

    /// Stable name for CLIs, plans and reports.
    pub fn name(self) -> &'static str {
        match self {
            LearnerKind::Knn => "knn",
            LearnerKind::Tree => "tree",
            LearnerKind::Logistic => "logistic",
            LearnerKind::Mlp => "mlp",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// This family's default hyper-parameters.
    pub fn default_params(self) -> LearnerParams {
        match self {
            LearnerKind::Knn => LearnerParams::Knn(KnnParams::default()),
            LearnerKind::Tree => LearnerParams::Tree(TreeParams::default()),
            LearnerKind::Logistic => LearnerParams::Logistic(LogisticParams::default()),
            LearnerKind::Mlp => LearnerParams::Mlp(MlpParams::default()),
        }
    }
}

/// Hyper-parameters of any learner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LearnerParams {
    Knn(KnnParams),
    Tree(TreeParams),
    Logistic(LogisticParams),
    Mlp(MlpParams),
}

impl LearnerParams {
    pub fn kind(&self) -> LearnerKind {
        match self {
            LearnerParams::Knn(_) => LearnerKind::Knn,
            LearnerParams::Tree(_) => LearnerKind::Tree,
            LearnerParams::Logistic(_) => LearnerKind::Logistic,
            LearnerParams::Mlp(_) => LearnerKind::Mlp,
        }
    }

    pub fn validate(&self) -> Result<()> {
        match self {
            LearnerParams::Knn(p) => p.validate(),
            LearnerParams::Tree(p) => p.validate(),
            LearnerParams::Logistic(p) => p.validate(),
            LearnerParams::Mlp(p) => p.validate(),
        }
    }
}

/// Any fitted learner.
#[derive(Debug, Serialize, Deserialize)]
pub enum AnyLearner {
    Knn(Knn),
    Tree(Tree),
    Logistic(Logistic),
    Mlp(Mlp),
}

impl AnyLearner {
    pub fn kind(&self) -> LearnerKind {
        match self {
            AnyLearner::Knn(_) => LearnerKind::Knn,
            AnyLearner::Tree(_) => LearnerKind::Tree,
            AnyLearner::Logistic(_) => LearnerKind::Logistic,
            AnyLearner::Mlp(_) => LearnerKind::Mlp,
        }
    }
}

impl Learner for AnyLearner {
    type Params = LearnerParams;

    fn fit(x: &Matrix, y: &Correctness, params: &LearnerParams, seed: u64) -> Result<Self> {
        Ok(match params {
            LearnerParams::Knn(p) => AnyLearner::Knn(Knn::fit(x, y, p, seed)?),
            LearnerParams::Tree(p) => AnyLearner::Tree(Tree::fit(x, y, p, seed)?),
            LearnerParams::Logistic(p) => AnyLearner::Logistic(Logistic::fit(x, y, p, seed)?),
            LearnerParams::Mlp(p) => AnyLearner::Mlp(Mlp::fit(x, y, p, seed)?),
        })
    }

    fn n_features(&self) -> usize {
        match self {
            AnyLearner::Knn(l) => l.n_features(),
            AnyLearner::Tree(l) => l.n_features(),
            AnyLearner::Logistic(l) => l.n_features(),
            AnyLearner::Mlp(l) => l.n_features(),
        }
    }

    fn n_variants(&self) -> usize {
        match self {
            AnyLearner::Knn(l) => l.n_variants(),
            AnyLearner::Tree(l) => l.n_variants(),
            AnyLearner::Logistic(l) => l.n_variants(),
            AnyLearner::Mlp(l) => l.n_variants(),
        }
    }

    fn predict_proba_into(&self, row: &[f32], out: &mut [f32]) -> Result<()> {
        match self {
            AnyLearner::Knn(l) => l.predict_proba_into(row, out),
            AnyLearner::Tree(l) => l.predict_proba_into(row, out),
            AnyLearner::Logistic(l) => l.predict_proba_into(row, out),
            AnyLearner::Mlp(l) => l.predict_proba_into(row, out),
        }
    }
}
