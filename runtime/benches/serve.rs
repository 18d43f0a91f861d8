//! Serving throughput and tail latency of the v2 server on `efficientnet_lite2`.
//!
//! 1. Criterion: one local inference, and one request served over loopback HTTP (binary
//!    FP32 tensor), both single-threaded.
//! 2. The single-image latency `L` measured again here (median of 40 runs), giving the ideal
//!    throughput with every core busy: `workers * 1000 / L` images/s.
//! 3. Saturation (closed loop): `2 * workers` clients send back to back for a few seconds;
//!    throughput as a fraction of the ideal.
//! 4. Open loop at 80% of the ideal rate: requests start on a fixed schedule whatever the
//!    server does (latency is measured from the scheduled start, so a stalled server is not
//!    hidden by clients that wait); p50, p99, max.
//!
//! Bounded: `TRIAGE_BENCH_SECS` (default 5) seconds per load phase. Run with
//! `cargo bench -p triage-runtime --bench serve`; `TRIAGE_SHARED` locates the zoo.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::Criterion;
use triage_runtime::remote::{BreakerConfig, RemoteClient, RemoteConfig, RemoteError};
use triage_runtime::server::{ServeConfig, ServerHandle};
use triage_zoo::{DecodeOptions, PreparedInput, Zoo};

const MODEL: &str = "efficientnet_lite2";

fn shared() -> PathBuf {
    std::env::var_os("TRIAGE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

fn client(url: &str) -> RemoteClient {
    // Measure the server, not the client's defences: no retries, and a breaker that never
    // opens on the 503s an overloaded server is expected to send.
    let config = RemoteConfig {
        max_retries: 0,
        binary_output: true,
        breaker: BreakerConfig {
            failure_threshold: u32::MAX,
            cool_down: Duration::ZERO,
        },
        ..RemoteConfig::default()
    };
    match RemoteClient::new(url, config) {
        Ok(c) => c,
        Err(e) => panic!("client: {e}"),
    }
}

/// Closed loop: `clients` threads send back to back for `secs`; returns (completed, busy).
fn saturate(url: &str, input: &Arc<PreparedInput>, clients: usize, secs: f64) -> (usize, usize) {
    let done = Arc::new(AtomicUsize::new(0));
    let busy = Arc::new(AtomicUsize::new(0));
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (c, input, done, busy) = (client(url), input.clone(), done.clone(), busy.clone());
            std::thread::spawn(move || {
                while Instant::now() < end {
                    match c.infer_tensor(MODEL, &input, Instant::now() + Duration::from_secs(10)) {
                        Ok(_) => {
                            if Instant::now() <= end {
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(RemoteError::Server { status: 503, .. }) => {
                            busy.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Err(e) => panic!("request failed: {e}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    (done.load(Ordering::Relaxed), busy.load(Ordering::Relaxed))
}

/// Open loop at `rate` requests/s for `secs`: latencies (ms) from the scheduled start, and
/// the number of 503 replies.
fn open_loop(url: &str, input: &Arc<PreparedInput>, rate: f64, secs: f64) -> (Vec<f64>, usize) {
    let n = (rate * secs).round() as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now() + Duration::from_millis(50);
    let next = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let busy = Arc::new(AtomicUsize::new(0));
    // Enough senders that one is always free when a request is due.
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let (c, input, next, latencies, busy) = (
                client(url),
                input.clone(),
                next.clone(),
                latencies.clone(),
                busy.clone(),
            );
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let due = start + interval * i as u32;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                match c.infer_tensor(MODEL, &input, Instant::now() + Duration::from_secs(10)) {
                    Ok(_) => {
                        let ms = due.elapsed().as_secs_f64() * 1e3;
                        latencies.lock().unwrap_or_else(|p| p.into_inner()).push(ms);
                    }
                    Err(RemoteError::Server { status: 503, .. }) => {
                        busy.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("request failed: {e}"),
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let mut v = std::mem::take(&mut *latencies.lock().unwrap_or_else(|p| p.into_inner()));
    v.sort_by(f64::total_cmp);
    (v, busy.load(Ordering::Relaxed))
}

fn main() {
    let secs: f64 = std::env::var("TRIAGE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let zoo = Arc::new(Zoo::open(shared().join("zoo")).unwrap_or_else(|e| panic!("zoo: {e}")));
    let v = zoo.variant(MODEL).unwrap_or_else(|e| panic!("{e}"));
    let jpeg =
        std::fs::read(shared().join("datasets/imagenet-sample/images/n01443537_goldfish.JPEG"))
            .unwrap_or_else(|e| panic!("image: {e}"));
    let opts = Zoo::decode_options_for([v], DecodeOptions::default());
    let img = triage_zoo::decode_bytes(&jpeg, Path::new("goldfish"), &opts)
        .unwrap_or_else(|e| panic!("{e}"));
    let input = Arc::new(v.prepare(&img).unwrap_or_else(|e| panic!("{e}")));
    v.load().unwrap_or_else(|e| panic!("{e}"));

    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut config = ServeConfig::new(vec![MODEL.to_string()]);
    config.workers = workers;
    config.queue = 4 * workers;
    config.io_threads = 1;
    let server = ServerHandle::start(
        "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
        zoo.clone(),
        config,
    )
    .unwrap_or_else(|e| panic!("server: {e}"));
    server
        .wait_ready(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();

    // 1. Criterion, single-threaded.
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    c.bench_function("efficientnet_lite2/local_run", |b| {
        b.iter(|| v.run(&input).unwrap_or_else(|e| panic!("{e}")))
    });
    let one = client(&url);
    c.bench_function("efficientnet_lite2/served_fp32_binary", |b| {
        b.iter(|| {
            one.infer_tensor(MODEL, &input, Instant::now() + Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("{e}"))
        })
    });
    c.bench_function("efficientnet_lite2/served_jpeg_binary", |b| {
        b.iter(|| {
            one.infer_image(MODEL, &jpeg, Instant::now() + Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("{e}"))
        })
    });
    c.final_summary();

    // 2. Single-image latency in this run.
    for _ in 0..5 {
        let _ = v.run(&input);
    }
    let mut lat: Vec<f64> = (0..40)
        .map(|_| {
            let t = Instant::now();
            let _ = v.run(&input);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let l = percentile(&lat, 0.5);
    let ideal = workers as f64 * 1000.0 / l;
    println!(
        "\nsingle-image latency of {MODEL}: median {l:.2} ms (min {:.2}, max {:.2}) -> ideal {ideal:.1} images/s on {workers} workers",
        lat[0],
        lat[lat.len() - 1]
    );

    // 2a. Where a single served request's time goes (server-reported compute and queueing).
    let mut parts: Vec<(f64, f64, f64)> = (0..20)
        .map(|_| {
            let r = one
                .infer_tensor(MODEL, &input, Instant::now() + Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("{e}"));
            let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
            (
                r.timing.wall.as_secs_f64() * 1e3,
                ms(r.timing.server_compute),
                ms(r.timing.server_queue),
            )
        })
        .collect();
    parts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (w, c, q) = parts[parts.len() / 2];
    println!(
        "one served FP32 request (median of 20): wall {w:.2} ms = server compute {c:.2} ms + queue {q:.2} ms + {:.2} ms HTTP/transfer",
        w - c - q
    );

    // 2b. The hardware's own ceiling: `workers` threads running the model back to back
    // in-process, no server (two vCPUs may share a physical core or memory bandwidth).
    let local_rate = {
        let end = Instant::now() + Duration::from_secs_f64(secs.min(3.0));
        let count = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..workers {
                let (count, input) = (count.clone(), input.clone());
                s.spawn(move || {
                    while Instant::now() < end {
                        let _ = v.run(&input);
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        count.load(Ordering::Relaxed) as f64 / secs.min(3.0)
    };
    println!(
        "local, {workers} threads, no server: {local_rate:.1} images/s = {:.2} x ideal",
        local_rate / ideal
    );

    // 3. Saturation.
    let (done, busy) = saturate(&url, &input, 2 * workers, secs);
    let rate = done as f64 / secs;
    println!(
        "saturation ({} clients, {secs} s): {rate:.1} images/s = {:.2} x ideal = {:.2} x local {workers}-thread ({busy} busy replies)",
        2 * workers,
        rate / ideal,
        rate / local_rate
    );

    // 4. Open loop at 80% of the ideal rate.
    let target = 0.8 * ideal;
    let (lats, busy) = open_loop(&url, &input, target, secs);
    println!(
        "open loop at {target:.1} req/s (80% of ideal) for {secs} s: {} answered, {busy} busy; latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lats.len(),
        percentile(&lats, 0.5),
        percentile(&lats, 0.9),
        percentile(&lats, 0.99),
        lats.last().copied().unwrap_or(f64::NAN)
    );
    if let Err(e) = server.shutdown() {
        eprintln!("shutdown: {e}");
    }
}
