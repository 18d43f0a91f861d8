//! Backend conformance on the real zoo and real images: every engine gives the logits of the
//! unmodified model run the plain way, within 1e-4, call after call and from several threads
//! at once, and leaves the vector registers' upper state clean after each call. The ONNX
//! Runtime checks are skipped, saying why, when this build lacks the `ort` feature or the
//! library cannot be found.

use std::path::{Path, PathBuf};

use tract_onnx::prelude::*;
use triage_zoo::{decode_file, Backend, DecodeOptions, Engine, EngineOptions, Variant, Zoo};

const TOLERANCE: f32 = 1e-4;

fn shared() -> PathBuf {
    let p = std::env::var_os("TRIAGE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    assert!(
        p.join("zoo/zoo.toml").is_file(),
        "shared data not found at {} (set TRIAGE_SHARED)",
        p.display()
    );
    p
}

const IMAGES: [&str; 3] = [
    "n01440764_tench.JPEG",
    "n01443537_goldfish.JPEG",
    "n01484850_great_white_shark.JPEG",
];

/// Each image prepared for `v`.
fn inputs(v: &Variant) -> Vec<Vec<f32>> {
    let dir = shared().join("datasets/imagenet-sample/images");
    IMAGES
        .iter()
        .map(|name| {
            let img = decode_file(&dir.join(name), &DecodeOptions::default()).unwrap();
            v.prepare(&img).unwrap().into_vec()
        })
        .collect()
}

/// The unmodified model, loaded and run the plain way: a fresh plan and state per call.
fn reference(v: &Variant, input: &[f32]) -> Vec<f32> {
    let s = v.input_size() as usize;
    let plan = tract_onnx::onnx()
        .model_for_path(&v.spec().path)
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let t = Tensor::from_shape(&[1, 3, s, s], input).unwrap();
    let out = plan.run(tvec!(t.into())).unwrap();
    out[0]
        .try_as_plain_ram()
        .unwrap()
        .as_slice::<f32>()
        .unwrap()
        .to_vec()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Checks `engine` against the references, sequentially (state reused between images) and
/// from two threads at once.
fn conforms(name: &str, engine: &dyn Engine, inputs: &[Vec<f32>], refs: &[Vec<f32>]) {
    for round in 0..2 {
        for (i, (x, r)) in inputs.iter().zip(refs).enumerate() {
            let out = engine.run(x).unwrap();
            // Nothing after a call may pay for the kernels' vector state (engine::simd).
            assert_ne!(
                triage_zoo::engine::simd::upper_state_in_use(),
                Some(true),
                "{name} on {}: the call left the vector upper state dirty",
                engine.backend()
            );
            let d = max_diff(&out, r);
            assert!(
                d <= TOLERANCE,
                "{name} on {}: image {i}, round {round}: max |diff| {d}",
                engine.backend()
            );
        }
    }
    std::thread::scope(|s| {
        for t in 0..2 {
            s.spawn(move || {
                for k in 0..inputs.len() {
                    let i = (k + t) % inputs.len();
                    let d = max_diff(&engine.run(&inputs[i]).unwrap(), &refs[i]);
                    assert!(d <= TOLERANCE, "{name}, thread {t}, image {i}: {d}");
                }
            });
        }
    });
}

/// Variants small enough for the test run, plus the largest for the padding it has.
fn zoo_and_names() -> (Zoo, Vec<&'static str>) {
    let zoo = Zoo::open(shared().join("zoo")).unwrap();
    (
        zoo,
        vec![
            "mobilenet_v1_025_128",
            "mobilenet_v2_100_224",
            "efficientnet_lite2",
        ],
    )
}

#[test]
fn tract_engine_matches_the_unmodified_model() {
    let (zoo, names) = zoo_and_names();
    for name in names {
        let v = zoo.variant(name).unwrap();
        let xs = inputs(v);
        let refs: Vec<_> = xs.iter().map(|x| reference(v, x)).collect();
        for backend in [Backend::Tract, Backend::TractNchw] {
            let engine = v.load_engine(&EngineOptions::new(backend)).unwrap();
            conforms(name, engine.as_ref(), &xs, &refs);
        }
    }
}

/// The channel-last rewrite reaches every convolution it is for. It once lowered only the
/// first depthwise convolution of each network: declutter had dropped the batch axis of the
/// rest (`CHW`), which the rule did not take.
#[test]
fn the_tract_graph_runs_channel_last_end_to_end() {
    let zoo = Zoo::open(shared().join("zoo")).unwrap();
    // (variant, depthwise convolutions)
    for (name, depthwise) in [("mobilenet_v2_100_224", 17), ("efficientnet_lite2", 21)] {
        let v = zoo.variant(name).unwrap();
        let engine =
            triage_zoo::engine::TractEngine::load(name, &v.spec().path, v.input_size()).unwrap();
        let ops = engine.op_counts();
        let count = |op: &str| ops.get(op).copied().unwrap_or(0);
        assert_eq!(count("ChannelLastDepthwise"), depthwise, "{name}: {ops:?}");
        assert_eq!(
            count("DepthWiseConv"),
            0,
            "{name}: tract's depthwise left: {ops:?}"
        );
        assert_eq!(count("PlanarStem"), 1, "{name}: {ops:?}");
        // Only the move of the input image is left, and no ReLU6 runs as a pass of its own
        // (the pointwise convolutions' are fused by tract, the others by the rewrite).
        assert!(count("MoveAxis") <= 1, "{name}: {ops:?}");
        assert!(
            ops.keys()
                .all(|op| !op.contains("Max") && !op.contains("Min")),
            "{name}: unfused clip: {ops:?}"
        );
    }
}

#[test]
fn ort_engine_matches_the_unmodified_model() {
    let (zoo, names) = zoo_and_names();
    let opts = EngineOptions::new(Backend::Ort);
    if let Err(e) = opts.library_version() {
        eprintln!("skipping the ONNX Runtime conformance test: {e}");
        return;
    }
    for name in names {
        let v = zoo.variant(name).unwrap();
        let xs = inputs(v);
        let refs: Vec<_> = xs.iter().map(|x| reference(v, x)).collect();
        let engine = v.load_engine(&opts).unwrap();
        assert_eq!(engine.backend(), "ort");
        conforms(name, engine.as_ref(), &xs, &refs);
    }
}

#[test]
fn a_wrong_input_length_is_an_error_not_a_panic() {
    let zoo = Zoo::open(shared().join("zoo")).unwrap();
    let v = zoo.variant("mobilenet_v1_025_128").unwrap();
    let engine = v.load_engine(&EngineOptions::default()).unwrap();
    let e = engine.run(&[0.0; 10]).unwrap_err().to_string();
    assert!(e.contains("input has 10 values"), "{e}");
}

#[test]
fn the_backend_is_chosen_per_zoo() {
    let zoo = Zoo::open_with(shared().join("zoo"), EngineOptions::new(Backend::Tract)).unwrap();
    assert_eq!(zoo.engine_options().backend, Backend::Tract);
    assert!(zoo.variants().iter().all(|v| v.backend() == Backend::Tract));
    assert_eq!(Backend::parse("onnxruntime"), Some(Backend::Ort));
    assert_eq!(Backend::parse("tract-nchw"), Some(Backend::TractNchw));
    assert_eq!(Backend::parse("tflite"), None);
    if !Backend::Ort.compiled_in() {
        let e = EngineOptions::new(Backend::Ort)
            .library_version()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--features ort"), "{e}");
    }
}
