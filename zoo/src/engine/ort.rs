//! ONNX Runtime (CPU execution provider) through the `ort` crate, the shared library loaded at
//! run time. The library is found, in order, at the path given in [`EngineOptions`], at
//! `ORT_DYLIB_PATH`, or inside the `onnxruntime` Python package
//! (`site-packages/onnxruntime/capi/libonnxruntime.so*`, as `pip install onnxruntime` lays it
//! out). One library per process: ONNX Runtime cannot be unloaded or swapped once loaded.
//!
//! An ONNX Runtime session runs through `&mut self`, so the engine pools sessions: one per
//! concurrent caller, made on demand from the model bytes read at load.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;

use super::pool::Pool;
use super::{check_input_len, Engine, EngineOptions};
use crate::error::{Error, Result};

/// The process's ONNX Runtime: the library it was loaded from and its environment, or why
/// loading failed (kept, so that every later load reports the same cause).
struct Runtime {
    library: PathBuf,
    version: String,
    env: Environment,
}

static RUNTIME: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();

fn unavailable(message: impl Into<String>) -> Error {
    Error::BackendUnavailable {
        backend: "ort",
        message: message.into(),
    }
}

/// Where the ONNX Runtime shared library is: the explicit path, `ORT_DYLIB_PATH`, then the
/// `onnxruntime` Python package.
pub fn find_library(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let mut tried = Vec::new();
    for python in ["python3", "python"] {
        let out = std::process::Command::new(python)
            .args([
                "-c",
                "import os, onnxruntime; print(os.path.dirname(onnxruntime.__file__))",
            ])
            .stderr(std::process::Stdio::null())
            .output();
        let Ok(out) = out else {
            tried.push(format!("{python}: not found"));
            continue;
        };
        if !out.status.success() {
            tried.push(format!("{python}: no onnxruntime package"));
            continue;
        }
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("capi");
        if let Some(lib) = library_in(&dir) {
            return Ok(lib);
        }
        tried.push(format!("{}: no libonnxruntime", dir.display()));
    }
    Err(unavailable(format!(
        "no ONNX Runtime library: pass --ort-lib PATH, set ORT_DYLIB_PATH, or `pip install onnxruntime` ({})",
        tried.join("; ")
    )))
}

/// The ONNX Runtime library in a directory (`libonnxruntime.so.1.x.y`, `.so`, `.dylib`).
fn library_in(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.") || n == "onnxruntime.dll")
        })
        .filter(|p| {
            // Not the execution-provider plugins (`libonnxruntime_providers_*`).
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.contains("providers"))
        })
        .collect();
    // The most specific name (with the full version) first.
    found.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    found.into_iter().next()
}

/// Version from a library file name (`libonnxruntime.so.1.32.0` -> `1.32.0`) or, failing
/// that, from ONNX Runtime's build string (`git-branch=rel-1.32.0`).
fn version_of(library: &Path) -> String {
    let from_name = library
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split_once(".so."))
        .map(|(_, v)| v.to_string());
    from_name
        .or_else(|| {
            ort::info()
                .split(|c: char| c == ',' || c.is_whitespace())
                .find_map(|f| f.strip_prefix("git-branch=rel-"))
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".to_string())
}

fn runtime(opts: &EngineOptions) -> Result<&'static Runtime> {
    let wanted = opts.ort_library.as_deref();
    let rt = RUNTIME.get_or_init(|| {
        let library = find_library(wanted).map_err(|e| e.to_string())?;
        if !library.exists() {
            return Err(format!("{}: no such file", library.display()));
        }
        let env = ort::init_from(&library)
            .map_err(|e| format!("{}: {e}", library.display()))?
            .with_name("triage")
            .build()
            .map_err(|e| format!("{}: {e}", library.display()))?;
        let version = version_of(&library);
        tracing::info!(library = %library.display(), version, "ONNX Runtime loaded");
        Ok(Runtime {
            library,
            version,
            env,
        })
    });
    let rt = rt.as_ref().map_err(|m| unavailable(m.clone()))?;
    if let Some(w) = wanted {
        if w != rt.library {
            return Err(unavailable(format!(
                "{} requested but {} is already loaded in this process",
                w.display(),
                rt.library.display()
            )));
        }
    }
    Ok(rt)
}

/// The loaded ONNX Runtime's version, if one was loaded.
pub fn loaded_version() -> Option<String> {
    RUNTIME
        .get()
        .and_then(|r| r.as_ref().ok())
        .map(|r| r.version.clone())
}

/// Loads the ONNX Runtime library now (normally done by the first load), returning its path
/// and version: lets a caller report early that the backend is missing.
pub fn load_library(opts: &EngineOptions) -> Result<(PathBuf, String)> {
    runtime(opts).map(|r| (r.library.clone(), r.version.clone()))
}

/// One network on ONNX Runtime's CPU execution provider, all graph optimizations on.
pub struct OrtEngine {
    name: String,
    size: usize,
    threads: usize,
    model: Vec<u8>,
    sessions: Pool<Session>,
}

impl OrtEngine {
    pub fn load(name: &str, path: &Path, size: u32, opts: &EngineOptions) -> Result<Self> {
        let rt = runtime(opts)?;
        let model = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let threads = opts.threads();
        let first = new_session(&rt.env, &model, threads).map_err(|message| Error::ModelLoad {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(OrtEngine {
            name: name.to_string(),
            size: size as usize,
            threads,
            model,
            sessions: Pool::with(first),
        })
    }

    fn run_session(&self, session: &mut Session, input: &[f32]) -> ort::Result<Vec<f32>> {
        let s = self.size;
        // A view over the caller's slice: no copy into an ONNX Runtime-owned buffer.
        let tensor = TensorRef::from_array_view(([1usize, 3, s, s], input))?;
        let outputs = session.run(ort::inputs![tensor])?;
        if outputs.len() == 0 {
            return Err(ort::Error::new("the model produced no output"));
        }
        let (_, values) = outputs[0].try_extract_tensor::<f32>()?;
        Ok(values.to_vec())
    }
}

fn new_session(
    env: &Environment,
    model: &[u8],
    threads: usize,
) -> std::result::Result<Session, String> {
    let s = |e: ort::Error<ort::session::builder::SessionBuilder>| e.to_string();
    Session::builder(env)
        .map_err(|e| e.to_string())?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(s)?
        .with_intra_threads(threads)
        .map_err(s)?
        .with_inter_threads(1)
        .map_err(s)?
        .commit_from_memory(model)
        .map_err(|e| e.to_string())
}

impl Engine for OrtEngine {
    fn run(&self, input: &[f32]) -> Result<Vec<f32>> {
        check_input_len(&self.name, self.size, input)?;
        let rt = RUNTIME
            .get()
            .and_then(|r| r.as_ref().ok())
            .ok_or_else(|| unavailable("ONNX Runtime is not loaded"))?;
        self.sessions
            .with_state(
                || new_session(&rt.env, &self.model, self.threads),
                |session| self.run_session(session, input).map_err(|e| e.to_string()),
            )
            .map_err(|message| Error::Inference {
                variant: self.name.clone(),
                message,
            })
    }

    fn backend(&self) -> &'static str {
        "ort"
    }
}
