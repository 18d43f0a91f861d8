//! The profiling run: costs first (alone on the machine, one thread), then the accuracy pass
//! over every image on all worker threads, appended to the output chunk by chunk so that an
//! interrupted run resumes where it stopped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use image::codecs::jpeg::JpegEncoder;
use image::ExtendedColorType;
use rayon::prelude::*;
use tracing::{info, warn};
use triage_premodel::features::{FeatureSet, ImageMeta, FEATURE_SET_VERSION};
use triage_zoo::{
    decode_bytes, decode_file, resize_shorter, Dataset, DecodeOptions, DecodedImage, Resample,
    Shard, Variant, Zoo,
};

use super::{
    Costs, DatasetInfo, Footer, Header, Host, ImageRecord, LatencyStats, Measured, Partial,
    Prediction, RemoteOption, RemotePrediction, VariantCost, VariantInfo, KIND_CHUNK, KIND_COSTS,
    KIND_FOOTER, KIND_HEADER,
};
use crate::error::{Error, Result};
use crate::records::{Tail, Writer};

/// Images per chunk record: at most this many finished images are lost to a crash.
pub const CHUNK: usize = 16;

/// How variant latency is measured.
#[derive(Debug, Clone)]
pub struct LatencyConfig {
    pub warmup: u32,
    pub min_runs: u32,
    pub max_runs: u32,
    /// Keep running until this much time has been spent (within `max_runs`).
    pub min_seconds: f64,
}

impl Default for LatencyConfig {
    fn default() -> Self {
        LatencyConfig {
            warmup: 5,
            min_runs: 30,
            max_runs: 300,
            min_seconds: 1.5,
        }
    }
}

/// Settings of a profiling run.
#[derive(Debug, Clone)]
pub struct ProfileConfig {
    pub remote: Vec<RemoteOption>,
    pub shard: Option<Shard>,
    /// Worker threads of the accuracy pass.
    pub threads: usize,
    pub apply_orientation: bool,
    pub latency: LatencyConfig,
}

/// Callbacks for progress display.
pub trait Progress: Sync {
    /// A new phase starts: `total` steps of which `done` are already complete.
    fn phase(&self, name: &str, total: u64, done: u64);
    /// One step finished.
    fn step(&self);
}

/// A [`Progress`] that shows nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn phase(&self, _: &str, _: u64, _: u64) {}
    fn step(&self) {}
}

/// What a run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunOutcome {
    pub path: PathBuf,
    /// The file was already complete; nothing was run.
    pub already_complete: bool,
    pub images_total: usize,
    pub images_resumed: usize,
    pub images_new: usize,
    pub images_failed: usize,
    /// Wall time of the accuracy pass.
    pub accuracy_seconds: f64,
    /// Sum over new images of the worker-thread time spent on them.
    pub work_seconds: f64,
    pub threads: usize,
}

fn host(threads: usize, zoo: &Zoo) -> Result<Host> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string());
    let engine = zoo.engine_options();
    Ok(Host {
        cpu,
        logical_cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        threads: threads as u32,
        intra_op_threads: engine.threads() as u32,
        backend: engine.backend.name().to_string(),
        backend_version: engine.library_version()?,
        tract_version: triage_zoo::TRACT_VERSION.to_string(),
        os: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}

/// Decode options of a run: the smallest JPEG scale that still serves every local variant,
/// every server variant and every upload size; full resolution when an option uploads it.
pub fn decode_options(
    zoo: &Zoo,
    remote: &[RemoteOption],
    apply_orientation: bool,
) -> DecodeOptions {
    let base = DecodeOptions {
        apply_orientation,
        ..DecodeOptions::default()
    };
    let mut opts = Zoo::decode_options_for(zoo.variants(), base);
    if remote.iter().any(|r| r.shorter_side.is_none()) {
        opts.min_shorter_side = None;
    } else if let Some(side) = remote.iter().filter_map(|r| r.shorter_side).max() {
        opts.min_shorter_side = opts.min_shorter_side.map(|s| s.max(side));
    }
    opts
}

/// The header a run with these settings writes.
pub fn header_for(zoo: &Zoo, data: &Dataset, cfg: &ProfileConfig) -> Result<Header> {
    for r in &cfg.remote {
        for s in &r.servers {
            zoo.variant(s)?;
        }
    }
    let n_total = u32::try_from(data.len())
        .map_err(|_| Error::InvalidArgument("more than 4 billion images".into()))?;
    let range = cfg.shard.map_or(0..data.len(), |s| s.range(data.len()));
    let variants = zoo
        .variants()
        .iter()
        .map(|v| {
            let spec = v.spec();
            let weights_bytes = spec.file_size_bytes;
            VariantInfo {
                name: spec.name.clone(),
                sha256: spec.sha256.clone(),
                macs: spec.macs,
                input_size: spec.preprocessing.input_size,
                resize_shorter: spec.preprocessing.resize_shorter,
                weights_bytes,
            }
        })
        .collect();
    let decode = decode_options(zoo, &cfg.remote, cfg.apply_orientation);
    Ok(Header {
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        zoo_fingerprint: zoo.fingerprint(),
        variants,
        remote: cfg.remote.clone(),
        dataset: DatasetInfo {
            root: data.root().display().to_string(),
            layout: format!("{:?}", data.layout()),
            identity: data.identity(),
            n_total,
        },
        shard: cfg.shard.map(|s| (s.index as u32, s.count as u32)),
        range: (range.start as u32, range.end as u32),
        apply_orientation: cfg.apply_orientation,
        decode_min_shorter_side: decode.min_shorter_side,
        feature_set_version: FEATURE_SET_VERSION,
        feature_names: FeatureSet::Image
            .names()
            .iter()
            .map(|s| s.to_string())
            .collect(),
        host: host(cfg.threads, zoo)?,
    })
}

/// Profiles `data` (the whole, possibly limited, image list; `cfg.shard` selects a part) into
/// `out`, resuming an unfinished file made with the same settings.
pub fn profile(
    zoo: &Zoo,
    data: &Dataset,
    out: &Path,
    cfg: &ProfileConfig,
    progress: &dyn Progress,
) -> Result<RunOutcome> {
    let header = header_for(zoo, data, cfg)?;
    let (lo, hi) = header.range;
    let mut outcome = RunOutcome {
        path: out.to_path_buf(),
        already_complete: false,
        images_total: (hi - lo) as usize,
        images_resumed: 0,
        images_new: 0,
        images_failed: 0,
        accuracy_seconds: 0.0,
        work_seconds: 0.0,
        threads: cfg.threads,
    };

    let existing = out.metadata().map(|m| m.len() > 0).unwrap_or(false);
    let (mut writer, costs, done) = if existing {
        let p = Partial::read(out).map_err(|e| {
            Error::Mismatch(format!(
                "{e}\n{}: cannot resume from this file; delete it or choose another --out",
                out.display()
            ))
        })?;
        if let Some(field) = p.header.incompatibility(&header, true) {
            return Err(Error::Mismatch(format!(
                "{}: exists but was profiled with different {field}; delete it or choose another --out",
                out.display()
            )));
        }
        if p.footer.is_some() && p.tail == Tail::Clean {
            outcome.already_complete = true;
            outcome.images_resumed = p.images.len();
            outcome.images_failed = p.images.values().filter(|i| i.result.is_err()).count();
            return Ok(outcome);
        }
        let valid_len = match &p.tail {
            Tail::Clean => out.metadata().map_err(|e| Error::io(out, e))?.len(),
            Tail::Torn { valid_len, reason } => {
                warn!("{}: dropping a torn tail ({reason})", out.display());
                *valid_len
            }
        };
        info!(
            "{}: resuming with {} of {} images done",
            out.display(),
            p.images.len(),
            hi - lo
        );
        (Writer::resume(out, valid_len)?, p.costs, p.images)
    } else {
        let mut w = Writer::create(out, super::MAGIC, super::SCHEMA)?;
        w.write_value(KIND_HEADER, &header)?;
        (w, None, Default::default())
    };
    outcome.images_resumed = done.len();
    let mut n_failed = done.values().filter(|i| i.result.is_err()).count();

    let decode = decode_options(zoo, &cfg.remote, cfg.apply_orientation);
    let samples = data.samples();
    if costs.is_none() {
        let paths: Vec<&Path> = (lo..hi)
            .take(40)
            .map(|i| samples[i as usize].path.as_path())
            .collect();
        let sample_images = cost_samples(&paths, &decode, 8);
        let costs = measure_costs(zoo, &sample_images, &decode, &cfg.latency, progress)?;
        writer.write_value(KIND_COSTS, &costs)?;
    }

    let todo: Vec<u32> = (lo..hi).filter(|i| !done.contains_key(i)).collect();
    // Decode time as a runtime sees it: one image at a time on an otherwise idle host. The
    // accuracy pass decodes on every core at once, next to inference, which inflates it. The
    // file is read before the clock starts: on a fresh checkout this pass is the first to touch
    // each file, and a read from disk rather than the page cache took longer than the decode
    // itself (5.2 ms per image against 2.9 ms).
    progress.phase("timing decodes", todo.len() as u64, 0);
    let solo_decode_us: HashMap<u32, u32> = todo
        .iter()
        .filter_map(|&i| {
            let path = &samples[i as usize].path;
            let timed = std::fs::read(path).ok().and_then(|bytes| {
                let t = Instant::now();
                decode_bytes(&bytes, path, &decode).ok().map(|_| us(t))
            });
            progress.step();
            timed.map(|us| (i, us))
        })
        .collect();
    progress.phase("profiling", u64::from(hi - lo), done.len() as u64);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads.max(1))
        .build()
        .map_err(|e| Error::InvalidArgument(format!("thread pool: {e}")))?;
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(ImageRecord, f64)>();
    let start = Instant::now();
    let mut buffer: Vec<ImageRecord> = Vec::with_capacity(CHUNK);
    let mut write_result: Result<()> = Ok(());
    std::thread::scope(|scope| {
        let stop = &stop;
        let todo = &todo;
        let decode = &decode;
        let pool = &pool;
        let solo_decode_us = &solo_decode_us;
        scope.spawn(move || {
            pool.install(|| {
                todo.par_iter().for_each_with(tx, |tx, &i| {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let t = Instant::now();
                    let rec = profile_image(
                        zoo,
                        &samples[i as usize],
                        i,
                        decode,
                        solo_decode_us.get(&i).copied(),
                        &cfg.remote,
                    );
                    // The receiver only goes away after a write error, when `stop` is set.
                    let _ = tx.send((rec, t.elapsed().as_secs_f64()));
                });
            });
        });
        for (rec, secs) in rx.iter() {
            if write_result.is_err() {
                continue;
            }
            if let Err(e) = &rec.result {
                warn!("{}: {e}", rec.rel);
                n_failed += 1;
            }
            outcome.work_seconds += secs;
            outcome.images_new += 1;
            buffer.push(rec);
            progress.step();
            if buffer.len() >= CHUNK {
                write_result = writer.write_value(KIND_CHUNK, &buffer);
                buffer.clear();
                if write_result.is_err() {
                    stop.store(true, Ordering::Relaxed);
                }
            }
        }
    });
    write_result?;
    if !buffer.is_empty() {
        writer.write_value(KIND_CHUNK, &buffer)?;
    }
    outcome.accuracy_seconds = start.elapsed().as_secs_f64();
    outcome.images_failed = n_failed;
    writer.write_value(
        KIND_FOOTER,
        &Footer {
            n_images: hi - lo,
            n_failed: n_failed as u32,
        },
    )?;
    Ok(outcome)
}

fn us(t: Instant) -> u32 {
    u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX)
}

/// Measures one image; any failure becomes the record's error, never the run's.
/// `decode_us`, when given, is the image's decode time measured apart (see [`profile`]) and is
/// recorded instead of this decode's.
pub(crate) fn profile_image(
    zoo: &Zoo,
    sample: &triage_zoo::Sample,
    index: u32,
    decode: &DecodeOptions,
    decode_us: Option<u32>,
    remote: &[RemoteOption],
) -> ImageRecord {
    let mut rec = ImageRecord {
        index,
        rel: sample.rel.clone(),
        label: sample.label as u16,
        width: 0,
        height: 0,
        byte_len: 0,
        result: Err(String::new()),
    };
    let t = Instant::now();
    let img = match decode_file(&sample.path, decode) {
        Ok(img) => img,
        Err(e) => {
            rec.result = Err(e.to_string());
            return rec;
        }
    };
    let decode_us = decode_us.unwrap_or_else(|| us(t));
    (rec.width, rec.height, rec.byte_len) = (img.width, img.height, img.byte_len);
    rec.result = measure(zoo, &img, &sample.path, decode_us, remote);
    rec
}

fn measure(
    zoo: &Zoo,
    img: &DecodedImage,
    path: &Path,
    decode_us: u32,
    remote: &[RemoteOption],
) -> std::result::Result<Measured, String> {
    let t = Instant::now();
    let meta = ImageMeta {
        width: img.width,
        height: img.height,
        byte_len: img.byte_len,
    };
    let features = FeatureSet::Image
        .extract(&img.rgb, &meta, None)
        .map_err(|e| format!("features: {e}"))?;
    let features_us = us(t);
    let local = zoo
        .variants()
        .iter()
        .map(|v| run_variant(v, img))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| e.to_string())?;
    let remote = remote
        .iter()
        .map(|opt| run_remote(zoo, img, path, opt))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| format!("remote option: {e}"))?;
    Ok(Measured {
        decode_us,
        features,
        features_us,
        local,
        remote,
    })
}

fn run_variant(v: &Variant, img: &DecodedImage) -> Result<Prediction> {
    let t = Instant::now();
    let input = v.prepare(img)?;
    let prep_us = us(t);
    let t = Instant::now();
    let logits = v.run(&input)?;
    Ok(Prediction::new(logits.as_slice(), prep_us, us(t)))
}

/// What the device uploads for `opt`: the image at the option's resolution, JPEG-encoded.
pub fn encode_upload(img: &image::RgbImage, opt: &RemoteOption) -> Result<Vec<u8>> {
    let scaled;
    let src = match opt.shorter_side {
        Some(side) => {
            scaled = resize_shorter(img, side, Resample::Bilinear)?;
            &scaled
        }
        None => img,
    };
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, opt.quality)
        .encode(
            src.as_raw(),
            src.width(),
            src.height(),
            ExtendedColorType::Rgb8,
        )
        .map_err(|e| Error::InvalidArgument(format!("JPEG encoding: {e}")))?;
    Ok(bytes)
}

/// Runs `opt`'s server variants on an upload, averaging their probabilities; the result is
/// returned as logits (log of the averaged probabilities) so it calibrates like any variant.
pub fn server_logits(
    zoo: &Zoo,
    upload: &[u8],
    path: &Path,
    opt: &RemoteOption,
) -> Result<(Vec<f32>, u32, u32)> {
    let servers = opt
        .servers
        .iter()
        .map(|s| zoo.variant(s))
        .collect::<triage_zoo::Result<Vec<_>>>()?;
    let opts = Zoo::decode_options_for(
        servers.iter().copied(),
        DecodeOptions {
            apply_orientation: false,
            ..DecodeOptions::default()
        },
    );
    let t = Instant::now();
    let img = decode_bytes(upload, path, &opts)?;
    let mut prep_us = us(t);
    let mut infer_us = 0;
    if let [only] = servers[..] {
        let t = Instant::now();
        let input = only.prepare(&img)?;
        prep_us += us(t);
        let t = Instant::now();
        let logits = only.run(&input)?;
        infer_us += us(t);
        return Ok((logits.0, prep_us, infer_us));
    }
    let mut mean = vec![0f32; triage_zoo::NUM_CLASSES];
    for v in &servers {
        let t = Instant::now();
        let input = v.prepare(&img)?;
        prep_us += us(t);
        let t = Instant::now();
        let p = v.run(&input)?.softmax(1.0);
        infer_us += us(t);
        for (m, x) in mean.iter_mut().zip(p) {
            *m += x / servers.len() as f32;
        }
    }
    Ok((
        mean.iter().map(|p| p.max(1e-30).ln()).collect(),
        prep_us,
        infer_us,
    ))
}

fn run_remote(
    zoo: &Zoo,
    img: &DecodedImage,
    path: &Path,
    opt: &RemoteOption,
) -> Result<RemotePrediction> {
    let t = Instant::now();
    let upload = encode_upload(&img.rgb, opt)?;
    let encode_us = us(t);
    let (logits, prep_us, infer_us) = server_logits(zoo, &upload, path, opt)?;
    Ok(RemotePrediction {
        upload_bytes: upload.len() as u32,
        encode_us,
        prediction: Prediction::new(&logits, prep_us, infer_us),
    })
}

/// Reads a `/proc/self/status` field in kB.
fn proc_status_kb(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Encoded sample images for [`measure_costs`]: up to `n` of `paths` that decode.
pub fn cost_samples(paths: &[&Path], decode: &DecodeOptions, n: usize) -> Vec<EncodedSample> {
    paths
        .iter()
        .filter_map(|p| {
            let bytes = std::fs::read(p).ok()?;
            triage_zoo::decode_bytes(&bytes, p, decode).ok()?;
            Some(EncodedSample {
                bytes,
                name: p.to_path_buf(),
            })
        })
        .take(n)
        .collect()
}

/// One encoded image the latency pass decodes again before every round.
#[derive(Debug, Clone)]
pub struct EncodedSample {
    pub bytes: Vec<u8>,
    pub name: std::path::PathBuf,
}

/// Measures every variant's load time, warm latency, preprocessing time and memory.
///
/// Loading (and the memory it costs) is measured one variant at a time. Latency is measured
/// the way the runtime incurs it: in rounds that decode a sample image and then prepare and
/// run every variant on it, in an order rotated each round, so every run starts with the
/// caches holding another network and a fresh decode rather than its own weights from the
/// previous run. A variant's mean over those runs is the expected cost of a cascade stage.
pub fn measure_costs(
    zoo: &Zoo,
    samples: &[EncodedSample],
    decode: &DecodeOptions,
    cfg: &LatencyConfig,
    progress: &dyn Progress,
) -> Result<Costs> {
    let grey = || {
        // Content does not change a CNN's latency; a mid-grey photo-sized image will do.
        DecodedImage::from_rgb(
            image::RgbImage::from_pixel(500, 375, image::Rgb([120, 110, 100])),
            0,
        )
    };
    let decode_sample = |k: usize| -> DecodedImage {
        samples
            .get(k % samples.len().max(1))
            .and_then(|s| triage_zoo::decode_bytes(&s.bytes, &s.name, decode).ok())
            .unwrap_or_else(grey)
    };
    let variants = zoo.variants();
    let nv = variants.len();
    progress.phase("measuring latency", nv as u64 + 1, 0);
    let mut loads = Vec::with_capacity(nv);
    let img = decode_sample(0);
    for v in variants {
        // Reset the peak-RSS watermark so the growth is this variant's (Linux only).
        let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
        let rss_before = proc_status_kb("VmRSS:");
        let t = Instant::now();
        let was_loaded = v.is_loaded();
        v.load()?;
        let load_ms = if was_loaded {
            v.load_time().map_or(0.0, |d| d.as_secs_f64() * 1e3)
        } else {
            t.elapsed().as_secs_f64() * 1e3
        };
        let input = v.prepare(&img)?;
        for _ in 0..cfg.warmup {
            v.run(&input)?;
        }
        let peak = proc_status_kb("VmHWM:");
        let growth = match (reset, rss_before, peak) {
            (true, Some(b), Some(p)) => Some(p.saturating_sub(b) * 1024),
            _ => None,
        };
        loads.push((load_ms, growth));
        progress.step();
    }
    let mut runs = vec![Vec::new(); nv];
    let mut prep = vec![Vec::new(); nv];
    let budget = cfg.min_seconds * nv as f64;
    let start = Instant::now();
    let mut round = 0usize;
    loop {
        let fewest = runs.iter().map(Vec::len).min().unwrap_or(0) as u32;
        if fewest >= cfg.max_runs
            || (fewest >= cfg.min_runs && start.elapsed().as_secs_f64() >= budget)
        {
            break;
        }
        let img = decode_sample(round);
        for k in 0..nv {
            let j = (round + k) % nv;
            let v = &variants[j];
            let t = Instant::now();
            let input = v.prepare(&img)?;
            prep[j].push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            v.run(&input)?;
            runs[j].push(t.elapsed().as_secs_f64() * 1e3);
        }
        round += 1;
    }
    let mut out = Vec::with_capacity(nv);
    for (j, v) in variants.iter().enumerate() {
        let latency = LatencyStats::from_samples(&runs[j]);
        info!(
            "{}: load {:.0} ms, mean {:.2} ms, median {:.2} ms, p95 {:.2} ms over {} runs",
            v.name(),
            loads[j].0,
            latency.mean_ms,
            latency.median_ms,
            latency.p95_ms,
            latency.runs
        );
        out.push(VariantCost {
            name: v.name().to_string(),
            load_ms: loads[j].0,
            latency,
            prep_ms: LatencyStats::from_samples(&prep[j]).mean_ms,
            weights_bytes: v.spec().file_size_bytes,
            peak_rss_growth_bytes: loads[j].1,
        });
    }
    progress.step();
    Ok(Costs { variants: out })
}
