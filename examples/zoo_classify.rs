//! Classify one image with every variant of the zoo: decode once, prepare per variant, run.
//!
//! `cargo run --release --example zoo_classify -- [IMAGE]` (default: a shared DEV image;
//! the zoo is `$TRIAGE_SHARED/zoo`, `TRIAGE_SHARED` defaulting to `../shared`).

use std::path::PathBuf;
use std::time::Instant;

use triage_zoo::{decode_file, Zoo};

fn main() -> anyhow::Result<()> {
    let shared = std::env::var_os("TRIAGE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared"));
    let image = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| shared.join("datasets/imagenet-sample/images/n02129604_tiger.JPEG"));
    let zoo = Zoo::open(shared.join("zoo"))?;
    // One decode serves every variant: JPEGs decode at the largest DCT reduction they all allow.
    let opts = Zoo::decode_options_for(zoo.variants(), Default::default());
    let t = Instant::now();
    let img = decode_file(&image, &opts)?;
    println!(
        "{}: {}x{} decoded at 1/{} in {:.2} ms",
        image.display(),
        img.width,
        img.height,
        img.scale_denominator(),
        t.elapsed().as_secs_f64() * 1e3
    );
    for v in zoo.variants() {
        v.load()?;
        let t = Instant::now();
        let logits = v.classify(&img)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let probs = logits.softmax(1.0);
        let top = logits.argmax();
        println!(
            "{:<22} {:>7.2} ms  {:>5.1}%  {}",
            v.name(),
            ms,
            probs[top] * 100.0,
            zoo.classes().name(top)
        );
    }
    Ok(())
}
