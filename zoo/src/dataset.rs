//! Labelled ImageNet-style datasets in every layout a user of ImageNet validation has:
//! `labels.csv`, Caffe `val.txt`, ImageFolder (`val/<wnid>/*.JPEG`) and Kaggle's
//! `LOC_val_solution.csv`. Whatever the layout, a [`Dataset`] is an ordered list of
//! `(path, label)` with labels in the standard sorted-wnid order, sorted by relative path so
//! that shards and limits are the same on every machine.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::hash::sha256_bytes;
use crate::NUM_CLASSES;

/// On-disk layout of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// `labels.csv` with header `file,label[,wnid]`.
    LabelsCsv,
    /// Caffe `val.txt`: `<file> <label>` per line, images beside it or in `images/`.
    CaffeValTxt,
    /// One sub-folder per WordNet id.
    ImageFolder,
    /// Kaggle's `LOC_val_solution.csv` (`ImageId,PredictionString`).
    KaggleLoc,
}

impl Layout {
    pub const NAMES: [&'static str; 4] = ["labels-csv", "caffe", "image-folder", "kaggle"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "labels-csv" | "csv" => Layout::LabelsCsv,
            "caffe" | "val-txt" => Layout::CaffeValTxt,
            "image-folder" | "imagefolder" => Layout::ImageFolder,
            "kaggle" | "loc" => Layout::KaggleLoc,
            _ => return None,
        })
    }
}

/// One labelled image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub path: PathBuf,
    /// Path relative to the dataset root, with `/` separators.
    pub rel: String,
    /// Class index 0..1000 in sorted-wnid order.
    pub label: usize,
}

/// How to open a dataset.
#[derive(Debug, Clone, Default)]
pub struct DatasetOptions {
    /// Force a layout instead of detecting it.
    pub layout: Option<Layout>,
    /// A `synsets.txt`-style file (`<wnid> <names>` per line, class `i` on line `i`).
    pub synsets: Option<PathBuf>,
}

/// A shard `index` of `count`: contiguous, disjoint blocks covering the dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::InvalidArgument(format!("shard '{s}' must be I/N with 0 <= I < N"));
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// The half-open range of items this shard takes out of `len`.
    pub fn range(&self, len: usize) -> std::ops::Range<usize> {
        (self.index * len / self.count)..((self.index + 1) * len / self.count)
    }
}

/// An ordered, labelled image list.
#[derive(Debug, Clone)]
pub struct Dataset {
    root: PathBuf,
    layout: Layout,
    samples: Vec<Sample>,
    /// Class names by index, when a synsets file was found.
    class_names: Option<Vec<String>>,
}

const IMAGE_EXTENSIONS: [&str; 6] = ["jpeg", "jpg", "png", "webp", "bmp", "gif"];

fn is_wnid(s: &str) -> bool {
    s.len() == 9 && s.starts_with('n') && s[1..].bytes().all(|b| b.is_ascii_digit())
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// `wnid -> (index, names)` read from a synsets file.
struct Synsets {
    names: Vec<String>,
    index: HashMap<String, usize>,
}

impl Synsets {
    fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let (mut names, mut index) = (Vec::new(), HashMap::new());
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let (wnid, name) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            if !is_wnid(wnid) {
                return Err(Error::dataset(
                    path,
                    i + 1,
                    format!("'{wnid}' is not a WordNet id"),
                ));
            }
            if index.insert(wnid.to_string(), names.len()).is_some() {
                return Err(Error::dataset(
                    path,
                    i + 1,
                    format!("duplicate wnid {wnid}"),
                ));
            }
            names.push(name.trim().to_string());
        }
        if names.len() != NUM_CLASSES {
            return Err(Error::dataset(
                path,
                0,
                format!("has {} classes, expected {NUM_CLASSES}", names.len()),
            ));
        }
        Ok(Synsets { names, index })
    }

    fn label(&self, wnid: &str, file: &Path, line: usize) -> Result<usize> {
        self.index
            .get(wnid)
            .copied()
            .ok_or_else(|| Error::dataset(file, line, format!("unknown wnid '{wnid}'")))
    }
}

/// First existing synsets file: the explicit one, else well-known names in `dirs`.
fn find_synsets(explicit: Option<&Path>, dirs: &[&Path]) -> Result<Option<Synsets>> {
    if let Some(p) = explicit {
        return Synsets::load(p).map(Some);
    }
    for dir in dirs {
        for name in ["synsets.txt", "LOC_synset_mapping.txt"] {
            let p = dir.join(name);
            if p.is_file() {
                return Synsets::load(&p).map(Some);
            }
        }
    }
    Ok(None)
}

impl Dataset {
    /// Opens a dataset directory (or its index file), detecting the layout unless forced.
    pub fn open(path: impl AsRef<Path>, opts: &DatasetOptions) -> Result<Self> {
        let path = path.as_ref();
        let (root, index_file) = if path.is_file() {
            (
                path.parent().unwrap_or(Path::new(".")).to_path_buf(),
                Some(path.to_path_buf()),
            )
        } else if path.is_dir() {
            (path.to_path_buf(), None)
        } else {
            return Err(Error::dataset(path, 0, "no such dataset file or directory"));
        };
        let layout = match (opts.layout, &index_file) {
            (Some(l), _) => l,
            (None, Some(f)) => match f.file_name().and_then(|n| n.to_str()) {
                Some("LOC_val_solution.csv") => Layout::KaggleLoc,
                Some(n) if n.ends_with(".csv") => Layout::LabelsCsv,
                _ => Layout::CaffeValTxt,
            },
            (None, None) => detect(&root)?,
        };
        let parent = root.parent().unwrap_or(&root).to_path_buf();
        let synsets = find_synsets(opts.synsets.as_deref(), &[&root, &parent])?;
        let file = |default: &str| index_file.clone().unwrap_or_else(|| root.join(default));
        let mut samples = match layout {
            Layout::LabelsCsv => read_labels_csv(&root, &file("labels.csv"), synsets.as_ref())?,
            Layout::CaffeValTxt => read_caffe(&root, &file("val.txt"))?,
            Layout::ImageFolder => read_image_folder(&root, synsets.as_ref())?,
            Layout::KaggleLoc => {
                read_kaggle(&root, &file("LOC_val_solution.csv"), synsets.as_ref())?
            }
        };
        samples.sort_by(|a, b| a.rel.cmp(&b.rel));
        Ok(Dataset {
            root,
            layout,
            samples,
            class_names: synsets.map(|s| s.names),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn class_names(&self) -> Option<&[String]> {
        self.class_names.as_deref()
    }

    /// Keeps the first `n` samples.
    pub fn limit(mut self, n: usize) -> Self {
        self.samples.truncate(n);
        self
    }

    /// Keeps one shard's contiguous block.
    pub fn shard(mut self, shard: Shard) -> Self {
        let r = shard.range(self.samples.len());
        self.samples = self.samples.drain(r).collect();
        self
    }

    /// A digest of the file list: sorted `(file name, label)` pairs, independent of the
    /// layout and of where the dataset lives, so the same images are recognised anywhere.
    pub fn identity(&self) -> String {
        let mut lines: Vec<String> = self
            .samples
            .iter()
            .map(|s| {
                let name = s.rel.rsplit('/').next().unwrap_or(&s.rel);
                format!("{name}\t{}\n", s.label)
            })
            .collect();
        lines.sort();
        sha256_bytes(lines.concat().as_bytes())
    }
}

fn detect(root: &Path) -> Result<Layout> {
    if root.join("LOC_val_solution.csv").is_file() {
        return Ok(Layout::KaggleLoc);
    }
    if root.join("labels.csv").is_file() {
        return Ok(Layout::LabelsCsv);
    }
    if root.join("val.txt").is_file() {
        return Ok(Layout::CaffeValTxt);
    }
    let has_wnid_dirs = std::fs::read_dir(root)
        .map_err(|e| Error::io(root, e))?
        .filter_map(|e| e.ok())
        .any(|e| e.path().is_dir() && e.file_name().to_str().is_some_and(is_wnid));
    if has_wnid_dirs {
        return Ok(Layout::ImageFolder);
    }
    Err(Error::dataset(
        root,
        0,
        "no dataset layout found: expected LOC_val_solution.csv, labels.csv, val.txt or \
         one sub-folder per WordNet id",
    ))
}

fn rel_of(root: &Path, p: &Path) -> String {
    let r = p.strip_prefix(root).unwrap_or(p);
    r.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Tracks duplicates and missing files while rows are read.
struct Collector<'a> {
    root: &'a Path,
    index_file: &'a Path,
    seen: HashMap<PathBuf, usize>,
    samples: Vec<Sample>,
}

impl<'a> Collector<'a> {
    fn new(root: &'a Path, index_file: &'a Path) -> Self {
        Collector {
            root,
            index_file,
            seen: HashMap::new(),
            samples: Vec::new(),
        }
    }

    fn push(&mut self, path: PathBuf, label: usize, line: usize) -> Result<()> {
        if label >= NUM_CLASSES {
            return Err(Error::dataset(
                self.index_file,
                line,
                format!("label {label} out of range 0..{NUM_CLASSES}"),
            ));
        }
        if !path.is_file() {
            return Err(Error::dataset(
                self.index_file,
                line,
                format!("missing image {}", path.display()),
            ));
        }
        if let Some(first) = self.seen.insert(path.clone(), line) {
            return Err(Error::dataset(
                self.index_file,
                line,
                format!(
                    "duplicate row for {} (first on line {first})",
                    path.display()
                ),
            ));
        }
        let rel = rel_of(self.root, &path);
        self.samples.push(Sample { path, rel, label });
        Ok(())
    }
}

fn parse_label(s: &str, file: &Path, line: usize) -> Result<usize> {
    s.trim()
        .parse::<usize>()
        .map_err(|_| Error::dataset(file, line, format!("label '{s}' is not a class index")))
}

fn read_labels_csv(root: &Path, file: &Path, synsets: Option<&Synsets>) -> Result<Vec<Sample>> {
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(file)
        .map_err(|e| Error::dataset(file, 0, e.to_string()))?;
    let headers = rdr
        .headers()
        .map_err(|e| Error::dataset(file, 1, e.to_string()))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(fc), Some(lc)) = (col("file"), col("label")) else {
        return Err(Error::dataset(
            file,
            1,
            "header must name 'file' and 'label' columns",
        ));
    };
    let wc = col("wnid");
    let base = if root.join("images").is_dir() {
        root.join("images")
    } else {
        root.to_path_buf()
    };
    let mut c = Collector::new(root, file);
    for (i, rec) in rdr.records().enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|e| Error::dataset(file, line, e.to_string()))?;
        let name = rec
            .get(fc)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::dataset(file, line, "empty file name"))?;
        let label = parse_label(rec.get(lc).unwrap_or(""), file, line)?;
        if let (Some(wc), Some(syn)) = (wc, synsets) {
            let wnid = rec.get(wc).unwrap_or("");
            let expected = syn.label(wnid, file, line)?;
            if expected != label {
                return Err(Error::dataset(
                    file,
                    line,
                    format!("label {label} disagrees with wnid {wnid} (class {expected})"),
                ));
            }
        }
        let p = if root.join(name).is_file() {
            root.join(name)
        } else {
            base.join(name)
        };
        c.push(p, label, line)?;
    }
    Ok(c.samples)
}

fn read_caffe(root: &Path, file: &Path) -> Result<Vec<Sample>> {
    let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
    let mut c = Collector::new(root, file);
    let images = root.join("images");
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        // The label is the last token: file names may contain spaces.
        let (name, label) = l
            .rsplit_once(char::is_whitespace)
            .ok_or_else(|| Error::dataset(file, line, "expected '<file> <label>'"))?;
        let name = name.trim();
        let label = parse_label(label, file, line)?;
        let beside = root.join(name);
        let p = if beside.is_file() || !images.is_dir() {
            beside
        } else {
            images.join(name)
        };
        c.push(p, label, line)?;
    }
    Ok(c.samples)
}

fn read_image_folder(root: &Path, synsets: Option<&Synsets>) -> Result<Vec<Sample>> {
    let mut class_dirs = BTreeMap::new();
    for e in std::fs::read_dir(root).map_err(|e| Error::io(root, e))? {
        let e = e.map_err(|e| Error::io(root, e))?;
        let name = e.file_name().to_string_lossy().to_string();
        if e.path().is_dir() && is_wnid(&name) {
            class_dirs.insert(name, e.path());
        }
    }
    let sorted: Vec<String> = class_dirs.keys().cloned().collect();
    if synsets.is_none() && sorted.len() != NUM_CLASSES {
        return Err(Error::dataset(
            root,
            0,
            format!(
                "{} class folders: labels from the sorted wnid list need all {NUM_CLASSES}; \
                 pass a synsets.txt for a subset",
                sorted.len()
            ),
        ));
    }
    let mut c = Collector::new(root, root);
    for (pos, (wnid, dir)) in class_dirs.iter().enumerate() {
        let label = match synsets {
            Some(s) => s.label(wnid, dir, 0)?,
            None => pos,
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_image(p))
            .collect();
        files.sort();
        for f in files {
            c.push(f, label, 0)?;
        }
    }
    Ok(c.samples)
}

fn read_kaggle(root: &Path, file: &Path, synsets: Option<&Synsets>) -> Result<Vec<Sample>> {
    let Some(syn) = synsets else {
        return Err(Error::dataset(
            file,
            0,
            "needs LOC_synset_mapping.txt (or synsets.txt) beside it to map wnids to labels",
        ));
    };
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(file)
        .map_err(|e| Error::dataset(file, 0, e.to_string()))?;
    let candidates = [
        root.join("ILSVRC/Data/CLS-LOC/val"),
        root.join("val"),
        root.to_path_buf(),
    ];
    let dir = candidates
        .iter()
        .find(|d| d.is_dir() && d.as_path() != root)
        .unwrap_or(&candidates[2])
        .clone();
    let mut c = Collector::new(root, file);
    let mut seen_ids = HashSet::new();
    for (i, rec) in rdr.records().enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|e| Error::dataset(file, line, e.to_string()))?;
        let id = rec.get(0).unwrap_or("");
        if id.is_empty() {
            return Err(Error::dataset(file, line, "empty ImageId"));
        }
        if !seen_ids.insert(id.to_string()) {
            return Err(Error::dataset(
                file,
                line,
                format!("duplicate ImageId {id}"),
            ));
        }
        let wnid = rec
            .get(1)
            .and_then(|s| s.split_whitespace().next())
            .ok_or_else(|| Error::dataset(file, line, "empty PredictionString"))?;
        let label = syn.label(wnid, file, line)?;
        let p = IMAGE_EXTENSIONS
            .iter()
            .flat_map(|e| [e.to_string(), e.to_ascii_uppercase()])
            .map(|e| dir.join(format!("{id}.{e}")))
            .find(|p| p.is_file())
            .unwrap_or_else(|| dir.join(format!("{id}.JPEG")));
        c.push(p, label, line)?;
    }
    Ok(c.samples)
}
