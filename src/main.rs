//! The `yallmp` binary: all of it lives in the library.

/// mimalloc: the proxy allocates many short-lived buffers per request, which
/// glibc's allocator serves noticeably slower under threads.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    yallmp::cli::main()
}
