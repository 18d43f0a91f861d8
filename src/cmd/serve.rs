//! `triage serve`: zoo variants over the Open Inference Protocol v2 REST API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use triage_runtime::server::{serve_until_signal, ServeConfig};
use triage_zoo::Zoo;

#[derive(Args)]
pub struct ServeArgs {
    /// Zoo directory with zoo.toml [default: $TRIAGE_SHARED/zoo].
    #[arg(long)]
    zoo: Option<PathBuf>,
    /// Variants to serve, comma-separated [default: every variant of the zoo].
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: SocketAddr,
    /// Requests that may wait for a worker beyond those running; more get 503 [default: 4 per
    /// worker].
    #[arg(long)]
    queue: Option<usize>,
    /// Inference threads [default: the number of cores].
    #[arg(long)]
    workers: Option<usize>,
    /// Largest accepted request body, in MiB; larger ones get 413.
    #[arg(long, default_value_t = 32)]
    max_body_mib: usize,
    #[command(flatten)]
    engine: super::EngineArgs,
}

pub fn run(args: ServeArgs, shared: &Path) -> Result<ExitCode> {
    let zoo_dir = super::or_shared(args.zoo, shared, "zoo");
    let zoo = Zoo::open_with(&zoo_dir, args.engine.options()?)
        .with_context(|| format!("opening zoo {}", zoo_dir.display()))?;
    let models = if args.models.is_empty() {
        zoo.variants()
            .iter()
            .map(|v| v.name().to_string())
            .collect()
    } else {
        args.models
    };
    let mut config = ServeConfig::new(models);
    if let Some(w) = args.workers {
        anyhow::ensure!(w > 0, "--workers must be at least 1");
        config.workers = w;
        config.queue = 4 * w;
    }
    if let Some(q) = args.queue {
        config.queue = q;
    }
    config.max_body_bytes = args.max_body_mib.saturating_mul(1 << 20);
    let names = config.models.join(", ");
    serve_until_signal(args.addr, Arc::new(zoo), config, |addr| {
        println!("serving {names} on http://{addr} (Ctrl-C to stop)");
    })?;
    Ok(ExitCode::SUCCESS)
}
