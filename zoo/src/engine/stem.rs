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

use super::conv::{lower_convs, match_conv, ConvOp, Job, Pixel, Shape};
use super::lanes::{ld, Isa, Lanes, Window};

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
    unsafe fn one<L: Lanes, const PART: bool>(
        &self,
        job: &Job,
        at: Pixel,
        cb: usize,
        lanes: usize,
    ) {
        let g = self;
        let (x, yrow) = g.at(job, at);
        let (win, row, col) = (&g.win, at.row, g.win.col(at.ox));
        // SAFETY: every input index is channel * plane + (row within [0, h)) * w + (column within
        // [0, w)) of batch item `at.n < n`, the rows clipped by `Row` and the columns by the
        // pixel's `Col`; the output index is below the output's length.
        unsafe {
            let mut acc = ld::<L, PART>(job.b.add(cb), lanes);
            for ci in 0..g.cin {
                for ky in row.ky_lo..row.ky_hi {
                    let xrow = x.offset(
                        (ci * win.h) as isize * win.w as isize
                            + (row.iy0 + ky as isize) * win.w as isize,
                    );
                    for kx in col.kx_lo..col.kx_hi {
                        let xv = L::splat(*xrow.offset(col.ix0 + kx as isize));
                        let t = (ci * win.kh + ky) * win.kw + kx;
                        acc = L::fma(ld::<L, PART>(job.w.add(t * g.cout + cb), lanes), xv, acc);
                    }
                }
            }
            job.store::<L, PART, 1>(yrow.add(at.ox * g.cout + cb), 0, lanes, [acc]);
        }
    }

    #[inline(always)]
    unsafe fn four<L: Lanes, const PART: bool>(
        &self,
        job: &Job,
        at: Pixel,
        cb: usize,
        lanes: usize,
    ) {
        let g = self;
        let (x, yrow) = g.at(job, at);
        let (win, row) = (&g.win, at.row);
        // SAFETY: as in `one`, the columns inside `interior_columns`.
        unsafe {
            let bias = ld::<L, PART>(job.b.add(cb), lanes);
            let (mut a0, mut a1, mut a2, mut a3) = (bias, bias, bias, bias);
            let ix0 = at.ox * win.sw - win.pad_left;
            let sw = win.sw;
            for ci in 0..g.cin {
                for ky in row.ky_lo..row.ky_hi {
                    let xrow = x.offset(
                        (ci * win.h) as isize * win.w as isize
                            + (row.iy0 + ky as isize) * win.w as isize,
                    );
                    for kx in 0..win.kw {
                        let t = (ci * win.kh + ky) * win.kw + kx;
                        let wv = ld::<L, PART>(job.w.add(t * g.cout + cb), lanes);
                        let p = xrow.add(ix0 + kx);
                        a0 = L::fma(wv, L::splat(*p), a0);
                        a1 = L::fma(wv, L::splat(*p.add(sw)), a1);
                        a2 = L::fma(wv, L::splat(*p.add(2 * sw)), a2);
                        a3 = L::fma(wv, L::splat(*p.add(3 * sw)), a3);
                    }
                }
            }
            let c = g.cout;
            job.store::<L, PART, 4>(yrow.add(at.ox * c + cb), c, lanes, [a0, a1, a2, a3]);
        }
    }
}

impl Geometry {
    /// Batch item `n`'s input planes, and output row `oy`'s first value.
    #[inline(always)]
    fn at(&self, job: &Job, at: Pixel) -> (*const f32, *mut f32) {
        let win = &self.win;
        job.rows(at, self.cin * win.h * win.w, win, self.cout)
    }
}

/// Replaces every float, undilated, ungrouped `Conv` with at most [`MAX_INPUT_CHANNELS`] input
/// channels on `NCHW` or `CHW` data, constant weights and bias, by a [`PlanarStem`] and a move
/// back to channels-first. Returns how many there are.
pub fn lower(model: &mut TypedModel, isa: Isa) -> TractResult<usize> {
    lower_convs::<Geometry>(model, isa, lower_one)
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
    let stem = conv.into_op(geo, isa)?;
    let mut patch = TypedModelPatch::default();
    let x = patch.tap_model(model, node.inputs[0])?;
    let y = patch.wire_node(name, stem, &[x])?;
    let y = patch.wire_node(format!("{name}.nchw_out"), AxisOp::Move(last, c_axis), &y)?;
    patch.shunt_outside(model, node.id.into(), y[0])?;
    Ok(Some(patch))
}

#[cfg(test)]
mod tests {
    use super::super::conv::testing;
    use super::*;
    use proptest::prelude::*;

    /// Direct convolution in f64, the reference.
    fn reference(g: &Geometry, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
        let win = &g.win;
        let mut y = vec![0f32; g.n * win.oh * win.ow * g.cout];
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
        testing::check(g, |x, w, b| reference(&g, x, w, b));
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
