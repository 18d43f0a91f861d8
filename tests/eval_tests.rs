//! The evaluation harness end to end on a small real profile (a handful of shared images, the
//! two smallest models, one remote option): the JSON schema, sanity bounds (oracle, single
//! replay equals the profile), honest intervals, no leakage under cross-validation, the
//! report files, held-out replay, every dataset layout for `--data`, and clear errors on bad
//! inputs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use triage_compiler::compile::{compile, CompileOptions};
use triage_compiler::device::Device;
use triage_compiler::profile::run::{profile, LatencyConfig, NoProgress, ProfileConfig};
use triage_compiler::profile::summary::Summary;
use triage_compiler::profile::RemoteGrid;
use triage_compiler::Profile;
use triage_eval::harness::{cross_validate, folds};
use triage_eval::network::Link;
use triage_eval::outcome::{Answer, Family, PolicyRun};
use triage_eval::policies::{Contender, Context, Settings};
use triage_eval::{evaluate, EvalInputs, ProfileInput};
use triage_zoo::{Dataset, DatasetOptions, Zoo};

const SMALL: [&str; 2] = ["mobilenet_v1_025_128", "mobilenet_v1_050_160"];

/// A zoo.toml keeping only the named models.
fn keep_models(text: &str, keep: &[&str]) -> String {
    let mut parts = text.split("[[model]]");
    let mut out = parts.next().unwrap_or("").to_string();
    for block in parts {
        if keep
            .iter()
            .any(|k| block.contains(&format!("name = \"{k}\"")))
        {
            out.push_str("[[model]]");
            out.push_str(block);
        }
    }
    out
}

fn device() -> Device {
    Device::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("devices/this-host.toml")).unwrap()
}

fn quick_profile(zoo: &Path, data_dir: &Path, out: &Path, grid: &str) -> Profile {
    let zoo = Zoo::open(zoo).unwrap();
    let data = Dataset::open(data_dir, &DatasetOptions::default()).unwrap();
    let cfg = ProfileConfig {
        remote: grid.parse::<RemoteGrid>().unwrap().0,
        shard: None,
        threads: 2,
        apply_orientation: true,
        latency: LatencyConfig {
            warmup: 1,
            min_runs: 3,
            max_runs: 3,
            min_seconds: 0.0,
        },
    };
    profile(&zoo, &data, out, &cfg, &NoProgress).unwrap();
    Profile::load(out).unwrap()
}

/// `labels.csv` dataset of symlinks to shared DEV images (`skip` images apart, `take` of them,
/// starting at `offset`).
fn dev_subset(dir: &Path, offset: usize, take: usize) {
    let all = Dataset::open(common::dev_dir(), &DatasetOptions::default()).unwrap();
    let mut csv = String::from("file,label\n");
    std::fs::create_dir_all(dir.join("images")).unwrap();
    for s in all.samples().iter().skip(offset).step_by(13).take(take) {
        let name = s.rel.rsplit('/').next().unwrap();
        std::os::unix::fs::symlink(&s.path, dir.join("images").join(name)).unwrap();
        csv.push_str(&format!("images/{name},{}\n", s.label));
    }
    std::fs::write(dir.join("labels.csv"), csv).unwrap();
}

struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    zoo: PathBuf,
    /// Profile A (compiled into the plan) and profile B (other images, same zoo).
    a: PathBuf,
    b: PathBuf,
    plan: PathBuf,
}

/// Built once per test binary: the zoo, two profiles and a plan compiled on the first.
fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let zoo = root.join("zoo");
        std::fs::create_dir(&zoo).unwrap();
        for e in std::fs::read_dir(common::zoo_dir()).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_owned();
            if name != "zoo.toml" {
                std::os::unix::fs::symlink(&p, zoo.join(name)).unwrap();
            }
        }
        let text = std::fs::read_to_string(common::zoo_dir().join("zoo.toml")).unwrap();
        std::fs::write(zoo.join("zoo.toml"), keep_models(&text, &SMALL)).unwrap();
        let grid = "mobilenet_v1_050_160:128:60";
        dev_subset(&root.join("data-a"), 0, 30);
        dev_subset(&root.join("data-b"), 5, 20);
        let a = root.join("a.profile");
        let b = root.join("b.profile");
        let pa = quick_profile(&zoo, &root.join("data-a"), &a, grid);
        quick_profile(&zoo, &root.join("data-b"), &b, grid);
        let opts = CompileOptions {
            folds: 3,
            max_chain: 2,
            max_router_chain: 2,
            bootstrap: 50,
            ..CompileOptions::default()
        };
        let sha = triage_zoo::hash::sha256_file(&a).unwrap();
        let (plan, _) = compile(&pa, vec![sha], &device(), &opts, &|_| {}).unwrap();
        let plan_path = root.join("plan.triage");
        plan.save(&plan_path).unwrap();
        World {
            _dir: dir,
            root,
            zoo,
            a,
            b,
            plan: plan_path,
        }
    })
}

fn triage() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_triage"));
    c.env("TRIAGE_SHARED", common::shared());
    c
}

fn eval_cli(args: &[&str]) -> std::process::Output {
    let w = world();
    triage()
        .args(["eval", "--plan"])
        .arg(&w.plan)
        .args(["--bootstrap", "100"])
        .args(args)
        .output()
        .unwrap()
}

fn ok_json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn evaluate_cv(profile_path: &Path) -> triage_eval::Evaluation {
    let w = world();
    let plan = triage_compiler::plan::Plan::load(&w.plan).unwrap();
    let p = Profile::load(profile_path).unwrap();
    evaluate(
        EvalInputs {
            plan: &plan,
            test: ProfileInput {
                profile: &p,
                sha256: "test".into(),
                features: None,
            },
            train: None,
            cv: Some(3),
            device: None,
            link: Link::constant("lte", 5.0, 5.0, 70.0),
            seed: 1,
            bootstrap: 200,
            energy_budget_mj: None,
            usd_budget_per_1000: None,
            latency_limit_ms: None,
        },
        &triage_eval::harness::NoProgress,
    )
    .unwrap()
}

#[test]
fn json_has_the_schema_every_family_and_every_field() {
    let w = world();
    let v = ok_json(&eval_cli(&[
        "--profile",
        w.a.to_str().unwrap(),
        "--cv",
        "3",
        "--json",
    ]));
    assert_eq!(v["schema"], "triage.eval/1");
    assert_eq!(v["n_images"], 30);
    let policies = v["policies"].as_array().unwrap();
    for fam in [
        "single",
        "remote",
        "oracle",
        "random",
        "taylor-knn",
        "cascade",
        "cascade-calibrated",
        "mcdnn",
        "deepdecision",
        "triage",
    ] {
        assert!(
            policies.iter().any(|p| p["family"] == fam),
            "no {fam} policy"
        );
    }
    for p in policies {
        assert!(p["name"].is_string(), "{p}");
        for f in ["top1", "top5"] {
            let x = p[f].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&x), "{f} {p}");
        }
        let ci = p["top1_ci95"].as_array().unwrap();
        assert_eq!(ci.len(), 2);
        for f in [
            "mean_latency_ms",
            "p95_latency_ms",
            "mean_energy_mj",
            "usd_per_1000",
            "kb_uploaded_per_image",
        ] {
            assert!(p[f].as_f64().unwrap() >= 0.0, "{f} {p}");
        }
        if p["family"] == "remote" {
            assert!(p["kb_uploaded_per_image"].as_f64().unwrap() > 0.0);
            assert!(p["usd_per_1000"].as_f64().unwrap() > 0.0);
        }
    }
}

#[test]
fn oracle_bounds_singles_which_replay_the_profile_exactly() {
    let w = world();
    let ev = evaluate_cv(&w.a);
    let m = &ev.report.policies;
    let oracle = m.iter().find(|p| p.family == Family::Oracle).unwrap();
    let summary = Summary::of(&Profile::load(&w.a).unwrap());
    let singles: Vec<_> = m.iter().filter(|p| p.family == Family::Single).collect();
    assert_eq!(singles.len(), 2);
    for s in singles {
        assert!(oracle.top1 >= s.top1, "{} beats the oracle", s.name);
        let v = summary.variants.iter().find(|v| v.name == s.name).unwrap();
        assert!(
            (v.top1 - s.top1).abs() < 1e-12,
            "{}: {} vs {}",
            s.name,
            v.top1,
            s.top1
        );
        assert!((v.top5 - s.top5).abs() < 1e-12);
    }
    for p in m {
        assert!(
            p.top1_ci95[0] <= p.top1 + 1e-12 && p.top1 <= p.top1_ci95[1] + 1e-12,
            "{}: {} outside {:?}",
            p.name,
            p.top1,
            p.top1_ci95
        );
        assert!(p.n == 30);
    }
}

/// Learns each training image's answer by heart and is right exactly on the images it saw:
/// any held-out image it gets right was leaked into its training set.
struct Memorizer {
    seen: Vec<usize>,
}

impl Contender for Memorizer {
    fn label(&self) -> String {
        "memorizer".into()
    }
    fn fit(&mut self, _: &Context, train: &[usize]) -> triage_eval::Result<()> {
        self.seen = train.to_vec();
        Ok(())
    }
    fn run(&self, ctx: &Context, test: &[usize]) -> triage_eval::Result<Vec<PolicyRun>> {
        let mut run = PolicyRun::new("memorizer", Family::Oracle, "");
        for &i in test {
            let hit = self.seen.contains(&i);
            run.outcomes
                .push(ctx.local(i, 1.0, hit, hit, Answer::Local(0)));
        }
        Ok(vec![run])
    }
}

#[test]
fn cross_validation_never_trains_on_the_scored_fold() {
    let w = world();
    let p = Profile::load(&w.a).unwrap();
    let data = triage_eval::data::EvalData::from_profile(&p, None).unwrap();
    let dev = device();
    let link = Link::constant("lte", 5.0, 5.0, 70.0);
    let settings = Settings {
        seed: 0,
        energy_budget_mj: 100.0,
        usd_budget_per_image: None,
        latency_limit_ms: 50.0,
        match_tolerance: 0.003,
        min_prob: 0.5,
    };
    let ctx = Context {
        data: &data,
        device: &dev,
        link: &link,
        settings: &settings,
    };
    let mut cs: Vec<Box<dyn Contender>> = vec![Box::new(Memorizer { seen: Vec::new() })];
    let f = folds(data.len(), 3, 0).unwrap();
    let runs = cross_validate(&ctx, &mut cs, &f, &triage_eval::harness::NoProgress).unwrap();
    assert_eq!(runs[0].outcomes.len(), 30);
    assert!(
        runs[0].outcomes.iter().all(|o| !o.correct),
        "a scored image was in its fold's training set"
    );
    // And on the same data, in-sample, the memorizer is perfect: the detector works.
    let all: Vec<usize> = (0..data.len()).collect();
    let mut m = Memorizer { seen: Vec::new() };
    m.fit(&ctx, &all).unwrap();
    assert!(m.run(&ctx, &all).unwrap()[0]
        .outcomes
        .iter()
        .all(|o| o.correct));
}

#[test]
fn report_files_exist_and_are_not_empty() {
    let w = world();
    let dir = w.root.join("report-cv");
    let out = eval_cli(&[
        "--profile",
        w.a.to_str().unwrap(),
        "--cv",
        "3",
        "--trace",
        common::shared()
            .join("network-traces/Verizon-LTE-short.up")
            .to_str()
            .unwrap(),
        "--report",
        dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "report.md",
        "report.json",
        "accuracy_vs_latency.svg",
        "accuracy_vs_latency.png",
        "accuracy_vs_energy.svg",
        "accuracy_vs_energy.png",
        "reliability.svg",
        "reliability.png",
        "stream.svg",
        "stream.png",
    ] {
        let len = std::fs::metadata(dir.join(f)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 100, "{f}: {len} bytes");
    }
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    for needle in [
        "Caveats",
        "easier than",
        "Out of fold",
        "mahimahi trace",
        "this-host",
    ] {
        assert!(md.contains(needle), "report.md lacks '{needle}'");
    }
}

#[test]
fn held_out_replay_fits_on_the_plans_profile_and_refuses_in_sample_scoring() {
    let w = world();
    let v = ok_json(&eval_cli(&[
        "--profile",
        w.b.to_str().unwrap(),
        "--train-profile",
        w.a.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(v["n_images"], 20);
    assert_eq!(v["mode"], "holdout");
    let out = eval_cli(&[
        "--profile",
        w.a.to_str().unwrap(),
        "--train-profile",
        w.a.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in-sample") && err.contains("--cv"), "{err}");
    let out = eval_cli(&["--profile", w.b.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--train-profile"), "{err}");
}

#[test]
fn bad_inputs_give_clear_errors() {
    let w = world();
    // A missing plan.
    let out = triage()
        .args([
            "eval",
            "--plan",
            "/nonexistent/plan.triage",
            "--cv",
            "3",
            "--profile",
        ])
        .arg(&w.a)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/plan.triage") && err.contains("triage compile"),
        "{err}"
    );

    // A truncated profile.
    let bytes = std::fs::read(&w.a).unwrap();
    let cut = w.root.join("cut.profile");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = eval_cli(&["--profile", cut.to_str().unwrap(), "--cv", "3"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cut.profile") && err.contains("truncated"),
        "{err}"
    );

    // A profile of another zoo (other models).
    let other_zoo =
        common::edited_zoo(|t| keep_models(t, &["mobilenet_v1_025_128", "mobilenet_v1_075_192"]));
    let other = w.root.join("other.profile");
    quick_profile(other_zoo.path(), &w.root.join("data-b"), &other, "none");
    let out = eval_cli(&["--profile", other.to_str().unwrap(), "--cv", "3"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("zoo"), "{err}");

    // --data that is not the profiled image list.
    let out = eval_cli(&[
        "--profile",
        w.a.to_str().unwrap(),
        "--cv",
        "3",
        "--data",
        w.root.join("data-b").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not the image list the profile measured"),
        "{err}"
    );

    // Live mode names the points a plan has when asked for another.
    let out = eval_cli(&[
        "--live",
        "--points",
        "no-such-point",
        "--zoo",
        w.zoo.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let plan = triage_compiler::plan::Plan::load(&w.plan).unwrap();
    assert!(
        err.contains("no point 'no-such-point'") && err.contains(&plan.points[0].name),
        "{err}"
    );
}

/// A copy of `data-a` with one undecodable image added.
fn data_with_a_broken_image(w: &World) -> PathBuf {
    let dir = w.root.join("data-a-broken");
    if dir.exists() {
        return dir;
    }
    std::fs::create_dir_all(dir.join("images")).unwrap();
    let src = w.root.join("data-a");
    for e in std::fs::read_dir(src.join("images")).unwrap() {
        let p = e.unwrap().path();
        std::os::unix::fs::symlink(
            std::fs::read_link(&p).unwrap(),
            dir.join("images").join(p.file_name().unwrap()),
        )
        .unwrap();
    }
    std::fs::write(dir.join("images/zz_broken.JPEG"), b"\xff\xd8 not a jpeg").unwrap();
    let mut csv = std::fs::read_to_string(src.join("labels.csv")).unwrap();
    csv.push_str("images/zz_broken.JPEG,3\n");
    std::fs::write(dir.join("labels.csv"), csv).unwrap();
    dir
}

#[test]
fn live_runs_the_runtime_at_every_point_and_agrees_with_replay() {
    let w = world();
    let plan = triage_compiler::plan::Plan::load(&w.plan).unwrap();
    let data = data_with_a_broken_image(w);
    let out = eval_cli(&[
        "--live",
        "--zoo",
        w.zoo.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--profile",
        w.a.to_str().unwrap(),
        "--json",
    ]);
    let v = ok_json(&out);
    assert_eq!(v["schema"], "triage.eval/1");
    assert_eq!(v["mode"], "live");
    // The broken image is reported and left out; the 30 others are all classified.
    assert_eq!(v["n_images"], 30);
    let failures = v["live_failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1);
    assert!(failures[0]["image"].as_str().unwrap().contains("zz_broken"));
    let policies = v["policies"].as_array().unwrap();
    assert_eq!(policies.len(), plan.points.len());
    for (p, point) in policies.iter().zip(&plan.points) {
        assert_eq!(p["family"], "triage");
        assert_eq!(p["name"], format!("triage {}", point.name));
        assert!(p["mean_latency_ms"].as_f64().unwrap() > 0.0);
        assert!(p["mean_energy_mj"].as_f64().unwrap() > 0.0);
    }
    // Live against the replay of the same plan on the profile of the same files: the runtime
    // decodes, calibrates and escalates as the compiler modelled, on logits at the profile's
    // precision, so every answer is the same.
    let rows = v["live_vs_replay"].as_array().unwrap();
    assert_eq!(rows.len(), plan.points.len());
    for r in rows {
        assert_eq!(r["n_images"], 30);
        assert_eq!(r["disagreements"].as_u64().unwrap(), 0, "{r}");
        let (l, p) = (
            r["live_top1"].as_f64().unwrap(),
            r["replay_top1"].as_f64().unwrap(),
        );
        assert_eq!(l, p, "{r}");
        assert!(r["latency_ratio"].as_f64().unwrap() > 0.0, "{r}");
    }

    // The report files of a live run of one point (which points a plan of this tiny,
    // quickly timed profile has depends on the timings).
    let point = &plan.points[plan.default_point].name;
    let report = w.root.join("live-report");
    let out = eval_cli(&[
        "--live",
        "--zoo",
        w.zoo.to_str().unwrap(),
        "--data",
        w.root.join("data-a").to_str().unwrap(),
        "--profile",
        w.a.to_str().unwrap(),
        "--limit",
        "8",
        "--points",
        point,
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("## Live against replay"), "{md}");
    assert!(report.join("accuracy_vs_latency.png").is_file());
    assert!(!report.join("reliability.png").exists());
}

/// A made-up but well-formed synsets file: class `i` is wnid `n1000000i`-style.
fn wnid(label: usize) -> String {
    format!("n{:08}", 10_000_000 + label)
}

fn write_synsets(path: &Path) {
    let text: String = (0..1000)
        .map(|i| format!("{} class {i}\n", wnid(i)))
        .collect();
    std::fs::write(path, text).unwrap();
}

/// Writes the same `(file name, label, source path)` images in all four layouts under `root`.
fn four_layouts(root: &Path, images: &[(String, usize, PathBuf)]) -> Vec<PathBuf> {
    let link = |src: &Path, dst: &Path| {
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(src, dst).unwrap();
    };
    // labels.csv
    let csv_dir = root.join("csv");
    let mut csv = String::from("file,label\n");
    for (name, label, src) in images {
        link(src, &csv_dir.join("images").join(name));
        csv.push_str(&format!("images/{name},{label}\n"));
    }
    std::fs::write(csv_dir.join("labels.csv"), csv).unwrap();
    // Caffe val.txt
    let caffe = root.join("caffe");
    let mut val = String::new();
    for (name, label, src) in images {
        link(src, &caffe.join(name));
        val.push_str(&format!("{name} {label}\n"));
    }
    std::fs::write(caffe.join("val.txt"), val).unwrap();
    // ImageFolder with a synsets file for the subset of classes.
    let folder = root.join("folder");
    for (name, label, src) in images {
        link(src, &folder.join(wnid(*label)).join(name));
    }
    write_synsets(&folder.join("synsets.txt"));
    // Kaggle LOC_val_solution.csv + LOC_synset_mapping.txt
    let kaggle = root.join("kaggle");
    let mut sol = String::from("ImageId,PredictionString\n");
    for (name, label, src) in images {
        let id = name.trim_end_matches(".JPEG");
        link(src, &kaggle.join("val").join(name));
        sol.push_str(&format!("{id},{} 1 2 30 40\n", wnid(*label)));
    }
    std::fs::write(kaggle.join("LOC_val_solution.csv"), sol).unwrap();
    write_synsets(&kaggle.join("LOC_synset_mapping.txt"));
    vec![csv_dir, caffe, folder, kaggle]
}

#[test]
fn every_imagenet_layout_is_accepted_as_the_profiled_images() {
    let w = world();
    let root = w.root.join("layouts");
    // Tiny generated images: gradients and stripes of different sizes.
    let gen = root.join("gen");
    std::fs::create_dir_all(&gen).unwrap();
    let mut images = Vec::new();
    for k in 0..8usize {
        let (wd, ht) = (64 + 8 * k as u32, 48 + 4 * k as u32);
        let img = image::RgbImage::from_fn(wd, ht, |x, y| {
            let s = ((x / (2 + k as u32)) % 2) as u8;
            image::Rgb([(x * 4) as u8, (y * 5) as u8, s * 100 + (k * 15) as u8])
        });
        let name = format!("ILSVRC2012_val_{:08}.JPEG", k + 1);
        let path = gen.join(&name);
        let mut f = std::fs::File::create(&path).unwrap();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut f, 85)
            .encode_image(&img)
            .unwrap();
        images.push((name, (k * 97) % 1000, path));
    }
    let dirs = four_layouts(&root, &images);
    let profile_path = root.join("gen.profile");
    let p = quick_profile(&w.zoo, &dirs[0], &profile_path, "none");
    let stored = triage_eval::data::EvalData::from_profile(&p, None)
        .unwrap()
        .features;
    for dir in &dirs {
        let d = Dataset::open(dir, &DatasetOptions::default()).unwrap();
        triage_eval::images::check_dataset(&p, &d)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let f = triage_eval::images::features_from_images(
            &p,
            &d,
            &triage_zoo::DecodeOptions::default(),
            &|| {},
        )
        .unwrap();
        assert_eq!(f, stored, "{}: recomputed features differ", dir.display());
    }

    // The CLI accepts the shared images of profile A in ImageFolder and Kaggle layouts.
    let a = Dataset::open(w.root.join("data-a"), &DatasetOptions::default()).unwrap();
    let listed: Vec<(String, usize, PathBuf)> = a
        .samples()
        .iter()
        .map(|s| {
            (
                s.rel.rsplit('/').next().unwrap().to_string(),
                s.label,
                s.path.clone(),
            )
        })
        .collect();
    let dirs = four_layouts(&w.root.join("layouts-a"), &listed);
    for dir in &dirs[2..] {
        let out = eval_cli(&[
            "--profile",
            w.a.to_str().unwrap(),
            "--cv",
            "3",
            "--json",
            "--data",
            dir.to_str().unwrap(),
        ]);
        let v = ok_json(&out);
        assert_eq!(v["n_images"], 30);
    }
}

#[test]
fn replay_applies_each_points_offloading_table() {
    use triage_compiler::offload::{Cell, CellExpected, OffloadTable};
    let w = world();
    let mut plan = triage_compiler::plan::Plan::load(&w.plan).unwrap();
    let b = Profile::load(&w.b).unwrap();
    let rels: Vec<&str> = b.measured().map(|(r, _)| r.rel.as_str()).collect();
    // Offload every answer below confidence 1.01 (all of them) in cells of at least 2 Mbit/s.
    let table = |below: f32| OffloadTable {
        link: "lte".into(),
        up_mbps_edges: vec![2.0],
        rtt_ms_edges: vec![100.0],
        latency_limit_ms: 1e9,
        cells: vec![
            None,
            None,
            Some(Cell {
                option: 0,
                below,
                expected: CellExpected {
                    top1: 0.0,
                    mean_ms: 0.0,
                    energy_mj: 0.0,
                    usd_per_1000: 0.0,
                    upload_kb: 0.0,
                    offload_rate: 1.0,
                },
            }),
            None,
        ],
    };
    let remote_share = |runs: &[PolicyRun]| -> Vec<f64> {
        runs.iter()
            .map(|r| {
                r.outcomes
                    .iter()
                    .filter(|o| matches!(o.answer, Answer::Remote(_)) && o.upload_bytes > 0.0)
                    .count() as f64
                    / r.outcomes.len() as f64
            })
            .collect()
    };
    for p in &mut plan.points {
        p.offload = Some(table(1.01));
    }
    let fast = Link::constant("lte", 5.0, 5.0, 40.0);
    let slow = Link::constant("lte", 1.0, 1.0, 40.0);
    let far = Link::constant("lte", 5.0, 5.0, 300.0);
    let runs =
        triage_eval::live::replay_same_images(&plan, &b, &rels, &device(), &fast, true).unwrap();
    assert!(remote_share(&runs).iter().all(|&s| s == 1.0));
    assert!(runs[0].outcomes.iter().all(|o| o.usd > 0.0));
    // The cell of a slow uplink or a long RTT stays local; so does a run without offloading.
    for (link, offload) in [(&slow, true), (&far, true), (&fast, false)] {
        let runs =
            triage_eval::live::replay_same_images(&plan, &b, &rels, &device(), link, offload)
                .unwrap();
        assert!(remote_share(&runs).iter().all(|&s| s == 0.0));
    }
    // A threshold of 0 never offloads: no local answer is less confident than that.
    for p in &mut plan.points {
        p.offload = Some(table(0.0));
    }
    let runs =
        triage_eval::live::replay_same_images(&plan, &b, &rels, &device(), &fast, true).unwrap();
    assert!(remote_share(&runs).iter().all(|&s| s == 0.0));
}

#[test]
fn live_offloads_to_a_real_server_through_an_emulated_link() {
    // The plan's remote option is mobilenet_v1_050_160 on a 128 px, q60 upload. One point is
    // made to offload every image; a real server answers over loopback, through the link that
    // replays an LTE trace, and replay models the same offloads from the profile.
    let w = world();
    let plan = triage_compiler::plan::Plan::load(&w.plan).unwrap();
    let point = plan.default_point;
    let offloading = common::always_offload(&plan, point);
    let plan_path = w.root.join("plan-offloading.triage");
    offloading.save(&plan_path).unwrap();
    let zoo = std::sync::Arc::new(Zoo::open(&w.zoo).unwrap());
    let mut config =
        triage_runtime::server::ServeConfig::new(vec!["mobilenet_v1_050_160".to_string()]);
    config.workers = 1;
    config.io_threads = 1;
    let server =
        triage_runtime::server::ServerHandle::start("127.0.0.1:0".parse().unwrap(), zoo, config)
            .unwrap();
    let out = triage()
        .args(["eval", "--live", "--json", "--bootstrap", "100", "--plan"])
        .arg(&plan_path)
        .arg("--zoo")
        .arg(&w.zoo)
        .arg("--data")
        .arg(w.root.join("data-a"))
        .arg("--profile")
        .arg(&w.a)
        .args(["--server", &server.url(), "--trace", "Verizon-LTE-short.up"])
        .output()
        .unwrap();
    let v = ok_json(&out);
    server.shutdown().unwrap();
    assert_eq!(v["mode"], "live");
    assert_eq!(v["n_images"], 30);
    let name = format!("triage {}", plan.points[point].name);
    let rows = v["live_vs_replay"].as_array().unwrap();
    assert_eq!(rows.len(), plan.points.len());
    for r in rows {
        assert_eq!(r["n_images"], 30);
        if r["policy"] == name.as_str() {
            // Every image went to the server, and its answers are the ones replay expected
            // from the profile's measurement of the same upload (the server's answer is not
            // rounded to the profile's precision, so a near tie may flip one image).
            assert_eq!(r["live_offloaded"].as_f64().unwrap(), 1.0, "{r}");
            assert!(r["disagreements"].as_u64().unwrap() <= 1, "{r}");
        } else {
            assert_eq!(r["live_offloaded"].as_f64().unwrap(), 0.0, "{r}");
            assert_eq!(r["disagreements"].as_u64().unwrap(), 0, "{r}");
        }
    }
    let row = v["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name.as_str())
        .unwrap();
    assert!(
        row["kb_uploaded_per_image"].as_f64().unwrap() > 1.0,
        "{row}"
    );
}
