//! Errors of the compiler crate. Every file-related variant names the file.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A profile or plan file that is not what it claims to be: wrong magic, unknown schema
    /// version, checksum mismatch, truncated record, inconsistent content.
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },

    /// Inputs that do not fit together (profiles of different zoos, shards that overlap...).
    #[error("{0}")]
    Mismatch(String),

    #[error("{0}")]
    InvalidArgument(String),

    #[error(transparent)]
    Zoo(#[from] triage_zoo::Error),

    #[error(transparent)]
    Premodel(#[from] triage_premodel::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            message: message.into(),
        }
    }
}
