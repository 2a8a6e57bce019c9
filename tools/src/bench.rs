//! `twoview bench`: throughput figures for docs/benchmarks.md. Single-threaded unless said, so
//! the numbers read "per core"; scripts/bench-augment.sh puts torchvision's beside them.

use std::path::PathBuf;
use std::time::Instant;

use twoview_pipeline::augment::{self, Augmenter, BlurScratch, CropBox, GaussianBlur, Recipe};
use twoview_pipeline::resize::Resizer;
use twoview_pipeline::rng::Rng;
use twoview_pipeline::{RgbImage, decode};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Two-view augmentation from decoded pixels: pairs/s on one core, and the cost of each op.
    Augment(AugmentArgs),
    /// JPEG decode and decode+resize from bytes in memory: images/s on one core.
    Decode(DecodeArgs),
    /// The prefetching loader end to end from shards: pairs/s, data-wait, peak RSS.
    Loader(LoaderArgs),
    /// One MoCo v3 training step (fp32 on the CPU, or the device given): seconds per step.
    TrainStep(TrainStepArgs),
    /// The deferred photometric steps (`augment_on = "device"`) on a device: ms per batch, ATen
    /// ops, host reads.
    Photometric(PhotometricArgs),
}

#[derive(clap::Args)]
pub struct PhotometricArgs {
    /// Shard folder (prep-shards output): the batches are the loader's, crops and draws real.
    shards: PathBuf,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, default_value_t = 224)]
    size: u32,
    /// Timed batches (after one untimed).
    #[arg(long, default_value_t = 10)]
    batches: usize,
    /// libtorch CPU threads (0 = its default).
    #[arg(long, default_value_t = 1)]
    threads: i32,
    /// Also apply every batch on the CPU device and count the bytes that differ.
    #[arg(long)]
    compare_cpu: bool,
}

/// Bytes of the device's output that differ from the CPU device's on the same inputs.
fn photometric_vs_cpu(batches: &[(tch::Tensor, Vec<f32>)]) -> anyhow::Result<(i64, i64)> {
    let (mut differ, mut total) = (0, 0);
    for (t, p) in batches {
        let here = twoview_model::photometric::apply(t, p)?.to_device(tch::Device::Cpu);
        let cpu = twoview_model::photometric::apply(&t.to_device(tch::Device::Cpu), p)?;
        differ += here.ne_tensor(&cpu).sum(tch::Kind::Int64).int64_value(&[]);
        total += cpu.numel() as i64;
    }
    Ok((differ, total))
}

#[derive(clap::Args)]
pub struct TrainStepArgs {
    /// Model preset (vit_tiny, vit_small, …).
    #[arg(long, default_value = "vit_tiny")]
    preset: String,
    /// Image side.
    #[arg(long, default_value_t = 224)]
    image: i64,
    /// Images per batch (two views each).
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Timed steps (after `warmup` untimed ones).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// libtorch CPU threads (0 = its default).
    #[arg(long, default_value_t = 0)]
    threads: i32,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// bf16 autocast (CUDA).
    #[arg(long)]
    bf16: bool,
    /// Also time the phases of a step (views, forward, backward, gradient norms, optimizer)
    /// on extra steps, synchronising between them.
    #[arg(long)]
    phases: bool,
}

#[derive(clap::Args)]
pub struct LoaderArgs {
    /// Shard folder (prep-shards output).
    shards: PathBuf,
    /// Split to read.
    #[arg(long, default_value = "train")]
    split: String,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Samples per batch.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// View side.
    #[arg(long, default_value_t = 224)]
    size: u32,
    /// Batches to time (after 3 warm-up batches).
    #[arg(long, default_value_t = 60)]
    batches: usize,
    /// Simulated training step per batch that consumes this fraction of the loader's measured
    /// capacity (0 = consume as fast as possible; 0.9 = the consumer takes batches at 90 % of
    /// the rate the loader can make them, i.e. a step of (batch time) / 0.9).
    #[arg(long, default_value_t = 0.0)]
    step_fraction: f64,
    /// Serve the offline views of the split (prep-shards --views K) instead of augmenting.
    #[arg(long)]
    views: bool,
    /// Label for the JSON line.
    #[arg(long, default_value = "loader")]
    label: String,
    /// cpu: the workers run every step; device: they crop and flip only, the photometric steps
    /// being left to the trainer's device (`augment_on = "device"`).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "device"])]
    augment_on: String,
    /// A preset or a TOML recipe file (e.g. a subset that another loader can also run).
    #[arg(long, default_value = "mocov3_vit")]
    recipe: String,
    /// JPEG rows: decode DCT-scaled where both crops allow it (`dct_scaled_decode`), or
    /// always at full size.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    dct_scaled_decode: bool,
}

#[derive(clap::Args)]
pub struct DecodeArgs {
    /// Image files or folders.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// How many files to cycle through.
    #[arg(long, default_value_t = 200)]
    n_images: usize,
    /// Resize target: shorter side (torchvision Resize(n)), bilinear.
    #[arg(long, default_value_t = 256)]
    short_side: u32,
    /// Label for the JSON line.
    #[arg(long, default_value = "images")]
    label: String,
}

#[derive(clap::Args)]
pub struct AugmentArgs {
    /// Image files or folders (e.g. ../shared/datasets/imagenette224/train).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// How many source images to cycle through.
    #[arg(long, default_value_t = 64)]
    n_images: usize,
    /// Sources are resized to this width x height first (ImageNet-like, short side 256).
    #[arg(long, default_value_t = 341)]
    src_width: u32,
    #[arg(long, default_value_t = 256)]
    src_height: u32,
    /// Output view side.
    #[arg(long, default_value_t = 224)]
    size: u32,
    /// Pairs per timed run (five runs; the median is reported).
    #[arg(long, default_value_t = 1000)]
    pairs: usize,
    /// A preset or a TOML recipe file.
    #[arg(long, default_value = "mocov3_vit")]
    recipe: String,
}

pub fn run(cmd: &Command) -> anyhow::Result<()> {
    match cmd {
        Command::Augment(args) => augment(args),
        Command::Decode(args) => decode_bench(args),
        Command::Loader(args) => loader_bench(args),
        Command::TrainStep(args) => train_step_bench(args),
        Command::Photometric(args) => photometric_bench(args),
    }
}

/// `a.batches + 1` loader batches with their photometric steps deferred, on `device`.
fn deferred_batches(
    a: &PhotometricArgs,
    device: tch::Device,
) -> anyhow::Result<Vec<(tch::Tensor, Vec<f32>)>> {
    use std::sync::Arc;
    use twoview_pipeline::loader::{HeapAlloc, Loader, LoaderConfig};
    let cfg = LoaderConfig {
        threads: 2,
        photometric: augment::Photometric::Deferred,
        ..LoaderConfig::new(a.batch, a.size)
    };
    let set = twoview_formats::ShardSet::open(&a.shards, "train")?;
    let mut loader = Loader::new(set, Recipe::mocov3_vit(), cfg, Arc::new(HeapAlloc))?;
    let s = a.size as i64;
    let mut batches = Vec::new();
    for _ in 0..=a.batches {
        let b = loader.next_batch().expect("endless")?;
        let t = tch::Tensor::from_slice(b.pixels()).view([b.len as i64, 2, s, s, 3]);
        batches.push((t.to_device(device), b.photometric.clone()));
    }
    Ok(batches)
}

fn photometric_bench(a: &PhotometricArgs) -> anyhow::Result<()> {
    let device = twoview_model::device::init(&a.device)?;
    if a.threads > 0 {
        tch::set_num_threads(a.threads);
    }
    let batches = deferred_batches(a, device)?;
    let sync = || {
        if let tch::Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    let (_, ops) = twoview_model::shim::count_ops(|| {
        twoview_model::photometric::apply(&batches[0].0, &batches[0].1)
    })?;
    let mut ms = Vec::new();
    for (t, p) in &batches[1..] {
        sync();
        let start = Instant::now();
        let out = twoview_model::photometric::apply(t, p)?;
        sync();
        drop(std::hint::black_box(out));
        ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    let median = ms[ms.len() / 2];
    let (differ, total) = if a.compare_cpu { photometric_vs_cpu(&batches)? } else { (-1, 0) };
    if a.compare_cpu {
        println!("photometric on {device:?} vs the CPU device: {differ} of {total} bytes differ");
    }
    let pairs_per_s = a.batch as f64 / median * 1e3;
    println!(
        "photometric on {device:?}: batch {} of {}x{} pairs (mocov3_vit draws): {median:.2} ms per \
         batch (median of {}), {pairs_per_s:.0} pairs/s; {} ATen ops, {} host reads",
        a.batch,
        a.size,
        a.size,
        ms.len(),
        ops.ops,
        ops.host_reads
    );
    println!(
        "JSON {{\"impl\": \"photometric\", \"device\": \"{}\", \"ms_per_batch\": {median:.3}, \"pairs_per_s\": {pairs_per_s:.1}, \"ops\": {}, \"host_reads\": {}, \"bytes_differing_from_cpu\": {differ}}}",
        a.device, ops.ops, ops.host_reads
    );
    Ok(())
}

fn train_step_bench(a: &TrainStepArgs) -> anyhow::Result<()> {
    use twoview_model::train::{TrainConfig, Trainer};
    // Under a launcher: data-parallel, `--batch` per rank (NCCL on CUDA, Gloo on the CPU).
    let launch = twoview_model::dist::Launch::from_env()?;
    let device = match &launch {
        Some(l) => twoview_model::dist::rank_device(&a.device, l)?,
        None => twoview_model::device::init(&a.device)?,
    };
    if a.threads > 0 {
        tch::set_num_threads(a.threads);
    }
    let cfg = TrainConfig {
        preset: a.preset.clone(),
        image_size: Some(a.image),
        batch_size: a.batch,
        amp: if a.bf16 { "bf16".into() } else { "off".into() },
        epochs: 100.0,
        warmup_epochs: 10.0,
        ..TrainConfig::default()
    };
    let plan = cfg.plan(a.batch as u64 * 1000, device)?;
    let vit = plan.moco.vit;
    let mut trainer = Trainer::new(plan, device);
    if let Some(l) = &launch {
        let cuda = if let tch::Device::Cuda(i) = device { Some(i) } else { None };
        let g = twoview_model::dist::Group::join(l, std::time::Duration::from_secs(300), cuda)?;
        trainer.distribute(std::sync::Arc::new(g))?;
    }
    tch::manual_seed(1);
    let s = a.image;
    let batch = tch::Tensor::randint(256, [a.batch as i64, 2, s, s, 3], (tch::Kind::Uint8, device));
    let times = time_steps(&mut trainer, &batch, a.warmup, a.steps)?;
    let med = median(times.clone());
    // One more step, counted: ATen ops dispatched and host reads (a sync each on CUDA).
    let (stepped, count) = twoview_model::shim::count_ops(|| trainer.step(&batch))?;
    stepped?;
    let _ = trainer.drain();
    // As the training loop runs: `steps` steps enqueued back to back, one read at the end.
    let t = Instant::now();
    for _ in 0..a.steps {
        trainer.step(&batch)?;
    }
    trainer.drain().map_err(|e| anyhow::anyhow!("non-finite loss {e:?}"))?;
    let pipelined = t.elapsed().as_secs_f64() / a.steps.max(1) as f64;
    let phases =
        if a.phases { phase_times(&mut trainer, &batch, a.steps) } else { Default::default() };
    println!(
        "{}",
        serde_json::json!({
            "impl": "twoview", "preset": a.preset, "image": a.image, "batch": a.batch,
            "threads": tch::get_num_threads(), "device": a.device, "bf16": a.bf16,
            "world": launch.as_ref().map_or(1, |l| l.world), "rank": launch.as_ref().map_or(0, |l| l.rank),
            "grouped": launch.is_some(),
            "step_s_median": med, "step_s": times, "img_per_s": a.batch as f64 / med,
            "pipelined_step_s": pipelined,
            "phases_s": phases, "ops_per_step": count.ops, "host_reads_per_step": count.host_reads,
            "gflop_per_step": vit.moco_step_flops_per_image() * a.batch as f64 / 1e9,
            "mfu_flops_per_s": vit.moco_step_flops_per_image() * a.batch as f64 / med,
        })
    );
    Ok(())
}

/// Seconds of each of `steps` steps after `warmup` untimed ones, each read back (and
/// synchronised on CUDA).
fn time_steps(
    trainer: &mut twoview_model::train::Trainer,
    batch: &tch::Tensor,
    warmup: usize,
    steps: usize,
) -> anyhow::Result<Vec<f64>> {
    let device = trainer.device;
    let mut times = Vec::new();
    for i in 0..warmup + steps {
        let t = Instant::now();
        trainer.train_step(batch).map_err(|e| anyhow::anyhow!("non-finite loss {e:?}"))?;
        if let tch::Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
        if i >= warmup {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    Ok(times)
}

/// Median seconds of each phase of a step (synchronised after each on CUDA): views, forward
/// (with the momentum update), backward, optimizer (zeroing, norms, AdamW), and the one read
/// of the step's numbers.
fn phase_times(
    trainer: &mut twoview_model::train::Trainer,
    batch: &tch::Tensor,
    steps: usize,
) -> serde_json::Map<String, serde_json::Value> {
    let device = trainer.device;
    let sync = || {
        if let tch::Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    let mut ph: [Vec<f64>; 6] = Default::default();
    for _ in 0..steps {
        let mut t = Instant::now();
        let mut lap = |k: usize, t: &mut Instant| {
            sync();
            ph[k].push(t.elapsed().as_secs_f64());
            *t = Instant::now();
        };
        let (x1, x2) = trainer.views(batch);
        lap(0, &mut t);
        trainer.opt.zero_grad();
        let out = trainer.moco.forward(&x1, &x2, 0.99);
        lap(1, &mut t);
        out.loss.backward();
        lap(2, &mut t);
        let grads: Vec<tch::Tensor> = trainer.opt.grads().into_iter().map(|(_, g)| g).collect();
        // Data-parallel: the gradient all-reduce on its own (SyncBN's and the keys' gathers stay
        // inside forward and backward).
        if let Some(g) = trainer.group() {
            g.all_reduce_sum_(&grads.iter().collect::<Vec<_>>()).expect("all-reduce");
        }
        lap(5, &mut t);
        let _norm = twoview_model::optim::norm_of_norms(&twoview_model::optim::norms(
            &grads.iter().collect::<Vec<_>>(),
        ));
        trainer.opt.step(1e-4);
        lap(3, &mut t);
        let _ = out.loss.double_value(&[]);
        lap(4, &mut t);
    }
    let names = ["views", "forward", "backward", "optimizer", "read", "grad_all_reduce"];
    names.iter().zip(ph).map(|(name, v)| ((*name).to_owned(), median(v).into())).collect()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Median over five runs of `f`'s seconds per call, `calls` calls per run.
fn time_per_call(calls: usize, mut f: impl FnMut(usize)) -> f64 {
    for i in 0..calls.min(20) {
        f(i); // warm-up
    }
    median(
        (0..5)
            .map(|_| {
                let t = Instant::now();
                for i in 0..calls {
                    f(i);
                }
                t.elapsed().as_secs_f64() / calls as f64
            })
            .collect(),
    )
}

/// The bench's source images: `args.images` resized to the source size.
fn augment_sources(args: &AugmentArgs) -> anyhow::Result<Vec<RgbImage>> {
    let paths = decode::find_images(&args.images, args.n_images)?;
    anyhow::ensure!(!paths.is_empty(), "no images in {:?}", args.images);
    let mut resizer = Resizer::new();
    paths
        .iter()
        .map(|p| {
            let img = decode::open_rgb(p)?;
            let mut src = RgbImage::new(args.src_width, args.src_height);
            let whole = CropBox { top: 0, left: 0, height: img.height, width: img.width };
            resizer.crop_resize(img.view(), whole, &mut src.view_mut())?;
            Ok(src)
        })
        .collect()
}

fn augment(args: &AugmentArgs) -> anyhow::Result<()> {
    let recipe = Recipe::preset_or_file(&args.recipe)?;
    let sources = augment_sources(args)?;
    let n = sources.len();
    println!(
        "augment bench: recipe {}, {} sources at {}x{}, views {}x{}, 1 thread, SIMD {}",
        recipe.name,
        n,
        args.src_width,
        args.src_height,
        args.size,
        args.size,
        twoview_pipeline::simd::level().name()
    );

    let mut aug = Augmenter::new();
    let (mut v1, mut v2) =
        (RgbImage::new(args.size, args.size), RgbImage::new(args.size, args.size));
    let pair_s = time_per_call(args.pairs, |i| {
        let src = sources[i % n].view();
        aug.two_views(&recipe, src, (0, 0, i as u64), &mut v1.view_mut(), &mut v2.view_mut())
            .unwrap();
    });
    println!(
        "two_views/{}: {:.0} pairs/s ({:.1} us/pair)",
        recipe.name,
        1.0 / pair_s,
        pair_s * 1e6
    );

    let ops = op_times(args, &sources);
    for (name, s) in &ops {
        println!("op/{name}: {:.1} us", s * 1e6);
    }
    // One JSON line for scripts/bench-augment.sh.
    let fields: Vec<String> = ops.iter().map(|(k, s)| format!("\"{k}\": {:.3}", s * 1e6)).collect();
    println!(
        "JSON {{\"impl\": \"twoview\", \"simd\": \"{}\", \"pairs_per_s\": {:.1}, \"op_us\": {{{}}}}}",
        twoview_pipeline::simd::level().name(),
        1.0 / pair_s,
        fields.join(", ")
    );
    Ok(())
}

/// Seconds per call of each op, on one view-sized image (in place, so the cost of a copy is
/// not counted).
fn op_times(args: &AugmentArgs, sources: &[RgbImage]) -> Vec<(&'static str, f64)> {
    let n = sources.len();
    let crop = augment::RandomResizedCrop::with_crop_min(0.08);
    let mut rng = Rng::from_seed(1);
    let boxes: Vec<CropBox> =
        (0..256).map(|_| crop.sample(args.src_width, args.src_height, &mut rng)).collect();
    let mut view = RgbImage::new(args.size, args.size);
    let mut resizer = Resizer::new();
    let calls = args.pairs;
    let mut ops: Vec<(&str, f64)> = Vec::new();
    ops.push((
        "crop_resize",
        time_per_call(calls, |i| {
            resizer
                .crop_resize(sources[i % n].view(), boxes[i % boxes.len()], &mut view.view_mut())
                .unwrap()
        }),
    ));
    let fresh = view.clone();
    let mut per_op = |name, f: &mut dyn FnMut(&mut RgbImage, usize)| {
        let mut img = fresh.clone();
        ops.push((name, time_per_call(calls, |i| f(&mut img, i))));
    };
    per_op("hflip", &mut |img, _| augment::hflip(&mut img.view_mut()));
    per_op("brightness", &mut |img, i| {
        augment::adjust_brightness(&mut img.view_mut(), 0.8 + (i % 2) as f32 * 0.4)
    });
    per_op("contrast", &mut |img, i| {
        augment::adjust_contrast(&mut img.view_mut(), 0.8 + (i % 2) as f32 * 0.4)
    });
    per_op("saturation", &mut |img, i| {
        augment::adjust_saturation(&mut img.view_mut(), 0.8 + (i % 2) as f32 * 0.4)
    });
    per_op("hue", &mut |img, i| {
        augment::adjust_hue(&mut img.view_mut(), if i % 2 == 0 { 0.05 } else { -0.05 })
    });
    per_op("grayscale", &mut |img, _| augment::grayscale(&mut img.view_mut()));
    let blur = GaussianBlur { sigma: (0.1, 2.0), method: augment::BlurMethod::PilBox };
    let mut scratch = BlurScratch::default();
    per_op("blur", &mut |img, i| {
        blur.apply(&mut img.view_mut(), 0.1 + (i % 20) as f32 * 0.1, &mut scratch)
    });
    per_op("solarize", &mut |img, _| augment::solarize(&mut img.view_mut(), 128));
    ops
}

fn decode_bench(args: &DecodeArgs) -> anyhow::Result<()> {
    use twoview_pipeline::decode::{DecodeOptions, Decoder};
    use twoview_pipeline::resize::{Filter, Fit};
    let paths = decode::find_images(&args.images, args.n_images)?;
    anyhow::ensure!(!paths.is_empty(), "no images in {:?}", args.images);
    let files: Vec<Vec<u8>> = paths.iter().map(std::fs::read).collect::<Result<_, _>>()?;
    let n = files.len();
    let mut dec = Decoder::new();
    let mut resizer = Resizer::new();
    let fit = Fit::ShortSide(args.short_side);
    let full = DecodeOptions::default();
    let scaled = DecodeOptions { dct_scale_floor: Some(fit.dct_floor()), ..full };
    let calls = n.max(100);
    let mut pixels = 0u64;
    let first = dec.decode(&files[0], "bench", &full)?;
    println!(
        "decode bench: {n} files like {}x{}, resize to shorter side {}, 1 thread",
        first.image.width(),
        first.image.height(),
        args.short_side
    );
    let t_decode = time_per_call(calls, |i| {
        let d = dec.decode(&files[i % n], "bench", &full).expect("decodes");
        pixels += d.image.data().len() as u64;
    });
    let t_image_crate = time_per_call(calls, |i| {
        let img = image::load_from_memory(&files[i % n]).expect("decodes").into_rgb8();
        pixels += img.len() as u64;
    });
    let mut resize_run = |opts: &DecodeOptions| {
        time_per_call(calls, |i| {
            let d = dec.decode(&files[i % n], "bench", opts).expect("decodes");
            let out =
                resizer.fit(d.image, d.full_size, fit, false, Filter::Bilinear).expect("resizes");
            pixels += out.data().len() as u64;
        })
    };
    let t_full_resize = resize_run(&full);
    let t_dct_resize = resize_run(&scaled);
    std::hint::black_box(pixels);
    let per_s = |t: f64| 1.0 / t;
    println!("  decode (libjpeg-turbo 3.1, raw tj3):      {:8.0} images/s", per_s(t_decode));
    println!("  decode (image crate / zune-jpeg):         {:8.0} images/s", per_s(t_image_crate));
    println!("  decode + resize, full-size decode:        {:8.0} images/s", per_s(t_full_resize));
    println!("  decode + resize, DCT-scaled decode:       {:8.0} images/s", per_s(t_dct_resize));
    println!(
        "JSON {{\"impl\": \"twoview\", \"label\": \"{}\", \"decode\": {:.1}, \"decode_image_crate\": {:.1}, \"decode_resize\": {:.1}, \"decode_resize_dct\": {:.1}}}",
        args.label,
        per_s(t_decode),
        per_s(t_image_crate),
        per_s(t_full_resize),
        per_s(t_dct_resize)
    );
    Ok(())
}

/// A `/proc/self/status` field in MB (VmHWM: peak resident incl. mapped shard pages, which the
/// kernel can drop; RssAnon: the process's own memory now).
fn status_mb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).map(|l| l.to_owned()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Pairs per second and the fraction of wall time spent waiting, over `args.batches`
/// batches, with a simulated step of `step` per batch.
fn time_loader(
    args: &LoaderArgs,
    set: &twoview_formats::ShardSet,
    step: std::time::Duration,
) -> anyhow::Result<(f64, f64)> {
    use std::sync::Arc;
    use twoview_pipeline::loader::{HeapAlloc, Loader, LoaderConfig};
    let photometric =
        if deferred(args) { augment::Photometric::Deferred } else { augment::Photometric::Here };
    let cfg = LoaderConfig {
        threads: args.threads,
        prefetch: 4,
        photometric,
        dct_scaled_decode: args.dct_scaled_decode,
        ..LoaderConfig::new(args.batch, args.size)
    };
    let mut loader = if args.views {
        Loader::from_views(&args.shards, &args.split, cfg)?
    } else {
        Loader::new(set.clone(), Recipe::preset_or_file(&args.recipe)?, cfg, Arc::new(HeapAlloc))?
    };
    for _ in 0..3 {
        loader.next_batch().expect("endless")?;
    }
    let wait0 = loader.stats().wait;
    let t = Instant::now();
    let mut pairs = 0usize;
    for _ in 0..args.batches {
        let b = loader.next_batch().expect("endless")?;
        pairs += b.len;
        std::hint::black_box(b.pixels()[0]);
        if !step.is_zero() {
            // A GPU step: the consumer thread waits (on CUDA) rather than computes.
            std::thread::sleep(step);
        }
    }
    let wall = t.elapsed().as_secs_f64();
    let wait = (loader.stats().wait - wait0).as_secs_f64();
    Ok((pairs as f64 / wall, wait / wall))
}

/// `--augment-on device`: the workers leave the photometric steps to the trainer's device.
fn deferred(args: &LoaderArgs) -> bool {
    args.augment_on == "device"
}

fn loader_bench(args: &LoaderArgs) -> anyhow::Result<()> {
    use std::time::Duration;
    let set = twoview_formats::ShardSet::open(&args.shards, &args.split)?;
    let rows = set.len();
    let run = |step: Duration| time_loader(args, &set, step);
    let (pairs_per_s, _) = run(Duration::ZERO)?;
    let (mut with_step, mut wait_frac) = (pairs_per_s, 1.0);
    if args.step_fraction > 0.0 {
        let step = Duration::from_secs_f64(args.batch as f64 / pairs_per_s / args.step_fraction);
        (with_step, wait_frac) = run(step)?;
    }
    let (rss, anon) = (status_mb("VmHWM:"), status_mb("RssAnon:"));
    let step_part = if args.step_fraction > 0.0 {
        format!(
            "; with a step of {:.0} % of that: {with_step:.0} pairs/s, data-wait {:.1} % of wall",
            args.step_fraction * 100.0,
            wait_frac * 100.0
        )
    } else {
        String::new()
    };
    println!(
        "loader bench: {rows} rows, batch {} of {}x{} pairs, {} worker threads{}{}: {pairs_per_s:.0} pairs/s{step_part}; \
         peak RSS {rss:.0} MB (of it anonymous now: {anon:.0} MB)",
        args.batch,
        args.size,
        args.size,
        args.threads,
        if args.views { ", offline views" } else { "" },
        if deferred(args) { ", photometric steps deferred to the device" } else { "" }
    );
    println!(
        "JSON {{\"impl\": \"twoview\", \"label\": \"{}\", \"recipe\": {:?}, \"augment_on\": \"{}\", \"threads\": {}, \"dct_scaled_decode\": {}, \"pairs_per_s\": {pairs_per_s:.1}, \"step_fraction\": {}, \"wait_fraction\": {wait_frac:.4}, \"peak_rss_mb\": {rss:.0}, \"anon_rss_mb\": {anon:.0}}}",
        args.label,
        args.recipe,
        args.augment_on,
        args.threads,
        args.dct_scaled_decode,
        args.step_fraction
    );
    Ok(())
}
