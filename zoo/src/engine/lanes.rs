//! Vector lanes for Triage's convolution kernels: which instruction set runs, the handful of
//! vector operations the kernels use over it, and the spatial window arithmetic they share.
//!
//! Kernels are written once, generic over [`Lanes`] and `#[inline(always)]`, and instantiated
//! inside `#[target_feature]` wrappers, so each instruction set gets its own fully inlined
//! copy; [`Isa::detect`] picks one at load.

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
        Isa::available().into_iter().next().unwrap_or_default()
    }

    /// Every implementation this CPU can run, widest first; `Portable` always comes last.
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

/// The vector operations the convolution needs, over `N` lanes of `f32`.
///
/// # Safety
/// Every pointer must be valid for the lanes read or written (`N`, or `n` for the partial
/// forms), unaligned allowed; an implementation may only be used where the CPU has its
/// instruction set.
pub trait Lanes {
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
    /// `v` in every lane.
    unsafe fn splat(v: f32) -> Self::V;
    /// Lane-wise maximum and minimum (`b` where `a` is NaN, like `f32::max` and `f32::min`).
    unsafe fn max(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn min(a: Self::V, b: Self::V) -> Self::V;
}

/// Eight lanes as a plain array, vectorized by the compiler for whatever the target has.
pub struct Portable;

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

    #[inline(always)]
    unsafe fn splat(v: f32) -> [f32; 8] {
        [v; 8]
    }

    #[inline(always)]
    unsafe fn max(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|i| a[i].max(b[i]))
    }

    #[inline(always)]
    unsafe fn min(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|i| a[i].min(b[i]))
    }
}

#[cfg(target_arch = "x86_64")]
pub mod x86 {
    use std::arch::x86_64::*;

    use super::Lanes;

    pub struct Avx512;

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

        #[inline(always)]
        unsafe fn splat(v: f32) -> __m512 {
            unsafe { _mm512_set1_ps(v) }
        }

        #[inline(always)]
        unsafe fn max(a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_max_ps(a, b) }
        }

        #[inline(always)]
        unsafe fn min(a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_min_ps(a, b) }
        }
    }

    pub struct Avx2;

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

        #[inline(always)]
        unsafe fn splat(v: f32) -> __m256 {
            unsafe { _mm256_set1_ps(v) }
        }

        #[inline(always)]
        unsafe fn max(a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_max_ps(a, b) }
        }

        #[inline(always)]
        unsafe fn min(a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_min_ps(a, b) }
        }
    }
}

/// Loads `lanes` values (all `L::N` when `PART` is false).
#[inline(always)]
pub unsafe fn ld<L: Lanes, const PART: bool>(p: *const f32, lanes: usize) -> L::V {
    unsafe {
        if PART {
            L::load_part(p, lanes)
        } else {
            L::load(p)
        }
    }
}

/// Stores `lanes` values (all `L::N` when `PART` is false).
#[inline(always)]
pub unsafe fn st<L: Lanes, const PART: bool>(p: *mut f32, lanes: usize, v: L::V) {
    unsafe {
        if PART {
            L::store_part(p, lanes, v)
        } else {
            L::store(p, v)
        }
    }
}

/// Bounds every output is clamped to before it is stored: the activation (ReLU6 is
/// `[0, 6]`) folded into the convolution. The default is unbounded.
#[derive(Debug, Clone, Copy)]
pub struct Clip {
    pub lo: f32,
    pub hi: f32,
}

impl Default for Clip {
    fn default() -> Self {
        Clip {
            lo: f32::NEG_INFINITY,
            hi: f32::INFINITY,
        }
    }
}

impl PartialEq for Clip {
    fn eq(&self, other: &Self) -> bool {
        self.lo.to_bits() == other.lo.to_bits() && self.hi.to_bits() == other.hi.to_bits()
    }
}

impl Eq for Clip {}

impl Clip {
    /// `min(max(v, lo), hi)`, lane-wise.
    ///
    /// # Safety
    /// The CPU has `L`'s instruction set.
    #[inline(always)]
    pub unsafe fn apply<L: Lanes>(self, v: L::V) -> L::V {
        unsafe { L::min(L::max(v, L::splat(self.lo)), L::splat(self.hi)) }
    }

    /// This clip followed by `max(_, lo)`, if that is still one clip.
    pub fn then_max(self, lo: f32) -> Option<Clip> {
        let lo = self.lo.max(lo);
        (lo <= self.hi).then_some(Clip { lo, hi: self.hi })
    }

    /// This clip followed by `min(_, hi)`.
    pub fn then_min(self, hi: f32) -> Option<Clip> {
        let hi = self.hi.min(hi);
        (self.lo <= hi).then_some(Clip { lo: self.lo, hi })
    }
}

/// The spatial side of a convolution: input `h x w`, kernel `kh x kw`, strides, the padding
/// before each axis (what pads after follows from the output size), output `oh x ow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub oh: usize,
    pub ow: usize,
}

/// Where one output row reads: the input row of its first kernel row (may be negative) and
/// the kernel rows `ky_lo..ky_hi` that fall inside the input.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub iy0: isize,
    pub ky_lo: usize,
    pub ky_hi: usize,
}

/// Where one output column reads, the same way.
#[derive(Debug, Clone, Copy)]
pub struct Col {
    pub ix0: isize,
    pub kx_lo: usize,
    pub kx_hi: usize,
}

impl Window {
    /// Whether the sizes describe a convolution at all.
    pub fn is_valid(&self) -> bool {
        self.kh > 0 && self.kw > 0 && self.sh > 0 && self.sw > 0
    }

    pub fn taps(&self) -> usize {
        self.kh * self.kw
    }

    pub fn row(&self, oy: usize) -> Row {
        let iy0 = (oy * self.sh) as isize - self.pad_top as isize;
        let ky_lo = (-iy0).clamp(0, self.kh as isize) as usize;
        let ky_hi = (self.h as isize - iy0).clamp(ky_lo as isize, self.kh as isize) as usize;
        Row { iy0, ky_lo, ky_hi }
    }

    pub fn col(&self, ox: usize) -> Col {
        let ix0 = (ox * self.sw) as isize - self.pad_left as isize;
        let kx_lo = (-ix0).clamp(0, self.kw as isize) as usize;
        let kx_hi = (self.w as isize - ix0).clamp(kx_lo as isize, self.kw as isize) as usize;
        Col { ix0, kx_lo, kx_hi }
    }

    /// Output columns `[lo, hi)` whose every tap lies inside the input row.
    pub fn interior_columns(&self) -> (usize, usize) {
        let lo = self.pad_left.div_ceil(self.sw).min(self.ow);
        let hi = if self.w + self.pad_left >= self.kw {
            ((self.w + self.pad_left - self.kw) / self.sw + 1).min(self.ow)
        } else {
            0
        };
        (lo, hi.max(lo))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn apply(c: Clip, v: f32) -> f32 {
        v.max(c.lo).min(c.hi)
    }

    proptest! {
        #[test]
        fn folded_max_and_min_equal_the_ops_after_the_clip(
            lo in -8f32..8.0, width in 0f32..8.0, c in -10f32..10.0, v in -20f32..20.0,
        ) {
            let clip = Clip { lo, hi: lo + width };
            if let Some(folded) = clip.then_max(c) {
                prop_assert_eq!(apply(folded, v), apply(clip, v).max(c));
            } else {
                // Only a constant result is refused.
                prop_assert!(c > clip.hi);
            }
            if let Some(folded) = clip.then_min(c) {
                prop_assert_eq!(apply(folded, v), apply(clip, v).min(c));
            } else {
                prop_assert!(c < clip.lo);
            }
        }
    }

    #[test]
    fn interior_columns_have_every_tap_inside() {
        for w in 1..12 {
            for kw in 1..6 {
                for sw in 1..3 {
                    for pad_left in 0..3 {
                        for extra in 0..3 {
                            if w + pad_left + extra < kw {
                                continue;
                            }
                            let win = Window {
                                h: 1,
                                w,
                                kh: 1,
                                kw,
                                sh: 1,
                                sw,
                                pad_top: 0,
                                pad_left,
                                oh: 1,
                                ow: (w + pad_left + extra - kw) / sw + 1,
                            };
                            let (lo, hi) = win.interior_columns();
                            for ox in 0..win.ow {
                                let c = win.col(ox);
                                let full = c.kx_lo == 0 && c.kx_hi == kw;
                                assert_eq!((lo..hi).contains(&ox), full, "{win:?} column {ox}");
                            }
                        }
                    }
                }
            }
        }
    }
}
