//! The horizontal pass's two transposes: RGB rows to columns of 4-byte pixels and back. Plain
//! Rust moves a pixel at a time (strided loads and stores, ~2 cycles a pixel); with AVX2 an 8×8
//! block of pixels is widened to 4 bytes (`pshufb`), transposed as 32-bit lanes in registers
//! and stored a column (or a row) at a time. Blocks the vector path cannot take whole — the
//! ragged right and bottom edges, and the last rows of a buffer where its 16-byte loads would
//! read past the end — go through the per-pixel path, so every size is served.

use crate::simd;

/// The side of a vector block, in pixels.
const B: usize = 8;

/// One pixel of `src` (3 bytes at `o`) as 4 bytes, the fourth 0.
#[inline(always)]
fn pixel(src: &[u8], o: usize) -> [u8; 4] {
    [src[o], src[o + 1], src[o + 2], 0]
}

fn rows_to_columns_scalar(
    src: &[u8],
    stride: usize,
    h: usize,
    (xs, ys): (std::ops::Range<usize>, std::ops::Range<usize>),
    dst: &mut [u8],
) {
    for x in xs {
        let col = &mut dst[x * h * 4..][..h * 4];
        for y in ys.clone() {
            col[y * 4..y * 4 + 4].copy_from_slice(&pixel(src, y * stride + x * 3));
        }
    }
}

fn columns_to_rows_scalar(
    src: &[u8],
    h: usize,
    (xs, ys): (std::ops::Range<usize>, std::ops::Range<usize>),
    dst: &mut [u8],
    dst_stride: usize,
) {
    for x in xs {
        for y in ys.clone() {
            let o = (x * h + y) * 4;
            dst[y * dst_stride + x * 3..][..3].copy_from_slice(&src[o..o + 3]);
        }
    }
}

/// RGB rows (`stride` bytes apart, `w`×`h` pixels) to columns of 4-byte pixels:
/// `dst[(x·h + y)·4 ..][..4] = src[y·stride + x·3 ..][..3]` and 0.
///
/// # Panics
///
/// If `src` holds fewer than `h` rows of `w` pixels or `dst` fewer than `w·h·4` bytes.
pub(super) fn rgb_rows_to_columns(src: &[u8], stride: usize, w: usize, h: usize, dst: &mut [u8]) {
    if w == 0 || h == 0 {
        return;
    }
    assert!(stride >= w * 3 && src.len() >= (h - 1) * stride + w * 3, "rows past the source");
    assert!(dst.len() >= w * h * 4, "columns past the destination");
    #[cfg(target_arch = "x86_64")]
    if simd::level() >= simd::Level::Avx2 {
        // SAFETY: level() is at most what the CPU has (AVX2 here); the bounds were checked.
        return unsafe { avx2::rows_to_columns(src, stride, w, h, dst) };
    }
    rows_to_columns_scalar(src, stride, h, (0..w, 0..h), dst);
}

/// Columns of 4-byte pixels (`w` columns of `h`) back to RGB rows `dst_stride` bytes apart.
/// The bytes of a row past its `3w` may be overwritten (the vector path stores 16 bytes at a
/// time), so `dst_stride ≥ 3w + 4`.
///
/// # Panics
///
/// If `src` holds fewer than `w·h·4` bytes, `dst_stride < 3w + 4`, or `dst` is shorter than
/// `h` rows of `dst_stride`.
pub(super) fn columns_to_rgb_rows(
    src: &[u8],
    w: usize,
    h: usize,
    dst: &mut [u8],
    dst_stride: usize,
) {
    if w == 0 || h == 0 {
        return;
    }
    assert!(src.len() >= w * h * 4, "columns past the source");
    assert!(dst_stride >= w * 3 + 4 && dst.len() >= h * dst_stride, "rows past the destination");
    #[cfg(target_arch = "x86_64")]
    if simd::level() >= simd::Level::Avx2 {
        // SAFETY: as in rgb_rows_to_columns.
        return unsafe { avx2::columns_to_rows(src, w, h, dst, dst_stride) };
    }
    columns_to_rows_scalar(src, h, (0..w, 0..h), dst, dst_stride);
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{B, columns_to_rows_scalar, rows_to_columns_scalar};

    /// Transposes eight rows of eight 32-bit lanes in place.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn transpose8(r: &mut [__m256i; B]) {
        let t0 = _mm256_unpacklo_epi32(r[0], r[1]);
        let t1 = _mm256_unpackhi_epi32(r[0], r[1]);
        let t2 = _mm256_unpacklo_epi32(r[2], r[3]);
        let t3 = _mm256_unpackhi_epi32(r[2], r[3]);
        let t4 = _mm256_unpacklo_epi32(r[4], r[5]);
        let t5 = _mm256_unpackhi_epi32(r[4], r[5]);
        let t6 = _mm256_unpacklo_epi32(r[6], r[7]);
        let t7 = _mm256_unpackhi_epi32(r[6], r[7]);
        let u0 = _mm256_unpacklo_epi64(t0, t2);
        let u1 = _mm256_unpackhi_epi64(t0, t2);
        let u2 = _mm256_unpacklo_epi64(t1, t3);
        let u3 = _mm256_unpackhi_epi64(t1, t3);
        let u4 = _mm256_unpacklo_epi64(t4, t6);
        let u5 = _mm256_unpackhi_epi64(t4, t6);
        let u6 = _mm256_unpacklo_epi64(t5, t7);
        let u7 = _mm256_unpackhi_epi64(t5, t7);
        r[0] = _mm256_permute2x128_si256::<0x20>(u0, u4);
        r[1] = _mm256_permute2x128_si256::<0x20>(u1, u5);
        r[2] = _mm256_permute2x128_si256::<0x20>(u2, u6);
        r[3] = _mm256_permute2x128_si256::<0x20>(u3, u7);
        r[4] = _mm256_permute2x128_si256::<0x31>(u0, u4);
        r[5] = _mm256_permute2x128_si256::<0x31>(u1, u5);
        r[6] = _mm256_permute2x128_si256::<0x31>(u2, u6);
        r[7] = _mm256_permute2x128_si256::<0x31>(u3, u7);
    }

    /// See [`super::rgb_rows_to_columns`].
    ///
    /// # Safety
    ///
    /// The CPU has AVX2; `src` holds `h ≥ 1` rows of `w ≥ 1` RGB pixels `stride ≥ 3w` bytes
    /// apart; `dst` holds `w·h·4` bytes.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn rows_to_columns(
        src: &[u8],
        stride: usize,
        w: usize,
        h: usize,
        dst: &mut [u8],
    ) {
        // Per 128-bit lane: four 3-byte pixels to four 4-byte ones, the fourth byte zero.
        let widen = _mm256_setr_epi8(
            0, 1, 2, -128, 3, 4, 5, -128, 6, 7, 8, -128, 9, 10, 11, -128, //
            0, 1, 2, -128, 3, 4, 5, -128, 6, 7, 8, -128, 9, 10, 11, -128,
        );
        let (bw, bh) = (w / B * B, h / B * B);
        for y0 in (0..bh).step_by(B) {
            for x0 in (0..bw).step_by(B) {
                let base = y0 * stride + x0 * 3;
                // The last row's second load reads bytes 12..28 of its eight pixels.
                if base + (B - 1) * stride + 28 > src.len() {
                    rows_to_columns_scalar(src, stride, h, (x0..x0 + B, y0..y0 + B), dst);
                    continue;
                }
                let mut r = [_mm256_setzero_si256(); B];
                for (i, r) in r.iter_mut().enumerate() {
                    // SAFETY: base + i·stride + 28 ≤ src.len() (checked above), so both 16-byte
                    // loads are inside `src`.
                    let v = unsafe {
                        let p = src.as_ptr().add(base + i * stride);
                        _mm256_loadu2_m128i(p.add(12).cast(), p.cast())
                    };
                    *r = _mm256_shuffle_epi8(v, widen);
                }
                transpose8(&mut r);
                for (j, c) in r.iter().enumerate() {
                    let o = ((x0 + j) * h + y0) * 4;
                    let out = &mut dst[o..o + 32];
                    // SAFETY: `out` is 32 bytes of `dst`.
                    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), *c) };
                }
            }
        }
        rows_to_columns_scalar(src, stride, h, (bw..w, 0..h), dst);
        rows_to_columns_scalar(src, stride, h, (0..bw, bh..h), dst);
    }

    /// See [`super::columns_to_rgb_rows`].
    ///
    /// # Safety
    ///
    /// The CPU has AVX2; `src` holds `w·h·4` bytes (`w, h ≥ 1`); `dst` holds `h` rows of
    /// `dst_stride ≥ 3w + 4` bytes.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn columns_to_rows(
        src: &[u8],
        w: usize,
        h: usize,
        dst: &mut [u8],
        dst_stride: usize,
    ) {
        // Per 128-bit lane: four 4-byte pixels to twelve bytes, then four zeros.
        let narrow = _mm256_setr_epi8(
            0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -128, -128, -128, -128, //
            0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -128, -128, -128, -128,
        );
        let (bw, bh) = (w / B * B, h / B * B);
        // Columns outer, left to right: a block's second store spills 4 bytes into the next
        // block's pixels (or the row's slack past 3w), which that block writes afterwards.
        for x0 in (0..bw).step_by(B) {
            for y0 in (0..bh).step_by(B) {
                let mut c = [_mm256_setzero_si256(); B];
                for (j, c) in c.iter_mut().enumerate() {
                    let o = ((x0 + j) * h + y0) * 4;
                    let col = &src[o..o + 32];
                    // SAFETY: `col` is 32 bytes of `src`.
                    *c = unsafe { _mm256_loadu_si256(col.as_ptr().cast()) };
                }
                transpose8(&mut c);
                for (i, r) in c.iter().enumerate() {
                    let v = _mm256_shuffle_epi8(*r, narrow);
                    let o = (y0 + i) * dst_stride + x0 * 3;
                    // Bytes x0·3 .. x0·3 + 28 of the row: within dst_stride ≥ 3w + 4.
                    let out = &mut dst[o..o + 28];
                    // SAFETY: both 16-byte stores land in `out` (offsets 0 and 12).
                    unsafe {
                        _mm_storeu_si128(out.as_mut_ptr().cast(), _mm256_castsi256_si128(v));
                        _mm_storeu_si128(
                            out.as_mut_ptr().add(12).cast(),
                            _mm256_extracti128_si256::<1>(v),
                        );
                    }
                }
            }
            columns_to_rows_scalar(src, h, (x0..x0 + B, bh..h), dst, dst_stride);
        }
        columns_to_rows_scalar(src, h, (bw..w, 0..h), dst, dst_stride);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn both_transposes_match_the_per_pixel_copy_at_every_level() {
        let mut rng = Rng::from_seed(3);
        // Sizes below, at and around the block; strides tight and padded; the buffer ending
        // right after the last pixel, so the vector loads' end check is exercised.
        for (w, h) in [(1, 1), (7, 9), (8, 8), (9, 8), (16, 17), (224, 224), (341, 256), (83, 5)] {
            for pad in [0, 5] {
                let stride = w * 3 + pad;
                let src: Vec<u8> =
                    (0..(h - 1) * stride + w * 3).map(|_| rng.below(256) as u8).collect();
                let mut want = vec![0u8; w * h * 4];
                rows_to_columns_scalar(&src, stride, h, (0..w, 0..h), &mut want);
                let out_stride = w * 3 + 4 + pad;
                let mut want_rows = vec![0u8; h * out_stride];
                columns_to_rows_scalar(&want, h, (0..w, 0..h), &mut want_rows, out_stride);
                for y in 0..h {
                    assert_eq!(
                        want_rows[y * out_stride..][..w * 3],
                        src[y * stride..][..w * 3],
                        "round trip {w}x{h}"
                    );
                }
                simd::for_each_level(|level| {
                    let mut cols = vec![0xAAu8; w * h * 4];
                    rgb_rows_to_columns(&src, stride, w, h, &mut cols);
                    assert_eq!(cols, want, "rows to columns {w}x{h}+{pad} at {level:?}");
                    let mut rows = vec![0x55u8; h * out_stride];
                    columns_to_rgb_rows(&cols, w, h, &mut rows, out_stride);
                    for y in 0..h {
                        assert_eq!(
                            rows[y * out_stride..][..w * 3],
                            want_rows[y * out_stride..][..w * 3],
                            "columns to rows {w}x{h}+{pad} at {level:?}, row {y}"
                        );
                    }
                });
            }
        }
    }
}
