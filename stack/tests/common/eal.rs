//! Helpers for the tests that start EAL.

use std::env;

pub(crate) use stack::dpdk_files::RuntimeDir;

/// Prints why test `name` did not run, or fails it when interop tests are required
/// (`MSGR_REQUIRE_INTEROP=1`, set by the test script once it installed everything).
pub(crate) fn skip(name: &str, reason: &str) {
    let required = env::var("MSGR_REQUIRE_INTEROP").is_ok_and(|v| v == "1");
    assert!(!required, "{name}: {reason} (MSGR_REQUIRE_INTEROP=1)");
    println!("SKIPPED {name}: {reason}");
}
