//! `triage data ...`: derive new labelled datasets from one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use triage_zoo::corrupt::{corrupt_dataset, CorruptOptions, CorruptReport, Kind, Severity};
use triage_zoo::Dataset;

use super::zoo::DataArgs;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Write ImageNet-C-style corrupted copies of a dataset (Hendrycks & Dietterich, ICLR
    /// 2019): one labels.csv dataset per kind and severity, in OUT/<kind>-<severity>/.
    Corrupt(CorruptArgs),
}

#[derive(Args)]
pub struct CorruptArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Directory to write OUT/<kind>-<severity>/{labels.csv,images/,corruption.toml} into.
    #[arg(long)]
    out: PathBuf,
    /// Comma-separated corruptions, or `all`: gaussian_noise, defocus_blur, motion_blur, jpeg,
    /// brightness, contrast, pixelate.
    #[arg(long, alias = "kind", default_value = "all")]
    kinds: String,
    /// Severity 1-5: one value (3), an inclusive range (1..5) or a list (1,3,5).
    #[arg(long, alias = "severities", default_value = "1..5")]
    severity: String,
    /// Seed of the per-image random draws (noise, motion-blur angle); the same seed gives
    /// byte-identical files.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print a JSON summary instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: DataCommand, shared: &Path) -> Result<ExitCode> {
    match cmd {
        DataCommand::Corrupt(args) => corrupt(args, shared),
    }
}

fn corrupt(args: CorruptArgs, shared: &Path) -> Result<ExitCode> {
    let kinds = Kind::parse_list(&args.kinds)?;
    let severities = Severity::parse_set(&args.severity)?;
    let data = args.data.open(shared)?;
    let opts = CorruptOptions {
        kinds,
        severities,
        seed: args.seed,
        decode: args.data.decode_options(),
    };
    let bar = super::progress(data.len() as u64, "corrupting", args.json);
    let report = corrupt_dataset(&data, &args.out, &opts, &|| bar.inc(1))
        .with_context(|| format!("writing corrupted copies into {}", args.out.display()))?;
    bar.finish_and_clear();

    if args.json {
        print_json(&data, &args.out, &opts, &report)?;
    } else {
        print_table(&data, &args.out, &report);
    }
    for (path, e) in &report.failures {
        eprintln!("skipped {}: {e}", path.display());
    }
    if report.images == 0 && !data.is_empty() {
        anyhow::bail!(
            "none of the {} images of {} could be read",
            data.len(),
            data.root().display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_json(
    data: &Dataset,
    out: &Path,
    opts: &CorruptOptions,
    report: &CorruptReport,
) -> Result<()> {
    let failures: Vec<serde_json::Value> = report
        .failures
        .iter()
        .map(|(p, e)| serde_json::json!({"path": p, "error": e}))
        .collect();
    let v = serde_json::json!({
        "source": data.root(),
        "out": out,
        "seed": opts.seed,
        "kinds": opts.kinds,
        "severities": opts.severities,
        "images": report.images,
        "datasets": report.sets,
        "failures": failures,
        "seconds": report.seconds,
    });
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

fn print_table(data: &Dataset, out: &Path, report: &CorruptReport) {
    println!(
        "{} of {} images from {} ({:?}) written to {} datasets in {} ({} skipped, {:.1} s)",
        report.images,
        data.len(),
        data.root().display(),
        data.layout(),
        report.sets.len(),
        out.display(),
        report.failures.len(),
        report.seconds
    );
    println!(
        "{:<16} {:>8} {:>7} {:>9}  directory",
        "kind", "severity", "images", "MB"
    );
    for s in &report.sets {
        println!(
            "{:<16} {:>8} {:>7} {:>9.1}  {}",
            s.kind.name(),
            s.severity,
            s.images,
            s.bytes as f64 / 1e6,
            s.dir.display()
        );
    }
}
