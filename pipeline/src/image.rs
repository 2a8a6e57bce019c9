//! RGB u8 images, row-major HWC, borrowed or owned: the only pixel type the pipeline moves.

use std::path::Path;

use crate::Error;

/// A borrowed RGB u8 image (HWC, `width * height * 3` bytes, rows packed).
#[derive(Clone, Copy)]
pub struct RgbRef<'a> {
    data: &'a [u8],
    width: u32,
    height: u32,
}

/// A mutably borrowed RGB u8 image, e.g. one slot of a batch buffer.
pub struct RgbMut<'a> {
    data: &'a mut [u8],
    width: u32,
    height: u32,
}

/// An owned RGB u8 image.
#[derive(Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// HWC bytes, `width * height * 3` of them.
    pub data: Vec<u8>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

fn check_len(len: usize, width: u32, height: u32) -> Result<(), Error> {
    let expected = width as usize * height as usize * 3;
    if len != expected || width == 0 || height == 0 {
        return Err(Error::BufferSize { width, height, expected, got: len });
    }
    Ok(())
}

impl<'a> RgbRef<'a> {
    /// Wraps `data` as a `width`×`height` RGB image; the length must be exactly `w * h * 3`.
    pub fn try_new(data: &'a [u8], width: u32, height: u32) -> Result<Self, Error> {
        check_len(data.len(), width, height)?;
        Ok(Self { data, width, height })
    }
    /// The bytes, HWC.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }
    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }
    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }
}

impl<'a> RgbMut<'a> {
    /// Wraps `data` as a `width`×`height` RGB image; the length must be exactly `w * h * 3`.
    pub fn try_new(data: &'a mut [u8], width: u32, height: u32) -> Result<Self, Error> {
        check_len(data.len(), width, height)?;
        Ok(Self { data, width, height })
    }
    /// The bytes, HWC.
    pub fn data(&mut self) -> &mut [u8] {
        self.data
    }
    /// A read-only view of the same pixels.
    pub fn as_ref(&self) -> RgbRef<'_> {
        RgbRef { data: self.data, width: self.width, height: self.height }
    }
    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }
    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }
}

impl RgbImage {
    /// A black image.
    pub fn new(width: u32, height: u32) -> Self {
        Self { data: vec![0; width as usize * height as usize * 3], width, height }
    }
    /// Takes ownership of HWC bytes; the length must be exactly `w * h * 3`.
    pub fn try_from_vec(data: Vec<u8>, width: u32, height: u32) -> Result<Self, Error> {
        check_len(data.len(), width, height)?;
        Ok(Self { data, width, height })
    }
    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }
    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }
    /// The HWC bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    /// Gives the HWC bytes back.
    pub fn into_vec(self) -> Vec<u8> {
        self.data
    }
    /// Borrows the image.
    pub fn view(&self) -> RgbRef<'_> {
        RgbRef { data: &self.data, width: self.width, height: self.height }
    }
    /// Borrows the image mutably.
    pub fn view_mut(&mut self) -> RgbMut<'_> {
        RgbMut { data: &mut self.data, width: self.width, height: self.height }
    }
    /// Writes the image as an 8-bit RGB PNG.
    pub fn save_png(&self, path: &Path) -> Result<(), Error> {
        image::save_buffer_with_format(
            path,
            &self.data,
            self.width,
            self.height,
            image::ExtendedColorType::Rgb8,
            image::ImageFormat::Png,
        )
        .map_err(|source| Error::WriteImage { path: path.to_owned(), source })
    }
}

// Debug prints the shape, never the pixels (a 224x224 image is 150 k numbers).
macro_rules! debug_shape {
    ($($t:ident),*) => {$(
        impl std::fmt::Debug for $t<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({}x{} RGB)", stringify!($t), self.width, self.height)
            }
        }
    )*};
}
debug_shape!(RgbRef, RgbMut);

impl std::fmt::Debug for RgbImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RgbImage({}x{} RGB)", self.width, self.height)
    }
}
