//! `twoview augment-preview`: a contact sheet of images and their two views.

use std::path::PathBuf;

use twoview_pipeline::augment::{Recipe, preview};
use twoview_pipeline::decode;

#[derive(clap::Args)]
pub struct Args {
    /// Image files, or folders to take images from (recursively; `--n` spread evenly over them).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// A preset (mocov3_vit, mocov3_resnet, byol, simclr) or a TOML recipe file.
    #[arg(long, default_value = "mocov3_vit")]
    recipe: String,
    /// Where to write the PNG.
    #[arg(long)]
    out: PathBuf,
    /// How many images (rows).
    #[arg(long, default_value_t = 8)]
    n: usize,
    /// Side of each view in pixels.
    #[arg(long, default_value_t = 224)]
    size: u32,
    /// Seed of the views' random streams.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let recipe = Recipe::preset_or_file(&args.recipe)?;
    // Evenly spaced over everything found, so a dataset root shows several classes.
    let all = decode::find_images(&args.images, 1_000_000)?;
    anyhow::ensure!(!all.is_empty(), "no .jpg/.jpeg/.png images in {:?}", args.images);
    let n = args.n.min(all.len());
    let paths: Vec<PathBuf> = (0..n).map(|i| all[i * all.len() / n].clone()).collect();
    let images = paths.iter().map(|p| decode::open_rgb(p)).collect::<Result<Vec<_>, _>>()?;
    let sheet = preview::contact_sheet(&images, &recipe, args.seed, args.size)?;
    sheet.save_png(&args.out)?;
    println!(
        "{}: {} rows (source | view 1 | view 2), recipe {}, seed {}",
        args.out.display(),
        images.len(),
        recipe.name,
        args.seed
    );
    for (row, p) in paths.iter().enumerate() {
        println!("  row {row}: {}", p.display());
    }
    Ok(())
}
