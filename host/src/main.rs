//! The `lookout` command.

fn main() -> std::process::ExitCode {
    lookout::main()
}
