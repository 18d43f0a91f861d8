//! Inference backends behind one trait, so that the rest of Triage never names tract.

use std::path::Path;
use std::sync::Arc;

use tract_onnx::prelude::*;

use crate::error::{Error, Result};

/// One loaded network, ready to run single images. Implementations are shared across
/// threads: `run` takes `&self` and keeps any per-call state local.
pub trait Engine: Send + Sync {
    /// Runs one `[1, 3, S, S]` f32 input and returns the raw network output.
    fn run(&self, input: &[f32]) -> Result<Vec<f32>>;
    /// Short backend name recorded with measurements ("tract", ...).
    fn backend(&self) -> &'static str;
}

/// `tract-onnx`, optimized at load, single-threaded per call.
pub struct TractEngine {
    name: String,
    size: usize,
    plan: Arc<TypedSimplePlan>,
}

impl TractEngine {
    /// Loads and optimizes an ONNX file whose input is `[1, 3, size, size]`.
    pub fn load(name: &str, path: &Path, size: u32) -> Result<Self> {
        let err = |e: TractError| Error::ModelLoad {
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        };
        let s = size as usize;
        let plan = tract_onnx::onnx()
            .model_for_path(path)
            .and_then(|m| m.with_input_fact(0, f32::fact([1, 3, s, s]).into()))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(err)?;
        Ok(TractEngine {
            name: name.to_string(),
            size: s,
            plan,
        })
    }
}

impl Engine for TractEngine {
    fn run(&self, input: &[f32]) -> Result<Vec<f32>> {
        let err = |message: String| Error::Inference {
            variant: self.name.clone(),
            message,
        };
        let tensor = Tensor::from_shape(&[1, 3, self.size, self.size], input)
            .map_err(|e| err(format!("{e:#}")))?;
        let outputs = self
            .plan
            .run(tvec!(tensor.into()))
            .map_err(|e| err(format!("{e:#}")))?;
        let out = outputs
            .first()
            .ok_or_else(|| err("the model produced no output".into()))?;
        let plain = out.try_as_plain_ram().map_err(|e| err(format!("{e:#}")))?;
        let values = plain
            .as_slice::<f32>()
            .map_err(|e| err(format!("output is not f32: {e:#}")))?;
        Ok(values.to_vec())
    }

    fn backend(&self) -> &'static str {
        "tract"
    }
}
