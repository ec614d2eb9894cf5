//! `bench hostile --quick` for real on every transport: a real `msgr serve` attacked with
//! garbage, slowloris, oversized lengths, bad CRCs, a connection flood and a reconnect
//! storm while an honest client pings it. The daemon must survive every attack and stop
//! cleanly, every attack must show in its `perf dump`, and the honest client must be
//! answered throughout (no lost ping, no new client turned away). Latency ratios are
//! benchmark figures: not judged here.
//!
//! The dpdk transport runs the daemon on DPDK's net_af_packet, on a veth pair between two
//! network namespaces the command makes (no hugepages, no PCI): it needs root, `ip` and
//! ethtool; without them it is reported as `SKIPPED hostile_every_transport (dpdk): ...`,
//! and fails instead when MSGR_REQUIRE_INTEROP=1 (CI).

use std::process::Command;

use serde_json::Value;

mod support;
use support::{missing, programs};

/// What the dpdk transport needs here, or why it cannot run.
fn dpdk_ready() -> Result<(), String> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|r| r.split_whitespace().nth(1).map(str::to_owned))
        });
    if uid.as_deref() != Some("0") {
        return Err("needs root (network namespaces, a veth pair, raw sockets)".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Err("no ip program (iproute2)".into());
    }
    if Command::new("ethtool").arg("--version").output().is_err() {
        return Err("no ethtool (apt-get install ethtool)".into());
    }
    Ok(())
}

#[test]
fn hostile_every_transport() {
    let test = "hostile_every_transport";
    let Some((bench, _msgr)) = programs(test) else {
        return;
    };
    let mut transports = vec!["simple", "posix"];
    match dpdk_ready() {
        Ok(()) => transports.push("dpdk"),
        Err(why) => missing(&format!("{test} (dpdk)"), &why),
    }
    let out = Command::new(&bench)
        .args([
            "hostile",
            "--quick",
            "--json",
            "--seconds",
            "1.5",
            "--transport",
        ])
        .arg(transports.join(","))
        .output()
        .expect("bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let v: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n--- stderr ---\n{stderr}"));
    assert!(
        out.status.success(),
        "bench hostile failed: {stderr}\n{v:#}"
    );
    assert_eq!(v["passed"], true, "{v:#}");
    let reports = v["transports"].as_array().expect("a report per transport");
    assert_eq!(reports.len(), transports.len(), "{v:#}");
    let kinds = [
        "garbage",
        "slowloris",
        "oversized",
        "bad-crc",
        "flood",
        "reconnect-storm",
    ];
    for (t, r) in transports.iter().zip(reports) {
        assert_eq!(r["transport"], *t, "{r:#}");
        if *t == "dpdk" {
            assert_eq!(r["link"], "af_packet", "the default link: {r:#}");
        }
        assert_eq!(r["failures"], Value::Array(Vec::new()), "{t}: {r:#}");
        let unloaded = &r["unloaded"];
        assert!(unloaded["round_trips"].as_u64() > Some(0), "{t}: {r:#}");
        let attacks = r["attacks"].as_array().expect("attacks");
        let names: Vec<&str> = attacks
            .iter()
            .filter_map(|a| a["attack"].as_str())
            .collect();
        assert_eq!(names, kinds, "{t}: every attack ran, in order");
        for a in attacks {
            let name = a["attack"].as_str().unwrap_or("?");
            // The daemon saw it: its trace moved (the report says which counters).
            assert_eq!(a["trace_ok"], true, "{t} {name}: {a:#}");
            let moved = a["trace"]
                .as_object()
                .expect("trace")
                .values()
                .filter(|d| d.as_f64() > Some(0.0))
                .count();
            assert!(moved > 0, "{t} {name}: {a:#}");
            // Honest clients were answered throughout.
            let h = &a["honest"];
            assert!(h["round_trips"].as_u64() > Some(0), "{t} {name}: {a:#}");
            assert_eq!(h["lost"], 0, "{t} {name}: {a:#}");
            assert_eq!(h["newcomers_failed"], 0, "{t} {name}: {a:#}");
            assert!(h["p50_ratio"].as_f64().is_some(), "{t} {name}: {a:#}");
            // The attack did what it says.
            assert!(
                a["attacker"]["connections"].as_u64() > Some(0),
                "{t} {name}: {a:#}"
            );
        }
    }
}
