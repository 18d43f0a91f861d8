//! What Triage's convolution ops share: the tract operator [`ConvOp`] around a kernel,
//! recognizing a tract `Conv` a kernel can take over, the tap-major weight layout the kernels
//! read, folding the activation that follows into them, and the loop over output pixels.

use std::fmt::Debug;
use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cnn::conv::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::cnn::PoolSpec;
use tract_onnx::tract_core::ops::nn::DataFormat;

use super::lanes::{st, Clip, Isa, Lanes, Portable, Row, Window};

/// The shape side of a kernel: sizes, buffer lengths, and the call into its code.
pub trait Shape: Debug + Clone + Copy + PartialEq + Eq + Send + Sync + 'static {
    /// The operator's name in tract's graph dumps.
    const NAME: &'static str;
    fn batches(&self) -> usize;
    fn window(&self) -> &Window;
    fn output_channels(&self) -> usize;
    /// Taps per output value; the weights are `[taps, output_channels]`.
    fn taps(&self) -> usize;
    /// The input tensor's shape for one batch item.
    fn item_input_shape(&self) -> TVec<usize>;
    /// Output channels `cb..cb + lanes` of pixel `(oy, ox)` of batch item `n`, its taps
    /// clipped to the input. `lanes` is `L::N` unless `PART`.
    ///
    /// # Safety
    /// `job`'s buffers cover this geometry, the CPU has `L`'s instruction set, `n <
    /// batches()`, `oy < window().oh`, `row == window().row(oy)`, `ox < window().ow`,
    /// `cb + lanes <= output_channels()`.
    unsafe fn one<L: Lanes, const PART: bool>(&self, job: &Job, at: Pixel, cb: usize, lanes: usize);
    /// The same channels of pixels `ox..ox + 4` of row `oy`, all taps inside the input.
    ///
    /// # Safety
    /// As for `one`, and `ox..ox + 4` lies inside `window().interior_columns()`.
    unsafe fn four<L: Lanes, const PART: bool>(
        &self,
        job: &Job,
        at: Pixel,
        cb: usize,
        lanes: usize,
    );
}

/// Where in the output a kernel call writes: batch item `n`, row `oy` (with the kernel rows
/// that fall inside the input) and column `ox`.
#[derive(Debug, Clone, Copy)]
pub struct Pixel {
    pub n: usize,
    pub oy: usize,
    pub row: Row,
    pub ox: usize,
}

/// The buffers of one convolution call and the activation to apply: input, tap-major weights,
/// bias and output.
pub struct Job {
    pub clip: Clip,
    pub x: *const f32,
    pub w: *const f32,
    pub b: *const f32,
    pub y: *mut f32,
}

impl Job {
    /// Batch item `at.n`'s input (`item_len` values per item), and the first value of output
    /// row `at.oy` of a `win` output with `c` channels per pixel.
    #[inline(always)]
    pub fn rows(
        &self,
        at: Pixel,
        item_len: usize,
        win: &Window,
        c: usize,
    ) -> (*const f32, *mut f32) {
        (
            self.x.wrapping_add(at.n * item_len),
            self.y.wrapping_add((at.n * win.oh + at.oy) * win.ow * c),
        )
    }

    /// Stores `K` pixels' accumulators, clipped, the first at `out` and the others `stride`
    /// values apart.
    ///
    /// # Safety
    /// `lanes` values (all `L::N` unless `PART`) at each of the `K` places lie in the output.
    #[inline(always)]
    pub unsafe fn store<L: Lanes, const PART: bool, const K: usize>(
        &self,
        out: *mut f32,
        stride: usize,
        lanes: usize,
        acc: [L::V; K],
    ) {
        for (k, a) in acc.into_iter().enumerate() {
            // SAFETY: the caller's.
            unsafe { st::<L, PART>(out.add(k * stride), lanes, self.clip.apply::<L>(a)) };
        }
    }
}

/// A convolution with constant weights and bias run by one of Triage's kernels, producing
/// channel-last `[n, oh, ow, c]` (or `[oh, ow, c]` when the graph has no batch axis).
#[derive(Debug, Clone)]
pub struct ConvOp<S: Shape> {
    geo: S,
    /// Tap-major weights, `[taps, output channels]`: one channel vector per tap.
    weights: Arc<[f32]>,
    /// One value per output channel.
    bias: Arc<[f32]>,
    isa: Isa,
    /// Whether the tensors have the batch axis.
    batched: bool,
    /// The activation folded in, applied before every store.
    clip: Clip,
}

impl<S: Shape> PartialEq for ConvOp<S> {
    fn eq(&self, other: &Self) -> bool {
        self.geo == other.geo
            && self.isa == other.isa
            && self.batched == other.batched
            && self.clip == other.clip
            && same_bits(&self.weights, &other.weights)
            && same_bits(&self.bias, &other.bias)
    }
}

impl<S: Shape> Eq for ConvOp<S> {}

impl<S: Shape> ConvOp<S> {
    /// `weights` is tap-major `[taps, output channels]`, `bias` has one value per output
    /// channel; `isa` must be one the CPU has.
    pub fn new(geo: S, weights: Vec<f32>, bias: Vec<f32>, isa: Isa) -> TractResult<Self> {
        let (name, cout) = (S::NAME, geo.output_channels());
        ensure!(
            geo.window().is_valid() && cout > 0 && geo.taps() > 0,
            "{name} with an empty kernel, stride or channel count: {geo:?}"
        );
        ensure!(
            weights.len() == geo.taps() * cout,
            "{name} weights have {} values, {geo:?} needs {}",
            weights.len(),
            geo.taps() * cout
        );
        ensure!(
            bias.len() == cout,
            "{name} bias has {} values for {cout} channels",
            bias.len()
        );
        ensure!(
            Isa::available().contains(&isa),
            "{isa:?} is not available on this CPU"
        );
        Ok(ConvOp {
            geo,
            weights: weights.into(),
            bias: bias.into(),
            isa,
            batched: true,
            clip: Clip::default(),
        })
    }

    /// The same op on tensors without the batch axis (the geometry's batch must be 1).
    pub fn unbatched(mut self) -> TractResult<Self> {
        ensure!(
            self.geo.batches() == 1,
            "unbatched {} with a batch of {}",
            S::NAME,
            self.geo.batches()
        );
        self.batched = false;
        Ok(self)
    }

    /// The same op with every output clamped to `clip`.
    pub fn with_clip(mut self, clip: Clip) -> Self {
        self.clip = clip;
        self
    }

    pub fn clip(&self) -> Clip {
        self.clip
    }

    fn input_shape(&self) -> TVec<usize> {
        let mut s = self.geo.item_input_shape();
        if self.batched {
            s.insert(0, self.geo.batches());
        }
        s
    }

    fn output_shape(&self) -> TVec<usize> {
        let win = self.geo.window();
        let mut s = tvec![win.oh, win.ow, self.geo.output_channels()];
        if self.batched {
            s.insert(0, self.geo.batches());
        }
        s
    }

    /// Convolves `x` into `y`, every element of `y` written.
    pub fn run(&self, x: &[f32], y: &mut [f32]) -> TractResult<()> {
        let g = &self.geo;
        let in_len = g.batches() * g.item_input_shape().iter().product::<usize>();
        let out_len = self.output_shape().iter().product::<usize>();
        ensure!(
            x.len() == in_len && y.len() == out_len,
            "{} input has {} values and output {}, {g:?} needs {in_len} and {out_len}",
            S::NAME,
            x.len(),
            y.len()
        );
        let job = Job {
            clip: self.clip,
            x: x.as_ptr(),
            w: self.weights.as_ptr(),
            b: self.bias.as_ptr(),
            y: y.as_mut_ptr(),
        };
        // SAFETY: the lengths of `x` and `y` were checked against the geometry above, the
        // weights' and bias' in `new`, which also checked that the CPU has `isa`.
        unsafe { drive(self.isa, g, &job) };
        Ok(())
    }
}

impl<S: Shape> Op for ConvOp<S> {
    fn name(&self) -> StaticName {
        S::NAME.into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{:?} ({:?}, {:?})",
            self.geo, self.isa, self.clip
        )])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl<S: Shape> EvalOp for ConvOp<S> {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        // SAFETY: `run` writes every element of the output (checked by the kernels' tests
        // against a direct convolution into a NaN-poisoned buffer) before anything reads it.
        let mut y = unsafe { Tensor::uninitialized::<f32>(&self.output_shape())? };
        {
            let x = x.try_as_plain_ram()?;
            let mut yv = y.try_as_plain_ram_mut()?;
            self.run(x.as_slice::<f32>()?, yv.as_slice_mut::<f32>()?)?;
        }
        Ok(tvec!(y.into_tvalue()))
    }
}

impl<S: Shape> TypedOp for ConvOp<S> {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1, "{} takes one input", S::NAME);
        ensure!(
            inputs[0].datum_type == f32::datum_type(),
            "{} runs f32, got {:?}",
            S::NAME,
            inputs[0].datum_type
        );
        let want: TVec<TDim> = self.input_shape().iter().map(|d| d.to_dim()).collect();
        ensure!(
            inputs[0].shape.iter().eq(want.iter()),
            "{} built for {want:?} got {:?}",
            S::NAME,
            inputs[0].shape
        );
        Ok(tvec!(f32::fact(self.output_shape())))
    }

    fn cost(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let outputs = self.output_shape().iter().product::<usize>();
        Ok(tvec!((
            Cost::FMA(f32::datum_type()),
            (outputs * self.geo.taps()).to_dim()
        )))
    }

    as_op!();
}

/// Folds into each `ConvOp<S>` the `max(_, c)` and `min(_, c)` with a scalar constant that are
/// its only consumer (ReLU6 after declutter is one of each), so the activation costs no pass of
/// its own. Run after the graph is channel-last and decluttered, when the activation follows
/// the convolution directly. Returns how many were folded.
pub(super) fn fuse_clips<S: Shape>(model: &mut TypedModel) -> TractResult<usize> {
    let binary_ops = |m: &TypedModel| m.nodes.iter().filter(|n| n.op_is::<TypedBinOp>()).count();
    let before = binary_ops(model);
    Rewriter::<()>::default()
        .with_rule_for("fuse-clip", fuse_clip::<S>)
        .rewrite(&(), model)?;
    Ok(before.saturating_sub(binary_ops(model)))
}

fn fuse_clip<S: Shape>(
    _: &(),
    model: &TypedModel,
    node: &TypedNode,
    name: &str,
    op: &TypedBinOp,
) -> TractResult<Option<TypedModelPatch>> {
    let kind = op.0.name();
    rule_if!(node.inputs.len() == 2 && (kind == "Max" || kind == "Min"));
    for (conv_ix, const_ix) in [(0, 1), (1, 0)] {
        let wire = node.inputs[conv_ix];
        let src = model.node(wire.node);
        let Some(conv) = src.op_as::<ConvOp<S>>() else {
            continue;
        };
        rule_if!(model.outlet_successors(wire).len() == 1);
        rule_if!(model.outlet_fact(node.id.into())?.shape == model.outlet_fact(wire)?.shape);
        rule_if_some!(k = model.outlet_fact(node.inputs[const_ix])?.konst.clone());
        rule_if!(k.len() == 1 && k.datum_type() == f32::datum_type());
        let c = k.cast_to_scalar::<f32>()?;
        let clip = if kind == "Max" {
            conv.clip().then_max(c)
        } else {
            conv.clip().then_min(c)
        };
        rule_if_some!(clip = clip);
        let mut patch = TypedModelPatch::default();
        let x = patch.tap_model(model, src.inputs[0])?;
        let y = patch.wire_node(format!("{name}.fused"), conv.clone().with_clip(clip), &[x])?;
        patch.shunt_outside(model, node.id.into(), y[0])?;
        return Ok(Some(patch));
    }
    Ok(None)
}

/// What a kernel module's lowering rule does with one tract `Conv`: a patch putting its
/// `ConvOp` in place, or `None` to leave it to tract.
pub(super) type LowerRule =
    fn(&TypedModel, &TypedNode, &str, &Conv, Isa) -> TractResult<Option<TypedModelPatch>>;

/// Applies `rule` to every `Conv` of `model` and returns how many `ConvOp<S>` there are after.
pub(super) fn lower_convs<S: Shape>(
    model: &mut TypedModel,
    isa: Isa,
    rule: LowerRule,
) -> TractResult<usize> {
    Rewriter::<Isa>::default()
        .with_rule_for(S::NAME, move |isa, model, node, name, op: &Conv| {
            rule(model, node, name, op, *isa)
        })
        .rewrite(&isa, model)?;
    Ok(model
        .nodes
        .iter()
        .filter(|n| n.op_is::<ConvOp<S>>())
        .count())
}

/// A float 2-D convolution with constant weights and bias, as the kernels take it.
pub(super) struct ConstConv {
    /// Batch size (1 for unbatched data).
    pub n: usize,
    pub cin: usize,
    pub cout: usize,
    pub win: Window,
    /// Whether the data has its batch axis (`NCHW`) or declutter dropped it (`CHW`).
    pub batched: bool,
    /// Tap-major weights `[taps, cout]`, taps running over `(cin / group, kh, kw)`.
    pub weights: Vec<f32>,
    /// One value per output channel.
    pub bias: Vec<f32>,
}

impl ConstConv {
    /// The kernel op for this convolution, with its geometry `geo`.
    pub fn into_op<S: Shape>(self, geo: S, isa: Isa) -> TractResult<ConvOp<S>> {
        let op = ConvOp::new(geo, self.weights, self.bias, isa)?;
        if self.batched {
            Ok(op)
        } else {
            op.unbatched()
        }
    }

    /// The axis of the channels in the matched data, and the last axis.
    pub fn channel_axes(&self) -> (usize, usize) {
        if self.batched {
            (1, 3)
        } else {
            (0, 2)
        }
    }
}

/// The spatial window of a 2-D convolution on an `h x w` input.
fn window(spec: &PoolSpec, h: usize, w: usize) -> Window {
    let padding = spec.computed_padding(&[h, w]);
    let strides = spec.strides();
    Window {
        h,
        w,
        kh: spec.kernel_shape[0],
        kw: spec.kernel_shape[1],
        sh: strides[0],
        sw: strides[1],
        pad_top: padding[0].pad_before,
        pad_left: padding[1].pad_before,
        oh: padding[0].convoluted,
        ow: padding[1].convoluted,
    }
}

/// `node` as a [`ConstConv`] if it is a float, undilated 2-D `Conv` on `NCHW` or `CHW` data
/// with concrete shapes, constant `OIHW` weights and a constant bias (one value or one per
/// output channel); `None` leaves the node to tract.
pub(super) fn match_conv(
    model: &TypedModel,
    node: &TypedNode,
    op: &Conv,
) -> TractResult<Option<ConstConv>> {
    let spec = &op.pool_spec;
    rule_if!(op.q_params.is_none());
    rule_if!(matches!(
        spec.data_format,
        DataFormat::NCHW | DataFormat::CHW
    ));
    rule_if!(op.kernel_fmt == KernelFormat::OIHW);
    rule_if!(spec.kernel_shape.len() == 2);
    rule_if!(spec.dilations().iter().all(|&d| d == 1));
    rule_if!(node.inputs.len() == 3);
    let (cin, cout, group) = (op.input_channels(), op.output_channels(), op.group);
    rule_if!(group > 0 && cin % group == 0);
    let x_fact = model.outlet_fact(node.inputs[0])?;
    rule_if!(x_fact.datum_type == f32::datum_type());
    rule_if_some!(shape = x_fact.shape.as_concrete());
    // Declutter drops the batch axis of single-image graphs: `CHW` is `NCHW` with n = 1.
    let batched = spec.data_format == DataFormat::NCHW;
    let shape: TVec<usize> = if batched {
        shape.into()
    } else {
        std::iter::once(1).chain(shape.iter().copied()).collect()
    };
    rule_if!(shape.len() == 4 && shape[1] == cin);
    rule_if_some!(kernel = model.outlet_fact(node.inputs[1])?.konst.clone());
    rule_if_some!(bias = model.outlet_fact(node.inputs[2])?.konst.clone());
    rule_if!(kernel.datum_type() == f32::datum_type() && bias.datum_type() == f32::datum_type());
    let win = window(spec, shape[2], shape[3]);
    rule_if!(kernel.shape() == [cout, cin / group, win.kh, win.kw]);
    let kernel = kernel.try_as_plain_ram()?;
    let bias = bias.try_as_plain_ram()?;
    let bias = bias.as_slice::<f32>()?;
    let bias = match bias.len() {
        1 => vec![bias[0]; cout],
        n if n == cout => bias.to_vec(),
        _ => return Ok(None),
    };
    Ok(Some(ConstConv {
        n: shape[0],
        cin,
        cout,
        win,
        batched,
        weights: tap_major(kernel.as_slice::<f32>()?, cout),
        bias,
    }))
}

/// `[cout, taps]` (OIHW flattened) to `[taps, cout]`: one vector of output channels per tap.
fn tap_major(kernel: &[f32], cout: usize) -> Vec<f32> {
    let taps = kernel.len() / cout;
    let mut weights = vec![0f32; kernel.len()];
    for (co, k) in kernel.chunks_exact(taps).enumerate() {
        for (t, &v) in k.iter().enumerate() {
            weights[t * cout + co] = v;
        }
    }
    weights
}

/// Bitwise equality of weights, so that ops holding floats can be `Eq`.
fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Every output of `g` on `job`'s buffers, with the instruction set `isa`: the rows, the padded
/// border pixels one by one and the interior four at a time.
///
/// # Safety
/// `job`'s buffers cover `g`'s geometry, and the CPU has `isa` (see [`Isa::available`]).
unsafe fn drive<S: Shape>(isa: Isa, g: &S, job: &Job) {
    // SAFETY: the caller's.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => drive_avx512(g, job),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => drive_avx2(g, job),
            Isa::Portable => drive_with::<Portable, S>(g, job),
        }
    }
}

/// # Safety
/// The CPU has AVX-512F; `job`'s buffers cover `g`'s geometry.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn drive_avx512<S: Shape>(g: &S, job: &Job) {
    unsafe { drive_with::<super::lanes::x86::Avx512, S>(g, job) }
}

/// # Safety
/// The CPU has AVX2 and FMA; `job`'s buffers cover `g`'s geometry.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn drive_avx2<S: Shape>(g: &S, job: &Job) {
    unsafe { drive_with::<super::lanes::x86::Avx2, S>(g, job) }
}

/// Inlined into each `#[target_feature]` driver above, with the kernel's methods, so that the
/// whole convolution is compiled for that instruction set. (No closures: a closure would not
/// inherit the target features, and the vector intrinsics inside it would become calls.)
#[inline(always)]
unsafe fn drive_with<L: Lanes, S: Shape>(g: &S, job: &Job) {
    let win = *g.window();
    let (lo, hi) = win.interior_columns();
    for n in 0..g.batches() {
        for oy in 0..win.oh {
            let row = win.row(oy);
            // SAFETY: the arguments are what `Shape::one` and `Shape::four` ask for.
            unsafe {
                for ox in (0..lo).chain(hi..win.ow) {
                    blocks::<L, S, false>(g, job, Pixel { n, oy, row, ox });
                }
                let mut ox = lo;
                while ox + 4 <= hi {
                    blocks::<L, S, true>(g, job, Pixel { n, oy, row, ox });
                    ox += 4;
                }
                while ox < hi {
                    blocks::<L, S, false>(g, job, Pixel { n, oy, row, ox });
                    ox += 1;
                }
            }
        }
    }
}

/// Every block of output channels at `at`: full vectors, then the partial one; of four pixels
/// when `FOUR`.
#[inline(always)]
unsafe fn blocks<L: Lanes, S: Shape, const FOUR: bool>(g: &S, job: &Job, at: Pixel) {
    let c = g.output_channels();
    let full = c / L::N * L::N;
    // SAFETY: the caller's, and every block lies below `output_channels()`.
    unsafe {
        let mut cb = 0;
        while cb < full {
            if FOUR {
                g.four::<L, false>(job, at, cb, L::N);
            } else {
                g.one::<L, false>(job, at, cb, L::N);
            }
            cb += L::N;
        }
        if full < c {
            if FOUR {
                g.four::<L, true>(job, at, full, c - full);
            } else {
                g.one::<L, true>(job, at, full, c - full);
            }
        }
    }
}

/// What the kernels' tests share.
#[cfg(test)]
pub(super) mod testing {
    use super::*;

    /// Checks a kernel on `g` against `reference`, a direct convolution of the same input,
    /// tap-major weights and bias: unbounded and with a clip that cuts the outputs on both
    /// sides, with every instruction set the CPU has, into a NaN-poisoned output so that an
    /// element left unwritten shows.
    pub fn check<S: Shape>(g: S, reference: impl Fn(&[f32], &[f32], &[f32]) -> Vec<f32>) {
        let input_len = g.batches() * g.item_input_shape().iter().product::<usize>();
        let cout = g.output_channels();
        let x: Vec<f32> = (0..input_len).map(|i| ((i as f32) * 0.137).sin()).collect();
        let w: Vec<f32> = (0..g.taps() * cout)
            .map(|i| ((i as f32) * 0.091).cos() * 0.3)
            .collect();
        let b: Vec<f32> = (0..cout).map(|i| i as f32 * 0.05 - 0.1).collect();
        let raw = reference(&x, &w, &b);
        for clip in [Clip::default(), Clip { lo: -0.1, hi: 0.6 }] {
            let want: Vec<f32> = raw.iter().map(|v| v.max(clip.lo).min(clip.hi)).collect();
            for isa in Isa::available() {
                let op = ConvOp::new(g, w.clone(), b.clone(), isa)
                    .unwrap()
                    .with_clip(clip);
                let mut y = vec![f32::NAN; want.len()];
                op.run(&x, &mut y).unwrap();
                for (i, (got, want)) in y.iter().zip(&want).enumerate() {
                    assert!(
                        (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                        "{isa:?} {clip:?} {g:?}: element {i} is {got}, direct convolution gives {want}"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_major_transposes_oihw() {
        // Two output channels, three taps each.
        let k = [1.0, 2.0, 3.0, 10.0, 20.0, 30.0];
        assert_eq!(tap_major(&k, 2), vec![1.0, 10.0, 2.0, 20.0, 3.0, 30.0]);
    }

    #[test]
    fn same_bits_tells_signed_zeros_apart() {
        assert!(same_bits(&[1.0, 0.0], &[1.0, 0.0]));
        assert!(!same_bits(&[0.0], &[-0.0]));
        assert!(!same_bits(&[1.0], &[1.0, 2.0]));
    }
}
