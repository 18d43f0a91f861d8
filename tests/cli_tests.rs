//! The `triage` binary end to end on a few real images.

mod common;

use std::process::Command;

fn triage() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_triage"));
    c.env("TRIAGE_SHARED", common::shared());
    c
}

#[test]
fn zoo_check_json_on_a_subset() {
    let out = triage()
        .args(["zoo", "check", "--limit", "6", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let variants = v["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 7);
    for var in variants {
        assert_eq!(var["n"], 6);
        let top1 = var["top1"].as_f64().unwrap();
        let top5 = var["top5"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&top1) && top5 >= top1, "{var}");
        assert!(var["ms_per_image"].as_f64().unwrap() > 0.0);
    }
    // A 6-image subset is not the reference set: no comparison, no failure.
    assert_eq!(v["reference_set"], false);
}

#[test]
fn zoo_check_names_a_missing_zoo() {
    let out = triage()
        .args(["zoo", "check", "--zoo", "/nonexistent/zoo"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/zoo"), "{err}");
}
