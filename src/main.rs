//! The `yallmp` binary: all of it lives in the library.

/// mimalloc: the proxy allocates many short-lived buffers per request, which
/// glibc's allocator serves noticeably slower under threads.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    huge_pages::allow_if_asked();
    yallmp::cli::main()
}

/// Transparent huge pages off for this process (Linux).
///
/// mimalloc asks the kernel for huge pages on its arenas (and a kernel with
/// THP `always` gives them anyway), so each thread that touches its own
/// 2 MiB region holds all of it. Measured on two cores: idle RSS 27 MB with
/// them, 16 MB without; 31 MB vs 21 MB under load; the same CPU per request
/// (docs/benchmarks.md). On a many-core host one huge page per worker thread
/// would grow the idle footprint with the core count.
///
/// The switch is thrown before the first allocation (a constructor that runs
/// ahead of mimalloc's, which is `constructor(101)`), or the allocator's first
/// regions would already be huge. `MIMALLOC_ALLOW_THP=1` turns them back on.
#[cfg(target_os = "linux")]
mod huge_pages {
    #[used]
    #[unsafe(link_section = ".init_array.00100")]
    static OFF_BEFORE_ANY_ALLOCATION: extern "C" fn() = {
        extern "C" fn off() {
            // A raw prctl: no allocation. Best effort: a kernel without it
            // keeps its setting.
            let _ = rustix::thread::disable_transparent_huge_pages(true);
        }
        off
    };

    /// Huge pages back on when `MIMALLOC_ALLOW_THP` says so (1, true, on, yes).
    pub fn allow_if_asked() {
        let asked = std::env::var("MIMALLOC_ALLOW_THP")
            .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "on" | "yes"));
        if asked {
            let _ = rustix::thread::disable_transparent_huge_pages(false);
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod huge_pages {
    pub fn allow_if_asked() {}
}
