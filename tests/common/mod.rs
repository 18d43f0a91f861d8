//! Helpers shared by the integration tests: where the shared data lives, and small fixtures.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `$TRIAGE_SHARED`, else `../shared` beside the repository root.
pub fn shared() -> PathBuf {
    let p = std::env::var_os("TRIAGE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    assert!(
        p.join("zoo/zoo.toml").is_file(),
        "shared data not found at {} (set TRIAGE_SHARED)",
        p.display()
    );
    p
}

pub fn zoo_dir() -> PathBuf {
    shared().join("zoo")
}

pub fn dev_dir() -> PathBuf {
    shared().join("datasets/imagenet-sample")
}

pub fn dev_image(name: &str) -> PathBuf {
    dev_dir().join("images").join(name)
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A temporary zoo: symlinks to the shared model files plus a `zoo.toml` edited by `edit`.
pub fn edited_zoo(edit: impl Fn(&str) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(zoo_dir()).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap();
        if name != "zoo.toml" {
            std::os::unix::fs::symlink(&p, dir.path().join(name)).unwrap();
        }
    }
    let text = std::fs::read_to_string(zoo_dir().join("zoo.toml")).unwrap();
    std::fs::write(dir.path().join("zoo.toml"), edit(&text)).unwrap();
    dir
}
