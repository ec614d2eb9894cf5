//! The kernel TCP floor on loopback, for `bench all`: sockperf ping-pong (64 B) and
//! throughput (4 KiB messages), and iperf3 bulk (one stream). Each tool's server runs on the
//! CPU the msgr paths give their server, its client on theirs (`taskset`), so the floor and
//! the messenger are measured on the same cores.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::dpdklink::{Cpus, Row};

/// The sockperf and iperf3 rows: figures, or why a tool could not run.
pub(crate) fn rows(seconds: u64, cpus: Cpus) -> Vec<Row> {
    let base = |path: &str| Row {
        link: "lo".into(),
        path: path.into(),
        ..Row::default()
    };
    let mut rows = Vec::new();
    eprintln!("bench: sockperf tcp ping-pong 64 B, {seconds} s...");
    let mut r = base("sockperf tcp ping-pong 64 B");
    match crate::sockperf_pp(64, seconds, Some(cpus)) {
        Ok(l) => {
            r.p50_us = Some(l.p50);
            r.p99_us = Some(l.p99);
            r.round_trips_s = l.round_trips_s();
        }
        Err(e) => r.skipped = Some(e),
    }
    rows.push(r);
    eprintln!("bench: sockperf tcp throughput 4 KiB, {seconds} s...");
    let mut r = base("sockperf tcp throughput 4 KiB");
    match crate::sockperf_tp(4096, seconds, Some(cpus)) {
        Ok(t) => r.bulk = Some(format!("{:.0} MB/s, {:.0} msg/s", t.mb_s, t.msgs_s)),
        Err(e) => r.skipped = Some(e),
    }
    rows.push(r);
    eprintln!("bench: iperf3 tcp, one stream, {seconds} s...");
    let mut r = base("iperf3 tcp, one stream");
    match iperf3(seconds, cpus) {
        Ok(b) => {
            r.bulk = Some(format!(
                "{:.0} MB/s (CPU: sender {:.0}%, receiver {:.0}%)",
                b.mb_s, b.sender_cpu, b.receiver_cpu
            ))
        }
        Err(e) => r.skipped = Some(e),
    }
    rows.push(r);
    rows
}

/// What one iperf3 run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bulk {
    /// Payload received, MB/s.
    pub(crate) mb_s: f64,
    /// CPU use of each side over the run, percent of one CPU.
    pub(crate) sender_cpu: f64,
    pub(crate) receiver_cpu: f64,
}

/// One iperf3 run on loopback: a one-off server (`-1`) on `cpus.a`, the client on `cpus.b`.
fn iperf3(seconds: u64, cpus: Cpus) -> Result<Bulk, String> {
    let port = crate::free_port()?;
    let port = port.to_string();
    let server = crate::pinned("iperf3", Some(cpus.a))
        .args(["-s", "-1", "-B", "127.0.0.1", "-p", &port])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("iperf3 not runnable ({e}); apt-get install iperf3"))?;
    let _server = crate::Proc(server);
    let mut last = String::new();
    // The server needs a moment to listen: retry the connection a few times.
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        let out = crate::pinned("iperf3", Some(cpus.b))
            .args([
                "-c",
                "127.0.0.1",
                "-p",
                &port,
                "-t",
                &seconds.to_string(),
                "-J",
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("iperf3 not runnable ({e}); apt-get install iperf3"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        match parse_iperf3(&text) {
            Ok(b) if out.status.success() => return Ok(b),
            Ok(_) => last = format!("iperf3 exited with {}", out.status),
            Err(e) => last = e,
        }
        if !last.contains("connect") {
            break;
        }
    }
    Err(last)
}

/// The figures of `iperf3 -c ... -J` output, or iperf3's own error.
pub(crate) fn parse_iperf3(json: &str) -> Result<Bulk, String> {
    let v: Value =
        serde_json::from_str(json.trim()).map_err(|e| format!("iperf3: no JSON output ({e})"))?;
    if let Some(e) = v["error"].as_str() {
        return Err(format!("iperf3: {e}"));
    }
    let end = &v["end"];
    let bps = end["sum_received"]["bits_per_second"]
        .as_f64()
        .ok_or("iperf3: no end.sum_received.bits_per_second")?;
    let cpu = |k: &str| {
        end["cpu_utilization_percent"][k]
            .as_f64()
            .unwrap_or(f64::NAN)
    };
    Ok(Bulk {
        mb_s: bps / 8e6,
        sender_cpu: cpu("host_total"),
        receiver_cpu: cpu("remote_total"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iperf3_json() {
        let ok = r#"{"start":{},"intervals":[],"end":{
            "sum_sent":{"bits_per_second":4.1e10},
            "sum_received":{"bits_per_second":4.0e10},
            "cpu_utilization_percent":{"host_total":91.5,"remote_total":63.25}}}"#;
        let b = parse_iperf3(ok).unwrap();
        assert_eq!(b.mb_s, 5000.0);
        assert_eq!(b.sender_cpu, 91.5);
        assert_eq!(b.receiver_cpu, 63.25);
        let refused = r#"{"start":{},"intervals":[],"end":{},
            "error":"unable to connect to server: Connection refused"}"#;
        assert!(parse_iperf3(refused)
            .unwrap_err()
            .contains("Connection refused"));
        assert!(parse_iperf3("").unwrap_err().contains("no JSON"));
        assert!(parse_iperf3(r#"{"end":{}}"#)
            .unwrap_err()
            .contains("bits_per_second"));
    }
}
