//! Contact sheets: for each source image, the image itself and its two views side by side, so
//! a person can see what a recipe does.

use super::{Augmenter, CropBox, Recipe};
use crate::resize::Resizer;
use crate::{Error, RgbImage};

const GAP_PX: u32 = 4;

/// Lays out one row per image: the source (whole, squashed to a `view_px` square), view 1, and
/// view 2 for sample index = row, epoch 0. Rows are separated by a grey gap.
pub fn contact_sheet(
    images: &[RgbImage],
    recipe: &Recipe,
    seed: u64,
    view_px: u32,
) -> Result<RgbImage, Error> {
    let cell = view_px + GAP_PX;
    let rows = images.len() as u32;
    let mut sheet = RgbImage::new(3 * cell + GAP_PX, rows * cell + GAP_PX);
    sheet.data.fill(96);
    let mut aug = Augmenter::new();
    let mut resizer = Resizer::new();
    let mut tiles = [
        RgbImage::new(view_px, view_px),
        RgbImage::new(view_px, view_px),
        RgbImage::new(view_px, view_px),
    ];
    for (row, img) in images.iter().enumerate() {
        let whole = CropBox { top: 0, left: 0, height: img.height, width: img.width };
        let [t0, t1, t2] = &mut tiles;
        resizer.crop_resize(img.view(), whole, &mut t0.view_mut())?;
        aug.two_views(
            recipe,
            img.view(),
            (seed, 0, row as u64),
            &mut t1.view_mut(),
            &mut t2.view_mut(),
        )?;
        for (col, tile) in tiles.iter().enumerate() {
            blit(&mut sheet, tile, GAP_PX + col as u32 * cell, GAP_PX + row as u32 * cell);
        }
    }
    Ok(sheet)
}

fn blit(dst: &mut RgbImage, src: &RgbImage, x0: u32, y0: u32) {
    let row_bytes = src.width as usize * 3;
    for y in 0..src.height as usize {
        let d = ((y0 as usize + y) * dst.width as usize + x0 as usize) * 3;
        dst.data[d..d + row_bytes].copy_from_slice(&src.data[y * row_bytes..(y + 1) * row_bytes]);
    }
}
