//! The compiler on a real profile of real shared images: a plan is written, reloads, refuses
//! truncation and tampering, refuses a zoo with other weights, and its operating points are
//! ordered and honest (out-of-fold top-1 never above the in-sample figure by much).

mod common;

use triage_compiler::compile::{compile, CompileOptions};
use triage_compiler::device::Device;
use triage_compiler::plan::Plan;
use triage_compiler::Profile;
use triage_zoo::Zoo;

fn device() -> Device {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("devices/this-host.toml");
    Device::load(&p).unwrap()
}

/// A profile of 60 DEV images (every variant, no remote options).
fn small_profile(dir: &std::path::Path) -> Profile {
    common::profile_subset(dir, 11, 60, Vec::new()).0
}

#[test]
fn compile_writes_a_valid_plan_that_round_trips_and_rejects_damage() {
    let dir = tempfile::tempdir().unwrap();
    let p = small_profile(dir.path());
    let opts = CompileOptions {
        folds: 3,
        max_chain: 3,
        max_router_chain: 2,
        bootstrap: 100,
        ..CompileOptions::default()
    };
    let (plan, report) = compile(&p, vec!["x".into()], &device(), &opts, &|_| {}).unwrap();
    assert_eq!(report.n_images, 60);
    assert_eq!(plan.variants.len(), 7);
    assert!(plan.points.len() >= 2);
    for w in plan.points.windows(2) {
        assert!(w[0].expected.mean_ms <= w[1].expected.mean_ms);
    }
    for pt in &plan.points {
        let e = &pt.expected;
        assert!(e.top1_ci95.0 <= e.top1 && e.top1 <= e.top1_ci95.1, "{e:?}");
        assert!(e.energy_mj > 0.0 && e.mean_ms > 0.0);
    }
    // Calibrated confidences are better calibrated out of fold for the overconfident
    // EfficientNets.
    let lite2 = plan
        .calibration
        .iter()
        .find(|c| c.name == "efficientnet_lite2")
        .unwrap();
    assert!(lite2.nll_after <= lite2.nll_before, "{lite2:?}");
    // The oracle bounds every operating point.
    for pt in &plan.points {
        assert!(pt.expected.top1 <= report.oracle.top1 + 1e-9);
    }

    let path = dir.path().join("plan.triage");
    plan.save(&path).unwrap();
    let back = Plan::load(&path).unwrap();
    assert_eq!(back, plan);
    assert_eq!(
        back.content_sha256().unwrap(),
        plan.content_sha256().unwrap()
    );
    back.check_zoo(&Zoo::open(common::zoo_dir()).unwrap())
        .unwrap();

    let bytes = std::fs::read(&path).unwrap();
    for cut in [0, 8, 12, 100, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let e = Plan::load(&path).unwrap_err().to_string();
        assert!(e.contains("plan.triage"), "{e}");
    }
    for pos in (0..bytes.len()).step_by(997) {
        let mut bad = bytes.clone();
        bad[pos] ^= 0x04;
        std::fs::write(&path, &bad).unwrap();
        assert!(Plan::load(&path).is_err(), "flip at {pos} went unnoticed");
    }

    // Points are looked up by name: names are unique, and a plan repeating one is refused.
    let mut names: Vec<&str> = plan.points.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), plan.points.len(), "{names:?}");
    let mut twice = plan.clone();
    twice.points[1].name = twice.points[0].name.clone();
    let e = twice.validate().unwrap_err();
    assert!(e.contains("two operating points are named"), "{e}");

    // A zoo whose weights differ is refused.
    let other = common::edited_zoo(|t| t.to_string());
    let mut wrong = plan.clone();
    wrong.variants[0].sha256 = "0".repeat(64);
    let e = wrong
        .check_zoo(&Zoo::open(other.path()).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("compiled for sha256"), "{e}");
}
