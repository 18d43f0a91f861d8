//! `triage-premodel` owns the per-image *premodel*: the cheap predictor that, before any DNN
//! runs, looks at an image and says which variants of the zoo will classify it correctly, so
//! a policy can run the cheapest adequate one (Taylor et al., "Adaptive deep learning model
//! selection on embedded systems", LCTES 2018).
//!
//! It owns four things and nothing else:
//! * [`features`]: what the premodel sees - image features at a small fixed working
//!   resolution, file metadata, optional probe features from the cheapest variant's softmax -
//!   plus the [`Standardizer`](features::Standardizer) and correlation-based reduction;
//! * [`learners`]: k-NN, decision tree, logistic regression and MLP behind one
//!   [`Learner`](learners::Learner) trait;
//! * [`cv`]: seeded k-fold cross-validation and the metrics (AUC, Brier, top-1, latency) the
//!   compiler uses to choose a learner;
//! * [`Premodel`]: features + scaler + learner as one unit, serialized into a versioned
//!   envelope that refuses models trained on different feature definitions.
//!
//! Training data (which variant got which image right, and variant latencies) comes from the
//! profile; this crate never runs a DNN or decodes files itself.

pub mod cv;
mod data;
mod error;
pub mod features;
pub mod learners;
mod premodel;
pub mod rng;
mod serial;

pub use crate::data::{Correctness, Matrix};
pub use crate::error::{Error, Result};
pub use crate::premodel::{Premodel, PremodelConfig};
pub use crate::serial::{FORMAT_VERSION, MAGIC};

/// The types most users need.
pub mod prelude {
    pub use crate::cv::{cross_validate, CvOptions, CvReport, LearnerReport, Outcome};
    pub use crate::features::{downsize, FeatureSet, ImageMeta, Standardizer, FEATURE_SET_VERSION};
    pub use crate::learners::{
        choose_variant, AnyLearner, Learner, LearnerKind, LearnerParams, TargetForm,
    };
    pub use crate::{Correctness, Error, Matrix, Premodel, PremodelConfig, Result};
}
