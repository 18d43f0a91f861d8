//! The compiler proper: profile(s) + device + targets -> plan.
//!
//! 1. Calibrate every variant and remote option by temperature scaling, out of fold.
//! 2. Train premodel routers (image features before any DNN; probe + image features after the
//!    cheapest variant), with nested cross-validation so that every premodel probability used to
//!    *select* a policy and every one used to *score* it comes from a model that never saw the
//!    image.
//! 3. Enumerate the policy space ([`crate::policy`]) and, per outer fold, take the Pareto
//!    front on the training folds, apply each operating-point rule there, and score the chosen
//!    policy on the held-out fold. Those held-out scores are the plan's expected metrics, with
//!    bootstrap confidence intervals.
//! 4. Apply the same rules to the front on all images to pick the policies the plan ships.

use std::time::Instant;

use serde::Serialize;
use tracing::info;
use triage_premodel::cv::{kfold, train_indices};
use triage_premodel::features::FeatureSet;
use triage_premodel::learners::LearnerKind;
use triage_premodel::rng::SplitMix64;
use triage_premodel::{Premodel, PremodelConfig};

use crate::calibrate::calibrate;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::offload::{
    choose, evaluate, representative, Cell, CellExpected, Limits, LocalOutcome, Network,
    OffloadTable, RemoteColumn, RTT_MS_EDGES, UP_MBPS_EDGES,
};
use crate::plan::{
    Expected, OperatingPoint, Plan, PlanPremodel, PlanRemote, PlanVariant, Provenance,
};
use crate::policy::{enumerate, pareto, Policy, RouterKind, Rule, Scored, Step, Tables};
use crate::profile::Profile;
use crate::training::TrainingSet;

/// How far below the most accurate single variant's top-1 the `match-best` point may be
/// (a fraction: 0.3 points).
pub const MATCH_BEST_SLACK: f64 = 0.003;

/// What the user asks of the default operating point.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Targets {
    /// Minimum top-1 (fraction).
    pub accuracy: Option<f64>,
    /// Maximum mean latency per image on the device, ms.
    pub latency_ms: Option<f64>,
    /// Maximum energy per image on the device, mJ.
    pub energy_mj: Option<f64>,
    /// Maximum cloud cost per 1,000 images, USD (local operating points cost nothing).
    pub usd_per_1000: Option<f64>,
}

/// Compiler settings.
#[derive(Debug, Clone)]
pub struct CompileOptions {
    pub folds: usize,
    pub seed: u64,
    /// Longest chain of local variants.
    pub max_chain: usize,
    /// Longest chain that is also tried with premodel routers.
    pub max_router_chain: usize,
    /// Premodel learner of the routers; `None` disables routers.
    pub router_learner: Option<LearnerKind>,
    pub targets: Targets,
    /// Latency-budget rungs of the ladder (besides the target and most-accurate points).
    pub ladder: usize,
    pub bootstrap: usize,
    /// Build offloading tables (when the profile has remote options).
    pub offload: bool,
    /// Radio of the offloading tables; default `lte` when the device has it.
    pub offload_link: Option<String>,
    /// Standard errors of a policy's paired difference from the best single variant that
    /// selection subtracts from its accuracy (see [`crate::policy::pareto`]); 0 selects on
    /// accuracy itself.
    pub selection_z: f64,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            folds: 5,
            seed: 0,
            max_chain: 4,
            max_router_chain: 3,
            router_learner: Some(LearnerKind::Logistic),
            targets: Targets::default(),
            ladder: 8,
            bootstrap: 1000,
            offload: true,
            offload_link: None,
            selection_z: 1.0,
        }
    }
}

/// A row of the compile summary.
#[derive(Debug, Clone, Serialize)]
pub struct Baseline {
    pub name: String,
    pub top1: f64,
    pub mean_ms: f64,
    pub energy_mj: f64,
}

/// See [`CompileReport::perfect_cascade`].
#[derive(Debug, Clone, Serialize)]
pub struct PerfectCascade {
    /// Named `perfect-confidence cascade`.
    pub baseline: Baseline,
    /// Its variants, cheapest first.
    pub chain: Vec<String>,
}

/// What the compiler did, for printing.
#[derive(Debug, Clone, Serialize)]
pub struct CompileReport {
    pub n_images: usize,
    pub n_policies: usize,
    pub seconds: f64,
    /// Every single variant (decode included), on the device.
    pub singles: Vec<Baseline>,
    /// The oracle (cheapest correct variant, decode included).
    pub oracle: Baseline,
    /// The fastest cascade that would match the most accurate single variant (less 0.3
    /// points) if every stage accepted exactly its right answers: what a perfect confidence
    /// signal could reach with cascades, against which the thresholds on calibrated
    /// confidence are measured. `None` when no chain matches.
    pub perfect_cascade: Option<PerfectCascade>,
    /// Cross-validated mean AUC of each router premodel.
    pub router_auc: Vec<(String, f64)>,
}

/// Combines profiles of the same zoo and settings (e.g. shards, or several datasets) into
/// one list of images.
pub fn combine(mut profiles: Vec<Profile>) -> Result<Profile> {
    let mut first = profiles
        .drain(..1)
        .next()
        .ok_or_else(|| Error::InvalidArgument("no profile given".into()))?;
    for p in profiles {
        let h = &first.header;
        if h.zoo_fingerprint != p.header.zoo_fingerprint
            || h.variants != p.header.variants
            || h.remote != p.header.remote
            || h.feature_names != p.header.feature_names
        {
            return Err(Error::Mismatch(
                "profiles of different zoos, variants, remote options or features cannot be compiled together".into(),
            ));
        }
        let offset = first.images.len() as u32;
        first.images.extend(p.images.into_iter().map(|mut i| {
            i.index += offset;
            i
        }));
    }
    Ok(first)
}

/// `rule.pick`, except that an unsatisfiable rule falls back to the fastest policy (budgets)
/// or the most accurate one (accuracy targets), so every rule yields a point.
fn pick_or_fallback<'a>(rule: &Rule, front: &'a [Scored], best_single: f64) -> Option<&'a Scored> {
    rule.pick(front, best_single).or_else(|| match rule {
        Rule::LatencyAtMost(_) => front.first(),
        _ => front.last(),
    })
}

fn router_config(kind: RouterKind, learner: LearnerKind) -> PremodelConfig {
    let set = match kind {
        RouterKind::Start => FeatureSet::Image,
        RouterKind::AfterProbe => FeatureSet::ImageAndProbe,
    };
    PremodelConfig::new(set, learner.default_params())
}

/// Fits on `train`, predicts `test` into `out` (`[i * nv + v]`).
fn fit_predict(
    cfg: &PremodelConfig,
    t: &TrainingSet,
    train: &[usize],
    test: &[usize],
    seed: u64,
    out: &mut [f32],
) -> Result<()> {
    let x = t.features(cfg.feature_set);
    let m = Premodel::fit(
        cfg,
        &x.select_rows(train),
        &t.correctness.select_rows(train),
        seed,
    )?;
    let nv = t.correctness.n_variants();
    for &i in test {
        m.predict_proba_into(x.row(i), &mut out[i * nv..(i + 1) * nv])?;
    }
    Ok(())
}

fn bootstrap_ci(values: &[f64], b: usize, seed: u64) -> (f64, f64) {
    let n = values.len();
    if n == 0 || b == 0 {
        return (0.0, 0.0);
    }
    let mut rng = SplitMix64::new(seed);
    let mut means: Vec<f64> = (0..b)
        .map(|_| {
            (0..n)
                .map(|_| values[(rng.next_u64() % n as u64) as usize])
                .sum::<f64>()
                / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let q = |p: f64| means[((p * (b - 1) as f64).round() as usize).min(b - 1)];
    (q(0.025), q(0.975))
}

/// Out-of-fold expected metrics from per-image steps (host ms).
fn expected(steps: &[Step], device: &Device, b: usize, seed: u64) -> Expected {
    let scale = device.compute.latency_scale;
    let right: Vec<f64> = steps
        .iter()
        .map(|s| f64::from(u8::from(s.correct)))
        .collect();
    let ms: Vec<f64> = steps.iter().map(|s| s.ms * scale).collect();
    let n = steps.len().max(1) as f64;
    let mean_ms = ms.iter().sum::<f64>() / n;
    let stats = crate::profile::LatencyStats::from_samples(&ms);
    Expected {
        top1: right.iter().sum::<f64>() / n,
        top1_ci95: bootstrap_ci(&right, b, seed),
        mean_ms,
        mean_ms_ci95: bootstrap_ci(&ms, b, seed ^ 1),
        p95_ms: stats.p95_ms,
        energy_mj: steps.iter().map(|s| device.compute_mj(s.ms)).sum::<f64>() / n,
        usd_per_1000: 0.0,
        upload_kb: 0.0,
    }
}

/// Compiles `profile` for `device`. `say` receives progress lines.
pub fn compile(
    profile: &Profile,
    profile_hashes: Vec<String>,
    device: &Device,
    opts: &CompileOptions,
    say: &dyn Fn(&str),
) -> Result<(Plan, CompileReport)> {
    let start = Instant::now();
    let t = TrainingSet::from_profile(profile)?;
    let n = t.len();
    let nv = t.order.len();
    if n < opts.folds.max(2) * 2 {
        return Err(Error::InvalidArgument(format!(
            "{n} usable images are too few for {}-fold cross-validation",
            opts.folds
        )));
    }
    if nv > 12 {
        return Err(Error::InvalidArgument(format!(
            "{nv} variants: at most 12 are supported"
        )));
    }
    if !(opts.selection_z.is_finite() && opts.selection_z >= 0.0) {
        return Err(Error::InvalidArgument(format!(
            "selection margin {} must be a non-negative number of standard errors",
            opts.selection_z
        )));
    }
    let folds = kfold(n, opts.folds, opts.seed)?;
    let images: Vec<_> = t.rows.iter().map(|&r| &profile.images[r]).collect();
    let labels: Vec<usize> = images.iter().map(|i| usize::from(i.label)).collect();
    let measured: Vec<_> = images.iter().filter_map(|i| i.measured()).collect();

    // 1. Calibration, out of fold.
    say("calibrating");
    let mut calibration = Vec::new();
    let mut probs: Vec<Vec<Vec<f32>>> = Vec::with_capacity(nv);
    let mut temperatures = Vec::with_capacity(nv);
    for (col, &v) in t.order.iter().enumerate() {
        let logits: Vec<Vec<f32>> = measured.iter().map(|m| m.local[v].logits_f32()).collect();
        let refs: Vec<&[f32]> = logits.iter().map(Vec::as_slice).collect();
        let (cal, row_t) = calibrate(&t.names[col], &refs, &labels, &folds);
        probs.push(
            refs.iter()
                .zip(&row_t)
                .map(|(z, &tt)| triage_zoo::logits::softmax(z, tt as f32))
                .collect(),
        );
        temperatures.push(cal.temperature);
        calibration.push(cal);
    }
    let mut remote = Vec::new();
    for (r, opt) in profile.header.remote.iter().enumerate() {
        let logits: Vec<Vec<f32>> = measured
            .iter()
            .map(|m| m.remote[r].prediction.logits_f32())
            .collect();
        let refs: Vec<&[f32]> = logits.iter().map(Vec::as_slice).collect();
        let (cal, _) = calibrate(&opt.name(), &refs, &labels, &folds);
        let top1 = measured
            .iter()
            .zip(&labels)
            .filter(|(m, &y)| m.remote[r].prediction.top1() == y)
            .count() as f64
            / n as f64;
        let server_ms = opt
            .servers
            .iter()
            .filter_map(|s| profile.variant_index(s))
            .map(|v| profile.costs.variants[v].stage_ms())
            .sum();
        remote.push(PlanRemote {
            name: opt.name(),
            servers: opt.servers.clone(),
            shorter_side: opt.shorter_side,
            quality: opt.quality,
            temperature: cal.temperature,
            mean_upload_bytes: measured
                .iter()
                .map(|m| f64::from(m.remote[r].upload_bytes))
                .sum::<f64>()
                / n as f64,
            top1,
            server_ms,
        });
        calibration.push(cal);
    }

    let stage_ms: Vec<f64> = t
        .order
        .iter()
        .map(|&v| profile.costs.variants[v].stage_ms())
        .collect();
    let base_ms: Vec<f64> = measured
        .iter()
        .map(|m| f64::from(m.decode_us) / 1e3)
        .collect();
    let features_ms: Vec<f64> = measured
        .iter()
        .map(|m| f64::from(m.features_us) / 1e3)
        .collect();
    say("building replay tables");
    let base_tables = Tables::new(&probs, &labels, base_ms, features_ms, stage_ms.clone());

    // 2. Routers, with nested cross-validation.
    let kinds: Vec<RouterKind> = if opts.router_learner.is_some() {
        vec![RouterKind::Start, RouterKind::AfterProbe]
    } else {
        Vec::new()
    };
    let mut oof_tables = base_tables.clone();
    let mut inner_tables: Vec<Tables> = vec![base_tables.clone(); folds.len()];
    let mut router_auc = Vec::new();
    let mut premodels = Vec::new();
    if let Some(learner) = opts.router_learner {
        for (ki, &kind) in kinds.iter().enumerate() {
            let cfg = router_config(kind, learner);
            say(&format!(
                "training router premodel {} ({:?})",
                cfg.label(),
                kind
            ));
            let mut oof = vec![0f32; n * nv];
            for (f, test) in folds.iter().enumerate() {
                let train = train_indices(&folds, &[f]);
                fit_predict(&cfg, &t, &train, test, opts.seed ^ (f as u64 + 1), &mut oof)?;
                let mut inner = vec![0f32; n * nv];
                for (g, inner_test) in folds.iter().enumerate() {
                    if g == f {
                        continue;
                    }
                    let inner_train = train_indices(&folds, &[f, g]);
                    fit_predict(
                        &cfg,
                        &t,
                        &inner_train,
                        inner_test,
                        opts.seed ^ ((f * 31 + g) as u64 + 7),
                        &mut inner,
                    )?;
                }
                inner_tables[f].router_p[ki] = Some(inner);
            }
            let aucs: Vec<f64> = (0..nv)
                .filter_map(|v| {
                    let p: Vec<f32> = (0..n).map(|i| oof[i * nv + v]).collect();
                    let l: Vec<bool> = (0..n).map(|i| t.correctness.get(i, v)).collect();
                    triage_premodel::cv::roc_auc(&p, &l)
                })
                .collect();
            router_auc.push((
                cfg.label(),
                aucs.iter().sum::<f64>() / aucs.len().max(1) as f64,
            ));
            oof_tables.router_p[ki] = Some(oof);
            let full = Premodel::fit(&cfg, t.features(cfg.feature_set), &t.correctness, opts.seed)?;
            premodels.push(PlanPremodel {
                router: kind,
                label: cfg.label(),
                feature_set_version: full.feature_set_version(),
                bytes: full.to_bytes()?,
            });
        }
    }

    // 3. The rules of the ladder. Latency budgets depend only on measured costs.
    let scale = device.compute.latency_scale;
    let mean_decode = oof_tables.base_ms.iter().sum::<f64>() / n as f64;
    let (lo, hi) = (mean_decode + stage_ms[0], mean_decode + stage_ms[nv - 1]);
    let budgets: Vec<f64> = (0..opts.ladder)
        .map(|k| {
            let f = k as f64 / (opts.ladder.max(2) - 1) as f64;
            lo * (hi / lo).powf(f)
        })
        .collect();
    let device_ms: Vec<f64> = budgets.iter().map(|ms| ms * scale).collect();
    let mut rules: Vec<(String, Rule)> = budget_names(&device_ms)
        .into_iter()
        .zip(&budgets)
        .map(|(name, &ms)| (name, Rule::LatencyAtMost(ms)))
        .collect();
    rules.push(("match-best".into(), Rule::MatchBestSingle(MATCH_BEST_SLACK)));
    rules.push(("most-accurate".into(), Rule::MostAccurate));
    let target_rule = {
        let tg = &opts.targets;
        let mut bound = f64::INFINITY;
        if let Some(l) = tg.latency_ms {
            bound = bound.min(l / scale);
        }
        if let Some(e) = tg.energy_mj {
            bound = bound.min(e / (scale * device.compute.active_w));
        }
        if let Some(a) = tg.accuracy {
            Some(Rule::AccuracyAtLeast(a))
        } else if bound.is_finite() {
            Some(Rule::LatencyAtMost(bound))
        } else {
            None
        }
    };
    if let Some(r) = target_rule {
        rules.push(("target".into(), r));
    }

    let policies = enumerate(nv, opts.max_chain, opts.max_router_chain, &kinds);
    say(&format!(
        "searching {} policies on {} folds",
        policies.len(),
        folds.len()
    ));
    let single_best = |tables: &Tables, imgs: &[usize]| -> f64 {
        (0..nv)
            .map(|v| {
                tables
                    .score(
                        &Policy {
                            chain: vec![v],
                            thresholds: vec![],
                            ensemble: false,
                            router: None,
                        },
                        imgs,
                    )
                    .0
            })
            .fold(0.0, f64::max)
    };
    // Per rule, per image: the held-out step.
    let mut oof_steps: Vec<Vec<Option<Step>>> = vec![vec![None; n]; rules.len()];
    let mut fold_picks: Vec<Vec<Option<usize>>> = vec![vec![None; folds.len()]; rules.len()];
    for (f, test) in folds.iter().enumerate() {
        let train = train_indices(&folds, &[f]);
        let front = pareto(&inner_tables[f], &policies, &train, opts.selection_z);
        let best = single_best(&inner_tables[f], &train);
        for (r, (_, rule)) in rules.iter().enumerate() {
            if let Some(s) = pick_or_fallback(rule, &front, best) {
                fold_picks[r][f] = Some(s.index);
                let pol = &policies[s.index];
                for &i in test {
                    oof_steps[r][i] = Some(oof_tables.step(pol, i));
                }
            }
        }
        say(&format!("fold {}/{} done", f + 1, folds.len()));
    }

    // 4. Offloading tables need the best single variant's latency as the default limit.
    let singles: Vec<Baseline> = (0..nv)
        .map(|v| {
            let ms: Vec<f64> = (0..n)
                .map(|i| oof_tables.base_ms[i] + stage_ms[v])
                .collect();
            let mean = ms.iter().sum::<f64>() / n as f64;
            Baseline {
                name: t.names[v].clone(),
                top1: (0..n).filter(|&i| t.correctness.get(i, v)).count() as f64 / n as f64,
                mean_ms: mean * scale,
                energy_mj: device.compute_mj(mean),
            }
        })
        .collect();
    // The most accurate single variant (the cheaper one on a tie).
    let (best_single_top1, best_single_ms) = singles
        .iter()
        .fold(None::<&Baseline>, |best, b| match best {
            Some(x) if x.top1 >= b.top1 => Some(x),
            _ => Some(b),
        })
        .map_or((0.0, 0.0), |b| (b.top1, b.mean_ms));
    let offload_ctx = if opts.offload && !remote.is_empty() {
        let link = match &opts.offload_link {
            Some(l) if device.radio.contains_key(l) => l.clone(),
            Some(l) => {
                return Err(Error::InvalidArgument(format!(
                    "device {} has no radio '{l}'",
                    device.name
                )))
            }
            None if device.radio.contains_key("lte") => "lte".to_string(),
            None => device.radio.keys().next().cloned().unwrap_or_default(),
        };
        let cols = (0..remote.len())
            .map(|r| RemoteColumn {
                ok: measured
                    .iter()
                    .zip(&labels)
                    .map(|(m, &y)| m.remote[r].prediction.top1() == y)
                    .collect(),
                upload_bytes: measured
                    .iter()
                    .map(|m| f64::from(m.remote[r].upload_bytes))
                    .collect(),
                encode_ms: measured
                    .iter()
                    .map(|m| f64::from(m.remote[r].encode_us) / 1e3 * scale)
                    .collect(),
                server_ms: remote[r].server_ms * device.server.latency_scale,
                usd: device.server_usd(remote[r].server_ms),
            })
            .collect();
        say("building offloading tables");
        Some(OffloadContext {
            device,
            link,
            cols,
            best_single_ms,
            targets: opts.targets.clone(),
        })
    } else {
        None
    };

    // 5. The shipped policies: the same rules on all images.
    let all: Vec<usize> = (0..n).collect();
    let front = pareto(&oof_tables, &policies, &all, opts.selection_z);
    let best = single_best(&oof_tables, &all);
    let mut points = Vec::new();
    for (r, (name, rule)) in rules.iter().enumerate() {
        let Some(s) = pick_or_fallback(rule, &front, best) else {
            continue;
        };
        let steps: Vec<Step> = oof_steps[r].iter().flatten().copied().collect();
        if steps.len() != n {
            continue;
        }
        let offload = match &offload_ctx {
            Some(ctx) => ctx.table(
                rule,
                &policies,
                s.index,
                &fold_picks[r],
                &oof_steps[r],
                &oof_tables,
                &inner_tables,
                &folds,
            ),
            None => None,
        };
        points.push(OperatingPoint {
            name: name.clone(),
            rule: *rule,
            offload,
            policy: policies[s.index].clone(),
            expected: expected(
                &steps,
                device,
                opts.bootstrap,
                opts.seed.wrapping_add(r as u64),
            ),
            in_sample_top1: s.top1,
            in_sample_ms: s.ms * scale,
        });
    }
    points.sort_by(|a, b| a.expected.mean_ms.total_cmp(&b.expected.mean_ms));
    // Identical rules can pick identical policies; keep one point per policy.
    points.dedup_by(|a, b| a.policy == b.policy);
    let default_point = points
        .iter()
        .position(|p| p.name == "target")
        .or_else(|| points.iter().position(|p| p.name == "match-best"))
        .unwrap_or(points.len().saturating_sub(1));

    let oracle_ms = (0..n)
        .map(|i| oof_tables.base_ms[i] + stage_ms[t.correctness.oracle_choice(i)])
        .sum::<f64>()
        / n as f64;
    let oracle = Baseline {
        name: "oracle".into(),
        top1: (0..n)
            .filter(|&i| t.correctness.cheapest_correct(i).is_some())
            .count() as f64
            / n as f64,
        mean_ms: oracle_ms * scale,
        energy_mj: device.compute_mj(oracle_ms),
    };

    let perfect_cascade = fastest_perfect_cascade(
        &t.correctness,
        &oof_tables.base_ms,
        &stage_ms,
        best_single_top1 - MATCH_BEST_SLACK,
    )
    .map(|(chain, top1, ms)| PerfectCascade {
        baseline: Baseline {
            name: "perfect-confidence cascade".into(),
            top1,
            mean_ms: ms * scale,
            energy_mj: device.compute_mj(ms),
        },
        chain: chain.iter().map(|&v| t.names[v].clone()).collect(),
    });

    let plan = Plan {
        provenance: Provenance {
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            profiles: profile_hashes,
            dataset_identity: profile.header.dataset.identity.clone(),
            n_images: n,
            folds: folds.len(),
            seed: opts.seed,
            selection_z: opts.selection_z,
            zoo_fingerprint: profile.header.zoo_fingerprint.clone(),
        },
        device: device.clone(),
        variants: t
            .order
            .iter()
            .zip(&temperatures)
            .map(|(&v, &temperature)| {
                let info = &profile.header.variants[v];
                let c = &profile.costs.variants[v];
                PlanVariant {
                    name: info.name.clone(),
                    sha256: info.sha256.clone(),
                    input_size: info.input_size,
                    temperature,
                    mean_ms: c.latency.mean_ms,
                    prep_ms: c.prep_ms,
                }
            })
            .collect(),
        remote,
        premodels,
        points,
        default_point,
        decode_ms: mean_decode,
        decode_min_shorter_side: profile.header.decode_min_shorter_side,
        features_ms: oof_tables.features_ms.iter().sum::<f64>() / n as f64,
        calibration,
    };
    plan.validate().map_err(Error::InvalidArgument)?;
    let report = CompileReport {
        n_images: n,
        n_policies: policies.len(),
        seconds: start.elapsed().as_secs_f64(),
        singles,
        oracle,
        perfect_cascade,
        router_auc,
    };
    info!(
        "compiled {} operating points in {:.1} s",
        plan.points.len(),
        report.seconds
    );
    Ok((plan, report))
}

/// What building the offloading tables of every point needs.
struct OffloadContext<'a> {
    device: &'a Device,
    link: String,
    cols: Vec<RemoteColumn>,
    /// Mean device latency of the most accurate single variant, ms.
    best_single_ms: f64,
    targets: Targets,
}

impl OffloadContext<'_> {
    /// The latency limit of a point: its own latency budget, or for accuracy-driven rules the
    /// latency of the most accurate single variant (offloading must not be slower than
    /// running that model locally), or the user's latency target.
    fn limits(&self, rule: &Rule) -> Limits {
        let scale = self.device.compute.latency_scale;
        let latency_ms = match *rule {
            Rule::LatencyAtMost(ms) => ms * scale,
            _ => self.targets.latency_ms.unwrap_or(self.best_single_ms),
        };
        Limits {
            latency_ms,
            energy_mj: self.targets.energy_mj,
            usd_per_1000: self.targets.usd_per_1000,
        }
    }

    fn outcome(&self, s: &Step) -> LocalOutcome {
        LocalOutcome {
            correct: s.correct,
            conf: s.conf,
            ms: s.ms * self.device.compute.latency_scale,
            energy_mj: self.device.compute_mj(s.ms),
        }
    }

    /// The table of one point. Each cell's choice is made on training folds with that fold's
    /// policy and scored on the held-out fold (the cell's expected metrics), then made again
    /// on all images with the shipped policy (the cell's decision).
    #[allow(clippy::too_many_arguments)]
    fn table(
        &self,
        rule: &Rule,
        policies: &[Policy],
        shipped: usize,
        fold_picks: &[Option<usize>],
        oof_steps: &[Option<Step>],
        oof_tables: &Tables,
        inner_tables: &[Tables],
        folds: &[Vec<usize>],
    ) -> Option<OffloadTable> {
        let n = oof_steps.len();
        let limits = self.limits(rule);
        let held_out: Vec<LocalOutcome> = oof_steps
            .iter()
            .map(|s| s.as_ref().map(|s| self.outcome(s)))
            .collect::<Option<Vec<_>>>()?;
        let all: Vec<usize> = (0..n).collect();
        let shipped_local: Vec<LocalOutcome> = all
            .iter()
            .map(|&i| self.outcome(&oof_tables.step(&policies[shipped], i)))
            .collect();
        let fold_local: Vec<Option<Vec<LocalOutcome>>> = fold_picks
            .iter()
            .enumerate()
            .map(|(f, pick)| {
                pick.map(|p| {
                    all.iter()
                        .map(|&i| self.outcome(&inner_tables[f].step(&policies[p], i)))
                        .collect()
                })
            })
            .collect();
        let (n_up, n_rtt) = (UP_MBPS_EDGES.len() + 1, RTT_MS_EDGES.len() + 1);
        let mut cells = Vec::with_capacity(n_up * n_rtt);
        for u in 0..n_up {
            for r in 0..n_rtt {
                let net = Network {
                    device: self.device,
                    link: &self.link,
                    up_mbps: representative(&UP_MBPS_EDGES, u),
                    rtt_ms: representative(&RTT_MS_EDGES, r),
                };
                let Some((option, below)) = choose(&shipped_local, &self.cols, &net, &limits, &all)
                else {
                    cells.push(None);
                    continue;
                };
                // Out of fold: per fold, the choice made on the other folds, applied to the
                // held-out images (staying local where that choice was to stay local).
                let mut sum = [0f64; 6];
                for (f, test) in folds.iter().enumerate() {
                    let train = train_indices(folds, &[f]);
                    let choice = fold_local[f]
                        .as_ref()
                        .and_then(|l| choose(l, &self.cols, &net, &limits, &train));
                    let (col, thr) = match choice {
                        Some((o, b)) => (&self.cols[o], b),
                        None => (&self.cols[option], 0.0),
                    };
                    let e = evaluate(&held_out, col, thr, &net, test);
                    let w = test.len() as f64;
                    for (acc, x) in sum.iter_mut().zip([
                        e.top1,
                        e.mean_ms,
                        e.energy_mj,
                        e.usd_per_1000,
                        e.upload_kb,
                        e.offload_rate,
                    ]) {
                        *acc += x * w;
                    }
                }
                let nn = n.max(1) as f64;
                cells.push(Some(Cell {
                    option,
                    below,
                    expected: CellExpected {
                        top1: sum[0] / nn,
                        mean_ms: sum[1] / nn,
                        energy_mj: sum[2] / nn,
                        usd_per_1000: sum[3] / nn,
                        upload_kb: sum[4] / nn,
                        offload_rate: sum[5] / nn,
                    },
                }));
            }
        }
        Some(OffloadTable {
            link: self.link.clone(),
            up_mbps_edges: UP_MBPS_EDGES.to_vec(),
            rtt_ms_edges: RTT_MS_EDGES.to_vec(),
            latency_limit_ms: limits.latency_ms,
            cells,
        })
    }
}

/// Names of the latency rungs, `budget-12ms`, with as many decimals as it takes for every
/// name to be different: a narrow ladder (few, fast variants) rounds several rungs to the
/// same whole millisecond, and points are looked up by name.
fn budget_names(device_ms: &[f64]) -> Vec<String> {
    let named = |decimals: usize| -> Vec<String> {
        device_ms
            .iter()
            .map(|ms| format!("budget-{ms:.decimals$}ms"))
            .collect()
    };
    (0..4)
        .map(named)
        .find(|names| {
            let mut sorted = names.clone();
            sorted.sort();
            sorted.windows(2).all(|w| w[0] != w[1])
        })
        .unwrap_or_else(|| {
            (0..device_ms.len())
                .map(|k| format!("budget-{k}"))
                .collect()
        })
}

/// Over every chain of variants in cost order, the fastest whose top-1 reaches `min_top1`
/// when each stage accepts exactly the images it gets right (the last stage answers the rest):
/// `(chain, top-1, mean host ms with decode)`.
fn fastest_perfect_cascade(
    correct: &triage_premodel::Correctness,
    base_ms: &[f64],
    stage_ms: &[f64],
    min_top1: f64,
) -> Option<(Vec<usize>, f64, f64)> {
    let (n, nv) = (correct.n_images(), correct.n_variants());
    if n == 0 || nv == 0 || nv > 16 {
        return None;
    }
    let mut best: Option<(Vec<usize>, f64, f64)> = None;
    for mask in 1u32..(1 << nv) {
        let chain: Vec<usize> = (0..nv).filter(|v| mask & (1 << v) != 0).collect();
        let (mut right, mut ms) = (0usize, 0.0);
        for i in 0..n {
            ms += base_ms.get(i).copied().unwrap_or(0.0);
            for &v in &chain {
                ms += stage_ms[v];
                if correct.get(i, v) {
                    right += 1;
                    break;
                }
            }
        }
        let (top1, ms) = (right as f64 / n as f64, ms / n as f64);
        if top1 >= min_top1 - 1e-12 && best.as_ref().is_none_or(|b| ms < b.2) {
            best = Some((chain, top1, ms));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::{budget_names, fastest_perfect_cascade};
    use triage_premodel::Correctness;

    #[test]
    fn the_perfect_cascade_pays_for_every_stage_until_the_right_one() {
        // Variant 0 (1 ms) is right on images 0 and 1, variant 1 (4 ms) on 1 and 2, variant 2
        // (10 ms) on every image.
        let rows = [
            [true, false, true],
            [true, true, true],
            [false, true, true],
            [false, false, true],
        ];
        let c = Correctness::from_rows(&rows).unwrap();
        let base = [0.5; 4];
        let stage = [1.0, 4.0, 10.0];
        // Everything right: 0 -> 1 -> 2 costs 1 + 1 + 5 + 15 over four images, less than
        // 0 -> 2 (1 + 1 + 11 + 11) and 2 alone (40).
        let (chain, top1, ms) = fastest_perfect_cascade(&c, &base, &stage, 1.0).unwrap();
        assert_eq!(chain, vec![0, 1, 2]);
        assert_eq!(top1, 1.0);
        assert!((ms - (0.5 + 22.0 / 4.0)).abs() < 1e-12, "{ms}");
        // Three right out of four: variant 0 then 1 covers images 0-2 for (1 + 1 + 5 + 5) / 4.
        let (chain, top1, _) = fastest_perfect_cascade(&c, &base, &stage, 0.75).unwrap();
        assert_eq!((chain, top1), (vec![0, 1], 0.75));
        assert!(fastest_perfect_cascade(&c, &base, &stage, 1.01).is_none());
    }

    #[test]
    fn budget_names_take_the_decimals_that_keep_them_apart() {
        assert_eq!(
            budget_names(&[5.0, 12.4, 30.0]),
            ["budget-5ms", "budget-12ms", "budget-30ms"]
        );
        // A narrow ladder: 5.6 and 6.4 both round to 6 ms.
        assert_eq!(
            budget_names(&[3.9, 5.6, 6.4]),
            ["budget-3.9ms", "budget-5.6ms", "budget-6.4ms"]
        );
        // Rungs closer than any shown precision fall back to their index.
        assert_eq!(budget_names(&[1.0, 1.00001]), ["budget-0", "budget-1"]);
    }
}
