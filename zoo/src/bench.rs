//! Side-by-side inference benchmark of backends on the same variants, inputs and machine.
//!
//! Wall-clock time on a shared machine drifts, so backends are never timed one after the
//! other: each variant's latency runs alternate between the backends in short blocks, and
//! what is reported beside each median is its ratio to the fastest backend measured in the
//! same interleaved run. Every backend also runs the same real input once before timing and
//! its output is compared with the first backend's.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::engine::{Backend, Engine, EngineOptions};
use crate::error::Result;
use crate::preprocess::PreparedInput;
use crate::zoo::Variant;

/// How long and how hard to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Untimed runs per backend after loading.
    pub warmup: u32,
    /// Timed single-image runs per backend (fewer when the time budget runs out first).
    pub iterations: u32,
    /// Budget for one variant's latency runs, all backends together.
    pub latency_budget: Duration,
    /// Threads of the throughput run, each running one image at a time on the shared engine.
    pub threads: usize,
    /// Images per thread in the throughput run (fewer when its budget runs out first).
    pub throughput_images: u32,
    /// Budget of one throughput run.
    pub throughput_budget: Duration,
    /// Timed runs per backend before switching to the next one.
    pub block: u32,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            warmup: 5,
            iterations: 60,
            latency_budget: Duration::from_secs(8),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            throughput_images: 20,
            throughput_budget: Duration::from_secs(3),
            block: 5,
        }
    }
}

/// Latency distribution of repeated warm runs, milliseconds (also what profiles store per
/// variant).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LatencyStats {
    pub runs: u32,
    pub median_ms: f64,
    pub p95_ms: f64,
    pub mean_ms: f64,
    pub min_ms: f64,
}

impl LatencyStats {
    /// Statistics of `samples` (any order, non-finite values dropped).
    pub fn from_samples(samples: &[f64]) -> Self {
        let mut s: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        s.sort_by(f64::total_cmp);
        let q = |p: f64| -> f64 {
            if s.is_empty() {
                return 0.0;
            }
            let pos = p * (s.len() - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
        };
        LatencyStats {
            runs: s.len() as u32,
            median_ms: q(0.5),
            p95_ms: q(0.95),
            mean_ms: if s.is_empty() {
                0.0
            } else {
                s.iter().sum::<f64>() / s.len() as f64
            },
            min_ms: s.first().copied().unwrap_or(0.0),
        }
    }
}

/// One backend's figures on one variant.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackendResult {
    pub backend: String,
    /// Load, graph optimization and first session, milliseconds (no hash check).
    pub load_ms: f64,
    pub latency: LatencyStats,
    /// Images per second with `threads` threads sharing the engine.
    pub images_per_second: f64,
    pub threads: usize,
    /// Median latency over the fastest backend's median on this variant (1.0 for it).
    pub ratio_to_fastest: f64,
    /// Largest |output difference| against the first backend on the same input.
    pub max_abs_diff: f64,
}

/// Every backend's figures on one variant.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VariantBench {
    pub name: String,
    pub macs: u64,
    pub results: Vec<BackendResult>,
}

/// Progress callbacks: one step per timed run or throughput image.
pub trait BenchProgress: Sync {
    fn start(&self, variant: &str, steps: u64);
    fn step(&self);
}

/// Benchmarks one variant on every backend in `backends` (engines built from `base` with the
/// backend swapped in), all on `input`.
pub fn bench_variant(
    variant: &Variant,
    backends: &[Backend],
    base: &EngineOptions,
    input: &PreparedInput,
    cfg: &BenchConfig,
    progress: &dyn BenchProgress,
) -> Result<VariantBench> {
    let name = variant.name().to_string();
    let threads = cfg.threads.max(1);
    let per_backend = u64::from(cfg.iterations) + u64::from(cfg.throughput_images) * threads as u64;
    progress.start(&name, per_backend * backends.len() as u64);

    let mut engines: Vec<(Backend, Box<dyn Engine>, f64)> = Vec::new();
    for &b in backends {
        let opts = EngineOptions {
            backend: b,
            ..base.clone()
        };
        let t = Instant::now();
        let engine = variant.load_engine(&opts)?;
        let load_ms = ms(t.elapsed());
        tracing::debug!(variant = %name, backend = %b, load_ms, "loaded for benchmarking");
        engines.push((b, engine, load_ms));
    }

    // Same input, every backend: outputs must agree before their speed means anything.
    let mut reference: Option<Vec<f32>> = None;
    let mut diffs = Vec::new();
    for (_, e, _) in &engines {
        let out = e.run(input.as_slice())?;
        let d = match &reference {
            None => 0.0,
            Some(r) if r.len() != out.len() => f64::INFINITY,
            Some(r) => r
                .iter()
                .zip(&out)
                .map(|(a, b)| f64::from((a - b).abs()))
                .fold(0.0, f64::max),
        };
        diffs.push(d);
        reference.get_or_insert(out);
        for _ in 1..cfg.warmup.max(1) {
            e.run(input.as_slice())?;
        }
    }

    // Interleaved latency runs.
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); engines.len()];
    let start = Instant::now();
    let block = cfg.block.max(1);
    'outer: while samples.iter().any(|s| s.len() < cfg.iterations as usize) {
        for (k, (_, e, _)) in engines.iter().enumerate() {
            for _ in 0..block {
                if samples[k].len() >= cfg.iterations as usize {
                    break;
                }
                let t = Instant::now();
                e.run(input.as_slice())?;
                samples[k].push(ms(t.elapsed()));
                progress.step();
            }
        }
        // Past the budget, stop once every backend has a few runs.
        if start.elapsed() > cfg.latency_budget && samples.iter().all(|s| s.len() >= 5) {
            break 'outer;
        }
    }

    let mut results = Vec::new();
    for (k, (b, e, load_ms)) in engines.iter().enumerate() {
        let ips = throughput(e.as_ref(), input, threads, cfg, progress)?;
        results.push(BackendResult {
            backend: b.name().to_string(),
            load_ms: *load_ms,
            latency: LatencyStats::from_samples(&samples[k]),
            images_per_second: ips,
            threads,
            ratio_to_fastest: 1.0,
            max_abs_diff: diffs[k],
        });
    }
    let fastest = results
        .iter()
        .map(|r| r.latency.median_ms)
        .filter(|m| *m > 0.0)
        .fold(f64::INFINITY, f64::min);
    for r in &mut results {
        if fastest.is_finite() {
            r.ratio_to_fastest = r.latency.median_ms / fastest;
        }
    }
    Ok(VariantBench {
        name,
        macs: variant.macs(),
        results,
    })
}

/// Images per second with `threads` threads each running images back to back on `engine`.
fn throughput(
    engine: &dyn Engine,
    input: &PreparedInput,
    threads: usize,
    cfg: &BenchConfig,
    progress: &dyn BenchProgress,
) -> Result<f64> {
    let done = AtomicUsize::new(0);
    let start = Instant::now();
    let first_error = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..cfg.throughput_images {
                    if start.elapsed() > cfg.throughput_budget {
                        break;
                    }
                    if let Err(e) = engine.run(input.as_slice()) {
                        let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
                        slot.get_or_insert(e);
                        break;
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    progress.step();
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let secs = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    Ok(if secs > 0.0 { n as f64 / secs } else { 0.0 })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_quantiles() {
        let l = LatencyStats::from_samples(&[5.0, 1.0, 3.0, 2.0, 4.0, f64::NAN]);
        assert_eq!(l.runs, 5);
        assert_eq!(l.median_ms, 3.0);
        assert_eq!(l.min_ms, 1.0);
        assert!((l.p95_ms - 4.8).abs() < 1e-9);
        assert_eq!(LatencyStats::from_samples(&[]).median_ms, 0.0);
    }
}
