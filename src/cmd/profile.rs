//! `triage profile ...`: measure every variant and remote option on a labelled dataset, merge
//! shards, and summarise a profile.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use indicatif::ProgressBar;
use triage_compiler::profile::grid::DEFAULT_GRID;
use triage_compiler::profile::merge::merge;
use triage_compiler::profile::run::{profile, LatencyConfig, ProfileConfig, Progress};
use triage_compiler::profile::summary::Summary;
use triage_compiler::profile::RemoteGrid;
use triage_compiler::Profile;
use triage_zoo::{Shard, Zoo};

use super::zoo::DataArgs;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ProfileCommand {
    #[command(subcommand)]
    sub: Option<ProfileSub>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum ProfileSub {
    /// Merge shard profiles of one dataset into one profile.
    Merge {
        /// Shard profiles, in any order.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Summarise a profile: per-variant accuracy and latency, the oracle, agreement.
    Show {
        file: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Zoo directory with zoo.toml [default: $TRIAGE_SHARED/zoo].
    #[arg(long)]
    zoo: Option<PathBuf>,
    #[command(flatten)]
    data: DataArgs,
    /// Output profile; an unfinished one made with the same settings is resumed.
    #[arg(long, default_value = "out/dev.profile")]
    out: PathBuf,
    /// Remote options: `SERVERS:SIDES:QUALITIES[;...]`, SERVERS `variant` or `a+b` (an
    /// ensemble), SIDES pixels or `full`; `none` for no remote options.
    #[arg(long, default_value = DEFAULT_GRID)]
    remote_grid: String,
    /// Profile only shard I of N (0-based, contiguous blocks); merge the shards afterwards.
    #[arg(long)]
    shard: Option<Shard>,
    /// Worker threads for the accuracy pass [default: every core].
    #[arg(long)]
    threads: Option<usize>,
    /// Minimum time spent timing each variant's warm latency, seconds.
    #[arg(long, default_value_t = 1.5)]
    latency_seconds: f64,
    #[command(flatten)]
    engine: super::EngineArgs,
    /// Print the run's outcome as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) struct Bar {
    bar: Mutex<Option<ProgressBar>>,
    quiet: bool,
}

impl Progress for Bar {
    fn phase(&self, name: &str, total: u64, done: u64) {
        if let Ok(mut slot) = self.bar.lock() {
            if let Some(b) = slot.take() {
                b.finish_and_clear();
            }
            let b = super::progress(total, name, self.quiet);
            b.set_position(done);
            b.reset_eta();
            *slot = Some(b);
        }
    }
    fn step(&self) {
        if let Ok(slot) = self.bar.lock() {
            if let Some(b) = slot.as_ref() {
                b.inc(1);
            }
        }
    }
}

impl Bar {
    pub(crate) fn new(quiet: bool) -> Self {
        Bar {
            bar: Mutex::new(None),
            quiet,
        }
    }

    pub(crate) fn finish(&self) {
        if let Ok(mut slot) = self.bar.lock() {
            if let Some(b) = slot.take() {
                b.finish_and_clear();
            }
        }
    }
}

pub fn run(cmd: ProfileCommand, shared: &Path) -> Result<ExitCode> {
    match cmd.sub {
        Some(ProfileSub::Merge { inputs, out }) => {
            let parts = inputs
                .iter()
                .map(|p| Profile::load(p).with_context(|| format!("reading {}", p.display())))
                .collect::<Result<Vec<_>>>()?;
            let merged = merge(parts)?;
            ensure_parent(&out)?;
            merged.save(&out)?;
            eprintln!(
                "merged {} images into {}",
                merged.images.len(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(ProfileSub::Show { file, json }) => {
            let p = Profile::load(&file)?;
            let s = Summary::of(&p);
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{}", s.render());
            }
            Ok(ExitCode::SUCCESS)
        }
        None => run_profile(cmd.run, shared),
    }
}

fn ensure_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(())
}

fn run_profile(args: RunArgs, shared: &Path) -> Result<ExitCode> {
    let zoo_dir = super::or_shared(args.zoo.clone(), shared, "zoo");
    let zoo = Zoo::open_with(&zoo_dir, args.engine.options()?)
        .with_context(|| format!("opening zoo {}", zoo_dir.display()))?;
    let data = args.data.open(shared)?;
    let remote: RemoteGrid = args.remote_grid.parse()?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let cfg = ProfileConfig {
        remote: remote.0,
        shard: args.shard,
        threads,
        apply_orientation: !args.data.no_exif_orientation,
        latency: LatencyConfig {
            min_seconds: args.latency_seconds,
            ..LatencyConfig::default()
        },
    };
    ensure_parent(&args.out)?;
    let bar = Bar {
        bar: Mutex::new(None),
        quiet: args.json,
    };
    let outcome = profile(&zoo, &data, &args.out, &cfg, &bar);
    bar.finish();
    let outcome = outcome?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else if outcome.already_complete {
        eprintln!(
            "{} is already complete ({} images); nothing to do",
            args.out.display(),
            outcome.images_resumed
        );
    } else {
        let rate = outcome.images_new as f64 / outcome.accuracy_seconds.max(1e-9);
        eprintln!(
            "profiled {} images ({} resumed, {} failed) into {} in {:.1} s: {:.2} images/s on {} threads, {:.0}% of worker time busy",
            outcome.images_new,
            outcome.images_resumed,
            outcome.images_failed,
            args.out.display(),
            outcome.accuracy_seconds,
            rate,
            outcome.threads,
            100.0 * outcome.work_seconds / (outcome.accuracy_seconds * outcome.threads as f64).max(1e-9)
        );
    }
    Ok(ExitCode::SUCCESS)
}
