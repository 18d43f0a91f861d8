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
//! Calibration (Guo et al., ICML 2017) fits one temperature per model on the training images;
//! uncalibrated cascades use temperature 1.

use triage_compiler::calibrate::fit_temperature;
use triage_compiler::policy::THRESHOLDS;

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

/// A fitted IDK cascade.
#[derive(Debug, Clone, PartialEq)]
struct IdkFit {
    chain: Vec<usize>,
    threshold: f64,
    temps: Vec<f64>,
}

/// The IDK cascade.
pub struct IdkCascade {
    calibrated: bool,
    fit: Option<IdkFit>,
}

impl IdkCascade {
    pub fn new(calibrated: bool) -> Self {
        IdkCascade {
            calibrated,
            fit: None,
        }
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
    let d = ctx.data;
    let mut ms = d.decode_ms[i];
    let last = f.chain.len() - 1;
    for (k, &col) in f.chain.iter().enumerate() {
        let v = &d.variants[col];
        ms += v.stage_ms;
        if k == last || conf[col][i] >= f.threshold {
            return ctx.local(i, ms, v.correct[i], v.top5[i], Answer::Local(col));
        }
    }
    // Unreachable for a non-empty chain; answer with the cheapest model's cost so far.
    ctx.local(i, ms, false, false, Answer::Local(0))
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
        format!("IDK cascade ({})", suffix(self.calibrated))
    }

    fn fit(&mut self, ctx: &Context, train: &[usize]) -> Result<()> {
        let temps = temperatures(ctx.data, train, self.calibrated);
        let conf = confidences(ctx.data, train, &temps);
        let mut fits = Vec::new();
        let mut scores = Vec::new();
        for chain in chains(ctx.data.n_variants()) {
            for &t in &THRESHOLDS {
                let f = IdkFit {
                    chain: chain.clone(),
                    threshold: f64::from(t),
                    temps: temps.clone(),
                };
                let outs: Vec<Outcome> =
                    train.iter().map(|&i| idk_step(ctx, &f, &conf, i)).collect();
                scores.push(summarize(&outs, |o| o.latency_ms));
                fits.push(f);
            }
        }
        let target = best_single_top1(ctx.data, train) - ctx.settings.match_tolerance;
        let k = cheapest_reaching(&scores, target)
            .ok_or_else(|| Error::InvalidArgument("no IDK cascade candidate".into()))?;
        self.fit = fits.into_iter().nth(k);
        Ok(())
    }

    fn run(&self, ctx: &Context, test: &[usize]) -> Result<Vec<PolicyRun>> {
        let f = self
            .fit
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("IDK cascade run before fit".into()))?;
        let names: Vec<&str> = f
            .chain
            .iter()
            .map(|&c| ctx.data.variants[c].name.as_str())
            .collect();
        let mut run = PolicyRun::new(
            format!("idk-cascade ({})", suffix(self.calibrated)),
            family(self.calibrated),
            format!(
                "{} with threshold {:.3} on {} confidence (last fold's fit)",
                names.join(" -> "),
                f.threshold,
                suffix(self.calibrated)
            ),
        );
        let conf = confidences(ctx.data, test, &f.temps);
        run.outcomes = test.iter().map(|&i| idk_step(ctx, f, &conf, i)).collect();
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
