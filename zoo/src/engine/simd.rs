//! Vector-register state left behind by inference kernels.
//!
//! tract's x86-64 matrix and convolution kernels are hand-written AVX-512 that return
//! without `vzeroupper`, so after a run the upper halves of the vector registers stay
//! "dirty" on the calling thread. On the Xeon this was measured on, every later scalar or
//! SSE floating-point instruction on that thread then pays for it: a loop of `f64::exp` ran
//! 25-30x slower after one `mobilenet_v1_025_128` run than before it, and back at full speed
//! after `vzeroupper`. That loop is what calibration, softmax, premodel features and the
//! next image's decode look like, so each engine call ends with [`clear_upper_state`].
//!
//! Whether the state is dirty can be read exactly, without timing anything: `XGETBV` with
//! `ECX = 1` returns the XINUSE bitmap, whose bit 2 (AVX upper halves) and bit 6 (upper
//! halves of the AVX-512 registers) are what `vzeroupper` clears. [`upper_state_in_use`]
//! reads them where the CPU supports it; the tests assert them clear after every engine call.

/// XINUSE bits that `vzeroupper` clears: upper 128 bits of YMM0-15 (AVX) and upper 256 bits
/// of ZMM0-15 (AVX-512 `ZMM_Hi256`).
#[cfg(target_arch = "x86_64")]
const DIRTY_UPPER: u64 = (1 << 2) | (1 << 6);

/// Zeroes the upper halves of the vector registers when the CPU has AVX; nothing elsewhere.
#[inline]
pub fn clear_upper_state() {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU supports AVX, checked just above.
        unsafe { zeroupper() }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn zeroupper() {
    std::arch::x86_64::_mm256_zeroupper();
}

/// Whether the upper halves of the vector registers are dirty on this thread, or `None`
/// where the CPU cannot tell (no XSAVE, or no `XGETBV` with `ECX = 1`) or is not x86-64.
pub fn upper_state_in_use() -> Option<bool> {
    #[cfg(target_arch = "x86_64")]
    {
        if !std::arch::is_x86_feature_detected!("xsave") {
            return None;
        }
        // CPUID.(EAX=0DH, ECX=1):EAX bit 2: XGETBV with ECX = 1 is supported.
        let leaf = std::arch::x86_64::__cpuid_count(0xd, 1);
        if leaf.eax & (1 << 2) == 0 {
            return None;
        }
        // SAFETY: XSAVE and XGETBV with ECX = 1 are supported, checked just above.
        let xinuse = unsafe { xinuse() };
        Some(xinuse & DIRTY_UPPER != 0)
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "xsave")]
unsafe fn xinuse() -> u64 {
    std::arch::x86_64::_xgetbv(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn clearing_leaves_the_upper_state_clean() {
        if !std::arch::is_x86_feature_detected!("avx") {
            return;
        }
        dirty_the_upper_state();
        if let Some(dirty) = upper_state_in_use() {
            assert!(
                dirty,
                "a 256-bit operation did not register as dirty upper state"
            );
        }
        clear_upper_state();
        if let Some(dirty) = upper_state_in_use() {
            assert!(!dirty, "vzeroupper left the upper state dirty");
        }
    }

    /// A 256-bit add through the upper halves of YMM registers.
    #[cfg(target_arch = "x86_64")]
    fn dirty_the_upper_state() {
        #[target_feature(enable = "avx")]
        fn add256(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
            use std::arch::x86_64::*;
            let mut out = [0f32; 8];
            // SAFETY: the pointers are to 8-element arrays; AVX is enabled on this function.
            unsafe {
                let v = _mm256_add_ps(_mm256_loadu_ps(a.as_ptr()), _mm256_loadu_ps(b.as_ptr()));
                _mm256_storeu_ps(out.as_mut_ptr(), v);
            }
            out
        }
        // SAFETY: the caller checked that the CPU supports AVX.
        let out = unsafe {
            add256(
                std::hint::black_box([1.0; 8]),
                std::hint::black_box([2.0; 8]),
            )
        };
        assert_eq!(std::hint::black_box(out), [3.0; 8]);
    }
}
