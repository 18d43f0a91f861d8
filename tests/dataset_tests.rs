//! Every ImageNet-validation layout reads the same images with the same labels, on small
//! fixtures built from shared images; malformed indexes give errors naming file and line.

mod common;

use std::path::{Path, PathBuf};

use triage_zoo::{Dataset, DatasetOptions, Layout, Shard};

/// (source DEV image, class index, wnid, name to store it under: spaces and apostrophes).
const PICKS: [(&str, usize, &str, &str); 4] = [
    (
        "n01440764_tench.JPEG",
        0,
        "n01440764",
        "ILSVRC2012_val_00000001.JPEG",
    ),
    (
        "n03992509_potter's_wheel.JPEG",
        739,
        "n03992509",
        "potter's wheel.JPEG",
    ),
    ("n02129604_tiger.JPEG", 292, "n02129604", "big cat 1.JPEG"),
    (
        "n07747607_orange.JPEG",
        950,
        "n07747607",
        "ILSVRC2012_val_00000004.JPEG",
    ),
];

fn link(src: &str, dst: &Path) {
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(common::dev_image(src), dst).unwrap();
}

fn synsets(dir: &Path, file: &str) {
    std::fs::copy(common::dev_dir().join("synsets.txt"), dir.join(file)).unwrap();
}

fn expected() -> Vec<(String, usize)> {
    let mut v: Vec<_> = PICKS.iter().map(|p| (p.3.to_string(), p.1)).collect();
    v.sort();
    v
}

fn names_and_labels(d: &Dataset) -> Vec<(String, usize)> {
    let mut v: Vec<_> = d
        .samples()
        .iter()
        .map(|s| {
            (
                s.path.file_name().unwrap().to_string_lossy().to_string(),
                s.label,
            )
        })
        .collect();
    v.sort();
    v
}

fn open(dir: &Path) -> triage_zoo::Result<Dataset> {
    Dataset::open(dir, &DatasetOptions::default())
}

#[test]
fn labels_csv_layout() {
    let t = tempfile::tempdir().unwrap();
    let mut csv = String::from("file,label,wnid\n");
    for (src, label, wnid, name) in PICKS {
        link(src, &t.path().join("images").join(name));
        csv.push_str(&format!("\"{name}\",{label},{wnid}\n"));
    }
    std::fs::write(t.path().join("labels.csv"), csv).unwrap();
    synsets(t.path(), "synsets.txt");
    let d = open(t.path()).unwrap();
    assert_eq!(d.layout(), Layout::LabelsCsv);
    assert_eq!(names_and_labels(&d), expected());
    assert_eq!(d.class_names().unwrap()[0], "tench, Tinca tinca");
}

#[test]
fn caffe_val_txt_beside_and_in_images() {
    for sub in ["", "images"] {
        let t = tempfile::tempdir().unwrap();
        let mut txt = String::new();
        for (src, label, _, name) in PICKS {
            link(src, &t.path().join(sub).join(name));
            txt.push_str(&format!("{name} {label}\n"));
        }
        std::fs::write(t.path().join("val.txt"), txt).unwrap();
        let d = open(t.path()).unwrap();
        assert_eq!(d.layout(), Layout::CaffeValTxt);
        assert_eq!(names_and_labels(&d), expected(), "images in '{sub}'");
    }
}

#[test]
fn image_folder_with_synsets_and_full_wnid_list() {
    let t = tempfile::tempdir().unwrap();
    for (src, _, wnid, name) in PICKS {
        link(src, &t.path().join(wnid).join(name));
    }
    // A subset of classes without synsets.txt cannot be labelled.
    let e = open(t.path()).unwrap_err().to_string();
    assert!(
        e.contains("4 class folders") && e.contains("synsets"),
        "{e}"
    );
    synsets(t.path(), "synsets.txt");
    let d = open(t.path()).unwrap();
    assert_eq!(d.layout(), Layout::ImageFolder);
    assert_eq!(names_and_labels(&d), expected());

    // With all 1000 wnid folders, labels come from the sorted list alone.
    std::fs::remove_file(t.path().join("synsets.txt")).unwrap();
    let text = std::fs::read_to_string(common::dev_dir().join("synsets.txt")).unwrap();
    for line in text.lines() {
        std::fs::create_dir_all(t.path().join(&line[..9])).unwrap();
    }
    let d = open(t.path()).unwrap();
    assert_eq!(names_and_labels(&d), expected());
}

#[test]
fn kaggle_loc_layout() {
    let t = tempfile::tempdir().unwrap();
    let val = t.path().join("ILSVRC/Data/CLS-LOC/val");
    let mut csv = String::from("ImageId,PredictionString\n");
    let mut want = Vec::new();
    for (i, (src, label, wnid, _)) in PICKS.iter().enumerate() {
        let id = format!("ILSVRC2012_val_{:08}", i + 1);
        link(src, &val.join(format!("{id}.JPEG")));
        csv.push_str(&format!("{id},{wnid} 1 2 100 200 {wnid} 5 5 50 50 \n"));
        want.push((format!("{id}.JPEG"), *label));
    }
    std::fs::write(t.path().join("LOC_val_solution.csv"), &csv).unwrap();
    let e = open(t.path()).unwrap_err().to_string();
    assert!(e.contains("LOC_synset_mapping.txt"), "{e}");
    synsets(t.path(), "LOC_synset_mapping.txt");
    let d = open(t.path()).unwrap();
    assert_eq!(d.layout(), Layout::KaggleLoc);
    want.sort();
    assert_eq!(names_and_labels(&d), want);
}

#[test]
fn shared_dev_set_reads_the_same_in_both_of_its_layouts() {
    let csv = open(&common::dev_dir()).unwrap();
    assert_eq!(csv.len(), 700);
    let caffe = Dataset::open(
        common::dev_dir(),
        &DatasetOptions {
            layout: Some(Layout::CaffeValTxt),
            synsets: None,
        },
    )
    .unwrap();
    assert_eq!(csv.samples(), caffe.samples());
    assert_eq!(csv.identity(), triage_zoo::DEV_SET_IDENTITY);
    assert_ne!(
        csv.clone().limit(699).identity(),
        triage_zoo::DEV_SET_IDENTITY
    );
}

#[test]
fn shards_partition_in_order() {
    let d = open(&common::dev_dir()).unwrap();
    let mut joined = Vec::new();
    for i in 0..3 {
        let s: Shard = format!("{i}/3").parse().unwrap();
        joined.extend(d.clone().shard(s).samples().to_vec());
    }
    assert_eq!(joined, d.samples());
    assert!("3/3".parse::<Shard>().is_err());
    assert!("x".parse::<Shard>().is_err());
    assert_eq!(d.limit(5).len(), 5);
}

fn caffe_error(lines: &str) -> String {
    let t = tempfile::tempdir().unwrap();
    link(PICKS[0].0, &t.path().join(PICKS[0].3));
    std::fs::write(t.path().join("val.txt"), lines).unwrap();
    let e = open(t.path()).unwrap_err().to_string();
    assert!(e.contains("val.txt"), "{e}");
    e
}

#[test]
fn malformed_indexes_name_file_and_line() {
    let name = PICKS[0].3;
    let e = caffe_error(&format!("{name} 0\nmissing.JPEG 3\n"));
    assert!(e.contains(":2:") && e.contains("missing image"), "{e}");
    let e = caffe_error(&format!("{name} 0\n{name} 0\n"));
    assert!(e.contains(":2:") && e.contains("duplicate"), "{e}");
    let e = caffe_error(&format!("{name} 1000\n"));
    assert!(e.contains(":1:") && e.contains("out of range"), "{e}");
    let e = caffe_error(&format!("{name} cat\n"));
    assert!(e.contains(":1:") && e.contains("not a class index"), "{e}");

    // Unknown wnid in labels.csv.
    let t = tempfile::tempdir().unwrap();
    link(PICKS[0].0, &t.path().join(PICKS[0].3));
    std::fs::write(
        t.path().join("labels.csv"),
        format!("file,label,wnid\n{name},0,n99999999\n"),
    )
    .unwrap();
    synsets(t.path(), "synsets.txt");
    let e = open(t.path()).unwrap_err().to_string();
    assert!(
        e.contains("labels.csv:2:") && e.contains("unknown wnid 'n99999999'"),
        "{e}"
    );
}

#[test]
fn nothing_recognisable_is_an_error() {
    let t = tempfile::tempdir().unwrap();
    let e = open(t.path()).unwrap_err().to_string();
    assert!(e.contains("no dataset layout found"), "{e}");
    let e = open(&PathBuf::from("/nonexistent/dir"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/dir"), "{e}");
}
