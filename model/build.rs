//! The build script of the packages that link libtorch through twoview-model (tools, tests):
//! the rpath to libtorch (rpath.rs). twoview-model's own is build_model.rs.

include!("rpath.rs");

fn main() {
    rpath();
}
