//! `prep-shards`: `twoview prep-shards` as a program of its own.

fn main() -> std::process::ExitCode {
    twoview_tools::main_direct("prep-shards")
}
