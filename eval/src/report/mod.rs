//! The evaluation report: `report.json` (schema [`SCHEMA`]), `report.md` for a reader who
//! never ran the tool, and the figures of [`plots`].

pub mod plots;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use triage_compiler::device::Device;
use triage_compiler::plan::Plan;

use crate::data::EvalData;
use crate::error::{Error, Result};
use crate::evaluate::CalibrationRow;
use crate::harness::Mode;
use crate::live::{Failure, LiveVsReplay};
use crate::metrics::PolicyMetrics;
use crate::network::Link;
use crate::outcome::Family;
use crate::policies::Settings;
use crate::stream::Stream;

/// Version tag of the JSON output.
pub const SCHEMA: &str = "triage.eval/1";

/// The paced stream without its per-image outcomes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamSummary {
    pub energy_budget_mj: f64,
    pub points: Vec<String>,
    pub level: Vec<usize>,
    pub cumulative_mj: Vec<f64>,
}

/// What was evaluated, on what, and the results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub n_images: usize,
    /// `cv-K` or `holdout`.
    pub mode: String,
    pub source: String,
    pub dataset_root: String,
    pub dataset_identity: String,
    pub profile_sha256: String,
    pub images_failed: usize,
    /// `corruption.toml` of a `triage data corrupt` copy, when the dataset is one.
    pub corruption: Option<String>,
    pub profiling_host: String,
    pub training_images: Option<usize>,
    pub device: String,
    pub device_description: String,
    pub latency_scale: f64,
    pub link: String,
    pub plan_points: Vec<String>,
    pub plan_default_point: String,
    pub plan_profiles: Vec<String>,
    pub plan_n_images: usize,
    pub energy_budget_mj: f64,
    pub latency_limit_ms: f64,
    pub usd_budget_per_1000: Option<f64>,
    pub bootstrap: usize,
    pub seed: u64,
    pub policies: Vec<PolicyMetrics>,
    pub calibration: Vec<CalibrationRow>,
    pub stream: Option<StreamSummary>,
    pub caveats: Vec<String>,
    /// Live mode: each operating point live against its replay on the same images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub live_vs_replay: Vec<LiveVsReplay>,
    /// Live mode: images the runtime could not classify (left out of every policy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub live_failures: Vec<Failure>,
}

/// Inputs of [`Report::live`].
pub struct LiveReportInputs<'a> {
    pub plan: &'a Plan,
    pub dataset_root: String,
    pub dataset_identity: String,
    pub source: String,
    /// What the runtime offloaded through, in words.
    pub network: String,
    pub bootstrap: usize,
    pub seed: u64,
    /// Reference energy per image of the budget column, mJ.
    pub energy_budget_mj: f64,
    pub metrics: Vec<PolicyMetrics>,
    pub failures: Vec<Failure>,
    pub live_vs_replay: Vec<LiveVsReplay>,
    /// The sha256 of the profile replayed for the comparison, if any.
    pub replay_profile_sha256: Option<String>,
}

/// Inputs of [`Report::new`].
pub struct ReportInputs<'a> {
    pub plan: &'a Plan,
    pub device: &'a Device,
    pub link: &'a Link,
    pub data: &'a EvalData,
    pub train: Option<&'a EvalData>,
    pub test_sha256: &'a str,
    pub mode: &'a Mode,
    pub source: String,
    pub settings: &'a Settings,
    pub bootstrap: usize,
    pub metrics: Vec<PolicyMetrics>,
    pub calibration: Vec<CalibrationRow>,
    pub stream: Option<Stream>,
}

fn pct(x: f64) -> String {
    format!("{:.1}", 100.0 * x)
}

impl Report {
    pub fn new(i: ReportInputs) -> Self {
        let corruption =
            std::fs::read_to_string(Path::new(&i.data.dataset_root).join("corruption.toml"))
                .ok()
                .map(|s| s.trim().to_string());
        let mode = match i.mode {
            Mode::CrossValidation { k, .. } => format!("cv-{k}"),
            Mode::Holdout => "holdout".to_string(),
        };
        let mut caveats = vec![
            format!(
                "Latencies are the profiling host's ({}) measured preprocessing and warm single-thread inference medians plus each image's measured decode time, multiplied by the device profile's latency scale ({}); they are not measurements on the device itself. Energy is the device profile's model (compute power x time, plus a radio power model for uploads).",
                i.data.host_cpu, i.device.compute.latency_scale
            ),
            "The shared DEV sample (700 images, one per class of a 1000-image ImageNet sample) is easier than the 50,000-image ImageNet validation set: absolute accuracies are higher than the published ones; compare policies with each other, not with papers.".to_string(),
            "Network figures come from a link model (a constant link or a replayed mahimahi capacity trace plus a fixed RTT), not from live transfers; server time is the profiling host's time for the server variant.".to_string(),
        ];
        match i.mode {
            Mode::CrossValidation { k, .. } => caveats.push(format!(
                "Out of fold: every policy that learns something (temperatures, thresholds, premodels, the whole Triage compile) was fitted on {}/{} of the images and scored on the rest, for each of the {k} folds; the figures are the stitched held-out results. The operating points named in the plan are matched, per fold, by their rule to the ladder compiled on that fold's training images.",
                k - 1, k
            )),
            Mode::Holdout => caveats.push(
                "Held out: the plan and every baseline were fitted on another profile, and scored on this one.".to_string(),
            ),
        }
        if corruption.is_some() {
            caveats.push("The images are a corrupted copy (see the corruption parameters below): a distribution shift the plan was not compiled for.".to_string());
        }
        caveats.push("Confidence intervals are percentile bootstrap intervals over images (seeded); the paired difference against the most accurate single variant resamples the same images for both.".to_string());
        Report {
            schema: SCHEMA.to_string(),
            n_images: i.data.len(),
            mode,
            source: i.source,
            dataset_root: i.data.dataset_root.clone(),
            dataset_identity: i.data.dataset_identity.clone(),
            profile_sha256: i.test_sha256.to_string(),
            images_failed: i.data.n_failed,
            corruption,
            profiling_host: i.data.host_cpu.clone(),
            training_images: i.train.map(|t| t.len()),
            device: i.device.name.clone(),
            device_description: i.device.description.clone(),
            latency_scale: i.device.compute.latency_scale,
            link: i.link.describe(),
            plan_points: i.plan.points.iter().map(|p| p.name.clone()).collect(),
            plan_default_point: i
                .plan
                .points
                .get(i.plan.default_point)
                .map(|p| p.name.clone())
                .unwrap_or_default(),
            plan_profiles: i.plan.provenance.profiles.clone(),
            plan_n_images: i.plan.provenance.n_images,
            energy_budget_mj: i.settings.energy_budget_mj,
            latency_limit_ms: i.settings.latency_limit_ms,
            usd_budget_per_1000: i.settings.usd_budget_per_image.map(|u| u * 1000.0),
            bootstrap: i.bootstrap,
            seed: i.settings.seed,
            policies: i.metrics,
            calibration: i.calibration,
            stream: i.stream.map(|s| StreamSummary {
                energy_budget_mj: s.energy_budget_mj,
                points: s.points,
                level: s.level,
                cumulative_mj: s.cumulative_mj,
            }),
            caveats,
            live_vs_replay: Vec::new(),
            live_failures: Vec::new(),
        }
    }

    /// The report of a live run ([`crate::live`]): what the runtime did, per operating point.
    pub fn live(i: LiveReportInputs) -> Self {
        let device = &i.plan.device;
        let n_images = i.metrics.first().map_or(0, |m| m.n);
        let mut caveats = vec![
            "Latency is the runtime's measured wall time per request on this host (file read, decode, features, every variant run, any upload), warm: every variant was loaded before timing. Energy and cloud cost are what the runtime booked with the plan's device model, not a power meter.".to_string(),
            "Every operating point ran without budgets (the budgets' pacing is exercised by the runtime's own tests and by `triage run`), so each point's figures are its own.".to_string(),
            format!("Offloading: {}.", i.network),
        ];
        if !i.live_vs_replay.is_empty() {
            caveats.push("The replay column replays the same plan on the profile of the same image files; when the plan was compiled from that profile the replay is in-sample for the plan, which is what a live-against-replay check wants, and is not an estimate of accuracy on new images. Replay is local-only: it does not model offloading.".to_string());
        }
        caveats.push(
            "Confidence intervals are percentile bootstrap intervals over images (seeded)."
                .to_string(),
        );
        Report {
            schema: SCHEMA.to_string(),
            n_images,
            mode: "live".to_string(),
            source: i.source,
            dataset_root: i.dataset_root,
            dataset_identity: i.dataset_identity,
            profile_sha256: i.replay_profile_sha256.unwrap_or_default(),
            images_failed: i.failures.len(),
            corruption: None,
            profiling_host: String::new(),
            training_images: None,
            device: device.name.clone(),
            device_description: device.description.clone(),
            latency_scale: 1.0,
            link: i.network,
            plan_points: i.plan.points.iter().map(|p| p.name.clone()).collect(),
            plan_default_point: i
                .plan
                .points
                .get(i.plan.default_point)
                .map(|p| p.name.clone())
                .unwrap_or_default(),
            plan_profiles: i.plan.provenance.profiles.clone(),
            plan_n_images: i.plan.provenance.n_images,
            energy_budget_mj: i.energy_budget_mj,
            latency_limit_ms: 0.0,
            usd_budget_per_1000: None,
            bootstrap: i.bootstrap,
            seed: i.seed,
            policies: i.metrics,
            calibration: Vec::new(),
            stream: None,
            caveats,
            live_vs_replay: i.live_vs_replay,
            live_failures: i.failures,
        }
    }

    /// The live-against-replay table as fixed-width text (empty when there is none).
    pub fn live_table(&self) -> String {
        let mut s = String::new();
        if self.live_vs_replay.is_empty() {
            return s;
        }
        let _ = writeln!(
            s,
            "{:<28}{:>7}{:>11}{:>13}{:>9}{:>10}{:>12}{:>9}{:>10}",
            "live vs replay",
            "images",
            "live top-1",
            "replay top-1",
            "differ",
            "live ms",
            "replay ms",
            "ratio",
            "offloaded"
        );
        for r in &self.live_vs_replay {
            let _ = writeln!(
                s,
                "{:<28}{:>7}{:>11}{:>13}{:>9}{:>10.2}{:>12.2}{:>9.3}{:>10}",
                r.policy,
                r.n_images,
                pct(r.live_top1),
                pct(r.replay_top1),
                r.disagreements,
                r.live_mean_ms,
                r.replay_mean_ms,
                r.latency_ratio,
                pct(r.live_offloaded)
            );
        }
        s
    }

    /// The JSON document (`--json` prints it, `report.json` holds it).
    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// The policy table as fixed-width text, for terminals.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<36}{:<19}{:>7}{:>15}{:>7}{:>9}{:>9}{:>9}{:>9}{:>8}{:>21}{:>8}",
            "policy",
            "family",
            "top-1",
            "95% CI",
            "top-5",
            "ms",
            "p95 ms",
            "mJ",
            "$/1000",
            "kB/img",
            "d top-1 vs best",
            "budget"
        );
        for p in &self.policies {
            let d = p.vs_best_single.as_ref().map_or("-".to_string(), |v| {
                format!(
                    "{:+.1} [{:+.1},{:+.1}]",
                    100.0 * v.delta_top1,
                    100.0 * v.delta_top1_ci95[0],
                    100.0 * v.delta_top1_ci95[1]
                )
            });
            let _ = writeln!(
                s,
                "{:<36}{:<19}{:>7}{:>15}{:>7}{:>9.2}{:>9.2}{:>9.1}{:>9.4}{:>8.1}{:>21}{:>8.2}",
                p.name,
                p.family.name(),
                pct(p.top1),
                format!("{}-{}", pct(p.top1_ci95[0]), pct(p.top1_ci95[1])),
                pct(p.top5),
                p.mean_latency_ms,
                p.p95_latency_ms,
                p.mean_energy_mj,
                p.usd_per_1000,
                p.kb_uploaded_per_image,
                d,
                p.budget.used_fraction
            );
        }
        s
    }

    /// The markdown report.
    pub fn to_markdown(&self, figures: &[PathBuf]) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Triage evaluation report\n");
        if self.mode == "live" {
            let _ = writeln!(
                s,
                "This report shows what the Triage runtime actually did on {} ImageNet images at each operating point of a plan: its answers, the wall time of every request, and the energy and cloud cost it booked on the **{}** device profile. Single networks and published policies are compared in replay reports (`triage eval --profile ...`); here each point is checked against its own replay on the same images.\n",
                self.n_images, self.device
            );
        } else {
            let _ = writeln!(
            s,
            "This report compares **Triage** (per-image choice of how much deep-learning effort an image deserves, compiled into a plan of operating points) with what one would otherwise do: always run one network, always offload, or use a published adaptive policy. Each policy classifies the same {} ImageNet images; for each we report top-1/top-5 accuracy, latency, energy per image and cloud cost on the **{}** device profile.\n",
            self.n_images, self.device
        );
        }
        let _ = writeln!(s, "## What was measured\n");
        let _ = writeln!(
            s,
            "- **Images:** {} images of `{}` (dataset identity `{}`), {} unreadable and skipped.{}",
            self.n_images,
            self.dataset_root,
            short(&self.dataset_identity),
            self.images_failed,
            self.corruption
                .as_ref()
                .map(|c| format!(" A corrupted copy: `{}`.", c.replace('\n', "; ")))
                .unwrap_or_default()
        );
        let _ = writeln!(s, "- **How:** {}.", self.source);
        if self.mode == "live" {
            let _ = writeln!(s, "- **Per-image measurements:** the runtime classified every image at every operating point of the plan, live, and each request's answer, wall time, booked energy and cost are reported as they happened.");
        } else {
            let _ = writeln!(s, "- **Per-image measurements:** every network of the zoo and every upload option was run once on every image when the profile `{}` was made on {}; policies are replayed exactly on those answers.", short(&self.profile_sha256), self.profiling_host);
        }
        let _ = writeln!(
            s,
            "- **Device:** `{}` — {} (latency scale {}).",
            self.device, self.device_description, self.latency_scale
        );
        let _ = writeln!(s, "- **Network:** {}.", self.link);
        if self.mode != "live" {
            let _ = writeln!(s, "- **Budgets:** {:.1} mJ per image for budgeted policies (MCDNN, the paced Triage stream) and for the budget column; DeepDecision's latency limit {:.1} ms{}. By default both are the expected figures of the plan's default point (`{}`).",
            self.energy_budget_mj, self.latency_limit_ms,
            self.usd_budget_per_1000.map(|u| format!("; cloud budget ${u:.4} per 1,000 images")).unwrap_or_default(),
            self.plan_default_point);
        }
        let _ = writeln!(
            s,
            "- **Plan:** compiled from {} images (profile {}), operating points: {}.\n",
            self.plan_n_images,
            self.plan_profiles
                .iter()
                .map(|p| format!("`{}`", short(p)))
                .collect::<Vec<_>>()
                .join(", "),
            self.plan_points.join(", ")
        );

        if let Some(best) = self
            .policies
            .iter()
            .filter(|p| p.family == Family::Single)
            .max_by(|a, b| {
                a.top1
                    .total_cmp(&b.top1)
                    .then(b.mean_latency_ms.total_cmp(&a.mean_latency_ms))
            })
        {
            let _ = writeln!(s, "## Headline\n");
            let _ = writeln!(s, "The most accurate single network is **{}**: top-1 {}% at {:.2} ms and {:.1} mJ per image.\n", best.name, pct(best.top1), best.mean_latency_ms, best.mean_energy_mj);
            for p in self.policies.iter().filter(|p| p.family == Family::Triage) {
                if let Some(v) = &p.vs_best_single {
                    let _ = writeln!(s, "- **{}**: top-1 {}% ({:+.1} points, 95% CI [{:+.1}, {:+.1}]), {:.2}x the speed, {:.2}x the energy{}.",
                        p.name, pct(p.top1), 100.0 * v.delta_top1, 100.0 * v.delta_top1_ci95[0], 100.0 * v.delta_top1_ci95[1], v.speedup, v.energy_ratio,
                        if p.budget.within_budget { "" } else { "; over the energy budget" });
                }
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(s, "## All policies\n");
        let _ = writeln!(s, "Top-1/top-5 in %, latency in device ms (mean and 95th percentile), energy in mJ per image, cloud cost in USD per 1,000 images, upload in kB per image; Δ top-1 is the paired difference against the most accurate single network in points with its 95% CI; *budget* is energy spent over the energy budget (≤ 1 is within).\n");
        let _ = writeln!(s, "| policy | family | top-1 [95% CI] | top-5 | mean ms | p95 ms | mJ | $/1000 | kB | Δ top-1 [95% CI] | budget |");
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
        for p in &self.policies {
            let d = p.vs_best_single.as_ref().map_or("-".to_string(), |v| {
                format!(
                    "{:+.1} [{:+.1}, {:+.1}]",
                    100.0 * v.delta_top1,
                    100.0 * v.delta_top1_ci95[0],
                    100.0 * v.delta_top1_ci95[1]
                )
            });
            let _ = writeln!(s, "| {} | {} | {} [{}, {}] | {} | {:.2} | {:.2} | {:.1} | {:.4} | {:.1} | {} | {:.2} |",
                p.name, p.family.name(), pct(p.top1), pct(p.top1_ci95[0]), pct(p.top1_ci95[1]), pct(p.top5),
                p.mean_latency_ms, p.p95_latency_ms, p.mean_energy_mj, p.usd_per_1000, p.kb_uploaded_per_image, d, p.budget.used_fraction);
        }
        let _ = writeln!(s);
        let names: Vec<String> = figures
            .iter()
            .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().to_string()))
            .filter(|n| n.ends_with(".png"))
            .collect();
        if !names.is_empty() {
            let _ = writeln!(s, "## Figures\n");
            for (file, what) in [
                ("accuracy_vs_latency.png", "Top-1 against mean latency: every policy, with the Pareto front of Triage's operating points. Up and to the left is better."),
                ("accuracy_vs_energy.png", "Top-1 against energy per image. Up and to the left is better."),
                ("reliability.png", "Reliability diagrams of every network before (red) and after (blue) temperature scaling: a calibrated model's points lie on the diagonal. Triage's thresholds are on calibrated confidence."),
                ("stream.png", "The paced stream: which operating point of the plan Triage uses for each image when it must keep to the energy budget, and the energy spent against the pro-rata budget."),
            ] {
                if names.iter().any(|n| n == file) {
                    let _ = writeln!(s, "![{file}]({file})\n\n{what} (SVG beside it.)\n");
                }
            }
        }
        if !self.live_vs_replay.is_empty() {
            let _ = writeln!(s, "## Live against replay\n");
            let _ = writeln!(s, "Each operating point executed by the runtime on the image files, against the replay of the same point on the profile of the same files: top-1 in %, *differ* counts images right in one and wrong in the other, latency in ms (live: measured wall time; replay: the profile's per-image decode time plus each variant's measured median), *ratio* is live over replay.\n");
            let _ = writeln!(s, "| point | images | live top-1 | replay top-1 | differ | live ms | replay ms | ratio | offloaded |\n|---|---|---|---|---|---|---|---|---|");
            for r in &self.live_vs_replay {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.3} | {} |",
                    r.policy,
                    r.n_images,
                    pct(r.live_top1),
                    pct(r.replay_top1),
                    r.disagreements,
                    r.live_mean_ms,
                    r.replay_mean_ms,
                    r.latency_ratio,
                    pct(r.live_offloaded)
                );
            }
            let _ = writeln!(s);
        }
        if !self.live_failures.is_empty() {
            let _ = writeln!(s, "## Images the runtime could not classify\n");
            for f in &self.live_failures {
                let _ = writeln!(s, "- `{}`: {}", f.image, f.error);
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(s, "## The policies\n");
        for p in &self.policies {
            let _ = writeln!(s, "- **{}** ({}): {}.", p.name, p.family.name(), p.detail);
        }
        let _ = writeln!(s, "\nFamilies: *single* runs one network always; *remote* always uploads (resolution/quality option); *oracle* knows which network is right (an upper bound); *random* picks a network at random; *taylor-knn* is Taylor et al. (LCTES 2018); *cascade* and *cascade-calibrated* are the IDK cascade (Wang et al. 2017) and confidence-based offloading (INFOCOM 2022) on raw and on temperature-scaled confidence, plus two reference cascades on calibrated confidence (three stages with a threshold each; routing by the cheapest network's confidence to an easy or a hard branch); *mcdnn* is MCDNN's greedy budgeted choice (MobiSys 2016); *deepdecision* is DeepDecision (INFOCOM 2018); *triage* are the plan's operating points and the paced stream.\n");
        if !self.calibration.is_empty() {
            let _ = writeln!(s, "## Calibration\n");
            let _ = writeln!(s, "Expected calibration error (15 bins) of each network's top-1 confidence on these images, before and after temperature scaling{}.\n", if self.mode.starts_with("cv") { " (temperatures fitted out of fold)" } else { " (the plan's temperatures)" });
            let _ = writeln!(s, "| network | ECE before | ECE after |\n|---|---|---|");
            for c in &self.calibration {
                let _ = writeln!(
                    s,
                    "| {} | {:.3} | {:.3} |",
                    c.name, c.before.ece, c.after.ece
                );
            }
        }
        if let Some(st) = &self.stream {
            let mut counts = vec![0usize; st.points.len()];
            for &l in &st.level {
                if let Some(c) = counts.get_mut(l) {
                    *c += 1;
                }
            }
            let used: Vec<String> = st
                .points
                .iter()
                .zip(&counts)
                .filter(|(_, &c)| c > 0)
                .map(|(p, c)| format!("{p} ({c})"))
                .collect();
            let _ = writeln!(s, "\n## Budgeted stream\n\nUnder an energy budget of {:.1} mJ per image, the runtime's pacing used: {}. Total spend {:.1} J against a budget of {:.1} J.\n",
                st.energy_budget_mj, used.join(", "), st.cumulative_mj.last().copied().unwrap_or(0.0) / 1e3, st.energy_budget_mj * st.level.len() as f64 / 1e3);
        }
        let _ = writeln!(s, "\n## Caveats\n");
        for c in &self.caveats {
            let _ = writeln!(s, "- {c}");
        }
        let _ = writeln!(
            s,
            "\nBootstrap: {} resamples, seed {}.",
            self.bootstrap, self.seed
        );
        s
    }

    /// Writes `report.md`, `report.json` and the figures into `dir`; returns the files.
    /// When no font can be found the figures are skipped (with a warning) and the report says so.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let figures = match plots::write_all(dir, self) {
            Ok(f) => f,
            Err(e @ Error::Plot { .. }) => {
                tracing::warn!("{e}");
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        let json = dir.join("report.json");
        std::fs::write(&json, self.to_json()?).map_err(|e| Error::io(&json, e))?;
        let md = dir.join("report.md");
        std::fs::write(&md, self.to_markdown(&figures)).map_err(|e| Error::io(&md, e))?;
        let mut out = vec![md, json];
        out.extend(figures);
        Ok(out)
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}
