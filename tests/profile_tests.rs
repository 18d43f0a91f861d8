//! The profiler on real models and real shared images: accuracy equals a direct evaluation,
//! shards merge to the unsharded result, a killed run resumes, a bad image is recorded and
//! skipped.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use triage_compiler::profile::merge::merge;
use triage_compiler::profile::run::{profile, NoProgress, ProfileConfig};
use triage_compiler::profile::{ImageRecord, RemoteGrid};
use triage_compiler::Profile;
use triage_zoo::eval::evaluate;
use triage_zoo::{Dataset, DatasetOptions, Shard, Zoo};

/// A cheap remote grid: the smallest variant as the server, one small upload.
const GRID: &str = "mobilenet_v1_025_128:96:50";

fn config(shard: Option<Shard>) -> ProfileConfig {
    ProfileConfig {
        remote: GRID.parse::<RemoteGrid>().unwrap().0,
        shard,
        threads: 2,
        apply_orientation: true,
        latency: common::quick_latency(),
    }
}

/// The first `n` DEV images, spread over the class list.
fn dev_subset(n: usize) -> (tempfile::TempDir, Dataset) {
    let dir = tempfile::tempdir().unwrap();
    let all = Dataset::open(common::dev_dir(), &DatasetOptions::default()).unwrap();
    let mut csv = String::from("file,label\n");
    std::fs::create_dir(dir.path().join("images")).unwrap();
    for s in all.samples().iter().step_by(700 / n).take(n) {
        let name = s.rel.rsplit('/').next().unwrap();
        std::os::unix::fs::symlink(&s.path, dir.path().join("images").join(name)).unwrap();
        csv.push_str(&format!("images/{name},{}\n", s.label));
    }
    std::fs::write(dir.path().join("labels.csv"), csv).unwrap();
    let data = Dataset::open(dir.path(), &DatasetOptions::default()).unwrap();
    (dir, data)
}

/// An image record without its timings, which differ from run to run.
fn content(r: &ImageRecord) -> ImageRecord {
    let mut r = r.clone();
    if let Ok(m) = &mut r.result {
        m.decode_us = 0;
        m.features_us = 0;
        for p in &mut m.local {
            (p.prep_us, p.infer_us) = (0, 0);
        }
        for p in &mut m.remote {
            p.encode_us = 0;
            (p.prediction.prep_us, p.prediction.infer_us) = (0, 0);
        }
    }
    r
}

fn same_content(a: &Profile, b: &Profile) {
    assert_eq!(a.images.len(), b.images.len());
    for (x, y) in a.images.iter().zip(&b.images) {
        assert_eq!(content(x), content(y), "image {}", x.index);
    }
}

#[test]
fn profile_matches_direct_evaluation_and_shards_merge_to_the_whole() {
    let zoo = Zoo::open(common::zoo_dir()).unwrap();
    let (_dir, data) = dev_subset(10);
    let out = tempfile::tempdir().unwrap();
    let whole = out.path().join("whole.profile");
    let r = profile(&zoo, &data, &whole, &config(None), &NoProgress).unwrap();
    assert_eq!((r.images_new, r.images_failed), (10, 0));
    let p = Profile::load(&whole).unwrap();
    assert_eq!(p.images.len(), 10);
    assert_eq!(p.header.remote.len(), 1);
    assert_eq!(p.costs.variants.len(), zoo.variants().len());
    assert!(p.costs.variants.iter().all(|c| c.latency.median_ms > 0.0));

    // Per-variant top-1 equals the zoo's own evaluation of the same images.
    let variants: Vec<_> = zoo.variants().iter().collect();
    let eval = evaluate(&variants, &data, Default::default(), &|| {}).unwrap();
    for (v, score) in eval.variants.iter().enumerate() {
        let right = p
            .measured()
            .filter(|(img, m)| m.local[v].top1() == usize::from(img.label))
            .count();
        assert_eq!(right, score.top1_correct, "{}", score.name);
    }
    // Remote uploads are real JPEGs of the requested size.
    for (_, m) in p.measured() {
        assert!(m.remote[0].upload_bytes > 500 && m.remote[0].upload_bytes < 20_000);
    }

    // Two shards, profiled separately and merged, give the same per-image results.
    let mut parts = Vec::new();
    for i in 0..2 {
        let path = out.path().join(format!("shard{i}.profile"));
        let shard = Shard { index: i, count: 2 };
        profile(&zoo, &data, &path, &config(Some(shard)), &NoProgress).unwrap();
        parts.push(Profile::load(&path).unwrap());
    }
    assert_eq!(parts[0].images.len(), 5);
    let merged = merge(parts).unwrap();
    same_content(&merged, &p);
    assert_eq!(merged.header.range, (0, 10));
    assert_eq!(merged.header.shard, None);

    // Rerunning a finished profile does nothing; other settings are refused.
    let again = profile(&zoo, &data, &whole, &config(None), &NoProgress).unwrap();
    assert!(again.already_complete);
    let mut other = config(None);
    other.remote.clear();
    let e = profile(&zoo, &data, &whole, &other, &NoProgress).unwrap_err();
    assert!(e.to_string().contains("different remote options"), "{e}");
}

#[test]
fn a_truncated_run_resumes_and_loses_nothing_else() {
    let zoo = Zoo::open(common::zoo_dir()).unwrap();
    let (_dir, data) = dev_subset(40);
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("p.profile");
    let cfg = ProfileConfig {
        remote: Vec::new(),
        ..config(None)
    };
    profile(&zoo, &data, &path, &cfg, &NoProgress).unwrap();
    let full = Profile::load(&path).unwrap();
    // Cut the file in the middle of its second chunk: the footer, that chunk and the one after
    // it are gone, as after a crash.
    let bytes = std::fs::read(&path).unwrap();
    let cut = bytes.len() * 2 / 3;
    std::fs::write(&path, &bytes[..cut]).unwrap();
    assert!(Profile::load(&path).is_err());
    let r = profile(&zoo, &data, &path, &cfg, &NoProgress).unwrap();
    assert!(r.images_resumed >= 16 && r.images_resumed < 40, "{r:?}");
    assert_eq!(r.images_resumed + r.images_new, 40);
    same_content(&Profile::load(&path).unwrap(), &full);
}

#[test]
fn a_bad_image_is_recorded_and_skipped() {
    let zoo = Zoo::open(common::zoo_dir()).unwrap();
    let (dir, _) = dev_subset(4);
    let bytes = std::fs::read(common::dev_image("n01440764_tench.JPEG")).unwrap();
    std::fs::write(
        dir.path().join("images/broken.JPEG"),
        &bytes[..bytes.len() / 4],
    )
    .unwrap();
    let mut csv = std::fs::read_to_string(dir.path().join("labels.csv")).unwrap();
    csv.push_str("images/broken.JPEG,0\n");
    std::fs::write(dir.path().join("labels.csv"), csv).unwrap();
    let data = Dataset::open(dir.path(), &DatasetOptions::default()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("p.profile");
    let r = profile(&zoo, &data, &path, &config(None), &NoProgress).unwrap();
    assert_eq!((r.images_new, r.images_failed), (5, 1));
    let p = Profile::load(&path).unwrap();
    let bad: Vec<_> = p.images.iter().filter(|i| i.result.is_err()).collect();
    assert_eq!(bad.len(), 1);
    assert!(bad[0].rel.ends_with("broken.JPEG"));
    let err = bad[0].result.as_ref().unwrap_err();
    assert!(err.contains("broken.JPEG"), "{err}");
    assert_eq!(p.measured().count(), 4);
}

fn triage() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_triage"));
    c.env("TRIAGE_SHARED", common::shared());
    c
}

fn wait_for_size(path: &Path, min: u64, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if std::fs::metadata(path)
            .map(|m| m.len() >= min)
            .unwrap_or(false)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn kill_9_then_rerun_resumes_through_the_cli() {
    let (dir, _) = dev_subset(70);
    let out = tempfile::tempdir().unwrap();
    let path: PathBuf = out.path().join("k.profile");
    let args = |c: &mut Command| {
        c.args(["profile", "--remote-grid", "none", "--latency-seconds", "0"])
            .arg("--data")
            .arg(dir.path())
            .arg("--out")
            .arg(&path)
            .arg("--json");
    };
    let mut cmd = triage();
    args(&mut cmd);
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Header + costs are a few kB; each chunk of 16 images adds about 230 kB of logits.
    let reached = wait_for_size(&path, 300_000, Duration::from_secs(60));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(reached, "the run never wrote its first chunk");
    assert!(
        Profile::load(&path).is_err(),
        "killed run should be unfinished"
    );

    let mut cmd = triage();
    args(&mut cmd);
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let outcome: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let resumed = outcome["images_resumed"].as_u64().unwrap();
    assert!(resumed >= 16, "{outcome}");
    assert_eq!(resumed + outcome["images_new"].as_u64().unwrap(), 70);
    let p = Profile::load(&path).unwrap();
    assert_eq!(p.measured().count(), 70);

    let o = triage()
        .args(["profile", "show", "--json"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(o.status.success());
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["n_images"], 70);
    assert!(s["oracle"]["top1"].as_f64().unwrap() > 0.5);
}
