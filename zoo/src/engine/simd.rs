//! Vector-register state left behind by inference kernels.
//!
//! tract's x86-64 matrix and convolution kernels are hand-written AVX-512 that return
//! without `vzeroupper`, so after a run the upper halves of the vector registers stay
//! "dirty" on the calling thread. On the Xeon this was measured on, the scalar and SSE
//! floating point that follows on that thread then runs more than 20x slower, until some
//! function compiled for AVX (LLVM ends those with `vzeroupper`) happens to clear it:
//! `cargo bench -p triage-zoo --bench vector_state` times a softmax of the 1001 logits at
//! 205 us after a raw tract run against 9 us after an engine run. Softmax, calibration and
//! the premodels are exactly that kind of code, so each engine call ends with
//! [`clear_upper_state`].
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

    /// Leaves YMM0's upper half dirty the way a hand-written kernel does. Compiled Rust
    /// cannot: LLVM ends every function that touches 256-bit registers with `vzeroupper`,
    /// which is why only assembly kernels such as tract's leave the state behind. So the
    /// instruction is given as bytes that the compiler does not look into:
    /// `vcmpps ymm0, ymm0, ymm0, 0x0f` (VEX.256 0F C2 /r ib, predicate TRUE: all ones).
    #[cfg(target_arch = "x86_64")]
    fn dirty_the_upper_state() {
        // SAFETY: the caller checked that the CPU supports AVX; the instruction only writes
        // YMM0, which `clobber_abi("C")` declares clobbered.
        unsafe {
            std::arch::asm!(
                ".byte 0xc5, 0xfc, 0xc2, 0xc0, 0x0f",
                clobber_abi("C"),
                options(nostack, nomem)
            );
        }
    }
}
