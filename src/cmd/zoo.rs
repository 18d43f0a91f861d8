//! `triage zoo ...`: check that the zoo loads and scores what its manifest says.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use triage_zoo::eval::{evaluate, EvalReport};
use triage_zoo::{Dataset, DatasetOptions, DecodeOptions, Layout, Zoo, DEV_SET_IDENTITY};

#[derive(Subcommand)]
pub enum ZooCommand {
    /// Verify hashes, load every variant and score it on a labelled dataset.
    Check(CheckArgs),
}

/// Where the data comes from; shared by every command that reads a dataset.
#[derive(Args, Clone)]
pub struct DataArgs {
    /// Labelled image dataset [default: $TRIAGE_SHARED/datasets/imagenet-sample].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Dataset layout instead of detecting it: labels-csv, caffe, image-folder, kaggle.
    #[arg(long, value_parser = parse_layout)]
    pub layout: Option<Layout>,
    /// synsets.txt mapping WordNet ids to class indices (ImageFolder subsets, Kaggle).
    #[arg(long)]
    pub synsets: Option<PathBuf>,
    /// Use only the first N images (in sorted order).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Ignore EXIF orientation tags.
    #[arg(long)]
    pub no_exif_orientation: bool,
}

pub fn parse_layout(s: &str) -> std::result::Result<Layout, String> {
    Layout::parse(s)
        .ok_or_else(|| format!("unknown layout '{s}' (known: {})", Layout::NAMES.join(", ")))
}

impl DataArgs {
    pub fn open(&self, shared: &Path) -> Result<Dataset> {
        let dir = super::or_shared(self.data.clone(), shared, "datasets/imagenet-sample");
        let opts = DatasetOptions {
            layout: self.layout,
            synsets: self.synsets.clone(),
        };
        let mut data = Dataset::open(&dir, &opts)
            .with_context(|| format!("opening dataset {}", dir.display()))?;
        if let Some(n) = self.limit {
            data = data.limit(n);
        }
        Ok(data)
    }

    pub fn decode_options(&self) -> DecodeOptions {
        DecodeOptions {
            apply_orientation: !self.no_exif_orientation,
            ..Default::default()
        }
    }
}

#[derive(Args)]
pub struct CheckArgs {
    /// Zoo directory with zoo.toml [default: $TRIAGE_SHARED/zoo].
    #[arg(long)]
    zoo: Option<PathBuf>,
    #[command(flatten)]
    data: DataArgs,
    /// Largest allowed |top-1 - reference| in points on the reference set.
    #[arg(long, default_value_t = 1.5)]
    tolerance: f64,
    /// How images are decoded: `shared` (once per image at the scale every variant can use),
    /// `per-variant` (each variant at its own smallest JPEG scale, as a runtime running only
    /// that variant would).
    #[arg(long, default_value = "shared", value_parser = ["shared", "per-variant"])]
    decode: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: ZooCommand, shared: &Path) -> Result<ExitCode> {
    match cmd {
        ZooCommand::Check(args) => check(args, shared),
    }
}

fn check(args: CheckArgs, shared: &Path) -> Result<ExitCode> {
    let zoo_dir = super::or_shared(args.zoo.clone(), shared, "zoo");
    let zoo = Zoo::open(&zoo_dir).with_context(|| format!("opening zoo {}", zoo_dir.display()))?;
    let mut bad_hash = false;
    for (name, r) in zoo.verify() {
        if let Err(e) = r {
            eprintln!("{name}: {e}");
            bad_hash = true;
        }
    }
    if bad_hash {
        anyhow::bail!("zoo {} failed its sha256 check", zoo_dir.display());
    }
    let data = args.data.open(shared)?;
    // A derived copy (e.g. `triage data corrupt` output) keeps the file list and labels but
    // not the pixels: it is not the reference set.
    let is_reference =
        data.identity() == DEV_SET_IDENTITY && !data.root().join("corruption.toml").exists();
    let variants: Vec<_> = zoo.variants().iter().collect();
    let bar = super::progress(data.len() as u64, "scoring", args.json);
    let base = args.data.decode_options();
    let report = match args.decode.as_str() {
        "per-variant" => {
            bar.set_length((data.len() * variants.len()) as u64);
            let mut total = EvalReport::default();
            for v in &variants {
                let r = evaluate(&[*v], &data, base, &|| bar.inc(1))?;
                total.variants.extend(r.variants);
                total.decode_seconds += r.decode_seconds;
                if total.failures.is_empty() {
                    total.failures = r.failures;
                }
            }
            total
        }
        _ => evaluate(&variants, &data, base, &|| bar.inc(1))?,
    };
    bar.finish_and_clear();

    let mut failed = Vec::new();
    for s in &report.variants {
        let spec = zoo.variant(&s.name)?.spec();
        if is_reference && ((s.top1() - spec.top1_ref) * 100.0).abs() > args.tolerance {
            failed.push(s.name.clone());
        }
    }
    if args.json {
        print_json(&zoo, &report, is_reference)?;
    } else {
        print_table(&zoo, &data, &report, is_reference, args.tolerance)?;
    }
    for (path, e) in &report.failures {
        eprintln!("skipped {}: {e}", path.display());
    }
    if !failed.is_empty() {
        eprintln!(
            "top-1 differs from the reference by more than {} points: {}",
            args.tolerance,
            failed.join(", ")
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_json(zoo: &Zoo, report: &EvalReport, is_reference: bool) -> Result<()> {
    let variants: Vec<serde_json::Value> = report
        .variants
        .iter()
        .map(|s| {
            let mut v = serde_json::json!({
                "name": s.name,
                "top1": s.top1(),
                "top5": s.top5(),
                "n": s.n,
                "ms_per_image": s.ms_per_image(),
            });
            if let (true, Ok(var)) = (is_reference, zoo.variant(&s.name)) {
                v["top1_reference"] = var.spec().top1_ref.into();
                v["top5_reference"] = var.spec().top5_ref.into();
            }
            v
        })
        .collect();
    let failures: Vec<serde_json::Value> = report
        .failures
        .iter()
        .map(|(p, e)| serde_json::json!({"path": p, "error": e}))
        .collect();
    let out = serde_json::json!({
        "variants": variants,
        "reference_set": is_reference,
        "failures": failures,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn print_table(
    zoo: &Zoo,
    data: &Dataset,
    report: &EvalReport,
    is_reference: bool,
    tolerance: f64,
) -> Result<()> {
    println!(
        "{} images from {} ({:?}), {} skipped{}",
        data.len(),
        data.root().display(),
        data.layout(),
        report.failures.len(),
        if is_reference {
            "; this is the zoo's reference set: reference top-1/top-5 shown"
        } else {
            ""
        }
    );
    println!(
        "{:<22} {:>7} {:>7} {:>7} {:>7} {:>7} {:>9}",
        "variant", "top-1", "ref", "diff", "top-5", "ref", "ms/image"
    );
    for s in &report.variants {
        let spec = zoo.variant(&s.name)?.spec();
        let (r1, r5, diff) = if is_reference {
            let d = (s.top1() - spec.top1_ref) * 100.0;
            (
                format!("{:.1}", spec.top1_ref * 100.0),
                format!("{:.1}", spec.top5_ref * 100.0),
                format!("{d:+.1}{}", if d.abs() > tolerance { "!" } else { "" }),
            )
        } else {
            ("-".into(), "-".into(), "-".into())
        };
        println!(
            "{:<22} {:>7.1} {:>7} {:>7} {:>7.1} {:>7} {:>9.2}",
            s.name,
            s.top1() * 100.0,
            r1,
            diff,
            s.top5() * 100.0,
            r5,
            s.ms_per_image()
        );
    }
    let n_scored = report.variants.first().map_or(0, |s| s.n);
    println!(
        "decode: {:.2} ms/image in total",
        1e3 * report.decode_seconds / n_scored.max(1) as f64
    );
    Ok(())
}
