//! `train`: `twoview train` as a program of its own.

fn main() -> std::process::ExitCode {
    twoview_tools::main_direct("train")
}
