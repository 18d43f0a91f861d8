//! A synthetic replay fixture for unit tests: three variants of rising cost and accuracy,
//! one remote option that is always right, confidence that tracks correctness.

use triage_compiler::device::Device;
use triage_premodel::rng::SplitMix64;
use triage_premodel::Matrix;

use super::{Context, Settings};
use crate::data::{EvalData, RemoteData, VariantData};
use crate::network::Link;

pub(crate) struct Fixture {
    pub data: EvalData,
    pub device: Device,
    pub link: Link,
    pub settings: Settings,
}

fn logits(label: usize, pred: usize, sharp: f32) -> Vec<f32> {
    let mut z = vec![0f32; 1000];
    z[pred] = sharp;
    z[(label + 1) % 1000] += 1.0;
    z
}

pub(crate) fn device() -> Device {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../devices/this-host.toml");
    Device::load(&p).expect("shipped device profile")
}

impl Fixture {
    pub fn new(n: usize) -> Self {
        let mut rng = SplitMix64::new(7);
        let labels: Vec<usize> = (0..n).map(|i| (i * 37) % 1000).collect();
        let accuracy = [0.5, 0.7, 0.85];
        let cost = [1.0, 4.0, 20.0];
        let variants = (0..3)
            .map(|v| {
                let mut lg = Vec::new();
                let mut ok = Vec::new();
                for &y in &labels {
                    let right = rng.next_f64() < accuracy[v];
                    let pred = if right { y } else { (y + 7) % 1000 };
                    lg.push(logits(y, pred, if right { 12.0 } else { 6.0 }));
                    ok.push(right);
                }
                VariantData {
                    name: format!("v{v}"),
                    sha256: "0".repeat(64),
                    stage_ms: cost[v],
                    logits: lg,
                    top5: ok.clone(),
                    correct: ok,
                }
            })
            .collect();
        let remote = vec![RemoteData {
            name: "v2@full/q90".into(),
            server_ms: 20.0,
            logits: labels.iter().map(|&y| logits(y, y, 12.0)).collect(),
            correct: vec![true; n],
            top5: vec![true; n],
            upload_bytes: vec![20_000.0; n],
            encode_ms: vec![2.0; n],
        }];
        let features = Matrix::new(
            n,
            triage_premodel::features::IMAGE_FEATURE_NAMES.len(),
            (0..n * triage_premodel::features::IMAGE_FEATURE_NAMES.len())
                .map(|_| rng.next_f32())
                .collect(),
        )
        .expect("feature matrix");
        let data = EvalData {
            rows: (0..n).collect(),
            rel: (0..n).map(|i| format!("img{i}.jpg")).collect(),
            labels,
            variants,
            remote,
            decode_ms: vec![2.0; n],
            features_ms: vec![0.5; n],
            features,
            zoo_fingerprint: "zoo".into(),
            dataset_identity: "ds".into(),
            dataset_root: "/fixture".into(),
            n_failed: 0,
            host_cpu: "test".into(),
        };
        Fixture {
            data,
            device: device(),
            link: Link::constant("lte", 10.0, 10.0, 50.0),
            settings: Settings {
                seed: 0,
                energy_budget_mj: 100.0,
                usd_budget_per_image: None,
                latency_limit_ms: 50.0,
                match_tolerance: 0.003,
                min_prob: 0.5,
            },
        }
    }

    pub fn ctx(&self) -> Context<'_> {
        Context {
            data: &self.data,
            device: &self.device,
            link: &self.link,
            settings: &self.settings,
        }
    }
}
