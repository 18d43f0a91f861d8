//! Confidence cascades, with raw (uncalibrated) and with temperature-scaled confidence.
//!
//! * IDK cascade (Wang et al., "IDK Cascades: Fast Deep Learning by Learning not to
//!   Overthink", UAI 2018; arXiv 2017): models in cost order, each answering when its
//!   confidence reaches a threshold and saying "I don't know" otherwise, which passes the
//!   image on; the last model always answers. The cascade (which models, in cost order) and
//!   its threshold are chosen on training images to minimise cost subject to an accuracy
//!   target: the most accurate single model's training top-1 minus a tolerance.
//! * Confidence-based offloading (CBO, INFOCOM 2022): run the on-device model; offload to
//!   the server when its confidence is below a threshold. The local model, remote option and
//!   threshold are chosen the same way, on device latency including the network.
//!
//! * Two reference cascades on calibrated confidence, fitted the same way: a three-stage
//!   cascade with a threshold per stage (every chain of three variants in cost order), and
//!   routing by the cheapest variant's confidence to an easy or a hard chain (each a variant
//!   or a two-stage cascade), as simple alternatives a scheduler has to beat.
//!
//! Calibration (Guo et al., ICML 2017) fits one temperature per model on the training images;
//! uncalibrated cascades use temperature 1.

use triage_compiler::calibrate::fit_temperature;
use triage_compiler::policy::{COARSE_THRESHOLDS, THRESHOLDS};

use super::{best_single_top1, cheapest_reaching, summarize, Contender, Context};
use crate::data::{confidence, EvalData};
use crate::error::{Error, Result};
use crate::outcome::{Answer, Family, Outcome, PolicyRun};

/// Per-model temperatures: fitted on `train` when `calibrated`, else all 1.
fn temperatures(data: &EvalData, train: &[usize], calibrated: bool) -> Vec<f64> {
    data.variants
        .iter()
        .map(|v| {
            if !calibrated {
                return 1.0;
            }
            let logits: Vec<&[f32]> = train.iter().map(|&i| v.logits[i].as_slice()).collect();
            let labels: Vec<usize> = train.iter().map(|&i| data.labels[i]).collect();
            fit_temperature(&logits, &labels)
        })
        .collect()
}

fn family(calibrated: bool) -> Family {
    if calibrated {
        Family::CascadeCalibrated
    } else {
        Family::Cascade
    }
}

fn suffix(calibrated: bool) -> &'static str {
    if calibrated {
        "calibrated"
    } else {
        "uncalibrated"
    }
}

/// A cascade: variants in cost order, and the confidence at which each stage but the last
/// answers.
#[derive(Debug, Clone, PartialEq)]
struct Chain {
    cols: Vec<usize>,
    thresholds: Vec<f64>,
}

impl Chain {
    fn describe(&self, ctx: &Context) -> String {
        let mut s = String::new();
        for (k, &c) in self.cols.iter().enumerate() {
            s.push_str(&ctx.data.variants[c].name);
            if let Some(t) = self.thresholds.get(k) {
                s.push_str(&format!(" >={t:.2} -> "));
            }
        }
        s
    }

    /// Walks the chain on image `i` after `ms` host milliseconds already spent, the variants
    /// in `ran` (a bit mask over columns) already run and not paid again.
    fn walk(&self, ctx: &Context, conf: &[Vec<f64>], i: usize, mut ms: f64, ran: u32) -> Outcome {
        let d = ctx.data;
        let last = self.cols.len().saturating_sub(1);
        for (k, &col) in self.cols.iter().enumerate() {
            let v = &d.variants[col];
            if ran & (1 << col) == 0 {
                ms += v.stage_ms;
            }
            if k == last || self.thresholds.get(k).is_some_and(|&t| conf[col][i] >= t) {
                return ctx.local(i, ms, v.correct[i], v.top5[i], Answer::Local(col));
            }
        }
        // Unreachable for a non-empty chain.
        ctx.local(i, ms, false, false, Answer::Local(0))
    }
}

/// A fitted cascade and the temperatures its confidences are taken at.
#[derive(Debug, Clone, PartialEq)]
struct IdkFit {
    chain: Chain,
    temps: Vec<f64>,
}

/// A cascade fitted on training images: the IDK cascade (every pair of variants and the full
/// ladder, one threshold shared by every stage), or the three-stage reference cascade (every
/// chain of three variants, a threshold per stage, calibrated).
pub struct IdkCascade {
    calibrated: bool,
    three_stage: bool,
    fit: Option<IdkFit>,
}

impl IdkCascade {
    pub fn new(calibrated: bool) -> Self {
        IdkCascade {
            calibrated,
            three_stage: false,
            fit: None,
        }
    }

    /// The three-stage cascade with a threshold per stage, on calibrated confidence.
    pub fn three_stage() -> Self {
        IdkCascade {
            calibrated: true,
            three_stage: true,
            fit: None,
        }
    }

    fn name(&self) -> String {
        if self.three_stage {
            "three-stage cascade (calibrated)".into()
        } else {
            format!("idk-cascade ({})", suffix(self.calibrated))
        }
    }

    /// The candidates the fit chooses among.
    fn candidates(&self, nv: usize) -> Vec<Chain> {
        let grid = THRESHOLDS.map(f64::from);
        if !self.three_stage {
            return chains(nv)
                .into_iter()
                .flat_map(|cols| {
                    grid.map(|t| Chain {
                        thresholds: vec![t; cols.len() - 1],
                        cols: cols.clone(),
                    })
                })
                .collect();
        }
        let mut out = Vec::new();
        for a in 0..nv {
            for b in a + 1..nv {
                for c in b + 1..nv {
                    for t1 in grid {
                        for t2 in grid {
                            out.push(Chain {
                                cols: vec![a, b, c],
                                thresholds: vec![t1, t2],
                            });
                        }
                    }
                }
            }
        }
        out
    }
}

/// Confidence of every variant on every image of `images` (`[variant][image]`, other images
/// left at 0), at the given temperatures.
fn confidences(data: &EvalData, images: &[usize], temps: &[f64]) -> Vec<Vec<f64>> {
    data.variants
        .iter()
        .zip(temps)
        .map(|(v, &t)| {
            let mut c = vec![0.0; data.len()];
            for &i in images {
                c[i] = confidence(&v.logits[i], t);
            }
            c
        })
        .collect()
}

fn idk_step(ctx: &Context, f: &IdkFit, conf: &[Vec<f64>], i: usize) -> Outcome {
    f.chain.walk(ctx, conf, i, ctx.data.decode_ms[i], 0)
}

/// Candidate chains: every pair in cost order and the full ladder.
fn chains(nv: usize) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    for a in 0..nv {
        for b in a + 1..nv {
            out.push(vec![a, b]);
        }
    }
    if nv > 2 {
        out.push((0..nv).collect());
    }
    if out.is_empty() {
        out.push(vec![0]);
    }
    out
}

impl Contender for IdkCascade {
    fn label(&self) -> String {
        if self.three_stage {
            self.name()
        } else {
            format!("IDK cascade ({})", suffix(self.calibrated))
        }
    }

    fn fit(&mut self, ctx: &Context, train: &[usize]) -> Result<()> {
        let temps = temperatures(ctx.data, train, self.calibrated);
        let conf = confidences(ctx.data, train, &temps);
        let mut fits = Vec::new();
        let mut scores = Vec::new();
        for chain in self.candidates(ctx.data.n_variants()) {
            let f = IdkFit {
                chain,
                temps: temps.clone(),
            };
            let outs: Vec<Outcome> = train.iter().map(|&i| idk_step(ctx, &f, &conf, i)).collect();
            scores.push(summarize(&outs, |o| o.latency_ms));
            fits.push(f);
        }
        let target = best_single_top1(ctx.data, train) - ctx.settings.match_tolerance;
        // The three-stage cascade has no candidate with fewer than three variants: no row.
        self.fit = cheapest_reaching(&scores, target).and_then(|k| fits.into_iter().nth(k));
        if self.fit.is_none() && !self.three_stage {
            return Err(Error::InvalidArgument("no IDK cascade candidate".into()));
        }
        Ok(())
    }

    fn run(&self, ctx: &Context, test: &[usize]) -> Result<Vec<PolicyRun>> {
        let Some(f) = self.fit.as_ref() else {
            return if self.three_stage {
                Ok(Vec::new())
            } else {
                Err(Error::InvalidArgument("IDK cascade run before fit".into()))
            };
        };
        let mut run = PolicyRun::new(
            self.name(),
            family(self.calibrated),
            format!(
                "{} on {} confidence (last fold's fit)",
                f.chain.describe(ctx),
                suffix(self.calibrated)
            ),
        );
        let conf = confidences(ctx.data, test, &f.temps);
        run.outcomes = test.iter().map(|&i| idk_step(ctx, f, &conf, i)).collect();
        Ok(vec![run])
    }
}

/// A fitted easy/hard router: the cheapest variant runs; at calibrated confidence >= `tau`
/// the image takes the easy branch, otherwise the hard one. Each branch is one variant or a
/// two-stage cascade; one that starts with the cheapest variant reuses its answer.
#[derive(Debug, Clone, PartialEq)]
struct RouteFit {
    tau: f64,
    easy: Chain,
    hard: Chain,
    temps: Vec<f64>,
}

/// A branch's outcome on image `i`, after decoding and running the cheapest variant.
fn branch_step(ctx: &Context, b: &Chain, conf: &[Vec<f64>], i: usize) -> Outcome {
    let ms = ctx.data.decode_ms[i] + ctx.data.variants[0].stage_ms;
    b.walk(ctx, conf, i, ms, 1)
}

fn route_step(ctx: &Context, f: &RouteFit, conf: &[Vec<f64>], i: usize) -> Outcome {
    let b = if conf[0][i] >= f.tau {
        &f.easy
    } else {
        &f.hard
    };
    branch_step(ctx, b, conf, i)
}

/// Routing by the cheapest variant's calibrated confidence to an easy or a hard branch.
#[derive(Default)]
pub struct EasyHardRouting {
    fit: Option<RouteFit>,
}

impl Contender for EasyHardRouting {
    fn label(&self) -> String {
        "easy/hard routing (calibrated)".into()
    }

    fn fit(&mut self, ctx: &Context, train: &[usize]) -> Result<()> {
        let temps = temperatures(ctx.data, train, true);
        let conf = confidences(ctx.data, train, &temps);
        let nv = ctx.data.n_variants();
        let mut branches = Vec::new();
        for a in 0..nv {
            branches.push(Chain {
                cols: vec![a],
                thresholds: Vec::new(),
            });
            for b in a + 1..nv {
                for &t in &COARSE_THRESHOLDS {
                    branches.push(Chain {
                        cols: vec![a, b],
                        thresholds: vec![f64::from(t)],
                    });
                }
            }
        }
        // Each branch's outcome on every training image, after the cheapest variant ran.
        let outcomes: Vec<Vec<Outcome>> = branches
            .iter()
            .map(|b| {
                train
                    .iter()
                    .map(|&i| branch_step(ctx, b, &conf, i))
                    .collect()
            })
            .collect();
        let n = train.len().max(1) as f64;
        let mut fits = Vec::new();
        let mut scores = Vec::new();
        for &tau in &COARSE_THRESHOLDS {
            let easy: Vec<bool> = train
                .iter()
                .map(|&i| conf[0][i] >= f64::from(tau))
                .collect();
            // Per branch: (right, latency) summed over the easy and over the hard images.
            let sums = |want: bool| -> Vec<(f64, f64)> {
                outcomes
                    .iter()
                    .map(|outs| {
                        outs.iter().zip(&easy).filter(|(_, &e)| e == want).fold(
                            (0.0, 0.0),
                            |(r, ms), (o, _)| {
                                (r + f64::from(u8::from(o.correct)), ms + o.latency_ms)
                            },
                        )
                    })
                    .collect()
            };
            let (on_easy, on_hard) = (sums(true), sums(false));
            for (e, se) in on_easy.iter().enumerate() {
                for (h, sh) in on_hard.iter().enumerate() {
                    scores.push(((se.0 + sh.0) / n, (se.1 + sh.1) / n));
                    fits.push((f64::from(tau), e, h));
                }
            }
        }
        let target = best_single_top1(ctx.data, train) - ctx.settings.match_tolerance;
        self.fit = cheapest_reaching(&scores, target)
            .and_then(|k| fits.get(k).copied())
            .map(|(tau, e, h)| RouteFit {
                tau,
                easy: branches[e].clone(),
                hard: branches[h].clone(),
                temps,
            });
        Ok(())
    }

    fn run(&self, ctx: &Context, test: &[usize]) -> Result<Vec<PolicyRun>> {
        let Some(f) = self.fit.as_ref() else {
            return Ok(Vec::new());
        };
        let mut run = PolicyRun::new(
            "easy/hard routing (calibrated)",
            Family::CascadeCalibrated,
            format!(
                "{} >={:.2}: {}, else {} (last fold's fit)",
                ctx.data.variants[0].name,
                f.tau,
                f.easy.describe(ctx),
                f.hard.describe(ctx)
            ),
        );
        let conf = confidences(ctx.data, test, &f.temps);
        run.outcomes = test.iter().map(|&i| route_step(ctx, f, &conf, i)).collect();
        Ok(vec![run])
    }
}

/// A fitted local-then-remote rule.
#[derive(Debug, Clone, PartialEq)]
struct CboFit {
    col: usize,
    remote: usize,
    threshold: f64,
    temp: f64,
}

/// Confidence-based offloading.
pub struct Cbo {
    calibrated: bool,
    fit: Option<CboFit>,
}

impl Cbo {
    pub fn new(calibrated: bool) -> Self {
        Cbo {
            calibrated,
            fit: None,
        }
    }
}

fn cbo_step(ctx: &Context, f: &CboFit, conf: f64, i: usize) -> Outcome {
    let d = ctx.data;
    let v = &d.variants[f.col];
    let host = d.decode_ms[i] + v.stage_ms;
    if conf >= f.threshold {
        ctx.local(i, host, v.correct[i], v.top5[i], Answer::Local(f.col))
    } else {
        ctx.remote(i, host, f.remote)
    }
}

impl Contender for Cbo {
    fn label(&self) -> String {
        format!("confidence-based offloading ({})", suffix(self.calibrated))
    }

    fn fit(&mut self, ctx: &Context, train: &[usize]) -> Result<()> {
        let temps = temperatures(ctx.data, train, self.calibrated);
        let conf = confidences(ctx.data, train, &temps);
        let d = ctx.data;
        let mut fits = Vec::new();
        let mut scores = Vec::new();
        for col in 0..d.n_variants() {
            let local: Vec<Outcome> = train.iter().map(|&i| ctx.single(i, col)).collect();
            for remote in 0..d.remote.len() {
                let offloaded: Vec<Outcome> = train
                    .iter()
                    .map(|&i| ctx.remote(i, d.decode_ms[i] + d.variants[col].stage_ms, remote))
                    .collect();
                for &t in &THRESHOLDS {
                    let outs: Vec<Outcome> = train
                        .iter()
                        .enumerate()
                        .map(|(k, &i)| {
                            if conf[col][i] >= f64::from(t) {
                                local[k]
                            } else {
                                offloaded[k]
                            }
                        })
                        .collect();
                    scores.push(summarize(&outs, |o| o.latency_ms));
                    fits.push(CboFit {
                        col,
                        remote,
                        threshold: f64::from(t),
                        temp: temps[col],
                    });
                }
            }
        }
        let target = best_single_top1(ctx.data, train) - ctx.settings.match_tolerance;
        self.fit = cheapest_reaching(&scores, target).and_then(|k| fits.into_iter().nth(k));
        Ok(())
    }

    fn run(&self, ctx: &Context, test: &[usize]) -> Result<Vec<PolicyRun>> {
        let Some(f) = self.fit.as_ref() else {
            // No remote options in the profile: nothing to offload to.
            return Ok(Vec::new());
        };
        let mut run = PolicyRun::new(
            format!("cbo local->remote ({})", suffix(self.calibrated)),
            family(self.calibrated),
            format!(
                "{} on the device, offload with {} when {} confidence < {:.3} (last fold's fit)",
                ctx.data.variants[f.col].name,
                ctx.data.remote[f.remote].name,
                suffix(self.calibrated),
                f.threshold
            ),
        );
        let v = &ctx.data.variants[f.col];
        run.outcomes = test
            .iter()
            .map(|&i| cbo_step(ctx, f, confidence(&v.logits[i], f.temp), i))
            .collect();
        Ok(vec![run])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policies::testdata::Fixture;

    #[test]
    fn idk_cascade_reaches_the_target_on_training_images() {
        let fx = Fixture::new(60);
        let ctx = fx.ctx();
        let all: Vec<usize> = (0..60).collect();
        let mut c = IdkCascade::new(true);
        c.fit(&ctx, &all).unwrap();
        let run = c.run(&ctx, &all).unwrap().remove(0);
        let (top1, _) = summarize(&run.outcomes, |o| o.latency_ms);
        assert!(top1 >= best_single_top1(&fx.data, &all) - 0.003 - 1e-9);
        assert_eq!(run.family, Family::CascadeCalibrated);
    }

    #[test]
    fn the_reference_cascades_reach_the_target_on_training_images() {
        let fx = Fixture::new(60);
        let ctx = fx.ctx();
        let all: Vec<usize> = (0..60).collect();
        let target = best_single_top1(&fx.data, &all) - 0.003 - 1e-9;
        let mut staged = IdkCascade::three_stage();
        staged.fit(&ctx, &all).unwrap();
        assert_eq!(staged.fit.as_ref().unwrap().chain.thresholds.len(), 2);
        let mut routing = EasyHardRouting::default();
        routing.fit(&ctx, &all).unwrap();
        for run in [staged.run(&ctx, &all), routing.run(&ctx, &all)] {
            let run = run.unwrap().remove(0);
            let (top1, _) = summarize(&run.outcomes, |o| o.latency_ms);
            assert!(top1 >= target, "{}: {top1}", run.name);
            assert_eq!(run.family, Family::CascadeCalibrated);
        }
    }

    #[test]
    fn routing_takes_the_easy_branch_on_confident_images_and_runs_the_probe_once() {
        let fx = Fixture::new(40);
        let ctx = fx.ctx();
        let all: Vec<usize> = (0..40).collect();
        let temps = vec![1.0; 3];
        let conf = confidences(&fx.data, &all, &temps);
        let f = RouteFit {
            tau: 0.6,
            // Easy: the probe's own answer. Hard: the costliest variant.
            easy: Chain {
                cols: vec![0],
                thresholds: Vec::new(),
            },
            hard: Chain {
                cols: vec![2],
                thresholds: Vec::new(),
            },
            temps,
        };
        let d = &fx.data;
        let mut both = [false; 2];
        for i in 0..40 {
            let o = route_step(&ctx, &f, &conf, i);
            let easy = conf[0][i] >= 0.6;
            both[usize::from(easy)] = true;
            let (col, ms) = if easy {
                (0, d.decode_ms[i] + d.variants[0].stage_ms)
            } else {
                (
                    2,
                    d.decode_ms[i] + d.variants[0].stage_ms + d.variants[2].stage_ms,
                )
            };
            assert!(matches!(o.answer, Answer::Local(c) if c == col));
            assert!((o.latency_ms - ms * ctx.device.compute.latency_scale).abs() < 1e-9);
            assert_eq!(o.correct, d.variants[col].correct[i]);
        }
        assert_eq!(
            both,
            [true, true],
            "the fixture should have both kinds of image"
        );
    }

    #[test]
    fn cbo_offloads_only_unconfident_images() {
        let fx = Fixture::new(40);
        let ctx = fx.ctx();
        let f = CboFit {
            col: 0,
            remote: 0,
            threshold: 0.9,
            temp: 1.0,
        };
        for i in 0..40 {
            let conf = confidence(&fx.data.variants[0].logits[i], 1.0);
            let o = cbo_step(&ctx, &f, conf, i);
            assert_eq!(matches!(o.answer, Answer::Remote(_)), conf < 0.9);
            assert_eq!(o.upload_bytes > 0.0, conf < 0.9);
        }
    }
}
