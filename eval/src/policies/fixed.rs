//! Policies that learn nothing: every single variant, always-remote at every upload option,
//! the oracle and a seeded random choice.

use triage_premodel::rng::SplitMix64;

use super::{Contender, Context};
use crate::error::Result;
use crate::outcome::{Family, PolicyRun};

/// Every single variant, every remote option, the oracle and random choice.
pub struct Fixed;

impl Contender for Fixed {
    fn label(&self) -> String {
        "single variants, remote options, oracle, random".into()
    }

    fn fit(&mut self, _: &Context, _: &[usize]) -> Result<()> {
        Ok(())
    }

    fn run(&self, ctx: &Context, test: &[usize]) -> Result<Vec<PolicyRun>> {
        let d = ctx.data;
        let mut runs = Vec::new();
        for (col, v) in d.variants.iter().enumerate() {
            let mut run = PolicyRun::new(
                v.name.clone(),
                Family::Single,
                format!("always run {} on the device", v.name),
            );
            run.outcomes = test.iter().map(|&i| ctx.single(i, col)).collect();
            runs.push(run);
        }
        for (r, opt) in d.remote.iter().enumerate() {
            let mut run = PolicyRun::new(
                format!("remote {}", opt.name),
                Family::Remote,
                format!(
                    "always upload with option {} (server {:.1} ms on the profiling host)",
                    opt.name, opt.server_ms
                ),
            );
            run.outcomes = test
                .iter()
                .map(|&i| ctx.remote(i, d.decode_ms[i], r))
                .collect();
            runs.push(run);
        }
        let mut oracle = PolicyRun::new(
            "oracle",
            Family::Oracle,
            "per image the cheapest local variant that is right (the cheapest when none is): an upper bound no real policy reaches",
        );
        oracle.outcomes = test
            .iter()
            .map(|&i| {
                let col = d.variants.iter().position(|v| v.correct[i]).unwrap_or(0);
                ctx.single(i, col)
            })
            .collect();
        runs.push(oracle);
        let mut random = PolicyRun::new(
            "random",
            Family::Random,
            format!(
                "a local variant drawn uniformly per image (seed {})",
                ctx.settings.seed
            ),
        );
        random.outcomes = test
            .iter()
            .map(|&i| {
                // Seeded per image, so the draw for an image does not depend on the fold.
                let mut rng = SplitMix64::derive(ctx.settings.seed, i as u64);
                ctx.single(i, rng.below(d.n_variants()))
            })
            .collect();
        runs.push(random);
        Ok(runs)
    }
}
