//! Per-image premodel cost at run time: downsizing a decoded ~500x375 image, computing its
//! features, and predicting with each learner. The budget is 0.25 ms median for the whole
//! chain on the project's 2-core machine.

mod common;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use triage_premodel::learners::{KnnIndex, KnnParams};
use triage_premodel::prelude::*;

/// Rows each benchmarked model is trained on (KNN prediction cost grows with it).
const TRAIN_ROWS: usize = 5_000;

fn bench(c: &mut Criterion) {
    let images = common::sample_images(200);
    let (img, meta) = images
        .iter()
        .find(|(i, _)| i.dimensions() == (500, 375))
        .unwrap_or(&images[0])
        .clone();
    eprintln!("bench image: {}x{}", img.width(), img.height());
    let probe = common::probe_vector(99);

    c.bench_function("downsize", |b| b.iter(|| downsize(black_box(&img))));
    c.bench_function("features/image", |b| {
        b.iter(|| FeatureSet::Image.extract(black_box(&img), &meta, None))
    });
    c.bench_function("features/image+probe", |b| {
        b.iter(|| FeatureSet::ImageAndProbe.extract(black_box(&img), &meta, Some(&probe)))
    });

    let set = FeatureSet::ImageAndProbe;
    let base = common::feature_rows(&images, set);
    let (x, y) = common::training_set(&base, TRAIN_ROWS, 7);
    let row = set.extract(&img, &meta, Some(&probe)).expect("features");
    for config in common::configs(set) {
        let model = Premodel::fit(&config, &x, &y, 1).expect("fit");
        let name = config.learner.kind().name();
        c.bench_function(&format!("predict/{name}"), |b| {
            b.iter(|| model.choose(black_box(&row), &common::LATENCY_MS, 0.5))
        });
        c.bench_function(&format!("end_to_end/{name}"), |b| {
            b.iter(|| {
                let f = set.extract(black_box(&img), &meta, Some(&probe))?;
                model.choose(&f, &common::LATENCY_MS, 0.5)
            })
        });
    }
    // Index choice for k-NN (the default is the k-d tree).
    for index in [KnnIndex::BallTree, KnnIndex::Linear] {
        let params = LearnerParams::Knn(KnnParams::new().with_index(index));
        let model = Premodel::fit(&PremodelConfig::new(set, params), &x, &y, 1).expect("fit");
        c.bench_function(&format!("predict/knn-{index:?}"), |b| {
            b.iter(|| model.choose(black_box(&row), &common::LATENCY_MS, 0.5))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
