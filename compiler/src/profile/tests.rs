//! Round-trip, truncation and tamper tests of the profile file, on synthetic profiles.

use super::*;

/// A small synthetic finished profile: `n` images, three variants, one remote option.
pub(crate) fn synthetic(n: u32, range: (u32, u32)) -> Profile {
    let variants: Vec<VariantInfo> = ["small", "medium", "large"]
        .iter()
        .enumerate()
        .map(|(i, name)| VariantInfo {
            name: name.to_string(),
            sha256: format!("{i:064}"),
            macs: 1_000_000 * (i as u64 + 1),
            input_size: 128 + 32 * i as u32,
            resize_shorter: 146 + 37 * i as u32,
            weights_bytes: 1000,
        })
        .collect();
    let header = Header {
        tool_version: "0.1.0".into(),
        created: "2026-01-01T00:00:00Z".into(),
        zoo_fingerprint: "zoo".into(),
        variants: variants.clone(),
        remote: vec!["large:224:90".parse::<RemoteGrid>().unwrap().0[0].clone()],
        dataset: DatasetInfo {
            root: "/data".into(),
            layout: "LabelsCsv".into(),
            identity: "abc".into(),
            n_total: n,
        },
        shard: None,
        range,
        apply_orientation: true,
        decode_min_shorter_side: None,
        feature_set_version: 1,
        feature_names: vec!["f0".into(), "f1".into()],
        host: Host {
            cpu: "cpu".into(),
            logical_cores: 2,
            threads: 2,
            intra_op_threads: 1,
            backend: "tract".into(),
            backend_version: "0.23.9".into(),
            tract_version: "0.23.9".into(),
            os: "linux".into(),
        },
    };
    let costs = Costs {
        variants: variants
            .iter()
            .enumerate()
            .map(|(i, v)| VariantCost {
                name: v.name.clone(),
                load_ms: 10.0,
                latency: LatencyStats::from_samples(&[1.0 + 4.0 * i as f64; 5]),
                prep_ms: 0.2,
                weights_bytes: 1000,
                peak_rss_growth_bytes: Some(4096),
            })
            .collect(),
    };
    let images = (range.0..range.1)
        .map(|i| {
            let label = (i * 7 % 1000) as u16;
            let pred = |right: bool| {
                let mut logits = vec![0f32; 1000];
                let c = if right {
                    usize::from(label)
                } else {
                    (usize::from(label) + 1) % 1000
                };
                logits[c] = 5.0;
                Prediction::new(&logits, 100, 1000)
            };
            let result = if i % 11 == 5 {
                Err("bad image".to_string())
            } else {
                Ok(Measured {
                    decode_us: 3000,
                    features: vec![i as f32, 1.0],
                    features_us: 100,
                    local: vec![pred(i % 3 == 0), pred(i % 2 == 0), pred(i % 5 != 0)],
                    remote: vec![RemotePrediction {
                        upload_bytes: 20_000,
                        encode_us: 2000,
                        prediction: pred(true),
                    }],
                })
            };
            ImageRecord {
                index: i,
                rel: format!("img {i}'s.JPEG"),
                label,
                width: 500,
                height: 375,
                byte_len: 100_000,
                result,
            }
        })
        .collect();
    Profile {
        header,
        costs,
        images,
    }
}

fn same(a: &Profile, b: &Profile) {
    assert_eq!(a.header, b.header);
    assert_eq!(a.costs, b.costs);
    assert_eq!(a.images, b.images);
}

#[test]
fn round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.profile");
    let p = synthetic(40, (0, 40));
    p.save(&path).unwrap();
    same(&Profile::load(&path).unwrap(), &p);
}

#[test]
fn every_truncation_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.profile");
    synthetic(40, (0, 40)).save(&path).unwrap();
    let full = std::fs::read(&path).unwrap();
    for cut in (0..full.len()).step_by(997).chain([full.len() - 1]) {
        std::fs::write(&path, &full[..cut]).unwrap();
        let e = Profile::load(&path).unwrap_err().to_string();
        assert!(e.contains("p.profile"), "{e}");
    }
}

#[test]
fn tampering_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.profile");
    synthetic(40, (0, 40)).save(&path).unwrap();
    let full = std::fs::read(&path).unwrap();
    for pos in (0..full.len()).step_by(1201) {
        let mut bad = full.clone();
        bad[pos] ^= 0x10;
        std::fs::write(&path, &bad).unwrap();
        assert!(
            Profile::load(&path).is_err(),
            "flip at {pos} went unnoticed"
        );
    }
}

#[test]
fn an_unfinished_file_is_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.profile");
    let p = synthetic(40, (0, 40));
    let mut w = crate::records::Writer::create(&path, MAGIC, SCHEMA).unwrap();
    w.write_value(KIND_HEADER, &p.header).unwrap();
    w.write_value(KIND_COSTS, &p.costs).unwrap();
    w.write_value(KIND_CHUNK, &p.images[..16]).unwrap();
    let e = Profile::load(&path).unwrap_err().to_string();
    assert!(e.contains("unfinished profile"), "{e}");
}

#[test]
fn a_valid_record_with_inconsistent_content_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.profile");
    let mut p = synthetic(20, (0, 20));
    if let Ok(m) = &mut p.images[3].result {
        m.local.pop();
    }
    p.save(&path).unwrap();
    let e = Profile::load(&path).unwrap_err().to_string();
    assert!(e.contains("wrong number of predictions"), "{e}");
}

#[test]
fn shards_merge_to_the_whole() {
    let whole = synthetic(30, (0, 30));
    let mut a = synthetic(30, (0, 15));
    let mut b = synthetic(30, (15, 30));
    a.header.shard = Some((0, 2));
    b.header.shard = Some((1, 2));
    let merged = merge::merge(vec![b.clone(), a.clone()]).unwrap();
    same(&merged, &whole);
    assert!(
        merge::merge(vec![a.clone()]).is_err(),
        "a missing shard must be an error"
    );
    assert!(
        merge::merge(vec![a.clone(), a.clone(), b.clone()]).is_err(),
        "overlap"
    );
    let mut other = b.clone();
    other.header.zoo_fingerprint = "another zoo".into();
    let e = merge::merge(vec![a, other]).unwrap_err().to_string();
    assert!(e.contains("different zoo"), "{e}");
}

#[test]
fn summary_counts_and_oracle() {
    let p = synthetic(30, (0, 30));
    let s = summary::Summary::of(&p);
    let measured: Vec<u32> = (0..30).filter(|i| i % 11 != 5).collect();
    let n = measured.len() as f64;
    let small = measured.iter().filter(|i| *i % 3 == 0).count() as f64 / n;
    assert!((s.variants[0].top1 - small).abs() < 1e-12);
    let any = measured
        .iter()
        .filter(|i| *i % 3 == 0 || *i % 2 == 0 || *i % 5 != 0)
        .count() as f64
        / n;
    assert!((s.oracle.top1 - any).abs() < 1e-12);
    assert!((s.oracle.top1_with_remote - 1.0).abs() < 1e-12);
    assert_eq!(s.n_failed, 30 - measured.len());
    assert!(s.render().contains("oracle"));
}

#[test]
fn latency_stats_quantiles() {
    let s = LatencyStats::from_samples(&[5.0, 1.0, 3.0, 2.0, 4.0]);
    assert_eq!(
        (s.runs, s.median_ms, s.min_ms, s.mean_ms),
        (5, 3.0, 1.0, 3.0)
    );
    assert!((s.p95_ms - 4.8).abs() < 1e-12);
    assert_eq!(LatencyStats::from_samples(&[]).runs, 0);
}

/// Writes `p` as a schema-1 file, the way builds before backends were recorded did.
fn save_v1(p: &Profile, path: &std::path::Path) {
    let h = p.header.clone();
    let v1 = legacy::HeaderV1 {
        tool_version: h.tool_version,
        created: h.created,
        zoo_fingerprint: h.zoo_fingerprint,
        variants: h.variants,
        remote: h.remote,
        dataset: h.dataset,
        shard: h.shard,
        range: h.range,
        apply_orientation: h.apply_orientation,
        decode_min_shorter_side: h.decode_min_shorter_side,
        feature_set_version: h.feature_set_version,
        feature_names: h.feature_names,
        host: legacy::HostV1 {
            cpu: h.host.cpu,
            logical_cores: h.host.logical_cores,
            threads: h.host.threads,
            intra_op_threads: h.host.intra_op_threads,
            backend: "tract".into(),
            tract_version: "0.23.9".into(),
            os: h.host.os,
        },
    };
    let mut w = crate::records::Writer::create(path, MAGIC, SCHEMA_V1).unwrap();
    w.write_value(KIND_HEADER, &v1).unwrap();
    w.write_value(KIND_COSTS, &p.costs).unwrap();
    for chunk in p.images.chunks(run::CHUNK) {
        w.write_value(KIND_CHUNK, &chunk).unwrap();
    }
    w.write_value(
        KIND_FOOTER,
        &Footer {
            n_images: p.images.len() as u32,
            n_failed: p.images.iter().filter(|i| i.result.is_err()).count() as u32,
        },
    )
    .unwrap();
}

#[test]
fn a_schema_1_profile_loads_as_measured_with_tract() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.profile");
    let p = synthetic(40, (0, 40));
    save_v1(&p, &path);
    let loaded = Profile::load(&path).unwrap();
    assert_eq!(loaded.header.host.backend, "tract");
    assert_eq!(loaded.header.host.backend_version, "0.23.9");
    same(&loaded, &p);
    // A newer schema than this build knows is refused with its number.
    let bytes = std::fs::read(&path).unwrap();
    let mut future = bytes.clone();
    future[8..12].copy_from_slice(&(SCHEMA + 1).to_le_bytes());
    std::fs::write(&path, future).unwrap();
    let e = Profile::load(&path).unwrap_err().to_string();
    assert!(e.contains(&format!("schema version {}", SCHEMA + 1)), "{e}");
}

#[test]
fn profiles_of_different_backends_are_incompatible() {
    let a = synthetic(10, (0, 10)).header;
    let mut b = a.clone();
    b.host.backend = "ort".into();
    b.host.backend_version = "1.32.0".into();
    assert_eq!(a.incompatibility(&b, true), Some("backend"));
    let mut c = a.clone();
    c.host.cpu = "another cpu".into();
    assert_eq!(a.incompatibility(&c, true), None);
}
