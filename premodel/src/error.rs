//! One error type for the whole crate, so callers (the compiler and the runtime) can match on
//! what went wrong without string parsing.

use thiserror::Error;

/// Crate-wide result alias.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong while extracting features, training, evaluating or loading a
/// premodel. Variants carry the names and numbers a user needs to fix the input.
#[derive(Debug, Error)]
pub enum Error {
    /// A hyper-parameter was outside its valid range; reported before any fitting starts.
    #[error("{learner} params: {param} {reason}")]
    InvalidParam {
        learner: &'static str,
        param: &'static str,
        reason: String,
    },

    /// A row, matrix or vector had the wrong length for what it was combined with.
    #[error("{what}: expected {expected} values, got {got}")]
    Shape {
        what: &'static str,
        expected: usize,
        got: usize,
    },

    /// Training data held NaN or infinity; learners cannot be fitted on it.
    #[error("{what}: non-finite value at row {row}, column {col}")]
    NonFinite {
        what: &'static str,
        row: usize,
        col: usize,
    },

    /// Not enough rows to do what was asked (fit, split into folds, hold out a validation set).
    #[error("{what}: need at least {needed} rows, got {got}")]
    TooFewRows {
        what: &'static str,
        needed: usize,
        got: usize,
    },

    /// The probe feature set was requested but no probability vector was supplied.
    #[error("feature set '{feature_set}' needs the cheapest variant's probabilities")]
    MissingProbe { feature_set: &'static str },

    /// An image with a zero dimension cannot be described.
    #[error("image is empty ({width}x{height})")]
    EmptyImage { width: u32, height: u32 },

    /// A wrapped learner library refused the data.
    #[error("{learner}: {message}")]
    Backend {
        learner: &'static str,
        message: String,
    },

    /// Serialized bytes are not a premodel (wrong magic) or were cut short or altered.
    #[error("premodel bytes: {0}")]
    Corrupt(String),

    /// The envelope was written by a different (newer or older) container format.
    #[error("premodel format version {found} is not supported (this build reads {supported})")]
    FormatVersion { found: u32, supported: u32 },

    /// The model was trained on features computed differently from this build's features; its
    /// predictions would be meaningless, so it is refused rather than silently used.
    #[error(
        "premodel was trained on feature-set version {found}, this build computes version {expected}; retrain it"
    )]
    FeatureSetVersion { found: u32, expected: u32 },

    /// Payload encoding or decoding failed.
    #[error("premodel serialization: {0}")]
    Serialization(String),
}
