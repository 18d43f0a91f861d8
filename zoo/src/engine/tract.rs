//! `tract-onnx`: the ONNX graph with its input fixed to `[1, 3, S, S]` (every shape in the
//! graph becomes concrete, so the optimizer picks shape-specialized kernels), decluttered and
//! optimized once at load; one session state and one input tensor per concurrent caller,
//! reused call after call.

use std::path::Path;
use std::sync::Arc;

use tract_onnx::prelude::*;

use super::pool::Pool;
use super::{check_input_len, simd, Engine};
use crate::error::{Error, Result};

/// What one caller reuses between calls: tract's per-run state (op states, value table) and
/// the input tensor, written in place when nothing else holds it.
struct Slot {
    state: TypedSimpleState,
    input: Arc<Tensor>,
}

/// `tract-onnx`, optimized at load, single-threaded per call.
pub struct TractEngine {
    name: String,
    size: usize,
    plan: Arc<TypedSimplePlan>,
    slots: Pool<Slot>,
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
        let first = Self::new_slot(&plan, s).map_err(err)?;
        Ok(TractEngine {
            name: name.to_string(),
            size: s,
            plan,
            slots: Pool::with(first),
        })
    }

    fn new_slot(plan: &Arc<TypedSimplePlan>, s: usize) -> TractResult<Slot> {
        Ok(Slot {
            state: plan.spawn()?,
            input: Arc::new(Tensor::zero::<f32>(&[1, 3, s, s])?),
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> Error {
        Error::Inference {
            variant: self.name.clone(),
            message: e.to_string(),
        }
    }

    fn run_slot(&self, slot: &mut Slot, input: &[f32]) -> TractResult<Vec<f32>> {
        // The previous run dropped every reference to the input, so it is written in place;
        // should anything still hold it, a fresh tensor takes its place.
        if Arc::get_mut(&mut slot.input).is_none() {
            slot.input = Arc::new(Tensor::zero::<f32>(&[1, 3, self.size, self.size])?);
        }
        if let Some(t) = Arc::get_mut(&mut slot.input) {
            t.try_as_plain_ram_mut()?
                .as_slice_mut::<f32>()?
                .copy_from_slice(input);
        }
        let outputs = slot
            .state
            .run(tvec!(Arc::clone(&slot.input).into_tvalue()))?;
        let out = outputs
            .first()
            .ok_or_else(|| TractError::msg("the model produced no output"))?;
        let plain = out.try_as_plain_ram()?;
        Ok(plain.as_slice::<f32>()?.to_vec())
    }
}

impl Engine for TractEngine {
    fn run(&self, input: &[f32]) -> Result<Vec<f32>> {
        check_input_len(&self.name, self.size, input)?;
        let out = self.slots.with_state(
            || Self::new_slot(&self.plan, self.size),
            |slot| self.run_slot(slot, input),
        );
        // tract's AVX-512 kernels return with the upper register halves dirty, which slows
        // every later floating-point instruction on this thread (see `simd`).
        simd::clear_upper_state();
        out.map_err(|e| self.err(format!("{e:#}")))
    }

    fn backend(&self) -> &'static str {
        "tract"
    }
}
