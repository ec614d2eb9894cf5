//! `bench hostile` (issue 8, reliability): hostile peers against a running `msgr serve` on
//! each transport, with an honest client measuring all along.
//!
//! For each transport, one after another:
//! 1. a real daemon starts: `msgr serve` on loopback (simple, posix), or on DPDK's `net_tap`
//!    in a network namespace this command creates and deletes (dpdk; EAL without PCI or
//!    hugepages, a file prefix of its own; nothing touches the root namespace's devices);
//! 2. a runner process (`bench hostile-run`, inside the namespace for dpdk) starts the
//!    honest client ([`honest`]), measures its round trips unloaded, then runs each attack
//!    ([`attack`]) for a bounded time while the client keeps measuring, and compares the
//!    daemon's `perf dump` (admin socket) before and after each attack;
//! 3. the daemon must still answer, and stop cleanly on its admin `shutdown`.
//!
//! Reported per attack: the honest client's p50/p99 round trip and their ratios to the
//! unloaded figures with the 2x target's verdict (a benchmark figure: on a shared 2-CPU
//! machine the attackers, the daemon and the client share the CPUs), newcomers let in, what
//! the attack did, the counters that show it, and how much the daemon logged. The command
//! fails (exit 1) if a daemon died or stopped answering, an attack left no trace in `perf
//! dump`, or an honest client went unanswered (a lost ping, a newcomer turned away).
//!
//! The daemon runs with a short ready timeout, body timeout and a low handshake bound
//! (`--ready-timeout`, `--body-timeout`, `--max-handshakes`), so that a few seconds of
//! slowloris, throttle-hold and flood reach them, and with OSD peers lossless (`--policy
//! osd=lossless_peer`, as on an OSD's cluster messenger), so that the reconnect storm
//! reaches the lossless rows of the accept decision table (RETRY_SESSION, replace).

pub(crate) mod attack;
mod honest;
pub(crate) mod netns;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use msgr::entity::EntityAddr;
use msgr::messenger::TransportKind;
use serde_json::{json, Map, Value};

use self::attack::{Kind, Sizing, Target};
use self::honest::{Honest, Pace, PhaseStats};
use crate::dpdklink::{RuntimeDir, TempDir};

/// The latency target: honest round trips under attack within this factor of unloaded.
const TARGET_RATIO: f64 = 2.0;
/// After an attack ends, before the counters are read: sockets close, the dpdk workers
/// publish their reports (every 100 ms).
const SETTLE: Duration = Duration::from_millis(500);

/// What `bench hostile` runs.
pub(crate) struct Plan {
    pub(crate) transports: Vec<TransportKind>,
    pub(crate) attacks: Vec<Kind>,
    /// Seconds per attack.
    pub(crate) seconds: f64,
    /// Seconds of the unloaded measurement.
    pub(crate) baseline: f64,
    pub(crate) quick: bool,
    pub(crate) msgr: Option<PathBuf>,
    pub(crate) json: bool,
    /// The daemon's CPU and the runner's (honest client and attackers), as in bench osd:
    /// on a machine this small an unpinned attacker preempts a userspace worker thread,
    /// where the kernel paths do their packet work in softirq.
    pub(crate) cpus: crate::dpdklink::Cpus,
    /// The dpdk daemon's link to the peers.
    pub(crate) link: netns::Link,
    /// The attack threads' nice value.
    pub(crate) attacker_nice: u8,
}

/// The daemon's settings that the attacks aim at.
#[derive(Debug, Clone, Copy)]
struct DaemonLimits {
    ready_timeout: f64,
    max_handshakes: usize,
}

impl DaemonLimits {
    fn for_plan(quick: bool, seconds: f64) -> Self {
        // The ready timeout must pass within an attack for the slowloris to show.
        let ready: f64 = if quick { 1.0 } else { 2.0 };
        Self {
            ready_timeout: ready.min(seconds / 2.0).max(0.2),
            max_handshakes: if quick { 64 } else { 256 },
        }
    }

    fn args(self) -> Vec<String> {
        vec![
            "--ready-timeout".into(),
            self.ready_timeout.to_string(),
            "--body-timeout".into(),
            self.ready_timeout.to_string(),
            "--max-handshakes".into(),
            self.max_handshakes.to_string(),
            "--policy".into(),
            "osd=lossless_peer".into(),
        ]
    }
}

/// The attacks' socket counts for a run.
fn sizing(quick: bool, limits: DaemonLimits) -> Sizing {
    // Held flood sockets stay well within this process's open-file limit.
    let fds = open_file_limit().unwrap_or(1024);
    let hold = (3 * limits.max_handshakes).min(fds / 4).max(8);
    if quick {
        Sizing {
            slowloris: 32.min(limits.max_handshakes / 2).max(2),
            flood_threads: 4,
            flood_hold: hold,
            flood_max: 4_000,
        }
    } else {
        Sizing {
            slowloris: 200.min(limits.max_handshakes / 2).max(2),
            flood_threads: 8,
            flood_hold: hold,
            flood_max: 100_000,
        }
    }
}

/// The soft limit on open files (`Max open files` in /proc/self/limits).
fn open_file_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// `bench hostile`: every transport in turn, reported; an error naming what failed.
pub(crate) fn run(plan: &Plan) -> Result<(), String> {
    let msgr = find_msgr(plan.msgr.clone())?;
    let limits = DaemonLimits::for_plan(plan.quick, plan.seconds);
    let mut reports = Vec::new();
    let mut failed = Vec::new();
    for &t in &plan.transports {
        eprintln!("bench hostile: {} ...", t.name());
        let r = match run_transport(plan, &msgr, t, limits) {
            Ok(r) => r,
            Err(e) => json!({"transport": t.name(), "failures": [e]}),
        };
        let fails: Vec<String> = r["failures"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if !fails.is_empty() {
            failed.push(format!("{}: {}", t.name(), fails.join("; ")));
        }
        if !plan.json {
            out!("{}", table(&r));
        }
        reports.push(r);
    }
    if plan.json {
        out!(
            "{}",
            json!({
                "seconds_per_attack": plan.seconds,
                "baseline_seconds": plan.baseline,
                "target_ratio": TARGET_RATIO,
                "transports": reports,
                "passed": failed.is_empty(),
            })
        );
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("hostile: {}", failed.join(" | ")))
    }
}

/// The `msgr` program beside this one unless given.
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
            "no msgr program at {} (build it: cargo build -p msgr; or give --msgr)",
            p.display()
        ))
    }
}

/// A running `msgr serve`, stopped (admin `shutdown`, then killed) on drop.
struct Daemon {
    child: Option<Child>,
    addr: String,
    asok: PathBuf,
    log: PathBuf,
    command: String,
}

impl Daemon {
    /// Starts `[wrapper] msgr ARGS` and waits for its `listening on ADDR` line.
    fn start(
        msgr: &Path,
        wrapper: &[&str],
        args: &[String],
        asok: PathBuf,
        log: PathBuf,
    ) -> Result<Self, String> {
        let mut cmd = match wrapper.split_first() {
            Some((prog, rest)) => {
                let mut c = Command::new(prog);
                c.args(rest).arg(msgr);
                c
            }
            None => Command::new(msgr),
        };
        let logf = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        // As the service runs it (deploy/systemd/msgr@.service): glibc's mmap threshold
        // fixed, so a connection's socket buffers are mapped and unmapped whole instead of
        // being carved from (and memset in) a heap that the dynamic threshold grows.
        cmd.args(args)
            .env("GLIBC_TUNABLES", crate::soak::MALLOC_TUNABLES)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(logf);
        let command = format!("msgr {}", args.join(" "));
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", msgr.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let _ = tx.send(line);
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        let mut d = Self {
            child: Some(child),
            addr: String::new(),
            asok,
            log,
            command,
        };
        match line.strip_prefix("listening on ") {
            Some(a) => d.addr = a.trim().to_owned(),
            None => {
                return Err(format!(
                    "the daemon did not start: {}",
                    last_line(&std::fs::read(&d.log).unwrap_or_default())
                ))
            }
        }
        Ok(d)
    }

    /// Whether the process is still running.
    fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Stops it with the admin `shutdown`; whether it exited cleanly (in time, status 0).
    fn shutdown(&mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Err("not running".into());
        };
        let asked = msgr::admin::request(&self.asok, "shutdown");
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            match child.try_wait() {
                Ok(Some(st)) if st.success() && asked.is_ok() => return Ok(()),
                Ok(Some(st)) => return Err(format!("the daemon exited with {st} at shutdown")),
                Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err("the daemon did not stop within 20 s of its shutdown".into());
                }
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = msgr::admin::request(&self.asok, "shutdown");
            let end = Instant::now() + Duration::from_secs(5);
            while Instant::now() < end {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The last non-empty line a process wrote.
fn last_line(output: &[u8]) -> String {
    String::from_utf8_lossy(output)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_owned()
}

/// One transport: the daemon, the runner, the checks. The report as JSON, with a
/// `failures` list.
fn run_transport(
    plan: &Plan,
    msgr: &Path,
    t: TransportKind,
    limits: DaemonLimits,
) -> Result<Value, String> {
    let dir = TempDir::create(&format!("hostile-{}", t.name()))?;
    let asok = dir.path.join(format!("{}.asok", t.name()));
    let log = dir.path.join(format!("{}-daemon.log", t.name()));
    let mut ns = None;
    let mut runtime = None;
    let mut args: Vec<String> = vec!["--transport".into(), t.name().into()];
    let bind = match t {
        TransportKind::Dpdk => {
            netns::check(plan.link)?;
            let n = netns::Netns::create(plan.link, plan.cpus.b)?;
            let prefix = format!("msgr-hostile-{}", std::process::id());
            runtime = Some(RuntimeDir::new(&prefix));
            args.extend([
                "--eal".into(),
                format!(
                    "--no-huge -m 256 --no-pci --no-telemetry --file-prefix {prefix} \
                     --lcores 0@({}) --vdev={}",
                    plan.cpus.a,
                    n.vdev()
                ),
                "--ip".into(),
                format!("{}/24", netns::DAEMON_IP),
            ]);
            ns = Some(n);
            format!("v1:{}:6800", netns::DAEMON_IP)
        }
        _ => "v1:127.0.0.1:0".to_owned(),
    };
    args.extend(["serve".into(), "--bind".into(), bind]);
    args.extend(["--admin-socket".into(), asok.display().to_string()]);
    args.extend(["--run-for".into(), "86400".into()]);
    args.extend(limits.args());
    let (server_cpu, client_cpu) = (plan.cpus.a.to_string(), plan.cpus.b.to_string());
    let pinned = |cpu: &str, daemon: bool| -> Vec<String> {
        let wrapper = ns
            .as_ref()
            .map(|n| if daemon { n.daemon_exec() } else { n.exec() });
        wrapper
            .iter()
            .flatten()
            .map(|w| (*w).to_owned())
            .chain(["taskset".to_owned(), "-c".to_owned(), cpu.to_owned()])
            .collect()
    };
    let daemon_wrapper = pinned(&server_cpu, true);
    let daemon_wrapper: Vec<&str> = daemon_wrapper.iter().map(String::as_str).collect();
    let mut daemon = Daemon::start(msgr, &daemon_wrapper, &args, asok.clone(), log.clone())?;
    let mut failures = Vec::new();

    // The runner: the honest client and the attacks, where the daemon can be reached.
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let runner_wrapper = pinned(&client_cpu, false);
    let mut cmd = match runner_wrapper.split_first() {
        Some((prog, rest)) => {
            let mut c = Command::new(prog);
            c.args(rest).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    let attacks: Vec<&str> = plan.attacks.iter().map(|k| k.name()).collect();
    cmd.args(["hostile-run", "--addr", &daemon.addr])
        .arg("--asok")
        .arg(&asok)
        .arg("--daemon-log")
        .arg(&log)
        .args(["--seconds", &plan.seconds.to_string()])
        .args(["--baseline", &plan.baseline.to_string()])
        .args(["--ready-timeout", &limits.ready_timeout.to_string()])
        .args(["--max-handshakes", &limits.max_handshakes.to_string()])
        .args(["--attacks", &attacks.join(",")])
        .args(["--attacker-nice", &plan.attacker_nice.to_string()]);
    if plan.quick {
        cmd.arg("--quick");
    }
    let budget = Duration::from_secs_f64(
        plan.baseline + plan.attacks.len() as f64 * (plan.seconds + 6.0) + 60.0,
    );
    let runner = run_bounded(&mut cmd, budget);
    let mut report = match runner {
        Ok(text) => serde_json::from_str::<Value>(text.trim())
            .map_err(|e| format!("the runner's report: {e}: {}", last_line(text.as_bytes())))?,
        Err(e) => {
            failures.push(e);
            json!({})
        }
    };
    if let Some(fs) = report["failures"].as_array() {
        failures.extend(fs.iter().filter_map(|v| v.as_str().map(str::to_owned)));
    }
    if !daemon.alive() {
        failures.push("the daemon died".into());
    } else if msgr::admin::request(&asok, "perf dump").is_err() {
        failures.push("the daemon stopped answering its admin socket".into());
    }
    if let Err(e) = daemon.shutdown() {
        failures.push(e);
    }
    let log_bytes = std::fs::metadata(&daemon.log).map_or(0, |m| m.len());
    if let Value::Object(m) = &mut report {
        m.insert("transport".into(), t.name().into());
        if t == TransportKind::Dpdk {
            m.insert("link".into(), plan.link.name().into());
        }
        m.insert(
            "daemon".into(),
            json!({
                "command": daemon.command,
                "log_bytes": log_bytes,
            }),
        );
        m.insert("failures".into(), json!(failures));
    }
    drop(daemon);
    drop(ns);
    drop(runtime);
    drop(dir);
    Ok(report)
}

/// Runs `cmd` with its stdout captured (stderr passed through), killed after `limit`.
fn run_bounded(cmd: &mut Command, limit: Duration) -> Result<String, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run the attack runner: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let end = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("the attack runner did not finish within {limit:?}"));
            }
        }
    };
    let text = reader.join().unwrap_or_default();
    if !status.success() && text.trim().is_empty() {
        return Err(format!("the attack runner failed ({status})"));
    }
    Ok(text)
}

// ---- the runner (`bench hostile-run`) ----

/// What `bench hostile-run` is given.
pub(crate) struct RunArgs {
    pub(crate) addr: EntityAddr,
    pub(crate) asok: PathBuf,
    pub(crate) daemon_log: Option<PathBuf>,
    pub(crate) seconds: f64,
    pub(crate) baseline: f64,
    pub(crate) ready_timeout: f64,
    pub(crate) max_handshakes: usize,
    pub(crate) attacks: Vec<Kind>,
    pub(crate) quick: bool,
    pub(crate) attacker_nice: u8,
}

/// The daemon's counters, flattened: `section.key.sub` → value (arrays, such as the dpdk
/// workers, summed element by element).
fn flatten(v: &Value, prefix: &str, out: &mut BTreeMap<String, f64>) {
    match v {
        Value::Number(n) => {
            if let Some(x) = n.as_f64() {
                *out.entry(prefix.to_owned()).or_insert(0.0) += x;
            }
        }
        Value::Object(m) => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(v, &p, out);
            }
        }
        Value::Array(a) => {
            for v in a {
                flatten(v, prefix, out);
            }
        }
        _ => {}
    }
}

fn perf(asok: &Path) -> Result<BTreeMap<String, f64>, String> {
    let text = msgr::admin::request(asok, "perf dump").map_err(|e| format!("perf dump: {e}"))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("perf dump: {e}"))?;
    let mut m = BTreeMap::new();
    flatten(&v, "", &mut m);
    Ok(m)
}

/// Counters that moved between two dumps (gauges included), skipping the per-type message
/// tables and the dpdk loop's own turn counts.
fn moved(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> Map<String, Value> {
    let mut m = Map::new();
    for (k, a) in after {
        let d = a - before.get(k).copied().unwrap_or(0.0);
        let noise = k.contains("_by_type.")
            || k.starts_with("dpdk.workers.")
                && !k.starts_with("dpdk.workers.stack.")
                && k != "dpdk.workers.sessions"
                && k != "dpdk.workers.slow_turns";
        if d != 0.0 && !noise {
            m.insert(k.clone(), json!(d));
        }
    }
    m
}

fn honest_json(p: &PhaseStats, base: Option<&PhaseStats>) -> Value {
    let (p50, p99) = (p.quantile_us(0.5), p.quantile_us(0.99));
    let mut v = json!({
        "round_trips": p.hist.len(),
        "p50_us": p50,
        "p99_us": p99,
        "max_us": if p.hist.is_empty() { f64::NAN } else { p.hist.max() as f64 / 1000.0 },
        "lost": p.lost,
        "newcomers_ok": p.newcomers_ok,
        "newcomers_failed": p.newcomers_failed,
        "newcomer_tries_failed": p.newcomer_tries_failed,
        "newcomer_max_ms": p.newcomer_max_ns as f64 / 1e6,
    });
    if let (Some(b), Value::Object(m)) = (base, &mut v) {
        let r50 = p50 / b.quantile_us(0.5);
        let r99 = p99 / b.quantile_us(0.99);
        m.insert("p50_ratio".into(), json!(r50));
        m.insert("p99_ratio".into(), json!(r99));
        m.insert(
            "target_met".into(),
            json!(r50 <= TARGET_RATIO && r99 <= TARGET_RATIO),
        );
    }
    v
}

fn file_len(p: Option<&Path>) -> u64 {
    p.and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len())
}

/// `bench hostile-run`: prints the report as one JSON object on stdout.
pub(crate) fn run_suite(a: &RunArgs) -> Result<(), String> {
    let target = Target {
        addr: a
            .addr
            .addr
            .ok_or("--addr: the daemon's address has no IP")?,
    };
    let limits = DaemonLimits {
        ready_timeout: a.ready_timeout,
        max_handshakes: a.max_handshakes,
    };
    let sz = sizing(a.quick, limits);
    let pace = Pace {
        interval: Duration::from_millis(1),
        timeout: Duration::from_secs(if a.quick { 5 } else { 3 }),
        newcomer_every: Duration::from_millis(if a.quick { 250 } else { 500 }),
    };
    // Phase 0: unloaded; phase i: attack i-1; the last: between attacks (not reported).
    let between = a.attacks.len() + 1;
    let honest = Honest::start(a.addr, between + 1, pace)?;
    let mut failures: Vec<String> = Vec::new();
    eprintln!(
        "bench hostile: unloaded round trips for {:.1} s ...",
        a.baseline
    );
    std::thread::sleep(Duration::from_secs_f64(a.baseline));
    honest.set_phase(between);
    let mut attacks = Vec::new();
    for (i, &kind) in a.attacks.iter().enumerate() {
        eprintln!("bench hostile: {} for {:.1} s ...", kind.name(), a.seconds);
        let before = perf(&a.asok)?;
        let log0 = file_len(a.daemon_log.as_deref());
        honest.set_phase(1 + i);
        let until = Instant::now() + Duration::from_secs_f64(a.seconds);
        let tally = attack::run(kind, target, until, sz, a.attacker_nice);
        honest.set_phase(between);
        std::thread::sleep(SETTLE);
        let after = match perf(&a.asok) {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!(
                    "{}: the daemon did not answer after it: {e}",
                    kind.name()
                ));
                break;
            }
        };
        let mut trace = Map::new();
        let mut missing = Vec::new();
        for group in kind.trace() {
            let mut seen = false;
            for &k in *group {
                let key = format!("msgr.{k}");
                let d = after.get(&key).copied().unwrap_or(0.0)
                    - before.get(&key).copied().unwrap_or(0.0);
                trace.insert(k.to_owned(), json!(d));
                seen |= d > 0.0;
            }
            if !seen {
                missing.push(group.join(" or "));
            }
        }
        if !missing.is_empty() {
            failures.push(format!(
                "{}: no trace in perf dump ({} did not move)",
                kind.name(),
                missing.join(", ")
            ));
        }
        attacks.push(json!({
            "attack": kind.name(),
            "seconds": a.seconds,
            "attacker": tally,
            "trace": trace,
            "trace_ok": missing.is_empty(),
            "moved": moved(&before, &after),
            "log_bytes": file_len(a.daemon_log.as_deref()).saturating_sub(log0),
        }));
    }
    let stats = honest.finish();
    let base = stats.first();
    if let Some(b) = base {
        if b.hist.is_empty() {
            failures.push("no unloaded round trip was measured".into());
        }
    }
    for (i, rep) in attacks.iter_mut().enumerate() {
        if let (Some(p), Value::Object(m)) = (stats.get(1 + i), &mut *rep) {
            let name = m["attack"].as_str().unwrap_or("?").to_owned();
            if p.lost > 0 {
                failures.push(format!("{name}: {} honest pings went unanswered", p.lost));
            }
            if p.newcomers_failed > 0 {
                failures.push(format!(
                    "{name}: {} new clients were turned away",
                    p.newcomers_failed
                ));
            }
            if p.hist.is_empty() {
                failures.push(format!("{name}: no honest round trip completed"));
            }
            m.insert("honest".into(), honest_json(p, base));
        }
    }
    if let Some(b) = base {
        if b.lost > 0 || b.newcomers_failed > 0 {
            failures.push("unloaded: honest clients went unanswered".into());
        }
    }
    let report = json!({
        "addr": a.addr.to_string(),
        "ready_timeout": a.ready_timeout,
        "max_handshakes": a.max_handshakes,
        "sizing": {
            "slowloris": sz.slowloris,
            "flood_threads": sz.flood_threads,
            "flood_hold": sz.flood_hold,
            "flood_max": sz.flood_max,
        },
        "unloaded": base.map(|b| honest_json(b, None)),
        "attacks": attacks,
        "failures": failures,
    });
    out!("{report}");
    Ok(())
}

// ---- the report ----

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn fmt_us(v: &Value) -> String {
    let x = num(v);
    if x.is_nan() {
        "-".into()
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// One transport's report as a markdown table.
fn table(r: &Value) -> String {
    let mut s = String::new();
    let t = r["transport"].as_str().unwrap_or("?");
    let _ = writeln!(s, "\n### {t}\n");
    let _ = writeln!(
        s,
        "daemon: `{}`  (log: {} bytes)\n",
        r["daemon"]["command"].as_str().unwrap_or("?"),
        r["daemon"]["log_bytes"]
    );
    let _ = writeln!(
        s,
        "| phase | honest p50 µs | p99 µs | p50 ratio | p99 ratio | 2x target | round trips (lost) | newcomers ok / turned away | the attack | trace in perf dump | daemon log |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
    let u = &r["unloaded"];
    if u.is_object() {
        let _ = writeln!(
            s,
            "| unloaded | {} | {} | 1.00 | 1.00 | - | {} ({}) | {} / {} | - | - | - |",
            fmt_us(&u["p50_us"]),
            fmt_us(&u["p99_us"]),
            u["round_trips"],
            u["lost"],
            u["newcomers_ok"],
            u["newcomers_failed"]
        );
    }
    for a in r["attacks"].as_array().into_iter().flatten() {
        let h = &a["honest"];
        let verdict = match h["target_met"].as_bool() {
            Some(true) => "met",
            Some(false) => "not met",
            None => "-",
        };
        let did: Vec<String> = a["attacker"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let trace: Vec<String> = a["trace"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k} +{}", num(v)))
            .collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.2} | {:.2} | {verdict} | {} ({}) | {} / {} | {} | {}{} | {} B |",
            a["attack"].as_str().unwrap_or("?"),
            fmt_us(&h["p50_us"]),
            fmt_us(&h["p99_us"]),
            num(&h["p50_ratio"]),
            num(&h["p99_ratio"]),
            h["round_trips"],
            h["lost"],
            h["newcomers_ok"],
            h["newcomers_failed"],
            did.join(", "),
            trace.join(", "),
            if a["trace_ok"].as_bool() == Some(true) {
                ""
            } else {
                " **(missing)**"
            },
            a["log_bytes"],
        );
    }
    let fails: Vec<&str> = r["failures"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if fails.is_empty() {
        let _ = writeln!(
            s,
            "\n{t}: the daemon survived every attack, each showed in perf dump, honest clients \
             were answered throughout"
        );
    } else {
        let _ = writeln!(s, "\n{t}: FAILED: {}", fails.join("; "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_dumps_flatten_and_workers_sum() {
        let v = json!({
            "msgr": {"accepts": 3, "faults": {"bad_crc": 2}, "name": "osd.0"},
            "dpdk": {"workers": [{"stack": {"accepted": 1}}, {"stack": {"accepted": 4}}]},
        });
        let mut m = BTreeMap::new();
        flatten(&v, "", &mut m);
        assert_eq!(m["msgr.accepts"], 3.0);
        assert_eq!(m["msgr.faults.bad_crc"], 2.0);
        assert_eq!(m["dpdk.workers.stack.accepted"], 5.0);
        assert!(!m.contains_key("msgr.name"));
        let mut after = m.clone();
        *after.get_mut("msgr.accepts").unwrap() += 2.0;
        let d = moved(&m, &after);
        assert_eq!(d.len(), 1);
        assert_eq!(d["msgr.accepts"], 2.0);
    }

    #[test]
    fn limits_fit_the_attack_time() {
        let l = DaemonLimits::for_plan(true, 2.0);
        assert!(l.ready_timeout <= 1.0);
        let l = DaemonLimits::for_plan(false, 1.0);
        assert!(
            l.ready_timeout <= 0.5,
            "a slowloris must see the timeout pass"
        );
        let s = sizing(false, l);
        assert!(
            s.slowloris < l.max_handshakes,
            "the slowloris alone stays under the bound"
        );
        assert!(s.flood_hold > l.max_handshakes || s.flood_hold < 64);
    }

    #[test]
    fn tables_show_verdicts_and_failures() {
        let r = json!({
            "transport": "posix",
            "daemon": {"command": "msgr serve", "log_bytes": 10},
            "unloaded": {"p50_us": 50.0, "p99_us": 90.0, "round_trips": 100, "lost": 0,
                         "newcomers_ok": 3, "newcomers_failed": 0},
            "attacks": [{"attack": "garbage", "attacker": {"connections": 7},
                         "trace": {"faults.bad_banner": 7.0}, "trace_ok": true, "log_bytes": 5,
                         "honest": {"p50_us": 60.0, "p99_us": 250.0, "p50_ratio": 1.2,
                                    "p99_ratio": 2.8, "target_met": false, "round_trips": 80,
                                    "lost": 0, "newcomers_ok": 2, "newcomers_failed": 0}}],
            "failures": ["flood: no trace in perf dump"],
        });
        let t = table(&r);
        assert!(
            t.contains("| garbage | 60.0 | 250 | 1.20 | 2.80 | not met |"),
            "{t}"
        );
        assert!(t.contains("faults.bad_banner +7"), "{t}");
        assert!(t.contains("posix: FAILED: flood"), "{t}");
    }
}
