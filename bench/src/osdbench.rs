//! `bench osd`: the OSD workload over every transport, side by side, on one machine.
//!
//! Each path is a real `msgr serve` (the OSD-like daemon) and a real `msgr load` (pipelined
//! write_full ops, then reads checked byte for byte), in two processes, one CPU each:
//! - `dpdk`: the userspace stack on a DPDK vhost-user pair (server on `net_vhost`, client on
//!   `net_virtio_user`), one busy-polling worker per side;
//! - `posix` and `simple`: the kernel's TCP over loopback, pinned with `taskset`.
//!
//! Rounds interleave the paths (a shared machine drifts; a path run only at the start or the
//! end would meet another machine); the table reports each figure's median over the rounds
//! and the ratio of medians against posix, the CSV every single run. Per op it also reports
//! CPU time: the server's (from /proc, over the run's write and read phases), the client's
//! (what `msgr load` measured of itself per phase) and, for dpdk, the server worker's busy
//! time (`perf dump`: time in loop turns that found work; a busy poller's CPU time is its
//! wall time), and the server's system calls per op (`perf stat` on its raw_syscalls
//! tracepoint, when perf is there and may attach).
#![allow(clippy::disallowed_methods)] // a benchmark driver: it reads the clock

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use msgr::messenger::TransportKind;
use serde_json::Value;

use crate::dpdklink::{Cpus, RuntimeDir, TempDir};

/// What `bench osd` runs.
pub(crate) struct Plan {
    pub(crate) paths: Vec<TransportKind>,
    pub(crate) sizes: Vec<u64>,
    pub(crate) depths: Vec<u32>,
    /// Client sessions (each with `depths` ops in flight).
    pub(crate) conns: Vec<u32>,
    pub(crate) rounds: u32,
    /// Multiplies every op count (0.05 for a smoke run).
    pub(crate) scale: f64,
    /// Where the table, the CSV of every run and the plots go.
    pub(crate) out: Option<PathBuf>,
    /// The msgr program, the two sides' CPUs, the dpdk link's MTU.
    pub(crate) sides: crate::Sides,
}

/// The CPUs of the two sides: `given` (server, client) if both are allowed, else the first
/// two allowed ones.
pub(crate) fn pick_cpus(given: &[u32], allowed: &[u32]) -> Result<Cpus, String> {
    match given {
        [] => Ok(Cpus::from_allowed(allowed)),
        [a, b] => {
            for c in [a, b] {
                if !allowed.is_empty() && !allowed.contains(c) {
                    return Err(format!(
                        "--cpus: CPU {c} is not one this process may use ({allowed:?})"
                    ));
                }
            }
            Ok(Cpus { a: *a, b: *b })
        }
        _ => Err("--cpus: give two CPUs, SERVER,CLIENT".into()),
    }
}

/// Ops per phase for a workload: about a second on this kind of machine, scaled.
pub(crate) fn ops_for(size: u64, depth: u32, scale: f64) -> u64 {
    let base = if size >= 64 * 1024 {
        // ~1.5 GB per phase.
        (1_500_000_000 / size).max(50)
    } else if depth <= 1 {
        30_000
    } else {
        200_000
    };
    let floor = u64::from(depth).max(1) * 2;
    ((base as f64 * scale) as u64).max(floor).max(20)
}

/// Distinct objects: the store holds at most 256 MiB, at most 1,024 names.
pub(crate) fn objects_for(size: u64, ops: u64) -> u64 {
    (256 * 1024 * 1024 / size.max(1)).clamp(1, 1024).min(ops)
}

/// One phase of one run.
#[derive(Debug, Clone, Default)]
pub(crate) struct Point {
    pub(crate) ops: u64,
    pub(crate) seconds: f64,
    pub(crate) ops_per_sec: f64,
    pub(crate) mb_per_sec: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
    pub(crate) client_cpu_us_per_op: Option<f64>,
    pub(crate) server_cpu_us_per_op: Option<f64>,
    pub(crate) server_busy_us_per_op: Option<f64>,
    /// System calls the server made per op (perf's raw_syscalls tracepoint), over the run.
    pub(crate) server_syscalls_per_op: Option<f64>,
    /// System calls the client made per op: its whole run's, less those of a one-op run
    /// (start-up: EAL, the session) on the same path in the same round.
    pub(crate) client_syscalls_per_op: Option<f64>,
    /// The latency distribution: (percentile, microseconds) pairs.
    pub(crate) cdf: Vec<(f64, f64)>,
}

/// A phase of `msgr load`, in the order it runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    Write,
    Read,
}

impl Phase {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Write => "write",
            Self::Read => "read",
        }
    }
}

/// Key of a table row (rows sort by size, sessions, ops in flight, phase, path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key {
    pub(crate) size: u64,
    /// Client sessions.
    pub(crate) conns: u32,
    /// Ops in flight on each session.
    pub(crate) depth: u32,
    pub(crate) phase: Phase,
    pub(crate) path: TransportKind,
}

impl Key {
    /// One session.
    pub(crate) fn new(size: u64, depth: u32, phase: Phase, path: TransportKind) -> Self {
        Self {
            size,
            conns: 1,
            depth,
            phase,
            path,
        }
    }

    /// The same workload on `conns` sessions.
    pub(crate) fn sessions(self, conns: u32) -> Self {
        Self { conns, ..self }
    }

    /// The same workload on another path.
    pub(crate) fn on(self, path: TransportKind) -> Self {
        Self { path, ..self }
    }
}

/// Every run's points, by row.
pub(crate) type Points = BTreeMap<Key, Vec<Point>>;

/// The phases of `msgr load --json` output.
pub(crate) fn parse_load(json: &str) -> Result<Vec<(Phase, Point)>, String> {
    let v: Value =
        serde_json::from_str(json.trim()).map_err(|e| format!("bad JSON from msgr load: {e}"))?;
    let mut out = Vec::new();
    for ph in [Phase::Write, Phase::Read] {
        let phase = ph.name();
        let p = &v[phase];
        let num = |k: &str| {
            p[k].as_f64()
                .ok_or_else(|| format!("msgr load: no {phase}.{k}"))
        };
        let lat = |k: &str| {
            p["lat_us"][k]
                .as_f64()
                .ok_or_else(|| format!("msgr load: no {phase}.lat_us.{k}"))
        };
        let ops = num("ops")? as u64;
        out.push((
            ph,
            Point {
                ops,
                seconds: num("seconds")?,
                ops_per_sec: num("ops_per_sec")?,
                mb_per_sec: num("mb_per_sec")?,
                p50_us: lat("p50")?,
                p99_us: lat("p99")?,
                p999_us: lat("p999")?,
                cdf: p["lat_us"]["cdf"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| Some((x[0].as_f64()?, x[1].as_f64()?)))
                            .collect()
                    })
                    .unwrap_or_default(),
                client_cpu_us_per_op: p["cpu_seconds"]
                    .as_f64()
                    .map(|s| s * 1e6 / ops.max(1) as f64),
                ..Point::default()
            },
        ));
    }
    Ok(out)
}

/// The workers' busy time in a `perf dump`, summed (microseconds).
pub(crate) fn busy_us(dump: &Value) -> Option<u64> {
    let workers = dump["dpdk"]["workers"].as_array()?;
    workers.iter().map(|w| w["busy_us"].as_u64()).sum()
}

/// The count in `perf stat -x ,` output (`COUNT,,EVENT,...`); `None` if not counted.
pub(crate) fn parse_perf_count(out: &str) -> Option<u64> {
    out.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .find(|l| l.contains("raw_syscalls:sys_enter"))
        .and_then(|l| l.split(',').next())
        .and_then(|c| c.trim().parse().ok())
}

/// `c` run under `perf stat`, its system calls counted into `out`.
fn counted(c: &Command, out: &Path) -> Command {
    let mut w = Command::new("perf");
    w.args(["stat", "-e", "raw_syscalls:sys_enter", "-x", ",", "-o"])
        .arg(out)
        .arg("--")
        .arg(c.get_program())
        .args(c.get_args());
    w
}

/// Whether `perf stat` can count system calls here (installed, permitted, tracepoint).
fn perf_counts(dir: &Path) -> bool {
    let out = dir.join("perf-check.txt");
    let mut probe = Command::new("true");
    probe.arg("probe");
    counted(&probe, &out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        && std::fs::read_to_string(&out)
            .ok()
            .and_then(|t| parse_perf_count(&t))
            .is_some()
}

/// `perf stat` counting one process's system calls until stopped.
struct SyscallCount {
    child: Child,
    out: PathBuf,
}

impl SyscallCount {
    /// Starts counting `pid`'s system calls; `None` if perf cannot (not installed, not
    /// root, no tracepoint).
    fn start(pid: u32, out: PathBuf) -> Option<Self> {
        let _ = std::fs::remove_file(&out);
        let child = Command::new("perf")
            .args(["stat", "-e", "raw_syscalls:sys_enter", "-x", ",", "-p"])
            .arg(pid.to_string())
            .arg("-o")
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        // perf attaches in a few milliseconds; a run is far longer.
        std::thread::sleep(Duration::from_millis(100));
        Some(Self { child, out })
    }

    /// Stops counting (SIGINT makes perf print its count) and returns the count.
    fn finish(mut self) -> Option<u64> {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                let text = std::fs::read_to_string(&self.out).ok()?;
                return parse_perf_count(&text);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

/// A running `msgr serve`, stopped (admin shutdown, then kill) on drop.
struct Server {
    child: Child,
    addr: String,
    asok: PathBuf,
    msgr: PathBuf,
    _runtime: Option<RuntimeDir>,
}

impl Server {
    fn perf_dump(&self) -> Option<Value> {
        let out = Command::new(&self.msgr)
            .arg("admin")
            .arg(&self.asok)
            .args(["perf", "dump"])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new(&self.msgr)
            .arg("admin")
            .arg(&self.asok)
            .arg("shutdown")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const EAL: &str = "--no-huge -m 1024 --no-pci --no-telemetry";
const SERVER_IP: &str = "10.78.0.1";

/// Where each side runs: its CPUs, and its network workers (posix threads; dpdk queues,
/// one lcore each, placed on the side's CPUs in turn).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placement {
    pub(crate) server: Vec<u32>,
    pub(crate) client: Vec<u32>,
    pub(crate) workers: u16,
}

impl Placement {
    /// From the command line: `--server-cpus`/`--client-cpus` lists, else `--cpus`' pair
    /// (else the first two CPUs allowed), each CPU checked against `allowed`.
    pub(crate) fn from_args(sides: &crate::Sides, allowed: &[u32]) -> Result<Self, String> {
        let pair = pick_cpus(&sides.cpus, allowed)?;
        let list = |flag: &str, given: &Option<String>, default: u32| match given {
            None => Ok(vec![default]),
            Some(text) => {
                let cpus = parse_cpus(text).map_err(|e| format!("{flag} {text:?}: {e}"))?;
                match cpus.iter().find(|c| !allowed.contains(c)) {
                    Some(c) => Err(format!(
                        "{flag}: CPU {c} is not one this process may use ({allowed:?})"
                    )),
                    None => Ok(cpus),
                }
            }
        };
        Ok(Self {
            server: list("--server-cpus", &sides.server_cpus, pair.a)?,
            client: list("--client-cpus", &sides.client_cpus, pair.b)?,
            workers: sides.workers,
        })
    }

    fn cpus(&self, server: bool) -> &[u32] {
        if server {
            &self.server
        } else {
            &self.client
        }
    }

    /// Whether a busy-polling worker would share its CPU with another (the sides overlap,
    /// or a side has fewer CPUs than workers): then dpdk workers yield when idle.
    pub(crate) fn crowded(&self) -> bool {
        let w = usize::from(self.workers);
        self.server.iter().any(|c| self.client.contains(c))
            || self.server.len() < w
            || self.client.len() < w
    }

    /// EAL's `--lcores`: lcore i on the side's CPU i (in turn).
    fn lcores(&self, server: bool) -> String {
        let cpus = self.cpus(server);
        (0..usize::from(self.workers))
            .map(|i| format!("{i}@{}", cpus[i % cpus.len()]))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// For the report: "server on CPU 0, client on CPU 1" and the workers.
    pub(crate) fn describe(&self) -> String {
        let l = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        format!(
            "server on CPU {}, client on CPU {}, {} network worker(s) per side{}",
            l(&self.server),
            l(&self.client),
            self.workers,
            if self.crowded() {
                " (workers share CPUs: dpdk workers yield when idle)"
            } else {
                ""
            }
        )
    }
}

/// A CPU list as the kernel writes them: "0-3,8" (not empty).
pub(crate) fn parse_cpus(text: &str) -> Result<Vec<u32>, String> {
    match host::roots::parse_cpu_list(text)? {
        v if v.is_empty() => Err("no CPUs".into()),
        v => Ok(v),
    }
}

/// Where the processes of a path run.
struct Setup<'a> {
    msgr: &'a Path,
    dir: &'a Path,
    place: Placement,
    tag: String,
    mtu: u16,
    /// `perf stat` counts system calls here.
    perf: bool,
}

impl Setup<'_> {
    /// `msgr [global args]` for one side of a path; pinned with taskset on the kernel paths.
    fn command(&self, path: TransportKind, server: bool, prefix: &str) -> Command {
        let queues = self.place.workers;
        let mut c = match path {
            TransportKind::Dpdk => {
                let vdev = if server {
                    format!(
                        "--vdev=net_vhost0,iface={},client=1,queues={queues}",
                        self.dir.join("vh.sock").display()
                    )
                } else {
                    format!(
                        "--vdev=net_virtio_user0,path={},server=1,queues={queues}",
                        self.dir.join("vh.sock").display()
                    )
                };
                let mut c = Command::new(self.msgr);
                let idle = if self.place.crowded() {
                    "yield:0"
                } else {
                    "busy"
                };
                c.args(["--transport", "dpdk", "--idle", idle, "--eal"])
                    .arg(format!(
                        "{EAL} --file-prefix {prefix} --lcores {} {vdev}",
                        self.place.lcores(server)
                    ))
                    .arg("--ip")
                    .arg(if server {
                        format!("{SERVER_IP}/24")
                    } else {
                        "10.78.0.2/24".to_owned()
                    });
                if self.mtu != 1500 {
                    c.arg("--mtu").arg(self.mtu.to_string());
                }
                c
            }
            TransportKind::Posix | TransportKind::Simple => {
                let cpus: Vec<String> =
                    self.place.cpus(server).iter().map(u32::to_string).collect();
                let mut c = Command::new("taskset");
                c.args(["-c", &cpus.join(",")])
                    .arg(self.msgr)
                    .args(["--transport", path.name()]);
                c
            }
        };
        c.stdin(Stdio::null());
        c
    }

    fn start_server(&self, path: TransportKind) -> Result<Server, String> {
        let prefix = format!("{}-s", self.tag);
        let asok = self.dir.join(format!("{}.asok", path.name()));
        let _ = std::fs::remove_file(self.dir.join("vh.sock"));
        let bind = match path {
            TransportKind::Dpdk => format!("v1:{SERVER_IP}:6800"),
            _ => "v1:127.0.0.1:0".to_owned(),
        };
        let mut c = self.command(path, true, &prefix);
        let workers = self.place.workers.to_string();
        c.args([
            "serve",
            "--workers",
            &workers,
            "--run-for",
            "86400",
            "--bind",
            &bind,
        ])
        .arg("--admin-socket")
        .arg(&asok);
        // Its log goes to a file: a pipe nobody drains would stall the server once full (a
        // line per session: a thousand sessions fill one).
        let log_path = self.dir.join(format!("{}-server.log", path.name()));
        let log =
            std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        c.stdout(Stdio::piped()).stderr(log);
        let mut child = c
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.msgr.display()))?;
        let runtime = (path == TransportKind::Dpdk).then(|| RuntimeDir::new(&prefix));
        // The first line says where it listens: "listening on v1:IP:PORT/NONCE". The rest
        // of stdout is drained until the server exits.
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let _ = tx.send(line);
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let addr = line.split_whitespace().nth(2).unwrap_or("").to_owned();
        if addr.is_empty() {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read(&log_path).unwrap_or_default();
            return Err(format!(
                "{} server did not start: {}",
                path.name(),
                last_line(&log)
            ));
        }
        let srv = Server {
            child,
            addr,
            asok,
            msgr: self.msgr.to_owned(),
            _runtime: runtime,
        };
        if path == TransportKind::Dpdk {
            // The first run's busy time needs a dump from before it: wait until the worker
            // reports (it may lag the listening line).
            let end = Instant::now() + Duration::from_secs(5);
            while srv.perf_dump().as_ref().and_then(busy_us).is_none() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(srv)
    }

    /// One `msgr load` run of workload `w` (its phase and path aside) against `srv`: its
    /// phases, with the server's CPU per op.
    fn load(
        &self,
        path: TransportKind,
        srv: &Server,
        w: Key,
        ops: u64,
        n: usize,
        startup: Option<u64>,
    ) -> Result<Vec<(Phase, Point)>, String> {
        let prefix = format!("{}-c{n}", self.tag);
        let _runtime = (path == TransportKind::Dpdk).then(|| RuntimeDir::new(&prefix));
        let cpu0 = msgr::procstat::cpu_time(Some(srv.child.id()));
        let busy0 = srv.perf_dump().as_ref().and_then(busy_us);
        let sys = SyscallCount::start(srv.child.id(), self.dir.join("syscalls.txt"));
        let (out, client_syscalls) = self.run_load(path, srv, w, ops, &prefix)?;
        let syscalls = sys.and_then(SyscallCount::finish);
        if !out.status.success() {
            return Err(format!("msgr load failed: {}", last_line(&out.stderr)));
        }
        let mut phases = parse_load(&String::from_utf8_lossy(&out.stdout))?;
        let all_ops: u64 = phases.iter().map(|(_, p)| p.ops).sum::<u64>().max(1);
        let cpu = msgr::procstat::cpu_time(Some(srv.child.id()))
            .zip(cpu0)
            .map(|(b, a)| b.saturating_sub(a).as_secs_f64() * 1e6 / all_ops as f64);
        let busy = srv
            .perf_dump()
            .as_ref()
            .and_then(busy_us)
            .zip(busy0)
            .map(|(b, a)| b.saturating_sub(a) as f64 / all_ops as f64);
        for (_, p) in &mut phases {
            p.server_cpu_us_per_op = cpu;
            p.server_busy_us_per_op = busy;
            p.server_syscalls_per_op = syscalls.map(|n| n as f64 / all_ops as f64);
            p.client_syscalls_per_op = client_syscalls
                .zip(startup)
                .map(|(n, s)| n.saturating_sub(s) as f64 / all_ops as f64);
        }
        Ok(phases)
    }

    /// `msgr load` of workload `w` (`ops` per phase) against `srv`: its output, and the
    /// system calls it made when perf counts them.
    fn run_load(
        &self,
        path: TransportKind,
        srv: &Server,
        w: Key,
        ops: u64,
        prefix: &str,
    ) -> Result<(std::process::Output, Option<u64>), String> {
        let mut c = self.command(path, false, prefix);
        c.args(["load", &srv.addr, "--json", "--timeout", "30"])
            .args(["--ops", &ops.to_string(), "--size", &w.size.to_string()])
            .args(["--in-flight", &w.depth.to_string()])
            .args(["--conns", &w.conns.to_string()])
            .args(["--workers", &self.place.workers.to_string()])
            .args(["--objects", &objects_for(w.size, ops).to_string()]);
        let counts = self.dir.join("client-syscalls.txt");
        let _ = std::fs::remove_file(&counts);
        let mut c = if self.perf { counted(&c, &counts) } else { c };
        let out = c
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run msgr load: {e}"))?;
        let n = std::fs::read_to_string(&counts)
            .ok()
            .and_then(|t| parse_perf_count(&t));
        Ok((out, n))
    }

    /// The system calls of a one-op run on `path` (a client's start-up and session).
    fn startup_syscalls(&self, path: TransportKind, srv: &Server, n: usize) -> Option<u64> {
        if !self.perf {
            return None;
        }
        let prefix = format!("{}-c{n}s", self.tag);
        let _runtime = (path == TransportKind::Dpdk).then(|| RuntimeDir::new(&prefix));
        let w = Key::new(0, 1, Phase::Write, path);
        match self.run_load(path, srv, w, 1, &prefix) {
            Ok((out, n)) if out.status.success() => n,
            _ => None,
        }
    }
}

/// The last non-empty line a process wrote (its error, for the msgr programs).
fn last_line(output: &[u8]) -> String {
    String::from_utf8_lossy(output)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_owned()
}

/// The `msgr` program beside this one (cargo builds them into the same directory).
fn find_msgr(given: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(p) = given {
        return Ok(p);
    }
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let p = me.with_file_name("msgr");
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "no msgr program at {} (build it: cargo build --release -p msgr; or give --msgr)",
            p.display()
        ))
    }
}

/// Why a path cannot run here, before trying it.
fn precheck(path: TransportKind) -> Option<String> {
    match path {
        TransportKind::Dpdk if !is_root() => Some("needs root (DPDK's runtime directory)".into()),
        TransportKind::Posix | TransportKind::Simple
            if Command::new("taskset")
                .arg("-V")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_err() =>
        {
            Some("needs taskset (util-linux) to pin the two sides".into())
        }
        _ => None,
    }
}

pub(crate) use host::is_root;

/// What a sweep measured: the report (header and table), every run as CSV, the points, and
/// the paths that failed (with why).
pub(crate) struct Sweep {
    /// The line above the table: machine, CPUs, rounds.
    pub(crate) head: String,
    pub(crate) csv: String,
    pub(crate) points: Points,
    pub(crate) failed: BTreeMap<TransportKind, String>,
}

/// `bench osd`: the sweep, printed, and written to `--out`.
pub(crate) fn run(plan: Plan) -> Result<(), String> {
    let sweep = measure(&plan)?;
    out!("{}", sweep.report());
    let written = plan
        .out
        .as_deref()
        .map_or(Ok(()), |dir| write_out(dir, &sweep));
    let mut why: Vec<String> = sweep.failure().into_iter().collect();
    if let Err(e) = written {
        why.push(e);
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(why.join("; "))
    }
}

impl Sweep {
    /// The head line and the table.
    pub(crate) fn report(&self) -> String {
        format!("{}\n{}", self.head, table(&self.points))
    }

    /// Adds another sweep's runs (on the same machine and CPUs) to this one's.
    pub(crate) fn merge(&mut self, other: Self) {
        for (k, v) in other.points {
            self.points.entry(k).or_default().extend(v);
        }
        self.csv
            .extend(other.csv.lines().skip(1).map(|l| format!("{l}\n")));
        for (p, e) in other.failed {
            self.failed.entry(p).or_insert(e);
        }
    }

    /// "paths that failed: ..." if any did.
    pub(crate) fn failure(&self) -> Option<String> {
        if self.failed.is_empty() {
            return None;
        }
        let paths: Vec<String> = self
            .failed
            .iter()
            .map(|(p, e)| format!("{}: {e}", p.name()))
            .collect();
        Some(format!("paths that failed: {}", paths.join("; ")))
    }
}

/// Runs the sweep: every path, size and ops-in-flight, `plan.rounds` times, paths taking
/// turns within a round. A path that fails is reported and left out of later rounds.
pub(crate) fn measure(plan: &Plan) -> Result<Sweep, String> {
    let msgr = find_msgr(plan.sides.msgr.clone())?;
    let place = Placement::from_args(&plan.sides, &crate::dpdklink::allowed_cpus())?;
    let dir = TempDir::create("osd")?;
    let setup = Setup {
        msgr: &msgr,
        dir: &dir.path,
        place: place.clone(),
        tag: format!("msgr-bosd{}", std::process::id()),
        mtu: plan.sides.mtu,
        perf: perf_counts(&dir.path),
    };
    if !setup.perf {
        eprintln!("bench: perf cannot count system calls here: no syscalls/op figures");
    }
    let mut failed: BTreeMap<TransportKind, String> = BTreeMap::new();
    for &p in &plan.paths {
        if let Some(why) = precheck(p) {
            failed.insert(p, why);
        }
    }
    let mut points: Points = BTreeMap::new();
    let mut csv = String::from(
        "round,path,size,in_flight,conns,phase,ops,seconds,ops_per_sec,mb_per_sec,p50_us,p99_us,\
         p999_us,client_cpu_us_per_op,server_cpu_us_per_op,server_busy_us_per_op,\
         server_syscalls_per_op,client_syscalls_per_op\n",
    );
    let runs = plan.sizes.len() * plan.depths.len() * plan.conns.len();
    let mut n = 0;
    for round in 1..=plan.rounds {
        for &path in &plan.paths {
            if failed.contains_key(&path) {
                continue;
            }
            eprintln!(
                "bench: round {round}/{}: {}: {}",
                plan.rounds,
                path.name(),
                place.describe()
            );
            let srv = match setup.start_server(path) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("bench: {e}");
                    failed.insert(path, e);
                    continue;
                }
            };
            n += 1;
            let startup = setup.startup_syscalls(path, &srv, n);
            let mut i = 0;
            'work: for &size in &plan.sizes {
                for &conns in &plan.conns {
                    for &depth in &plan.depths {
                        i += 1;
                        n += 1;
                        let ops = ops_for(size, depth.saturating_mul(conns), plan.scale);
                        eprintln!(
                            "bench:   [{i}/{runs}] {}: {ops} ops of {}, {depth} in flight on \
                             each of {conns} session(s)",
                            path.name(),
                            size_label(size)
                        );
                        let w = Key::new(size, depth, Phase::Write, path).sessions(conns);
                        match setup.load(path, &srv, w, ops, n, startup) {
                            Ok(phases) => {
                                for (phase, p) in phases {
                                    let key = Key { phase, ..w };
                                    let _ = writeln!(csv, "{}", csv_line(round, key, &p));
                                    points.entry(key).or_default().push(p);
                                }
                            }
                            Err(e) => {
                                eprintln!("bench: {}: {e}", path.name());
                                failed.insert(path, e);
                                break 'work;
                            }
                        }
                    }
                }
            }
            drop(srv);
        }
    }
    let mut head = String::new();
    let _ = writeln!(
        head,
        "machine: {} CPUs allowed; {}; {} interleaved rounds; figures are medians over the \
         rounds, 'vs posix' the ratio of medians (ops/s)",
        crate::dpdklink::allowed_cpus().len(),
        place.describe(),
        plan.rounds
    );
    Ok(Sweep {
        head,
        csv,
        points,
        failed,
    })
}

/// The report, every run as CSV, and the plots, into `dir` (created if need be).
pub(crate) fn write_out(dir: &Path, sweep: &Sweep) -> Result<(), String> {
    let (report, csv, points) = (&sweep.report(), &sweep.csv, &sweep.points);
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let write = |name: &str, text: &str| {
        let f = dir.join(name);
        std::fs::write(&f, text).map_err(|e| format!("cannot write {}: {e}", f.display()))
    };
    write("table.md", report)?;
    write("runs.csv", csv)?;
    crate::plots::throughput(points, &dir.join("throughput.png"))?;
    crate::plots::latency(points, &dir.join("latency.png"))?;
    let sweep = crate::plots::connections(points, &dir.join("connections.png"))?;
    eprintln!(
        "bench: table.md, runs.csv, throughput.png, latency.png{} in {}",
        if sweep { " and connections.png" } else { "" },
        dir.display()
    );
    Ok(())
}

fn csv_line(round: u32, k: Key, p: &Point) -> String {
    let opt = |v: Option<f64>| v.map_or_else(String::new, |x| format!("{x:.3}"));
    format!(
        "{round},{},{},{},{},{},{},{:.6},{:.1},{:.3},{:.2},{:.2},{:.2},{},{},{},{},{}",
        k.path.name(),
        k.size,
        k.depth,
        k.conns,
        k.phase.name(),
        p.ops,
        p.seconds,
        p.ops_per_sec,
        p.mb_per_sec,
        p.p50_us,
        p.p99_us,
        p.p999_us,
        opt(p.client_cpu_us_per_op),
        opt(p.server_cpu_us_per_op),
        opt(p.server_busy_us_per_op),
        opt(p.server_syscalls_per_op),
        opt(p.client_syscalls_per_op),
    )
}

pub(crate) fn size_label(size: u64) -> String {
    match size {
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{} MiB", s >> 20),
        s if s >= 1 << 10 && s % (1 << 10) == 0 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

/// The median of some values (the lower middle one for an even count); `None` if empty.
pub(crate) fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[(v.len() - 1) / 2])
}

/// The markdown table: a row per workload, phase and path.
pub(crate) fn table(points: &Points) -> String {
    let mut s = String::from(
        "| size | sessions | in flight | phase | path | ops/s | vs posix | MB/s | p50 us | p99 us \
         | p99.9 us | client CPU us/op | server CPU us/op | server busy us/op \
         | server syscalls/op | client syscalls/op |\n\
         |---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let med = |pts: &[Point], f: &dyn Fn(&Point) -> Option<f64>| {
        median(pts.iter().filter_map(f).collect())
    };
    let cell =
        |v: Option<f64>, prec: usize| v.map_or_else(|| "-".to_owned(), |x| format!("{x:.prec$}"));
    for (&k, pts) in points {
        let rate = med(pts, &|p| Some(p.ops_per_sec));
        let posix = points
            .get(&k.on(TransportKind::Posix))
            .and_then(|p| med(p, &|p| Some(p.ops_per_sec)));
        let ratio = match (rate, posix) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
            _ => "-".to_owned(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {ratio} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            size_label(k.size),
            k.conns,
            k.depth,
            k.phase.name(),
            k.path.name(),
            cell(rate, 0),
            cell(med(pts, &|p| Some(p.mb_per_sec)), 1),
            cell(med(pts, &|p| Some(p.p50_us)), 1),
            cell(med(pts, &|p| Some(p.p99_us)), 1),
            cell(med(pts, &|p| Some(p.p999_us)), 1),
            cell(med(pts, &|p| p.client_cpu_us_per_op), 2),
            cell(med(pts, &|p| p.server_cpu_us_per_op), 2),
            cell(med(pts, &|p| p.server_busy_us_per_op), 2),
            cell(med(pts, &|p| p.server_syscalls_per_op), 3),
            cell(med(pts, &|p| p.client_syscalls_per_op), 3),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOAD: &str = r#"{"addr":"v1:127.0.0.1:1/2","in_flight":4,"objects":16,
        "read":{"bytes":0,"lat_us":{"max":9.0,"p50":2.0,"p99":3.0,"p999":4.0},"mb_per_sec":0.0,
                "ops":100,"ops_per_sec":1000.0,"seconds":0.1,"cpu_seconds":0.01},
        "size":0,"transport":"posix",
        "write":{"bytes":0,"lat_us":{"max":9.0,"p50":5.0,"p99":6.0,"p999":7.0},"mb_per_sec":0.0,
                 "ops":100,"ops_per_sec":500.0,"seconds":0.2,"cpu_seconds":null}}"#;

    #[test]
    fn load_output_parses_into_phases() {
        let ph = parse_load(LOAD).unwrap();
        assert_eq!(ph.len(), 2);
        assert_eq!(ph[0].0, Phase::Write);
        assert_eq!(ph[0].1.ops_per_sec, 500.0);
        assert_eq!(ph[0].1.p999_us, 7.0);
        assert_eq!(ph[0].1.client_cpu_us_per_op, None);
        assert_eq!(ph[1].0, Phase::Read);
        assert_eq!(ph[1].1.client_cpu_us_per_op, Some(100.0));
        assert!(parse_load("{}").unwrap_err().contains("write.ops"));
        assert!(parse_load("not json").unwrap_err().contains("bad JSON"));
    }

    #[test]
    fn busy_time_is_summed_over_workers() {
        let d: Value = serde_json::json!({"dpdk": {"workers": [{"busy_us": 5}, {"busy_us": 7}]}});
        assert_eq!(busy_us(&d), Some(12));
        assert_eq!(busy_us(&serde_json::json!({"msgr": {}})), None);
    }

    #[test]
    fn placement_from_lists() {
        let sides = |cpus: Vec<u32>, s: Option<&str>, c: Option<&str>, workers| crate::Sides {
            msgr: None,
            cpus,
            mtu: 1500,
            workers,
            server_cpus: s.map(str::to_owned),
            client_cpus: c.map(str::to_owned),
        };
        let all: Vec<u32> = (0..8).collect();
        let p = Placement::from_args(&sides(vec![], None, None, 1), &all).unwrap();
        assert_eq!((p.server.clone(), p.client.clone()), (vec![0], vec![1]));
        assert!(!p.crowded());
        assert_eq!(p.lcores(true), "0@0");
        let p = Placement::from_args(&sides(vec![], Some("2-3"), Some("4,6"), 2), &all).unwrap();
        assert_eq!(p.lcores(true), "0@2,1@3");
        assert_eq!(p.lcores(false), "0@4,1@6");
        assert!(!p.crowded());
        assert!(p
            .describe()
            .contains("server on CPU 2,3, client on CPU 4,6, 2 network"));
        // Three workers on two CPUs share them: dpdk workers must yield.
        let p = Placement::from_args(&sides(vec![], Some("2-3"), Some("4-6"), 3), &all).unwrap();
        assert_eq!(p.lcores(true), "0@2,1@3,2@2");
        assert!(p.crowded());
        // Overlapping sides share CPUs too.
        let p = Placement::from_args(&sides(vec![], Some("1-2"), Some("2-3"), 2), &all).unwrap();
        assert!(p.crowded());
        let e = Placement::from_args(&sides(vec![], Some("7-9"), None, 1), &all).unwrap_err();
        assert!(e.contains("--server-cpus: CPU 8"), "{e}");
        let e = Placement::from_args(&sides(vec![], None, Some("x"), 1), &all).unwrap_err();
        assert!(e.contains("--client-cpus \"x\""), "{e}");
        assert_eq!(parse_cpus("0-2,5"), Ok(vec![0, 1, 2, 5]));
        assert!(parse_cpus("3-1").is_err());
        assert!(parse_cpus("").is_err());
    }

    #[test]
    fn cpus_given_or_picked() {
        assert_eq!(pick_cpus(&[], &[0, 1, 2]), Ok(Cpus { a: 0, b: 1 }));
        assert_eq!(pick_cpus(&[2, 0], &[0, 1, 2]), Ok(Cpus { a: 2, b: 0 }));
        assert!(pick_cpus(&[3, 0], &[0, 1]).unwrap_err().contains("CPU 3"));
        assert!(pick_cpus(&[1], &[0, 1]).unwrap_err().contains("two CPUs"));
        assert!(pick_cpus(&[1, 1], &[0, 1]).unwrap().shared());
    }

    #[test]
    fn perf_stat_counts() {
        let out = "# started on Mon Dec  7 01:11:29 2026\n\n109,,raw_syscalls:sys_enter,1446499,100.00,,\n";
        assert_eq!(parse_perf_count(out), Some(109));
        assert_eq!(
            parse_perf_count("<not counted>,,raw_syscalls:sys_enter,0,0.00,,\n"),
            None
        );
        assert_eq!(parse_perf_count(""), None);
    }

    #[test]
    fn op_counts_and_objects() {
        assert_eq!(ops_for(0, 1, 1.0), 30_000);
        assert_eq!(ops_for(0, 128, 1.0), 200_000);
        assert_eq!(ops_for(4 << 20, 4, 1.0), 357);
        assert_eq!(ops_for(4 << 20, 128, 0.01), 256, "at least two windows");
        assert_eq!(objects_for(4 << 20, 357), 64);
        assert_eq!(objects_for(0, 30_000), 1024);
        assert_eq!(objects_for(4096, 10), 10);
    }

    #[test]
    fn medians_and_labels() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.0));
        assert_eq!(median(vec![f64::NAN]), None);
        assert_eq!(median(Vec::new()), None);
        assert_eq!(size_label(0), "0 B");
        assert_eq!(size_label(4096), "4 KiB");
        assert_eq!(size_label(4 << 20), "4 MiB");
        assert_eq!(size_label(1000), "1000 B");
    }

    #[test]
    fn table_has_ratios_against_posix() {
        let mut m: Points = BTreeMap::new();
        let p = |r: f64| Point {
            ops_per_sec: r,
            ..Point::default()
        };
        m.insert(
            Key::new(0, 16, Phase::Read, TransportKind::Posix),
            vec![p(1.0)],
        );
        m.insert(
            Key::new(0, 16, Phase::Write, TransportKind::Dpdk),
            vec![p(400.0), p(300.0), p(500.0)],
        );
        m.insert(
            Key::new(0, 16, Phase::Write, TransportKind::Posix),
            vec![p(100.0), p(200.0), p(150.0)],
        );
        m.insert(
            Key::new(0, 16, Phase::Write, TransportKind::Simple),
            vec![p(75.0)],
        );
        let t = table(&m);
        assert!(
            t.contains("| 0 B | 1 | 16 | write | dpdk | 400 | 2.67x |"),
            "{t}"
        );
        assert!(t.contains("| posix | 150 | 1.00x |"), "{t}");
        assert!(t.contains("| simple | 75 | 0.50x |"), "{t}");
        assert!(
            t.find("write").unwrap() < t.find("| read").unwrap(),
            "write rows first: {t}"
        );
        let k = Key::new(0, 16, Phase::Write, TransportKind::Dpdk).sessions(10);
        let csv = csv_line(1, k, &p(400.0));
        assert!(csv.starts_with("1,dpdk,0,16,10,write,"), "{csv}");
        assert_eq!(csv.split(',').count(), 18, "{csv}");
        // Sessions sort after size, before ops in flight.
        m.insert(k, vec![p(9.0)]);
        let t = table(&m);
        assert!(
            t.find("| 0 B | 1 | 16 | write | simple |").unwrap()
                < t.find("| 0 B | 10 | 16 | write | dpdk | 9 | - |").unwrap(),
            "{t}"
        );
    }
}
