//! `repoctl`: see the library documentation.

fn main() -> std::process::ExitCode {
    repoctl::main_entry()
}
