//! The stem convolution of an image network: few input channels (the image's three), read
//! planar, written channel-last.
//!
//! With three input channels a convolution is 27 multiply-adds per output channel and pixel,
//! too little for a matrix product to repay its packing: tract builds an im2col view and runs
//! a skinny product, then the next layer moves the result channel-last. [`PlanarStem`] reads
//! each input value once per tap, broadcast against a vector of output-channel weights, for
//! four interior pixels at a time, and writes the channel-last activations the rest of the
//! network reads, so the axis move disappears with it.
//!
//! [`lower`] replaces every float `Conv` with at most [`MAX_INPUT_CHANNELS`] input channels on
//! `NCHW` (or unbatched `CHW`) data with this op followed by a move back to channels-first,
//! which declutter then cancels against the next layer's move to channel-last.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::conv::Conv;

use super::conv::{match_conv, ConvOp, Job, Shape};
use super::lanes::{ld, st, Clip, Col, Isa, Lanes, Row, Window};

/// Convolutions with more input channels than this stay matrix products.
pub const MAX_INPUT_CHANNELS: usize = 4;

/// Shape of one stem convolution: input `[n, cin, h, w]`, output `[n, oh, ow, cout]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Geometry {
    pub n: usize,
    pub cin: usize,
    pub cout: usize,
    pub win: Window,
}

#[cfg(test)]
impl Geometry {
    fn input_len(&self) -> usize {
        self.n * self.cin * self.win.h * self.win.w
    }

    fn output_len(&self) -> usize {
        self.n * self.win.oh * self.win.ow * self.cout
    }
}

/// Convolution of planar `f32` input into channel-last output, constant weights (tap-major,
/// `[cin * kh * kw, cout]`, tap `(ci * kh + ky) * kw + kx`) and bias.
pub type PlanarStem = ConvOp<Geometry>;

impl Shape for Geometry {
    const NAME: &'static str = "PlanarStem";

    fn batches(&self) -> usize {
        self.n
    }

    fn window(&self) -> &Window {
        &self.win
    }

    fn output_channels(&self) -> usize {
        self.cout
    }

    /// Every input channel's kernel window.
    fn taps(&self) -> usize {
        self.cin * self.win.taps()
    }

    fn item_input_shape(&self) -> TVec<usize> {
        tvec![self.cin, self.win.h, self.win.w]
    }

    #[inline(always)]
    unsafe fn one<L: Lanes>(&self, job: &Job, n: usize, oy: usize, row: Row, ox: usize) {
        let (x, yrow) = self.at(job, n, oy);
        // SAFETY: see `blocks`.
        unsafe { blocks::<L>(self, job, row, ox, false, x, yrow) }
    }

    #[inline(always)]
    unsafe fn four<L: Lanes>(&self, job: &Job, n: usize, oy: usize, row: Row, ox: usize) {
        let (x, yrow) = self.at(job, n, oy);
        // SAFETY: see `blocks`.
        unsafe { blocks::<L>(self, job, row, ox, true, x, yrow) }
    }
}

impl Geometry {
    /// Batch item `n`'s input planes and output row `oy`.
    fn at(&self, job: &Job, n: usize, oy: usize) -> (*const f32, *mut f32) {
        let win = &self.win;
        (
            job.x.wrapping_add(n * self.cin * win.h * win.w),
            job.y.wrapping_add((n * win.oh + oy) * win.ow * self.cout),
        )
    }
}

/// Replaces every float, undilated, ungrouped `Conv` with at most [`MAX_INPUT_CHANNELS`] input
/// channels on `NCHW` or `CHW` data, constant weights and bias, by a [`PlanarStem`] and a move
/// back to channels-first. Returns how many there are.
pub fn lower(model: &mut TypedModel, isa: Isa) -> TractResult<usize> {
    Rewriter::<Isa>::default()
        .with_rule_for("planar-stem", |isa, model, node, name, op: &Conv| {
            lower_one(model, node, name, op, *isa)
        })
        .rewrite(&isa, model)?;
    Ok(model
        .nodes
        .iter()
        .filter(|n| n.op_is::<PlanarStem>())
        .count())
}

fn lower_one(
    model: &TypedModel,
    node: &TypedNode,
    name: &str,
    op: &Conv,
    isa: Isa,
) -> TractResult<Option<TypedModelPatch>> {
    rule_if!(op.group == 1 && op.input_channels() <= MAX_INPUT_CHANNELS);
    rule_if_some!(conv = match_conv(model, node, op)?);
    let (c_axis, last) = conv.channel_axes();
    let geo = Geometry {
        n: conv.n,
        cin: conv.cin,
        cout: conv.cout,
        win: conv.win,
    };
    let mut stem = PlanarStem::new(geo, conv.weights, conv.bias, isa)?;
    if !conv.batched {
        stem = stem.unbatched()?;
    }
    let mut patch = TypedModelPatch::default();
    let x = patch.tap_model(model, node.inputs[0])?;
    let y = patch.wire_node(name, stem, &[x])?;
    let y = patch.wire_node(format!("{name}.nchw_out"), AxisOp::Move(last, c_axis), &y)?;
    patch.shunt_outside(model, node.id.into(), y[0])?;
    Ok(Some(patch))
}

/// Every block of output channels of pixel `ox`, or of the four interior pixels from `ox` when
/// `quad`. (A function, not a closure: a closure would not inherit the caller's target
/// features, and the vector intrinsics inside it would become calls.)
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn blocks<L: Lanes>(
    g: &Geometry,
    job: &Job,
    row: Row,
    ox: usize,
    quad: bool,
    x: *const f32,
    yrow: *mut f32,
) {
    let full = g.cout / L::N * L::N;
    let tail = g.cout - full;
    let col = g.win.col(ox);
    let (clip, w, b) = (job.clip, job.w, job.b);
    // SAFETY: every input index is channel * plane + (row within [0, h)) * w + (column within
    // [0, w)) of batch item `n < g.n`, the rows clipped by `Row` and the columns by
    // `interior_columns` (for `quad`) or by the pixel's own `Col`; every output index is below
    // the output's length.
    unsafe {
        let mut cb = 0;
        while cb < full {
            if quad {
                quad_block::<L, false>(g, clip, row, ox, x, w, b, yrow, cb, L::N);
            } else {
                pixel_block::<L, false>(g, clip, row, col, x, w, b, yrow, ox, cb, L::N);
            }
            cb += L::N;
        }
        if tail > 0 {
            if quad {
                quad_block::<L, true>(g, clip, row, ox, x, w, b, yrow, full, tail);
            } else {
                pixel_block::<L, true>(g, clip, row, col, x, w, b, yrow, ox, full, tail);
            }
        }
    }
}

/// One output pixel's block of output channels, its taps clipped to the input.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn pixel_block<L: Lanes, const PART: bool>(
    g: &Geometry,
    clip: Clip,
    row: Row,
    col: Col,
    x: *const f32,
    w: *const f32,
    b: *const f32,
    yrow: *mut f32,
    ox: usize,
    cb: usize,
    lanes: usize,
) {
    let win = &g.win;
    unsafe {
        let mut acc = ld::<L, PART>(b.add(cb), lanes);
        for ci in 0..g.cin {
            for ky in row.ky_lo..row.ky_hi {
                let xrow = x.offset(
                    (ci * win.h) as isize * win.w as isize
                        + (row.iy0 + ky as isize) * win.w as isize,
                );
                for kx in col.kx_lo..col.kx_hi {
                    let xv = L::splat(*xrow.offset(col.ix0 + kx as isize));
                    let t = (ci * win.kh + ky) * win.kw + kx;
                    acc = L::fma(ld::<L, PART>(w.add(t * g.cout + cb), lanes), xv, acc);
                }
            }
        }
        st::<L, PART>(yrow.add(ox * g.cout + cb), lanes, clip.apply::<L>(acc));
    }
}

/// Four interior output pixels `ox..ox + 4` of one block of output channels, sharing each
/// weight load.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn quad_block<L: Lanes, const PART: bool>(
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
    let win = &g.win;
    unsafe {
        let bias = ld::<L, PART>(b.add(cb), lanes);
        let (mut a0, mut a1, mut a2, mut a3) = (bias, bias, bias, bias);
        let ix0 = ox * win.sw - win.pad_left;
        let sw = win.sw;
        for ci in 0..g.cin {
            for ky in row.ky_lo..row.ky_hi {
                let xrow = x.offset(
                    (ci * win.h) as isize * win.w as isize
                        + (row.iy0 + ky as isize) * win.w as isize,
                );
                for kx in 0..win.kw {
                    let t = (ci * win.kh + ky) * win.kw + kx;
                    let wv = ld::<L, PART>(w.add(t * g.cout + cb), lanes);
                    let p = xrow.add(ix0 + kx);
                    a0 = L::fma(wv, L::splat(*p), a0);
                    a1 = L::fma(wv, L::splat(*p.add(sw)), a1);
                    a2 = L::fma(wv, L::splat(*p.add(2 * sw)), a2);
                    a3 = L::fma(wv, L::splat(*p.add(3 * sw)), a3);
                }
            }
        }
        let out = yrow.add(ox * g.cout + cb);
        st::<L, PART>(out, lanes, clip.apply::<L>(a0));
        st::<L, PART>(out.add(g.cout), lanes, clip.apply::<L>(a1));
        st::<L, PART>(out.add(2 * g.cout), lanes, clip.apply::<L>(a2));
        st::<L, PART>(out.add(3 * g.cout), lanes, clip.apply::<L>(a3));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Direct convolution in f64, the reference.
    fn reference(g: &Geometry, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
        let win = &g.win;
        let mut y = vec![0f32; g.output_len()];
        for n in 0..g.n {
            for oy in 0..win.oh {
                for ox in 0..win.ow {
                    for co in 0..g.cout {
                        let mut acc = b[co] as f64;
                        for ci in 0..g.cin {
                            for ky in 0..win.kh {
                                for kx in 0..win.kw {
                                    let iy = (oy * win.sh + ky) as isize - win.pad_top as isize;
                                    let ix = (ox * win.sw + kx) as isize - win.pad_left as isize;
                                    if iy < 0
                                        || ix < 0
                                        || iy >= win.h as isize
                                        || ix >= win.w as isize
                                    {
                                        continue;
                                    }
                                    let xi = ((n * g.cin + ci) * win.h + iy as usize) * win.w
                                        + ix as usize;
                                    let t = (ci * win.kh + ky) * win.kw + kx;
                                    acc += x[xi] as f64 * w[t * g.cout + co] as f64;
                                }
                            }
                        }
                        y[((n * win.oh + oy) * win.ow + ox) * g.cout + co] = acc as f32;
                    }
                }
            }
        }
        y
    }

    fn check(g: Geometry) {
        let x: Vec<f32> = (0..g.input_len())
            .map(|i| ((i as f32) * 0.137).sin())
            .collect();
        let w: Vec<f32> = (0..g.taps() * g.cout)
            .map(|i| ((i as f32) * 0.091).cos() * 0.3)
            .collect();
        let b: Vec<f32> = (0..g.cout).map(|i| i as f32 * 0.05 - 0.1).collect();
        let raw = reference(&g, &x, &w, &b);
        // Unbounded, and with a clip that cuts the outputs on both sides (ReLU6 scaled to them).
        for clip in [Clip::default(), Clip { lo: -0.1, hi: 0.6 }] {
            let want: Vec<f32> = raw.iter().map(|v| v.max(clip.lo).min(clip.hi)).collect();
            for isa in Isa::available() {
                let op = PlanarStem::new(g, w.clone(), b.clone(), isa)
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

    fn geometry(h: usize, cout: usize, k: usize, s: usize, pad: usize, extra: usize) -> Geometry {
        let o = (h + pad + extra - k) / s + 1;
        Geometry {
            n: 1,
            cin: 3,
            cout,
            win: Window {
                h,
                w: h,
                kh: k,
                kw: k,
                sh: s,
                sw: s,
                pad_top: pad,
                pad_left: pad,
                oh: o,
                ow: o,
            },
        }
    }

    #[test]
    fn matches_direct_convolution_on_network_stems() {
        // 3x3 stride 2 into 32, 8, 16 and 24 channels; TensorFlow SAME pads only after on even
        // sides (pad 0, extra 1), PyTorch-style symmetric padding elsewhere.
        check(geometry(32, 32, 3, 2, 0, 1));
        check(geometry(31, 8, 3, 2, 1, 1));
        check(geometry(20, 16, 3, 2, 0, 1));
        check(geometry(24, 24, 3, 2, 1, 1));
        check(geometry(9, 21, 5, 1, 2, 2));
        check(geometry(2, 7, 3, 1, 1, 1));
    }

    #[test]
    fn rejects_mismatched_buffers() {
        let g = geometry(4, 8, 3, 1, 1, 1);
        assert!(PlanarStem::new(g, vec![0.0; 10], vec![0.0; 8], Isa::Portable).is_err());
        assert!(PlanarStem::new(g, vec![0.0; 216], vec![0.0; 7], Isa::Portable).is_err());
        let op = PlanarStem::new(g, vec![0.0; 216], vec![0.0; 8], Isa::Portable).unwrap();
        let mut y = vec![0.0; 128];
        assert!(op.run(&[0.0; 47], &mut y).is_err());
        assert!(op.run(&[0.0; 48], &mut y[..100]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn matches_direct_convolution(
            n in 1usize..3, cin in 1usize..5, h in 1usize..12, w in 1usize..12,
            cout in 1usize..40, k in 1usize..6, s in 1usize..3, pad_top in 0usize..3,
            pad_left in 0usize..3, extra_bottom in 0usize..3, extra_right in 0usize..3,
        ) {
            prop_assume!(h + pad_top + extra_bottom >= k && w + pad_left + extra_right >= k);
            let g = Geometry { n, cin, cout, win: Window {
                h, w, kh: k, kw: k, sh: s, sw: s, pad_top, pad_left,
                oh: (h + pad_top + extra_bottom - k) / s + 1,
                ow: (w + pad_left + extra_right - k) / s + 1,
            } };
            check(g);
        }
    }
}
