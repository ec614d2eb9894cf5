//! Helpers for the tests that start EAL.
// Each test uses part of this.
#![allow(dead_code)]

use std::env;

pub(crate) use stack::dpdk_files::{allowed_cpus, RuntimeDir};

/// Prints why test `name` did not run, or fails it when interop tests are required
/// (`MSGR_REQUIRE_INTEROP=1`, set by the test script once it installed everything).
pub(crate) fn skip(name: &str, reason: &str) {
    let required = env::var("MSGR_REQUIRE_INTEROP").is_ok_and(|v| v == "1");
    assert!(!required, "{name}: {reason} (MSGR_REQUIRE_INTEROP=1)");
    println!("SKIPPED {name}: {reason}");
}

/// EAL arguments for a test: no hugepages (`mb` MiB of memory), no PCI, no telemetry, our
/// own runtime-file prefix, lcores `0..lcores` each allowed on every CPU this process may
/// use (the workers nap when idle, and helper processes forked from the main thread inherit
/// its affinity), and `vdevs`.
pub(crate) fn test_args(prefix: &str, mb: u32, lcores: u32, vdevs: &[String]) -> Vec<String> {
    let cpus = allowed_cpus();
    let lcores: Vec<String> = (0..lcores.max(1))
        .map(|l| format!("{l}@({cpus})"))
        .collect();
    let mut args: Vec<String> = [
        "stack-test",
        "--no-huge",
        "-m",
        &mb.to_string(),
        "--no-pci",
        "--no-telemetry",
        "--file-prefix",
        prefix,
        "--lcores",
        &lcores.join(","),
        "--log-level",
        "warning",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    args.extend(vdevs.iter().map(|v| format!("--vdev={v}")));
    args
}

/// Panics with where two byte strings first differ.
pub(crate) fn check_same(what: &str, got: &[u8], want: &[u8]) {
    if got != want {
        let at = got.iter().zip(want).position(|(g, w)| g != w);
        panic!(
            "{what}: {} bytes received, {} sent; first difference at {at:?}",
            got.len(),
            want.len()
        );
    }
}
