//! libjpeg-turbo through its raw TurboJPEG 3 calls: decode (optionally DCT-scaled) to RGB or
//! CMYK, and encode RGB. Warnings keep their output, as Pillow does; only a fatal error (or a
//! premature end of file, which Pillow refuses too) fails a decode.

use std::ffi::CStr;
use std::ptr::NonNull;

use turbojpeg_sys as tj;

/// What the header says about a JPEG.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub width: u32,
    pub height: u32,
    pub colorspace: i32,
    pub precision: i32,
}

/// A decode failure: the library's message, and whether it was the truncation warning.
#[derive(Debug)]
pub(crate) struct TjError {
    pub message: String,
    pub truncated: bool,
}

/// One TurboJPEG instance (decompress or compress). Not shared between threads; `Send` is fine
/// because the library keeps all state in the handle.
///
/// A decompressor carries state from one image to the next: the quantization and Huffman
/// tables of the last file (used by a next file that lacks its own), and, after a failed
/// `tj3DecompressHeader`, libjpeg's marker reader stopped mid-header (the next call continues
/// it on the new data). So [`super::Decoder`] takes a fresh one for every image.
pub(crate) struct Handle(NonNull<libc::c_void>);

// SAFETY: a tjhandle has no thread affinity; `&mut self` methods keep one user at a time.
unsafe impl Send for Handle {}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once.
        unsafe { tj::tj3Destroy(self.0.as_ptr()) }
    }
}

impl Handle {
    fn new(kind: tj::TJINIT) -> Self {
        // SAFETY: tj3Init has no preconditions; null means out of memory.
        let h = unsafe { tj::tj3Init(kind as libc::c_int) };
        Self(NonNull::new(h).expect("tj3Init failed: out of memory"))
    }

    pub fn decompressor() -> Self {
        Self::new(tj::TJINIT_TJINIT_DECOMPRESS)
    }

    pub fn compressor() -> Self {
        Self::new(tj::TJINIT_TJINIT_COMPRESS)
    }

    /// The message of the call that just failed. TurboJPEG's error code cannot tell a warning
    /// from a fatal error that followed one (its flag stays set when libjpeg longjmps out), but
    /// libjpeg writes its first warning and every fatal error to the message, so the message
    /// itself says which it was ([`is_warning`]).
    fn error(&self) -> String {
        // SAFETY: valid handle; the string is owned by the handle (or is the library's
        // thread-local buffer, written by this thread's call just now) and copied at once.
        unsafe {
            let s = tj::tj3GetErrorStr(self.0.as_ptr());
            if s.is_null() {
                String::new()
            } else {
                CStr::from_ptr(s).to_string_lossy().into_owned()
            }
        }
    }

    fn set(&mut self, param: tj::TJPARAM, value: i32) {
        // SAFETY: valid handle; an out-of-range parameter is reported, never UB.
        let rc = unsafe { tj::tj3Set(self.0.as_ptr(), param as libc::c_int, value) };
        debug_assert_eq!(rc, 0, "tj3Set({param}, {value})");
    }

    fn get(&self, param: tj::TJPARAM) -> i32 {
        // SAFETY: valid handle.
        unsafe { tj::tj3Get(self.0.as_ptr(), param as libc::c_int) }
    }

    /// Reads the header of `jpeg`. Call on a fresh handle: when libjpeg stops early, the
    /// handle's size is left at its initial "unknown" (-1), which is refused here.
    pub fn header(&mut self, jpeg: &[u8]) -> Result<Header, TjError> {
        // SAFETY: pointer and length describe `jpeg`, which outlives the call.
        let rc =
            unsafe { tj::tj3DecompressHeader(self.0.as_ptr(), jpeg.as_ptr(), jpeg.len() as _) };
        if rc != 0 {
            // A warning (e.g. extraneous bytes) still filled in the header, as in Pillow.
            let message = self.error();
            let truncated = message.starts_with(JPEG_EOF);
            if !is_warning(&message) || truncated {
                return Err(TjError { truncated, message });
            }
        }
        let (width, height) =
            (self.get(tj::TJPARAM_TJPARAM_JPEGWIDTH), self.get(tj::TJPARAM_TJPARAM_JPEGHEIGHT));
        let colorspace = self.get(tj::TJPARAM_TJPARAM_COLORSPACE);
        // A tables-only stream returns success without a frame: the size stays -1.
        if width < 1 || height < 1 || colorspace < 0 {
            return Err(TjError {
                truncated: false,
                message: "libjpeg read no usable frame header".into(),
            });
        }
        Ok(Header {
            width: width as u32,
            height: height as u32,
            colorspace,
            precision: self.get(tj::TJPARAM_TJPARAM_PRECISION),
        })
    }

    /// Decodes `jpeg` (whose header was just read by [`Handle::header`]) at scale `num/8`
    /// into `out` as RGB (3 bytes/pixel) or, when `cmyk`, CMYK (4 bytes/pixel). `out` is resized
    /// to fit. Returns the output size and any warning the library gave.
    pub fn decompress(
        &mut self,
        jpeg: &[u8],
        header: &Header,
        num: i32,
        cmyk: bool,
        out: &mut Vec<u8>,
    ) -> Result<(u32, u32, Option<String>), TjError> {
        // The library lists its factors in lowest terms (1/1, 1/2, 3/8 …) and matches exactly.
        let g = gcd(num, 8);
        let sf = tj::tjscalingfactor { num: num / g, denom: 8 / g };
        // SAFETY: valid handle; unsupported factors are reported through the return code.
        if unsafe { tj::tj3SetScalingFactor(self.0.as_ptr(), sf) } != 0 {
            return Err(TjError { truncated: false, message: self.error() });
        }
        let (w, h) = (
            super::dct_scaled(header.width, num as u32),
            super::dct_scaled(header.height, num as u32),
        );
        let (pf, bpp) = if cmyk { (tj::TJPF_TJPF_CMYK, 4) } else { (tj::TJPF_TJPF_RGB, 3) };
        out.clear();
        out.resize(w as usize * h as usize * bpp, 0);
        // SAFETY: `out` holds exactly h rows of pitch w*bpp for the scaled size, which is what
        // tj3Decompress8 writes for this handle's scaling factor and pixel format.
        let rc = unsafe {
            tj::tj3Decompress8(
                self.0.as_ptr(),
                jpeg.as_ptr(),
                jpeg.len() as _,
                out.as_mut_ptr(),
                (w as usize * bpp) as libc::c_int,
                pf as libc::c_int,
            )
        };
        if rc == 0 {
            return Ok((w, h, None));
        }
        let message = self.error();
        // libjpeg's JWRN_JPEG_EOF: the data ended before the image did. Pillow refuses these
        // ("image file is truncated"); so do we.
        let truncated = message.starts_with(JPEG_EOF);
        if is_warning(&message) && !truncated {
            Ok((w, h, Some(message)))
        } else {
            Err(TjError { message, truncated })
        }
    }

    /// Encodes RGB pixels as a baseline JPEG at `quality` with 4:2:0 chroma into `out`.
    pub fn compress_rgb(
        &mut self,
        rgb: &[u8],
        width: u32,
        height: u32,
        quality: u8,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        self.set(tj::TJPARAM_TJPARAM_QUALITY, quality as i32);
        self.set(tj::TJPARAM_TJPARAM_SUBSAMP, tj::TJSAMP_TJSAMP_420);
        assert_eq!(rgb.len(), width as usize * height as usize * 3);
        let mut buf: *mut u8 = std::ptr::null_mut();
        let mut size: tj::size_t = 0;
        // SAFETY: `rgb` is height rows of width*3 bytes; with a null `buf` the library allocates
        // the output with tj3Alloc, which we copy and free below.
        let rc = unsafe {
            tj::tj3Compress8(
                self.0.as_ptr(),
                rgb.as_ptr(),
                width as libc::c_int,
                0,
                height as libc::c_int,
                tj::TJPF_TJPF_RGB as libc::c_int,
                &mut buf,
                &mut size,
            )
        };
        let result = if rc == 0 {
            out.clear();
            // SAFETY: on success `buf` holds `size` bytes.
            out.extend_from_slice(unsafe { std::slice::from_raw_parts(buf, size as usize) });
            Ok(())
        } else {
            Err(self.error())
        };
        if !buf.is_null() {
            // SAFETY: allocated by tj3Compress8 through tj3Alloc.
            unsafe { tj::tj3Free(buf.cast()) };
        }
        result
    }
}

/// libjpeg's JWRN_JPEG_EOF: the data ended before the image did.
const JPEG_EOF: &str = "Premature end of JPEG file";

/// libjpeg's warnings (the JWRN_* messages of jerror.h), by their fixed text. libjpeg prints
/// its first warning and every fatal error; a message that is none of these was fatal.
const WARNINGS: &[&str] = &[
    "Corrupt JPEG data:", // bad arithmetic/Huffman code, extraneous bytes, premature end of
    // data segment, a marker instead of RSTn, bad ICC marker
    JPEG_EOF,
    "Unknown Adobe color transform code",
    "Inconsistent progression sequence for component",
    "Warning: unknown JFIF revision number",
    "Invalid SOS parameters for sequential JPEG",
    "Application transferred too many scanlines",
];

/// Whether libjpeg's `message` is one of its warnings (decoding went on) rather than fatal.
pub(crate) fn is_warning(message: &str) -> bool {
    WARNINGS.iter().any(|w| message.starts_with(w))
}

/// TurboJPEG's colour-space codes we treat specially.
pub(crate) const CS_CMYK: i32 = tj::TJCS_TJCS_CMYK as i32;
pub(crate) const CS_YCCK: i32 = tj::TJCS_TJCS_YCCK as i32;

fn gcd(a: i32, b: i32) -> i32 {
    if b == 0 { a } else { gcd(b, a % b) }
}
