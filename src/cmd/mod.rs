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
    /// Inference backend: tract (built in), tract-nchw (tract on the graph as imported, the
    /// baseline) or ort (ONNX Runtime; needs the `ort` feature).
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
            anyhow::anyhow!(
                "unknown backend '{}' (known: tract, tract-nchw, ort)",
                self.backend
            )
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

/// Where the runtime offloads: a server reached directly or through an emulated link that
/// replays a mahimahi trace (the link runs until [`Offload::stop`]).
pub struct Offload {
    /// URL the runtime talks to (the link's address when there is one).
    pub server: Option<String>,
    /// Network to assume until uploads measure it: the trace's mean capacity.
    pub assumed: Option<triage_runtime::NetworkView>,
    link: Option<triage_runtime::link::LinkEmulator>,
    /// In words, for reports.
    pub describe: String,
}

impl Offload {
    pub fn start(
        server: Option<&str>,
        trace: Option<&Path>,
        rtt_ms: u64,
        shared: &Path,
    ) -> anyhow::Result<Self> {
        use triage_runtime::link::{LinkConfig, LinkEmulator, Trace};
        match (server, trace) {
            (Some(url), Some(trace)) => {
                let path = locate_trace(trace, shared);
                let t = Trace::load(&path)?;
                let upstream = url
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    .to_string();
                if upstream.contains('/') {
                    anyhow::bail!("--server with --trace must be http://HOST:PORT, got {url}");
                }
                let mbps = t.capacity_bps(0.0, t.period_ms() as f64) / 1e6;
                let cfg = LinkConfig::new(t.clone(), t, Duration::from_millis(rtt_ms));
                let l = LinkEmulator::start("127.0.0.1:0", upstream.as_str(), cfg)?;
                Ok(Offload {
                    server: Some(format!("http://{}", l.local_addr())),
                    assumed: Some(triage_runtime::NetworkView {
                        up_mbps: mbps,
                        rtt_ms: rtt_ms as f64,
                    }),
                    link: Some(l),
                    describe: format!(
                        "uploads to {url} through an emulated link replaying {} (mean {mbps:.2} Mbit/s) with {rtt_ms} ms RTT",
                        path.display()
                    ),
                })
            }
            (Some(url), None) => Ok(Offload {
                server: Some(url.to_string()),
                assumed: None,
                link: None,
                describe: format!("uploads straight to {url}"),
            }),
            (None, Some(_)) => anyhow::bail!("--trace shapes the link to a server: give --server"),
            (None, None) => Ok(Offload {
                server: None,
                assumed: None,
                link: None,
                describe: "none (no server: local only)".to_string(),
            }),
        }
    }

    pub fn stop(self) {
        if let Some(l) = self.link {
            l.stop();
        }
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
