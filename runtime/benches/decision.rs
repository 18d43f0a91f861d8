//! Decision overhead of the runtime, excluding inference and features: choosing the operating
//! point (pacing against the budgets, the network estimate), admitting each stage against the
//! energy budget, calibrating and ensembling the stages' outputs, and the offload decision.
//! The backend returns precomputed logits instantly, so everything measured is the runtime's
//! own work per request. Baseline in the same run: one softmax over 1000 logits (what any
//! runtime must do once per stage anyway).
//!
//! `cargo bench -p triage-runtime --bench decision` (needs a compiled plan, `out/plan.triage`
//! by default or `TRIAGE_PLAN`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use triage_compiler::plan::{Plan, PlanRemote};
use triage_premodel::features::FeatureSet;
use triage_runtime::budget::{unix_ms_now, Budget, BudgetConfig};
use triage_runtime::execute::{Backend, Executor, UploadFailure, Uploaded};
use triage_runtime::{Request, RuntimeConfig, RuntimeError};

/// Answers every variant with the same logits; never offloads successfully.
struct Canned {
    logits: Vec<f32>,
    features: Vec<f32>,
}

impl Backend for Canned {
    fn prepare(&mut self, _variants: &[usize]) -> Result<(), RuntimeError> {
        Ok(())
    }
    fn run(&mut self, _v: usize) -> Result<Vec<f32>, RuntimeError> {
        Ok(self.logits.clone())
    }
    fn features(&mut self, set: FeatureSet, _probe: Option<&[f32]>) -> Result<Vec<f32>, String> {
        Ok(self.features[..set.len()].to_vec())
    }
    fn remote_available(&self) -> bool {
        false
    }
    fn upload(&mut self, _o: &PlanRemote, _d: Instant) -> Result<Uploaded, UploadFailure> {
        Err(UploadFailure {
            error: "no server in this benchmark".into(),
            reached_server: false,
        })
    }
}

fn bench(c: &mut Criterion) {
    let path = std::env::var_os("TRIAGE_PLAN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../out/plan.triage"))
        });
    let plan = match Plan::load(&path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("skipping the decision benchmark: {e}");
            return;
        }
    };
    let config = RuntimeConfig {
        budget: BudgetConfig {
            energy_mj: Some(1e12),
            usd: Some(1e6),
            horizon: Duration::from_secs(3600),
            ..BudgetConfig::default()
        },
        ..RuntimeConfig::default()
    };
    let budget = Budget::open(config.budget.clone(), unix_ms_now()).expect("budget");
    let exec = Executor::new(plan.clone(), budget, &config).expect("executor");
    exec.observe_network(Some(Duration::from_millis(30)), Some(20e6));
    // Logits whose confidence (about 0.5) sends most cascades through several stages.
    let mut logits = vec![0f32; 1000];
    logits[7] = 7.0;
    logits[8] = 6.9;
    let mut backend = Canned {
        logits: logits.clone(),
        features: vec![0.1; 64],
    };
    let label = |c: usize| c.to_string();
    let mut g = c.benchmark_group("decision");
    g.bench_function("softmax_1000 (baseline)", |b| {
        b.iter(|| black_box(triage_zoo::logits::softmax(black_box(&logits), 1.0)))
    });
    g.bench_function("decide", |b| {
        b.iter(|| black_box(exec.decide(&Request::default())))
    });
    for (k, p) in plan.points.iter().enumerate() {
        let req = Request {
            preference: triage_runtime::Preference::Point(k),
            ..Request::default()
        };
        let stages = p.policy.chain.len();
        g.bench_function(format!("execute {} ({stages} stages)", p.name), |b| {
            b.iter(|| black_box(exec.execute(&mut backend, &req, &label)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
