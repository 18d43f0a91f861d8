//! The policy space the compiler searches, and how a policy is replayed on profiled images.
//!
//! A [`Policy`] is a *chain* of variants in increasing cost. The image enters at the first
//! stage (or wherever a premodel router sends it), each stage runs its variant, and the
//! answer is accepted when the calibrated confidence reaches the stage's threshold; otherwise
//! the next stage runs. With `ensemble`, a stage decides on (and answers with) the [`pool`] of
//! the calibrated probabilities of every variant run so far (their normalized geometric mean),
//! so a cascade's later stages reuse what the earlier ones already paid for. Optional routers
//! use the premodel:
//!
//! * [`RouterKind::Start`]: before any DNN, a premodel on image features picks the first
//!   stage whose variant it predicts correct with probability >= `min_prob` (Taylor et al.,
//!   LCTES 2018, with the cascade as a safety net);
//! * [`RouterKind::AfterProbe`]: after the first stage (the cheapest variant) declines, a
//!   premodel on its softmax plus image features picks which later stage to jump to, so a
//!   hopeless image does not walk through every middle stage.
//!
//! Replay is exact with respect to the profile: confidences and correctness come from the
//! recorded logits, costs from the measured latencies.

use serde::{Deserialize, Serialize};

/// How a premodel router is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouterKind {
    /// Premodel on image features, before the first stage.
    Start,
    /// Premodel on probe + image features, after the first stage declines.
    AfterProbe,
}

/// A premodel router.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Router {
    pub kind: RouterKind,
    /// Go to the first stage whose predicted P(correct) reaches this.
    pub min_prob: f32,
}

/// One local policy. Variant indices are columns in cost order (cheapest first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub chain: Vec<usize>,
    /// Acceptance thresholds on calibrated confidence, one per stage but the last.
    pub thresholds: Vec<f32>,
    pub ensemble: bool,
    pub router: Option<Router>,
}

/// Per-image tables a replay needs. Variant columns are in cost order; subsets of variants are
/// bit masks over those columns.
#[derive(Debug, Clone)]
pub struct Tables {
    pub n: usize,
    pub nv: usize,
    /// Per image: decode time (ms), the fixed cost of every policy.
    pub base_ms: Vec<f64>,
    /// Per image: premodel feature extraction time (ms).
    pub features_ms: Vec<f64>,
    /// Per variant: preprocessing + inference (ms).
    pub stage_ms: Vec<f64>,
    /// `[i * 2^nv + mask]`: calibrated confidence of the ensemble of `mask` on image `i`.
    pub conf: Vec<f32>,
    /// `[i * 2^nv + mask]`: whether that ensemble's top-1 is right.
    pub ok: Vec<bool>,
    /// Per router kind: `[i * nv + v]` predicted P(variant v correct), out of fold.
    pub router_p: [Option<Vec<f32>>; 2],
}

/// The outcome of a policy on one image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub correct: bool,
    pub ms: f64,
    /// Mask of the variants that ran.
    pub ran: u32,
    /// Calibrated confidence of the answer (of the ensemble, for ensembling policies): what a
    /// confidence-based offloading rule looks at after the local chain.
    pub conf: f32,
}

impl Tables {
    /// Builds the confidence/correctness tables from calibrated probabilities
    /// `probs[v][i]` (cost-order variant `v`, image `i`) and labels.
    pub fn new(
        probs: &[Vec<Vec<f32>>],
        labels: &[usize],
        base_ms: Vec<f64>,
        features_ms: Vec<f64>,
        stage_ms: Vec<f64>,
    ) -> Self {
        let nv = probs.len();
        let n = labels.len();
        let nm = 1usize << nv;
        let mut conf = vec![0f32; n * nm];
        let mut ok = vec![false; n * nm];
        let mut acc = Vec::new();
        for i in 0..n {
            // Each variant's log-probabilities once per image; every mask sums them in variant
            // order, which is the order a runtime runs a chain in, so both pool identically.
            let logs: Vec<Vec<f32>> = probs.iter().map(|pv| log_probs(&pv[i])).collect();
            for mask in 1..nm {
                let key = i * nm + mask;
                let answer = if mask.count_ones() == 1 {
                    &probs[mask.trailing_zeros() as usize][i]
                } else {
                    acc.clear();
                    acc.resize(logs[0].len(), 0.0);
                    for (v, lv) in logs.iter().enumerate() {
                        if mask & (1 << v) != 0 {
                            acc.iter_mut().zip(lv).for_each(|(a, &l)| *a += l);
                        }
                    }
                    normalize_pool(&mut acc, mask.count_ones() as usize);
                    &acc
                };
                let top = triage_zoo::logits::argmax(answer);
                conf[key] = answer.get(top).copied().unwrap_or(0.0);
                ok[key] = top == labels[i];
            }
        }
        Tables {
            n,
            nv,
            base_ms,
            features_ms,
            stage_ms,
            conf,
            ok,
            router_p: [None, None],
        }
    }

    fn router_probs(&self, kind: RouterKind, i: usize) -> Option<&[f32]> {
        let idx = match kind {
            RouterKind::Start => 0,
            RouterKind::AfterProbe => 1,
        };
        self.router_p[idx]
            .as_ref()
            .map(|p| &p[i * self.nv..(i + 1) * self.nv])
    }

    /// Replays `policy` on image `i`.
    pub fn step(&self, policy: &Policy, i: usize) -> Step {
        let nm = 1usize << self.nv;
        let chain = &policy.chain;
        let last = chain.len() - 1;
        let mut ms = self.base_ms[i];
        let mut mask = 0u32;
        let mut s = 0;
        let jump = |from: usize, p: &[f32], min_prob: f32| -> usize {
            (from..=last)
                .find(|&k| p[chain[k]] >= min_prob)
                .unwrap_or(last)
        };
        if let Some(r) = policy.router.filter(|r| r.kind == RouterKind::Start) {
            if let Some(p) = self.router_probs(RouterKind::Start, i) {
                ms += self.features_ms[i];
                s = jump(0, p, r.min_prob);
            }
        }
        loop {
            let v = chain[s];
            mask |= 1 << v;
            ms += self.stage_ms[v];
            if s == last {
                break;
            }
            let key = if policy.ensemble {
                mask as usize
            } else {
                1 << v
            };
            if self.conf[i * nm + key] >= policy.thresholds[s] {
                break;
            }
            s = match policy.router.filter(|r| r.kind == RouterKind::AfterProbe) {
                Some(r) if s == 0 => match self.router_probs(RouterKind::AfterProbe, i) {
                    Some(p) => {
                        ms += self.features_ms[i];
                        jump(1, p, r.min_prob)
                    }
                    None => 1,
                },
                _ => s + 1,
            };
        }
        let v = chain[s];
        let key = if policy.ensemble {
            mask as usize
        } else {
            1 << v
        };
        Step {
            correct: self.ok[i * nm + key],
            ms,
            ran: mask,
            conf: self.conf[i * nm + key],
        }
    }

    /// Mean top-1 and mean latency of `policy` over `images`.
    pub fn score(&self, policy: &Policy, images: &[usize]) -> (f64, f64) {
        let mut right = 0usize;
        let mut ms = 0.0;
        for &i in images {
            let s = self.step(policy, i);
            right += usize::from(s.correct);
            ms += s.ms;
        }
        let n = images.len().max(1) as f64;
        (right as f64 / n, ms / n)
    }
}

/// The ensemble of probability vectors a cascade stage decides on: their normalized geometric
/// mean (log-linear pooling), `q_c ∝ Π_k p_k,c^(1/k)`.
///
/// Against the arithmetic mean, a class that one variant rules out stays unlikely, and two
/// variants that agree reinforce each other instead of averaging out. Chosen on four folds of
/// the shared sample and scored on the fifth, the most accurate full ensemble of the zoo's
/// variants is 0.2-0.7 points more accurate pooled this way than averaged (five fold splits).
///
/// Every consumer (the compiler's replay tables, the runtime, the evaluation) pools through
/// this function or its two halves in the same order, so a replayed decision is the live one.
/// Probabilities are floored at the smallest normal `f32` before the logarithm, so a class a
/// softmax underflowed to zero does not turn the pool into NaN.
pub fn pool<'a>(probs: impl IntoIterator<Item = &'a [f32]>) -> Vec<f32> {
    let mut pooled = Pool::default();
    for p in probs {
        pooled.add(p);
    }
    pooled.probs()
}

/// A running [`pool`]: each stage's probabilities are added once, as the stage runs, and the
/// pool of everything added so far can be read after any of them.
#[derive(Debug, Clone, Default)]
pub struct Pool {
    /// Sum of the added log-probabilities.
    log_sum: Vec<f32>,
    k: usize,
}

impl Pool {
    pub fn add(&mut self, p: &[f32]) {
        if self.log_sum.is_empty() {
            self.log_sum.resize(p.len(), 0.0);
        }
        self.log_sum
            .iter_mut()
            .zip(p)
            .for_each(|(a, &x)| *a += ln_floor(x));
        self.k += 1;
    }

    /// The pooled distribution of what was added.
    pub fn probs(&self) -> Vec<f32> {
        let mut q = self.log_sum.clone();
        normalize_pool(&mut q, self.k);
        q
    }
}

/// `ln p`, floored at the smallest normal `f32`.
fn ln_floor(p: f32) -> f32 {
    p.max(f32::MIN_POSITIVE).ln()
}

fn log_probs(p: &[f32]) -> Vec<f32> {
    p.iter().map(|&x| ln_floor(x)).collect()
}

/// Turns a sum of `k` log-probability vectors into the pooled distribution, in place.
fn normalize_pool(acc: &mut [f32], k: usize) {
    let k = k.max(1) as f32;
    let max = acc.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut total = 0f32;
    for a in acc.iter_mut() {
        *a = ((*a - max) / k).exp();
        total += *a;
    }
    if total > 0.0 {
        acc.iter_mut().for_each(|a| *a /= total);
    }
}

/// Threshold values the search tries.
pub const THRESHOLDS: [f32; 14] = [
    0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995,
];
/// Coarser threshold grid for chains of four or more stages, which keeps the search space
/// (and the compile time) bounded.
pub const COARSE_THRESHOLDS: [f32; 7] = [0.5, 0.7, 0.85, 0.9, 0.95, 0.98, 0.99];
/// Router probability levels the search tries.
pub const ROUTER_PROBS: [f32; 5] = [0.5, 0.6, 0.7, 0.8, 0.9];

/// Every policy of the search space over `nv` cost-ordered variants: chains of up to
/// `max_len` variants with every threshold combination, with and without ensembling, and the
/// routed variants of chains up to `max_router_len` long (when router tables exist).
pub fn enumerate(
    nv: usize,
    max_len: usize,
    max_router_len: usize,
    routers: &[RouterKind],
) -> Vec<Policy> {
    let mut out = Vec::new();
    for mask in 1u32..(1 << nv) {
        let chain: Vec<usize> = (0..nv).filter(|v| mask & (1 << v) != 0).collect();
        if chain.len() > max_len {
            continue;
        }
        let stages = chain.len() - 1;
        let grid: &[f32] = if chain.len() >= 4 {
            &COARSE_THRESHOLDS
        } else {
            &THRESHOLDS
        };
        let mut combos: Vec<Vec<f32>> = vec![Vec::new()];
        for _ in 0..stages {
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    grid.iter().map(move |&t| {
                        let mut c = c.clone();
                        c.push(t);
                        c
                    })
                })
                .collect();
        }
        for thresholds in combos {
            for ensemble in [false, true] {
                if stages == 0 && ensemble {
                    continue;
                }
                let base = Policy {
                    chain: chain.clone(),
                    thresholds: thresholds.clone(),
                    ensemble,
                    router: None,
                };
                if chain.len() >= 2 && chain.len() <= max_router_len {
                    for &kind in routers {
                        if kind == RouterKind::AfterProbe && (chain[0] != 0 || chain.len() < 3) {
                            continue;
                        }
                        for &min_prob in &ROUTER_PROBS {
                            out.push(Policy {
                                router: Some(Router { kind, min_prob }),
                                ..base.clone()
                            });
                        }
                    }
                }
                out.push(base);
            }
        }
    }
    out
}

/// A policy with its accuracy and mean latency on some image set.
#[derive(Debug, Clone)]
pub struct Scored {
    pub index: usize,
    pub top1: f64,
    pub ms: f64,
    /// `top1` less `z` standard errors of the policy's paired difference from the most
    /// accurate single variant on the same images (see [`pareto`]): what selection compares.
    pub lcb: f64,
}

/// The Pareto front (max `lcb`, min latency) of `policies` on `images`, sorted by latency.
///
/// Picking the best of a hundred thousand policies by their accuracy on the images they are
/// picked on rewards luck: the winner's accuracy on new images is lower than it looked
/// (what the compiler's nested cross-validation measures). Selection therefore compares a
/// conservative accuracy: the policy's top-1 less `z` paired standard errors of its
/// per-image difference from the most accurate single variant. A policy that answers like
/// that variant except on a few images is barely penalised; one whose accuracy rests on many
/// lucky disagreements is penalised in proportion. `z = 0` selects on top-1 itself.
pub fn pareto(tables: &Tables, policies: &[Policy], images: &[usize], z: f64) -> Vec<Scored> {
    use rayon::prelude::*;
    let nm = 1usize << tables.nv;
    let single_ok = |v: usize| -> Vec<bool> {
        images
            .iter()
            .map(|&i| tables.ok[i * nm + (1 << v)])
            .collect()
    };
    let reference = (0..tables.nv)
        .map(single_ok)
        .max_by_key(|ok| ok.iter().filter(|&&x| x).count())
        .unwrap_or_default();
    let n = images.len().max(1) as f64;
    let mut scored: Vec<Scored> = policies
        .par_iter()
        .enumerate()
        .map(|(index, p)| {
            let (mut right, mut ms, mut gain, mut loss) = (0usize, 0.0, 0usize, 0usize);
            for (k, &i) in images.iter().enumerate() {
                let s = tables.step(p, i);
                right += usize::from(s.correct);
                ms += s.ms;
                match (s.correct, reference.get(k).copied().unwrap_or(s.correct)) {
                    (true, false) => gain += 1,
                    (false, true) => loss += 1,
                    _ => {}
                }
            }
            let top1 = right as f64 / n;
            let d = (gain as f64 - loss as f64) / n;
            let var = ((gain + loss) as f64 / n - d * d).max(0.0);
            Scored {
                index,
                top1,
                ms: ms / n,
                lcb: top1 - z * (var / n).sqrt(),
            }
        })
        .collect();
    scored.sort_by(|a, b| a.ms.total_cmp(&b.ms).then(b.lcb.total_cmp(&a.lcb)));
    let mut front: Vec<Scored> = Vec::new();
    for s in scored {
        if front.last().is_none_or(|f| s.lcb > f.lcb + 1e-12) {
            front.push(s);
        }
    }
    front
}

/// How an operating point is chosen from a front; applied the same way on training folds
/// (for out-of-fold estimates) and on all data (for the plan).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Rule {
    /// Most accurate policy whose mean latency is at most this many ms.
    LatencyAtMost(f64),
    /// Fastest policy whose accuracy is at least this fraction.
    AccuracyAtLeast(f64),
    /// The most accurate policy.
    MostAccurate,
    /// Fastest policy whose accuracy is at least that of the most accurate single variant on
    /// the same images minus this many points (fraction, e.g. 0.003).
    MatchBestSingle(f64),
}

impl Rule {
    /// Picks from a latency-sorted Pareto front by the policies' conservative accuracy
    /// (`lcb`); `None` when nothing satisfies the rule. `best_single` is the top-1 of the most
    /// accurate single variant on the same images.
    pub fn pick<'a>(&self, front: &'a [Scored], best_single: f64) -> Option<&'a Scored> {
        match *self {
            Rule::LatencyAtMost(ms) => front.iter().rev().find(|s| s.ms <= ms),
            Rule::AccuracyAtLeast(a) => front.iter().find(|s| s.lcb >= a),
            Rule::MostAccurate => front.last(),
            Rule::MatchBestSingle(minus) => {
                front.iter().find(|s| s.lcb >= best_single - minus - 1e-12)
            }
        }
    }

    /// Short description for tables.
    pub fn describe(&self) -> String {
        match *self {
            Rule::LatencyAtMost(ms) => format!("latency <= {ms:.1} ms"),
            Rule::AccuracyAtLeast(a) => format!("top-1 >= {:.1}%", 100.0 * a),
            Rule::MostAccurate => "most accurate".into(),
            Rule::MatchBestSingle(m) => format!("best single - {:.1} pt", 100.0 * m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three variants; images 0..4. Variant 0 is right on even images with high confidence,
    /// variant 2 is right everywhere.
    fn tables() -> Tables {
        let n = 4;
        let mut probs = vec![vec![vec![0f32; 1000]; n]; 3];
        let labels = vec![1usize, 2, 3, 4];
        for i in 0..n {
            let (c0, p0) = if i % 2 == 0 {
                (labels[i], 0.95)
            } else {
                (999, 0.5)
            };
            probs[0][i][c0] = p0;
            probs[1][i][if i == 1 { labels[i] } else { 998 }] = 0.6;
            probs[2][i][labels[i]] = 0.8;
        }
        Tables::new(
            &probs,
            &labels,
            vec![1.0; n],
            vec![0.1; n],
            vec![1.0, 5.0, 20.0],
        )
    }

    /// The pooled distribution in f64, straight from the definition.
    fn pool_f64(ps: &[Vec<f32>]) -> Vec<f64> {
        let k = ps.len() as f64;
        let logs: Vec<f64> = (0..ps[0].len())
            .map(|c| {
                ps.iter()
                    .map(|p| f64::from(p[c].max(f32::MIN_POSITIVE)).ln())
                    .sum::<f64>()
                    / k
            })
            .collect();
        let max = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = logs.iter().map(|l| (l - max).exp()).collect();
        let total: f64 = e.iter().sum();
        e.iter().map(|x| x / total).collect()
    }

    fn softmax_vec(z: &[f32]) -> Vec<f32> {
        triage_zoo::logits::softmax(z, 1.0)
    }

    proptest::proptest! {
        #[test]
        fn pool_is_the_normalized_geometric_mean(
            logits in proptest::collection::vec(
                proptest::collection::vec(-30f32..30.0, 12), 1..5),
        ) {
            let ps: Vec<Vec<f32>> = logits.iter().map(|z| softmax_vec(z)).collect();
            let got = pool(ps.iter().map(Vec::as_slice));
            let want = pool_f64(&ps);
            let total: f32 = got.iter().sum();
            proptest::prop_assert!((total - 1.0).abs() < 1e-5, "sums to {total}");
            for (g, w) in got.iter().zip(&want) {
                proptest::prop_assert!((f64::from(*g) - w).abs() < 1e-5, "{g} vs {w}");
            }
        }
    }

    #[test]
    fn pooling_agreeing_variants_sharpens_and_a_veto_holds() {
        let a = vec![0.6f32, 0.3, 0.1];
        let b = vec![0.6f32, 0.1, 0.3];
        let q = pool([a.as_slice(), b.as_slice()]);
        // Both favour class 0: the pool is surer of it than either variant.
        assert!(q[0] > 0.6, "{q:?}");
        // A class one variant gives (underflowed) zero stays negligible, without NaN.
        let c = vec![0.0f32, 0.5, 0.5];
        let q = pool([a.as_slice(), c.as_slice()]);
        assert!(q.iter().all(|x| x.is_finite()), "{q:?}");
        assert!(q[0] < 1e-6 && q[1] > q[2], "{q:?}");
        // One variant pools to itself.
        let q = pool([a.as_slice()]);
        for (x, y) in q.iter().zip(&a) {
            assert!((x - y).abs() < 1e-6);
        }
    }

    /// The replay tables and [`pool`] must agree to the bit: the runtime decides with `pool`,
    /// the compiler with the tables.
    #[test]
    fn tables_pool_exactly_as_the_runtime_does() {
        let n = 3;
        let nv = 3;
        let labels = vec![0usize, 5, 7];
        let probs: Vec<Vec<Vec<f32>>> = (0..nv)
            .map(|v| {
                (0..n)
                    .map(|i| {
                        let z: Vec<f32> = (0..1000)
                            .map(|c| ((c * 7 + v * 13 + i * 31) % 97) as f32 / 9.0)
                            .collect();
                        softmax_vec(&z)
                    })
                    .collect()
            })
            .collect();
        let t = Tables::new(&probs, &labels, vec![0.0; n], vec![0.0; n], vec![1.0; nv]);
        let nm = 1 << nv;
        for i in 0..n {
            for mask in 1..nm {
                let ran: Vec<&[f32]> = (0..nv)
                    .filter(|v| mask & (1 << v) != 0)
                    .map(|v| probs[v][i].as_slice())
                    .collect();
                let q = if ran.len() == 1 {
                    ran[0].to_vec()
                } else {
                    pool(ran)
                };
                let top = triage_zoo::logits::argmax(&q);
                assert_eq!(t.conf[i * nm + mask].to_bits(), q[top].to_bits());
                assert_eq!(t.ok[i * nm + mask], top == labels[i]);
            }
        }
    }

    #[test]
    fn a_cascade_accepts_confident_answers_and_escalates_the_rest() {
        let t = tables();
        let p = Policy {
            chain: vec![0, 2],
            thresholds: vec![0.9],
            ensemble: false,
            router: None,
        };
        let steps: Vec<Step> = (0..4).map(|i| t.step(&p, i)).collect();
        assert!(steps.iter().all(|s| s.correct));
        assert_eq!(steps[0].ms, 2.0);
        assert_eq!(steps[1].ms, 22.0);
        assert_eq!(steps[1].ran, 0b101);
        assert_eq!(t.score(&p, &[0, 1, 2, 3]), (1.0, 12.0));
    }

    #[test]
    fn routers_skip_stages() {
        let mut t = tables();
        // The start router believes variant 2 is needed for odd images only.
        let mut p = vec![0f32; 4 * 3];
        for i in 0..4 {
            p[i * 3] = if i % 2 == 0 { 0.9 } else { 0.1 };
            p[i * 3 + 2] = 0.9;
        }
        t.router_p[0] = Some(p);
        let policy = Policy {
            chain: vec![0, 1, 2],
            thresholds: vec![0.9, 0.9],
            ensemble: false,
            router: Some(Router {
                kind: RouterKind::Start,
                min_prob: 0.5,
            }),
        };
        let s1 = t.step(&policy, 1);
        assert_eq!(s1.ran, 0b100);
        assert!((s1.ms - 21.1).abs() < 1e-9);
        assert!(s1.correct);
        assert_eq!(t.step(&policy, 0).ran, 0b001);
    }

    #[test]
    fn selection_margin_charges_disagreement_with_the_best_single_variant() {
        let t = tables();
        let single = |v: usize| Policy {
            chain: vec![v],
            thresholds: vec![],
            ensemble: false,
            router: None,
        };
        // Variant 2 is right on all four images, variant 0 on two of them.
        let policies = vec![single(0), single(2)];
        let images = [0, 1, 2, 3];
        let plain = pareto(&t, &policies, &images, 0.0);
        let margin = pareto(&t, &policies, &images, 1.0);
        assert!(plain.iter().all(|s| s.lcb == s.top1));
        let of = |front: &[Scored], k: usize| front.iter().find(|s| s.index == k).cloned();
        // The reference itself pays nothing.
        assert_eq!(of(&margin, 1).map(|s| s.lcb), Some(1.0));
        // Variant 0: difference -0.5 on every other image: variance 0.25, standard error
        // sqrt(0.25 / 4) = 0.25.
        let s0 = of(&margin, 0).unwrap();
        assert!((s0.top1 - 0.5).abs() < 1e-12);
        assert!((s0.lcb - 0.25).abs() < 1e-12, "{s0:?}");
    }

    #[test]
    fn the_front_is_sorted_and_nondominated() {
        let t = tables();
        let policies = enumerate(3, 3, 0, &[]);
        assert!(policies.len() > 100);
        let front = pareto(&t, &policies, &[0, 1, 2, 3], 0.0);
        for w in front.windows(2) {
            assert!(w[0].ms <= w[1].ms && w[0].top1 < w[1].top1);
        }
        let best = Rule::MostAccurate.pick(&front, 1.0).unwrap();
        assert_eq!(best.top1, 1.0);
        assert!(best.ms <= 12.0 + 1e-9, "{best:?}");
        assert!(Rule::AccuracyAtLeast(1.1).pick(&front, 1.0).is_none());
        let matched = Rule::MatchBestSingle(0.0).pick(&front, 1.0).unwrap();
        assert_eq!(matched.ms, best.ms);
    }
}
