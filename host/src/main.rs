//! The `relocate` binary; everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    relocate::cli::main()
}
