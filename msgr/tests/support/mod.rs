//! Shared fixtures for the integration tests of `msgr` (test support code, not library code).
//!
//! Every test binary that needs them declares `mod support;` and uses a subset, hence the
//! crate-level `dead_code` allowance below.
//!
//! * [`skip`]: the convention for tests that need an external program (skip locally, fail in
//!   CI when `MSGR_REQUIRE_INTEROP=1`).
//! * [`mon`]: [`mon::MonFixture`], a real Pacific `ceph-mon` on loopback with auth none, one per
//!   test, in its own temporary directory.
//! * [`capture`]: [`capture::Capture`] (dumpcap on `lo`) and [`capture::dissect`] (tshark's
//!   Ceph dissector over a pcap, including malformed-packet detection).
//!
//! This module itself holds the small process and filesystem helpers the fixtures share: a
//! self-removing [`TempDir`], bounded polling ([`wait_until`]), bounded child-process handling
//! ([`run_bounded`], [`wait_timeout`], [`terminate`]) and free loopback ports.
//!
//! Rules every helper here follows (DESIGN.md, "Testing, from fast to real"): traffic only on
//! loopback; every loop and every external process is bounded in time; every child is reaped
//! (`wait()`), including on panic (the fixtures clean up in `Drop`).
//!
//! Environment variables:
//! * `MSGR_REQUIRE_INTEROP=1`: a missing external dependency fails the test instead of skipping.
//! * `MSGR_KEEP_TMP=1`: temporary directories (mon data and logs, pcaps) are kept, and their
//!   paths printed to stderr, for debugging.
#![allow(dead_code)]
// Fixtures wait for external processes with bounded polls, so they read the clock (the
// workspace clippy.toml bans `Instant::now` for the sans-IO core, not for test drivers).
#![allow(clippy::disallowed_methods)]

pub(crate) mod capture;
// Needs the `msgr` binary built for the tests (`CARGO_BIN_EXE_msgr`): tests only.
#[cfg(test)]
pub(crate) mod daemon;
pub(crate) mod mon;
pub(crate) mod monclient;
pub(crate) mod netlab;
pub(crate) mod skip;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Environment variable that keeps temporary directories after a test (`MSGR_KEEP_TMP=1`).
pub(crate) const KEEP_TMP_ENV: &str = "MSGR_KEEP_TMP";

/// True if `MSGR_KEEP_TMP=1`: fixtures then leave their temporary directories behind.
pub(crate) fn keep_tmp() -> bool {
    std::env::var(KEEP_TMP_ENV).is_ok_and(|v| v == "1")
}

/// A fresh directory under [`std::env::temp_dir`], unique per process and per call
/// (`msgr-<tag>-<pid>-<counter>`), removed recursively on drop unless [`keep_tmp`].
#[derive(Debug)]
pub(crate) struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    /// Creates `<temp_dir>/msgr-<tag>-<pid>-<n>`. `create_dir` (not `create_dir_all`) fails if
    /// the name exists (a stale directory of an earlier process with the same pid), in which
    /// case the next counter value is tried; bounded to 1000 attempts.
    pub(crate) fn new(tag: &str) -> Result<Self, String> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir();
        let pid = std::process::id();
        let mut last_err = String::new();
        for _ in 0..1000 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!("msgr-{tag}-{pid}-{n}"));
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    return Ok(Self {
                        path,
                        keep: keep_tmp(),
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    last_err = format!("{}: {e}", path.display());
                }
                Err(e) => return Err(format!("creating temp dir {}: {e}", path.display())),
            }
        }
        Err(format!(
            "no free temp dir name under {}: {last_err}",
            base.display()
        ))
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the directory on disk (no removal on drop) and returns its path.
    pub(crate) fn into_kept(mut self) -> PathBuf {
        self.keep = true;
        self.path.clone()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("kept temp dir {}", self.path.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("warning: removing {}: {e}", self.path.display());
            }
        }
    }
}

/// Polls `probe` every `interval` until it returns `Ok(Some(_))` (success), `Err(_)` (fatal:
/// stop polling) or `timeout` has passed (error naming `what`). The probe runs at least once.
pub(crate) fn wait_until<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut probe: impl FnMut() -> Result<Option<T>, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe()? {
            return Ok(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        thread::sleep(interval.min(deadline - now));
    }
}

/// Waits up to `timeout` for `child` to exit; `Ok(None)` if it is still running.
pub(crate) fn wait_timeout(
    child: &mut Child,
    timeout: Duration,
) -> Result<Option<ExitStatus>, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(Some(status)),
            Ok(None) => {}
            Err(e) => return Err(format!("waiting for pid {}: {e}", child.id())),
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `signal` (a name for `kill -s`, e.g. `"TERM"`, `"INT"`) to `pid` with the `kill`
/// program (no libc crate). Only ever aim it at our own children or at a process we verified.
pub(crate) fn send_signal(pid: u32, signal: &str) -> Result<(), String> {
    let out = run_bounded(
        Command::new("kill").args(["-s", signal, &pid.to_string()]),
        Duration::from_secs(5),
    )?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "kill -s {signal} {pid}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Stops `child`: sends `signal`, waits up to `grace`, then SIGKILLs and waits (bounded by
/// another 5 s). Always reaps the child if it exits. Returns its exit status, or an error if it
/// survived even SIGKILL (should not happen) or could not be signalled.
pub(crate) fn terminate(
    child: &mut Child,
    signal: &str,
    grace: Duration,
) -> Result<ExitStatus, String> {
    if let Some(status) = child.try_wait().map_err(|e| format!("try_wait: {e}"))? {
        return Ok(status);
    }
    let signalled = send_signal(child.id(), signal);
    if signalled.is_ok() {
        if let Some(status) = wait_timeout(child, grace)? {
            return Ok(status);
        }
    }
    // Not gone (or not signallable): SIGKILL via std, then a bounded wait.
    let _ = child.kill();
    match wait_timeout(child, Duration::from_secs(5))? {
        Some(status) => match signalled {
            Ok(()) => Err(format!(
                "pid {} ignored SIG{signal} for {grace:?}; killed ({status})",
                child.id()
            )),
            Err(e) => Err(format!("{e}; killed pid {} instead ({status})", child.id())),
        },
        None => Err(format!("pid {} survived SIGKILL for 5 s", child.id())),
    }
}

/// Runs `cmd` to completion with stdin closed and stdout/stderr captured, killing it after
/// `timeout`. The pipes are drained by two threads so a chatty child cannot block on a full
/// pipe. The error names the command.
pub(crate) fn run_bounded(cmd: &mut Command, timeout: Duration) -> Result<Output, String> {
    let desc = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("spawning {desc}: {e}"))?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out_t = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err_t = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    match wait_timeout(&mut child, timeout)? {
        Some(status) => Ok(Output {
            status,
            stdout: out_t.join().unwrap_or_default(),
            stderr: err_t.join().unwrap_or_default(),
        }),
        None => {
            let _ = child.kill();
            let _ = wait_timeout(&mut child, Duration::from_secs(5));
            // The drain threads are left detached: a grandchild may still hold the pipes.
            Err(format!("{desc} did not finish within {timeout:?}; killed"))
        }
    }
}

/// Like [`run_bounded`], but a non-zero exit status is an error carrying stdout and stderr.
pub(crate) fn run_ok(cmd: &mut Command, timeout: Duration) -> Result<Output, String> {
    let desc = format!("{cmd:?}");
    let out = run_bounded(cmd, timeout)?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{desc} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// True if a process `pid` exists and is not a zombie (state from `/proc/<pid>/stat`).
pub(crate) fn process_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) S ...": the state follows the last ')' (comm may contain ')').
    match stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
    {
        Some(state) => state != "Z" && state != "X",
        None => true,
    }
}

/// The command name (`/proc/<pid>/comm`) of a live process, if any.
pub(crate) fn process_name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// `n` distinct free TCP ports on 127.0.0.1: binds `n` listeners to port 0 at once (so the
/// kernel hands out distinct ports), reads the ports and closes the listeners. Another process
/// can take a port before the caller binds it; callers that can, retry on "address in use".
pub(crate) fn free_loopback_ports(n: usize) -> Result<Vec<u16>, String> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").map_err(|e| format!("binding 127.0.0.1:0: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(|e| format!("local_addr: {e}"))
        })
        .collect()
}

/// The last `lines` lines of a text file (lossy UTF-8), or a note saying why there are none.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            all[start..].join("\n")
        }
        Err(e) => format!("<{}: {e}>", path.display()),
    }
}

/// The number at `path` in a `perf dump` (panics, naming the path, if there is none).
pub(crate) fn counter(v: &serde_json::Value, path: &[&str]) -> u64 {
    path.iter()
        .fold(v, |v, k| &v[*k])
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {path:?} in {v}"))
}
