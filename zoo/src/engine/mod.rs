//! Inference backends behind one trait, so that the rest of Triage never names tract or ONNX
//! Runtime.
//!
//! - [`tract`]: `tract-onnx`, pure Rust, always built; the default. The graph runs
//!   channel-last with Triage's depthwise and stem kernels ([`depthwise`], [`stem`], over
//!   shared vector lanes, [`Isa`]); `tract-nchw` runs it as tract imports it, the baseline
//!   of `triage bench`.
//! - `ort` (cargo feature `ort`): ONNX Runtime's CPU execution provider through the `ort`
//!   crate, with the shared library loaded at run time from a path, `ORT_DYLIB_PATH` or the
//!   `onnxruntime` Python wheel. Nothing is downloaded at build time.
//!
//! Every engine takes the variant's normalized `[1, 3, S, S]` input and returns the raw output,
//! so backends are interchangeable per run and compared on identical tensors.

pub mod conv;
pub mod depthwise;
mod lanes;
#[cfg(feature = "ort")]
pub mod ort;
mod pool;
pub mod simd;
pub mod stem;
pub mod tract;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub use self::lanes::{Isa, Window};
pub use self::tract::TractEngine;

/// One loaded network, ready to run single images. Implementations are shared across
/// threads: `run` takes `&self`; per-call state (tract's session state, an ONNX Runtime
/// session) is pooled inside, so concurrent callers neither serialize nor reallocate it.
pub trait Engine: Send + Sync {
    /// Runs one `[1, 3, S, S]` f32 input and returns the raw network output.
    fn run(&self, input: &[f32]) -> Result<Vec<f32>>;
    /// Short backend name recorded with measurements ("tract", "ort").
    fn backend(&self) -> &'static str;
}

/// Which inference library runs the networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Backend {
    /// `tract-onnx`, built in, the graph rewritten to run channel-last.
    #[default]
    Tract,
    /// `tract-onnx` on the `NCHW` graph as imported, with tract's own kernels: the baseline
    /// the channel-last rewrite is measured against.
    TractNchw,
    /// ONNX Runtime, CPU execution provider (cargo feature `ort`).
    Ort,
}

impl Backend {
    /// Every backend this crate knows, whether or not it was compiled in.
    pub const ALL: [Backend; 3] = [Backend::Tract, Backend::TractNchw, Backend::Ort];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Tract => "tract",
            Backend::TractNchw => "tract-nchw",
            Backend::Ort => "ort",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "tract" => Some(Backend::Tract),
            "tract-nchw" => Some(Backend::TractNchw),
            "ort" | "onnxruntime" => Some(Backend::Ort),
            _ => None,
        }
    }

    /// Whether this build can run the backend at all (the library may still be missing at
    /// run time for `ort`).
    pub fn compiled_in(self) -> bool {
        match self {
            Backend::Tract | Backend::TractNchw => true,
            Backend::Ort => cfg!(feature = "ort"),
        }
    }

    /// Version of the library behind the backend, for provenance: tract's pinned version, or
    /// the ONNX Runtime shared library's own version string once loaded.
    pub fn library_version(self) -> Option<String> {
        match self {
            Backend::Tract | Backend::TractNchw => Some(crate::TRACT_VERSION.to_string()),
            #[cfg(feature = "ort")]
            Backend::Ort => self::ort::loaded_version(),
            #[cfg(not(feature = "ort"))]
            Backend::Ort => None,
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How engines are built: which backend, and its knobs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EngineOptions {
    pub backend: Backend,
    /// Threads inside one inference. Triage runs one image per core instead (see the README:
    /// on two cores that doubles throughput where intra-op threading gains 1.1-1.4x), so the
    /// default is 1. Honoured by ONNX Runtime; tract is built single-threaded.
    pub intra_op_threads: usize,
    /// ONNX Runtime shared library; `None` looks at `ORT_DYLIB_PATH`, then the `onnxruntime`
    /// Python package.
    pub ort_library: Option<PathBuf>,
}

impl EngineOptions {
    pub fn new(backend: Backend) -> Self {
        EngineOptions {
            backend,
            ..Default::default()
        }
    }

    /// Loads one network with these options. `size` is the side of its square input.
    pub fn load(&self, name: &str, path: &Path, size: u32) -> Result<Box<dyn Engine>> {
        match self.backend {
            Backend::Tract => Ok(Box::new(TractEngine::load(name, path, size)?)),
            Backend::TractNchw => Ok(Box::new(TractEngine::load_graph(
                name,
                path,
                size,
                self::tract::Graph::AsImported,
            )?)),
            #[cfg(feature = "ort")]
            Backend::Ort => Ok(Box::new(self::ort::OrtEngine::load(
                name, path, size, self,
            )?)),
            #[cfg(not(feature = "ort"))]
            Backend::Ort => Err(Error::BackendUnavailable {
                backend: "ort",
                message: "this build has no ONNX Runtime support; rebuild with `--features ort`"
                    .into(),
            }),
        }
    }

    /// Version of the backend's library, loading it if needed (ONNX Runtime): for recording
    /// with measurements before any model is loaded.
    pub fn library_version(&self) -> Result<String> {
        match self.backend {
            Backend::Tract | Backend::TractNchw => Ok(crate::TRACT_VERSION.to_string()),
            #[cfg(feature = "ort")]
            Backend::Ort => self::ort::load_library(self).map(|(_, v)| v),
            #[cfg(not(feature = "ort"))]
            Backend::Ort => Err(Error::BackendUnavailable {
                backend: "ort",
                message: "this build has no ONNX Runtime support; rebuild with `--features ort`"
                    .into(),
            }),
        }
    }

    /// Threads inside one inference, at least 1.
    pub fn threads(&self) -> usize {
        self.intra_op_threads.max(1)
    }
}

/// Checks the length of an engine input against the model's `[1, 3, size, size]`.
pub(crate) fn check_input_len(variant: &str, size: usize, input: &[f32]) -> Result<()> {
    let want = 3 * size * size;
    if input.len() != want {
        return Err(Error::Inference {
            variant: variant.to_string(),
            message: format!(
                "input has {} values, the model takes 1x3x{size}x{size} = {want}",
                input.len()
            ),
        });
    }
    Ok(())
}
