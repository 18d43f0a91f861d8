//! Helpers shared by the integration tests: where the shared data lives, and small fixtures.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `$TRIAGE_SHARED`, else `../shared` beside the repository root.
pub fn shared() -> PathBuf {
    let p = std::env::var_os("TRIAGE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    assert!(
        p.join("zoo/zoo.toml").is_file(),
        "shared data not found at {} (set TRIAGE_SHARED)",
        p.display()
    );
    p
}

pub fn zoo_dir() -> PathBuf {
    shared().join("zoo")
}

pub fn dev_dir() -> PathBuf {
    shared().join("datasets/imagenet-sample")
}

pub fn dev_image(name: &str) -> PathBuf {
    dev_dir().join("images").join(name)
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A temporary zoo: symlinks to the shared model files plus a `zoo.toml` edited by `edit`.
pub fn edited_zoo(edit: impl Fn(&str) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(zoo_dir()).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap();
        if name != "zoo.toml" {
            std::os::unix::fs::symlink(&p, dir.path().join(name)).unwrap();
        }
    }
    let text = std::fs::read_to_string(zoo_dir().join("zoo.toml")).unwrap();
    std::fs::write(dir.path().join("zoo.toml"), edit(&text)).unwrap();
    dir
}

/// Latency measurement short enough for tests.
pub fn quick_latency() -> triage_compiler::profile::run::LatencyConfig {
    triage_compiler::profile::run::LatencyConfig {
        warmup: 1,
        min_runs: 3,
        max_runs: 3,
        min_seconds: 0.0,
    }
}

/// Profiles every `step`-th DEV image (at most `take`) with every variant and the given remote
/// options, in `dir` (a labels-csv dataset of symlinks). Returns the profile and, in the
/// profile's order, each image's path and label.
pub fn profile_subset(
    dir: &Path,
    step: usize,
    take: usize,
    remote: Vec<triage_compiler::profile::RemoteOption>,
) -> (triage_compiler::Profile, Vec<(PathBuf, usize)>) {
    use triage_compiler::profile::run::{profile, NoProgress, ProfileConfig};
    use triage_zoo::{Dataset, DatasetOptions, Zoo};
    let zoo = Zoo::open(zoo_dir()).unwrap();
    let all = Dataset::open(dev_dir(), &DatasetOptions::default()).unwrap();
    let mut csv = String::from("file,label\n");
    std::fs::create_dir(dir.join("images")).unwrap();
    for s in all.samples().iter().step_by(step).take(take) {
        let name = s.rel.rsplit('/').next().unwrap();
        std::os::unix::fs::symlink(&s.path, dir.join("images").join(name)).unwrap();
        csv.push_str(&format!("images/{name},{}\n", s.label));
    }
    std::fs::write(dir.join("labels.csv"), csv).unwrap();
    let data = Dataset::open(dir, &DatasetOptions::default()).unwrap();
    let cfg = ProfileConfig {
        remote,
        shard: None,
        threads: 2,
        apply_orientation: true,
        latency: quick_latency(),
    };
    let out = dir.join("p.profile");
    profile(&zoo, &data, &out, &cfg, &NoProgress).unwrap();
    let p = triage_compiler::Profile::load(&out).unwrap();
    let images = p
        .images
        .iter()
        .map(|im| (dir.join(&im.rel), usize::from(im.label)))
        .collect();
    (p, images)
}

/// `plan` with every cell of `point`'s offloading table sending every answer (confidence below
/// 1) to the first remote option, whatever the network.
pub fn always_offload(
    plan: &triage_compiler::plan::Plan,
    point: usize,
) -> triage_compiler::plan::Plan {
    use triage_compiler::offload::{Cell, CellExpected};
    let mut plan = plan.clone();
    let mut table = plan.points[point]
        .offload
        .clone()
        .expect("the profile has a remote option, so points carry tables");
    for c in &mut table.cells {
        *c = Some(Cell {
            option: 0,
            below: 1.0,
            expected: CellExpected {
                top1: 0.7,
                mean_ms: 10.0,
                energy_mj: 1.0,
                usd_per_1000: 0.0,
                upload_kb: 5.0,
                offload_rate: 1.0,
            },
        });
    }
    plan.points[point].offload = Some(table);
    plan
}
