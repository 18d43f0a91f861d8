//! `triage bench`: every variant's load time, warm single-image latency and throughput on
//! every requested backend, measured side by side in one run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::ProgressBar;
use triage_zoo::bench::{bench_variant, BenchConfig, BenchProgress, VariantBench};
use triage_zoo::{decode_file, Backend, DecodeOptions, EngineOptions, Zoo};

#[derive(Args)]
pub struct BenchArgs {
    /// Zoo directory with zoo.toml [default: $TRIAGE_SHARED/zoo].
    #[arg(long)]
    zoo: Option<PathBuf>,
    /// Backends to compare: tract, ort, or all (every backend this build has and can load).
    #[arg(long, default_value = "all")]
    backend: String,
    /// Threads of the throughput run (each runs one image at a time) [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Only these variants (comma-separated).
    #[arg(long, value_delimiter = ',')]
    variants: Vec<String>,
    /// Timed single-image runs per variant and backend.
    #[arg(long, default_value_t = 60)]
    iterations: u32,
    /// Untimed runs per variant and backend before timing.
    #[arg(long, default_value_t = 5)]
    warmup: u32,
    /// Time budget of one variant's latency runs, seconds (every backend gets at least 5 runs).
    #[arg(long, default_value_t = 8.0)]
    seconds: f64,
    /// Image to run [default: the first image of $TRIAGE_SHARED/datasets/imagenet-sample].
    #[arg(long)]
    image: Option<PathBuf>,
    /// ONNX Runtime shared library [default: $ORT_DYLIB_PATH, else the onnxruntime Python
    /// package].
    #[arg(long, env = "ORT_DYLIB_PATH")]
    ort_lib: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

struct Bar(ProgressBar);

impl BenchProgress for Bar {
    fn start(&self, variant: &str, steps: u64) {
        self.0.set_message(variant.to_string());
        self.0.set_position(0);
        self.0.set_length(steps);
    }
    fn step(&self) {
        self.0.inc(1);
    }
}

pub fn run(args: BenchArgs, shared: &Path) -> Result<ExitCode> {
    let zoo_dir = super::or_shared(args.zoo.clone(), shared, "zoo");
    let zoo = Zoo::open(&zoo_dir).with_context(|| format!("opening zoo {}", zoo_dir.display()))?;
    let base = EngineOptions {
        ort_library: args.ort_lib.clone(),
        ..EngineOptions::default()
    };
    let backends = select_backends(&args.backend, &base)?;

    let variants: Vec<_> = if args.variants.is_empty() {
        zoo.variants().iter().collect()
    } else {
        args.variants
            .iter()
            .map(|n| zoo.variant(n))
            .collect::<Result<_, _>>()?
    };
    let image = match &args.image {
        Some(p) => p.clone(),
        None => first_image(shared)?,
    };
    let img = decode_file(&image, &DecodeOptions::default())
        .with_context(|| format!("decoding {}", image.display()))?;
    let cfg = BenchConfig {
        warmup: args.warmup,
        iterations: args.iterations.max(1),
        latency_budget: Duration::from_secs_f64(args.seconds.max(0.0)),
        threads: args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        ..BenchConfig::default()
    };

    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        super::progress(0, "bench", false)
    };
    let progress = Bar(bar);
    let mut results = Vec::new();
    for v in variants {
        v.verify()?;
        let input = v.prepare(&img)?;
        results.push(bench_variant(v, &backends, &base, &input, &cfg, &progress)?);
    }
    progress.0.finish_and_clear();

    let versions: Vec<(Backend, String)> = backends
        .iter()
        .map(|b| (*b, b.library_version().unwrap_or_else(|| "?".into())))
        .collect();
    if args.json {
        let out = serde_json::json!({
            "image": image,
            "threads": cfg.threads,
            "iterations": cfg.iterations,
            "backends": versions
                .iter()
                .map(|(b, v)| serde_json::json!({"name": b.name(), "version": v}))
                .collect::<Vec<_>>(),
            "build": build_flavour(),
            "variants": results,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_table(&results, &versions, cfg.threads);
    }
    Ok(ExitCode::SUCCESS)
}

/// The backends to compare. `all` drops a compiled-in backend whose library cannot be
/// loaded, with a note on stderr; naming it explicitly makes that an error.
fn select_backends(spec: &str, base: &EngineOptions) -> Result<Vec<Backend>> {
    let wanted: Vec<Backend> = if spec == "all" {
        for b in Backend::ALL.iter().filter(|b| !b.compiled_in()) {
            eprintln!("backend {b} not compared: this binary was built without the `{b}` feature");
        }
        Backend::ALL
            .iter()
            .copied()
            .filter(|b| b.compiled_in())
            .collect()
    } else {
        spec.split(',')
            .map(|s| {
                Backend::parse(s.trim()).with_context(|| {
                    format!("unknown backend '{s}' (known: tract, tract-nchw, ort, all)")
                })
            })
            .collect::<Result<_>>()?
    };
    let mut usable = Vec::new();
    for b in wanted {
        match check_backend(b, base) {
            Ok(()) => usable.push(b),
            Err(e) if spec == "all" => eprintln!("skipping backend {b}: {e}"),
            Err(e) => return Err(e).with_context(|| format!("backend {b}")),
        }
    }
    if usable.is_empty() {
        anyhow::bail!("no backend to benchmark");
    }
    Ok(usable)
}

fn check_backend(b: Backend, base: &EngineOptions) -> Result<()> {
    match b {
        Backend::Tract | Backend::TractNchw => Ok(()),
        #[cfg(feature = "ort")]
        Backend::Ort => triage_zoo::engine::ort::load_library(base)
            .map(|(path, version)| {
                tracing::info!(library = %path.display(), version, "ONNX Runtime");
            })
            .map_err(Into::into),
        #[cfg(not(feature = "ort"))]
        Backend::Ort => {
            let _ = base;
            anyhow::bail!("this binary was built without the `ort` feature")
        }
    }
}

fn first_image(shared: &Path) -> Result<PathBuf> {
    let dir = shared.join("datasets/imagenet-sample");
    let data = triage_zoo::Dataset::open(&dir, &Default::default())
        .with_context(|| format!("opening dataset {} for a sample image", dir.display()))?;
    data.samples()
        .first()
        .map(|s| s.path.clone())
        .with_context(|| format!("{}: no images", dir.display()))
}

/// How this binary was compiled, since latency depends on it.
fn build_flavour() -> &'static str {
    if cfg!(target_feature = "avx512f") {
        "target-cpu with AVX-512"
    } else if cfg!(target_feature = "avx2") {
        "target-cpu with AVX2"
    } else {
        "portable"
    }
}

fn print_table(results: &[VariantBench], versions: &[(Backend, String)], threads: usize) {
    let names: Vec<String> = versions.iter().map(|(b, v)| format!("{b} {v}")).collect();
    println!(
        "backends: {}; build: {}; throughput with {threads} thread(s)",
        names.join(", "),
        build_flavour()
    );
    println!(
        "{:<22} {:<6} {:>8} {:>9} {:>9} {:>9} {:>8} {:>10}",
        "variant", "engine", "load ms", "median ms", "p95 ms", "img/s", "x best", "max|diff|"
    );
    for v in results {
        for r in &v.results {
            println!(
                "{:<22} {:<6} {:>8.1} {:>9.3} {:>9.3} {:>9.1} {:>8.2} {:>10.1e}",
                v.name,
                r.backend,
                r.load_ms,
                r.latency.median_ms,
                r.latency.p95_ms,
                r.images_per_second,
                r.ratio_to_fastest,
                r.max_abs_diff
            );
        }
    }
}
