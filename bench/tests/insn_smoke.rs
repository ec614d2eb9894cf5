//! `bench instructions` for real: every workload is counted under callgrind, the counts are
//! saved, and a baseline they exceed makes the run fail, naming the workloads.
//!
//! Needs valgrind; without it the test says `SKIPPED`, and fails instead when
//! MSGR_REQUIRE_INTEROP=1 (CI).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

mod support;
use support::missing;

#[test]
fn bench_instructions_smoke() {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_bench"));
    if Command::new("valgrind").arg("--version").output().is_err() {
        missing("bench_instructions_smoke", "valgrind is not installed");
        return;
    }
    let dir = std::env::temp_dir().join(format!("bench-insn-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let saved = dir.join("counts.json");
    let out = Command::new(&bench)
        .args(["instructions", "--ops", "50", "--save"])
        .arg(&saved)
        .output()
        .expect("bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}\n{stdout}");
    assert!(stderr.contains("[4/4]"), "progress is shown: {stderr}");
    let counts: BTreeMap<String, f64> =
        serde_json::from_str(&std::fs::read_to_string(&saved).expect("counts saved"))
            .expect("counts are JSON");
    let names: Vec<&str> = counts.keys().map(String::as_str).collect();
    assert_eq!(names, ["decode-4k", "encode-4k", "engine-0", "engine-4k"]);
    for (w, n) in &counts {
        assert!(
            stdout.contains(&format!("| {w} | {n:.0} | - | - |")),
            "{stdout}"
        );
    }
    // A 4 KiB message costs the engine more than an empty one.
    assert!(counts["engine-4k"] > counts["engine-0"], "{counts:?}");
    // Against a baseline 10% below this run's counts, every workload is a regression.
    let lower: BTreeMap<&String, f64> = counts.iter().map(|(k, v)| (k, v / 1.1)).collect();
    let base = dir.join("base.json");
    std::fs::write(&base, serde_json::to_string(&lower).expect("JSON")).expect("written");
    let out = Command::new(&bench)
        .args(["instructions", "--ops", "50", "--baseline"])
        .arg(&base)
        .output()
        .expect("bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1), "{stderr}\n{stdout}");
    assert!(
        stderr.contains("more than 2% more instructions"),
        "{stderr}"
    );
    for w in counts.keys() {
        assert!(stderr.contains(&format!("{w} +10.0%")), "{w}: {stderr}");
        assert!(stdout.contains("+10.0% |"), "{stdout}");
    }
}
