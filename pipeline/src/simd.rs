//! SIMD chosen at run time: hot loops are written as plain, branch-free Rust that LLVM
//! vectorises, and [`multiversion!`] compiles each three times — for the x86-64 baseline, with
//! AVX2, and with AVX-512 (F, BW, VL, DQ) — and runs the best one this CPU has. The builds
//! compute the same bytes: no fast-math, no FMA contraction, and the ops' tests run every level
//! the CPU has against the baseline (`for_each_level`).
//!
//! `TWOVIEW_SIMD=baseline|avx2|avx512` caps the level (read once), e.g. to measure what a CPU
//! without AVX-512 would get.

use std::sync::OnceLock;

/// A set of instructions the hot loops can be compiled for, in increasing order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// x86-64 baseline (SSE2), or whatever the target builds for off x86.
    Baseline,
    /// AVX2.
    Avx2,
    /// AVX-512 F + BW + VL + DQ (with AVX2).
    Avx512,
}

impl Level {
    /// The name `TWOVIEW_SIMD` takes.
    pub fn name(self) -> &'static str {
        match self {
            Level::Baseline => "baseline",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }

    fn parse(s: &str) -> Option<Level> {
        [Level::Baseline, Level::Avx2, Level::Avx512].into_iter().find(|l| l.name() == s)
    }
}

/// The best level this CPU runs.
pub fn detected() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f")
            && has!("avx512bw")
            && has!("avx512vl")
            && has!("avx512dq")
            && has!("avx2")
        {
            return Level::Avx512;
        }
        if has!("avx2") {
            return Level::Avx2;
        }
    }
    Level::Baseline
}

/// The level the ops run at: [`detected`], capped by `TWOVIEW_SIMD` (an unknown value is
/// reported once on stderr and ignored).
pub fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    let level = *LEVEL.get_or_init(|| {
        let cpu = detected();
        match std::env::var("TWOVIEW_SIMD") {
            Ok(v) => match Level::parse(&v) {
                Some(cap) => cpu.min(cap),
                None => {
                    eprintln!(
                        "twoview: TWOVIEW_SIMD={v:?} is not baseline, avx2 or avx512; ignored"
                    );
                    cpu
                }
            },
            Err(_) => cpu,
        }
    });
    #[cfg(test)]
    let level = level.min(CAP.get());
    level
}

#[cfg(test)]
thread_local! {
    static CAP: std::cell::Cell<Level> = const { std::cell::Cell::new(Level::Avx512) };
}

/// Runs `f` once at every level this CPU has (this thread only), passing the level: the tests
/// compare each against [`Level::Baseline`].
#[cfg(test)]
pub(crate) fn for_each_level(mut f: impl FnMut(Level)) {
    let top = level();
    for l in [Level::Baseline, Level::Avx2, Level::Avx512] {
        if l <= top {
            CAP.set(l);
            f(l);
        }
    }
    CAP.set(Level::Avx512);
}

/// `multiversion!(pub fn name(args) = generic_fn;)` defines `name`, which runs `generic_fn`
/// (an `#[inline(always)]` function) compiled for the [`level`] this CPU runs.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) = $generic:path;) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512dq")]
                fn avx512($($arg: $ty),*) {
                    $generic($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) {
                    $generic($($arg),*)
                }
                match $crate::simd::level() {
                    // SAFETY: level() is at most what the CPU has (detected()).
                    $crate::simd::Level::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    $crate::simd::Level::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::simd::Level::Baseline => {}
                }
            }
            $generic($($arg),*)
        }
    };
}
pub(crate) use multiversion;

/// `x as i32` without the saturation: plain truncation (`cvttps2dq`) vectorises; Rust's
/// saturating `as` does not always.
///
/// # Safety
///
/// `x` must be finite and its truncation must fit in an `i32` (|x| < 2^31): anything else is
/// undefined behaviour (`f32::to_int_unchecked`). Checked in debug builds.
#[inline(always)]
pub(crate) unsafe fn trunc_i32(x: f32) -> i32 {
    debug_assert!(x.is_finite() && x.abs() < 2.0e9, "{x} out of range");
    // SAFETY: the caller's contract, above.
    unsafe { x.to_int_unchecked() }
}
