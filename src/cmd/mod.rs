//! One module per subcommand group, plus what they share.

pub mod bench;
pub mod compile;
pub mod data;
pub mod eval;
pub mod netem;
pub mod pipeline;
pub mod premodel;
pub mod profile;
pub mod run;
pub mod serve;
pub mod zoo;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use triage_zoo::{Backend, EngineOptions};

/// Which inference backend runs the variants.
#[derive(Args, Clone)]
pub struct EngineArgs {
    /// Inference backend: tract (built in) or ort (ONNX Runtime; needs the `ort` feature).
    #[arg(long, default_value = "tract")]
    pub backend: String,
    /// ONNX Runtime shared library [default: $ORT_DYLIB_PATH, else the onnxruntime Python
    /// package].
    #[arg(long, env = "ORT_DYLIB_PATH")]
    pub ort_lib: Option<PathBuf>,
}

impl EngineArgs {
    pub fn options(&self) -> anyhow::Result<EngineOptions> {
        let backend = Backend::parse(&self.backend).ok_or_else(|| {
            anyhow::anyhow!("unknown backend '{}' (known: tract, ort)", self.backend)
        })?;
        Ok(EngineOptions {
            backend,
            ort_library: self.ort_lib.clone(),
            ..EngineOptions::default()
        })
    }
}

pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// `--zoo` or `--data` when given, else the default beneath the shared directory.
pub fn or_shared(given: Option<PathBuf>, shared: &Path, default: &str) -> PathBuf {
    given.unwrap_or_else(|| shared.join(default))
}

/// A trace file: as given, or under `$TRIAGE_SHARED/network-traces` when only a name is
/// given.
pub fn locate_trace(path: &Path, shared: &Path) -> PathBuf {
    let in_shared = shared.join("network-traces").join(path);
    if !path.exists() && path.components().count() == 1 && in_shared.exists() {
        in_shared
    } else {
        path.to_path_buf()
    }
}

/// A progress bar on stderr with an ETA; hidden when stderr is not a terminal or `quiet`.
pub fn progress(len: u64, what: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template(
        "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, ETA {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}
