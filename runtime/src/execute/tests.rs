//! The executor on a synthetic plan with a scripted backend: budgets under random networks
//! and random server failures, answers always, concurrency.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use proptest::prelude::*;
use triage_compiler::device::Device;
use triage_compiler::offload::{Cell, CellExpected, OffloadTable, RTT_MS_EDGES, UP_MBPS_EDGES};
use triage_compiler::plan::{Expected, OperatingPoint, PlanVariant, Provenance};
use triage_compiler::policy::{Policy, Rule};

use super::*;
use crate::budget::BudgetConfig;

fn device() -> Device {
    Device::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../devices/phone.toml"))
        .expect("shipped device profile")
}

fn expected(top1: f64, ms: f64, mj: f64) -> Expected {
    Expected {
        top1,
        top1_ci95: (top1 - 0.02, top1 + 0.02),
        mean_ms: ms,
        mean_ms_ci95: (ms * 0.9, ms * 1.1),
        p95_ms: ms * 2.0,
        energy_mj: mj,
        usd_per_1000: 0.0,
        upload_kb: 0.0,
    }
}

fn table(option: usize, below: f32, min_up: usize) -> OffloadTable {
    let n = (UP_MBPS_EDGES.len() + 1) * (RTT_MS_EDGES.len() + 1);
    let cells = (0..n)
        .map(|i| {
            let up = i / (RTT_MS_EDGES.len() + 1);
            (up >= min_up).then_some(Cell {
                option,
                below,
                expected: CellExpected {
                    top1: 0.9,
                    mean_ms: 80.0,
                    energy_mj: 900.0,
                    usd_per_1000: 0.5,
                    upload_kb: 20.0,
                    offload_rate: 0.3,
                },
            })
        })
        .collect();
    OffloadTable {
        link: "lte".into(),
        up_mbps_edges: UP_MBPS_EDGES.to_vec(),
        rtt_ms_edges: RTT_MS_EDGES.to_vec(),
        latency_limit_ms: 100.0,
        cells,
    }
}

/// Three variants (2, 10, 40 ms), two remote options, three points of which two offload.
pub(crate) fn synthetic_plan() -> Plan {
    let d = device();
    let variant = |name: &str, ms: f64| PlanVariant {
        name: name.into(),
        sha256: "0".repeat(64),
        input_size: 224,
        temperature: 1.0,
        mean_ms: ms,
        prep_ms: 0.5,
    };
    let remote = |name: &str, side: Option<u32>| PlanRemote {
        name: name.into(),
        servers: vec!["big".into()],
        shorter_side: side,
        quality: 90,
        temperature: 1.0,
        mean_upload_bytes: 30_000.0,
        top1: 0.9,
        server_ms: 30.0,
    };
    let point =
        |name: &str, policy: Policy, e: Expected, offload: Option<OffloadTable>| OperatingPoint {
            name: name.into(),
            rule: Rule::MostAccurate,
            policy,
            offload,
            in_sample_top1: e.top1,
            in_sample_ms: e.mean_ms,
            expected: e,
        };
    let decode = 3.0;
    let mj = |ms: f64| d.compute_mj(ms);
    Plan {
        provenance: Provenance {
            tool_version: "test".into(),
            created: "now".into(),
            profiles: vec![],
            dataset_identity: "synthetic".into(),
            n_images: 0,
            folds: 5,
            seed: 0,
            selection_z: 1.0,
            zoo_fingerprint: "synthetic".into(),
        },
        variants: vec![
            variant("small", 2.0),
            variant("medium", 10.0),
            variant("large", 40.0),
        ],
        remote: vec![remote("big@full", None), remote("big@224", Some(224))],
        premodels: vec![],
        points: vec![
            point(
                "fast",
                Policy {
                    chain: vec![0],
                    thresholds: vec![],
                    ensemble: false,
                    router: None,
                },
                expected(0.5, decode + 2.5, mj(decode + 2.5)),
                None,
            ),
            point(
                "cascade",
                Policy {
                    chain: vec![0, 1],
                    thresholds: vec![0.8],
                    ensemble: false,
                    router: None,
                },
                expected(0.75, decode + 8.0, mj(decode + 8.0)),
                Some(table(0, 0.9, 2)),
            ),
            point(
                "accurate",
                Policy {
                    chain: vec![0, 1, 2],
                    thresholds: vec![0.7, 0.8],
                    ensemble: true,
                    router: None,
                },
                expected(0.85, decode + 25.0, mj(decode + 25.0)),
                Some(table(1, 0.95, 4)),
            ),
        ],
        default_point: 2,
        decode_ms: decode,
        decode_min_shorter_side: None,
        features_ms: 0.3,
        calibration: vec![],
        device: d,
    }
}

/// A scripted world: variant answers with random confidence, a server that fails, times out
/// or answers, at random.
struct Scripted {
    rng: u64,
    fail_variant: f64,
    fail_server: f64,
}

impl Scripted {
    fn next(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn logits(&mut self) -> Vec<f32> {
        let mut z = vec![0f32; 1000];
        let c = (self.next() % 1000) as usize;
        z[c] = (self.unit() * 12.0) as f32;
        z
    }
}

impl Backend for Scripted {
    fn prepare(&mut self, _variants: &[usize]) -> Result<(), RuntimeError> {
        Ok(())
    }

    fn run(&mut self, v: usize) -> Result<Vec<f32>, RuntimeError> {
        if v > 0 && self.unit() < self.fail_variant {
            return Err(RuntimeError::Config("scripted variant failure".into()));
        }
        Ok(self.logits())
    }

    fn features(&mut self, _set: FeatureSet, _probe: Option<&[f32]>) -> Result<Vec<f32>, String> {
        Err("no routers in this plan".into())
    }

    fn remote_available(&self) -> bool {
        true
    }

    fn upload(&mut self, opt: &PlanRemote, _deadline: Instant) -> Result<Uploaded, UploadFailure> {
        if self.unit() < self.fail_server {
            return Err(UploadFailure {
                error: "scripted server failure".into(),
                reached_server: self.unit() < 0.5,
            });
        }
        let attempts = 1 + (self.next() % 3) as u32;
        let z = self.logits();
        Ok(Uploaded {
            probs_sum: triage_zoo::logits::softmax(&z, 1.0),
            timings: vec![RemoteTiming {
                upload_bytes: opt.mean_upload_bytes as u64,
                download_bytes: 12_000,
                wall: Duration::from_millis(20 + self.next() % 400),
                total: Duration::from_millis(500),
                attempts,
                server_compute: Some(Duration::from_millis(30)),
                server_queue: None,
            }],
        })
    }
}

fn executor(energy_mj: f64, usd: f64) -> Executor {
    let config = RuntimeConfig {
        budget: BudgetConfig {
            energy_mj: Some(energy_mj),
            usd: Some(usd),
            ..BudgetConfig::default()
        },
        ..RuntimeConfig::default()
    };
    let budget = Budget::open(config.budget.clone(), unix_ms_now()).expect("budget");
    Executor::new(synthetic_plan(), budget, &config).expect("executor")
}

fn label(c: usize) -> String {
    format!("class {c}")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2))]

    /// 10,000 requests with random network conditions, random deadlines and preferences,
    /// random variant and server failures: every request is answered, and neither budget is
    /// ever exceeded, by the runtime's books or by the sum of what requests were charged.
    #[test]
    fn budgets_hold_and_every_request_is_answered(seed in any::<u64>(), energy in 500.0f64..200_000.0, usd in 0.0f64..0.002) {
        let exec = executor(energy, usd);
        let mut world = Scripted { rng: seed, fail_variant: 0.05, fail_server: 0.3 };
        let mut charged = Cost::ZERO;
        for i in 0..10_000 {
            let now = Instant::now();
            {
                let mut est = lock(&exec.estimator);
                if world.unit() < 0.3 {
                    est.observe_rtt(now, Duration::from_millis(5 + world.next() % 400));
                }
                if world.unit() < 0.3 {
                    est.observe_throughput(now, 1e5 + world.unit() * 5e7);
                }
            }
            let req = Request {
                deadline: (world.unit() < 0.3).then(|| Duration::from_millis(world.next() % 200)),
                preference: match i % 4 {
                    0 => Preference::Default,
                    1 => Preference::MostAccurate,
                    2 => Preference::Fastest,
                    _ => Preference::LatencyMs(world.unit() * 40.0),
                },
                // Now and then a priority so high that pacing allows anything: the hard
                // guarantee must then come from the worst-case reservations alone.
                priority: if world.unit() < 0.2 { 1e9 } else { 0.5 + world.unit() * 2.0 },
            };
            let out = exec.execute(&mut world, &req, &label);
            let out = match out {
                Ok(o) => o,
                Err(e) => return Err(TestCaseError::fail(format!("request {i} unanswered: {e}"))),
            };
            prop_assert!(out.class < 1000 && !out.variants_run.is_empty());
            charged = charged + out.charged;
            let b = lock(&exec.budget);
            prop_assert!(b.used().energy_mj <= energy + 1e-6, "{:?}", b.used());
            prop_assert!(b.used().usd <= usd + 1e-12, "{:?}", b.used());
        }
        prop_assert!(charged.energy_mj <= energy + 1e-6, "{charged:?}");
        prop_assert!(charged.usd <= usd + 1e-12, "{charged:?}");
    }
}

use crate::decide::Preference;

#[test]
fn a_spent_budget_falls_back_to_the_cheapest_variant() {
    let exec = executor(0.0, 0.0);
    let mut world = Scripted {
        rng: 7,
        fail_variant: 0.0,
        fail_server: 0.0,
    };
    for _ in 0..100 {
        let out = exec
            .execute(&mut world, &Request::default(), &label)
            .expect("answer");
        assert_eq!(out.variants_run, vec!["small".to_string()]);
        assert!(out.remote.is_none());
        assert_eq!(out.charged, Cost::ZERO);
    }
}

#[test]
fn an_unlimited_budget_runs_the_default_point_and_offloads_unsure_answers() {
    let config = RuntimeConfig::default();
    let budget = Budget::open(config.budget.clone(), unix_ms_now()).expect("budget");
    let exec = Executor::new(synthetic_plan(), budget, &config).expect("executor");
    {
        let mut est = lock(&exec.estimator);
        est.observe_rtt(Instant::now(), Duration::from_millis(20));
        est.observe_throughput(Instant::now(), 50e6);
    }
    let mut world = Scripted {
        rng: 3,
        fail_variant: 0.0,
        fail_server: 0.0,
    };
    let mut remote = 0;
    for _ in 0..200 {
        let out = exec
            .execute(&mut world, &Request::default(), &label)
            .expect("answer");
        assert_eq!(out.point, "accurate");
        if out.answered_remotely {
            remote += 1;
            assert!(out.usd > 0.0);
        }
    }
    assert!(remote > 0);
}

#[test]
fn a_slow_network_keeps_requests_local() {
    let exec = executor(1e9, 1.0);
    {
        let mut est = lock(&exec.estimator);
        est.observe_rtt(Instant::now(), Duration::from_millis(400));
        est.observe_throughput(Instant::now(), 0.2e6);
    }
    let mut world = Scripted {
        rng: 5,
        fail_variant: 0.0,
        fail_server: 0.0,
    };
    for _ in 0..100 {
        let out = exec
            .execute(&mut world, &Request::default(), &label)
            .expect("answer");
        assert!(out.remote.is_none());
    }
}

#[test]
fn concurrent_streams_share_one_budget_without_overspending() {
    let exec = Arc::new(executor(3_000.0, 0.0005));
    {
        let mut est = lock(&exec.estimator);
        est.observe_rtt(Instant::now(), Duration::from_millis(20));
        est.observe_throughput(Instant::now(), 50e6);
    }
    let answered = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let exec = Arc::clone(&exec);
            let answered = Arc::clone(&answered);
            std::thread::spawn(move || {
                let mut world = Scripted {
                    rng: t,
                    fail_variant: 0.02,
                    fail_server: 0.2,
                };
                let req = Request {
                    priority: 1.0 + t as f64,
                    ..Request::default()
                };
                for _ in 0..1000 {
                    if exec.execute(&mut world, &req, &label).is_ok() {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    assert_eq!(answered.load(Ordering::Relaxed), 4000);
    let b = lock(&exec.budget);
    assert!(b.used().energy_mj <= 3_000.0 + 1e-6 && b.used().usd <= 0.0005 + 1e-12);
}
