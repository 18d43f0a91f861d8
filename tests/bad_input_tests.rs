//! Bad input never panics: each case is one clear error naming the file, and in a dataset
//! run the bad image is reported and skipped while everything else is counted.

mod common;

use std::path::Path;

use triage_zoo::eval::evaluate;
use triage_zoo::{decode_file, Dataset, DatasetOptions, DecodeOptions, Zoo};

fn decode_err(path: &Path) -> String {
    let e = decode_file(path, &DecodeOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&*path.file_name().unwrap().to_string_lossy()),
        "error does not name the file: {e}"
    );
    e
}

#[test]
fn truncated_jpeg() {
    let t = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(common::dev_image("n01440764_tench.JPEG")).unwrap();
    let p = t.path().join("truncated.JPEG");
    std::fs::write(&p, &bytes[..bytes.len() / 3]).unwrap();
    let e = decode_err(&p);
    assert!(e.contains("JPEG"), "{e}");
}

#[test]
fn zero_byte_file() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("empty.JPEG");
    std::fs::write(&p, b"").unwrap();
    assert!(decode_err(&p).contains("0 bytes"));
}

#[test]
fn text_file_named_jpeg() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("notes.JPEG");
    std::fs::write(&p, "this is not an image\n").unwrap();
    assert!(decode_err(&p).contains("not a recognised image"));
}

#[test]
fn decompression_bomb_png_header() {
    let e = decode_err(&common::fixture("bomb-20000x20000.png"));
    assert!(e.contains("20000x20000") && e.contains("limit"), "{e}");
}

#[test]
fn one_pixel_image() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("dot.png");
    image::RgbImage::from_pixel(1, 1, image::Rgb([9, 9, 9]))
        .save(&p)
        .unwrap();
    assert!(decode_err(&p).contains("1x1"));
}

#[test]
fn cmyk_jpeg_becomes_correct_rgb() {
    let img = decode_file(&common::fixture("cmyk.jpg"), &DecodeOptions::default()).unwrap();
    assert_eq!(img.rgb.dimensions(), (64, 48));
    let red = img.rgb.get_pixel(8, 24).0;
    let grey = img.rgb.get_pixel(56, 24).0;
    assert!(red[0] > 230 && red[1] < 25 && red[2] < 25, "{red:?}");
    for c in grey {
        assert!((115..=140).contains(&c), "{grey:?}");
    }
}

#[test]
fn exif_orientation_is_applied_unless_disabled() {
    let p = common::fixture("exif-rotate90.jpg");
    let img = decode_file(&p, &DecodeOptions::default()).unwrap();
    assert_eq!((img.width, img.height), (40, 60));
    assert_eq!(img.rgb.dimensions(), (40, 60));
    // The stored left-edge red stripe is displayed along the top.
    let top = img.rgb.get_pixel(20, 2).0;
    let bottom = img.rgb.get_pixel(20, 57).0;
    assert!(top[0] > 200 && top[2] < 60, "{top:?}");
    assert!(bottom[2] > 200 && bottom[0] < 60, "{bottom:?}");
    let raw = decode_file(
        &p,
        &DecodeOptions {
            apply_orientation: false,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(raw.rgb.dimensions(), (60, 40));
}

#[test]
fn webp_and_png_decode() {
    let img = decode_file(&common::fixture("green.webp"), &DecodeOptions::default()).unwrap();
    assert_eq!(img.rgb.dimensions(), (50, 30));
    assert_eq!(img.rgb.get_pixel(5, 5).0, [10, 200, 30]);
}

#[test]
fn wrong_sha256_is_refused_at_load() {
    let t = common::edited_zoo(|s| {
        s.replace(
            "60c2c6da648b25fd6f6042353403a244ab24603275acce3447318955c5c45a1f",
            &"ab".repeat(32),
        )
    });
    let zoo = Zoo::open(t.path()).unwrap();
    let v = zoo.variant("mobilenet_v1_025_128").unwrap();
    let e = v.load().err().unwrap().to_string();
    assert!(
        e.contains("mobilenet_v1_025_128.onnx") && e.contains("sha256 mismatch"),
        "{e}"
    );
    let bad: Vec<_> = zoo
        .verify()
        .into_iter()
        .filter(|(_, r)| r.is_err())
        .collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].0, "mobilenet_v1_025_128");
}

#[test]
fn zoo_toml_with_a_missing_field() {
    let t = common::edited_zoo(|s| s.replacen("resize_shorter = 183\n", "", 1));
    let e = Zoo::open(t.path()).unwrap_err().to_string();
    assert!(
        e.contains("zoo.toml")
            && e.contains("model 'mobilenet_v1_050_160'")
            && e.contains("resize_shorter"),
        "{e}"
    );
}

#[test]
fn dataset_run_skips_bad_images_and_counts_the_rest() {
    let t = tempfile::tempdir().unwrap();
    let good = [
        "n01440764_tench.JPEG",
        "n02129604_tiger.JPEG",
        "n07747607_orange.JPEG",
    ];
    let mut txt = String::new();
    for g in good {
        std::os::unix::fs::symlink(common::dev_image(g), t.path().join(g)).unwrap();
    }
    txt.push_str("n01440764_tench.JPEG 0\nn02129604_tiger.JPEG 292\nn07747607_orange.JPEG 950\n");
    std::fs::write(t.path().join("broken.JPEG"), "not an image").unwrap();
    txt.push_str("broken.JPEG 1\n");
    std::fs::write(t.path().join("val.txt"), txt).unwrap();

    let zoo = Zoo::open(common::zoo_dir()).unwrap();
    let data = Dataset::open(t.path(), &DatasetOptions::default()).unwrap();
    let variants = [zoo.variant("mobilenet_v2_100_224").unwrap()];
    let report = evaluate(&variants, &data, DecodeOptions::default(), &|| {}).unwrap();
    assert_eq!(report.failures.len(), 1);
    assert!(report.failures[0].0.ends_with("broken.JPEG"));
    assert_eq!(report.variants[0].n, 3);
    assert_eq!(report.variants[0].top1_correct, 3);
}
