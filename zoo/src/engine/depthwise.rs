//! Depthwise convolution on channel-last activations, accumulated in vector registers.
//!
//! tract runs a depthwise convolution on `NCHW` planes one channel at a time, and on
//! channel-last data (x86 has no kernel for it) with every tap reading and rewriting the whole
//! output vector of the pixel. [`ChannelLastDepthwise`] keeps a block of channels (16 lanes
//! with AVX-512, 8 with AVX2 and FMA, 8 autovectorized lanes elsewhere) of up to four output
//! pixels in registers over every tap, and stores each once. Interior pixels run without
//! bounds checks; the padded border runs the same loop over its clipped taps.
//!
//! [`lower`] replaces every float depthwise `Conv` of a typed model with this op, between
//! moves to and from channel-last; tract's own `conv_nhwc` rewrite then moves the remaining
//! convolutions channel-last and its declutter cancels the moves between neighbours, so the
//! whole network runs channel-last.

use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cnn::conv::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::cnn::PoolSpec;
use tract_onnx::tract_core::ops::nn::DataFormat;

use super::lanes::{ld, st, Clip, Col, Isa, Lanes, Portable, Row, Window};

/// Shape of one depthwise convolution: input `[n, h, w, c]`, output `[n, oh, ow, c]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Geometry {
    pub n: usize,
    pub c: usize,
    pub win: Window,
}

impl Geometry {
    fn input_len(&self) -> usize {
        self.n * self.win.h * self.win.w * self.c
    }

    fn output_len(&self) -> usize {
        self.n * self.win.oh * self.win.ow * self.c
    }
}

/// Depthwise convolution of channel-last `f32` data with constant weights and bias.
#[derive(Debug, Clone)]
pub struct ChannelLastDepthwise {
    geo: Geometry,
    /// Tap-major weights, `[kh * kw, c]`: one channel vector per tap.
    weights: Arc<[f32]>,
    /// One value per channel.
    bias: Arc<[f32]>,
    isa: Isa,
    /// Whether the tensors have the batch axis (`[n, h, w, c]`) or not (`[h, w, c]`, n = 1).
    batched: bool,
    /// The activation folded in, applied before every store.
    clip: Clip,
}

impl PartialEq for ChannelLastDepthwise {
    fn eq(&self, other: &Self) -> bool {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        self.geo == other.geo
            && self.isa == other.isa
            && self.batched == other.batched
            && self.clip == other.clip
            && bits(&self.weights) == bits(&other.weights)
            && bits(&self.bias) == bits(&other.bias)
    }
}

impl Eq for ChannelLastDepthwise {}

impl ChannelLastDepthwise {
    /// `weights` is tap-major `[kh * kw, c]`, `bias` has `c` values.
    pub fn new(geo: Geometry, weights: Vec<f32>, bias: Vec<f32>, isa: Isa) -> TractResult<Self> {
        ensure!(
            geo.win.is_valid() && geo.c > 0,
            "depthwise convolution with an empty kernel, stride or channel count: {geo:?}"
        );
        ensure!(
            weights.len() == geo.win.taps() * geo.c,
            "depthwise weights have {} values, {geo:?} needs {}",
            weights.len(),
            geo.win.taps() * geo.c
        );
        ensure!(
            bias.len() == geo.c,
            "depthwise bias has {} values for {} channels",
            bias.len(),
            geo.c
        );
        ensure!(
            isa == Isa::Portable || Isa::available().contains(&isa),
            "{isa:?} is not available on this CPU"
        );
        Ok(ChannelLastDepthwise {
            geo,
            weights: weights.into(),
            bias: bias.into(),
            isa,
            batched: true,
            clip: Clip::default(),
        })
    }

    /// The same op on unbatched `[h, w, c]` tensors (the geometry's `n` must be 1).
    pub fn unbatched(mut self) -> TractResult<Self> {
        ensure!(
            self.geo.n == 1,
            "unbatched depthwise with n = {}",
            self.geo.n
        );
        self.batched = false;
        Ok(self)
    }

    fn shape(&self, h: usize, w: usize) -> TVec<usize> {
        let g = &self.geo;
        if self.batched {
            tvec![g.n, h, w, g.c]
        } else {
            tvec![h, w, g.c]
        }
    }

    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// The same op with every output clamped to `clip`.
    pub fn with_clip(mut self, clip: Clip) -> Self {
        self.clip = clip;
        self
    }

    /// Convolves `x` (`[n, h, w, c]`) into `y` (`[n, oh, ow, c]`), every element written.
    pub fn run(&self, x: &[f32], y: &mut [f32]) -> TractResult<()> {
        let g = &self.geo;
        ensure!(
            x.len() == g.input_len() && y.len() == g.output_len(),
            "depthwise input has {} values and output {}, {g:?} needs {} and {}",
            x.len(),
            y.len(),
            g.input_len(),
            g.output_len()
        );
        let (x, w, b, y) = (
            x.as_ptr(),
            self.weights.as_ptr(),
            self.bias.as_ptr(),
            y.as_mut_ptr(),
        );
        // SAFETY: the lengths of `x` and `y` were checked against the geometry above, and the
        // weights' and bias' in `new`; `convolve` reads and writes only inside those extents.
        // The x86 paths run only where `new` saw the CPU report their features.
        unsafe {
            match self.isa {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => convolve_avx512(g, self.clip, x, w, b, y),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2Fma => convolve_avx2(g, self.clip, x, w, b, y),
                Isa::Portable => convolve::<Portable>(g, self.clip, x, w, b, y),
            }
        }
        Ok(())
    }
}

impl Op for ChannelLastDepthwise {
    fn name(&self) -> StaticName {
        "ChannelLastDepthwise".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{:?} ({:?})", self.geo, self.isa)])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for ChannelLastDepthwise {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let g = &self.geo;
        // SAFETY: `run` writes every element of the output (checked by the tests against a
        // direct convolution) before anything reads it.
        let mut y = unsafe { Tensor::uninitialized::<f32>(&self.shape(g.win.oh, g.win.ow))? };
        {
            let x = x.try_as_plain_ram()?;
            let mut yv = y.try_as_plain_ram_mut()?;
            self.run(x.as_slice::<f32>()?, yv.as_slice_mut::<f32>()?)?;
        }
        Ok(tvec!(y.into_tvalue()))
    }
}

impl TypedOp for ChannelLastDepthwise {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let g = &self.geo;
        ensure!(inputs.len() == 1, "depthwise takes one input");
        ensure!(
            inputs[0].datum_type == f32::datum_type(),
            "depthwise runs f32, got {:?}",
            inputs[0].datum_type
        );
        let want: TVec<TDim> = self
            .shape(g.win.h, g.win.w)
            .iter()
            .map(|d| d.to_dim())
            .collect();
        ensure!(
            inputs[0].shape.iter().eq(want.iter()),
            "depthwise built for {want:?} got {:?}",
            inputs[0].shape
        );
        Ok(tvec!(f32::fact(self.shape(g.win.oh, g.win.ow))))
    }

    fn cost(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let g = &self.geo;
        Ok(tvec!((
            Cost::FMA(f32::datum_type()),
            (g.n * g.win.oh * g.win.ow * g.c * g.win.taps()).to_dim()
        )))
    }

    as_op!();
}

/// Replaces every float, undilated depthwise `Conv` on `NCHW` (or unbatched `CHW`) data with constant weights and
/// bias by a [`ChannelLastDepthwise`] between axis moves. Returns how many it replaced.
pub fn lower(model: &mut TypedModel, isa: Isa) -> TractResult<usize> {
    Rewriter::<Isa>::default()
        .with_rule_for(
            "channel-last-depthwise",
            |isa, model, node, name, op: &Conv| lower_one(model, node, name, op, *isa),
        )
        .rewrite(&isa, model)?;
    Ok(model
        .nodes
        .iter()
        .filter(|n| n.op_is::<ChannelLastDepthwise>())
        .count())
}

/// A convolution of this crate that can absorb the activation after it.
pub(super) trait Clamped: TypedOp + Clone {
    fn clip(&self) -> Clip;
    fn with_clip(self, clip: Clip) -> Self;
}

impl Clamped for ChannelLastDepthwise {
    fn clip(&self) -> Clip {
        self.clip
    }

    fn with_clip(self, clip: Clip) -> Self {
        ChannelLastDepthwise::with_clip(self, clip)
    }
}

/// Folds into each `O` the `max(_, c)` and `min(_, c)` with a scalar constant that are its
/// only consumer (ReLU6 after declutter is one of each), so the activation costs no pass of its
/// own. Run after the graph is channel-last and decluttered, when the activation follows the
/// convolution directly. Returns how many were folded.
pub(super) fn fuse_clips<O: Clamped>(model: &mut TypedModel) -> TractResult<usize> {
    let before = model
        .nodes
        .iter()
        .filter(|n| n.op_is::<TypedBinOp>())
        .count();
    Rewriter::<()>::default()
        .with_rule_for("fuse-clip", fuse_clip::<O>)
        .rewrite(&(), model)?;
    let after = model
        .nodes
        .iter()
        .filter(|n| n.op_is::<TypedBinOp>())
        .count();
    Ok(before.saturating_sub(after))
}

fn fuse_clip<O: Clamped>(
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
        let Some(conv) = src.op_as::<O>() else {
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

/// The spatial window of a 2-D convolution on an `h x w` input.
pub(super) fn window(spec: &PoolSpec, h: usize, w: usize) -> Window {
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

fn lower_one(
    model: &TypedModel,
    node: &TypedNode,
    name: &str,
    op: &Conv,
    isa: Isa,
) -> TractResult<Option<TypedModelPatch>> {
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
    let c = op.group;
    rule_if!(c > 1 && op.input_channels() == c && op.output_channels() == c);
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
    rule_if!(shape.len() == 4 && shape[1] == c);
    let kernel = model.outlet_fact(node.inputs[1])?;
    let bias = model.outlet_fact(node.inputs[2])?;
    rule_if_some!(kernel = kernel.konst.clone());
    rule_if_some!(bias = bias.konst.clone());
    rule_if!(kernel.datum_type() == f32::datum_type() && bias.datum_type() == f32::datum_type());
    let (kh, kw) = (spec.kernel_shape[0], spec.kernel_shape[1]);
    rule_if!(kernel.shape() == [c, 1, kh, kw]);
    let geo = Geometry {
        n: shape[0],
        c,
        win: window(spec, shape[2], shape[3]),
    };
    let taps = geo.win.taps();
    let kernel = kernel.try_as_plain_ram()?;
    let kernel = kernel.as_slice::<f32>()?;
    // OIHW `[c, 1, kh, kw]` to tap-major `[kh * kw, c]`.
    let mut weights = vec![0f32; taps * c];
    for (ch, k) in kernel.chunks_exact(taps).enumerate() {
        for (t, &v) in k.iter().enumerate() {
            weights[t * c + ch] = v;
        }
    }
    let bias = bias.try_as_plain_ram()?;
    let bias = bias.as_slice::<f32>()?;
    let bias = match bias.len() {
        1 => vec![bias[0]; c],
        n if n == c => bias.to_vec(),
        _ => return Ok(None),
    };
    let mut dw = ChannelLastDepthwise::new(geo, weights, bias, isa)?;
    let (c_axis, last) = if batched { (1, 3) } else { (0, 2) };
    if !batched {
        dw = dw.unbatched()?;
    }
    let mut patch = TypedModelPatch::default();
    let x = patch.tap_model(model, node.inputs[0])?;
    let x = patch.wire_node(format!("{name}.nhwc_in"), AxisOp::Move(c_axis, last), &[x])?;
    let y = patch.wire_node(name, dw, &x)?;
    let y = patch.wire_node(format!("{name}.nhwc_out"), AxisOp::Move(last, c_axis), &y)?;
    patch.shunt_outside(model, node.id.into(), y[0])?;
    Ok(Some(patch))
}

/// # Safety
/// The CPU has AVX-512F; the pointers cover the geometry's extents.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn convolve_avx512(
    g: &Geometry,
    clip: Clip,
    x: *const f32,
    w: *const f32,
    b: *const f32,
    y: *mut f32,
) {
    unsafe { convolve::<super::lanes::x86::Avx512>(g, clip, x, w, b, y) }
}

/// # Safety
/// The CPU has AVX2 and FMA; the pointers cover the geometry's extents.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn convolve_avx2(
    g: &Geometry,
    clip: Clip,
    x: *const f32,
    w: *const f32,
    b: *const f32,
    y: *mut f32,
) {
    unsafe { convolve::<super::lanes::x86::Avx2>(g, clip, x, w, b, y) }
}

/// The whole convolution.
///
/// # Safety
/// `x`, `w`, `b`, `y` point to at least `g.input_len()`, `g.win.taps() * g.c`, `g.c` and
/// `g.output_len()` values.
#[inline(always)]
unsafe fn convolve<L: Lanes>(
    g: &Geometry,
    clip: Clip,
    x: *const f32,
    w: *const f32,
    b: *const f32,
    y: *mut f32,
) {
    let full = g.c / L::N * L::N;
    let tail = g.c - full;
    let (lo, hi) = g.win.interior_columns();
    for n in 0..g.n {
        // SAFETY (whole body): every input index is (row within [0, h)) * w + (column within
        // [0, w)), the rows clipped by `Row` and the columns by `interior_columns` or by the
        // border pixel's own clipping; every output index is below `output_len`.
        unsafe {
            let x = x.add(n * g.win.h * g.win.w * g.c);
            let y = y.add(n * g.win.oh * g.win.ow * g.c);
            for oy in 0..g.win.oh {
                let row = g.win.row(oy);
                let yrow = y.add(oy * g.win.ow * g.c);
                for ox in (0..lo).chain(hi..g.win.ow) {
                    pixel::<L>(g, clip, row, ox, x, w, b, yrow.add(ox * g.c), full, tail);
                }
                let mut ox = lo;
                while ox + 4 <= hi {
                    let mut cb = 0;
                    while cb < full {
                        quad::<L, false>(g, clip, row, ox, x, w, b, yrow, cb, L::N);
                        cb += L::N;
                    }
                    if tail > 0 {
                        quad::<L, true>(g, clip, row, ox, x, w, b, yrow, full, tail);
                    }
                    ox += 4;
                }
                while ox < hi {
                    pixel::<L>(g, clip, row, ox, x, w, b, yrow.add(ox * g.c), full, tail);
                    ox += 1;
                }
            }
        }
    }
}

/// One output pixel, its taps clipped to the input.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn pixel<L: Lanes>(
    g: &Geometry,
    clip: Clip,
    row: Row,
    ox: usize,
    x: *const f32,
    w: *const f32,
    b: *const f32,
    out: *mut f32,
    full: usize,
    tail: usize,
) {
    let Col { ix0, kx_lo, kx_hi } = g.win.col(ox);
    // No closure here: a closure would not inherit the caller's target features, and the
    // vector intrinsics inside it would become calls.
    // SAFETY: see `convolve`.
    unsafe {
        let mut cb = 0;
        while cb < full {
            pixel_block::<L, false>(g, clip, row, ix0, kx_lo, kx_hi, x, w, b, out, cb, L::N);
            cb += L::N;
        }
        if tail > 0 {
            pixel_block::<L, true>(g, clip, row, ix0, kx_lo, kx_hi, x, w, b, out, full, tail);
        }
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn pixel_block<L: Lanes, const PART: bool>(
    g: &Geometry,
    clip: Clip,
    row: Row,
    ix0: isize,
    kx_lo: usize,
    kx_hi: usize,
    x: *const f32,
    w: *const f32,
    b: *const f32,
    out: *mut f32,
    cb: usize,
    lanes: usize,
) {
    unsafe {
        let mut acc = ld::<L, PART>(b.add(cb), lanes);
        for ky in row.ky_lo..row.ky_hi {
            let xrow = x.offset((row.iy0 + ky as isize) * (g.win.w * g.c) as isize);
            for kx in kx_lo..kx_hi {
                let xv = ld::<L, PART>(
                    xrow.offset((ix0 + kx as isize) * g.c as isize + cb as isize),
                    lanes,
                );
                let wv = ld::<L, PART>(w.add((ky * g.win.kw + kx) * g.c + cb), lanes);
                acc = L::fma(wv, xv, acc);
            }
        }
        st::<L, PART>(out.add(cb), lanes, clip.apply::<L>(acc));
    }
}

/// Four interior output pixels `ox..ox + 4` of one block of channels, sharing each weight load.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn quad<L: Lanes, const PART: bool>(
    g: &Geometry,
    clip: Clip,
    row: Row,
    ox: usize,
    x: *const f32,
    w: *const f32,
    b: *const f32,
    yrow: *mut f32,
    cb: usize,
    lanes: usize,
) {
    unsafe {
        let c = g.c;
        let step = g.win.sw * c;
        let bias = ld::<L, PART>(b.add(cb), lanes);
        let (mut a0, mut a1, mut a2, mut a3) = (bias, bias, bias, bias);
        let ix0 = ox * g.win.sw - g.win.pad_left;
        for ky in row.ky_lo..row.ky_hi {
            let xrow = x.offset((row.iy0 + ky as isize) * (g.win.w * c) as isize);
            let wrow = w.add(ky * g.win.kw * c + cb);
            for kx in 0..g.win.kw {
                let wv = ld::<L, PART>(wrow.add(kx * c), lanes);
                let p = xrow.add((ix0 + kx) * c + cb);
                a0 = L::fma(wv, ld::<L, PART>(p, lanes), a0);
                a1 = L::fma(wv, ld::<L, PART>(p.add(step), lanes), a1);
                a2 = L::fma(wv, ld::<L, PART>(p.add(2 * step), lanes), a2);
                a3 = L::fma(wv, ld::<L, PART>(p.add(3 * step), lanes), a3);
            }
        }
        let out = yrow.add(ox * c + cb);
        st::<L, PART>(out, lanes, clip.apply::<L>(a0));
        st::<L, PART>(out.add(c), lanes, clip.apply::<L>(a1));
        st::<L, PART>(out.add(2 * c), lanes, clip.apply::<L>(a2));
        st::<L, PART>(out.add(3 * c), lanes, clip.apply::<L>(a3));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Direct convolution in f64, the reference.
    fn reference(g: &Geometry, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
        let mut y = vec![0f32; g.output_len()];
        for n in 0..g.n {
            for oy in 0..g.win.oh {
                for ox in 0..g.win.ow {
                    for ch in 0..g.c {
                        let mut acc = b[ch] as f64;
                        for ky in 0..g.win.kh {
                            for kx in 0..g.win.kw {
                                let iy = (oy * g.win.sh + ky) as isize - g.win.pad_top as isize;
                                let ix = (ox * g.win.sw + kx) as isize - g.win.pad_left as isize;
                                if iy < 0
                                    || ix < 0
                                    || iy >= g.win.h as isize
                                    || ix >= g.win.w as isize
                                {
                                    continue;
                                }
                                let xi = ((n * g.win.h + iy as usize) * g.win.w + ix as usize)
                                    * g.c
                                    + ch;
                                acc += x[xi] as f64 * w[(ky * g.win.kw + kx) * g.c + ch] as f64;
                            }
                        }
                        y[((n * g.win.oh + oy) * g.win.ow + ox) * g.c + ch] = acc as f32;
                    }
                }
            }
        }
        y
    }

    fn geometry(
        n: usize,
        h: usize,
        w: usize,
        c: usize,
        k: usize,
        s: usize,
        pad: usize,
    ) -> Geometry {
        Geometry {
            n,
            c,
            win: Window {
                h,
                w,
                kh: k,
                kw: k,
                sh: s,
                sw: s,
                pad_top: pad,
                pad_left: pad,
                oh: (h + 2 * pad).saturating_sub(k) / s + 1,
                ow: (w + 2 * pad).saturating_sub(k) / s + 1,
            },
        }
    }

    fn check(g: Geometry) {
        let x: Vec<f32> = (0..g.input_len())
            .map(|i| ((i as f32) * 0.137).sin())
            .collect();
        let w: Vec<f32> = (0..g.win.taps() * g.c)
            .map(|i| ((i as f32) * 0.091).cos() * 0.3)
            .collect();
        let b: Vec<f32> = (0..g.c).map(|i| i as f32 * 0.05 - 0.1).collect();
        let raw = reference(&g, &x, &w, &b);
        // Unbounded, and with a clip that cuts the outputs on both sides (ReLU6 scaled to them).
        for clip in [Clip::default(), Clip { lo: -0.1, hi: 0.6 }] {
            let want: Vec<f32> = raw.iter().map(|v| v.max(clip.lo).min(clip.hi)).collect();
            for isa in Isa::available() {
                let op = ChannelLastDepthwise::new(g, w.clone(), b.clone(), isa)
                    .unwrap()
                    .with_clip(clip);
                // Poison the output so that an element left unwritten shows.
                let mut y = vec![f32::NAN; g.output_len()];
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

    #[test]
    fn matches_direct_convolution_on_network_shapes() {
        // 3x3 and 5x5, stride 1 and 2, TensorFlow SAME padding; channel counts with and
        // without a partial vector block; rows too short for a group of four pixels.
        check(geometry(1, 16, 16, 32, 3, 1, 1));
        check(geometry(1, 15, 17, 24, 3, 2, 1));
        check(geometry(1, 14, 14, 40, 5, 1, 2));
        check(geometry(1, 13, 13, 19, 5, 2, 2));
        check(geometry(2, 7, 9, 8, 3, 1, 1));
        check(geometry(1, 3, 3, 5, 3, 1, 1));
        check(geometry(1, 1, 1, 17, 3, 1, 1));
        check(geometry(1, 9, 9, 1, 3, 1, 0));
    }

    #[test]
    fn asymmetric_padding_matches() {
        // TensorFlow SAME at stride 2 on an even side pads only after: nothing before.
        let mut g = geometry(1, 16, 16, 32, 3, 2, 0);
        g.win.oh = 8;
        g.win.ow = 8;
        check(g);
        let mut g = geometry(1, 16, 12, 21, 5, 2, 1);
        g.win.oh = 8;
        g.win.ow = 6;
        check(g);
    }

    #[test]
    fn rejects_mismatched_buffers() {
        let g = geometry(1, 4, 4, 8, 3, 1, 1);
        assert!(ChannelLastDepthwise::new(g, vec![0.0; 10], vec![0.0; 8], Isa::Portable).is_err());
        assert!(ChannelLastDepthwise::new(g, vec![0.0; 72], vec![0.0; 7], Isa::Portable).is_err());
        let op = ChannelLastDepthwise::new(g, vec![0.0; 72], vec![0.0; 8], Isa::Portable).unwrap();
        let mut y = vec![0.0; 128];
        assert!(op.run(&[0.0; 127], &mut y).is_err());
        assert!(op.run(&[0.0; 128], &mut y[..100]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn matches_direct_convolution(
            n in 1usize..3, h in 1usize..12, w in 1usize..12, c in 1usize..40,
            k in 1usize..6, s in 1usize..3, pad_top in 0usize..3, pad_left in 0usize..3,
            extra_bottom in 0usize..3, extra_right in 0usize..3,
        ) {
            prop_assume!(h + pad_top + extra_bottom >= k && w + pad_left + extra_right >= k);
            let g = Geometry { n, c, win: Window {
                h, w, kh: k, kw: k, sh: s, sw: s, pad_top, pad_left,
                oh: (h + pad_top + extra_bottom - k) / s + 1,
                ow: (w + pad_left + extra_right - k) / s + 1,
            } };
            check(g);
        }
    }
}
