//! The whole evaluation in one call: line the plan and profiles up, build the contenders,
//! obtain out-of-sample outcomes, and compute metrics, calibration and the paced stream.

use serde::{Deserialize, Serialize};
use tracing::info;
use triage_compiler::calibrate::{calibrate, Reliability, ECE_BINS};
use triage_compiler::device::Device;
use triage_compiler::plan::Plan;
use triage_compiler::profile::Profile;
use triage_premodel::Matrix;

use crate::data::{confidence, EvalData};
use crate::error::{Error, Result};
use crate::harness::{folds, Mode, Progress, Replay};
use crate::metrics::{compute, MetricsOptions, PolicyMetrics};
use crate::network::Link;
use crate::outcome::{OutcomeSource, PolicyRun};
use crate::policies::cascade::{Cbo, EasyHardRouting, IdkCascade};
use crate::policies::deepdecision::DeepDecision;
use crate::policies::fixed::Fixed;
use crate::policies::mcdnn::Mcdnn;
use crate::policies::taylor::TaylorKnn;
use crate::policies::triage::{options_of, TriagePoints};
use crate::policies::{Contender, Context, Settings};
use crate::report::Report;
use crate::stream::paced;

/// A profile and the sha256 of its file.
pub struct ProfileInput<'a> {
    pub profile: &'a Profile,
    pub sha256: String,
    /// Image features recomputed from the images (when the profile's are out of date).
    pub features: Option<Matrix>,
}

/// What to evaluate and how.
pub struct EvalInputs<'a> {
    pub plan: &'a Plan,
    /// The profile scored.
    pub test: ProfileInput<'a>,
    /// The profile the policies are fitted on, for replay without cross-validation.
    pub train: Option<ProfileInput<'a>>,
    /// `Some(k)`: k-fold cross-validation on `test`.
    pub cv: Option<usize>,
    /// Device profile; the plan's when `None`.
    pub device: Option<Device>,
    pub link: Link,
    pub seed: u64,
    pub bootstrap: usize,
    /// Energy budget per image (mJ); the plan's default point's expected energy when `None`.
    pub energy_budget_mj: Option<f64>,
    pub usd_budget_per_1000: Option<f64>,
    /// DeepDecision's latency limit (device ms); the default point's expected latency when
    /// `None`.
    pub latency_limit_ms: Option<f64>,
}

/// Reliability before and after temperature scaling, on the evaluated images.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CalibrationRow {
    pub name: String,
    pub before: Reliability,
    pub after: Reliability,
}

/// Everything an evaluation produced.
pub struct Evaluation {
    pub report: Report,
    pub runs: Vec<PolicyRun>,
}

fn eval_data(p: &ProfileInput, order: Option<&[String]>) -> Result<EvalData> {
    let d = EvalData::from_profile(p.profile, order)?;
    match &p.features {
        Some(f) => d.with_features(f.clone()),
        None => Ok(d),
    }
}

/// Reliability of every local variant: out of fold under cross-validation, with the plan's
/// temperatures otherwise.
fn reliability(data: &EvalData, plan: &Plan, folds: Option<&[Vec<usize>]>) -> Vec<CalibrationRow> {
    data.variants
        .iter()
        .map(|v| {
            let logits: Vec<&[f32]> = v.logits.iter().map(Vec::as_slice).collect();
            match folds {
                Some(f) => {
                    let (cal, _) = calibrate(&v.name, &logits, &data.labels, f);
                    CalibrationRow {
                        name: v.name.clone(),
                        before: cal.before,
                        after: cal.after,
                    }
                }
                None => {
                    let t = plan
                        .variants
                        .iter()
                        .find(|p| p.name == v.name)
                        .map_or(1.0, |p| p.temperature);
                    let pairs = |t: f64| -> Vec<(f32, bool)> {
                        v.logits
                            .iter()
                            .zip(&v.correct)
                            .map(|(z, &ok)| (confidence(z, t) as f32, ok))
                            .collect()
                    };
                    CalibrationRow {
                        name: v.name.clone(),
                        before: Reliability::of(&pairs(1.0), ECE_BINS),
                        after: Reliability::of(&pairs(t), ECE_BINS),
                    }
                }
            }
        })
        .collect()
}

/// Runs the evaluation.
pub fn evaluate(inputs: EvalInputs, progress: &dyn Progress) -> Result<Evaluation> {
    let plan = inputs.plan;
    let device = inputs.device.clone().unwrap_or_else(|| plan.device.clone());
    let in_plan = |sha: &str| plan.provenance.profiles.iter().any(|p| p == sha);
    if inputs.cv.is_none() && in_plan(&inputs.test.sha256) {
        return Err(Error::InvalidArgument(
            "the plan was compiled from this very profile: scoring it there would be in-sample; pass --cv K to evaluate out of fold, or a profile of other images".into(),
        ));
    }
    if plan.provenance.zoo_fingerprint != inputs.test.profile.header.zoo_fingerprint {
        return Err(Error::Mismatch(format!(
            "the profile of {} is of another zoo than the plan (zoo fingerprints {} and {}): profile the plan's zoo",
            inputs.test.profile.header.dataset.root,
            inputs.test.profile.header.zoo_fingerprint,
            plan.provenance.zoo_fingerprint
        )));
    }
    let test = eval_data(&inputs.test, None)?;
    let order = test.variant_names();
    let train = match (&inputs.train, inputs.cv) {
        (_, Some(_)) => None,
        (Some(t), None) => {
            let d = eval_data(t, Some(&order))?;
            d.check_same_zoo(&test)?;
            Some(d)
        }
        (None, None) => {
            return Err(Error::InvalidArgument(
                "replay without --cv fits the baselines on a training profile: pass --train-profile (the profile the plan was compiled from), or --cv K".into(),
            ))
        }
    };
    if let Some(t) = &inputs.train {
        if inputs.cv.is_none() && !in_plan(&t.sha256) {
            tracing::warn!("the training profile is not one the plan was compiled from");
        }
    }
    let default = plan
        .points
        .get(plan.default_point)
        .ok_or_else(|| Error::InvalidArgument("the plan has no default point".into()))?;
    let host_ms = default.expected.mean_ms / plan.device.compute.latency_scale;
    let settings = Settings {
        seed: inputs.seed,
        energy_budget_mj: inputs
            .energy_budget_mj
            .unwrap_or_else(|| device.compute_mj(host_ms)),
        usd_budget_per_image: inputs.usd_budget_per_1000.map(|u| u / 1000.0),
        latency_limit_ms: inputs
            .latency_limit_ms
            .unwrap_or(host_ms * device.compute.latency_scale),
        match_tolerance: 0.003,
        min_prob: 0.5,
    };
    if !(settings.energy_budget_mj.is_finite() && settings.energy_budget_mj > 0.0) {
        return Err(Error::InvalidArgument(format!(
            "energy budget {} mJ per image must be positive",
            settings.energy_budget_mj
        )));
    }
    let test_ctx = Context {
        data: &test,
        device: &device,
        link: &inputs.link,
        settings: &settings,
    };
    test_ctx.validate()?;
    let train_ctx = Context {
        data: train.as_ref().unwrap_or(&test),
        ..test_ctx
    };
    let mut contenders: Vec<Box<dyn Contender + '_>> = vec![
        Box::new(Fixed),
        Box::new(TaylorKnn::new()),
        Box::new(IdkCascade::new(false)),
        Box::new(IdkCascade::new(true)),
        Box::new(IdkCascade::three_stage()),
        Box::new(EasyHardRouting::default()),
        Box::new(Cbo::new(false)),
        Box::new(Cbo::new(true)),
        Box::new(Mcdnn::new()),
        Box::new(DeepDecision::new()),
    ];
    let mode = match inputs.cv {
        Some(k) => {
            contenders.push(Box::new(TriagePoints::refit(
                plan,
                inputs.test.profile,
                options_of(plan),
            )));
            Mode::CrossValidation {
                k,
                seed: inputs.seed,
            }
        }
        None => {
            contenders.push(Box::new(TriagePoints::fixed(plan)));
            Mode::Holdout
        }
    };
    let mut source = Replay {
        train: train_ctx,
        test: test_ctx,
        mode: mode.clone(),
        contenders,
        progress,
    };
    let source_text = source.describe();
    info!("{source_text}");
    let mut runs = source.runs()?;
    drop(source);
    let stream = paced(plan, &device, &runs, settings.energy_budget_mj);
    if let Some(s) = &stream {
        runs.push(s.run.clone());
    }
    let metrics: Vec<PolicyMetrics> = compute(
        &runs,
        &MetricsOptions {
            bootstrap: inputs.bootstrap,
            seed: inputs.seed,
            energy_budget_mj: settings.energy_budget_mj,
        },
    )?;
    let fold_list = match &mode {
        Mode::CrossValidation { k, seed } => Some(folds(test.len(), *k, *seed)?),
        Mode::Holdout => None,
    };
    let calibration = reliability(&test, plan, fold_list.as_deref());
    let report = Report::new(crate::report::ReportInputs {
        plan,
        device: &device,
        link: &inputs.link,
        data: &test,
        train: train.as_ref(),
        test_sha256: &inputs.test.sha256,
        mode: &mode,
        source: source_text,
        settings: &settings,
        bootstrap: inputs.bootstrap,
        metrics,
        calibration,
        stream,
    });
    Ok(Evaluation { report, runs })
}
