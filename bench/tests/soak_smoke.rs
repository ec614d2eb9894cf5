//! `bench soak` for real on every transport, briefly: lossless sessions with socket
//! failures injected on both sides and sessions marked down, every message checked; the
//! run must pass (nothing lost, duplicated, reordered or corrupt) and its report must show
//! the faults it went through. The dpdk transport runs its workers and stack on an
//! in-memory switch (no device, no root). The same with lossy policies: sessions end at
//! their first fault, and every message not delivered must be the tail of a session whose
//! reset its dispatcher was told of.

use std::process::Command;

use serde_json::Value;

fn soak(transport: &str, policy: &str, seconds: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args([
            "soak",
            "--transport",
            transport,
            "--seconds",
            seconds,
            "--policy",
            policy,
            "--conns",
            "8",
        ])
        .args([
            "--inject",
            "100",
            "--mark-down-every",
            "500",
            "--max-size",
            "1048576",
        ])
        .args(["--json"])
        .output()
        .expect("bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "{transport}: {e}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "{transport}: {v:#}");
    v
}

#[test]
fn soak_every_transport() {
    for t in ["simple", "posix", "dpdk"] {
        let v = soak(t, "lossless", "8");
        assert_eq!(v["passed"], true, "{t}: {v:#}");
        for k in ["lost", "duplicated", "reordered", "corrupt"] {
            assert_eq!(v[k], 0, "{t}: {k}: {v:#}");
        }
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        assert!(n("sent") > 1000, "{t}: traffic flowed: {v:#}");
        assert!(
            n("injected_failures") > 10,
            "{t}: failures were injected: {v:#}"
        );
        assert!(n("reconnects") > 10, "{t}: sessions reconnected: {v:#}");
        assert!(
            n("marked_down") > 0,
            "{t}: sessions were marked down: {v:#}"
        );
        assert_eq!(
            n("delivered") + n("discarded_by_mark_down"),
            n("sent"),
            "{t}: {v:#}"
        );
        assert!(v["rss_kib"]["peak"].as_u64().unwrap_or(0) > 0, "{t}: {v:#}");
    }
}

#[test]
fn lossy_soak_every_transport() {
    for t in ["simple", "posix", "dpdk"] {
        let v = soak(t, "lossy", "5");
        assert_eq!(v["passed"], true, "{t}: {v:#}");
        for k in [
            "lost",
            "duplicated",
            "reordered",
            "corrupt",
            "resets_unreported",
        ] {
            assert_eq!(v[k], 0, "{t}: {k}: {v:#}");
        }
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        assert!(n("sent") > 1000, "{t}: traffic flowed: {v:#}");
        assert!(n("sessions_reset") > 5, "{t}: sessions were reset: {v:#}");
        assert_eq!(
            n("delivered") + n("discarded_by_mark_down") + n("lost_across_resets"),
            n("sent"),
            "{t}: every message delivered, discarded, or lost across a reported reset: {v:#}"
        );
    }
}
