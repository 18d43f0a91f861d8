//! MCDNN's greedy scheduler (Han et al., "MCDNN: An Approximation-Based Execution Framework
//! for Deep Stream Processing Under Resource Constraints", MobiSys 2016): for each request,
//! run the most accurate model variant (local, or in the cloud) whose cost fits the paced
//! remaining budget, `allowed = remaining budget / remaining requests`; when nothing fits,
//! the cheapest. Accuracy and expected cost per variant come from the training images; the
//! budget is charged what each image actually cost.

use super::{summarize, Contender, Context};
use crate::error::{Error, Result};
use crate::outcome::{Family, Outcome, PolicyRun};

/// A way to handle an image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Choice {
    Local(usize),
    Remote(usize),
}

impl Choice {
    pub(crate) fn outcome(self, ctx: &Context, i: usize) -> Outcome {
        match self {
            Choice::Local(col) => ctx.single(i, col),
            Choice::Remote(r) => ctx.remote(i, ctx.data.decode_ms[i], r),
        }
    }

    pub(crate) fn all(ctx: &Context) -> Vec<Choice> {
        (0..ctx.data.n_variants())
            .map(Choice::Local)
            .chain((0..ctx.data.remote.len()).map(Choice::Remote))
            .collect()
    }
}

/// What the training images say about one choice.
#[derive(Debug, Clone, Copy)]
struct Profiled {
    choice: Choice,
    top1: f64,
    energy_mj: f64,
    usd: f64,
}

/// The MCDNN greedy policy under an energy (and optionally cloud-cost) budget per image.
#[derive(Default)]
pub struct Mcdnn {
    table: Vec<Profiled>,
}

impl Mcdnn {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Contender for Mcdnn {
    fn label(&self) -> String {
        "MCDNN greedy".into()
    }

    fn fit(&mut self, ctx: &Context, train: &[usize]) -> Result<()> {
        self.table = Choice::all(ctx)
            .into_iter()
            .map(|choice| {
                let outs: Vec<Outcome> = train.iter().map(|&i| choice.outcome(ctx, i)).collect();
                let (top1, energy_mj) = summarize(&outs, |o| o.energy_mj);
                let usd = summarize(&outs, |o| o.usd).1;
                Profiled {
                    choice,
                    top1,
                    energy_mj,
                    usd,
                }
            })
            .collect();
        Ok(())
    }

    fn run(&self, ctx: &Context, test: &[usize]) -> Result<Vec<PolicyRun>> {
        if self.table.is_empty() {
            return Err(Error::InvalidArgument("MCDNN run before fit".into()));
        }
        let s = ctx.settings;
        let n = test.len() as f64;
        let mut energy_left = s.energy_budget_mj * n;
        let mut usd_left = s.usd_budget_per_image.map(|u| u * n);
        let mut run = PolicyRun::new(
            "mcdnn-greedy",
            Family::Mcdnn,
            format!(
                "most accurate local variant or remote option whose training-mean cost fits the paced budget of {:.1} mJ/image{}",
                s.energy_budget_mj,
                s.usd_budget_per_image
                    .map(|u| format!(" and ${:.4}/1000 images", u * 1000.0))
                    .unwrap_or_default()
            ),
        );
        let cheapest = self
            .table
            .iter()
            .min_by(|a, b| a.energy_mj.total_cmp(&b.energy_mj))
            .map(|p| p.choice)
            .unwrap_or(Choice::Local(0));
        for (k, &i) in test.iter().enumerate() {
            let remaining = (n - k as f64).max(1.0);
            let allowed = energy_left / remaining;
            let allowed_usd = usd_left.map(|u| u / remaining);
            let choice = self
                .table
                .iter()
                .filter(|p| p.energy_mj <= allowed && allowed_usd.is_none_or(|u| p.usd <= u))
                .max_by(|a, b| {
                    a.top1
                        .total_cmp(&b.top1)
                        .then(b.energy_mj.total_cmp(&a.energy_mj))
                })
                .map_or(cheapest, |p| p.choice);
            let o = choice.outcome(ctx, i);
            energy_left -= o.energy_mj;
            if let Some(u) = usd_left.as_mut() {
                *u -= o.usd;
            }
            run.outcomes.push(o);
        }
        Ok(vec![run])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policies::testdata::Fixture;

    #[test]
    fn pacing_keeps_spending_near_the_budget() {
        let mut fx = Fixture::new(80);
        let all: Vec<usize> = (0..80).collect();
        // A budget between the cheapest and the dearest variant.
        let lo = fx.ctx().single(0, 0).energy_mj;
        let hi = fx.ctx().single(0, 2).energy_mj;
        fx.settings.energy_budget_mj = (lo + hi) / 2.0;
        let ctx = fx.ctx();
        let mut m = Mcdnn::new();
        m.fit(&ctx, &all).unwrap();
        let run = m.run(&ctx, &all).unwrap().remove(0);
        let spent: f64 = run.outcomes.iter().map(|o| o.energy_mj).sum();
        let budget = fx.settings.energy_budget_mj * 80.0;
        assert!(spent <= budget * 1.05, "{spent} > {budget}");
        // It used more than the cheapest variant alone would have.
        assert!(spent > lo * 80.0);
    }
}
