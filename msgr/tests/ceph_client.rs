//! Real Ceph tools against `msgr serve` (DESIGN.md, "Testing, from fast to real", item 6):
//!
//! - the `ceph` CLI (librados, Pacific) as a client: `ceph -s` with `mon_host` pointing at
//!   `msgr serve --name mon.0` (v1 only, auth none). Our daemon is no monitor, so the client
//!   gets through the msgr v1 handshake, sends its `MAuth` (type 17), waits for an auth
//!   reply that never comes and gives up after `--connect-timeout`. The test checks, through
//!   the admin socket, that the `MAuth` reached our dispatcher and that no frame failed its
//!   CRC or decode;
//! - `ceph --admin-daemon PATH perf dump` (and `help`, `status`) against our admin socket.
//!
//! Needs the `ceph` CLI (package ceph-common). When it is missing and the test runs as root,
//! it is installed with apt-get (once per test process); otherwise the tests skip by the
//! convention of `support::skip` (`MSGR_REQUIRE_INTEROP=1` turns a skip into a failure).
//! Every process is bounded in time and stopped in `Drop`.
#![allow(clippy::disallowed_methods)] // a test driver: it reads the clock for bounded waits

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use support::daemon::Daemon;
use support::{run_bounded, skip, wait_until};

const MSGR: &str = env!("CARGO_BIN_EXE_msgr");
const STEP: Duration = Duration::from_secs(20);
/// `ceph --connect-timeout`: how long the client tries before giving up by itself.
const CEPH_CONNECT_TIMEOUT: &str = "5";
/// Hard bound for one `ceph` run (it is killed after this).
const CEPH_BOUND: Duration = Duration::from_secs(30);
/// Bound for installing ceph-common.
const APT_BOUND: Duration = Duration::from_secs(900);

/// The skip check: the `ceph` CLI is in `$PATH`, installing ceph-common first if we are root.
fn ceph_cli() -> Result<(), String> {
    static INSTALL: OnceLock<Result<(), String>> = OnceLock::new();
    if skip::which("ceph").is_some() {
        return Ok(());
    }
    if !skip::is_root() {
        return Err("`ceph` not in PATH (install ceph-common; not root, so not installing)".into());
    }
    INSTALL
        .get_or_init(|| {
            eprintln!("installing ceph-common (apt-get, bounded to {APT_BOUND:?})");
            let out = run_bounded(
                Command::new("apt-get")
                    .args(["install", "-y", "--no-install-recommends", "ceph-common"])
                    .env("DEBIAN_FRONTEND", "noninteractive"),
                APT_BOUND,
            )?;
            if !out.status.success() {
                return Err(format!(
                    "apt-get install ceph-common failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            skip::which("ceph")
                .map(drop)
                .ok_or_else(|| "ceph-common installed but `ceph` is not in PATH".into())
        })
        .clone()
}

/// A client-only ceph.conf: v1 only, auth none, every path inside `dir`.
fn write_client_conf(dir: &Path, mon_host: &str) -> PathBuf {
    let d = dir.display();
    let conf = format!(
        "# written by msgr/tests/ceph_client.rs\n\
         [global]\n\
         mon_host = {mon_host}\n\
         auth_client_required = none\n\
         auth_cluster_required = none\n\
         auth_service_required = none\n\
         ms_bind_msgr2 = false\n\
         ms_bind_ipv6 = false\n\
         keyring = /dev/null\n\
         run_dir = {d}\n\
         admin_socket = {d}/client.asok\n\
         log_file = {d}/client.log\n\
         log_to_stderr = false\n\
         err_to_stderr = true\n"
    );
    let path = dir.join("ceph.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

fn counter(v: &Value, path: &[&str]) -> u64 {
    path.iter()
        .fold(v, |v, k| &v[*k])
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {path:?} in {v}"))
}

fn show(what: &str, out: &Result<Output, String>) {
    match out {
        Ok(o) => eprintln!(
            "{what}: {}\n  stdout: {}\n  stderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout).trim(),
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => eprintln!("{what}: {e}"),
    }
}

#[test]
fn real_ceph_client_reaches_our_dispatcher() {
    skip_unless!("ceph CLI (ceph-common)", ceph_cli);
    for transport in ["posix", "simple"] {
        // Monitors use nonce 0, and a client dials mon_host's address with nonce 0: the
        // daemon runs as mon.0 (nonce 0, monitor protocol version) to get past the handshake.
        let d = Daemon::start(&["--name", "mon.0", "--transport", transport]);
        assert_eq!(d.addr.nonce, 0);
        let conf = write_client_conf(d.dir.path(), &format!("v1:{}", d.addr.addr.unwrap()));
        let out = run_bounded(
            Command::new("ceph").arg("-c").arg(&conf).args([
                "--connect-timeout",
                CEPH_CONNECT_TIMEOUT,
                "-s",
            ]),
            CEPH_BOUND,
        );
        show(&format!("ceph -s against msgr serve ({transport})"), &out);
        // The client cannot finish (no auth reply); it gives up, or is killed by the bound.
        if let Ok(o) = &out {
            assert!(
                !o.status.success(),
                "ceph -s cannot succeed against a non-monitor"
            );
        }

        let perf = wait_until(
            "MAuth at our dispatcher",
            STEP,
            Duration::from_millis(50),
            || {
                let p = d.perf();
                Ok((p["msgr"]["msgs_in_by_type"]["17"].as_u64().unwrap_or(0) > 0).then_some(p))
            },
        )
        .unwrap_or_else(|e| panic!("{e}; serve log:\n{}", d.log_text()));
        eprintln!(
            "{transport}: msgs_in_by_type {} sessions_accepted {} faults {}",
            perf["msgr"]["msgs_in_by_type"],
            perf["msgr"]["sessions_accepted"],
            perf["msgr"]["faults"]
        );
        assert!(counter(&perf, &["msgr", "sessions_accepted"]) >= 1);
        assert!(
            counter(&perf, &["osd", "unhandled"]) >= 1,
            "MAuth went to ms_dispatch"
        );
        for f in [
            "bad_crc",
            "decode",
            "bad_banner",
            "unknown_tag",
            "misbehaved",
            "incompatible",
        ] {
            assert_eq!(
                counter(&perf, &["msgr", "faults", f]),
                0,
                "fault {f}: {perf}"
            );
        }
    }
}

#[test]
fn ceph_admin_daemon_reads_our_admin_socket() {
    skip_unless!("ceph CLI (ceph-common)", ceph_cli);
    let d = Daemon::start(&[]);
    // Some traffic for the counters.
    let ping = run_bounded(
        Command::new(MSGR).args(["ping", &d.addr.to_string(), "-c", "2", "-i", "0.05"]),
        STEP,
    )
    .unwrap();
    assert!(ping.status.success());
    let ceph = |args: &[&str]| {
        let out = run_bounded(
            Command::new("ceph")
                .arg("--admin-daemon")
                .arg(&d.asok)
                .args(args),
            CEPH_BOUND,
        )
        .unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (st, so, se) = ceph(&["perf", "dump"]);
    assert!(st.success(), "{st}: {so} {se}");
    let perf: Value = serde_json::from_str(&so).unwrap();
    assert!(counter(&perf, &["msgr", "msgs_in"]) >= 2, "{perf}");
    assert_eq!(counter(&perf, &["osd", "ping"]), 2);
    let (st, so, _) = ceph(&["perf", "dump", "osd"]);
    assert!(st.success());
    let osd: Value = serde_json::from_str(&so).unwrap();
    assert!(
        osd.get("msgr").is_none() && osd["osd"]["ping"] == 2,
        "{osd}"
    );
    let (st, so, _) = ceph(&["help"]);
    assert!(st.success() && so.contains("perf dump"), "{so}");
    let (st, so, _) = ceph(&["status"]);
    assert!(st.success(), "{so}");
    let status: Value = serde_json::from_str(&so).unwrap();
    assert_eq!(status["addr"], d.addr.to_string());
    // The CLI validates against our command table: unknown commands never reach us.
    let (st, _, se) = ceph(&["frobnicate"]);
    assert!(!st.success() && se.contains("invalid command"), "{se}");
    let (st, so, _) = ceph(&["shutdown"]);
    assert!(st.success(), "{so}");
}
