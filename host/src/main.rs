//! The `lookout` command.

/// With the `mimalloc` feature the whole process allocates through
/// mimalloc; without it, through the system's allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    lookout::main()
}
