//! `triage eval`: replay Triage and the baselines on a profile (or run the runtime live on the
//! image files) and report what each achieves.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::ProgressBar;
use triage_compiler::device::Device;
use triage_compiler::plan::Plan;
use triage_compiler::Profile;
use triage_eval::harness::Progress;
use triage_eval::live::{compare, replay_same_images, Live, LiveImage};
use triage_eval::metrics::{compute, MetricsOptions};
use triage_eval::network::Link;
use triage_eval::report::LiveReportInputs;
use triage_eval::{evaluate, EvalInputs, Evaluation, OutcomeSource, ProfileInput, Report};
use triage_runtime::{Runtime, RuntimeConfig};
use triage_zoo::{Dataset, DatasetOptions, DecodeOptions, Layout};

#[derive(Args, Clone)]
pub struct EvalArgs {
    /// Plan written by `triage compile`.
    #[arg(long, default_value = "out/plan.triage")]
    pub plan: PathBuf,
    /// Profile whose images are scored (one the plan was not compiled on, or any with --cv).
    #[arg(long, default_value = "out/dev.profile")]
    pub profile: PathBuf,
    /// Profile the baselines are fitted on when not cross-validating (the plan's own).
    #[arg(long)]
    pub train_profile: Option<PathBuf>,
    /// K-fold cross-validation on --profile: everything that learns is refitted on training
    /// folds (the Triage compile included) and scored on the held-out fold.
    #[arg(long)]
    pub cv: Option<usize>,
    /// The profiled images (any layout), to check them and recompute premodel features the
    /// profile does not hold.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Dataset layout instead of detecting it: labels-csv, caffe, image-folder, kaggle.
    #[arg(long, value_parser = super::zoo::parse_layout)]
    pub layout: Option<Layout>,
    /// synsets.txt mapping WordNet ids to class indices (ImageFolder subsets, Kaggle).
    #[arg(long)]
    pub synsets: Option<PathBuf>,
    /// Device profile [default: the plan's device].
    #[arg(long)]
    pub device: Option<PathBuf>,
    /// Mahimahi uplink trace for offloading (the `.down` beside it is used for replies; a bare
    /// name is looked up in $TRIAGE_SHARED/network-traces).
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Radio of the device profile that prices uploads (lte, wifi, 3g).
    #[arg(long, default_value = "lte")]
    pub radio: String,
    /// Round-trip time, ms [default: the radio's rtt_ms].
    #[arg(long)]
    pub rtt_ms: Option<f64>,
    /// Constant uplink (and downlink) throughput without --trace, Mbit/s.
    #[arg(long, default_value_t = 5.0)]
    pub uplink_mbps: f64,
    /// Energy budget per image for MCDNN and the paced stream, mJ [default: the plan's
    /// default point's expected energy].
    #[arg(long)]
    pub energy_budget_mj: Option<f64>,
    /// Cloud budget for MCDNN, USD per 1,000 images.
    #[arg(long)]
    pub usd_budget_per_1000: Option<f64>,
    /// DeepDecision's latency limit, device ms [default: the plan's default point's expected
    /// latency].
    #[arg(long)]
    pub latency_ms: Option<f64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Bootstrap resamples for the confidence intervals.
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Write report.md, report.json and the figures (SVG and PNG) into this directory.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Print the results as JSON (schema triage.eval/1).
    #[arg(long)]
    pub json: bool,
    /// Run the runtime live on the image files of --data at every operating point instead of
    /// replaying a profile; --profile (if it measured the same files) is replayed alongside
    /// for a live-against-replay table.
    #[arg(long)]
    pub live: bool,
    /// Live: zoo directory [default: $TRIAGE_SHARED/zoo].
    #[arg(long)]
    pub zoo: Option<PathBuf>,
    /// Live: Open Inference Protocol v2 server to offload to (through an emulated link
    /// replaying --trace when given; RTT --rtt-ms, default 40).
    #[arg(long)]
    pub server: Option<String>,
    /// Live: classify only the first N images (in sorted order).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Live: operating points to run, comma-separated names [default: every point].
    #[arg(long, value_delimiter = ',')]
    pub points: Vec<String>,
}

struct Bar {
    bar: std::cell::RefCell<Option<ProgressBar>>,
    quiet: bool,
}

impl Progress for Bar {
    fn start(&self, what: &str, total: u64) {
        *self.bar.borrow_mut() = Some(super::progress(total, what, self.quiet));
    }
    fn step(&self, msg: &str) {
        if let Some(b) = self.bar.borrow().as_ref() {
            b.set_message(msg.to_string());
            b.inc(1);
        }
    }
    fn finish(&self) {
        if let Some(b) = self.bar.borrow_mut().take() {
            b.finish_and_clear();
        }
    }
}

fn load_profile(path: &Path, what: &str) -> Result<(Profile, String)> {
    let p = Profile::load(path).with_context(|| format!("reading {what} {}", path.display()))?;
    let sha = triage_zoo::hash::sha256_file(path)?;
    Ok((p, sha))
}

/// `triage eval --live`: the runtime on the image files, every chosen point, plus the replay
/// of the same points on --profile when it measured those files.
fn evaluate_live(args: &EvalArgs, shared: &Path) -> Result<Evaluation> {
    let zoo_dir = super::or_shared(args.zoo.clone(), shared, "zoo");
    let data_dir = super::or_shared(args.data.clone(), shared, "datasets/imagenet-sample");
    let mut data = Dataset::open(
        &data_dir,
        &DatasetOptions {
            layout: args.layout,
            synsets: args.synsets.clone(),
        },
    )
    .with_context(|| format!("opening dataset {}", data_dir.display()))?;
    if let Some(n) = args.limit {
        data = data.limit(n);
    }
    let images: Vec<LiveImage> = data
        .samples()
        .iter()
        .map(|s| LiveImage {
            path: s.path.clone(),
            rel: s.rel.clone(),
            label: s.label,
        })
        .collect();
    let rtt = args.rtt_ms.unwrap_or(40.0);
    if !(rtt.is_finite() && rtt >= 0.0) {
        anyhow::bail!("--rtt-ms must be a non-negative number of ms");
    }
    let offload = super::Offload::start(
        args.server.as_deref(),
        args.trace.as_deref(),
        rtt.round() as u64,
        shared,
    )?;
    let config = RuntimeConfig {
        server: offload.server.clone(),
        assumed_network: offload.assumed.or(RuntimeConfig::default().assumed_network),
        ..RuntimeConfig::default()
    };
    let rt = Runtime::open(&args.plan, &zoo_dir, config)
        .with_context(|| format!("opening plan {}", args.plan.display()))?;
    let plan = rt.plan().clone();
    let points = args
        .points
        .iter()
        .map(|name| {
            plan.points
                .iter()
                .position(|p| &p.name == name)
                .ok_or_else(|| {
                    let known: Vec<&str> = plan.points.iter().map(|p| p.name.as_str()).collect();
                    anyhow::anyhow!(
                        "the plan has no point '{name}' (it has {})",
                        known.join(", ")
                    )
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let bar = Bar {
        bar: std::cell::RefCell::new(None),
        quiet: args.json,
    };
    let mut live = Live::new(&rt, &images, &bar);
    live.points = points;
    let source = live.describe();
    let runs = live.runs()?;
    let failures = live.failures.clone();
    let kept = live.kept.clone();
    drop(live);
    drop(rt);
    let network = offload.describe.clone();
    offload.stop();

    // The same points replayed on the profile of the same files, when there is one.
    let mut comparison = Vec::new();
    let mut replay_sha = None;
    if args.profile.exists() {
        let (profile, sha) = load_profile(&args.profile, "profile")?;
        let device = match &args.device {
            Some(p) => Device::load(p)?,
            None => plan.device.clone(),
        };
        let link = match &args.trace {
            Some(t) => Link::from_trace(&super::locate_trace(t, shared), &args.radio, rtt)?,
            None => Link::constant(&args.radio, args.uplink_mbps, args.uplink_mbps, rtt),
        };
        let rels: Vec<&str> = kept.iter().map(|&i| images[i].rel.as_str()).collect();
        let offloads = args.server.is_some();
        match replay_same_images(&plan, &profile, &rels, &device, &link, offloads) {
            Ok(replayed) => {
                comparison = compare(&runs, &replayed);
                replay_sha = Some(sha);
            }
            Err(e) => tracing::warn!(
                "no live-against-replay table: {} does not fit these images: {e}",
                args.profile.display()
            ),
        }
    }
    let default_energy = plan
        .points
        .get(plan.default_point)
        .map_or(0.0, |p| p.expected.energy_mj);
    let metrics = compute(
        &runs,
        &MetricsOptions {
            bootstrap: args.bootstrap,
            seed: args.seed,
            energy_budget_mj: default_energy,
        },
    )?;
    let report = Report::live(LiveReportInputs {
        plan: &plan,
        dataset_root: data.root().display().to_string(),
        dataset_identity: data.identity(),
        source,
        network,
        bootstrap: args.bootstrap,
        seed: args.seed,
        energy_budget_mj: default_energy,
        metrics,
        failures,
        live_vs_replay: comparison,
        replay_profile_sha256: replay_sha,
    });
    Ok(Evaluation { report, runs })
}

/// Runs `triage eval` with parsed arguments; returns the evaluation (the pipeline reuses it).
pub fn evaluate_args(args: &EvalArgs, shared: &Path) -> Result<Evaluation> {
    if args.live {
        return evaluate_live(args, shared);
    }
    let plan = Plan::load(&args.plan).with_context(|| {
        format!(
            "reading plan {} (write one with `triage compile`)",
            args.plan.display()
        )
    })?;
    let device = match &args.device {
        Some(p) => Some(Device::load(p)?),
        None => None,
    };
    let radio_rtt = device
        .as_ref()
        .unwrap_or(&plan.device)
        .radio
        .get(&args.radio)
        .map(|r| r.rtt_ms)
        .ok_or_else(|| anyhow::anyhow!("the device profile has no radio '{}'", args.radio))?;
    let rtt = args.rtt_ms.unwrap_or(radio_rtt);
    let link = match &args.trace {
        Some(t) => Link::from_trace(&super::locate_trace(t, shared), &args.radio, rtt)?,
        None => Link::constant(&args.radio, args.uplink_mbps, args.uplink_mbps, rtt),
    };
    let (test, test_sha) = load_profile(&args.profile, "profile")?;
    let train = match &args.train_profile {
        Some(p) if args.cv.is_none() => Some(load_profile(p, "training profile")?),
        _ => None,
    };
    let features = match &args.data {
        Some(dir) => {
            let data = Dataset::open(
                dir,
                &DatasetOptions {
                    layout: args.layout,
                    synsets: args.synsets.clone(),
                },
            )
            .with_context(|| format!("opening dataset {}", dir.display()))?;
            triage_eval::images::check_dataset(&test, &data)?;
            if triage_eval::data::has_current_features(&test) {
                None
            } else {
                let bar =
                    super::progress(data.len() as u64, "recomputing image features", args.json);
                let decode = DecodeOptions {
                    apply_orientation: test.header.apply_orientation,
                    ..DecodeOptions::default()
                };
                let f = triage_eval::images::features_from_images(&test, &data, &decode, &|| {
                    bar.inc(1)
                })?;
                bar.finish_and_clear();
                Some(f)
            }
        }
        None => None,
    };
    let bar = Bar {
        bar: std::cell::RefCell::new(None),
        quiet: args.json,
    };
    let ev = evaluate(
        EvalInputs {
            plan: &plan,
            test: ProfileInput {
                profile: &test,
                sha256: test_sha,
                features,
            },
            train: train.as_ref().map(|(p, sha)| ProfileInput {
                profile: p,
                sha256: sha.clone(),
                features: None,
            }),
            cv: args.cv,
            device,
            link,
            seed: args.seed,
            bootstrap: args.bootstrap,
            energy_budget_mj: args.energy_budget_mj,
            usd_budget_per_1000: args.usd_budget_per_1000,
            latency_limit_ms: args.latency_ms,
        },
        &bar,
    )?;
    Ok(ev)
}

/// Prints the table (or JSON) and writes the report when asked; returns the report files.
pub fn output(args: &EvalArgs, ev: &Evaluation) -> Result<Vec<PathBuf>> {
    let files = match &args.report {
        Some(dir) => ev
            .report
            .write(dir)
            .with_context(|| format!("writing the report into {}", dir.display()))?,
        None => Vec::new(),
    };
    if args.json {
        println!("{}", ev.report.to_json()?);
    } else {
        println!("{} ({} images)", ev.report.source, ev.report.n_images);
        println!(
            "device {} | link: {} | energy budget {:.1} mJ/image | latency limit {:.1} ms",
            ev.report.device,
            ev.report.link,
            ev.report.energy_budget_mj,
            ev.report.latency_limit_ms
        );
        print!("{}", ev.report.table());
        print!("{}", ev.report.live_table());
    }
    if let Some(dir) = &args.report {
        eprintln!("report: {}", dir.join("report.md").display());
    }
    Ok(files)
}

pub fn run(args: EvalArgs, shared: &Path) -> Result<ExitCode> {
    let ev = evaluate_args(&args, shared)?;
    output(&args, &ev)?;
    Ok(ExitCode::SUCCESS)
}
