//! `triage netem`: a loopback TCP proxy that replays a cellular link trace.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use triage_runtime::link::{LinkConfig, LinkEmulator, Trace};

#[derive(Args)]
pub struct NetemArgs {
    /// Mahimahi trace of the uplink (client to upstream); a bare file name is also looked up
    /// in $TRIAGE_SHARED/network-traces.
    #[arg(long)]
    trace: PathBuf,
    /// Trace of the downlink (upstream to client) [default: the --trace file].
    #[arg(long)]
    down_trace: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:9000.
    #[arg(long)]
    listen: String,
    /// Address every connection is forwarded to, e.g. the `triage serve` address.
    #[arg(long)]
    upstream: String,
    /// Round-trip propagation delay added on top of the trace, half in each direction.
    #[arg(long, default_value_t = 0)]
    rtt_ms: u64,
}

pub fn run(args: NetemArgs, shared: &Path) -> Result<ExitCode> {
    let up_path = super::locate_trace(&args.trace, shared);
    let down_path = args
        .down_trace
        .as_deref()
        .map(|p| super::locate_trace(p, shared))
        .unwrap_or_else(|| up_path.clone());
    let up = Trace::load(&up_path)?;
    let down = Trace::load(&down_path)?;
    let mean = |t: &Trace| t.capacity_bps(0.0, t.period_ms() as f64) / 1e6;
    let (up_mbps, down_mbps) = (mean(&up), mean(&down));
    let config = LinkConfig::new(up, down, Duration::from_millis(args.rtt_ms));
    let link = LinkEmulator::start(args.listen.as_str(), args.upstream.as_str(), config)?;
    println!(
        "link {} -> {}: uplink {} ({up_mbps:.2} Mbit/s mean), downlink {} ({down_mbps:.2} Mbit/s mean), RTT +{} ms (Ctrl-C to stop)",
        link.local_addr(),
        args.upstream,
        up_path.display(),
        down_path.display(),
        args.rtt_ms
    );
    link.wait();
    Ok(ExitCode::SUCCESS)
}
