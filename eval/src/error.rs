//! Errors of the evaluation harness. Every file-related variant names the file.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The plan, profiles, device or dataset do not belong together (another zoo, another
    /// image list, a variant the profile never measured...).
    #[error("{0}")]
    Mismatch(String),

    #[error("{0}")]
    InvalidArgument(String),

    #[error(transparent)]
    Runtime(#[from] triage_runtime::RuntimeError),

    #[error("plot {path}: {message}")]
    Plot { path: PathBuf, message: String },

    #[error(transparent)]
    Compiler(#[from] triage_compiler::Error),

    #[error(transparent)]
    Premodel(#[from] triage_premodel::Error),

    #[error(transparent)]
    Zoo(#[from] triage_zoo::Error),

    #[error(transparent)]
    Trace(#[from] triage_runtime::link::TraceError),

    #[error("serializing the report: {0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
