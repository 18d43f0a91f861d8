//! DeepDecision (Ran et al., "DeepDecision: A Mobile Deep Learning Framework for Edge Video
//! Analytics", INFOCOM 2018): per input, decide between running a model on the device and
//! offloading at one of several upload resolutions and qualities, from the currently measured
//! network bandwidth, to maximise accuracy subject to a latency limit. Here the candidates
//! are every local variant and every remote option of the profile; accuracy and mean costs
//! come from the training images; the bandwidth is what the device measured over the last
//! second of the link (constant, or a mahimahi trace); the predicted latency of an upload is
//! compute + bytes / bandwidth + RTT + server time. When nothing meets the limit, the
//! fastest prediction wins.

use super::mcdnn::Choice;
use super::{Contender, Context};
use crate::error::{Error, Result};
use crate::network::REPLY_BYTES;
use crate::outcome::{Family, PolicyRun};

#[derive(Debug, Clone, Copy)]
struct Profiled {
    choice: Choice,
    top1: f64,
    /// Device compute before any transfer (decode, encode or local model), device ms.
    compute_ms: f64,
    /// Mean upload bytes (0 for local).
    bytes: f64,
    /// Server time, device-scaled ms (0 for local).
    server_ms: f64,
}

/// The DeepDecision policy.
#[derive(Default)]
pub struct DeepDecision {
    table: Vec<Profiled>,
}

impl DeepDecision {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Contender for DeepDecision {
    fn label(&self) -> String {
        "DeepDecision".into()
    }

    fn fit(&mut self, ctx: &Context, train: &[usize]) -> Result<()> {
        let d = ctx.data;
        let n = train.len().max(1) as f64;
        let scale = ctx.device.compute.latency_scale;
        let mean = |f: &dyn Fn(usize) -> f64| train.iter().map(|&i| f(i)).sum::<f64>() / n;
        self.table = Choice::all(ctx)
            .into_iter()
            .map(|choice| match choice {
                Choice::Local(col) => {
                    let v = &d.variants[col];
                    Profiled {
                        choice,
                        top1: mean(&|i| f64::from(u8::from(v.correct[i]))),
                        compute_ms: mean(&|i| (d.decode_ms[i] + v.stage_ms) * scale),
                        bytes: 0.0,
                        server_ms: 0.0,
                    }
                }
                Choice::Remote(r) => {
                    let o = &d.remote[r];
                    Profiled {
                        choice,
                        top1: mean(&|i| f64::from(u8::from(o.correct[i]))),
                        compute_ms: mean(&|i| (d.decode_ms[i] + o.encode_ms[i]) * scale),
                        bytes: mean(&|i| o.upload_bytes[i]),
                        server_ms: o.server_ms * ctx.device.server.latency_scale,
                    }
                }
            })
            .collect();
        Ok(())
    }

    fn run(&self, ctx: &Context, test: &[usize]) -> Result<Vec<PolicyRun>> {
        if self.table.is_empty() {
            return Err(Error::InvalidArgument("DeepDecision run before fit".into()));
        }
        let limit = ctx.settings.latency_limit_ms;
        let mut run = PolicyRun::new(
            "deepdecision",
            Family::Deepdecision,
            format!(
                "most accurate local variant or upload option whose predicted latency at the measured bandwidth is <= {limit:.1} ms"
            ),
        );
        for &i in test {
            let bw = ctx.link.measured_up_mbps(ctx.arrival_ms(i)).max(1e-3);
            let predicted = |p: &Profiled| match p.choice {
                Choice::Local(_) => p.compute_ms,
                Choice::Remote(_) => {
                    p.compute_ms
                        + (p.bytes + REPLY_BYTES) * 8.0 / (bw * 1e3)
                        + ctx.link.rtt_ms
                        + p.server_ms
                }
            };
            let choice = self
                .table
                .iter()
                .filter(|p| predicted(p) <= limit)
                .max_by(|a, b| {
                    a.top1
                        .total_cmp(&b.top1)
                        .then(predicted(b).total_cmp(&predicted(a)))
                })
                .or_else(|| {
                    self.table
                        .iter()
                        .min_by(|a, b| predicted(a).total_cmp(&predicted(b)))
                })
                .map_or(Choice::Local(0), |p| p.choice);
            run.outcomes.push(choice.outcome(ctx, i));
        }
        Ok(vec![run])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policies::testdata::Fixture;

    #[test]
    fn a_fast_link_offloads_and_a_tight_limit_stays_local() {
        let mut fx = Fixture::new(30);
        let all: Vec<usize> = (0..30).collect();
        fx.settings.latency_limit_ms = 1e6;
        let ctx = fx.ctx();
        let mut dd = DeepDecision::new();
        dd.fit(&ctx, &all).unwrap();
        // The fixture's remote option is the most accurate: with no limit it is always used.
        let run = dd.run(&ctx, &all).unwrap().remove(0);
        assert!(run.outcomes.iter().all(|o| o.upload_bytes > 0.0));
        fx.settings.latency_limit_ms = 0.0;
        let ctx = fx.ctx();
        let run = dd.run(&ctx, &all).unwrap().remove(0);
        assert!(run.outcomes.iter().all(|o| o.upload_bytes == 0.0));
    }
}
