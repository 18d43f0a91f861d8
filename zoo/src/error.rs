//! One error type for the whole crate: every variant names the file (and, where it applies,
//! the field or line) so that a user can act on the message without a debugger.

use std::path::PathBuf;

/// Everything that can go wrong while reading a zoo, an image or a dataset.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: not valid TOML: {message}")]
    ManifestSyntax { path: PathBuf, message: String },

    #[error("{path}: {context}: {message}")]
    Manifest {
        path: PathBuf,
        /// Where in the manifest, e.g. `model 'mobilenet_v1_025_128': mean`.
        context: String,
        message: String,
    },

    #[error("{path}: sha256 mismatch: expected {expected}, file has {actual}")]
    HashMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },

    #[error("{path}: cannot load ONNX model: {message}")]
    ModelLoad { path: PathBuf, message: String },

    #[error("backend '{backend}' is not available: {message}")]
    BackendUnavailable {
        backend: &'static str,
        message: String,
    },

    #[error("variant '{variant}': inference failed: {message}")]
    Inference { variant: String, message: String },

    #[error(
        "variant '{variant}': input prepared for {got}x{got} but the model takes {want}x{want}"
    )]
    InputMismatch {
        variant: String,
        got: u32,
        want: u32,
    },

    #[error("no variant named '{0}' in the zoo")]
    UnknownVariant(String),

    #[error("{path}: {message}")]
    Image { path: PathBuf, message: String },

    #[error("{path}:{line}: {message}")]
    Dataset {
        path: PathBuf,
        /// 1-based line number, 0 when the problem is not tied to one line.
        line: usize,
        message: String,
    },

    #[error("{0}")]
    InvalidArgument(String),
}

/// Crate-wide result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn image(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Image {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn dataset(
        path: impl Into<PathBuf>,
        line: usize,
        message: impl Into<String>,
    ) -> Self {
        Error::Dataset {
            path: path.into(),
            line,
            message: message.into(),
        }
    }
}
