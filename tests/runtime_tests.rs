//! The embedded runtime on real models, real images and a real v2 server: live execution
//! agrees with the compiler's replay, offloading reaches the server and falls back on every
//! failure, memory stays under the cap, budgets persist, and bad plans, zoos and images are
//! clear errors.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use triage_compiler::compile::{compile, CompileOptions};
use triage_compiler::device::Device;
use triage_compiler::plan::Plan;
use triage_compiler::policy::Tables;
use triage_compiler::profile::RemoteOption;
use triage_compiler::Profile;
use triage_runtime::budget::BudgetConfig;
use triage_runtime::server::{ServeConfig, ServerHandle};
use triage_runtime::{NetworkView, Preference, Request, Runtime, RuntimeConfig, RuntimeError};
use triage_zoo::Zoo;

const SERVER_MODEL: &str = "mobilenet_v1_050_160";

fn device() -> Device {
    Device::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("devices/this-host.toml")).unwrap()
}

/// A 36-image profile (every 19th DEV image) with one remote option, and a plan compiled
/// from it.
struct Fixture {
    _dir: tempfile::TempDir,
    images: Vec<(PathBuf, usize)>,
    profile: Profile,
    plan: Plan,
    plan_path: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let remote = vec![RemoteOption {
        servers: vec![SERVER_MODEL.into()],
        shorter_side: Some(160),
        quality: 90,
    }];
    let (profile, images) = common::profile_subset(dir.path(), 19, 36, remote);
    let opts = CompileOptions {
        folds: 3,
        max_chain: 3,
        max_router_chain: 3,
        bootstrap: 50,
        ..CompileOptions::default()
    };
    let (plan, _) = compile(&profile, vec!["x".into()], &device(), &opts, &|_| {}).unwrap();
    let plan_path = dir.path().join("plan.triage");
    plan.save(&plan_path).unwrap();
    Fixture {
        _dir: dir,
        images,
        profile,
        plan,
        plan_path,
    }
}

fn local_config() -> RuntimeConfig {
    RuntimeConfig {
        server: None,
        verify_hashes: false,
        ..RuntimeConfig::default()
    }
}

/// The plan with every cell of `point` offloading through option 0 whatever the confidence.
#[test]
fn runtime_end_to_end() {
    let fx = fixture();
    let zoo_dir = common::zoo_dir();
    let n = fx.images.len();
    assert_eq!(fx.profile.images.len(), n);

    // 1. Live execution agrees with the compiler's exact replay of each operating point.
    let rt = Runtime::open(&fx.plan_path, &zoo_dir, local_config()).unwrap();
    let names: Vec<&str> = fx.plan.variants.iter().map(|v| v.name.as_str()).collect();
    let cols: Vec<usize> = names
        .iter()
        .map(|n| fx.profile.variant_index(n).unwrap())
        .collect();
    let probs: Vec<Vec<Vec<f32>>> = cols
        .iter()
        .zip(&fx.plan.variants)
        .map(|(&c, v)| {
            fx.profile
                .images
                .iter()
                .map(|im| im.measured().unwrap().local[c].probs(v.temperature as f32))
                .collect()
        })
        .collect();
    let labels: Vec<usize> = fx
        .profile
        .images
        .iter()
        .map(|i| usize::from(i.label))
        .collect();
    let tables = Tables::new(
        &probs,
        &labels,
        vec![0.0; n],
        vec![0.0; n],
        vec![1.0; cols.len()],
    );
    for (k, point) in fx.plan.points.iter().enumerate() {
        if point.policy.router.is_some() {
            continue; // router inputs differ slightly between a full and a scaled decode
        }
        let mut same_run = 0;
        let mut live_right = 0;
        let mut replay_right = 0;
        for (i, (path, label)) in fx.images.iter().enumerate() {
            let req = Request {
                preference: Preference::Point(k),
                ..Request::default()
            };
            let out = rt.classify_file(path, &req).unwrap();
            assert_eq!(out.point_index, k);
            let step = tables.step(&point.policy, i);
            let ran: Vec<&str> = (0..cols.len())
                .filter(|v| step.ran & (1 << v) != 0)
                .map(|v| names[v])
                .collect();
            let mut live = out.variants_run.clone();
            live.sort();
            let mut replay: Vec<String> = ran.iter().map(|s| s.to_string()).collect();
            replay.sort();
            same_run += usize::from(live == replay);
            live_right += usize::from(out.class == *label);
            replay_right += usize::from(step.correct);
        }
        // The runtime decodes at a smaller JPEG scale than the profiler (which also serves
        // the remote option): a borderline confidence may cross a threshold.
        assert!(same_run + 3 >= n, "point {}: {same_run}/{n}", point.name);
        assert!(
            live_right.abs_diff(replay_right) <= 2,
            "point {}: live {live_right} vs replay {replay_right}",
            point.name
        );
    }

    // 2. Offloading through a real v2 server; the answer comes back and is paid for.
    let zoo = Arc::new(Zoo::open(&zoo_dir).unwrap());
    let mut sc = ServeConfig::new(vec![SERVER_MODEL.into()]);
    sc.workers = 1;
    let server = ServerHandle::start("127.0.0.1:0".parse().unwrap(), zoo, sc).unwrap();
    server.wait_ready(Duration::from_secs(60)).unwrap();
    let dp = fx.plan.default_point;
    let offloading = common::always_offload(&fx.plan, dp);
    let cfg = RuntimeConfig {
        server: Some(server.url()),
        assumed_network: Some(NetworkView {
            up_mbps: 50.0,
            rtt_ms: 1.0,
        }),
        ..local_config()
    };
    let rt = Runtime::with_plan(offloading.clone(), &fx.plan_path, &zoo_dir, cfg.clone()).unwrap();
    let mut remote_right = 0;
    for (path, label) in fx.images.iter().take(8) {
        let out = rt.classify_file(path, &Request::default()).unwrap();
        assert!(out.answered_remotely, "{out:?}");
        let r = out.remote.as_ref().unwrap();
        assert!(r.upload_bytes > 1000 && r.error.is_none());
        assert!(out.usd > 0.0);
        remote_right += usize::from(out.class == *label);
    }
    assert!(remote_right >= 4, "{remote_right}/8 right via the server");
    assert!(rt.status().network.is_some());

    // 3. A server that is down: the local answer stands, nothing is lost.
    let down = RuntimeConfig {
        server: Some("http://127.0.0.1:9".into()),
        ..cfg.clone()
    };
    let rt = Runtime::with_plan(offloading.clone(), &fx.plan_path, &zoo_dir, down).unwrap();
    for (path, _) in fx.images.iter().take(3) {
        let out = rt.classify_file(path, &Request::default()).unwrap();
        assert!(!out.answered_remotely);
        assert!(out.remote.as_ref().is_none_or(|r| r.error.is_some()));
    }

    // 4. A cloud budget of zero: never offloads, and spends nothing.
    let broke = RuntimeConfig {
        budget: BudgetConfig {
            usd: Some(0.0),
            ..BudgetConfig::default()
        },
        ..cfg
    };
    let rt = Runtime::with_plan(offloading, &fx.plan_path, &zoo_dir, broke).unwrap();
    let out = rt
        .classify_file(&fx.images[0].0, &Request::default())
        .unwrap();
    assert!(out.remote.is_none() && out.usd == 0.0, "{out:?}");
    assert_eq!(rt.status().spent.usd, 0.0);
    server.shutdown().unwrap();

    // 5. The memory cap holds: only one variant at a time when the cap fits one.
    let biggest = fx
        .plan
        .variants
        .iter()
        .map(|v| {
            let z = Zoo::open(&zoo_dir).unwrap();
            z.variant(&v.name).unwrap().spec().file_size_bytes * 2
        })
        .max()
        .unwrap();
    let capped = RuntimeConfig {
        memory_cap_bytes: Some(biggest),
        ..local_config()
    };
    let rt = Runtime::open(&fx.plan_path, &zoo_dir, capped).unwrap();
    let req = Request {
        preference: Preference::MostAccurate,
        ..Request::default()
    };
    for (path, _) in fx.images.iter().take(6) {
        rt.classify_file(path, &req).unwrap();
        let s = rt.status();
        assert!(s.loaded_bytes <= biggest, "{s:?}");
    }

    // 6. Budget state persists across a restart; a tampered state file is an error.
    let state = fx._dir.path().join("budget.json");
    let budgeted = RuntimeConfig {
        budget: BudgetConfig {
            energy_mj: Some(5_000.0),
            state_file: Some(state.clone()),
            ..BudgetConfig::default()
        },
        ..local_config()
    };
    let rt = Runtime::open(&fx.plan_path, &zoo_dir, budgeted.clone()).unwrap();
    // Pacing alone would keep so small a budget on the cheapest point; pin the most
    // expensive one so that stages are admitted until the budget runs out.
    let pinned = Request {
        preference: Preference::Point(fx.plan.points.len() - 1),
        ..Request::default()
    };
    let mut spent = 0.0;
    for (path, _) in fx.images.iter().take(8) {
        spent += rt.classify_file(path, &pinned).unwrap().charged.energy_mj;
    }
    assert!(spent > 0.0 && spent <= 5_000.0);
    drop(rt);
    let rt = Runtime::open(&fx.plan_path, &zoo_dir, budgeted.clone()).unwrap();
    assert!(rt.status().spent.energy_mj >= spent - 1e-6);
    drop(rt);
    let text = std::fs::read_to_string(&state).unwrap();
    std::fs::write(
        &state,
        text.replace("\"checksum\": \"", "\"checksum\": \"0"),
    )
    .unwrap();
    let e = Runtime::open(&fx.plan_path, &zoo_dir, budgeted)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("budget.json") && e.contains("corrupted"), "{e}");

    // 7. Bad inputs: an undecodable image, a truncated plan, a plan for another zoo.
    let rt = Runtime::open(&fx.plan_path, &zoo_dir, local_config()).unwrap();
    let junk = fx._dir.path().join("junk.JPEG");
    std::fs::write(&junk, b"not an image at all").unwrap();
    let e = rt.classify_file(&junk, &Request::default()).unwrap_err();
    assert!(matches!(e, RuntimeError::Decode { .. }), "{e}");
    assert!(e.to_string().contains("junk.JPEG"), "{e}");
    let bytes = std::fs::read(&fx.plan_path).unwrap();
    let cut = fx._dir.path().join("cut.triage");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = Runtime::open(&cut, &zoo_dir, local_config()).err().unwrap();
    assert!(e.to_string().contains("cut.triage"), "{e}");
    let mut foreign = fx.plan.clone();
    foreign.variants[1].sha256 = "ab".repeat(32);
    let e = Runtime::with_plan(foreign, &fx.plan_path, &zoo_dir, local_config())
        .err()
        .unwrap();
    assert!(matches!(e, RuntimeError::ZooMismatch { .. }), "{e}");
}
