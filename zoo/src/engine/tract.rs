//! `tract-onnx`: the ONNX graph with its input fixed to `[1, 3, S, S]` (every shape in the
//! graph becomes concrete, so the optimizer picks shape-specialized kernels), rewritten to run
//! channel-last, decluttered and optimized once at load; one session state and one input
//! tensor per concurrent caller, reused call after call.
//!
//! The rewrite ([`Graph::ChannelLast`], the default): every depthwise convolution becomes a
//! [`ChannelLastDepthwise`](super::depthwise::ChannelLastDepthwise), the stem convolution on
//! the image's three channels a [`PlanarStem`](super::stem::PlanarStem), tract's `conv_nhwc`
//! transform moves the other convolutions channel-last, declutter cancels the axis moves
//! between neighbours, and the ReLU6 after each of Triage's convolutions is folded into it.
//! The pointwise convolutions stay tract's matrix products (with their activations fused by
//! tract). [`Graph::AsImported`] runs the `NCHW` graph as tract imports it, the baseline
//! `triage bench` compares against.

use std::path::Path;
use std::sync::Arc;

use tract_onnx::prelude::*;

use super::lanes::Isa;
use super::pool::Pool;
use super::{check_input_len, simd, Engine};
use super::{conv, depthwise, stem};
use crate::error::{Error, Result};

/// What one caller reuses between calls: tract's per-run state (op states, value table) and
/// the input tensor, written in place when nothing else holds it.
struct Slot {
    state: TypedSimpleState,
    input: Arc<Tensor>,
}

/// How the ONNX graph is prepared for tract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Graph {
    /// Channel-last, with Triage's depthwise kernel (see the module documentation).
    #[default]
    ChannelLast,
    /// The `NCHW` graph as tract imports it, with tract's own kernels.
    AsImported,
}

/// `tract-onnx`, optimized at load, single-threaded per call.
pub struct TractEngine {
    name: String,
    graph: Graph,
    size: usize,
    plan: Arc<TypedSimplePlan>,
    slots: Pool<Slot>,
}

impl TractEngine {
    /// Loads and optimizes an ONNX file whose input is `[1, 3, size, size]`, channel-last.
    pub fn load(name: &str, path: &Path, size: u32) -> Result<Self> {
        Self::load_graph(name, path, size, Graph::default())
    }

    /// Loads an ONNX file whose input is `[1, 3, size, size]`, prepared as `graph` says.
    pub fn load_graph(name: &str, path: &Path, size: u32, graph: Graph) -> Result<Self> {
        let err = |e: TractError| Error::ModelLoad {
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        };
        let s = size as usize;
        let plan = tract_onnx::onnx()
            .model_for_path(path)
            .and_then(|m| m.with_input_fact(0, f32::fact([1, 3, s, s]).into()))
            .and_then(|m| m.into_typed())
            .and_then(|m| m.into_decluttered())
            .and_then(|m| match graph {
                Graph::ChannelLast => channel_last(m),
                Graph::AsImported => Ok(m),
            })
            // Both graphs are decluttered by now: only codegen is left.
            .and_then(|mut m| m.optimize().map(|()| m))
            .and_then(|m| m.into_runnable())
            .map_err(err)?;
        let first = Self::new_slot(&plan, s).map_err(err)?;
        Ok(TractEngine {
            name: name.to_string(),
            graph,
            size: s,
            plan,
            slots: Pool::with(first),
        })
    }

    /// How many nodes of each operator the optimized graph has, by tract's operator name
    /// (`ChannelLastDepthwise`, `PlanarStem`, `OptMatMul`, ...): what the load-time rewrite left.
    pub fn op_counts(&self) -> std::collections::BTreeMap<String, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for node in &self.plan.model().nodes {
            *counts.entry(node.op.name().to_string()).or_insert(0) += 1;
        }
        counts
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
        match self.graph {
            Graph::ChannelLast => super::Backend::Tract.name(),
            Graph::AsImported => super::Backend::TractNchw.name(),
        }
    }
}

/// Rewrites a decluttered model to run channel-last (see the module documentation).
fn channel_last(mut model: TypedModel) -> TractResult<TypedModel> {
    let isa = Isa::detect();
    let depthwise = depthwise::lower(&mut model, isa)?;
    let stems = stem::lower(&mut model, isa)?;
    let nhwc = tract_onnx::tract_core::transform::get_transform("conv_nhwc")?
        .ok_or_else(|| TractError::msg("tract has no conv_nhwc transform"))?;
    model.transform(&*nhwc)?;
    model.declutter()?;
    let clips = conv::fuse_clips::<depthwise::Geometry>(&mut model)?
        + conv::fuse_clips::<stem::Geometry>(&mut model)?;
    tracing::debug!(depthwise, stems, clips, ?isa, "channel-last graph");
    Ok(model)
}
