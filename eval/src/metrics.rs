//! Per-policy metrics with seeded bootstrap confidence intervals, budget adherence over the
//! sequence, and a paired bootstrap of each policy against the most accurate single variant.

use serde::{Deserialize, Serialize};
use triage_compiler::profile::LatencyStats;
use triage_premodel::rng::SplitMix64;

use crate::error::{Error, Result};
use crate::outcome::{Family, Outcome, PolicyRun};

/// How metrics are computed.
#[derive(Debug, Clone)]
pub struct MetricsOptions {
    /// Bootstrap resamples.
    pub bootstrap: usize,
    pub seed: u64,
    /// Energy budget per image (mJ) against which adherence is reported.
    pub energy_budget_mj: f64,
}

/// How a policy spent against the energy budget over the sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetAdherence {
    pub energy_budget_mj_per_image: f64,
    /// Total energy / (budget x images): at most 1 is within budget.
    pub used_fraction: f64,
    /// Largest cumulative spend relative to the pro-rata budget over any prefix of at least
    /// a tenth of the sequence (1 = exactly on pace).
    pub worst_prefix_fraction: f64,
    pub within_budget: bool,
}

/// A policy against the reference (the most accurate single variant), on the same images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Paired {
    pub reference: String,
    /// top-1 of the policy minus top-1 of the reference (fraction).
    pub delta_top1: f64,
    pub delta_top1_ci95: [f64; 2],
    /// Mean latency of the reference / of the policy.
    pub speedup: f64,
    /// Mean energy of the policy / of the reference.
    pub energy_ratio: f64,
}

/// Everything reported about one policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyMetrics {
    pub name: String,
    pub family: Family,
    pub detail: String,
    pub n: usize,
    pub top1: f64,
    pub top5: f64,
    pub top1_ci95: [f64; 2],
    pub mean_latency_ms: f64,
    pub mean_latency_ci95: [f64; 2],
    pub p95_latency_ms: f64,
    pub mean_energy_mj: f64,
    pub mean_energy_ci95: [f64; 2],
    pub usd_per_1000: f64,
    pub kb_uploaded_per_image: f64,
    /// Share of images answered by a server.
    pub offload_fraction: f64,
    pub budget: BudgetAdherence,
    pub vs_best_single: Option<Paired>,
}

fn mean(x: &[f64]) -> f64 {
    if x.is_empty() {
        0.0
    } else {
        x.iter().sum::<f64>() / x.len() as f64
    }
}

fn percentile_ci(mut v: Vec<f64>) -> [f64; 2] {
    if v.is_empty() {
        return [0.0, 0.0];
    }
    v.sort_by(f64::total_cmp);
    let b = v.len();
    let q = |p: f64| v[((p * (b - 1) as f64).round() as usize).min(b - 1)];
    [q(0.025), q(0.975)]
}

/// Bootstrap resamples of `0..n`, shared by every policy so that paired differences compare
/// the same images.
pub struct Resamples {
    idx: Vec<Vec<u32>>,
}

impl Resamples {
    pub fn new(n: usize, b: usize, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let idx = (0..b)
            .map(|_| (0..n).map(|_| rng.below(n.max(1)) as u32).collect())
            .collect();
        Resamples { idx }
    }

    /// 95% percentile interval of the mean of `x`.
    pub fn ci(&self, x: &[f64]) -> [f64; 2] {
        if x.is_empty() {
            return [0.0, 0.0];
        }
        percentile_ci(
            self.idx
                .iter()
                .map(|s| s.iter().map(|&i| x[i as usize]).sum::<f64>() / s.len().max(1) as f64)
                .collect(),
        )
    }
}

fn adherence(outcomes: &[Outcome], budget: f64) -> BudgetAdherence {
    let n = outcomes.len();
    let total: f64 = outcomes.iter().map(|o| o.energy_mj).sum();
    let mut cum = 0.0;
    let mut worst: f64 = 0.0;
    let from = (n / 10).max(1);
    for (k, o) in outcomes.iter().enumerate() {
        cum += o.energy_mj;
        if k + 1 >= from && budget > 0.0 {
            worst = worst.max(cum / (budget * (k + 1) as f64));
        }
    }
    let used = if budget > 0.0 && n > 0 {
        total / (budget * n as f64)
    } else {
        0.0
    };
    BudgetAdherence {
        energy_budget_mj_per_image: budget,
        used_fraction: used,
        worst_prefix_fraction: worst,
        within_budget: used <= 1.0 + 1e-9,
    }
}

/// The most accurate single-variant run (ties: the faster).
pub fn best_single(runs: &[PolicyRun]) -> Option<&PolicyRun> {
    let top1 = |r: &PolicyRun| r.outcomes.iter().filter(|o| o.correct).count();
    let ms = |r: &PolicyRun| r.outcomes.iter().map(|o| o.latency_ms).sum::<f64>();
    runs.iter()
        .filter(|r| r.family == Family::Single)
        .max_by(|a, b| top1(a).cmp(&top1(b)).then(ms(b).total_cmp(&ms(a))))
}

/// Metrics of every run. All runs must cover the same images in the same order.
pub fn compute(runs: &[PolicyRun], opts: &MetricsOptions) -> Result<Vec<PolicyMetrics>> {
    let n = runs.first().map_or(0, |r| r.outcomes.len());
    if n == 0 {
        return Err(Error::InvalidArgument("no outcomes to score".into()));
    }
    for r in runs {
        let aligned = r.outcomes.len() == n
            && r.outcomes
                .iter()
                .zip(&runs[0].outcomes)
                .all(|(a, b)| a.image == b.image);
        if !aligned {
            return Err(Error::InvalidArgument(format!(
                "policy {} was not scored on the same images as {}",
                r.name, runs[0].name
            )));
        }
    }
    let rs = Resamples::new(n, opts.bootstrap, opts.seed);
    let reference = best_single(runs);
    let col = |r: &PolicyRun, f: &dyn Fn(&Outcome) -> f64| -> Vec<f64> {
        r.outcomes.iter().map(f).collect()
    };
    let right = |o: &Outcome| f64::from(u8::from(o.correct));
    let ref_right = reference.map(|r| col(r, &right));
    let ref_ms = reference.map(|r| mean(&col(r, &|o| o.latency_ms)));
    let ref_mj = reference.map(|r| mean(&col(r, &|o| o.energy_mj)));
    Ok(runs
        .iter()
        .map(|r| {
            let c = col(r, &right);
            let ms = col(r, &|o| o.latency_ms);
            let mj = col(r, &|o| o.energy_mj);
            let vs = reference.zip(ref_right.as_ref()).map(|(rr, rc)| {
                let diff: Vec<f64> = c.iter().zip(rc).map(|(a, b)| a - b).collect();
                Paired {
                    reference: rr.name.clone(),
                    delta_top1: mean(&diff),
                    delta_top1_ci95: rs.ci(&diff),
                    speedup: ref_ms.unwrap_or(0.0) / mean(&ms).max(1e-12),
                    energy_ratio: mean(&mj) / ref_mj.unwrap_or(0.0).max(1e-12),
                }
            });
            PolicyMetrics {
                name: r.name.clone(),
                family: r.family,
                detail: r.detail.clone(),
                n,
                top1: mean(&c),
                top5: mean(&col(r, &|o| f64::from(u8::from(o.top5)))),
                top1_ci95: rs.ci(&c),
                mean_latency_ms: mean(&ms),
                mean_latency_ci95: rs.ci(&ms),
                p95_latency_ms: LatencyStats::from_samples(&ms).p95_ms,
                mean_energy_mj: mean(&mj),
                mean_energy_ci95: rs.ci(&mj),
                usd_per_1000: 1000.0 * mean(&col(r, &|o| o.usd)),
                kb_uploaded_per_image: mean(&col(r, &|o| o.upload_bytes)) / 1e3,
                offload_fraction: mean(&col(r, &|o| {
                    f64::from(u8::from(matches!(
                        o.answer,
                        crate::outcome::Answer::Remote(_)
                    )))
                })),
                budget: adherence(&r.outcomes, opts.energy_budget_mj),
                vs_best_single: vs,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Answer;
    use proptest::prelude::*;

    fn run(name: &str, family: Family, right: &[bool], ms: f64) -> PolicyRun {
        let mut r = PolicyRun::new(name, family, "");
        r.outcomes = right
            .iter()
            .enumerate()
            .map(|(i, &c)| Outcome {
                image: i,
                correct: c,
                top5: c,
                latency_ms: ms,
                energy_mj: ms * 10.0,
                usd: 0.0,
                upload_bytes: 0.0,
                answer: Answer::Local(0),
                level: None,
            })
            .collect();
        r
    }

    #[test]
    fn paired_difference_against_the_best_single() {
        let a: Vec<bool> = (0..100).map(|i| i % 2 == 0).collect();
        let b: Vec<bool> = (0..100).map(|i| i % 4 != 3).collect();
        let runs = vec![
            run("a", Family::Single, &a, 1.0),
            run("b", Family::Single, &b, 4.0),
            run("same", Family::Triage, &b, 2.0),
        ];
        let opts = MetricsOptions {
            bootstrap: 200,
            seed: 1,
            energy_budget_mj: 20.0,
        };
        let m = compute(&runs, &opts).unwrap();
        let p = m[2].vs_best_single.as_ref().unwrap();
        assert_eq!(p.reference, "b");
        assert_eq!(p.delta_top1, 0.0);
        assert_eq!(p.delta_top1_ci95, [0.0, 0.0]);
        assert!((p.speedup - 2.0).abs() < 1e-9);
        // 20 mJ per image against a 20 mJ budget: exactly on pace.
        assert!((m[2].budget.used_fraction - 1.0).abs() < 1e-9);
        assert!(m[1].budget.used_fraction > 1.0 && !m[1].budget.within_budget);
        let pa = m[0].vs_best_single.as_ref().unwrap();
        assert!(pa.delta_top1 < 0.0 && pa.delta_top1_ci95[1] < 0.0, "{pa:?}");
    }

    #[test]
    fn misaligned_runs_are_refused() {
        let runs = vec![
            run("a", Family::Single, &[true, false], 1.0),
            run("b", Family::Single, &[true], 1.0),
        ];
        let opts = MetricsOptions {
            bootstrap: 10,
            seed: 0,
            energy_budget_mj: 1.0,
        };
        assert!(compute(&runs, &opts).is_err());
    }

    proptest! {
        /// The interval contains the point estimate.
        #[test]
        fn ci_contains_the_mean(bits in proptest::collection::vec(any::<bool>(), 5..200), seed in 0u64..100) {
            let x: Vec<f64> = bits.iter().map(|&b| f64::from(u8::from(b))).collect();
            let rs = Resamples::new(x.len(), 300, seed);
            let [lo, hi] = rs.ci(&x);
            let m = mean(&x);
            prop_assert!(lo <= m + 1e-12 && m <= hi + 1e-12, "{lo} {m} {hi}");
        }
    }
}
