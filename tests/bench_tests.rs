//! `triage bench` end to end on the smallest variant, bounded to a few runs.

mod common;

use std::process::Command;

fn triage() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_triage"));
    c.env("TRIAGE_SHARED", common::shared());
    c
}

#[test]
fn bench_json_reports_every_requested_backend() {
    let out = triage()
        .args([
            "bench",
            "--variants",
            "mobilenet_v1_025_128",
            "--backend",
            "tract,tract-nchw",
            "--iterations",
            "4",
            "--warmup",
            "1",
            "--threads",
            "2",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["threads"], 2);
    assert_eq!(v["backends"][0]["name"], "tract");
    let variants = v["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 1);
    let r = &variants[0]["results"][0];
    assert_eq!(r["backend"], "tract");
    assert_eq!(r["latency"]["runs"], 4);
    let median = r["latency"]["median_ms"].as_f64().unwrap();
    assert!(median > 0.0 && r["latency"]["p95_ms"].as_f64().unwrap() >= median);
    assert!(r["images_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(r["max_abs_diff"], 0.0);
    // The graph as imported, measured in the same run: same logits within 1e-4, and the
    // fastest of the two has ratio 1.
    assert_eq!(v["backends"][1]["name"], "tract-nchw");
    let nchw = &variants[0]["results"][1];
    assert_eq!(nchw["backend"], "tract-nchw");
    assert!(nchw["max_abs_diff"].as_f64().unwrap() <= 1e-4);
    let ratios = [&r["ratio_to_fastest"], &nchw["ratio_to_fastest"]].map(|x| x.as_f64().unwrap());
    assert!(
        ratios.iter().all(|&x| x >= 1.0) && ratios.contains(&1.0),
        "{ratios:?}"
    );
}

#[test]
fn bench_refuses_an_unknown_backend_and_variant() {
    let out = triage()
        .args(["bench", "--backend", "tflite"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown backend 'tflite'"));
    let out = triage()
        .args(["bench", "--backend", "tract", "--variants", "resnet50"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("resnet50"));
}
