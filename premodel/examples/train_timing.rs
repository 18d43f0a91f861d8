//! Wall-clock training time of every learner (default parameters, both target forms) on a
//! 50,000-row training set shaped like real feature rows. Goal: under a minute each.
//!
//! `cargo run --release -p triage-premodel --example train_timing [-- ROWS]`

#[path = "../benches/common/mod.rs"]
mod common;

use std::time::Instant;

use triage_premodel::learners::TargetForm;
use triage_premodel::prelude::*;

fn with_target(p: LearnerParams, t: TargetForm) -> LearnerParams {
    match p {
        LearnerParams::Knn(p) => LearnerParams::Knn(p.with_target(t)),
        LearnerParams::Tree(p) => LearnerParams::Tree(p.with_target(t)),
        LearnerParams::Logistic(p) => LearnerParams::Logistic(p.with_target(t)),
        LearnerParams::Mlp(p) => LearnerParams::Mlp(p.with_target(t)),
    }
}

fn main() -> Result<()> {
    let rows: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50_000);
    let set = FeatureSet::ImageAndProbe;
    let images = common::sample_images(300);
    let base = common::feature_rows(&images, set);
    let (x, y) = common::training_set(&base, rows, 11);
    println!(
        "{rows} rows x {} features, {} variants",
        x.n_cols(),
        y.n_variants()
    );
    for target in [TargetForm::MultiLabel, TargetForm::CheapestCorrect] {
        for config in common::configs(set) {
            let config = PremodelConfig {
                learner: with_target(config.learner, target),
                ..config
            };
            let t = Instant::now();
            let model = Premodel::fit(&config, &x, &y, 1)?;
            let secs = t.elapsed().as_secs_f64();
            let bytes = model.to_bytes()?.len();
            println!(
                "{:<10} {:<16?} fit {secs:>7.2} s   model {:>9} bytes",
                config.learner.kind().name(),
                target,
                bytes
            );
        }
    }
    Ok(())
}
