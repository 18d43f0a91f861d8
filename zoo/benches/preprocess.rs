//! Decode + per-variant preprocessing on shared DEV images, next to each variant's inference.
//!
//! Groups, one per variant: `full-decode+prep` (decode at full resolution, then prepare: the
//! baseline), `scaled-decode+prep` (decode at the largest DCT reduction the variant allows,
//! then prepare: what Triage does), `prep-only`, and `inference`. Compare medians within a
//! group. Images: `$TRIAGE_SHARED/datasets/imagenet-sample` (default `../shared`), the first
//! 16 in sorted order, cycled.

use criterion::{criterion_group, criterion_main, Criterion};
use triage_zoo::{decode_bytes, DecodeOptions, Zoo};

mod common;

fn bench(c: &mut Criterion) {
    let (zoo, files) = common::zoo_and_images(16);
    let full = DecodeOptions::default();
    for v in zoo.variants() {
        let scaled = Zoo::decode_options_for([v], full);
        let mut g = c.benchmark_group(v.name());
        let mut i = 0;
        g.bench_function("full-decode+prep", |b| {
            b.iter(|| {
                let (p, bytes) = &files[i % files.len()];
                i += 1;
                let img = decode_bytes(bytes, p, &full).expect("decode");
                v.prepare(&img).expect("prepare")
            })
        });
        g.bench_function("scaled-decode+prep", |b| {
            b.iter(|| {
                let (p, bytes) = &files[i % files.len()];
                i += 1;
                let img = decode_bytes(bytes, p, &scaled).expect("decode");
                v.prepare(&img).expect("prepare")
            })
        });
        let decoded: Vec<_> = files
            .iter()
            .map(|(p, b)| decode_bytes(b, p, &scaled).expect("decode"))
            .collect();
        g.bench_function("prep-only", |b| {
            b.iter(|| {
                i += 1;
                v.prepare(&decoded[i % decoded.len()]).expect("prepare")
            })
        });
        let input = v.prepare(&decoded[0]).expect("prepare");
        v.load().expect("load");
        g.sample_size(20);
        g.bench_function("inference", |b| b.iter(|| v.run(&input).expect("run")));
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
