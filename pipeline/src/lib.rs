//! twoview-pipeline: image decode and two-view augmentation for self-supervised pretraining
//! (SimCLR/BYOL/MoCo-style views), usable on its own: it never links libtorch, so
//! `cargo test -p twoview-pipeline` runs on any CPU box.
//!
//! The augmenter writes both views of a sample straight into caller-provided u8 HWC buffers
//! (e.g. two slots of a batch buffer); normalisation is left to the trainer, on its device.
//!
//! ```
//! use twoview_pipeline::augment::{Augmenter, Recipe};
//! use twoview_pipeline::{RgbImage, RgbMut};
//!
//! let src = RgbImage::try_from_vec((0..64 * 48 * 3).map(|i| i as u8).collect(), 64, 48)?;
//! let recipe = Recipe::mocov3_vit();
//! let mut batch = vec![0u8; 2 * 32 * 32 * 3]; // two 32x32 views
//! let (a, b) = batch.split_at_mut(32 * 32 * 3);
//! let mut aug = Augmenter::new(); // one per worker thread
//! let (seed, epoch, sample) = (0, 0, 17);
//! let logs = aug.two_views(&recipe, src.view(), (seed, epoch, sample),
//!     &mut RgbMut::try_new(a, 32, 32)?, &mut RgbMut::try_new(b, 32, 32)?)?;
//! println!("view 1 cropped {:?}", logs[0].crop);
//! # Ok::<(), twoview_pipeline::Error>(())
//! ```
#![warn(missing_docs)]

pub mod augment;
pub mod chart;
pub mod decode;
mod decode_find;
mod error;
mod image;
pub mod loader;
pub mod prep;
pub mod resize;
pub mod rng;
pub mod simd;

pub use error::Error;
pub use image::{RgbImage, RgbMut, RgbRef};
/// The shard format this pipeline reads, re-exported so a user of the pipeline alone can name it.
pub use twoview_formats as formats;
