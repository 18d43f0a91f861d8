//! Triage's own operating points, replayed exactly as the runtime would execute them.
//!
//! [`replay_point`] is the single place that says what an [`OperatingPoint`] does with one
//! image; everything else (fold handling, matching points across folds) only decides which
//! point and which plan. Under cross-validation the whole compile
//! ([`triage_compiler::compile::compile`]) runs on the training folds; each operating point
//! of the reported plan is then matched, by its rule, to a point of the ladder compiled on
//! those folds, using only that ladder's own (training-fold) estimates.

use triage_compiler::compile::{compile, CompileOptions, Targets};
use triage_compiler::plan::{OperatingPoint, Plan};
use triage_compiler::policy::{pool, Policy, RouterKind, Rule, Tables};
use triage_compiler::profile::Profile;
use triage_premodel::features::FeatureSet;
use triage_premodel::learners::LearnerKind;
use triage_premodel::Premodel;

use super::{best_single_top1, Contender, Context};
use crate::data::{subset_profile, EvalData};
use crate::error::{Error, Result};
use crate::outcome::{Answer, Family, Outcome, PolicyRun};

/// A plan's view of a set of images: calibrated probabilities in the plan's variant order,
/// router predictions and the replay tables.
pub struct PlanReplay {
    /// Plan variant `k` is data column `cols[k]`.
    cols: Vec<usize>,
    /// `row_of[i]`: table row of data image `i`.
    row_of: Vec<Option<usize>>,
    tables: Tables,
    /// `[k][row]`: calibrated probabilities of plan variant `k`.
    probs: Vec<Vec<Vec<f32>>>,
    /// Data remote column of every plan remote option (`None`: the profile lacks it).
    remote_cols: Vec<Option<usize>>,
}

impl PlanReplay {
    /// Prepares replay of `plan` on data images `images`.
    pub fn new(plan: &Plan, data: &EvalData, images: &[usize]) -> Result<Self> {
        let cols = plan_columns(plan, data)?;
        let mut row_of = vec![None; data.len()];
        for (r, &i) in images.iter().enumerate() {
            if let Some(slot) = row_of.get_mut(i) {
                *slot = Some(r);
            }
        }
        let probs: Vec<Vec<Vec<f32>>> = plan
            .variants
            .iter()
            .zip(&cols)
            .map(|(pv, &c)| {
                images
                    .iter()
                    .map(|&i| {
                        triage_zoo::logits::softmax(
                            &data.variants[c].logits[i],
                            pv.temperature as f32,
                        )
                    })
                    .collect()
            })
            .collect();
        let labels: Vec<usize> = images.iter().map(|&i| data.labels[i]).collect();
        let mut tables = Tables::new(
            &probs,
            &labels,
            images.iter().map(|&i| data.decode_ms[i]).collect(),
            images.iter().map(|&i| data.features_ms[i]).collect(),
            // What the variants cost where the images were profiled.
            cols.iter().map(|&c| data.variants[c].stage_ms).collect(),
        );
        let nv = cols.len();
        for m in &plan.premodels {
            data.require_features()?;
            let model = Premodel::from_bytes(&m.bytes)?;
            if model.n_variants() != nv {
                return Err(Error::Mismatch(format!(
                    "router premodel {} predicts {} variants, the plan has {nv}",
                    m.label,
                    model.n_variants()
                )));
            }
            let mut p = vec![0f32; images.len() * nv];
            for (r, &i) in images.iter().enumerate() {
                let row = match model.feature_set() {
                    FeatureSet::Image => data.features.row(i).to_vec(),
                    FeatureSet::ImageAndProbe => data.probe_row(cols[0], i),
                };
                model.predict_proba_into(&row, &mut p[r * nv..(r + 1) * nv])?;
            }
            let slot = match m.router {
                RouterKind::Start => 0,
                RouterKind::AfterProbe => 1,
            };
            tables.router_p[slot] = Some(p);
        }
        let remote_cols = plan
            .remote
            .iter()
            .map(|r| data.remote.iter().position(|d| d.name == r.name))
            .collect();
        Ok(PlanReplay {
            cols,
            row_of,
            tables,
            probs,
            remote_cols,
        })
    }
}

/// Data column of every plan variant, checking the weights are the same.
fn plan_columns(plan: &Plan, data: &EvalData) -> Result<Vec<usize>> {
    if plan.provenance.zoo_fingerprint != data.zoo_fingerprint {
        return Err(Error::Mismatch(format!(
            "the plan was compiled for zoo {} but the profile of {} measured zoo {}: profile the plan's zoo",
            plan.provenance.zoo_fingerprint, data.dataset_root, data.zoo_fingerprint
        )));
    }
    plan.variants
        .iter()
        .map(|pv| {
            let c = data.column(&pv.name).ok_or_else(|| {
                Error::Mismatch(format!(
                    "the plan runs {} but the profile did not measure it",
                    pv.name
                ))
            })?;
            if data.variants[c].sha256 != pv.sha256 {
                return Err(Error::Mismatch(format!(
                    "variant {}: the plan was compiled for sha256 {} but the profile measured {}",
                    pv.name, pv.sha256, data.variants[c].sha256
                )));
            }
            Ok(c)
        })
        .collect()
}

/// What operating point `point` of the replayed plan does with data image `i`: the exact
/// cascade/router replay of the compiler, then the device's time, energy and cost; then, as
/// the runtime does, the point's offloading table for the network the device would have
/// measured when the image arrived (the link's uplink over the preceding second and its RTT):
/// when the cell names an upload option and the local answer's calibrated confidence is
/// below the cell's threshold, the server's answer replaces it.
pub fn replay_point(
    ctx: &Context,
    replay: &PlanReplay,
    point: &OperatingPoint,
    i: usize,
) -> Result<Outcome> {
    let row =
        replay.row_of.get(i).copied().flatten().ok_or_else(|| {
            Error::InvalidArgument(format!("image {i} was not prepared for replay"))
        })?;
    let policy = &point.policy;
    let step = replay.tables.step(policy, row);
    let last = (0..replay.cols.len())
        .rev()
        .find(|k| step.ran & (1 << k) != 0)
        .unwrap_or(0);
    let label = ctx.data.labels[i];
    let (top5, answer) = if policy.ensemble && step.ran.count_ones() > 1 {
        let pooled = pool(
            replay
                .probs
                .iter()
                .enumerate()
                .filter(|(v, _)| step.ran & (1 << v) != 0)
                .map(|(_, p)| p[row].as_slice()),
        );
        let top = triage_zoo::logits::top_k(&pooled, 5);
        let mask = (0..replay.cols.len())
            .filter(|&v| step.ran & (1 << v) != 0)
            .fold(0u32, |m, v| m | (1 << replay.cols[v]));
        (top.contains(&label), Answer::Ensemble(mask))
    } else {
        let c = replay.cols[last];
        (ctx.data.variants[c].top5[i], Answer::Local(c))
    };
    if let Some(table) = &point.offload {
        let up = ctx.link.measured_up_mbps(ctx.arrival_ms(i));
        if let Some(cell) = table.lookup(up, ctx.link.rtt_ms) {
            if step.conf < cell.below {
                if let Some(&Some(r)) = replay.remote_cols.get(cell.option) {
                    return Ok(ctx.remote(i, step.ms, r));
                }
            }
        }
    }
    Ok(ctx.local(i, step.ms, step.correct, top5, answer))
}

/// A policy in words, e.g. `mobilenet_v1_025_128 >=0.90 -> efficientnet_lite2 [ensemble]`.
pub fn describe(plan: &Plan, p: &Policy) -> String {
    let mut s = String::new();
    if let Some(r) = p.router.filter(|r| r.kind == RouterKind::Start) {
        s.push_str(&format!("premodel(p>={:.1}) => ", r.min_prob));
    }
    for (k, &v) in p.chain.iter().enumerate() {
        s.push_str(plan.variants.get(v).map_or("?", |x| x.name.as_str()));
        if let Some(t) = p.thresholds.get(k) {
            s.push_str(&format!(" >={t:.2}"));
            if k == 0 {
                if let Some(r) = p.router.filter(|r| r.kind == RouterKind::AfterProbe) {
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

/// The point of `ladder` that `point`'s rule picks, judged on the ladder's own estimates.
/// A point of the same name wins when the rule is not a latency budget (budgets are named by
/// their bound, which differs between folds).
pub fn matching_point<'p>(
    ladder: &'p Plan,
    point: &OperatingPoint,
    best_single: f64,
) -> Option<&'p OperatingPoint> {
    let pts = &ladder.points;
    if !matches!(point.rule, Rule::LatencyAtMost(_)) {
        if let Some(p) = pts.iter().find(|p| p.name == point.name) {
            return Some(p);
        }
    }
    let scale = ladder.device.compute.latency_scale;
    let most_accurate = || {
        pts.iter().max_by(|a, b| {
            a.expected
                .top1
                .total_cmp(&b.expected.top1)
                .then(b.expected.mean_ms.total_cmp(&a.expected.mean_ms))
        })
    };
    let fastest_reaching = |a: f64| {
        pts.iter()
            .filter(|p| p.expected.top1 >= a - 1e-12)
            .min_by(|x, y| x.expected.mean_ms.total_cmp(&y.expected.mean_ms))
    };
    match point.rule {
        // The ladder's rungs sit at the same relative places in every fold: take the rung
        // whose bound is closest (log scale); a rung dropped as a duplicate leaves its
        // neighbour, which runs the same policy.
        Rule::LatencyAtMost(ms) => pts
            .iter()
            .filter_map(|p| match p.rule {
                Rule::LatencyAtMost(b) if b > 0.0 && ms > 0.0 => Some((p, (b / ms).ln().abs())),
                _ => None,
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(p, _)| p)
            .or_else(|| {
                pts.iter()
                    .filter(|p| p.expected.mean_ms <= ms * scale + 1e-9)
                    .max_by(|a, b| a.expected.top1.total_cmp(&b.expected.top1))
            })
            .or_else(|| pts.first()),
        Rule::AccuracyAtLeast(a) => fastest_reaching(a).or_else(most_accurate),
        Rule::MostAccurate => most_accurate(),
        Rule::MatchBestSingle(m) => fastest_reaching(best_single - m).or_else(most_accurate),
    }
}

/// Compile options that reproduce how `plan` was compiled, as far as the plan records it.
pub fn options_of(plan: &Plan) -> CompileOptions {
    let router_learner = plan
        .premodels
        .first()
        .and_then(|m| m.label.split('/').next().and_then(LearnerKind::from_name));
    let mut targets = Targets::default();
    let scale = plan.device.compute.latency_scale;
    if let Some(t) = plan.points.iter().find(|p| p.name == "target") {
        match t.rule {
            Rule::LatencyAtMost(ms) => targets.latency_ms = Some(ms * scale),
            Rule::AccuracyAtLeast(a) => targets.accuracy = Some(a),
            _ => {}
        }
    }
    CompileOptions {
        folds: plan.provenance.folds.max(2),
        seed: plan.provenance.seed,
        selection_z: plan.provenance.selection_z,
        router_learner,
        targets,
        // Only the held-out replay is reported; the fold plans' own intervals are not used.
        bootstrap: 0,
        ..CompileOptions::default()
    }
}

/// Every operating point of a plan.
pub struct TriagePoints<'a> {
    plan: &'a Plan,
    /// Under cross-validation: the profile to compile training folds from, and how.
    refit: Option<(&'a Profile, CompileOptions)>,
    fold_plan: Option<Plan>,
    best_single: f64,
}

impl<'a> TriagePoints<'a> {
    /// Replays `plan` as it is (the images must be ones it was not compiled on).
    pub fn fixed(plan: &'a Plan) -> Self {
        TriagePoints {
            plan,
            refit: None,
            fold_plan: None,
            best_single: 0.0,
        }
    }

    /// Recompiles on each fold's training images of `profile` (whose measured images are the
    /// evaluated data), with `opts`; `plan`'s points name what is reported.
    pub fn refit(plan: &'a Plan, profile: &'a Profile, opts: CompileOptions) -> Self {
        TriagePoints {
            plan,
            refit: Some((profile, opts)),
            fold_plan: None,
            best_single: 0.0,
        }
    }
}

impl Contender for TriagePoints<'_> {
    fn label(&self) -> String {
        if self.refit.is_some() {
            "Triage (compiling the training folds)".into()
        } else {
            "Triage plan".into()
        }
    }

    fn fit(&mut self, ctx: &Context, train: &[usize]) -> Result<()> {
        let Some((profile, opts)) = &self.refit else {
            return Ok(());
        };
        let rows: Vec<usize> = train
            .iter()
            .filter_map(|&i| ctx.data.rows.get(i).copied())
            .collect();
        let sub = subset_profile(profile, &rows);
        let (plan, _) = compile(&sub, Vec::new(), ctx.device, opts, &|m| {
            tracing::debug!("fold compile: {m}")
        })?;
        self.best_single = best_single_top1(ctx.data, train);
        self.fold_plan = Some(plan);
        Ok(())
    }

    fn run(&self, ctx: &Context, test: &[usize]) -> Result<Vec<PolicyRun>> {
        let used = match (&self.refit, &self.fold_plan) {
            (Some(_), Some(p)) => p,
            (Some(_), None) => {
                return Err(Error::InvalidArgument("Triage run before fit".into()));
            }
            (None, _) => self.plan,
        };
        let replay = PlanReplay::new(used, ctx.data, test)?;
        let mut runs = Vec::new();
        for point in &self.plan.points {
            let chosen = if self.fold_plan.is_some() {
                matching_point(used, point, self.best_single).ok_or_else(|| {
                    Error::InvalidArgument("a fold's plan has no operating point".into())
                })?
            } else {
                point
            };
            let mut run = PolicyRun::new(
                format!("triage {}", point.name),
                Family::Triage,
                if self.fold_plan.is_some() {
                    format!(
                        "rule '{}' on the ladder compiled from the training folds (last fold: {})",
                        point.rule.describe(),
                        describe(used, &chosen.policy)
                    )
                } else {
                    format!(
                        "{} ({})",
                        describe(used, &point.policy),
                        point.rule.describe()
                    )
                },
            );
            for &i in test {
                run.outcomes.push(replay_point(ctx, &replay, chosen, i)?);
            }
            runs.push(run);
        }
        Ok(runs)
    }
}
