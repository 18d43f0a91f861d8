//! The catalogue: every variant of a zoo directory, loaded lazily and at most once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::decode::{DecodeOptions, DecodedImage};
use crate::engine::{Backend, Engine, EngineOptions};
use crate::error::{Error, Result};
use crate::hash::{sha256_bytes, verify_sha256};
use crate::logits::{ClassNames, Logits};
use crate::manifest::{Manifest, ModelSpec};
use crate::preprocess::{prepare, PreparedInput};

/// One network of the zoo. Cheap to hold; the model is verified and loaded on first use.
pub struct Variant {
    spec: ModelSpec,
    options: Arc<EngineOptions>,
    engine: OnceLock<Arc<dyn Engine>>,
    load_time: OnceLock<Duration>,
    loading: Mutex<()>,
}

impl std::fmt::Debug for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Variant")
            .field("name", &self.spec.name)
            .field("loaded", &self.engine.get().is_some())
            .finish()
    }
}

impl Variant {
    fn new(spec: ModelSpec, options: Arc<EngineOptions>) -> Self {
        Variant {
            spec,
            options,
            engine: OnceLock::new(),
            load_time: OnceLock::new(),
            loading: Mutex::new(()),
        }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Multiply-accumulates of one inference (Conv and Gemm nodes).
    pub fn macs(&self) -> u64 {
        self.spec.macs
    }

    /// Side `S` of the square input.
    pub fn input_size(&self) -> u32 {
        self.spec.preprocessing.input_size
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The backend [`Variant::load`] uses.
    pub fn backend(&self) -> Backend {
        self.options.backend
    }

    pub fn is_loaded(&self) -> bool {
        self.engine.get().is_some()
    }

    /// Wall time of the sha256 check plus load and optimization, once loaded.
    pub fn load_time(&self) -> Option<Duration> {
        self.load_time.get().copied()
    }

    /// Verifies the file's sha256 and loads the model, once; later calls return at once.
    /// Concurrent first calls wait for the one load instead of loading twice.
    pub fn load(&self) -> Result<&dyn Engine> {
        if let Some(e) = self.engine.get() {
            return Ok(e.as_ref());
        }
        let _guard = self.loading.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = self.engine.get() {
            return Ok(e.as_ref());
        }
        let start = Instant::now();
        verify_sha256(&self.spec.path, &self.spec.sha256)?;
        let engine = self.load_engine(&self.options)?;
        let elapsed = start.elapsed();
        tracing::debug!(
            variant = %self.spec.name,
            backend = %self.options.backend,
            ms = elapsed.as_secs_f64() * 1e3,
            "loaded"
        );
        let _ = self.load_time.set(elapsed);
        Ok(self.engine.get_or_init(|| Arc::from(engine)).as_ref())
    }

    /// A fresh engine for this variant with any options, not cached and without the sha256
    /// check: for comparing backends side by side.
    pub fn load_engine(&self, options: &EngineOptions) -> Result<Box<dyn Engine>> {
        options.load(&self.spec.name, &self.spec.path, self.input_size())
    }

    /// Checks the model file's sha256 against the manifest.
    pub fn verify(&self) -> Result<()> {
        verify_sha256(&self.spec.path, &self.spec.sha256)
    }

    /// Drops the loaded model (it is loaded again on next use). Needs exclusive access, so
    /// no inference can be running.
    pub fn unload(&mut self) {
        self.engine = OnceLock::new();
        self.load_time = OnceLock::new();
    }

    /// This variant's input for a decoded image.
    pub fn prepare(&self, img: &DecodedImage) -> Result<PreparedInput> {
        prepare(img, &self.spec.preprocessing)
    }

    /// Runs the network on a prepared input and maps its output to the 1000 classes.
    pub fn run(&self, input: &PreparedInput) -> Result<Logits> {
        if input.size() != self.input_size() {
            return Err(Error::InputMismatch {
                variant: self.spec.name.clone(),
                got: input.size(),
                want: self.input_size(),
            });
        }
        self.logits_from(self.load()?.run(input.as_slice())?)
    }

    /// Maps a raw network output of this variant (from any of its engines) to the 1000
    /// classes, checking its length against the manifest.
    pub fn logits_from(&self, out: Vec<f32>) -> Result<Logits> {
        if out.len() != self.spec.num_outputs {
            return Err(Error::Inference {
                variant: self.spec.name.clone(),
                message: format!(
                    "model returned {} outputs, zoo.toml says num_classes = {}",
                    out.len(),
                    self.spec.num_outputs
                ),
            });
        }
        Logits::from_network_output(&out, self.spec.label_offset).ok_or_else(|| Error::Inference {
            variant: self.spec.name.clone(),
            message: "output shorter than label_offset + 1000".into(),
        })
    }

    /// Prepares and runs in one call.
    pub fn classify(&self, img: &DecodedImage) -> Result<Logits> {
        self.run(&self.prepare(img)?)
    }
}

static DEFAULT_OPTIONS: EngineOptions = EngineOptions {
    backend: Backend::Tract,
    intra_op_threads: 1,
    ort_library: None,
};

/// A model zoo directory: its manifest, class names and variants (cheapest first, as listed).
#[derive(Debug)]
pub struct Zoo {
    dir: PathBuf,
    manifest: Manifest,
    classes: ClassNames,
    variants: Vec<Variant>,
}

impl Zoo {
    /// Opens a zoo directory (or its `zoo.toml`): parses and validates the manifest, reads the
    /// class names and checks that every model file exists with the listed size. Hashes are
    /// checked when a model is loaded, or all at once by [`Zoo::verify`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, EngineOptions::default())
    }

    /// [`Zoo::open`], with every variant loaded by an engine built with `options`.
    pub fn open_with(path: impl AsRef<Path>, options: EngineOptions) -> Result<Self> {
        let manifest = Manifest::load(path.as_ref())?;
        let dir = manifest
            .path
            .parent()
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let classes = ClassNames::load(&manifest.labels_file)?;
        for spec in &manifest.models {
            let meta = std::fs::metadata(&spec.path).map_err(|e| Error::io(&spec.path, e))?;
            if meta.len() != spec.file_size_bytes {
                return Err(Error::Manifest {
                    path: manifest.path.clone(),
                    context: format!("model '{}': file_size_bytes", spec.name),
                    message: format!(
                        "says {} but {} has {} bytes",
                        spec.file_size_bytes,
                        spec.path.display(),
                        meta.len()
                    ),
                });
            }
        }
        let options = Arc::new(options);
        let variants = manifest
            .models
            .iter()
            .cloned()
            .map(|m| Variant::new(m, Arc::clone(&options)))
            .collect();
        Ok(Zoo {
            dir,
            manifest,
            classes,
            variants,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn classes(&self) -> &ClassNames {
        &self.classes
    }

    /// How this zoo's variants are loaded.
    pub fn engine_options(&self) -> &EngineOptions {
        self.variants
            .first()
            .map_or(&DEFAULT_OPTIONS, |v| v.options.as_ref())
    }

    pub fn variants(&self) -> &[Variant] {
        &self.variants
    }

    pub fn variants_mut(&mut self) -> &mut [Variant] {
        &mut self.variants
    }

    pub fn variant(&self, name: &str) -> Result<&Variant> {
        self.variants
            .iter()
            .find(|v| v.name() == name)
            .ok_or_else(|| Error::UnknownVariant(name.to_string()))
    }

    /// Checks every model file's sha256 against the manifest.
    pub fn verify(&self) -> Vec<(String, Result<()>)> {
        self.variants
            .iter()
            .map(|v| {
                (
                    v.name().to_string(),
                    verify_sha256(&v.spec.path, &v.spec.sha256),
                )
            })
            .collect()
    }

    /// One digest naming this exact set of models and their preprocessing (the listed
    /// sha256s, which are verified at load), for provenance.
    pub fn fingerprint(&self) -> String {
        let mut s = String::new();
        for v in &self.variants {
            s.push_str(&format!(
                "{} {} {:?}\n",
                v.name(),
                v.spec.sha256,
                v.spec.preprocessing
            ));
        }
        sha256_bytes(s.as_bytes())
    }

    /// Decode options under which one decode serves every given variant: JPEGs are decoded at
    /// the largest reduction that keeps the shorter side at least the largest `resize_shorter`.
    pub fn decode_options_for<'a>(
        variants: impl IntoIterator<Item = &'a Variant>,
        base: DecodeOptions,
    ) -> DecodeOptions {
        let need = variants
            .into_iter()
            .map(|v| v.spec.preprocessing.resize_shorter)
            .max();
        DecodeOptions {
            min_shorter_side: need,
            ..base
        }
    }
}
