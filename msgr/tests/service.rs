//! The daemon as a service: the systemd unit (deploy/systemd/msgr@.service) passes
//! `systemd-analyze verify`; the config file (deploy/msgr.example.toml and bad variants) is
//! checked by `msgr serve --config FILE --check`, each error naming its key; and the
//! service's own command lines run end to end — ExecStartPre (`--check`), ExecStart
//! (`serve --config`) on the dpdk transport with a tap device whose kernel end is in a test
//! network namespace, clients in that namespace, then ExecStop (`admin ... shutdown`).
//!
//! Needs systemd-analyze for the unit test, and root, `ip` and /dev/net/tun for the
//! end-to-end run; otherwise those say `SKIPPED <name>` (failures under
//! MSGR_REQUIRE_INTEROP=1).
#![allow(clippy::disallowed_methods)] // a test driver: bounded waits read the clock

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use support::daemon::Daemon;
use support::netlab::{self, NetLab};
use support::{counter, run_bounded, TempDir};

const MSGR: &str = env!("CARGO_BIN_EXE_msgr");

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn msgr(args: &[&str]) -> Output {
    run_bounded(Command::new(MSGR).args(args), Duration::from_secs(60)).unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    skip_unless!("systemd-analyze", || {
        Command::new("systemd-analyze")
            .arg("--version")
            .output()
            .map(|_| ())
            .map_err(|e| format!("systemd-analyze: {e}"))
    });
    let dir = TempDir::new("unit").unwrap();
    // The unit as installed (deploy/install.sh puts msgr in /usr/local/bin), with the
    // binary this test built in its place: verify checks that every command exists.
    let unit = std::fs::read_to_string(repo("deploy/systemd/msgr@.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/msgr serve --config /etc/msgr/%i.toml"));
    assert!(
        unit.contains("ExecStartPre=/usr/local/bin/msgr serve --config /etc/msgr/%i.toml --check")
    );
    assert!(unit.contains("After=network-online.target dpdk.service"));
    assert!(unit.contains("Restart=on-failure"));
    let here = dir.path().join("msgr@.service");
    std::fs::write(&here, unit.replace("/usr/local/bin/msgr", MSGR)).unwrap();
    let out = run_bounded(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&here),
        Duration::from_secs(30),
    )
    .unwrap();
    let (o, e) = text(&out);
    assert!(out.status.success(), "{o}{e}");
    assert!(
        e.trim().is_empty() && o.trim().is_empty(),
        "verify complains: {o}{e}"
    );
    // And it does complain about a bad line (the check can fail).
    std::fs::write(
        &here,
        unit.replace("/usr/local/bin/msgr", MSGR)
            .replace("RestartSec=5s", "RestartSec=soon"),
    )
    .unwrap();
    let out = run_bounded(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&here),
        Duration::from_secs(30),
    )
    .unwrap();
    let (o, e) = text(&out);
    assert!(
        e.contains("Failed to parse") && e.contains("soon"),
        "{o}{e}"
    );
}

#[test]
fn config_is_checked_with_clear_errors() {
    let example = repo("deploy/msgr.example.toml");
    let out = msgr(&["serve", "--config", example.to_str().unwrap(), "--check"]);
    let (o, e) = text(&out);
    assert!(out.status.success(), "the example is valid: {e}");
    assert!(o.contains(": OK"), "{o}");
    // The command line it stands for (what the daemon runs with).
    assert!(
        o.contains(
            "msgr --transport dpdk --log-level info --eal '-l 2-3 --main-lcore 2 -a \
             0000:03:00.1 --file-prefix msgr-osd.0' --ip 10.0.0.5/24 --gateway 10.0.0.1 \
             --idle busy serve --bind v1:10.0.0.5:6800 --name osd.0 --workers 2 \
             --admin-socket /run/msgr/osd.0.asok --dispatch-throttle-bytes 104857600 \
             --client-message-cap 256 --client-bytes-cap 524288000 --policy \
             client=stateless_registered_server --policy mgr=lossy_client --policy \
             mon=lossy_client"
        ),
        "{o}"
    );
    let dir = TempDir::new("config").unwrap();
    let good = std::fs::read_to_string(&example).unwrap();
    let cases: [(&str, String, &str); 8] = [
        (
            "typo",
            good.replace("workers = 2", "wrokers = 2"),
            "unknown field `wrokers`",
        ),
        (
            "no bind",
            good.replace("bind = ", "# bind = "),
            "missing field `bind`",
        ),
        (
            "bad ip",
            good.replace("ip = \"10.0.0.5/24\"", "ip = \"10.0.0.5\""),
            "dpdk.ip",
        ),
        (
            "bad idle",
            good.replace("idle = \"busy\"", "idle = \"lazy\""),
            "dpdk.idle",
        ),
        (
            "bad gateway",
            good.replace("gateway = \"10.0.0.1\"", "gateway = \"10.1.0.1\""),
            "not in our subnet",
        ),
        (
            "bad name",
            good.replace("name = \"osd.0\"", "name = \"osd\""),
            "name",
        ),
        (
            "bad policy",
            good.replace("mgr = \"lossy_client\"", "mgr = \"lossy\""),
            "policy.mgr",
        ),
        ("not toml", "bind = [\n".to_owned(), "config"),
    ];
    for (what, body, want) in cases {
        let f = dir.path().join(format!("{}.toml", what.replace(' ', "-")));
        std::fs::write(&f, body).unwrap();
        let out = msgr(&["serve", "--config", f.to_str().unwrap(), "--check"]);
        let (o, e) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{what}: {o}{e}");
        assert!(e.contains(want), "{what}: want {want:?} in {e}");
        assert!(
            e.contains(&*f.to_string_lossy()),
            "{what}: the file is named: {e}"
        );
        assert_eq!(e.trim().lines().count(), 1, "{what}: one line: {e}");
    }
    // The file says everything: flags beside it are refused; --check needs --config.
    let out = msgr(&[
        "serve",
        "--config",
        example.to_str().unwrap(),
        "--workers",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("every setting comes from the file"),
        "{:?}",
        text(&out)
    );
    let out = msgr(&["serve", "--check"]);
    assert_eq!(out.status.code(), Some(2));
    let out = msgr(&["serve", "--config", "/nonexistent/msgr.toml", "--check"]);
    assert!(
        text(&out).1.contains("/nonexistent/msgr.toml"),
        "{:?}",
        text(&out)
    );
}

#[test]
fn the_service_command_lines_run_end_to_end() {
    skip_unless!("a network namespace with a tap", netlab::check);
    let lab = NetLab::new("sv").unwrap();
    let exec = lab.exec();
    let ip = lab.dpdk_ip(2);
    let dir = TempDir::new("service").unwrap();
    let asok = dir.path().join("osd.7.asok");
    let config = dir.path().join("osd.7.toml");
    let eal = lab.eal("serve");
    std::fs::write(
        &config,
        format!(
            "name = \"osd.7\"\nbind = \"v1:{ip}:6800\"\ntransport = \"dpdk\"\n\
             admin_socket = \"{}\"\nlog_level = \"info\"\n[dpdk]\neal = \"{eal}\"\n\
             ip = \"{ip}/24\"\nidle = \"sleep\"\n[throttle]\nclient_messages = 64\n",
            asok.display()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    // ExecStartPre.
    let out = msgr(&["serve", "--config", cfg, "--check"]);
    assert!(out.status.success(), "{:?}", text(&out));
    // ExecStart, inside the namespace that holds the tap.
    let d = Daemon::spawn(dir, &exec, &["serve", "--config", cfg], asok.clone());
    let addr = d.addr.to_string();
    assert!(addr.starts_with(&format!("v1:{ip}:6800/")), "{addr}");
    let posix = ["--transport", "posix"];
    let run = |args: &[&str]| {
        let mut c = Command::new(exec[0]);
        c.args(&exec[1..]).arg(MSGR).args(posix).args(args);
        let out = run_bounded(&mut c, Duration::from_secs(90)).unwrap();
        assert!(out.status.success(), "{args:?}: {:?}", text(&out));
        text(&out).0
    };
    assert!(run(&["ping", &addr, "-c", "3", "-i", "0.05"]).contains("3 sent, 3 received"));
    let v: Value = serde_json::from_str(
        run(&[
            "load",
            &addr,
            "--ops",
            "500",
            "--size",
            "4096",
            "--in-flight",
            "16",
            "--json",
        ])
        .trim(),
    )
    .unwrap();
    assert_eq!(v["read"]["ops"], 500, "{v}");
    let status: Value = serde_json::from_str(&d.admin("status").unwrap()).unwrap();
    assert_eq!(status["transport"], "dpdk", "{status}");
    assert_eq!(status["name"], "osd.7", "{status}");
    let perf = d.perf();
    assert_eq!(counter(&perf, &["osd", "op"]), 1000, "{perf}");
    // ExecStop: the admin socket's shutdown; a clean exit, the socket removed.
    let st = d.shutdown();
    assert!(st.success(), "msgr serve exited with {st}");
    assert!(!asok.exists());
    drop(lab);
}
