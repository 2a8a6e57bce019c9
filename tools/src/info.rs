//! `twoview info`: what this binary links and sees, for bug reports and GPU-machine checks.

use std::process::ExitCode;

use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Also check that this device can be used (e.g. `cuda:0`); the exit code says whether it can.
    #[arg(long)]
    device: Option<String>,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let cuda_lib = twoview_model::device::load_cuda_backend();
    println!("twoview {}", env!("CARGO_PKG_VERSION"));
    println!("libtorch: linked at build time from {}", env!("TWOVIEW_LIBTORCH_LIB"));
    println!("cpu threads: intra-op {}, cores {}", tch::get_num_threads(), num_cores());
    let (simd, cpu) = (twoview_pipeline::simd::level(), twoview_pipeline::simd::detected());
    println!("augmentation SIMD: {} (CPU has {}; TWOVIEW_SIMD caps it)", simd.name(), cpu.name());
    match &cuda_lib {
        Ok(()) => println!("libtorch_cuda.so: loaded"),
        Err(reason) => println!("libtorch_cuda.so: not loaded ({reason})"),
    }
    println!(
        "cuda: available {}, devices {}, cudnn {}",
        tch::Cuda::is_available(),
        tch::Cuda::device_count(),
        tch::Cuda::cudnn_is_available()
    );
    println!(
        "distributed backends: gloo (CPU tensors, built in); nccl (CUDA tensors) {}",
        twoview_model::dist::NCCL_BUILD
    );
    match twoview_model::dist::Launch::from_env() {
        Ok(Some(l)) => println!(
            "distributed: would join as rank {} of {} (local rank {}) at {}:{} ({}{})",
            l.rank,
            l.world,
            l.local_rank,
            l.master_addr,
            l.master_port,
            l.source,
            if l.agent_store { ", torchrun's agent store" } else { "" }
        ),
        Ok(None) => println!("distributed: no launcher variables: one process"),
        Err(e) => println!("distributed: {e}"),
    }
    if let Some(spec) = &args.device {
        let device = twoview_model::device::init(spec).context("device check")?;
        // A real op on the device, read back: proves kernels run, not only that it enumerates.
        let x = tch::Tensor::arange(1000, (tch::Kind::Float, device));
        let sum = x.sum(tch::Kind::Double).double_value(&[]);
        anyhow::ensure!(sum == 499_500.0, "sum of 0..1000 on {spec} gave {sum}");
        println!("device {spec}: ok (sum of 0..1000 = {sum})");
    }
    Ok(ExitCode::SUCCESS)
}

fn num_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
