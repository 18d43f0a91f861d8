//! The policies compared, each implemented from its paper's description, behind one
//! [`Contender`] interface: fit on training images, then run on held-out images in sequence
//! order. A contender may produce several policies (e.g. one per variant, or one per Triage
//! operating point) from one fit.

pub mod cascade;
pub mod deepdecision;
pub mod fixed;
pub mod mcdnn;
pub mod taylor;
pub mod triage;

use triage_compiler::device::Device;

use crate::data::EvalData;
use crate::error::{Error, Result};
use crate::network::{Link, REPLY_BYTES};
use crate::outcome::{Answer, Outcome, PolicyRun};

/// Knobs shared by the policies.
#[derive(Debug, Clone)]
pub struct Settings {
    pub seed: u64,
    /// Energy budget per image (mJ) for budgeted policies (MCDNN, the paced Triage stream).
    pub energy_budget_mj: f64,
    /// Cloud budget per image (USD), if any.
    pub usd_budget_per_image: Option<f64>,
    /// Per-image latency limit (device ms) for DeepDecision.
    pub latency_limit_ms: f64,
    /// Threshold-fitted cascades aim at the most accurate single variant's training top-1
    /// minus this (fraction), the same target as Triage's `match-best` point.
    pub match_tolerance: f64,
    /// Taylor et al.'s premodel runs the cheapest variant predicted right with at least this
    /// probability.
    pub min_prob: f32,
}

/// Everything a policy may look at while running: the replay data, the device and the link.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub data: &'a EvalData,
    pub device: &'a Device,
    pub link: &'a Link,
    pub settings: &'a Settings,
}

impl Context<'_> {
    /// Checks that the link's radio exists in the device profile.
    pub fn validate(&self) -> Result<()> {
        if !self.device.radio.contains_key(&self.link.radio) {
            return Err(Error::InvalidArgument(format!(
                "device {} has no [radio.{}] table (it has: {})",
                self.device.name,
                self.link.radio,
                self.device
                    .radio
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(())
    }

    /// When image `i` arrives, ms since the start of the sequence.
    pub fn arrival_ms(&self, i: usize) -> f64 {
        i as f64 * self.device.request_interval_ms
    }

    /// An image handled on the device alone after `host_ms` of profiled-host compute.
    pub fn local(
        &self,
        i: usize,
        host_ms: f64,
        correct: bool,
        top5: bool,
        answer: Answer,
    ) -> Outcome {
        Outcome {
            image: i,
            correct,
            top5,
            latency_ms: host_ms * self.device.compute.latency_scale,
            energy_mj: self.device.compute_mj(host_ms),
            usd: 0.0,
            upload_bytes: 0.0,
            answer,
            level: None,
        }
    }

    /// Running local variant `col` alone on image `i` (decode included).
    pub fn single(&self, i: usize, col: usize) -> Outcome {
        let v = &self.data.variants[col];
        self.local(
            i,
            self.data.decode_ms[i] + v.stage_ms,
            v.correct[i],
            v.top5[i],
            Answer::Local(col),
        )
    }

    /// Offloading image `i` with remote option `r` after `local_host_ms` of device compute
    /// (decode, and whatever ran locally first).
    pub fn remote(&self, i: usize, local_host_ms: f64, r: usize) -> Outcome {
        let d = self.data;
        let opt = &d.remote[r];
        let host = local_host_ms + opt.encode_ms[i];
        let scale = self.device.compute.latency_scale;
        let bytes = opt.upload_bytes[i];
        let t = self.link.transfer(self.arrival_ms(i) + host * scale, bytes);
        let (radio_mj, _) = self
            .device
            .radio_cost(&self.link.radio, bytes, REPLY_BYTES, t.up_mbps, t.down_mbps)
            .unwrap_or((0.0, 0.0));
        Outcome {
            image: i,
            correct: opt.correct[i],
            top5: opt.top5[i],
            latency_ms: host * scale + t.ms + opt.server_ms * self.device.server.latency_scale,
            energy_mj: self.device.compute_mj(host) + radio_mj,
            usd: self.device.server_usd(opt.server_ms),
            upload_bytes: bytes,
            answer: Answer::Remote(r),
            level: None,
        }
    }
}

/// A policy family that learns something on training images and is then run on held-out
/// images. `run` receives images in sequence order and returns one [`PolicyRun`] per policy,
/// with the same names on every call.
pub trait Contender {
    /// Short label for progress output.
    fn label(&self) -> String;
    /// Fits whatever the policies learn, from `train` (indices into `ctx.data`) only.
    fn fit(&mut self, ctx: &Context, train: &[usize]) -> Result<()>;
    /// Runs the fitted policies on `test`.
    fn run(&self, ctx: &Context, test: &[usize]) -> Result<Vec<PolicyRun>>;
}

/// Mean top-1 and mean of `cost` of outcomes.
pub(crate) fn summarize(outcomes: &[Outcome], cost: impl Fn(&Outcome) -> f64) -> (f64, f64) {
    let n = outcomes.len().max(1) as f64;
    (
        outcomes.iter().filter(|o| o.correct).count() as f64 / n,
        outcomes.iter().map(cost).sum::<f64>() / n,
    )
}

/// The cheapest candidate whose top-1 reaches `target`, else the most accurate one (ties:
/// cheaper). Candidates are `(top1, cost)`.
pub(crate) fn cheapest_reaching(candidates: &[(f64, f64)], target: f64) -> Option<usize> {
    let reaching = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.0 >= target - 1e-12)
        .min_by(|a, b| a.1 .1.total_cmp(&b.1 .1).then(b.1 .0.total_cmp(&a.1 .0)))
        .map(|(k, _)| k);
    reaching.or_else(|| {
        candidates
            .iter()
            .enumerate()
            .max_by(|a, b| a.1 .0.total_cmp(&b.1 .0).then(b.1 .1.total_cmp(&a.1 .1)))
            .map(|(k, _)| k)
    })
}

/// Training top-1 of the most accurate single variant.
pub(crate) fn best_single_top1(data: &EvalData, train: &[usize]) -> f64 {
    let n = train.len().max(1) as f64;
    data.variants
        .iter()
        .map(|v| train.iter().filter(|&&i| v.correct[i]).count() as f64 / n)
        .fold(0.0, f64::max)
}

#[cfg(test)]
pub(crate) mod testdata;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cheapest_reaching_prefers_cheap_then_accurate() {
        let c = [(0.7, 1.0), (0.8, 2.0), (0.81, 5.0)];
        assert_eq!(cheapest_reaching(&c, 0.8), Some(1));
        assert_eq!(cheapest_reaching(&c, 0.9), Some(2));
        assert_eq!(cheapest_reaching(&[], 0.5), None);
    }
}
