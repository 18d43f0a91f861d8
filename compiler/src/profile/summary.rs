//! What a profile says at a glance: per-variant accuracy and cost, the remote options, the
//! oracle, and how often variants agree.

use serde::Serialize;

use super::{Prediction, Profile};

/// One local variant.
#[derive(Debug, Clone, Serialize)]
pub struct VariantLine {
    pub name: String,
    pub top1: f64,
    pub top5: f64,
    pub median_ms: f64,
    pub p95_ms: f64,
    pub prep_ms: f64,
    pub load_ms: f64,
    pub weights_mb: f64,
    pub peak_rss_growth_mb: Option<f64>,
}

/// One remote option.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteLine {
    pub name: String,
    pub top1: f64,
    pub top5: f64,
    pub mean_upload_kb: f64,
    pub mean_encode_ms: f64,
}

/// The oracle: per image, the cheapest variant that is right.
#[derive(Debug, Clone, Serialize)]
pub struct OracleLine {
    /// Share of images some local variant gets right.
    pub top1: f64,
    /// Mean model latency when images no variant gets right run the cheapest variant.
    pub mean_ms_cheapest_fallback: f64,
    /// Mean model latency when images no variant gets right run the most expensive one.
    pub mean_ms_costliest_fallback: f64,
    /// Per variant, the share of images for which it is the cheapest correct one.
    pub share: Vec<(String, f64)>,
    /// Share of images some local variant or remote option gets right.
    pub top1_with_remote: f64,
}

/// Agreement between variants' top-1 answers.
#[derive(Debug, Clone, Serialize)]
pub struct Agreement {
    /// Share of images on which every local variant gives the same answer.
    pub all_agree: f64,
    /// `pairwise[i][j]`: share of images on which variants `i` and `j` agree.
    pub pairwise: Vec<Vec<f64>>,
}

/// The summary printed by `triage profile show`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub n_images: usize,
    pub n_failed: usize,
    pub dataset_identity: String,
    pub created: String,
    pub host_cpu: String,
    /// Backend and library version the latencies were measured with, e.g. `tract 0.23.9`.
    pub backend: String,
    pub mean_decode_ms: f64,
    pub mean_features_ms: f64,
    pub variants: Vec<VariantLine>,
    pub remote: Vec<RemoteLine>,
    pub oracle: OracleLine,
    pub agreement: Agreement,
}

fn in_top5(p: &Prediction, label: u16) -> bool {
    p.top5.contains(&label)
}

impl Summary {
    pub fn of(profile: &Profile) -> Self {
        let h = &profile.header;
        let measured: Vec<_> = profile.measured().collect();
        let n = measured.len().max(1) as f64;
        let nv = h.variants.len();
        let frac = |count: usize| count as f64 / n;
        let variants = (0..nv)
            .map(|v| {
                let c = &profile.costs.variants[v];
                VariantLine {
                    name: h.variants[v].name.clone(),
                    top1: frac(
                        measured
                            .iter()
                            .filter(|(i, m)| m.local[v].top1() == usize::from(i.label))
                            .count(),
                    ),
                    top5: frac(
                        measured
                            .iter()
                            .filter(|(i, m)| in_top5(&m.local[v], i.label))
                            .count(),
                    ),
                    median_ms: c.latency.median_ms,
                    p95_ms: c.latency.p95_ms,
                    prep_ms: c.prep_ms,
                    load_ms: c.load_ms,
                    weights_mb: c.weights_bytes as f64 / 1e6,
                    peak_rss_growth_mb: c.peak_rss_growth_bytes.map(|b| b as f64 / 1e6),
                }
            })
            .collect();
        let remote = h
            .remote
            .iter()
            .enumerate()
            .map(|(r, opt)| RemoteLine {
                name: opt.name(),
                top1: frac(
                    measured
                        .iter()
                        .filter(|(i, m)| m.remote[r].prediction.top1() == usize::from(i.label))
                        .count(),
                ),
                top5: frac(
                    measured
                        .iter()
                        .filter(|(i, m)| in_top5(&m.remote[r].prediction, i.label))
                        .count(),
                ),
                mean_upload_kb: measured
                    .iter()
                    .map(|(_, m)| f64::from(m.remote[r].upload_bytes))
                    .sum::<f64>()
                    / n
                    / 1e3,
                mean_encode_ms: measured
                    .iter()
                    .map(|(_, m)| f64::from(m.remote[r].encode_us))
                    .sum::<f64>()
                    / n
                    / 1e3,
            })
            .collect();

        let order = profile.variants_by_cost();
        let lat = |v: usize| profile.costs.variants[v].latency.median_ms;
        let mut share = vec![0usize; nv];
        let (mut any, mut any_remote, mut cheap_ms, mut costly_ms) = (0, 0, 0.0, 0.0);
        let mut all_agree = 0;
        let mut pair = vec![vec![0usize; nv]; nv];
        for (img, m) in &measured {
            let label = usize::from(img.label);
            match order.iter().find(|&&v| m.local[v].top1() == label) {
                Some(&v) => {
                    any += 1;
                    share[v] += 1;
                    cheap_ms += lat(v);
                    costly_ms += lat(v);
                }
                None => {
                    cheap_ms += order.first().map_or(0.0, |&v| lat(v));
                    costly_ms += order.last().map_or(0.0, |&v| lat(v));
                }
            }
            let local_right = m.local.iter().any(|p| p.top1() == label);
            any_remote +=
                usize::from(local_right || m.remote.iter().any(|r| r.prediction.top1() == label));
            let first = m.local.first().map(Prediction::top1);
            all_agree += usize::from(m.local.iter().all(|p| Some(p.top1()) == first));
            for (row, pa) in pair.iter_mut().zip(&m.local) {
                for (cell, pb) in row.iter_mut().zip(&m.local) {
                    *cell += usize::from(pa.top1() == pb.top1());
                }
            }
        }
        let mean = |f: &dyn Fn(&super::Measured) -> u32| {
            measured.iter().map(|(_, m)| f64::from(f(m))).sum::<f64>() / n / 1e3
        };
        Summary {
            n_images: profile.images.len(),
            n_failed: profile.images.len() - measured.len(),
            dataset_identity: h.dataset.identity.clone(),
            created: h.created.clone(),
            host_cpu: h.host.cpu.clone(),
            backend: format!("{} {}", h.host.backend, h.host.backend_version),
            mean_decode_ms: mean(&|m| m.decode_us),
            mean_features_ms: mean(&|m| m.features_us),
            variants,
            remote,
            oracle: OracleLine {
                top1: frac(any),
                mean_ms_cheapest_fallback: cheap_ms / n,
                mean_ms_costliest_fallback: costly_ms / n,
                share: (0..nv)
                    .map(|v| (h.variants[v].name.clone(), frac(share[v])))
                    .collect(),
                top1_with_remote: frac(any_remote),
            },
            agreement: Agreement {
                all_agree: frac(all_agree),
                pairwise: pair
                    .iter()
                    .map(|row| row.iter().map(|&c| frac(c)).collect())
                    .collect(),
            },
        }
    }

    /// Human-readable report.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} images ({} failed), profiled {} on {} with {}",
            self.n_images, self.n_failed, self.created, self.host_cpu, self.backend
        );
        let _ = writeln!(
            s,
            "per image: decode {:.2} ms, premodel features {:.2} ms",
            self.mean_decode_ms, self.mean_features_ms
        );
        let _ = writeln!(
            s,
            "{:<24}{:>7}{:>7}{:>10}{:>9}{:>9}{:>9}{:>9}{:>10}",
            "variant",
            "top-1",
            "top-5",
            "median ms",
            "p95 ms",
            "prep ms",
            "load ms",
            "MB",
            "peak MB"
        );
        for v in &self.variants {
            let _ = writeln!(
                s,
                "{:<24}{:>7.1}{:>7.1}{:>10.2}{:>9.2}{:>9.2}{:>9.0}{:>9.1}{:>10}",
                v.name,
                100.0 * v.top1,
                100.0 * v.top5,
                v.median_ms,
                v.p95_ms,
                v.prep_ms,
                v.load_ms,
                v.weights_mb,
                v.peak_rss_growth_mb
                    .map_or("-".to_string(), |m| format!("{m:.1}"))
            );
        }
        if !self.remote.is_empty() {
            let _ = writeln!(
                s,
                "{:<32}{:>7}{:>7}{:>11}{:>11}",
                "remote option", "top-1", "top-5", "upload kB", "encode ms"
            );
            for r in &self.remote {
                let _ = writeln!(
                    s,
                    "{:<32}{:>7.1}{:>7.1}{:>11.1}{:>11.2}",
                    r.name,
                    100.0 * r.top1,
                    100.0 * r.top5,
                    r.mean_upload_kb,
                    r.mean_encode_ms
                );
            }
        }
        let o = &self.oracle;
        let _ = writeln!(
            s,
            "oracle (cheapest correct variant): top-1 {:.1}%, mean model latency {:.2} ms (unsolvable images on the cheapest variant) / {:.2} ms (on the costliest); with remote options top-1 {:.1}%",
            100.0 * o.top1,
            o.mean_ms_cheapest_fallback,
            o.mean_ms_costliest_fallback,
            100.0 * o.top1_with_remote
        );
        let shares: Vec<String> = o
            .share
            .iter()
            .map(|(n, f)| format!("{n} {:.1}%", 100.0 * f))
            .collect();
        let _ = writeln!(s, "oracle picks: {}", shares.join(", "));
        let _ = writeln!(
            s,
            "all variants agree on {:.1}% of images; pairwise agreement (%):",
            100.0 * self.agreement.all_agree
        );
        for (v, row) in self.variants.iter().zip(&self.agreement.pairwise) {
            let cells: Vec<String> = row.iter().map(|f| format!("{:>5.1}", 100.0 * f)).collect();
            let _ = writeln!(s, "  {:<22}{}", v.name, cells.join(" "));
        }
        s
    }
}
