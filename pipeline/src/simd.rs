//! SIMD chosen once per call site at run time: hot loops are written as plain, branch-free Rust
//! that LLVM vectorises, and compiled twice — for the x86-64 baseline and with AVX2 — by
//! [`multiversion!`]. The two builds compute the same bytes (the ops' tests compare them).

/// Whether this CPU has AVX2 (std caches the answer).
#[inline]
pub(crate) fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `multiversion!(pub fn name(args) = generic_fn;)` defines `name`, which runs `generic_fn`
/// (an `#[inline(always)]` function) compiled with AVX2 when the CPU has it, else as built.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) = $generic:path;) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) {
                    $generic($($arg),*)
                }
                if $crate::simd::has_avx2() {
                    // SAFETY: the CPU has AVX2, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $generic($($arg),*)
        }
    };
}
pub(crate) use multiversion;

/// `x as i32` for an `x` the caller knows to be finite and inside i32's range. Plain truncation
/// (`cvttps2dq`) vectorises; Rust's saturating `as` does not always.
#[inline(always)]
pub(crate) fn trunc_i32(x: f32) -> i32 {
    debug_assert!(x.is_finite() && x.abs() < 2.0e9, "{x} out of range");
    // SAFETY: finite and within i32 (the callers clamp or bound their values; checked in debug).
    unsafe { x.to_int_unchecked() }
}

/// [`trunc_i32`] for f64.
#[inline(always)]
pub(crate) fn trunc_i32_f64(x: f64) -> i32 {
    debug_assert!(x.is_finite() && x.abs() < 2.0e9, "{x} out of range");
    // SAFETY: as in trunc_i32.
    unsafe { x.to_int_unchecked() }
}
