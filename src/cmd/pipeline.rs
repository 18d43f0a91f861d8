//! `triage pipeline`: profile -> compile -> eval (cross-validated) -> report on the shared
//! data, reusing the profile and plan when their inputs have not changed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use triage_compiler::compile::{compile, CompileOptions};
use triage_compiler::device::Device;
use triage_compiler::plan::Plan;
use triage_compiler::profile::grid::DEFAULT_GRID;
use triage_compiler::profile::run::{profile, LatencyConfig, ProfileConfig};
use triage_compiler::profile::RemoteGrid;
use triage_compiler::Profile;
use triage_zoo::Zoo;

use super::eval::EvalArgs;
use super::zoo::DataArgs;

#[derive(Args)]
pub struct PipelineArgs {
    /// Zoo directory with zoo.toml [default: $TRIAGE_SHARED/zoo].
    #[arg(long)]
    zoo: Option<PathBuf>,
    #[command(flatten)]
    data: DataArgs,
    /// Output directory: the profile, the plan and report/ go here.
    #[arg(long, default_value = "out")]
    out: PathBuf,
    /// Device profile (TOML).
    #[arg(long, default_value = "devices/this-host.toml")]
    device: PathBuf,
    /// Remote options profiled (see `triage profile --help`).
    #[arg(long, default_value = DEFAULT_GRID)]
    remote_grid: String,
    /// Folds of the evaluation's cross-validation.
    #[arg(long, default_value_t = 5)]
    cv: usize,
    /// Uplink trace for offloading [default: $TRIAGE_SHARED/network-traces/Verizon-LTE-short.up].
    #[arg(long)]
    trace: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn sha256(path: &Path) -> Result<String> {
    Ok(triage_zoo::hash::sha256_file(path)?)
}

/// Profiles into `out` unless an identical, complete profile is already there; a profile of
/// other inputs is set aside (renamed `*.stale`) and redone.
fn ensure_profile(args: &PipelineArgs, shared: &Path, out: &Path) -> Result<()> {
    let zoo_dir = super::or_shared(args.zoo.clone(), shared, "zoo");
    let zoo = Zoo::open(&zoo_dir).with_context(|| format!("opening zoo {}", zoo_dir.display()))?;
    let data = args.data.open(shared)?;
    let remote: RemoteGrid = args.remote_grid.parse()?;
    let cfg = ProfileConfig {
        remote: remote.0,
        shard: None,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        apply_orientation: !args.data.no_exif_orientation,
        latency: LatencyConfig::default(),
    };
    for attempt in 0..2 {
        let bar = super::profile::Bar::new(false);
        let outcome = profile(&zoo, &data, out, &cfg, &bar);
        bar.finish();
        match outcome {
            Ok(o) if o.already_complete => {
                eprintln!(
                    "profile: reusing {} ({} images, same zoo, data and settings)",
                    out.display(),
                    o.images_resumed
                );
                return Ok(());
            }
            Ok(o) => {
                eprintln!(
                    "profile: {} images profiled ({} resumed, {} failed) into {} in {:.0} s",
                    o.images_new,
                    o.images_resumed,
                    o.images_failed,
                    out.display(),
                    o.accuracy_seconds
                );
                return Ok(());
            }
            Err(triage_compiler::Error::Mismatch(m)) if attempt == 0 && out.exists() => {
                let stale = out.with_extension("profile.stale");
                eprintln!("profile: {} no longer matches the inputs ({}); moving it to {} and profiling again", out.display(), m.lines().next().unwrap_or(""), stale.display());
                std::fs::rename(out, &stale)
                    .with_context(|| format!("renaming {}", out.display()))?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("could not profile into {}", out.display())
}

/// Compiles unless the plan at `out` was compiled from this very profile file, for this
/// device, with these settings.
fn ensure_plan(profile_path: &Path, device: &Device, seed: u64, out: &Path) -> Result<()> {
    let sha = sha256(profile_path)?;
    let opts = CompileOptions {
        seed,
        ..CompileOptions::default()
    };
    if let Ok(plan) = Plan::load(out) {
        let pv = &plan.provenance;
        if pv.profiles == [sha.clone()]
            && &plan.device == device
            && pv.seed == seed
            && pv.folds == opts.folds
        {
            eprintln!(
                "compile: reusing {} (compiled from this profile for {})",
                out.display(),
                device.name
            );
            return Ok(());
        }
    }
    let p = Profile::load(profile_path)?;
    let (plan, report) = compile(&p, vec![sha], device, &opts, &|m| tracing::info!("{m}"))?;
    plan.save(out)?;
    eprintln!(
        "compile: {} operating points from {} images in {:.0} s into {}",
        plan.points.len(),
        report.n_images,
        report.seconds,
        out.display()
    );
    Ok(())
}

pub fn run(args: PipelineArgs, shared: &Path) -> Result<ExitCode> {
    let start = Instant::now();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let profile_path = args.out.join("dev.profile");
    let plan_path = args.out.join("plan.triage");
    let report_dir = args.out.join("report");
    let device = Device::load(&args.device)?;

    let t = Instant::now();
    ensure_profile(&args, shared, &profile_path)?;
    let t_profile = t.elapsed().as_secs_f64();
    let t = Instant::now();
    ensure_plan(&profile_path, &device, args.seed, &plan_path)?;
    let t_compile = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let trace = args
        .trace
        .clone()
        .unwrap_or_else(|| shared.join("network-traces/Verizon-LTE-short.up"));
    let eval = EvalArgs {
        plan: plan_path,
        profile: profile_path,
        train_profile: None,
        cv: Some(args.cv),
        data: None,
        layout: None,
        synsets: None,
        device: None,
        trace: Some(trace),
        radio: "lte".into(),
        rtt_ms: None,
        uplink_mbps: 5.0,
        energy_budget_mj: None,
        usd_budget_per_1000: None,
        latency_ms: None,
        seed: args.seed,
        bootstrap: 1000,
        report: Some(report_dir.clone()),
        json: false,
        live: false,
        zoo: None,
        server: None,
        limit: None,
        points: Vec::new(),
    };
    let ev = super::eval::evaluate_args(&eval, shared)?;
    super::eval::output(&eval, &ev)?;
    let t_eval = t.elapsed().as_secs_f64();
    eprintln!(
        "pipeline done in {:.0} s (profile {:.0} s, compile {:.0} s, eval + report {:.0} s)",
        start.elapsed().as_secs_f64(),
        t_profile,
        t_compile,
        t_eval
    );
    println!("report: {}", report_dir.join("report.md").display());
    Ok(ExitCode::SUCCESS)
}
