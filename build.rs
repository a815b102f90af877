//! Build-time facts the binary reports:
//!
//! - Rebuild when a migration is added or changed: `sqlx::migrate!` embeds
//!   the `migrations/` directory at compile time, and Cargo does not watch
//!   it alone.
//! - `YALLMP_GIT_COMMIT`: the commit the build is made from (`git rev-parse
//!   --short HEAD`, with `-dirty` when tracked files differ from it), for
//!   `yallmp --version`. `unknown` without git or a repository (a source
//!   tarball); a packager can set `YALLMP_GIT_COMMIT` in the environment to
//!   name it. The script reruns when HEAD moves (the HEAD file, the branch's
//!   ref, packed refs), the index changes or a source file does, not on
//!   every build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=YALLMP_GIT_COMMIT");
    let commit = match std::env::var("YALLMP_GIT_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => git_commit().unwrap_or_else(|| "unknown".to_string()),
    };
    println!("cargo:rustc-env=YALLMP_GIT_COMMIT={commit}");
}

/// `git` with these arguments in the package's directory: its trimmed
/// standard output when it succeeds.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env_dir())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_string())
}

fn env_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| ".".into()))
}

/// The short commit (with `-dirty`), and the files whose change moves it
/// watched. None outside a git checkout or without git.
fn git_commit() -> Option<String> {
    let hash = git(&["rev-parse", "--short", "HEAD"])?;
    // The files that change when HEAD does. In a worktree HEAD and the
    // index are the worktree's own, the refs the common directory's.
    let watch = |p: &Path| {
        if p.exists() {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    };
    let root = env_dir();
    let at = |p: String| {
        let p = PathBuf::from(p);
        if p.is_absolute() { p } else { root.join(p) }
    };
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        watch(&at(head));
    }
    if let Some(index) = git(&["rev-parse", "--git-path", "index"]) {
        watch(&at(index));
    }
    if let Some(common) = git(&["rev-parse", "--git-common-dir"]) {
        let common = at(common);
        watch(&common.join("packed-refs"));
        if let Some(name) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch(&common.join(name));
        }
    }
    // Edits to tracked files make the build dirty: watch the sources.
    for p in ["src", "static", "Cargo.toml", "Cargo.lock", "configs"] {
        watch(&root.join(p));
    }
    // Without optional locks, `git status` does not refresh the index file,
    // which is watched: a write there would rerun this script on the next
    // build.
    let dirty = git(&[
        "--no-optional-locks",
        "status",
        "--porcelain",
        "--untracked-files=no",
    ])
    .is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{hash}-dirty") } else { hash })
}
