//! Decoding image files to RGB. This is the plain `image`-crate path used by previews and
//! benches; prep-shards' decoder (real-world JPEG quirks, CMYK, DCT scaling) is issue #7's.

use std::path::Path;

use crate::{Error, RgbImage};

/// Decodes JPEG or PNG bytes (by content, not by name) to RGB; `what` names them in errors.
pub fn decode_rgb(bytes: &[u8], what: &str) -> Result<RgbImage, Error> {
    let img = image::load_from_memory(bytes)
        .map_err(|source| Error::Decode { what: what.to_owned(), source })?
        .into_rgb8();
    let (width, height) = img.dimensions();
    RgbImage::try_from_vec(img.into_raw(), width, height)
}

/// Reads and decodes an image file.
pub fn open_rgb(path: &Path) -> Result<RgbImage, Error> {
    let bytes =
        std::fs::read(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
    decode_rgb(&bytes, &path.display().to_string())
}
