use super::*;
use ::image::{Rgb, RgbImage};

fn meta(w: u32, h: u32) -> ImageMeta {
    ImageMeta {
        width: w,
        height: h,
        byte_len: u64::from(w) * u64::from(h) / 4,
    }
}

fn checkerboard(w: u32, h: u32, cell: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        if (x / cell + y / cell).is_multiple_of(2) {
            Rgb([230, 40, 40])
        } else {
            Rgb([20, 30, 200])
        }
    })
}

fn gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, _| {
        let v = (x * 255 / w.max(1)) as u8;
        Rgb([v, v, v])
    })
}

fn value(set: FeatureSet, f: &[f32], name: &str) -> f32 {
    let i = set.names().iter().position(|n| *n == name).unwrap();
    f[i]
}

#[test]
fn names_are_unique_and_probe_set_extends_image_set() {
    for set in FeatureSet::ALL {
        let mut names = set.names().to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), set.len(), "{}", set.name());
        assert_eq!(FeatureSet::from_name(set.name()), Some(set));
    }
    let both = FeatureSet::ImageAndProbe.names();
    assert_eq!(&both[..4], &PROBE_FEATURE_NAMES);
    assert_eq!(&both[4..], &IMAGE_FEATURE_NAMES);
}

#[test]
fn synthetic_images_give_finite_features() {
    for img in [
        checkerboard(85, 64, 8),
        gradient(85, 64),
        RgbImage::new(85, 64),
        RgbImage::from_pixel(64, 64, Rgb([255, 255, 255])),
    ] {
        let f = FeatureSet::Image
            .compute(&img, &meta(500, 375), None)
            .unwrap();
        assert!(f.iter().all(|v| v.is_finite()), "{f:?}");
    }
}

#[test]
fn more_edges_mean_higher_edge_density_and_more_keypoints() {
    let set = FeatureSet::Image;
    let m = meta(500, 375);
    let flat = set.compute(&gradient(85, 64), &m, None).unwrap();
    let coarse = set.compute(&checkerboard(85, 64, 16), &m, None).unwrap();
    let fine = set.compute(&checkerboard(85, 64, 6), &m, None).unwrap();
    let d = |f: &[f32]| value(set, f, "edge_density");
    assert!(d(&flat) < d(&coarse), "{} {}", d(&flat), d(&coarse));
    assert!(d(&coarse) < d(&fine), "{} {}", d(&coarse), d(&fine));
}

/// Bright squares on a dark background: every square contributes four L-corners, which FAST
/// detects (checkerboard X-junctions it does not).
fn squares(w: u32, h: u32, spacing: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        if x % spacing >= 2 && x % spacing < 6 && y % spacing >= 2 && y % spacing < 6 {
            Rgb([240, 240, 240])
        } else {
            Rgb([20, 20, 20])
        }
    })
}

#[test]
fn more_corners_mean_more_keypoints() {
    let set = FeatureSet::Image;
    let m = meta(500, 375);
    let k = |img: &RgbImage| {
        value(
            set,
            &set.compute(img, &m, None).unwrap(),
            "fast_keypoints_per_kpx",
        )
    };
    let none = k(&gradient(85, 64));
    let few = k(&squares(85, 64, 24));
    let many = k(&squares(85, 64, 10));
    assert!(none < few && few < many, "{none} {few} {many}");
}

#[test]
fn colour_and_brightness_features_order_sensibly() {
    let set = FeatureSet::Image;
    let m = meta(64, 64);
    let grey = set
        .compute(
            &RgbImage::from_pixel(64, 64, Rgb([128, 128, 128])),
            &m,
            None,
        )
        .unwrap();
    let red = set
        .compute(&RgbImage::from_pixel(64, 64, Rgb([250, 10, 10])), &m, None)
        .unwrap();
    assert_eq!(value(set, &grey, "colourfulness"), 0.0);
    // Flat pure red: no spread, only the 0.3 * mean-chroma term (~0.32).
    assert!(value(set, &red, "colourfulness") > 0.25);
    assert!(value(set, &red, "hue_hist_0") > 0.9);
    assert_eq!(value(set, &grey, "hue_hist_0"), 0.0);
    assert!((value(set, &grey, "luma_mean") - 128.0 / 255.0).abs() < 1e-3);
    assert_eq!(value(set, &grey, "luma_std"), 0.0);
    let checker = set.compute(&checkerboard(64, 64, 8), &m, None).unwrap();
    assert!(value(set, &checker, "luma_std") > 0.05);
}

#[test]
fn vertical_stripes_have_coherent_vertical_edges() {
    let img = RgbImage::from_fn(64, 64, |x, _| {
        if (x / 8).is_multiple_of(2) {
            Rgb([0, 0, 0])
        } else {
            Rgb([255, 255, 255])
        }
    });
    let set = FeatureSet::Image;
    let f = set.compute(&img, &meta(64, 64), None).unwrap();
    assert!(value(set, &f, "edge_angle_coherence") > 0.9);
    // Gradient along x: orientation angle ~0 (or ~pi, the same axis).
    let a = value(set, &f, "edge_angle_mean");
    assert!(!(0.1..std::f32::consts::PI - 0.1).contains(&a), "{a}");
}

#[test]
fn file_features_come_from_metadata() {
    let set = FeatureSet::Image;
    let m = ImageMeta {
        width: 2000,
        height: 1000,
        byte_len: 500_000,
    };
    let f = set.compute(&gradient(128, 64), &m, None).unwrap();
    assert_eq!(value(set, &f, "aspect_ratio"), 2.0);
    assert_eq!(value(set, &f, "megapixels"), 2.0);
    assert_eq!(value(set, &f, "jpeg_bytes_per_pixel"), 0.25);
}

#[test]
fn probe_set_needs_probe_and_puts_it_first() {
    let img = gradient(64, 64);
    let m = meta(64, 64);
    assert!(matches!(
        FeatureSet::ImageAndProbe.compute(&img, &m, None),
        Err(Error::MissingProbe { .. })
    ));
    let mut p = vec![0.0; 1000];
    p[0] = 0.7;
    p[1] = 0.3;
    let f = FeatureSet::ImageAndProbe
        .compute(&img, &m, Some(&p))
        .unwrap();
    assert_eq!(f[0], 0.7);
    let image_only = FeatureSet::Image.compute(&img, &m, None).unwrap();
    assert_eq!(&f[4..], &image_only[..]);
}

#[test]
fn empty_images_are_errors() {
    let set = FeatureSet::Image;
    assert!(matches!(
        set.compute(&RgbImage::new(0, 0), &meta(1, 1), None),
        Err(Error::EmptyImage { .. })
    ));
    assert!(matches!(
        set.compute(&gradient(8, 8), &meta(0, 10), None),
        Err(Error::EmptyImage { .. })
    ));
    assert!(set
        .extract(&RgbImage::new(0, 3), &meta(1, 1), None)
        .is_err());
}

#[test]
fn extract_downsizes_large_images() {
    let big = checkerboard(500, 375, 40);
    let m = meta(500, 375);
    let via_extract = FeatureSet::Image.extract(&big, &m, None).unwrap();
    let manual = FeatureSet::Image
        .compute(&downsize(&big), &m, None)
        .unwrap();
    assert_eq!(via_extract, manual);
}

/// Root of the shared data directory: `TRIAGE_SHARED`, else `shared/` beside the workspace.
pub(crate) fn shared_dir() -> std::path::PathBuf {
    std::env::var_os("TRIAGE_SHARED")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared").into())
}

#[test]
fn real_sample_images_give_finite_and_varied_features() {
    let dir = shared_dir().join("datasets/imagenet-sample/images");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("sample images at {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "JPEG"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 10,
        "too few sample images in {}",
        dir.display()
    );
    let set = FeatureSet::Image;
    let mut rows = Vec::new();
    for p in paths.iter().take(20) {
        let bytes = std::fs::read(p).unwrap();
        let img = ::image::load_from_memory(&bytes).unwrap().to_rgb8();
        let m = ImageMeta {
            width: img.width(),
            height: img.height(),
            byte_len: bytes.len() as u64,
        };
        let f = set.extract(&img, &m, None).unwrap();
        assert!(f.iter().all(|v| v.is_finite()), "{}: {f:?}", p.display());
        rows.push(f);
    }
    // Real photos differ: every pixel-derived feature except possibly a hue bin varies.
    for name in [
        "luma_mean",
        "luma_std",
        "edge_density",
        "fast_keypoints_per_kpx",
    ] {
        let c = set.names().iter().position(|n| *n == name).unwrap();
        let first = rows[0][c];
        assert!(rows.iter().any(|r| r[c] != first), "{name} constant");
    }
}
