//! Live evaluation: the embedded runtime ([`triage_runtime::Runtime`]) classifies real image
//! files at every operating point of a plan, and what actually happened (its answers, its
//! measured wall time per request, the energy and cloud cost it booked, what it uploaded)
//! becomes the same per-image [`Outcome`] records the replay produces, so the same metrics,
//! table and report read them.
//!
//! [`replay_same_images`] replays the plan's points on a profile of the same image files and
//! [`compare`] lines the two up per point: the check that the compiler's expectations (which
//! come from replay) describe what the runtime does.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tracing::warn;
use triage_compiler::device::Device;
use triage_compiler::plan::Plan;
use triage_compiler::profile::Profile;
use triage_runtime::{Preference, Request, Runtime};

use crate::data::EvalData;
use crate::error::{Error, Result};
use crate::harness::Progress;
use crate::network::Link;
use crate::outcome::{Answer, Family, Outcome, OutcomeSource, PolicyRun};
use crate::policies::triage::TriagePoints;
use crate::policies::{Contender, Context, Settings};

/// One labelled image file to classify.
#[derive(Debug, Clone)]
pub struct LiveImage {
    pub path: PathBuf,
    /// Path relative to the dataset root (as profiles record it).
    pub rel: String,
    pub label: usize,
}

/// An image the runtime could not classify, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failure {
    pub image: String,
    pub error: String,
}

/// The runtime as an [`OutcomeSource`]: every selected point of its plan on every image.
pub struct Live<'a> {
    pub runtime: &'a Runtime,
    pub images: &'a [LiveImage],
    /// Plan points to run, by index; every point when empty.
    pub points: Vec<usize>,
    pub progress: &'a dyn Progress,
    /// Images dropped from every run because a request on them failed (filled by `runs`).
    pub failures: Vec<Failure>,
    /// Positions in `images` of the images every run covers (filled by `runs`).
    pub kept: Vec<usize>,
}

impl<'a> Live<'a> {
    pub fn new(runtime: &'a Runtime, images: &'a [LiveImage], progress: &'a dyn Progress) -> Self {
        Live {
            runtime,
            images,
            points: Vec::new(),
            progress,
            failures: Vec::new(),
            kept: Vec::new(),
        }
    }

    fn selected_points(&self) -> Result<Vec<usize>> {
        let n = self.runtime.plan().points.len();
        if self.points.is_empty() {
            return Ok((0..n).collect());
        }
        match self.points.iter().find(|&&k| k >= n) {
            Some(k) => Err(Error::InvalidArgument(format!(
                "point index {k} is out of range: the plan has {n} points"
            ))),
            None => Ok(self.points.clone()),
        }
    }
}

/// The eval record of one runtime answer for image `pos` (labelled `label`).
fn to_outcome(plan: &Plan, pos: usize, label: usize, o: &triage_runtime::Outcome) -> Outcome {
    let answer = if o.answered_remotely {
        let name = o.remote.as_ref().map(|r| r.option.as_str()).unwrap_or("");
        Answer::Remote(plan.remote.iter().position(|r| r.name == name).unwrap_or(0))
    } else {
        let idx = |name: &String| plan.variants.iter().position(|v| &v.name == name);
        let run: Vec<usize> = o.variants_run.iter().filter_map(idx).collect();
        match run.as_slice() {
            [] => Answer::Local(0),
            [only] => Answer::Local(*only),
            [.., last] => Answer::Local(*last),
        }
    };
    Outcome {
        image: pos,
        correct: o.class == label,
        top5: o.top5.iter().any(|&(c, _)| c == label),
        latency_ms: o.latency_ms,
        energy_mj: o.energy_mj,
        usd: o.usd,
        upload_bytes: o.remote.as_ref().map_or(0.0, |r| r.upload_bytes as f64),
        answer,
        level: Some(o.point_index),
    }
}

impl OutcomeSource for Live<'_> {
    fn describe(&self) -> String {
        format!(
            "live run of the runtime on {} image files, every request timed end to end (file read, decode, features, every variant, any upload) on this host",
            self.images.len()
        )
    }

    fn runs(&mut self) -> Result<Vec<PolicyRun>> {
        let plan = self.runtime.plan();
        let points = self.selected_points()?;
        if self.images.is_empty() {
            return Err(Error::InvalidArgument("no images to evaluate".into()));
        }
        // Warm up: load every variant a point may run before anything is timed.
        for &k in &points {
            let req = Request {
                preference: Preference::Point(k),
                ..Request::default()
            };
            for img in self.images.iter().take(3) {
                if self.runtime.classify_file(&img.path, &req).is_ok() {
                    break;
                }
            }
        }
        // Image-major: every point classifies an image before the next image, in an order
        // rotated per image, so bursts of interference on a shared host spread over all
        // points instead of landing on whichever point happens to run then.
        let mut failed = vec![false; self.images.len()];
        let mut per_point: Vec<Vec<Option<Outcome>>> =
            vec![vec![None; self.images.len()]; points.len()];
        self.progress.start(
            "classifying live",
            (points.len() * self.images.len()) as u64,
        );
        for (pos, img) in self.images.iter().enumerate() {
            for r in 0..points.len() {
                let slot = (pos + r) % points.len();
                let k = points[slot];
                let req = Request {
                    preference: Preference::Point(k),
                    ..Request::default()
                };
                self.runtime.probe_if_stale();
                match self.runtime.classify_file(&img.path, &req) {
                    Ok(o) => per_point[slot][pos] = Some(to_outcome(plan, pos, img.label, &o)),
                    Err(e) => {
                        if !failed[pos] {
                            warn!("{}: {e}", img.path.display());
                            self.failures.push(Failure {
                                image: img.rel.clone(),
                                error: e.to_string(),
                            });
                        }
                        failed[pos] = true;
                    }
                }
                self.progress.step(&plan.points[k].name);
            }
        }
        self.progress.finish();
        self.kept = (0..self.images.len()).filter(|&i| !failed[i]).collect();
        if self.kept.is_empty() {
            return Err(Error::InvalidArgument(
                "the runtime could not classify any image".into(),
            ));
        }
        let mut runs = Vec::new();
        for (&k, outs) in points.iter().zip(per_point) {
            let point = &plan.points[k];
            let mut run = PolicyRun::new(
                format!("triage {}", point.name),
                Family::Triage,
                format!(
                    "operating point '{}' executed by the runtime (live)",
                    point.name
                ),
            );
            for (new_pos, &pos) in self.kept.iter().enumerate() {
                if let Some(mut o) = outs[pos] {
                    o.image = new_pos;
                    run.outcomes.push(o);
                }
            }
            runs.push(run);
        }
        Ok(runs)
    }
}

fn file_name(rel: &str) -> &str {
    rel.rsplit(['/', '\\']).next().unwrap_or(rel)
}

/// Replays `plan`'s points (as compiled, no refitting) on the profiled measurements of the
/// image files `rels`, in that order. Every file must have been measured by `profile`.
///
/// When the plan was compiled from `profile` this replay is in-sample for the plan; that is
/// what a comparison with a live run of the same plan on the same files wants. Without
/// `offload` (a live run with no server) the points' offloading tables are left out, as the
/// runtime cannot use them either.
pub fn replay_same_images(
    plan: &Plan,
    profile: &Profile,
    rels: &[&str],
    device: &Device,
    link: &Link,
    offload: bool,
) -> Result<Vec<PolicyRun>> {
    let mut plan = plan.clone();
    if !offload {
        for p in &mut plan.points {
            p.offload = None;
        }
    }
    let plan = &plan;
    let data = EvalData::from_profile(profile, None)?;
    let by_name: HashMap<&str, usize> = data
        .rel
        .iter()
        .enumerate()
        .map(|(i, r)| (file_name(r), i))
        .collect();
    let idx: Vec<usize> = rels
        .iter()
        .map(|r| {
            by_name.get(file_name(r)).copied().ok_or_else(|| {
                Error::Mismatch(format!(
                    "{r} was not measured by the profile of {}",
                    profile.header.dataset.root
                ))
            })
        })
        .collect::<Result<_>>()?;
    let settings = Settings {
        seed: 0,
        energy_budget_mj: 1.0,
        usd_budget_per_image: None,
        latency_limit_ms: f64::INFINITY,
        match_tolerance: 0.003,
        min_prob: 0.5,
    };
    let ctx = Context {
        data: &data,
        device,
        link,
        settings: &settings,
    };
    let mut runs = TriagePoints::fixed(plan).run(&ctx, &idx)?;
    let pos: HashMap<usize, usize> = idx.iter().enumerate().map(|(p, &i)| (i, p)).collect();
    for r in &mut runs {
        for o in &mut r.outcomes {
            o.image = pos.get(&o.image).copied().unwrap_or(o.image);
        }
        r.outcomes.sort_by_key(|o| o.image);
    }
    Ok(runs)
}

/// One operating point live and replayed on the same images.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LiveVsReplay {
    pub policy: String,
    pub n_images: usize,
    pub live_top1: f64,
    pub replay_top1: f64,
    /// Images right in one and wrong in the other.
    pub disagreements: usize,
    pub live_mean_ms: f64,
    pub replay_mean_ms: f64,
    /// Live mean latency over replayed mean latency.
    pub latency_ratio: f64,
    pub live_offloaded: f64,
}

/// Pairs live and replayed runs by policy name, over the images both cover.
pub fn compare(live: &[PolicyRun], replay: &[PolicyRun]) -> Vec<LiveVsReplay> {
    let mut rows = Vec::new();
    for l in live {
        let Some(r) = replay.iter().find(|r| r.name == l.name) else {
            continue;
        };
        let by_image: HashMap<usize, &Outcome> = r.outcomes.iter().map(|o| (o.image, o)).collect();
        let pairs: Vec<(&Outcome, &Outcome)> = l
            .outcomes
            .iter()
            .filter_map(|o| by_image.get(&o.image).map(|&p| (o, p)))
            .collect();
        if pairs.is_empty() {
            continue;
        }
        let n = pairs.len() as f64;
        let mean = |f: &dyn Fn(&(&Outcome, &Outcome)) -> f64| pairs.iter().map(f).sum::<f64>() / n;
        let live_mean_ms = mean(&|(a, _)| a.latency_ms);
        let replay_mean_ms = mean(&|(_, b)| b.latency_ms);
        rows.push(LiveVsReplay {
            policy: l.name.clone(),
            n_images: pairs.len(),
            live_top1: mean(&|(a, _)| f64::from(u8::from(a.correct))),
            replay_top1: mean(&|(_, b)| f64::from(u8::from(b.correct))),
            disagreements: pairs.iter().filter(|(a, b)| a.correct != b.correct).count(),
            live_mean_ms,
            replay_mean_ms,
            latency_ratio: if replay_mean_ms > 0.0 {
                live_mean_ms / replay_mean_ms
            } else {
                f64::NAN
            },
            live_offloaded: mean(&|(a, _)| {
                f64::from(u8::from(matches!(a.answer, Answer::Remote(_))))
            }),
        });
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str, flags: &[(bool, f64)]) -> PolicyRun {
        let mut r = PolicyRun::new(name, Family::Triage, "");
        for (i, &(correct, ms)) in flags.iter().enumerate() {
            r.outcomes.push(Outcome {
                image: i,
                correct,
                top5: true,
                latency_ms: ms,
                energy_mj: 1.0,
                usd: 0.0,
                upload_bytes: 0.0,
                answer: Answer::Local(0),
                level: None,
            });
        }
        r
    }

    #[test]
    fn compare_pairs_by_name_and_image() {
        let live = vec![
            run("triage a", &[(true, 11.0), (false, 9.0), (true, 10.0)]),
            run("triage b", &[(true, 1.0)]),
        ];
        let replay = vec![run("triage a", &[(true, 10.0), (true, 10.0), (true, 10.0)])];
        let rows = compare(&live, &replay);
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(r.n_images, 3);
        assert_eq!(r.disagreements, 1);
        assert!((r.live_top1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.replay_top1, 1.0);
        assert!((r.latency_ratio - 1.0).abs() < 1e-12);
    }

    #[test]
    fn file_names_match_across_layouts() {
        assert_eq!(
            file_name("n01440764/ILSVRC2012_val_00000293.JPEG"),
            "ILSVRC2012_val_00000293.JPEG"
        );
        assert_eq!(
            file_name("ILSVRC2012_val_00000293.JPEG"),
            "ILSVRC2012_val_00000293.JPEG"
        );
    }
}
