//! `triage compile` (profiles -> plan) and `triage plan show`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use triage_compiler::compile::{combine, compile, CompileOptions, CompileReport, Targets};
use triage_compiler::device::Device;
use triage_compiler::plan::Plan;
use triage_compiler::Profile;
use triage_premodel::learners::LearnerKind;

#[derive(Args)]
pub struct CompileArgs {
    /// Profiles written by `triage profile` (several are compiled as one image set).
    #[arg(long, default_value = "out/dev.profile", num_args = 1..)]
    profile: Vec<PathBuf>,
    /// Device profile (TOML).
    #[arg(long, default_value = "devices/this-host.toml")]
    device: PathBuf,
    /// Default operating point: the fastest reaching this top-1 (fraction, e.g. 0.9).
    #[arg(long, conflicts_with = "latency_ms")]
    target_accuracy: Option<f64>,
    /// Default operating point: the most accurate within this mean latency (device ms).
    #[arg(long)]
    latency_ms: Option<f64>,
    /// Default operating point: at most this energy per image (mJ).
    #[arg(long)]
    energy_mj: Option<f64>,
    /// Default operating point: at most this cloud cost per 1,000 images (USD).
    #[arg(long)]
    usd_per_1000: Option<f64>,
    /// Cross-validation folds.
    #[arg(long, default_value_t = 5)]
    folds: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Premodel learner of the routers (knn, tree, logistic, mlp) or `none`.
    #[arg(long, default_value = "logistic")]
    router: String,
    /// Longest cascade searched.
    #[arg(long, default_value_t = 4)]
    max_chain: usize,
    /// Radio whose power model the offloading tables use (default: lte).
    #[arg(long)]
    link: Option<String>,
    /// Local-only plan: no offloading tables even when the profile has remote options.
    #[arg(long)]
    no_offload: bool,
    /// Selection margin: points are chosen on accuracy less this many standard errors of
    /// their paired difference from the best single variant (0: on accuracy itself).
    #[arg(long, default_value_t = 1.0)]
    selection_z: f64,
    /// Output plan.
    #[arg(long, default_value = "out/plan.triage")]
    out: PathBuf,
    /// Print the plan summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum PlanCommand {
    /// Print a plan: variants, calibration, premodels and operating points.
    Show {
        plan: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

fn sha256_file(path: &Path) -> Result<String> {
    Ok(triage_zoo::hash::sha256_file(path)?)
}

pub fn run_compile(args: CompileArgs) -> Result<ExitCode> {
    let device = Device::load(&args.device)?;
    let mut profiles = Vec::new();
    let mut hashes = Vec::new();
    for p in &args.profile {
        profiles
            .push(Profile::load(p).with_context(|| format!("reading profile {}", p.display()))?);
        hashes.push(sha256_file(p)?);
    }
    let profile = combine(profiles)?;
    let router_learner = match args.router.as_str() {
        "none" => None,
        name => Some(LearnerKind::from_name(name).ok_or_else(|| {
            anyhow::anyhow!("unknown router learner '{name}' (knn, tree, logistic, mlp, none)")
        })?),
    };
    let opts = CompileOptions {
        folds: args.folds,
        seed: args.seed,
        max_chain: args.max_chain,
        router_learner,
        targets: Targets {
            accuracy: args.target_accuracy,
            latency_ms: args.latency_ms,
            energy_mj: args.energy_mj,
            usd_per_1000: args.usd_per_1000,
        },
        offload: !args.no_offload,
        offload_link: args.link.clone(),
        selection_z: args.selection_z,
        ..CompileOptions::default()
    };
    let quiet = args.json;
    let (plan, report) = compile(&profile, hashes, &device, &opts, &|m| {
        if !quiet {
            eprintln!("{m}");
        }
    })?;
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    plan.save(&args.out)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "plan": args.out,
                "report": report,
                "points": plan.points.iter().map(|p| serde_json::json!({
                    "name": p.name, "rule": p.rule.describe(), "policy": describe(&plan, &p.policy),
                    "expected": p.expected,
                })).collect::<Vec<_>>(),
                "default_point": plan.default_point,
            }))?
        );
    } else {
        print!("{}", render(&plan, Some(&report)));
        eprintln!("wrote {}", args.out.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_plan(cmd: PlanCommand) -> Result<ExitCode> {
    let PlanCommand::Show { plan, json } = cmd;
    let p = Plan::load(&plan)?;
    if json {
        let mut v = serde_json::to_value(&p)?;
        // Premodel bytes are opaque; print their size instead.
        if let Some(ms) = v.get_mut("premodels").and_then(|m| m.as_array_mut()) {
            for (m, pm) in ms.iter_mut().zip(&p.premodels) {
                m["bytes"] = serde_json::json!(pm.bytes.len());
            }
        }
        v["content_sha256"] = serde_json::json!(p.content_sha256()?);
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "plan {} (content sha256 {})",
            plan.display(),
            p.content_sha256()?
        );
        print!("{}", render(&p, None));
    }
    Ok(ExitCode::SUCCESS)
}

/// A policy in words, e.g. `mobilenet_v1_025_128 >=0.90 -> efficientnet_lite2 [ensemble]`.
pub fn describe(plan: &Plan, p: &triage_compiler::policy::Policy) -> String {
    let mut s = String::new();
    if let Some(r) = p
        .router
        .filter(|r| r.kind == triage_compiler::policy::RouterKind::Start)
    {
        s.push_str(&format!("premodel(p>={:.1}) => ", r.min_prob));
    }
    for (k, &v) in p.chain.iter().enumerate() {
        let name = plan.variants.get(v).map_or("?", |x| x.name.as_str());
        s.push_str(name);
        if let Some(t) = p.thresholds.get(k) {
            s.push_str(&format!(" >={t:.2}"));
            if k == 0 {
                if let Some(r) = p
                    .router
                    .filter(|r| r.kind == triage_compiler::policy::RouterKind::AfterProbe)
                {
                    s.push_str(&format!(" else premodel(p>={:.1})", r.min_prob));
                }
            }
            s.push_str(" -> ");
        }
    }
    if p.ensemble {
        s.push_str(" [ensemble]");
    }
    s
}

fn render(plan: &Plan, report: Option<&CompileReport>) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let pv = &plan.provenance;
    let _ = writeln!(
        s,
        "device {} | {} images, {}-fold CV, seed {} | created {}",
        plan.device.name, pv.n_images, pv.folds, pv.seed, pv.created
    );
    let _ = writeln!(
        s,
        "{:<24}{:>8}{:>10}{:>10}{:>10}{:>10}",
        "variant", "T", "ms", "ECE", "ECE cal", "conf AUC"
    );
    for (v, c) in plan.variants.iter().zip(&plan.calibration) {
        let _ = writeln!(
            s,
            "{:<24}{:>8.2}{:>10.2}{:>10.3}{:>10.3}{:>10}",
            v.name,
            v.temperature,
            v.mean_ms + v.prep_ms,
            c.before.ece,
            c.after.ece,
            c.confidence_auc
                .map_or_else(|| "-".to_string(), |a| format!("{a:.3}"))
        );
    }
    for (r, c) in plan
        .remote
        .iter()
        .zip(plan.calibration.iter().skip(plan.variants.len()))
    {
        let _ = writeln!(
            s,
            "{:<32}{:>8.2} T, top-1 {:.1}%, {:.1} kB, ECE {:.3} -> {:.3}",
            r.name,
            r.temperature,
            100.0 * r.top1,
            r.mean_upload_bytes / 1e3,
            c.before.ece,
            c.after.ece
        );
    }
    for m in &plan.premodels {
        let _ = writeln!(
            s,
            "router premodel {:?}: {} ({} bytes)",
            m.router,
            m.label,
            m.bytes.len()
        );
    }
    if let Some(r) = report {
        let _ = writeln!(s, "\nbaselines (decode included, on {}):", plan.device.name);
        let perfect = r.perfect_cascade.as_ref().map(|p| &p.baseline);
        for b in r
            .singles
            .iter()
            .chain(std::iter::once(&r.oracle))
            .chain(perfect)
        {
            let _ = writeln!(
                s,
                "  {:<28} top-1 {:>5.1}%  {:>7.2} ms  {:>8.1} mJ",
                b.name,
                100.0 * b.top1,
                b.mean_ms,
                b.energy_mj
            );
        }
        if let Some(p) = &r.perfect_cascade {
            let _ = writeln!(
                s,
                "    {}\n    (the fastest chain within 0.3 points of the best single variant if every stage\n    accepted exactly the images it gets right)",
                p.chain.join(" -> ")
            );
        }
        for (label, auc) in &r.router_auc {
            let _ = writeln!(s, "  router {label}: mean out-of-fold AUC {auc:.3}");
        }
        let _ = writeln!(
            s,
            "searched {} policies in {:.1} s",
            r.n_policies, r.seconds
        );
    }
    let best_single = report.and_then(|r| {
        r.singles
            .iter()
            .max_by(|a, b| a.top1.total_cmp(&b.top1))
            .map(|b| b.mean_ms)
    });
    let _ = writeln!(
        s,
        "\noperating points (expected values out of fold; * = default):\n  {:<18}{:>8}{:>17}{:>10}{:>9}{:>10}{:>9}  policy",
        "name", "top-1", "95% CI", "ms", "p95 ms", "mJ", "speedup"
    );
    for (k, p) in plan.points.iter().enumerate() {
        let e = &p.expected;
        let speed = best_single.map_or("-".to_string(), |b| format!("{:.2}x", b / e.mean_ms));
        let _ = writeln!(
            s,
            "{} {:<18}{:>7.2}%{:>8.1}-{:>5.1}%{:>11.2}{:>9.2}{:>10.1}{:>9}  {}",
            if k == plan.default_point { "*" } else { " " },
            p.name,
            100.0 * e.top1,
            100.0 * e.top1_ci95.0,
            100.0 * e.top1_ci95.1,
            e.mean_ms,
            e.p95_ms,
            e.energy_mj,
            speed,
            describe(plan, &p.policy)
        );
    }
    render_offload(plan, &mut s);
    s
}

/// The offloading table of every point that offloads somewhere: per uplink bucket (rows) and
/// RTT bucket (columns), the remote option index and the confidence below which it is used.
fn render_offload(plan: &Plan, s: &mut String) {
    use std::fmt::Write;
    for p in &plan.points {
        let Some(t) = p.offload.as_ref().filter(|t| t.ever_offloads()) else {
            continue;
        };
        let _ = writeln!(
            s,
            "\noffloading of {} over {} (mean latency limit {:.1} ms); cell = option<threshold:",
            p.name, t.link, t.latency_limit_ms
        );
        let edges = |e: &[f64], unit: &str| -> Vec<String> {
            (0..=e.len())
                .map(|b| match b {
                    0 => format!("<{}{unit}", e[0]),
                    b if b == e.len() => format!(">={}{unit}", e[b - 1]),
                    b => format!("{}-{}{unit}", e[b - 1], e[b]),
                })
                .collect()
        };
        let _ = write!(s, "  {:<14}", "up \\ rtt");
        for h in edges(&t.rtt_ms_edges, "ms") {
            let _ = write!(s, "{h:>11}");
        }
        let _ = writeln!(s);
        for (u, label) in edges(&t.up_mbps_edges, "Mb/s").iter().enumerate() {
            let _ = write!(s, "  {label:<14}");
            for r in 0..t.n_rtt() {
                let cell = t.cells.get(u * t.n_rtt() + r).copied().flatten();
                let text = cell.map_or("local".to_string(), |c| {
                    format!("{}<{:.2}", c.option, c.below)
                });
                let _ = write!(s, "{text:>11}");
            }
            let _ = writeln!(s);
        }
        let best = t
            .cells
            .iter()
            .flatten()
            .max_by(|a, b| a.expected.top1.total_cmp(&b.expected.top1));
        if let Some(c) = best {
            let e = &c.expected;
            let _ = writeln!(
                s,
                "  best cell (out of fold): top-1 {:.2}%, {:.1} ms, {:.1} mJ, ${:.4}/1000, {:.1} kB up, {:.0}% offloaded via {}",
                100.0 * e.top1,
                e.mean_ms,
                e.energy_mj,
                e.usd_per_1000,
                e.upload_kb,
                100.0 * e.offload_rate,
                plan.remote.get(c.option).map_or("?", |r| r.name.as_str())
            );
        }
    }
}
