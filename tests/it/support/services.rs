//! The servers some tests need (PostgreSQL, Redis), found through their
//! URL variables. Where the servers are expected, a test that needs one
//! fails loudly when its URL is unset or the server does not answer;
//! elsewhere an unset URL skips the test with a notice on the terminal.
//!
//! Expected means `YALLMP_TEST_REQUIRE_SERVICES=1` (`.ci/run` sets it), or
//! `CI=true` unless `YALLMP_TEST_REQUIRE_SERVICES=0` says otherwise.

use std::io::Write;

/// Whether the PostgreSQL and Redis tests must run here.
pub fn required() -> bool {
    match std::env::var("YALLMP_TEST_REQUIRE_SERVICES").as_deref() {
        Ok("1" | "true") => true,
        Ok("0" | "false") => false,
        _ => matches!(std::env::var("CI").as_deref(), Ok("1" | "true")),
    }
}

/// The URL in `var`. Unset: a failure when the servers are expected, else
/// `None` and a notice naming the skipped test.
pub fn url(var: &str, what: &str) -> Option<String> {
    if let Some(url) = std::env::var(var).ok().filter(|s| !s.is_empty()) {
        return Some(url);
    }
    assert!(
        !required(),
        "{var} is not set, but the {what} tests must run here \
         (YALLMP_TEST_REQUIRE_SERVICES=1 or CI=true): set {var} to a {what} server"
    );
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    // Straight to the terminal: libtest keeps a passing test's `eprintln!`
    // to itself, and a skip should be seen.
    let _ = writeln!(
        std::io::stderr(),
        "note: {test}: {var} not set, {what} test skipped \
         (YALLMP_TEST_REQUIRE_SERVICES=1 makes this a failure)"
    );
    None
}
