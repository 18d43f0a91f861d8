//! Embed the Triage runtime and classify one image with a compiled plan.
//!
//! `cargo run --release --example classify -- [PLAN] [IMAGE]`
//! (defaults: `out/plan.triage`, written by `triage profile && triage compile`, and a shared
//! DEV image; the zoo is `$TRIAGE_SHARED/zoo`, `TRIAGE_SHARED` defaulting to `../shared`).

use std::path::PathBuf;

use anyhow::Context;
use triage_runtime::{Request, Runtime, RuntimeConfig};

fn main() -> anyhow::Result<()> {
    let shared = std::env::var_os("TRIAGE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared"));
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let plan = args.next().unwrap_or_else(|| "out/plan.triage".into());
    let image = args
        .next()
        .unwrap_or_else(|| shared.join("datasets/imagenet-sample/images/n02129604_tiger.JPEG"));

    // Opening verifies the plan's checksum and every variant's sha256 against the zoo.
    let runtime = Runtime::open(&plan, &shared.join("zoo"), RuntimeConfig::default())
        .with_context(|| {
            format!(
                "opening {} (write one with `triage profile && triage compile`)",
                plan.display()
            )
        })?;
    let outcome = runtime.classify_file(&image, &Request::default())?;

    println!(
        "{}: {} (class {})",
        image.display(),
        outcome.label,
        outcome.class
    );
    for (class, p) in &outcome.top5 {
        println!("  {p:.3}  {class}");
    }
    println!(
        "operating point {}; ran {}; {:.1} ms; {:.1} mJ modelled on {}",
        outcome.point,
        outcome.variants_run.join(" -> "),
        outcome.latency_ms,
        outcome.energy_mj,
        runtime.plan().device.name
    );
    Ok(())
}
