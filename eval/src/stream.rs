//! Triage in a budgeted stream: the runtime walks the plan's ladder of operating points,
//! MCDNN-style, choosing per image the most accurate point whose expected energy fits the
//! paced remaining budget (`remaining budget / remaining images`), and is charged what the
//! image actually cost. Built from the per-image outcomes of every point, so it is as
//! out-of-fold as they are.

use serde::{Deserialize, Serialize};
use triage_compiler::device::Device;
use triage_compiler::plan::Plan;

use crate::outcome::{Family, PolicyRun};

/// The paced stream over the evaluated sequence.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stream {
    pub energy_budget_mj: f64,
    /// Ladder point names, cheapest first (the `level` of each outcome indexes this).
    pub points: Vec<String>,
    /// Per image: the ladder point used.
    pub level: Vec<usize>,
    /// Per image: cumulative energy spent, mJ.
    pub cumulative_mj: Vec<f64>,
    pub run: PolicyRun,
}

/// Simulates the paced stream; `None` when the runs hold no point of the plan.
pub fn paced(
    plan: &Plan,
    device: &Device,
    runs: &[PolicyRun],
    energy_budget_mj: f64,
) -> Option<Stream> {
    let ladder: Vec<(usize, &PolicyRun)> = plan
        .points
        .iter()
        .enumerate()
        .filter_map(|(k, p)| {
            runs.iter()
                .find(|r| r.family == Family::Triage && r.name == format!("triage {}", p.name))
                .map(|r| (k, r))
        })
        .collect();
    let n = ladder.first()?.1.outcomes.len();
    let host_ms = |k: usize| plan.points[k].expected.mean_ms / plan.device.compute.latency_scale;
    // Expected energy of each point on the evaluated device (the plan's expected latency is
    // on the plan's device).
    let expected_mj = |k: usize| device.compute_mj(host_ms(k));
    let cheapest = ladder
        .iter()
        .min_by(|a, b| expected_mj(a.0).total_cmp(&expected_mj(b.0)))
        .map(|x| x.0)?;
    let mut run = PolicyRun::new(
        "triage paced",
        Family::Triage,
        format!(
            "walks the plan's {} operating points, per image the most accurate whose expected energy fits the paced budget of {energy_budget_mj:.1} mJ/image",
            ladder.len()
        ),
    );
    let mut level = Vec::with_capacity(n);
    let mut cumulative = Vec::with_capacity(n);
    let mut spent = 0.0;
    for k in 0..n {
        let allowed = (energy_budget_mj * n as f64 - spent) / (n - k) as f64;
        let pick = ladder
            .iter()
            .filter(|(p, _)| expected_mj(*p) <= allowed)
            .max_by(|a, b| {
                plan.points[a.0]
                    .expected
                    .top1
                    .total_cmp(&plan.points[b.0].expected.top1)
                    .then(host_ms(b.0).total_cmp(&host_ms(a.0)))
            })
            .map_or(cheapest, |x| x.0);
        let Some((_, r)) = ladder.iter().find(|(p, _)| *p == pick) else {
            continue;
        };
        let Some(mut o) = r.outcomes.get(k).copied() else {
            continue;
        };
        o.level = Some(pick);
        spent += o.energy_mj;
        level.push(pick);
        cumulative.push(spent);
        run.outcomes.push(o);
    }
    Some(Stream {
        energy_budget_mj,
        points: plan.points.iter().map(|p| p.name.clone()).collect(),
        level,
        cumulative_mj: cumulative,
        run,
    })
}
