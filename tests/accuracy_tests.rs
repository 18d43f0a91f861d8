//! The zoo runs exactly right: on a fixed set of 20 shared DEV images, every variant's top-1
//! agrees with the reference pipeline (onnxruntime + Pillow, recorded by
//! `tests/fixtures/make_reference.py`).

mod common;

use triage_zoo::{decode_file, Dataset, DatasetOptions, Zoo};

/// Every 35th image of the sorted DEV list, 20 of them (as in make_reference.py).
const FIXED_STRIDE: usize = 35;
const FIXED_COUNT: usize = 20;

struct Reference {
    variants: Vec<String>,
    /// (file, label, predicted class per variant)
    rows: Vec<(String, usize, Vec<usize>)>,
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(common::fixture("reference_top1.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let variants = header[2..].iter().map(|s| s.to_string()).collect();
    let rows = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let preds = f[2..].iter().map(|v| v.parse().unwrap()).collect();
            (f[0].to_string(), f[1].parse().unwrap(), preds)
        })
        .collect();
    Reference { variants, rows }
}

#[test]
fn every_variant_matches_the_reference_on_twenty_images() {
    let zoo = Zoo::open(common::zoo_dir()).unwrap();
    let data = Dataset::open(common::dev_dir(), &DatasetOptions::default()).unwrap();
    let picked: Vec<_> = data
        .samples()
        .iter()
        .step_by(FIXED_STRIDE)
        .take(FIXED_COUNT)
        .collect();
    let reference = reference();
    assert_eq!(picked.len(), reference.rows.len());
    let opts = Zoo::decode_options_for(zoo.variants(), Default::default());
    let decoded: Vec<_> = picked
        .iter()
        .map(|s| decode_file(&s.path, &opts).unwrap())
        .collect();

    for (vi, name) in reference.variants.iter().enumerate() {
        let v = zoo.variant(name).unwrap();
        let mut ours_correct = 0;
        let mut ref_correct = 0;
        let mut disagreements = Vec::new();
        for ((sample, img), (file, label, preds)) in
            picked.iter().zip(&decoded).zip(&reference.rows)
        {
            assert!(
                sample.rel.ends_with(file.as_str()),
                "{} vs {file}",
                sample.rel
            );
            assert_eq!(sample.label, *label);
            let top1 = v.classify(img).unwrap().argmax();
            ours_correct += usize::from(top1 == *label);
            ref_correct += usize::from(preds[vi] == *label);
            if top1 != preds[vi] {
                disagreements.push(format!("{file}: ours {top1}, reference {}", preds[vi]));
            }
        }
        // Two decoders and two resizers can flip one borderline image; more than one flip,
        // or a correct count that moves by more than that flip, is a preprocessing bug.
        assert!(
            ours_correct.abs_diff(ref_correct) <= 1,
            "{name}: top-1 {ours_correct}/20 vs reference {ref_correct}/20; {disagreements:?}"
        );
        assert!(
            disagreements.len() <= 1,
            "{name} disagrees with the reference on {disagreements:?}"
        );
    }
}

#[test]
fn scaled_decoding_keeps_predictions_of_the_smallest_variant() {
    // The 128 variant may decode JPEGs at 1/2 or 1/4 scale; its accuracy must not move.
    let zoo = Zoo::open(common::zoo_dir()).unwrap();
    let v = &zoo.variants()[0];
    let data = Dataset::open(common::dev_dir(), &DatasetOptions::default()).unwrap();
    let scaled = Zoo::decode_options_for([v], Default::default());
    let (mut n, mut reduced, mut kept_in_top5) = (0, 0, 0);
    let (mut right_full, mut right_scaled) = (0, 0);
    for s in data
        .samples()
        .iter()
        .step_by(FIXED_STRIDE)
        .take(FIXED_COUNT)
    {
        let full = decode_file(&s.path, &Default::default()).unwrap();
        let small = decode_file(&s.path, &scaled).unwrap();
        reduced += usize::from(small.scale_denominator() > 1);
        n += 1;
        let (a, b) = (v.classify(&full).unwrap(), v.classify(&small).unwrap());
        kept_in_top5 += usize::from(b.top_k(5).contains(&a.argmax()));
        right_full += usize::from(a.argmax() == s.label);
        right_scaled += usize::from(b.argmax() == s.label);
    }
    // The 45%-accurate 128 variant flips between near-tied classes on a slightly different
    // resampling; what must hold is that accuracy barely moves (on all 700 DEV images,
    // `triage zoo check --decode per-variant` measures 44.4% against 45.1%) and that the
    // answers stay close.
    // Only JPEGs whose shorter side is at least twice 146 px can be decoded at 1/2 scale.
    assert!(
        reduced >= 3,
        "only {reduced}/{n} images were decoded at reduced scale"
    );
    assert_eq!(
        kept_in_top5, n,
        "a full-decode answer left the scaled top-5"
    );
    assert!(
        right_full.abs_diff(right_scaled) <= 2,
        "top-1 moved from {right_full}/{n} to {right_scaled}/{n} with scaled decoding"
    );
}
