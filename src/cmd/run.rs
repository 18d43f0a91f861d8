//! `triage run`: the embedded runtime on real images, optionally offloading to a server
//! through a trace-driven emulated link.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use triage_runtime::budget::BudgetConfig;
use triage_runtime::{Outcome, Preference, Request, Runtime, RuntimeConfig};

use super::zoo::DataArgs;

#[derive(Args)]
pub struct RunArgs {
    /// Plan written by `triage compile`.
    #[arg(long, default_value = "out/plan.triage")]
    plan: PathBuf,
    /// Zoo directory [default: $TRIAGE_SHARED/zoo].
    #[arg(long)]
    zoo: Option<PathBuf>,
    /// Images to classify; without any, the labelled dataset of --data.
    images: Vec<PathBuf>,
    #[command(flatten)]
    data: DataArgs,
    /// Open Inference Protocol v2 server to offload to (e.g. `triage serve`).
    #[arg(long)]
    server: Option<String>,
    /// Reach the server through an emulated link replaying this mahimahi uplink trace (a
    /// bare name is looked up in $TRIAGE_SHARED/network-traces).
    #[arg(long, requires = "server")]
    trace: Option<PathBuf>,
    /// Propagation RTT added by the emulated link, ms.
    #[arg(long, default_value_t = 40)]
    rtt_ms: u64,
    /// Energy budget above the cheapest-variant floor per horizon, J.
    #[arg(long)]
    energy_j: Option<f64>,
    /// Cloud budget per horizon, USD.
    #[arg(long)]
    usd: Option<f64>,
    /// Budget horizon, seconds.
    #[arg(long, default_value_t = 3600.0)]
    horizon_s: f64,
    /// Budget state file (resumed if present).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Per-image deadline, ms.
    #[arg(long)]
    deadline_ms: Option<f64>,
    /// default, accurate, fast, or a latency in ms.
    #[arg(long, default_value = "default")]
    prefer: String,
    /// Cap on the memory of loaded variants, MB.
    #[arg(long)]
    memory_mb: Option<u64>,
    /// Print one JSON object per image and a summary object.
    #[arg(long)]
    json: bool,
}

fn preference(s: &str) -> Result<Preference> {
    Ok(match s {
        "default" => Preference::Default,
        "accurate" => Preference::MostAccurate,
        "fast" => Preference::Fastest,
        ms => Preference::LatencyMs(ms.parse().with_context(|| {
            format!("--prefer '{ms}': expected default, accurate, fast or a number of ms")
        })?),
    })
}

#[derive(Serialize, Default)]
struct Summary {
    images: usize,
    failed: usize,
    labelled: usize,
    correct: usize,
    top1: Option<f64>,
    mean_latency_ms: f64,
    p95_latency_ms: f64,
    mean_energy_mj: f64,
    usd_per_1000: f64,
    offloaded: usize,
    answered_remotely: usize,
    points: BTreeMap<String, usize>,
    spent_energy_j: f64,
    spent_usd: f64,
}

pub fn run(args: RunArgs, shared: &Path) -> Result<ExitCode> {
    let zoo_dir = super::or_shared(args.zoo.clone(), shared, "zoo");
    let mut items: Vec<(PathBuf, Option<usize>)> = Vec::new();
    if args.images.is_empty() {
        let data = args.data.open(shared)?;
        items.extend(
            data.samples()
                .iter()
                .map(|s| (s.path.clone(), Some(s.label))),
        );
    } else {
        items.extend(args.images.iter().map(|p| (p.clone(), None)));
    }
    if items.is_empty() {
        bail!("no images to classify");
    }
    if !(args.horizon_s.is_finite() && args.horizon_s > 0.0) {
        bail!("--horizon-s must be positive");
    }
    let offload = super::Offload::start(
        args.server.as_deref(),
        args.trace.as_deref(),
        args.rtt_ms,
        shared,
    )?;
    let config = RuntimeConfig {
        budget: BudgetConfig {
            energy_mj: args.energy_j.map(|j| j * 1e3),
            usd: args.usd,
            horizon: Duration::from_secs_f64(args.horizon_s),
            state_file: args.state.clone(),
            ..BudgetConfig::default()
        },
        memory_cap_bytes: args.memory_mb.map(|m| m << 20),
        server: offload.server.clone(),
        assumed_network: offload.assumed.or(RuntimeConfig::default().assumed_network),
        ..RuntimeConfig::default()
    };
    let rt = Runtime::open(&args.plan, &zoo_dir, config)
        .with_context(|| format!("opening plan {}", args.plan.display()))?;
    let req = Request {
        deadline: args
            .deadline_ms
            .map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1e3)),
        preference: preference(&args.prefer)?,
        ..Request::default()
    };
    let bar = super::progress(items.len() as u64, "classifying", args.json);
    let mut s = Summary::default();
    let mut latencies = Vec::new();
    let mut energy = 0.0;
    let mut usd = 0.0;
    for (path, label) in &items {
        rt.probe_if_stale();
        s.images += 1;
        let outcome: Outcome = match rt.classify_file(path, &req) {
            Ok(o) => o,
            Err(e) => {
                s.failed += 1;
                bar.suspend(|| eprintln!("error: {e}"));
                if args.json {
                    println!(
                        "{}",
                        serde_json::json!({"image": path, "error": e.to_string()})
                    );
                }
                bar.inc(1);
                continue;
            }
        };
        latencies.push(outcome.latency_ms);
        energy += outcome.energy_mj;
        usd += outcome.usd;
        *s.points.entry(outcome.point.clone()).or_default() += 1;
        s.offloaded += usize::from(outcome.remote.is_some());
        s.answered_remotely += usize::from(outcome.answered_remotely);
        if let Some(l) = label {
            s.labelled += 1;
            s.correct += usize::from(outcome.class == *l);
        }
        if args.json {
            println!(
                "{}",
                serde_json::json!({"image": path, "label": label, "outcome": outcome})
            );
        } else if args.images.len() == items.len() {
            bar.suspend(|| {
                println!(
                    "{}: {} ({}) p={:.3} via {} [{}] {:.1} ms{}",
                    path.display(),
                    outcome.label,
                    outcome.class,
                    outcome.confidence,
                    outcome.variants_run.join(" -> "),
                    outcome.point,
                    outcome.latency_ms,
                    if outcome.answered_remotely {
                        " (remote)"
                    } else {
                        ""
                    }
                )
            });
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let n_ok = latencies.len().max(1) as f64;
    s.top1 = (s.labelled > 0).then(|| s.correct as f64 / s.labelled as f64);
    let stats = triage_compiler::profile::LatencyStats::from_samples(&latencies);
    s.mean_latency_ms = stats.mean_ms;
    s.p95_latency_ms = stats.p95_ms;
    s.mean_energy_mj = energy / n_ok;
    s.usd_per_1000 = 1000.0 * usd / n_ok;
    let status = rt.status();
    s.spent_energy_j = status.spent.energy_mj / 1e3;
    s.spent_usd = status.spent.usd;
    rt.checkpoint()?;
    offload.stop();
    if args.json {
        println!("{}", serde_json::json!({ "summary": s }));
    } else {
        println!(
            "{} images ({} failed){}; mean {:.1} ms, p95 {:.1} ms; {:.1} mJ/image; ${:.4}/1000; {} offloaded ({} answered remotely)",
            s.images,
            s.failed,
            s.top1
                .map_or(String::new(), |t| format!(", top-1 {:.2}%", 100.0 * t)),
            s.mean_latency_ms,
            s.p95_latency_ms,
            s.mean_energy_mj,
            s.usd_per_1000,
            s.offloaded,
            s.answered_remotely
        );
        for (p, c) in &s.points {
            println!("  point {p}: {c} images");
        }
        println!(
            "  budget spent: {:.3} J above the floor, ${:.6}",
            s.spent_energy_j, s.spent_usd
        );
    }
    Ok(if s.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
