//! twoview-model's build script: the rpath to libtorch (rpath.rs), and the C++ shim
//! (csrc/shim.cpp, csrc/dist.cpp and, when its headers are found, csrc/dist_nccl.cpp) compiled
//! against the headers of the libtorch torch-sys linked, with the flags that libtorch 2.11's
//! wheel needs (../shared/DISTRIBUTED.md).
//!
//! NCCL is built when the torch wheel's site-packages hold nccl.h at exactly the version torch's
//! METADATA pins, the CUDA headers (nvidia/cu13/include with crt/ and nv/target) and
//! libtorch_cuda.so; `TWOVIEW_NCCL=0` leaves it out, `TWOVIEW_NCCL=1` makes a missing piece a
//! build error. What was decided reaches `twoview info` as `TWOVIEW_NCCL_BUILD`.

use std::path::{Path, PathBuf};

include!("rpath.rs");

/// The include folders the NCCL part compiles with, or why it cannot be built.
fn nccl_headers(torch_lib: &Path) -> Result<(Vec<PathBuf>, String), String> {
    let site = torch_lib.join("../..");
    let metadata = std::fs::read_dir(&site)
        .map_err(|e| format!("cannot list {}: {e}", site.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("torch-") && name.ends_with(".dist-info")
        })
        .map(|p| p.join("METADATA"))
        .ok_or("no torch-*.dist-info beside the libtorch (not a PyPI torch wheel)")?;
    let metadata = std::fs::read_to_string(&metadata)
        .map_err(|e| format!("cannot read {}: {e}", metadata.display()))?;
    let pinned = metadata
        .lines()
        .find_map(|l| l.strip_prefix("Requires-Dist: nvidia-nccl-cu13=="))
        .map(|v| v.split(';').next().unwrap_or("").trim().to_owned())
        .ok_or("torch's METADATA pins no nvidia-nccl-cu13 (a CPU-only torch)")?;
    if !torch_lib.join("libtorch_cuda.so").exists() {
        return Err("no libtorch_cuda.so beside libtorch".into());
    }
    let nccl = site.join("nvidia/nccl/include");
    let header = std::fs::read_to_string(nccl.join("nccl.h")).map_err(|_| {
        format!("no nccl.h in {} (pip install nvidia-nccl-cu13=={pinned})", nccl.display())
    })?;
    let define = |name: &str| {
        header.lines().find_map(|l| {
            let rest = l.strip_prefix("#define ")?.strip_prefix(name)?;
            rest.trim().parse::<u32>().ok()
        })
    };
    let found = match (define("NCCL_MAJOR"), define("NCCL_MINOR"), define("NCCL_PATCH")) {
        (Some(a), Some(b), Some(c)) => format!("{a}.{b}.{c}"),
        _ => return Err(format!("cannot read the version of {}/nccl.h", nccl.display())),
    };
    if found != pinned {
        return Err(format!(
            "nccl.h is {found} but torch pins {pinned}: another nccl.h changes \
             ProcessGroupNCCL's layout"
        ));
    }
    let cuda = site.join("nvidia/cu13/include");
    for needed in ["cuda_runtime_api.h", "crt/host_config.h", "nv/target"] {
        if !cuda.join(needed).exists() {
            return Err(format!(
                "no {needed} in {} (pip install nvidia-cuda-crt nvidia-cuda-cccl at torch's CUDA \
                 13.0: scripts/setup-venv.sh)",
                cuda.display()
            ));
        }
    }
    Ok((vec![nccl, cuda], found))
}

fn main() {
    rpath();
    for f in ["shim.cpp", "dist.cpp", "dist_nccl.cpp", "tv.h"] {
        println!("cargo:rerun-if-changed=csrc/{f}");
    }
    println!("cargo:rerun-if-env-changed=TWOVIEW_NCCL");
    // The NCCL decision follows what scripts/setup-venv.sh installed from this file.
    println!("cargo:rerun-if-changed=../python/requirements.txt");
    println!("cargo::rustc-check-cfg=cfg(twoview_nccl)");
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .expect("torch-sys exports DEP_TCH_LIBTORCH_LIB (the libtorch it linked)");
    let lib = Path::new(&lib);
    let include = lib.join("../include");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file("csrc/shim.cpp")
        // c10d's Gloo group; Gloo's headers come from the system (libgloo-dev,
        // scripts/setup-system.sh): the wheel has ProcessGroupGloo but not <gloo/...>.
        .file("csrc/dist.cpp")
        .define("USE_C10D_GLOO", None)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .std("c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .define("GLOG_USE_GLOG_EXPORT", None)
        .flag_if_supported("-Wno-unused-parameter")
        .warnings(false);
    let wanted = std::env::var("TWOVIEW_NCCL").ok();
    let nccl = match wanted.as_deref() {
        Some("0") => Err("left out (TWOVIEW_NCCL=0 at build time)".to_owned()),
        _ => nccl_headers(lib),
    };
    match &nccl {
        Ok((dirs, version)) => {
            build
                .file("csrc/dist_nccl.cpp")
                .define("TWOVIEW_NCCL", None)
                .define("USE_C10D_NCCL", None)
                .define("USE_CUDA", None);
            for d in dirs {
                build.include(d);
            }
            println!("cargo:rustc-cfg=twoview_nccl");
            println!("cargo:rustc-env=TWOVIEW_NCCL_BUILD=built in (nccl.h {version})");
        }
        Err(why) if wanted.as_deref() == Some("1") => {
            panic!("TWOVIEW_NCCL=1 but the NCCL backend cannot be built: {why}")
        }
        Err(why) => println!("cargo:rustc-env=TWOVIEW_NCCL_BUILD=not built in: {why}"),
    }
    build.compile("twoview_shim");
    if nccl.is_ok() {
        // ProcessGroupNCCL and c10::cuda live in the CUDA half of libtorch.
        println!("cargo:rustc-link-lib=dylib=torch_cuda");
        println!("cargo:rustc-link-lib=dylib=c10_cuda");
    }
}
