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
use tract_onnx::tract_core::ops::cnn::conv::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::nn::DataFormat;

/// Shape of one depthwise convolution: input `[n, h, w, c]`, kernel `kh x kw`, strides,
/// the padding before each spatial axis, output `[n, oh, ow, c]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Geometry {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Geometry {
    fn input_len(&self) -> usize {
        self.n * self.h * self.w * self.c
    }

    fn output_len(&self) -> usize {
        self.n * self.oh * self.ow * self.c
    }

    fn taps(&self) -> usize {
        self.kh * self.kw
    }

    /// Output columns `[lo, hi)` whose every tap lies inside the input row.
    fn interior_columns(&self) -> (usize, usize) {
        let lo = self.pad_left.div_ceil(self.sw).min(self.ow);
        let hi = if self.w + self.pad_left >= self.kw {
            ((self.w + self.pad_left - self.kw) / self.sw + 1).min(self.ow)
        } else {
            0
        };
        (lo, hi.max(lo))
    }
}

/// Which implementation runs, decided once from the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Isa {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    #[default]
    Portable,
}

impl Isa {
    /// The widest implementation this CPU runs.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2Fma;
            }
        }
        Isa::Portable
    }

    /// Every implementation this CPU can run, widest first (for tests and benches).
    pub fn available() -> Vec<Isa> {
        let mut all = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                all.push(Isa::Avx512);
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                all.push(Isa::Avx2Fma);
            }
        }
        all.push(Isa::Portable);
        all
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
}

impl PartialEq for ChannelLastDepthwise {
    fn eq(&self, other: &Self) -> bool {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        self.geo == other.geo
            && self.isa == other.isa
            && self.batched == other.batched
            && bits(&self.weights) == bits(&other.weights)
            && bits(&self.bias) == bits(&other.bias)
    }
}

impl Eq for ChannelLastDepthwise {}

impl ChannelLastDepthwise {
    /// `weights` is tap-major `[kh * kw, c]`, `bias` has `c` values.
    pub fn new(geo: Geometry, weights: Vec<f32>, bias: Vec<f32>, isa: Isa) -> TractResult<Self> {
        ensure!(
            geo.kh > 0 && geo.kw > 0 && geo.sh > 0 && geo.sw > 0 && geo.c > 0,
            "depthwise convolution with an empty kernel, stride or channel count: {geo:?}"
        );
        ensure!(
            weights.len() == geo.taps() * geo.c,
            "depthwise weights have {} values, {geo:?} needs {}",
            weights.len(),
            geo.taps() * geo.c
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
                Isa::Avx512 => x86::convolve_avx512(g, x, w, b, y),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2Fma => x86::convolve_avx2(g, x, w, b, y),
                Isa::Portable => convolve::<Portable>(g, x, w, b, y),
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
        let mut y = unsafe { Tensor::uninitialized::<f32>(&self.shape(g.oh, g.ow))? };
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
        let want: TVec<TDim> = self.shape(g.h, g.w).iter().map(|d| d.to_dim()).collect();
        ensure!(
            inputs[0].shape.iter().eq(want.iter()),
            "depthwise built for {want:?} got {:?}",
            inputs[0].shape
        );
        Ok(tvec!(f32::fact(self.shape(g.oh, g.ow))))
    }

    fn cost(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let g = &self.geo;
        Ok(tvec!((
            Cost::FMA(f32::datum_type()),
            (g.n * g.oh * g.ow * g.c * g.taps()).to_dim()
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
    let (h, w) = (shape[2], shape[3]);
    let padding = spec.computed_padding(&[h, w]);
    let strides = spec.strides();
    let geo = Geometry {
        n: shape[0],
        h,
        w,
        c,
        kh,
        kw,
        sh: strides[0],
        sw: strides[1],
        pad_top: padding[0].pad_before,
        pad_left: padding[1].pad_before,
        oh: padding[0].convoluted,
        ow: padding[1].convoluted,
    };
    let kernel = kernel.try_as_plain_ram()?;
    let kernel = kernel.as_slice::<f32>()?;
    // OIHW `[c, 1, kh, kw]` to tap-major `[kh * kw, c]`.
    let taps = kh * kw;
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

/// The vector operations the convolution needs, over `N` lanes of `f32`.
trait Lanes {
    const N: usize;
    type V: Copy;
    unsafe fn load(p: *const f32) -> Self::V;
    /// The first `n < N` lanes from `p`, zeros after.
    unsafe fn load_part(p: *const f32, n: usize) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
    /// The first `n < N` lanes of `v` to `p`.
    unsafe fn store_part(p: *mut f32, n: usize, v: Self::V);
    /// `a * b + c`.
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
}

/// Eight lanes as a plain array, vectorized by the compiler for whatever the target has.
struct Portable;

impl Lanes for Portable {
    const N: usize = 8;
    type V = [f32; 8];

    #[inline(always)]
    unsafe fn load(p: *const f32) -> [f32; 8] {
        unsafe { p.cast::<[f32; 8]>().read_unaligned() }
    }

    #[inline(always)]
    unsafe fn load_part(p: *const f32, n: usize) -> [f32; 8] {
        let mut v = [0f32; 8];
        for (i, lane) in v.iter_mut().enumerate().take(n) {
            *lane = unsafe { *p.add(i) };
        }
        v
    }

    #[inline(always)]
    unsafe fn store(p: *mut f32, v: [f32; 8]) {
        unsafe { p.cast::<[f32; 8]>().write_unaligned(v) }
    }

    #[inline(always)]
    unsafe fn store_part(p: *mut f32, n: usize, v: [f32; 8]) {
        for (i, lane) in v.iter().enumerate().take(n) {
            unsafe { *p.add(i) = *lane };
        }
    }

    #[inline(always)]
    unsafe fn fma(a: [f32; 8], b: [f32; 8], c: [f32; 8]) -> [f32; 8] {
        let mut r = c;
        for i in 0..8 {
            r[i] += a[i] * b[i];
        }
        r
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{convolve, Geometry, Lanes};

    pub(super) struct Avx512;

    impl Lanes for Avx512 {
        const N: usize = 16;
        type V = __m512;

        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            unsafe { _mm512_loadu_ps(p) }
        }

        #[inline(always)]
        unsafe fn load_part(p: *const f32, n: usize) -> __m512 {
            unsafe { _mm512_maskz_loadu_ps(((1u32 << n) - 1) as u16, p) }
        }

        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            unsafe { _mm512_storeu_ps(p, v) }
        }

        #[inline(always)]
        unsafe fn store_part(p: *mut f32, n: usize, v: __m512) {
            unsafe { _mm512_mask_storeu_ps(p, ((1u32 << n) - 1) as u16, v) }
        }

        #[inline(always)]
        unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
    }

    pub(super) struct Avx2;

    #[inline(always)]
    unsafe fn mask8(n: usize) -> __m256i {
        unsafe {
            _mm256_cmpgt_epi32(
                _mm256_set1_epi32(n as i32),
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            )
        }
    }

    impl Lanes for Avx2 {
        const N: usize = 8;
        type V = __m256;

        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            unsafe { _mm256_loadu_ps(p) }
        }

        #[inline(always)]
        unsafe fn load_part(p: *const f32, n: usize) -> __m256 {
            unsafe { _mm256_maskload_ps(p, mask8(n)) }
        }

        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            unsafe { _mm256_storeu_ps(p, v) }
        }

        #[inline(always)]
        unsafe fn store_part(p: *mut f32, n: usize, v: __m256) {
            unsafe { _mm256_maskstore_ps(p, mask8(n), v) }
        }

        #[inline(always)]
        unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
    }

    /// # Safety
    /// The CPU has AVX-512F; the pointers cover the geometry's extents.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn convolve_avx512(
        g: &Geometry,
        x: *const f32,
        w: *const f32,
        b: *const f32,
        y: *mut f32,
    ) {
        unsafe { convolve::<Avx512>(g, x, w, b, y) }
    }

    /// # Safety
    /// The CPU has AVX2 and FMA; the pointers cover the geometry's extents.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn convolve_avx2(
        g: &Geometry,
        x: *const f32,
        w: *const f32,
        b: *const f32,
        y: *mut f32,
    ) {
        unsafe { convolve::<Avx2>(g, x, w, b, y) }
    }
}

/// Loads `lanes` values (all `L::N` when `PART` is false).
#[inline(always)]
unsafe fn ld<L: Lanes, const PART: bool>(p: *const f32, lanes: usize) -> L::V {
    unsafe {
        if PART {
            L::load_part(p, lanes)
        } else {
            L::load(p)
        }
    }
}

#[inline(always)]
unsafe fn st<L: Lanes, const PART: bool>(p: *mut f32, lanes: usize, v: L::V) {
    unsafe {
        if PART {
            L::store_part(p, lanes, v)
        } else {
            L::store(p, v)
        }
    }
}

/// Where one output row reads: the input row of its first tap (may be negative) and the
/// range of kernel rows that fall inside the input.
#[derive(Clone, Copy)]
struct Row {
    iy0: isize,
    ky_lo: usize,
    ky_hi: usize,
}

/// The whole convolution.
///
/// # Safety
/// `x`, `w`, `b`, `y` point to at least `g.input_len()`, `g.taps() * g.c`, `g.c` and
/// `g.output_len()` values.
#[inline(always)]
unsafe fn convolve<L: Lanes>(
    g: &Geometry,
    x: *const f32,
    w: *const f32,
    b: *const f32,
    y: *mut f32,
) {
    let full = g.c / L::N * L::N;
    let tail = g.c - full;
    let (lo, hi) = g.interior_columns();
    for n in 0..g.n {
        // SAFETY (whole body): every input index is (row within [0, h)) * w + (column within
        // [0, w)), the rows clipped by `Row` and the columns by `interior_columns` or by the
        // border pixel's own clipping; every output index is below `output_len`.
        unsafe {
            let x = x.add(n * g.h * g.w * g.c);
            let y = y.add(n * g.oh * g.ow * g.c);
            for oy in 0..g.oh {
                let iy0 = (oy * g.sh) as isize - g.pad_top as isize;
                let ky_lo = (-iy0).clamp(0, g.kh as isize) as usize;
                let ky_hi = (g.h as isize - iy0).clamp(ky_lo as isize, g.kh as isize) as usize;
                let row = Row { iy0, ky_lo, ky_hi };
                let yrow = y.add(oy * g.ow * g.c);
                for ox in (0..lo).chain(hi..g.ow) {
                    pixel::<L>(g, row, ox, x, w, b, yrow.add(ox * g.c), full, tail);
                }
                let mut ox = lo;
                while ox + 4 <= hi {
                    let mut cb = 0;
                    while cb < full {
                        quad::<L, false>(g, row, ox, x, w, b, yrow, cb, L::N);
                        cb += L::N;
                    }
                    if tail > 0 {
                        quad::<L, true>(g, row, ox, x, w, b, yrow, full, tail);
                    }
                    ox += 4;
                }
                while ox < hi {
                    pixel::<L>(g, row, ox, x, w, b, yrow.add(ox * g.c), full, tail);
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
    row: Row,
    ox: usize,
    x: *const f32,
    w: *const f32,
    b: *const f32,
    out: *mut f32,
    full: usize,
    tail: usize,
) {
    let ix0 = (ox * g.sw) as isize - g.pad_left as isize;
    let kx_lo = (-ix0).clamp(0, g.kw as isize) as usize;
    let kx_hi = (g.w as isize - ix0).clamp(kx_lo as isize, g.kw as isize) as usize;
    let block = |cb: usize, lanes: usize, part: bool| {
        // SAFETY: see `convolve`.
        unsafe {
            if part {
                pixel_block::<L, true>(g, row, ix0, kx_lo, kx_hi, x, w, b, out, cb, lanes)
            } else {
                pixel_block::<L, false>(g, row, ix0, kx_lo, kx_hi, x, w, b, out, cb, lanes)
            }
        }
    };
    let mut cb = 0;
    while cb < full {
        block(cb, L::N, false);
        cb += L::N;
    }
    if tail > 0 {
        block(full, tail, true);
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn pixel_block<L: Lanes, const PART: bool>(
    g: &Geometry,
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
            let xrow = x.offset((row.iy0 + ky as isize) * (g.w * g.c) as isize);
            for kx in kx_lo..kx_hi {
                let xv = ld::<L, PART>(
                    xrow.offset((ix0 + kx as isize) * g.c as isize + cb as isize),
                    lanes,
                );
                let wv = ld::<L, PART>(w.add((ky * g.kw + kx) * g.c + cb), lanes);
                acc = L::fma(wv, xv, acc);
            }
        }
        st::<L, PART>(out.add(cb), lanes, acc);
    }
}

/// Four interior output pixels `ox..ox + 4` of one block of channels, sharing each weight load.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn quad<L: Lanes, const PART: bool>(
    g: &Geometry,
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
        let step = g.sw * c;
        let bias = ld::<L, PART>(b.add(cb), lanes);
        let (mut a0, mut a1, mut a2, mut a3) = (bias, bias, bias, bias);
        let ix0 = ox * g.sw - g.pad_left;
        for ky in row.ky_lo..row.ky_hi {
            let xrow = x.offset((row.iy0 + ky as isize) * (g.w * c) as isize);
            let wrow = w.add(ky * g.kw * c + cb);
            for kx in 0..g.kw {
                let wv = ld::<L, PART>(wrow.add(kx * c), lanes);
                let p = xrow.add((ix0 + kx) * c + cb);
                a0 = L::fma(wv, ld::<L, PART>(p, lanes), a0);
                a1 = L::fma(wv, ld::<L, PART>(p.add(step), lanes), a1);
                a2 = L::fma(wv, ld::<L, PART>(p.add(2 * step), lanes), a2);
                a3 = L::fma(wv, ld::<L, PART>(p.add(3 * step), lanes), a3);
            }
        }
        let out = yrow.add(ox * c + cb);
        st::<L, PART>(out, lanes, a0);
        st::<L, PART>(out.add(c), lanes, a1);
        st::<L, PART>(out.add(2 * c), lanes, a2);
        st::<L, PART>(out.add(3 * c), lanes, a3);
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
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    for ch in 0..g.c {
                        let mut acc = b[ch] as f64;
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                let iy = (oy * g.sh + ky) as isize - g.pad_top as isize;
                                let ix = (ox * g.sw + kx) as isize - g.pad_left as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let xi = ((n * g.h + iy as usize) * g.w + ix as usize) * g.c + ch;
                                acc += x[xi] as f64 * w[(ky * g.kw + kx) * g.c + ch] as f64;
                            }
                        }
                        y[((n * g.oh + oy) * g.ow + ox) * g.c + ch] = acc as f32;
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
            h,
            w,
            c,
            kh: k,
            kw: k,
            sh: s,
            sw: s,
            pad_top: pad,
            pad_left: pad,
            oh: (h + 2 * pad).saturating_sub(k) / s + 1,
            ow: (w + 2 * pad).saturating_sub(k) / s + 1,
        }
    }

    fn check(g: Geometry) {
        let x: Vec<f32> = (0..g.input_len())
            .map(|i| ((i as f32) * 0.137).sin())
            .collect();
        let w: Vec<f32> = (0..g.taps() * g.c)
            .map(|i| ((i as f32) * 0.091).cos() * 0.3)
            .collect();
        let b: Vec<f32> = (0..g.c).map(|i| i as f32 * 0.05 - 0.1).collect();
        let want = reference(&g, &x, &w, &b);
        for isa in Isa::available() {
            let op = ChannelLastDepthwise::new(g, w.clone(), b.clone(), isa).unwrap();
            // Poison the output so that an element left unwritten shows.
            let mut y = vec![f32::NAN; g.output_len()];
            op.run(&x, &mut y).unwrap();
            for (i, (got, want)) in y.iter().zip(&want).enumerate() {
                assert!(
                    (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "{isa:?} {g:?}: element {i} is {got}, direct convolution gives {want}"
                );
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
        g.oh = 8;
        g.ow = 8;
        check(g);
        let mut g = geometry(1, 16, 12, 21, 5, 2, 1);
        g.oh = 8;
        g.ow = 6;
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
            let g = Geometry {
                n, h, w, c, kh: k, kw: k, sh: s, sw: s, pad_top, pad_left,
                oh: (h + pad_top + extra_bottom - k) / s + 1,
                ow: (w + pad_left + extra_right - k) / s + 1,
            };
            check(g);
        }
    }
}
