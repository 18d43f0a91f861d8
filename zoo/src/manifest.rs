//! `zoo.toml`: the machine-readable index of a model zoo.
//!
//! Parsing is two-stage (TOML value first, then one typed model table at a time) so that every
//! error names the model it is about, and validation is explicit so that a zoo that would
//! silently mis-preprocess images (a wrong mean length, a crop larger than the resize) is
//! rejected before any model is loaded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::NUM_CLASSES;

/// The only `schema_version` this crate understands.
pub const SCHEMA_VERSION: i64 = 1;

/// Resampling filter used when resizing to `resize_shorter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resample {
    Nearest,
    /// Box filter (area averaging).
    Box,
    /// Triangle filter, antialiased when downscaling (Pillow's `BILINEAR`).
    Bilinear,
    /// Catmull-Rom cubic, a = -0.5 (Pillow's `BICUBIC`).
    Bicubic,
    /// Lanczos with a = 3 (Pillow's `LANCZOS`).
    Lanczos,
}

impl Resample {
    /// Every name accepted in `zoo.toml`.
    pub const NAMES: [&'static str; 5] = ["nearest", "box", "bilinear", "bicubic", "lanczos"];

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "nearest" => Resample::Nearest,
            "box" => Resample::Box,
            "bilinear" | "triangle" => Resample::Bilinear,
            "bicubic" | "catmullrom" => Resample::Bicubic,
            "lanczos" | "lanczos3" => Resample::Lanczos,
            _ => return None,
        })
    }
}

/// How one variant wants its input prepared.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Preprocessing {
    /// Side of the square network input, `S`.
    pub input_size: u32,
    /// The image is resized (aspect kept) so that its shorter side is this long...
    pub resize_shorter: u32,
    /// ...then the central `S x S` crop is taken.
    pub resample: Resample,
    /// Per RGB channel: `x = (pixel - mean) / std`, pixel in 0..=255.
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// One `[[model]]` table, validated.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub name: String,
    /// Absolute path of the ONNX file.
    pub path: PathBuf,
    pub family: String,
    pub description: String,
    pub input_name: String,
    pub output_name: String,
    pub preprocessing: Preprocessing,
    /// Number of network outputs (1001 for the MobileNets, background first).
    pub num_outputs: usize,
    /// Output index of ImageNet class 0.
    pub label_offset: usize,
    pub macs: u64,
    pub params: u64,
    pub file_size_bytes: u64,
    /// Lower-case hex sha256 of the ONNX file.
    pub sha256: String,
    /// Reference top-1 / top-5 on the zoo's evaluation set, fractions.
    pub top1_ref: f64,
    pub top5_ref: f64,
}

/// A parsed and validated `zoo.toml`.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Path of the `zoo.toml` itself.
    pub path: PathBuf,
    pub labels_file: PathBuf,
    /// Description of the set the reference accuracies were measured on.
    pub eval_set: String,
    pub models: Vec<ModelSpec>,
}

#[derive(Deserialize)]
struct RawModel {
    name: String,
    file: String,
    #[serde(default)]
    family: String,
    #[serde(default)]
    variant: String,
    #[serde(default = "default_input_name")]
    input_name: String,
    #[serde(default = "default_dtype")]
    input_dtype: String,
    input_shape: Vec<i64>,
    input_layout: String,
    input_size: i64,
    channel_order: String,
    mean: Vec<f64>,
    std: Vec<f64>,
    resize_shorter: i64,
    crop_fraction: f64,
    resample: String,
    #[serde(default = "default_output_name")]
    output_name: String,
    #[serde(default = "default_output_kind")]
    output_kind: String,
    num_classes: i64,
    label_offset: i64,
    macs: i64,
    #[serde(default)]
    params: i64,
    file_size_bytes: i64,
    sha256: String,
    top1_dev: f64,
    top5_dev: f64,
    #[serde(flatten)]
    _rest: BTreeMap<String, toml::Value>,
}

fn default_input_name() -> String {
    "input".into()
}
fn default_output_name() -> String {
    "logits".into()
}
fn default_output_kind() -> String {
    "logits".into()
}
fn default_dtype() -> String {
    "float32".into()
}

impl Manifest {
    /// Reads and validates `zoo.toml` (or a directory containing one).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let mut path = path.as_ref().to_path_buf();
        if path.is_dir() {
            path = path.join("zoo.toml");
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        Self::parse(&text, &path)
    }

    /// Parses manifest text; `path` locates the model files and names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let root: toml::Table = toml::from_str(text).map_err(|e| Error::ManifestSyntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let err = |context: &str, message: String| Error::Manifest {
            path: path.to_path_buf(),
            context: context.to_string(),
            message,
        };

        match root.get("schema_version") {
            Some(toml::Value::Integer(SCHEMA_VERSION)) => {}
            Some(toml::Value::Integer(v)) => {
                return Err(err(
                    "schema_version",
                    format!("is {v}, this build reads version {SCHEMA_VERSION}"),
                ))
            }
            Some(_) => return Err(err("schema_version", "must be an integer".into())),
            None => return Err(err("schema_version", "missing".into())),
        }
        let labels_file = match root.get("labels_file") {
            Some(toml::Value::String(s)) => {
                relative_file(s).map_err(|m| err("labels_file", m))?;
                dir.join(s)
            }
            Some(_) => return Err(err("labels_file", "must be a string".into())),
            None => return Err(err("labels_file", "missing".into())),
        };
        let eval_set = match root.get("eval_set") {
            Some(toml::Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        let tables = match root.get("model") {
            Some(toml::Value::Array(a)) if !a.is_empty() => a,
            Some(toml::Value::Array(_)) | None => {
                return Err(err("model", "no [[model]] tables".into()))
            }
            Some(_) => return Err(err("model", "must be an array of tables".into())),
        };

        let mut models = Vec::with_capacity(tables.len());
        let mut names = BTreeSet::new();
        for (i, value) in tables.iter().enumerate() {
            let label = match value.get("name").and_then(|v| v.as_str()) {
                Some(n) => format!("model '{n}'"),
                None => format!("model #{}", i + 1),
            };
            let raw: RawModel = value
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| err(&label, e.message().to_string()))?;
            let spec = validate_model(raw, &dir).map_err(|(field, m)| {
                err(
                    &if field.is_empty() {
                        label.clone()
                    } else {
                        format!("{label}: {field}")
                    },
                    m,
                )
            })?;
            if !names.insert(spec.name.clone()) {
                return Err(err(&label, "duplicate model name".into()));
            }
            models.push(spec);
        }
        Ok(Manifest {
            path: path.to_path_buf(),
            labels_file,
            eval_set,
            models,
        })
    }
}

fn relative_file(s: &str) -> std::result::Result<(), String> {
    let p = Path::new(s);
    if s.is_empty() {
        return Err("is empty".into());
    }
    if p.components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!("'{s}' must be a path inside the zoo directory"));
    }
    Ok(())
}

type FieldError = (&'static str, String);

fn positive_u32(field: &'static str, v: i64) -> std::result::Result<u32, FieldError> {
    u32::try_from(v)
        .ok()
        .filter(|&v| v > 0)
        .ok_or((field, format!("must be a positive integer, got {v}")))
}

fn channel_triple(
    field: &'static str,
    values: &[f64],
    positive: bool,
) -> std::result::Result<[f32; 3], FieldError> {
    if values.len() != 3 {
        return Err((
            field,
            format!("has {} values, expected 3 (R, G, B)", values.len()),
        ));
    }
    let mut out = [0f32; 3];
    for (o, &v) in out.iter_mut().zip(values) {
        if !v.is_finite() || (positive && v <= 0.0) {
            return Err((
                field,
                format!(
                    "value {v} is not a {}finite number",
                    if positive { "positive " } else { "" }
                ),
            ));
        }
        *o = v as f32;
    }
    Ok(out)
}

fn validate_model(raw: RawModel, dir: &Path) -> std::result::Result<ModelSpec, FieldError> {
    if raw.name.is_empty()
        || !raw
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err((
            "name",
            format!("'{}' must be non-empty [A-Za-z0-9_.-]", raw.name),
        ));
    }
    relative_file(&raw.file).map_err(|m| ("file", m))?;
    if raw.input_dtype != "float32" {
        return Err((
            "input_dtype",
            format!("'{}' is not supported (float32 only)", raw.input_dtype),
        ));
    }
    if raw.input_layout != "NCHW" {
        return Err((
            "input_layout",
            format!("'{}' is not supported (NCHW only)", raw.input_layout),
        ));
    }
    if raw.channel_order != "RGB" {
        return Err((
            "channel_order",
            format!("'{}' is not supported (RGB only)", raw.channel_order),
        ));
    }
    let size = positive_u32("input_size", raw.input_size)?;
    let s = i64::from(size);
    if raw.input_shape != [1, 3, s, s] {
        return Err((
            "input_shape",
            format!(
                "{:?} does not match [1, 3, input_size, input_size] = [1, 3, {s}, {s}]",
                raw.input_shape
            ),
        ));
    }
    let resize_shorter = positive_u32("resize_shorter", raw.resize_shorter)?;
    if resize_shorter < size {
        return Err((
            "resize_shorter",
            format!("{resize_shorter} is smaller than input_size {size}: the crop would not fit"),
        ));
    }
    if !(raw.crop_fraction > 0.0 && raw.crop_fraction <= 1.0) {
        return Err((
            "crop_fraction",
            format!("{} must be in (0, 1]", raw.crop_fraction),
        ));
    }
    let implied = f64::from(size) / f64::from(resize_shorter);
    if (implied - raw.crop_fraction).abs() > 0.01 {
        return Err((
            "crop_fraction",
            format!(
                "{} disagrees with input_size / resize_shorter = {implied:.4}",
                raw.crop_fraction
            ),
        ));
    }
    let resample = Resample::parse(&raw.resample).ok_or((
        "resample",
        format!(
            "unknown filter '{}' (known: {})",
            raw.resample,
            Resample::NAMES.join(", ")
        ),
    ))?;
    let mean = channel_triple("mean", &raw.mean, false)?;
    let std = channel_triple("std", &raw.std, true)?;
    if raw.output_kind != "logits" {
        return Err((
            "output_kind",
            format!("'{}' is not supported (logits only)", raw.output_kind),
        ));
    }
    let num_outputs = usize::try_from(raw.num_classes)
        .map_err(|_| ("num_classes", format!("{} is negative", raw.num_classes)))?;
    let label_offset = usize::try_from(raw.label_offset)
        .map_err(|_| ("label_offset", format!("{} is negative", raw.label_offset)))?;
    if label_offset + NUM_CLASSES != num_outputs {
        return Err((
            "label_offset",
            format!(
                "label_offset {label_offset} + {NUM_CLASSES} ImageNet classes != num_classes {num_outputs}"
            ),
        ));
    }
    let macs = u64::try_from(raw.macs)
        .ok()
        .filter(|&m| m > 0)
        .ok_or(("macs", format!("{} must be positive", raw.macs)))?;
    let params =
        u64::try_from(raw.params).map_err(|_| ("params", format!("{} is negative", raw.params)))?;
    let file_size_bytes = u64::try_from(raw.file_size_bytes)
        .ok()
        .filter(|&m| m > 0)
        .ok_or((
            "file_size_bytes",
            format!("{} must be positive", raw.file_size_bytes),
        ))?;
    let sha256 = raw.sha256.to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(("sha256", format!("'{}' is not 64 hex digits", raw.sha256)));
    }
    for (field, v) in [("top1_dev", raw.top1_dev), ("top5_dev", raw.top5_dev)] {
        if !(0.0..=1.0).contains(&v) {
            return Err((field, format!("{v} is not a fraction in [0, 1]")));
        }
    }
    if raw.top5_dev + 1e-9 < raw.top1_dev {
        return Err((
            "top5_dev",
            format!("{} is below top1_dev {}", raw.top5_dev, raw.top1_dev),
        ));
    }
    Ok(ModelSpec {
        path: dir.join(&raw.file),
        name: raw.name,
        family: raw.family,
        description: raw.variant,
        input_name: raw.input_name,
        output_name: raw.output_name,
        preprocessing: Preprocessing {
            input_size: size,
            resize_shorter,
            resample,
            mean,
            std,
        },
        num_outputs,
        label_offset,
        macs,
        params,
        file_size_bytes,
        sha256,
        top1_ref: raw.top1_dev,
        top5_ref: raw.top5_dev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
schema_version = 1
labels_file = "labels.txt"
[[model]]
name = "m"
file = "m.onnx"
input_shape = [1, 3, 128, 128]
input_layout = "NCHW"
input_size = 128
channel_order = "RGB"
mean = [128.0, 128.0, 128.0]
std = [128.0, 128.0, 128.0]
resize_shorter = 146
crop_fraction = 0.875
resample = "bilinear"
num_classes = 1001
label_offset = 1
macs = 100
file_size_bytes = 10
sha256 = "60c2c6da648b25fd6f6042353403a244ab24603275acce3447318955c5c45a1f"
top1_dev = 0.45
top5_dev = 0.71
"#;

    fn parse(text: &str) -> Result<Manifest> {
        Manifest::parse(text, Path::new("/zoo/zoo.toml"))
    }

    fn replace(line_start: &str, with: &str) -> String {
        GOOD.lines()
            .map(|l| {
                if l.starts_with(line_start) {
                    with.to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn good_manifest_parses() {
        let m = parse(GOOD).unwrap();
        assert_eq!(m.models.len(), 1);
        let spec = &m.models[0];
        assert_eq!(spec.path, Path::new("/zoo/m.onnx"));
        assert_eq!(spec.preprocessing.resample, Resample::Bilinear);
        assert_eq!(spec.label_offset, 1);
        assert_eq!(m.labels_file, Path::new("/zoo/labels.txt"));
    }

    fn expect_err(text: &str, needles: &[&str]) {
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains("/zoo/zoo.toml"), "{e}");
        for n in needles {
            assert!(e.contains(n), "'{e}' lacks '{n}'");
        }
    }

    #[test]
    fn each_bad_field_is_named() {
        expect_err(
            &replace("schema_version", "schema_version = 2"),
            &["schema_version", "2"],
        );
        expect_err(
            &replace("schema_version", ""),
            &["schema_version", "missing"],
        );
        expect_err(
            &replace("mean", "mean = [1.0, 2.0]"),
            &["model 'm'", "mean", "2 values"],
        );
        expect_err(
            &replace("std", "std = [1.0, 0.0, 1.0]"),
            &["std", "positive"],
        );
        expect_err(&replace("sha256", ""), &["model 'm'", "sha256"]);
        expect_err(
            &replace("sha256", "sha256 = \"abc\""),
            &["sha256", "64 hex"],
        );
        expect_err(
            &replace("resample", "resample = \"sinc\""),
            &["resample", "sinc", "bicubic"],
        );
        expect_err(
            &replace("label_offset", "label_offset = 0"),
            &["label_offset", "1001"],
        );
        expect_err(
            &replace("input_shape", "input_shape = [1, 3, 128, 127]"),
            &["input_shape"],
        );
        expect_err(
            &replace("resize_shorter", "resize_shorter = 100"),
            &["resize_shorter"],
        );
        expect_err(
            &replace("crop_fraction", "crop_fraction = 0.5"),
            &["crop_fraction"],
        );
        expect_err(
            &replace("file =", "file = \"../m.onnx\""),
            &["file", "inside"],
        );
        expect_err(
            &replace("top1_dev", "top1_dev = 45.0"),
            &["top1_dev", "fraction"],
        );
        expect_err("schema_version = 1\nlabels_file = \"l\"\n", &["[[model]]"]);
        expect_err("schema_version = [", &["not valid TOML"]);
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let body = GOOD.split_once("[[model]]").unwrap().1;
        let text = format!("{GOOD}\n[[model]]{body}");
        expect_err(&text, &["duplicate"]);
    }
}
