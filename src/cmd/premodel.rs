//! `triage premodel cv`: cross-validate every premodel learner on a profile.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use serde::Serialize;
use triage_compiler::training::TrainingSet;
use triage_compiler::Profile;
use triage_premodel::cv::{cross_validate, CvOptions};
use triage_premodel::features::FeatureSet;
use triage_premodel::learners::{LearnerKind, LearnerParams, TargetForm};
use triage_premodel::{Premodel, PremodelConfig};

#[derive(Subcommand)]
pub enum PremodelCommand {
    /// Cross-validate kNN, tree, logistic and MLP premodels on a profile and print, per learner,
    /// how often it picks the oracle's variant, per-variant AUC and Brier score, and the top-1
    /// and latency of running the variant it picks.
    Cv {
        /// Profile written by `triage profile`.
        #[arg(long, default_value = "out/dev.profile")]
        profile: PathBuf,
        /// Folds.
        #[arg(long, default_value_t = 5)]
        k: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// A variant is deemed adequate when its predicted P(correct) reaches this.
        #[arg(long, default_value_t = 0.5)]
        min_prob: f32,
        /// Also drop features correlated above this |r| (Taylor et al.'s reduction).
        #[arg(long)]
        correlation: Option<f32>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn with_target(kind: LearnerKind, target: TargetForm) -> LearnerParams {
    match kind.default_params() {
        LearnerParams::Knn(p) => {
            LearnerParams::Knn(triage_premodel::learners::KnnParams { target, ..p })
        }
        LearnerParams::Tree(p) => {
            LearnerParams::Tree(triage_premodel::learners::TreeParams { target, ..p })
        }
        LearnerParams::Logistic(p) => {
            LearnerParams::Logistic(triage_premodel::learners::LogisticParams { target, ..p })
        }
        LearnerParams::Mlp(p) => {
            LearnerParams::Mlp(triage_premodel::learners::MlpParams { target, ..p })
        }
    }
}

#[derive(Serialize)]
struct Row {
    learner: String,
    target: String,
    features: String,
    selection_accuracy: f64,
    mean_auc: f64,
    mean_brier: f64,
    top1: f64,
    /// Model time of the chosen variant(s), probe included, ms.
    model_ms: f64,
    /// Decode + features + model time, ms.
    policy_ms: f64,
    kept_features: Vec<String>,
    serialized_bytes: usize,
}

pub fn run(cmd: PremodelCommand) -> Result<ExitCode> {
    let PremodelCommand::Cv {
        profile,
        k,
        seed,
        min_prob,
        correlation,
        json,
    } = cmd;
    let p = Profile::load(&profile)?;
    let t = TrainingSet::from_profile(&p)?;
    let measured: Vec<_> = p.measured().collect();
    let n = measured.len().max(1) as f64;
    let decode_ms = measured
        .iter()
        .map(|(_, m)| f64::from(m.decode_us))
        .sum::<f64>()
        / n
        / 1e3;
    let features_ms = measured
        .iter()
        .map(|(_, m)| f64::from(m.features_us))
        .sum::<f64>()
        / n
        / 1e3;
    let opts = CvOptions { k, seed, min_prob };
    let mut rows = Vec::new();
    let mut fixed_oracle = None;
    for set in FeatureSet::ALL {
        let mut configs = Vec::new();
        for kind in LearnerKind::ALL {
            for target in [TargetForm::MultiLabel, TargetForm::CheapestCorrect] {
                configs.push(
                    PremodelConfig::new(set, with_target(kind, target))
                        .with_correlation_threshold(correlation),
                );
            }
        }
        let x = t.features(set);
        let report = cross_validate(&configs, x, &t.correctness, &t.latency_ms, &opts)?;
        for (cfg, lr) in configs.iter().zip(&report.learners) {
            let aucs: Vec<f64> = lr.auc.iter().flatten().copied().collect();
            // A probe premodel has already paid for the cheapest variant; running it again
            // is free, anything else comes on top.
            let probe = f64::from(t.latency_ms[0]);
            let model_ms = if set.uses_probe() {
                lr.chosen
                    .iter()
                    .map(|&c| {
                        probe
                            + if c == 0 {
                                0.0
                            } else {
                                f64::from(t.latency_ms[c])
                            }
                    })
                    .sum::<f64>()
                    / lr.chosen.len().max(1) as f64
            } else {
                lr.outcome.mean_latency_ms
            };
            let full = Premodel::fit(cfg, x, &t.correctness, seed)?;
            let bytes = full.to_bytes()?;
            let back = Premodel::from_bytes(&bytes)?;
            anyhow::ensure!(
                back.predict_proba(x.row(0))? == full.predict_proba(x.row(0))?,
                "{}: serialization round trip changed predictions",
                lr.label
            );
            rows.push(Row {
                learner: cfg.learner.kind().name().to_string(),
                target: format!("{:?}", target_of(&cfg.learner)),
                features: set.name().to_string(),
                selection_accuracy: lr.selection_accuracy,
                mean_auc: aucs.iter().sum::<f64>() / aucs.len().max(1) as f64,
                mean_brier: lr.brier.iter().sum::<f64>() / lr.brier.len().max(1) as f64,
                top1: lr.outcome.top1,
                model_ms,
                policy_ms: decode_ms + features_ms + model_ms,
                kept_features: full
                    .kept_feature_names()
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                serialized_bytes: bytes.len(),
            });
        }
        fixed_oracle.get_or_insert((report.fixed, report.oracle));
    }
    let (fixed, oracle) = fixed_oracle.ok_or_else(|| anyhow::anyhow!("no feature sets"))?;
    if json {
        #[derive(Serialize)]
        struct Out<'a> {
            n_images: usize,
            k: usize,
            seed: u64,
            decode_ms: f64,
            features_ms: f64,
            learners: &'a [Row],
            variants: Vec<(String, f64, f64)>,
            oracle: (f64, f64),
        }
        let out = Out {
            n_images: t.len(),
            k,
            seed,
            decode_ms,
            features_ms,
            learners: &rows,
            variants: t
                .names
                .iter()
                .zip(&fixed)
                .map(|(n, o)| (n.clone(), o.top1, o.mean_latency_ms))
                .collect(),
            oracle: (oracle.top1, oracle.mean_latency_ms),
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}-fold cross-validation on {} images (seed {seed}); decode {decode_ms:.2} ms + features {features_ms:.2} ms per image",
        k,
        t.len()
    );
    println!(
        "{:<10}{:<17}{:<13}{:>9}{:>8}{:>8}{:>8}{:>10}{:>11}",
        "learner",
        "target",
        "features",
        "sel.acc",
        "AUC",
        "Brier",
        "top-1",
        "model ms",
        "policy ms"
    );
    for r in &rows {
        println!(
            "{:<10}{:<17}{:<13}{:>9.3}{:>8.3}{:>8.3}{:>8.1}{:>10.2}{:>11.2}",
            r.learner,
            r.target,
            r.features,
            r.selection_accuracy,
            r.mean_auc,
            r.mean_brier,
            100.0 * r.top1,
            r.model_ms,
            r.policy_ms
        );
    }
    for (name, o) in t.names.iter().zip(&fixed) {
        println!(
            "{:<40}{:>33.1}{:>10.2}{:>11.2}",
            format!("always {name}"),
            100.0 * o.top1,
            o.mean_latency_ms,
            decode_ms + o.mean_latency_ms
        );
    }
    println!(
        "{:<40}{:>33.1}{:>10.2}{:>11.2}",
        "oracle",
        100.0 * oracle.top1,
        oracle.mean_latency_ms,
        decode_ms + oracle.mean_latency_ms
    );
    if let Some(r) = rows
        .iter()
        .find(|r| r.kept_features.len() < triage_premodel::features::IMAGE_FEATURE_NAMES.len())
    {
        println!(
            "features kept by correlation reduction ({}): {}",
            r.features,
            r.kept_features.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn target_of(p: &LearnerParams) -> TargetForm {
    match p {
        LearnerParams::Knn(p) => p.target,
        LearnerParams::Tree(p) => p.target,
        LearnerParams::Logistic(p) => p.target,
        LearnerParams::Mlp(p) => p.target,
    }
}
