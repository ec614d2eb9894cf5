//! What the bench smoke tests share: how a missing prerequisite is reported.
//! (Each test crate includes this module and uses part of it.)
#![allow(dead_code)]

use std::path::PathBuf;

const REQUIRE_ENV: &str = "MSGR_REQUIRE_INTEROP";

/// Whether missing prerequisites are failures (CI sets MSGR_REQUIRE_INTEROP=1).
pub(crate) fn required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1")
}

/// Reports `test` as skipped for `what`, or fails when prerequisites are required.
pub(crate) fn missing(test: &str, what: &str) {
    assert!(!required(), "{test}: {what} ({REQUIRE_ENV}=1)");
    eprintln!("SKIPPED {test}: {what}");
}

/// The bench program under test and the msgr program beside it (None, reported as `test`
/// skipped, when msgr is not built).
pub(crate) fn programs(test: &str) -> Option<(PathBuf, PathBuf)> {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_bench"));
    let msgr = bench.with_file_name("msgr");
    if msgr.is_file() {
        Some((bench, msgr))
    } else {
        missing(
            test,
            &format!(
                "no msgr program at {} (cargo build -p msgr)",
                msgr.display()
            ),
        );
        None
    }
}
