//! What the zoo benches share: the real zoo and the first sample images, read into memory.

use std::path::PathBuf;

use triage_zoo::{Dataset, DatasetOptions, Zoo};

/// `$TRIAGE_SHARED`, else `../shared` beside the repository root.
pub fn shared() -> PathBuf {
    std::env::var_os("TRIAGE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")))
}

/// The shared zoo, and the first `n` images of the shared sample (sorted order) as
/// (path, file bytes).
pub fn zoo_and_images(n: usize) -> (Zoo, Vec<(PathBuf, Vec<u8>)>) {
    let shared = shared();
    let zoo = Zoo::open(shared.join("zoo")).expect("zoo");
    let data = Dataset::open(
        shared.join("datasets/imagenet-sample"),
        &DatasetOptions::default(),
    )
    .expect("dataset")
    .limit(n);
    let files = data
        .samples()
        .iter()
        .map(|s| (s.path.clone(), std::fs::read(&s.path).expect("image")))
        .collect();
    (zoo, files)
}
