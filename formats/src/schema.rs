//! The columns of a shard, as ../shared/DESIGN.md "Shard format" fixes them.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema};

/// Version of the shard layout, stored in the schema metadata under [`FORMAT_VERSION_KEY`].
/// Bump it whenever a reader of the previous version would misread a new shard.
pub const FORMAT_VERSION: u32 = 1;

/// Schema-metadata key that holds [`FORMAT_VERSION`].
pub const FORMAT_VERSION_KEY: &str = "twoview.format_version";

/// Column names, in schema order.
pub mod column {
    /// utf8: path of the source image relative to the dataset root.
    pub const KEY: &str = "key";
    /// int32: class index into the manifest's class list, -1 when unknown.
    pub const LABEL: &str = "label";
    /// uint16: stored image height in pixels.
    pub const HEIGHT: &str = "height";
    /// uint16: stored image width in pixels.
    pub const WIDTH: &str = "width";
    /// uint8: an [`Encoding`](super::Encoding) code.
    pub const ENCODING: &str = "encoding";
    /// large_binary: the stored image bytes.
    pub const PIXELS: &str = "pixels";
}

/// How the `pixels` column of a row stores its image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Encoding {
    /// Raw RGB, row-major HWC, u8: `height * width * 3` bytes.
    RawRgb = 0,
    /// A baseline/progressive JPEG stream.
    Jpeg = 1,
}

impl Encoding {
    /// The `encoding` column code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Parses an `encoding` column code; `None` for codes this version does not know.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::RawRgb),
            1 => Some(Self::Jpeg),
            _ => None,
        }
    }
}

/// The Arrow schema every shard file has, version metadata included.
pub fn shard_schema() -> Arc<Schema> {
    let fields = vec![
        Field::new(column::KEY, DataType::Utf8, false),
        Field::new(column::LABEL, DataType::Int32, false),
        Field::new(column::HEIGHT, DataType::UInt16, false),
        Field::new(column::WIDTH, DataType::UInt16, false),
        Field::new(column::ENCODING, DataType::UInt8, false),
        Field::new(column::PIXELS, DataType::LargeBinary, false),
    ];
    let metadata = HashMap::from([(FORMAT_VERSION_KEY.to_owned(), FORMAT_VERSION.to_string())]);
    Arc::new(Schema::new_with_metadata(fields, metadata))
}

#[cfg(test)]
mod tests;
