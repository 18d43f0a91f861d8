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

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::conv::Conv;

use super::conv::{lower_convs, match_conv, ConvOp, Job, Pixel, Shape};
use super::lanes::{ld, Isa, Lanes, Window};

/// Shape of one depthwise convolution: input `[n, h, w, c]`, output `[n, oh, ow, c]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Geometry {
    pub n: usize,
    pub c: usize,
    pub win: Window,
}

/// Depthwise convolution of channel-last `f32` data with constant weights (tap-major,
/// `[kh * kw, c]`) and bias.
pub type ChannelLastDepthwise = ConvOp<Geometry>;

impl Shape for Geometry {
    const NAME: &'static str = "ChannelLastDepthwise";

    fn batches(&self) -> usize {
        self.n
    }

    fn window(&self) -> &Window {
        &self.win
    }

    fn output_channels(&self) -> usize {
        self.c
    }

    fn taps(&self) -> usize {
        self.win.taps()
    }

    fn item_input_shape(&self) -> TVec<usize> {
        tvec![self.win.h, self.win.w, self.c]
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
        let (c, row, col) = (g.c, at.row, g.win.col(at.ox));
        // SAFETY: every input index is (row within [0, h)) * w + (column within [0, w)) of batch
        // item `at.n < n`, the rows clipped by `Row` and the columns by the pixel's `Col`; the
        // output index is below the output's length.
        unsafe {
            let mut acc = ld::<L, PART>(job.b.add(cb), lanes);
            for ky in row.ky_lo..row.ky_hi {
                let xrow = x.offset((row.iy0 + ky as isize) * (g.win.w * c) as isize);
                for kx in col.kx_lo..col.kx_hi {
                    let xv = ld::<L, PART>(
                        xrow.offset((col.ix0 + kx as isize) * c as isize + cb as isize),
                        lanes,
                    );
                    let wv = ld::<L, PART>(job.w.add((ky * g.win.kw + kx) * c + cb), lanes);
                    acc = L::fma(wv, xv, acc);
                }
            }
            job.store::<L, PART, 1>(yrow.add(at.ox * c + cb), 0, lanes, [acc]);
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
        let (c, row) = (g.c, at.row);
        // SAFETY: as in `one`, the columns inside `interior_columns`.
        unsafe {
            let step = g.win.sw * c;
            let bias = ld::<L, PART>(job.b.add(cb), lanes);
            let (mut a0, mut a1, mut a2, mut a3) = (bias, bias, bias, bias);
            let ix0 = at.ox * g.win.sw - g.win.pad_left;
            for ky in row.ky_lo..row.ky_hi {
                let xrow = x.offset((row.iy0 + ky as isize) * (g.win.w * c) as isize);
                let wrow = job.w.add(ky * g.win.kw * c + cb);
                for kx in 0..g.win.kw {
                    let wv = ld::<L, PART>(wrow.add(kx * c), lanes);
                    let p = xrow.add((ix0 + kx) * c + cb);
                    a0 = L::fma(wv, ld::<L, PART>(p, lanes), a0);
                    a1 = L::fma(wv, ld::<L, PART>(p.add(step), lanes), a1);
                    a2 = L::fma(wv, ld::<L, PART>(p.add(2 * step), lanes), a2);
                    a3 = L::fma(wv, ld::<L, PART>(p.add(3 * step), lanes), a3);
                }
            }
            job.store::<L, PART, 4>(yrow.add(at.ox * c + cb), c, lanes, [a0, a1, a2, a3]);
        }
    }
}

impl Geometry {
    /// Batch item `n`'s input, and output row `oy`'s first value.
    #[inline(always)]
    fn at(&self, job: &Job, at: Pixel) -> (*const f32, *mut f32) {
        let win = &self.win;
        job.rows(at, win.h * win.w * self.c, win, self.c)
    }
}

/// Replaces every float, undilated depthwise `Conv` on `NCHW` (or unbatched `CHW`) data with
/// constant weights and bias by a [`ChannelLastDepthwise`] between axis moves. Returns how many
/// there are.
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
    rule_if!(op.group > 1 && op.input_channels() == op.group && op.output_channels() == op.group);
    rule_if_some!(conv = match_conv(model, node, op)?);
    let (c_axis, last) = conv.channel_axes();
    let geo = Geometry {
        n: conv.n,
        c: conv.cout,
        win: conv.win,
    };
    let dw = conv.into_op(geo, isa)?;
    let mut patch = TypedModelPatch::default();
    let x = patch.tap_model(model, node.inputs[0])?;
    let x = patch.wire_node(format!("{name}.nhwc_in"), AxisOp::Move(c_axis, last), &[x])?;
    let y = patch.wire_node(name, dw, &x)?;
    let y = patch.wire_node(format!("{name}.nhwc_out"), AxisOp::Move(last, c_axis), &y)?;
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
        let mut y = vec![0f32; g.n * g.win.oh * g.win.ow * g.c];
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
        testing::check(g, |x, w, b| reference(&g, x, w, b));
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
