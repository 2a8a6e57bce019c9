//! twoview-model's build script: the rpath to libtorch (rpath.rs), and the C++ shim
//! (csrc/shim.cpp, csrc/dist.cpp) compiled against the headers of the libtorch torch-sys linked, with the flags
//! that libtorch 2.11's wheel needs (../shared/DISTRIBUTED.md).

include!("rpath.rs");

fn main() {
    rpath();
    println!("cargo:rerun-if-changed=csrc/shim.cpp");
    println!("cargo:rerun-if-changed=csrc/dist.cpp");
    println!("cargo:rerun-if-changed=csrc/tv.h");
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .expect("torch-sys exports DEP_TCH_LIBTORCH_LIB (the libtorch it linked)");
    let include = std::path::Path::new(&lib).join("../include");
    cc::Build::new()
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
        .warnings(false)
        .compile("twoview_shim");
}
