//! `twoview`: every command.

fn main() -> std::process::ExitCode {
    twoview_tools::main_twoview()
}
