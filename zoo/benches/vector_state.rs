//! What dirty vector-register state costs the code that runs after an inference.
//!
//! tract's AVX-512 kernels return without `vzeroupper`; every engine call therefore ends with
//! [`triage_zoo::engine::simd::clear_upper_state`]. This bench times the work a runtime thread
//! does right after a stage, decoding and preparing the next image and a temperature-scaled
//! softmax of the stage's 1001 logits, in two settings that differ only in that call:
//!
//! - `after-engine-run`: the stage ran through the zoo's engine (state cleared): the baseline;
//! - `after-raw-tract-run`: the same network ran through tract directly (state left dirty).
//!
//! Only the work after the run is timed (`iter_custom`); the ratio of the two medians is the
//! cost of the dirty state. Network: mobilenet_v1_025_128; images: the first 16 of
//! `$TRIAGE_SHARED/datasets/imagenet-sample` (default `../shared`), cycled.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tract_onnx::prelude::*;
use triage_zoo::logits::softmax;
use triage_zoo::{decode_bytes, Zoo};

mod common;

fn bench(c: &mut Criterion) {
    let (zoo, files) = common::zoo_and_images(16);
    let v = zoo.variant("mobilenet_v1_025_128").expect("variant");
    let decode = Zoo::decode_options_for([v], Default::default());
    let first = decode_bytes(&files[0].1, &files[0].0, &decode).expect("decode");
    let input = v.prepare(&first).expect("prepare");
    let s = v.input_size() as usize;
    let raw = tract_onnx::onnx()
        .model_for_path(&v.spec().path)
        .and_then(|m| m.with_input_fact(0, f32::fact([1, 3, s, s]).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .expect("tract");
    let raw_input = Tensor::from_shape(&[1, 3, s, s], input.as_slice()).expect("shape");
    let engine = v.load().expect("load");

    // The timed work, three kinds of what a thread does after a stage.
    type Work<'a> = Box<dyn Fn(usize, &[f32]) + 'a>;
    let works: Vec<(&str, Work)> = vec![
        // Decode and prepare the next image (SIMD JPEG decoding and resampling).
        (
            "decode+prepare",
            Box::new(|i, _| {
                let (p, bytes) = &files[i % files.len()];
                let img = decode_bytes(bytes, p, &decode).expect("decode");
                std::hint::black_box(v.prepare(&img).expect("prepare"));
            }),
        ),
        // Calibrated probabilities of the stage's 1001 logits (f32).
        (
            "softmax-f32",
            Box::new(|_, logits| {
                std::hint::black_box(softmax(logits, 1.3));
            }),
        ),
        // Scalar f64 math: the log-sum-exp of a temperature-scaled NLL, as calibration and
        // the premodels compute it.
        (
            "log-sum-exp-f64",
            Box::new(|_, logits| {
                let t = std::hint::black_box(1.3f64);
                let m = logits
                    .iter()
                    .fold(f64::MIN, |m, &x| m.max(f64::from(x) / t));
                let z: f64 = logits.iter().map(|&x| (f64::from(x) / t - m).exp()).sum();
                std::hint::black_box(m + z.ln());
            }),
        ),
    ];

    for (name, work) in &works {
        let mut g = c.benchmark_group(*name);
        g.sample_size(20).measurement_time(Duration::from_secs(4));
        g.bench_function("after-engine-run", |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for i in 0..iters as usize {
                    let logits = engine.run(input.as_slice()).expect("run");
                    let t = Instant::now();
                    work(i, &logits);
                    timed += t.elapsed();
                }
                timed
            })
        });
        g.bench_function("after-raw-tract-run", |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for i in 0..iters as usize {
                    let out = raw.run(tvec!(raw_input.clone().into())).expect("run");
                    let logits = out[0]
                        .try_as_plain_ram()
                        .and_then(|t| Ok(t.as_slice::<f32>()?.to_vec()))
                        .expect("f32 output");
                    let t = Instant::now();
                    work(i, &logits);
                    timed += t.elapsed();
                }
                timed
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
