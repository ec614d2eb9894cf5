//! `bench all --quick` for real, with tiny op counts: every part runs (the OSD sweep over
//! dpdk, posix and simple, by size and ops in flight and by client sessions; sockperf and iperf3 on loopback; testpmd and the bare stack over
//! vhost-user), the report opens with every claim, and the files are written.
//!
//! Needs root (DPDK), `msgr` built beside `bench`, and sockperf, iperf3 and dpdk-testpmd on
//! the PATH; without them the test says `SKIPPED` and what is missing (checking what did
//! run), and fails instead when MSGR_REQUIRE_INTEROP=1 (CI).

use std::process::Command;

mod support;
use support::{missing, programs};

#[test]
fn bench_all_smoke() {
    let Some((bench, _msgr)) = programs("bench_all_smoke") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("bench-all-smoke-{}", std::process::id()));
    let out = Command::new(&bench)
        .args(["all", "--quick", "--scale", "0.01", "--out"])
        .arg(&dir)
        .output()
        .expect("bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = std::fs::read_to_string(dir.join("report.md"));
    let csv = std::fs::read_to_string(dir.join("baselines.csv"));
    let pngs: Vec<bool> = ["throughput.png", "latency.png", "connections.png"]
        .iter()
        .map(|p| std::fs::read(dir.join(p)).is_ok_and(|b| b.starts_with(b"\x89PNG\r\n\x1a\n")))
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    for part in ["[1/3]", "[2/3]", "[3/3]"] {
        assert!(stderr.contains(part), "progress {part} is shown: {stderr}");
    }
    for section in [
        "## Claims",
        "## OSD workload",
        "## Kernel TCP floor",
        "## Raw-link ceiling",
    ] {
        assert!(stdout.contains(section), "no {section}: {stdout}");
    }
    let report = report.expect("report.md was written");
    assert_eq!(
        report.trim(),
        stdout.trim(),
        "report.md is what was printed"
    );
    assert_eq!(pngs, [true, true, true], "the plots were drawn");
    let csv = csv.expect("baselines.csv was written");
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    if !out.status.success() {
        // Exit 1 names every part that could not run; the rest must have run.
        let why = stderr.lines().last().unwrap_or("");
        assert!(why.contains("what failed:"), "{stderr}");
        missing("bench_all_smoke", why);
        assert!(
            stdout.contains("| posix |") && stdout.contains("| simple |"),
            "the kernel paths ran: {stdout}"
        );
        return;
    }
    // Everything ran: six claims, each with its figures.
    let claims: Vec<&str> = stdout
        .split("## Claims")
        .nth(1)
        .unwrap_or("")
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .filter(|l| l.starts_with("- "))
        .collect();
    assert_eq!(claims.len(), 7, "{stdout}");
    assert!(claims.iter().all(|c| !c.contains("missing")), "{claims:#?}");
    for path in ["dpdk", "posix", "simple"] {
        assert!(
            stdout.contains(&format!("| 4 MiB | 1 | 16 | read | {path} |"))
                && stdout.contains(&format!("| 0 B | 100 | 1 | write | {path} |")),
            "{stdout}"
        );
    }
    // sockperf twice and iperf3; testpmd three ways and the bare stack: all measured.
    assert_eq!(rows.len(), 7, "{csv}");
    assert!(
        rows.iter().all(|r| r.ends_with(",\"\"")),
        "nothing skipped: {csv}"
    );
    assert_eq!(rows.iter().filter(|r| r.starts_with("floor,")).count(), 3);
}
