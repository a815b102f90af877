//! `yallmp --version`: the package version and the commit it was built from.

use std::process::Command;

#[test]
fn version_names_the_package_version_and_the_commit() {
    let out = Command::new(env!("CARGO_BIN_EXE_yallmp"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let want = format!("yallmp {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(stdout.starts_with(&want), "{stdout}");
    let commit = stdout
        .trim_end()
        .strip_prefix(&want)
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{stdout}"));
    // The build ran in this checkout: the commit is its HEAD (git is there
    // wherever the tests are built from a clone), else `unknown`.
    let head = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match head {
        Some(head) => assert_eq!(commit.trim_end_matches("-dirty"), head, "{stdout}"),
        None => assert_eq!(commit, "unknown", "{stdout}"),
    }
}
