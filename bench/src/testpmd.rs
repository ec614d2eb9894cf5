//! `bench testpmd --link vhost`: the raw-link ceiling, two `dpdk-testpmd` processes over
//! vhost-user ↔ virtio-user exactly as dpdk-virtual-links.md §2 measured them, on the CPUs
//! the stack benchmark gives its two sides:
//! - side B, started first: `net_virtio_user0,path=SOCK,server=1` (it waits in EAL init
//!   until A connects); side A: `net_vhost0,iface=SOCK,client=1`;
//! - each process: main lcore (which only prints stats once a second) on the other side's
//!   CPU, forwarding lcore on its own; `--no-huge -m 512 --no-pci`, a unique file prefix;
//! - 1-packet ping-pong: `--forward-mode=io --burst=1` on both, `--tx-first` on B (a packet
//!   B sends before A's queues are up waits in the vring; one that A sent early would be
//!   dropped), so one 64 B packet circulates and A's Rx-pps is round trips/s;
//! - one-way A→B (the stack's bulk direction): A `txonly` (64 B, or `--txpkts=1500`), B
//!   `rxonly`, B's Rx-pps.
//!
//! Each figure is the median of testpmd's 1-second Rx-pps samples (the first and last
//! non-zero ones cut, they straddle start and stop). Every testpmd runs under
//! `timeout -k 3 -s INT`; the receiver is stopped with SIGINT (through `timeout`, which
//! forwards it and arms its SIGKILL); runtime directories and the socket are removed.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::dpdklink::{settle, Cpus, Row, RuntimeDir, TempDir};

const BIN: &str = "dpdk-testpmd";

/// What the two testpmds do.
#[derive(Debug, Clone, Copy)]
enum Mode {
    PingPong,
    /// A sends frames of this size, B counts them.
    OneWay(u32),
}

/// The testpmd rows for `link` (only vhost has a testpmd pair).
pub(crate) fn rows(seconds: u64, cpus: Cpus) -> Vec<Row> {
    let seconds = seconds.max(2);
    let base = |path: &str| Row {
        link: "vhost".into(),
        path: path.into(),
        ..Row::default()
    };
    let bin = match find_testpmd() {
        Ok(b) => b,
        Err(e) => {
            return vec![Row {
                skipped: Some(e),
                ..base("testpmd")
            }]
        }
    };
    let mut rows = Vec::new();
    let modes = [
        (Mode::PingPong, "testpmd io, 1-packet ping-pong"),
        (Mode::OneWay(64), "testpmd txonly 64 B frames"),
        (Mode::OneWay(1500), "testpmd txonly 1500 B frames"),
    ];
    for (i, (mode, path)) in modes.into_iter().enumerate() {
        let load = settle(Duration::from_secs(15));
        eprintln!("bench: {path} over vhost-user, {seconds} s...");
        let mut row = base(path);
        row.load = load;
        // One retry: on a loaded machine a starved testpmd can miss its whole run (a
        // ping-pong whose single packet is lost never recovers).
        let measured = pair(&bin, mode, seconds, cpus, i).or_else(|e| {
            eprintln!("bench: {path}: {e}; once more");
            pair(&bin, mode, seconds, cpus, i)
        });
        match measured {
            Ok(pps) => match mode {
                Mode::PingPong => {
                    row.round_trips_s = Some(pps);
                    row.rtt_mean_us = Some(1e6 / pps);
                }
                Mode::OneWay(size) => {
                    row.frames_s = Some(pps);
                    row.bulk = Some(format!(
                        "{:.0} MB/s, {:.2} Mpps",
                        pps * f64::from(size) / 1e6,
                        pps / 1e6
                    ));
                }
            },
            Err(e) => row.skipped = Some(e),
        }
        rows.push(row);
    }
    rows
}

/// `dpdk-testpmd` and `timeout` on the PATH.
fn find_testpmd() -> Result<PathBuf, String> {
    let find = |name: &str| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    };
    let bin = find(BIN).ok_or_else(|| {
        format!("{BIN} not found (Debian 12 ships it in dpdk-dev: apt-get install dpdk-dev)")
    })?;
    find("timeout").ok_or("`timeout` (coreutils) not found")?;
    Ok(bin)
}

/// One testpmd under `timeout`, its output in a file; stopped (SIGINT, then SIGKILL) and
/// reaped on drop.
struct Testpmd {
    child: Child,
    out: PathBuf,
    status: Option<ExitStatus>,
}

impl Testpmd {
    fn spawn(bin: &Path, limit_s: u64, args: &[String], out: PathBuf) -> Result<Self, String> {
        let file = File::create(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        let err = file.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new("timeout")
            .args(["-k", "3", "-s", "INT", &limit_s.to_string()])
            .arg(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot run timeout {}: {e}", bin.display()))?;
        Ok(Self {
            child,
            out,
            status: None,
        })
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits at most `limit` for it to exit.
    fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGINT to `timeout`, which passes it on and kills testpmd 3 s later if it lingers.
    fn interrupt(&mut self) {
        if self.exited().is_none() {
            let _ = Command::new("kill")
                .args(["-s", "INT", &self.child.id().to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    fn output(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Its last lines, for an error message.
    fn tail(&self) -> String {
        let text = self.output();
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('\u{1b}'))
            .collect();
        lines[lines.len().saturating_sub(4)..].join(" | ")
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        self.interrupt();
        if self.wait(Duration::from_secs(5)).is_none() {
            // testpmd itself got SIGKILL from `timeout -k 3` by now.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// EAL and testpmd arguments of one side: main lcore on `main_cpu`, forwarding lcore on
/// `fwd_cpu`.
fn args(prefix: &str, main_cpu: u32, fwd_cpu: u32, vdev: String, app: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "--no-huge",
        "-m",
        "512",
        "--no-pci",
        "--no-telemetry",
        "--file-prefix",
        prefix,
        "--log-level",
        "warning",
        "--lcores",
        &format!("0@{main_cpu},1@{fwd_cpu}"),
        "--main-lcore",
        "0",
        &vdev,
        "--",
        // The default pool (155,456 mbufs) does not fit in 512 MB.
        "--total-num-mbufs=32768",
        "--stats-period=1",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    v.extend(app.iter().map(|s| (*s).to_owned()));
    v
}

/// Runs one pair for `seconds`; the receiver's steady packet rate.
fn pair(bin: &Path, mode: Mode, seconds: u64, cpus: Cpus, n: usize) -> Result<f64, String> {
    let tmp = TempDir::create(&format!("testpmd{n}"))?;
    let sock = tmp.path.join("vhost.sock");
    let pid = std::process::id();
    let (prefix_a, prefix_b) = (
        format!("msgr-tp-{pid}-{n}-a"),
        format!("msgr-tp-{pid}-{n}-b"),
    );
    // Dropped after both processes (declared first).
    let _runtime = (RuntimeDir::new(&prefix_a), RuntimeDir::new(&prefix_b));
    let txpkts;
    let (app_a, app_b): (Vec<&str>, Vec<&str>) = match mode {
        Mode::PingPong => (
            vec!["--forward-mode=io", "--burst=1"],
            vec!["--forward-mode=io", "--burst=1", "--tx-first"],
        ),
        Mode::OneWay(size) => {
            txpkts = format!("--txpkts={size}");
            (
                vec!["--forward-mode=txonly", &txpkts],
                vec!["--forward-mode=rxonly"],
            )
        }
    };
    let vdev_b = format!(
        "--vdev=net_virtio_user0,path={},server=1,queues=1",
        sock.display()
    );
    let vdev_a = format!(
        "--vdev=net_vhost0,iface={},client=1,queues=1",
        sock.display()
    );
    // B: virtio-user server first (it creates the socket and waits in EAL init for A).
    let mut b = Testpmd::spawn(
        bin,
        seconds + 30,
        &args(&prefix_b, cpus.a, cpus.b, vdev_b, &app_b),
        tmp.path.join("b.out"),
    )?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        if let Some(s) = b.exited() {
            return Err(format!("testpmd B exited ({s}): {}", b.tail()));
        }
        if Instant::now() >= deadline {
            return Err(format!("testpmd B made no socket in 10 s: {}", b.tail()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // A: vhost client; its timeout bounds the run (plus ~1 s for its start).
    let mut a = Testpmd::spawn(
        bin,
        seconds + 1,
        &args(&prefix_a, cpus.b, cpus.a, vdev_a, &app_a),
        tmp.path.join("a.out"),
    )?;
    let a_status = a.wait(Duration::from_secs(seconds + 1 + 3 + 5));
    b.interrupt();
    let b_status = b.wait(Duration::from_secs(8));
    let receiver = match mode {
        Mode::PingPong => &a,
        Mode::OneWay(_) => &b,
    };
    let samples = rx_pps(&receiver.output());
    if let Some(pps) = steady(&samples) {
        return Ok(pps);
    }
    Err(format!(
        "no traffic (A exit {a_status:?}, B exit {b_status:?}; receiver's Rx-pps samples \
         {samples:?}; A: {}; B: {})",
        a.tail(),
        b.tail()
    ))
}

/// The `Rx-pps:` samples of testpmd's periodic port statistics.
fn rx_pps(text: &str) -> Vec<f64> {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix("Rx-pps:"))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The median of the non-zero samples without the first and the last (partial seconds at
/// start and stop) when there are at least three.
fn steady(samples: &[f64]) -> Option<f64> {
    let nz: Vec<f64> = samples.iter().copied().filter(|&x| x > 0.0).collect();
    let core = if nz.len() >= 3 {
        &nz[1..nz.len() - 1]
    } else {
        &nz[..]
    };
    if core.is_empty() {
        return None;
    }
    Some(crate::median(core.to_vec()))
}

/// For `bench testpmd` alone: the rows and the table.
pub(crate) fn run(seconds: u64) -> Result<(), String> {
    let cpus = Cpus::pick();
    note_cpus(cpus);
    let rows = rows(seconds, cpus);
    crate::dpdklink::print_table(&rows);
    if rows.iter().all(|r| r.skipped.is_some()) {
        return Err("testpmd measured nothing".into());
    }
    Ok(())
}

pub(crate) fn note_cpus(cpus: Cpus) {
    if cpus.shared() {
        eprintln!(
            "bench: one CPU ({}) for both sides: busy pollers there take turns only when \
             preempted (dpdk-virtual-links.md §7): testpmd's figures collapse, the stack's \
             workers yield when idle",
            cpus.a
        );
    } else {
        eprintln!("bench: side A on CPU {}, side B on CPU {}", cpus.a, cpus.b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\u{1b}[2J\u{1b}[1;1H\nPort statistics ====\n  \
        Throughput (since last show)\n  Rx-pps:            0          Rx-bps:            0\n  \
        Tx-pps:            0          Tx-bps:            0\n  \
        Rx-pps:     16405827          Rx-bps:   8399783624\n  \
        Rx-pps:     15936770          Rx-bps:   8159626488\n  \
        Rx-pps:     14741156          Rx-bps:   7547472176\n  \
        Rx-pps:       300000          Rx-bps:   7547472176\n";

    #[test]
    fn rx_pps_samples_and_their_steady_median() {
        let s = rx_pps(SAMPLE);
        assert_eq!(s, vec![0.0, 16405827.0, 15936770.0, 14741156.0, 300000.0]);
        // zeros dropped, first and last non-zero cut: median of the two middle ones.
        assert_eq!(steady(&s), Some((15936770.0 + 14741156.0) / 2.0));
        assert_eq!(steady(&[0.0, 5.0]), Some(5.0));
        assert_eq!(steady(&[0.0, 0.0]), None);
    }
}
