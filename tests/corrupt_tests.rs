//! ImageNet-C-style corrupted datasets (`triage_zoo::corrupt`, `triage data corrupt`) on real
//! images of the shared DEV set: deterministic bytes, harsher with severity, labels kept, the
//! output re-opens as a labels.csv dataset, bad images are named and skipped, and severe noise
//! does cost a real model accuracy.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use triage_zoo::corrupt::{
    corrupt, corrupt_dataset, corrupt_encoded, image_seed, set_dir, CorruptOptions, Kind, Severity,
    REFERENCE_SHORTER_SIDE,
};
use triage_zoo::{
    decode_bytes, decode_file, resize_shorter, Dataset, DatasetOptions, DecodeOptions, Layout,
    Resample, Zoo,
};

fn dev(n: usize) -> Dataset {
    Dataset::open(common::dev_dir(), &DatasetOptions::default())
        .unwrap()
        .limit(n)
}

fn options(kinds: &[Kind], severities: &[i64], seed: u64) -> CorruptOptions {
    CorruptOptions {
        kinds: kinds.to_vec(),
        severities: severities
            .iter()
            .map(|&s| Severity::new(s).unwrap())
            .collect(),
        seed,
        decode: DecodeOptions::default(),
    }
}

/// Every file under `dir`, by path relative to it, with its bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_path_buf();
                files.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    files
}

fn mean_abs_diff(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let s: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    s as f64 / a.as_raw().len() as f64
}

#[test]
fn two_runs_are_byte_identical_and_reopen_with_the_same_labels() {
    let data = dev(3);
    let t = tempfile::tempdir().unwrap();
    let (a, b, c) = (t.path().join("a"), t.path().join("b"), t.path().join("c"));
    let kinds = [Kind::GaussianNoise, Kind::MotionBlur, Kind::Jpeg];
    let opts = options(&kinds, &[2], 7);
    let ra = corrupt_dataset(&data, &a, &opts, &|| ()).unwrap();
    let rb = corrupt_dataset(&data, &b, &opts, &|| ()).unwrap();
    assert!(ra.failures.is_empty(), "{:?}", ra.failures);
    assert_eq!((ra.images, ra.sets.len()), (3, 3));
    let (ta, tb) = (tree(&a), tree(&b));
    // 3 sets x (labels.csv + corruption.toml + 3 images).
    assert_eq!(ta.len(), 15, "{:?}", ta.keys().collect::<Vec<_>>());
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    for (p, bytes) in &ta {
        assert!(bytes == &tb[p], "{} differs between two runs", p.display());
    }
    assert_eq!(ra.sets, {
        let mut s = rb.sets.clone();
        for (x, y) in s.iter_mut().zip(&ra.sets) {
            x.dir = y.dir.clone();
        }
        s
    });

    // Another seed draws other noise and another angle; JPEG has nothing random.
    corrupt_dataset(&data, &c, &options(&kinds, &[2], 8), &|| ()).unwrap();
    let tc = tree(&c);
    let img = |k: Kind| PathBuf::from(format!("{k}-2/images/n01440764_tench.JPEG"));
    assert_ne!(ta[&img(Kind::GaussianNoise)], tc[&img(Kind::GaussianNoise)]);
    assert_ne!(ta[&img(Kind::MotionBlur)], tc[&img(Kind::MotionBlur)]);
    assert_eq!(ta[&img(Kind::Jpeg)], tc[&img(Kind::Jpeg)]);

    for set in &ra.sets {
        assert_eq!(set.dir, set_dir(&a, set.kind, set.severity));
        let out = Dataset::open(&set.dir, &DatasetOptions::default()).unwrap();
        assert_eq!(out.layout(), Layout::LabelsCsv);
        let text = std::fs::read_to_string(set.dir.join("labels.csv")).unwrap();
        assert!(text.starts_with("file,label\n"), "{text}");
        assert_eq!(out.len(), data.len());
        for (o, s) in out.samples().iter().zip(data.samples()) {
            assert_eq!(o.label, s.label);
            assert_eq!(o.path.file_name(), s.path.file_name());
            assert_eq!(
                o.path,
                set.dir.join("images").join(s.path.file_name().unwrap())
            );
            // Full resolution, EXIF orientation applied, still decodable.
            let (co, so) = (
                decode_file(&o.path, &DecodeOptions::default()).unwrap(),
                decode_file(&s.path, &DecodeOptions::default()).unwrap(),
            );
            assert_eq!((co.width, co.height), (so.width, so.height));
        }
        let toml = std::fs::read_to_string(set.dir.join("corruption.toml")).unwrap();
        assert!(
            toml.contains(&format!("corruption = \"{}\"", set.kind)) && toml.contains("seed = 7"),
            "{toml}"
        );
    }
}

#[test]
fn every_kind_gets_harsher_with_severity() {
    for s in dev(3).samples() {
        // At ImageNet-C's own scale (shorter side 256, so the tables apply unscaled); it also
        // keeps this debug-build test fast.
        let full = decode_file(&s.path, &DecodeOptions::default()).unwrap().rgb;
        let img = resize_shorter(&full, REFERENCE_SHORTER_SIDE, Resample::Bilinear).unwrap();
        assert_eq!(img.width().min(img.height()), REFERENCE_SHORTER_SIDE);
        let name = s.path.file_name().unwrap().to_string_lossy().to_string();
        for kind in Kind::ALL {
            let seed = image_seed(1, kind, &name);
            let diffs: Vec<f64> = Severity::ALL
                .iter()
                .map(|&sev| mean_abs_diff(&img, &corrupt(&img, kind, sev, seed).unwrap()))
                .collect();
            assert!(
                diffs[0] > 0.5,
                "{name} {kind}: severity 1 changes nothing: {diffs:?}"
            );
            assert!(
                diffs.windows(2).all(|w| w[0] < w[1]),
                "{name} {kind}: mean |difference| not increasing with severity: {diffs:?}"
            );
        }
        let sizes: Vec<usize> = Severity::ALL
            .iter()
            .map(|&sev| corrupt_encoded(&img, Kind::Jpeg, sev, 0).unwrap().len())
            .collect();
        assert!(
            sizes.windows(2).all(|w| w[0] > w[1]),
            "{name}: JPEG size not shrinking with severity: {sizes:?}"
        );
    }
}

fn triage() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_triage"));
    c.env("TRIAGE_SHARED", common::shared());
    c
}

#[test]
fn cli_names_and_skips_a_broken_image_and_writes_the_rest() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir_all(src.join("images")).unwrap();
    let good = ["n01440764_tench.JPEG", "n01443537_goldfish.JPEG"];
    for g in good {
        std::fs::copy(common::dev_image(g), src.join("images").join(g)).unwrap();
    }
    let bytes = std::fs::read(common::dev_image("n01484850_great_white_shark.JPEG")).unwrap();
    std::fs::write(src.join("images/broken.JPEG"), &bytes[..bytes.len() / 3]).unwrap();
    std::fs::write(
        src.join("labels.csv"),
        "file,label\nbroken.JPEG,2\nn01440764_tench.JPEG,0\nn01443537_goldfish.JPEG,1\n",
    )
    .unwrap();
    let out_dir = t.path().join("out");
    let out = triage()
        .args(["data", "corrupt", "--data"])
        .arg(&src)
        .arg("--out")
        .arg(&out_dir)
        .args([
            "--kinds",
            "contrast,pixelate",
            "--severity",
            "2..3",
            "--json",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("broken.JPEG"), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["images"], 2);
    let failures = v["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1);
    assert!(
        failures[0]["path"]
            .as_str()
            .unwrap()
            .ends_with("broken.JPEG"),
        "{v}"
    );
    let sets = v["datasets"].as_array().unwrap();
    assert_eq!(sets.len(), 4);
    for set in sets {
        assert_eq!(set["images"], 2);
        let dir = PathBuf::from(set["dir"].as_str().unwrap());
        let d = Dataset::open(&dir, &DatasetOptions::default()).unwrap();
        let got: Vec<(String, usize)> = d
            .samples()
            .iter()
            .map(|s| (s.rel.clone(), s.label))
            .collect();
        assert_eq!(
            got,
            [
                ("images/n01440764_tench.JPEG".to_string(), 0),
                ("images/n01443537_goldfish.JPEG".to_string(), 1)
            ]
        );
        assert!(!dir.join("images/broken.JPEG").exists());
        let toml = std::fs::read_to_string(dir.join("corruption.toml")).unwrap();
        assert!(toml.contains("broken.JPEG"), "{toml}");
    }
    let dirs: Vec<_> = sets.iter().map(|s| s["dir"].as_str().unwrap()).collect();
    assert!(dirs.iter().any(|d| d.ends_with("contrast-2")), "{dirs:?}");
    assert!(dirs.iter().any(|d| d.ends_with("pixelate-3")), "{dirs:?}");
}

#[test]
fn cli_rejects_severities_outside_one_to_five_naming_them() {
    for (arg, named) in [
        ("0..5", "severity 0"),
        ("6", "severity 6"),
        ("1..7", "severity 7"),
    ] {
        let out = triage()
            .args([
                "data",
                "corrupt",
                "--out",
                "/nonexistent/out",
                "--severity",
                arg,
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{arg}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{arg}: {err}");
    }
    let out = triage()
        .args([
            "data",
            "corrupt",
            "--out",
            "/nonexistent/out",
            "--kinds",
            "fog",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("'fog'"));
}

#[test]
fn severe_noise_does_not_raise_a_models_accuracy() {
    let zoo = Zoo::open(common::zoo_dir()).unwrap();
    let v = zoo.variant("mobilenet_v1_050_160").unwrap();
    let (mut clean, mut noisy) = (0, 0);
    let data = dev(10);
    for s in data.samples() {
        let img = decode_file(&s.path, &DecodeOptions::default()).unwrap();
        clean += usize::from(v.classify(&img).unwrap().argmax() == s.label);
        // What the model reads back from the corrupted dataset: the stored JPEG.
        let name = s.path.file_name().unwrap().to_string_lossy().to_string();
        let seed = image_seed(0, Kind::GaussianNoise, &name);
        let sev5 = Severity::new(5).unwrap();
        let bytes = corrupt_encoded(&img.rgb, Kind::GaussianNoise, sev5, seed).unwrap();
        let img = decode_bytes(&bytes, &s.path, &DecodeOptions::default()).unwrap();
        noisy += usize::from(v.classify(&img).unwrap().argmax() == s.label);
    }
    eprintln!("mobilenet_v1_050_160 top-1 on 10 images: clean {clean}, gaussian_noise-5 {noisy}");
    assert!(clean >= 3, "clean accuracy {clean}/10 is implausibly low");
    assert!(noisy <= clean, "noise raised accuracy: {noisy} > {clean}");
}
