// Included by model/build.rs and model/build_model.rs.
//
// torch-sys exports the lib folder of the libtorch it linked as `DEP_TCH_LIBTORCH_LIB` to the
// packages that depend on it directly. We bake it into each binary as an rpath, so binaries and
// test executables start with `LD_LIBRARY_PATH` unset, from any directory. On another machine
// (a GPU box with its own torch) `LD_LIBRARY_PATH` still takes precedence over nothing: the
// runpath is only the fallback when the loader finds no libtorch elsewhere.
/// Bakes the rpath to torch-sys's libtorch into the package's binaries.
fn rpath() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    match std::env::var("DEP_TCH_LIBTORCH_LIB") {
        Ok(lib) => {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
            println!("cargo:rustc-env=TWOVIEW_LIBTORCH_LIB={lib}");
        }
        Err(_) => {
            println!(
                "cargo:warning=torch-sys did not export DEP_TCH_LIBTORCH_LIB; binaries will need \
                 LD_LIBRARY_PATH to find libtorch"
            );
            println!("cargo:rustc-env=TWOVIEW_LIBTORCH_LIB=(unknown: not exported by torch-sys)");
        }
    }
}
