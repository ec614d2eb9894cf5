//! The `msgr` program on the dpdk transport, as users run it, against the kernel and
//! against itself across processes:
//!
//! - `msgr serve --transport dpdk` on a tap device (DPDK's `net_tap`) whose kernel end is in
//!   a network namespace the test made, reached from inside that namespace by `msgr ping`
//!   (posix and simple) and by an OSD write/read workload (`msgr load`, posix), with the
//!   traffic in `perf dump` and a clean admin `shutdown`;
//! - the reverse: `msgr ping` and `msgr load` with `--transport dpdk` against a posix
//!   `msgr serve` on the kernel end (the nonce learned, not given);
//! - a real `ceph-mon` on the kernel end, reached by `msgr ping` and `msgr monmap` with
//!   `--transport dpdk`, the fsid checked;
//! - two DPDK processes over vhost-user: `msgr serve` on `net_vhost` (client mode) and
//!   `msgr ping`/`msgr load` on `net_virtio_user` (server mode), one after the other (the
//!   server's port sees its peer leave and a new one attach).
//!
//! Every process runs inside the test's namespace (`support::netlab`) or talks only over a
//! unix socket (vhost-user); every command is bounded; the namespaces, taps, sockets and
//! DPDK runtime directories are removed on drop, passing or failing. The tests take turns
//! (one lock): each DPDK process polls, and these machines have two cores.
//!
//! Needs root, `ip` and /dev/net/tun (and ceph-mon for the monitor test); otherwise each test
//! reports `SKIPPED <name>` (a failure under `MSGR_REQUIRE_INTEROP=1`).
#![allow(clippy::disallowed_methods)] // a test driver: it reads the clock for bounded waits

mod support;

use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

use msgr::msg::MsgType;
use serde_json::Value;
use stack::dpdk_files::{allowed_cpus, RuntimeDir};
use support::capture::Pcap;
use support::daemon::Daemon;
use support::mon::MonFixture;
use support::netlab::{self, NetLab};
use support::{counter, run_bounded, TempDir};

const MSGR: &str = env!("CARGO_BIN_EXE_msgr");
/// Bound for one client command (EAL start, link, session, the work).
const CMD_TIMEOUT: Duration = Duration::from_secs(90);

/// One test at a time: DPDK processes poll, and a machine here has two cores.
static TURN: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `[WRAPPER...] msgr ARGS...` to completion (bounded).
fn msgr(wrapper: &[&str], args: &[String]) -> Output {
    let mut cmd = match wrapper.split_first() {
        Some((prog, rest)) => {
            let mut c = Command::new(prog);
            c.args(rest).arg(MSGR);
            c
        }
        None => Command::new(MSGR),
    };
    cmd.args(args);
    run_bounded(&mut cmd, CMD_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The command's stdout; panics with its stderr unless it exited 0.
fn ok(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// `msgr ping` that must get every reply.
fn ping(wrapper: &[&str], net: &[String], addr: &str, count: u32) {
    let mut a = net.to_vec();
    a.extend(args(&[
        "ping",
        addr,
        "-c",
        &count.to_string(),
        "-i",
        "0.05",
    ]));
    let out = ok("msgr ping", &msgr(wrapper, &a));
    assert!(
        out.contains(&format!("{count} sent, {count} received")),
        "{out}"
    );
}

/// `msgr load --json`: every op done and every read checked; returns the report.
fn load(wrapper: &[&str], net: &[String], addr: &str, ops: u64, size: u32, depth: u32) -> Value {
    let mut a = net.to_vec();
    a.extend(args(&[
        "load",
        addr,
        "--ops",
        &ops.to_string(),
        "--size",
        &size.to_string(),
        "--in-flight",
        &depth.to_string(),
        "--json",
    ]));
    let out = ok("msgr load", &msgr(wrapper, &a));
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    for phase in ["write", "read"] {
        assert_eq!(v[phase]["ops"], ops, "{v}");
        assert_eq!(v[phase]["bytes"], ops * u64::from(size), "{v}");
    }
    v
}

#[test]
fn dpdk_serve_answers_kernel_clients() {
    skip_unless!("a network namespace with a tap", netlab::check);
    let _t = turn();
    let lab = NetLab::new("ds").unwrap();
    let exec = lab.exec();
    let ip = lab.dpdk_ip(2);
    let dir = TempDir::new("dpdk-serve").unwrap();
    let first_pcap = dir.path().join("start.pcap");
    let second_pcap = dir.path().join("admin.pcap");
    let mut serve = lab.dpdk_args("serve", 2);
    serve.extend(args(&["--pcap", first_pcap.to_str().unwrap()]));
    let serve: Vec<&str> = serve.iter().map(String::as_str).collect();
    let d = Daemon::launch(dir, &exec, &format!("v1:{ip}:6800"), &serve);
    assert_eq!(
        d.addr.to_string().split('/').next(),
        Some(&*format!("v1:{ip}:6800"))
    );
    let addr = d.addr.to_string();
    for t in ["posix", "simple"] {
        ping(&exec, &args(&["--transport", t]), &addr, 3);
    }
    // The capture from the start holds the pings; a second one, started and stopped on
    // the admin socket, a short OSD workload.
    let stopped: Value = serde_json::from_str(&d.admin("pcap stop").unwrap()).unwrap();
    assert!(counter(&stopped, &["written"]) > 20, "{stopped}");
    assert_eq!(counter(&stopped, &["dropped"]), 0, "{stopped}");
    let cmd = format!(
        r#"{{"prefix": "pcap start", "path": "{}"}}"#,
        second_pcap.display()
    );
    d.admin(&cmd).unwrap();
    let status: Value = serde_json::from_str(&d.admin("status").unwrap()).unwrap();
    assert_eq!(
        status["capture"]["file"],
        second_pcap.to_str().unwrap(),
        "{status}"
    );
    let posix = args(&["--transport", "posix"]);
    load(&exec, &posix, &addr, 50, 4096, 4);
    let stopped: Value = serde_json::from_str(&d.admin("pcap stop").unwrap()).unwrap();
    assert!(counter(&stopped, &["written"]) > 100, "{stopped}");
    assert!(d.admin("pcap stop").is_err(), "no capture runs any more");
    check_capture(&first_pcap, &[MsgType::PING], true);
    check_capture(
        &second_pcap,
        &[MsgType::OSD_OP, MsgType::OSD_OPREPLY],
        false,
    );
    load(&exec, &posix, &addr, 2000, 4096, 16);
    load(&exec, &posix, &addr, 6, 4 << 20, 2);

    let status: Value = serde_json::from_str(&d.admin("status").unwrap()).unwrap();
    assert_eq!(status["transport"], "dpdk", "{status}");
    let perf = d.perf();
    let osd_ops = counter(&perf, &["osd", "op"]);
    assert_eq!(osd_ops, 2 * (50 + 2000 + 6), "{perf}");
    assert_eq!(counter(&perf, &["osd", "ping"]), 6, "{perf}");
    let st = d.shutdown();
    assert!(st.success(), "msgr serve exited with {st}");
    drop(lab);
}

#[test]
fn dpdk_serve_spreads_sessions_over_its_workers() {
    skip_unless!("a network namespace with a tap", netlab::check);
    let _t = turn();
    let lab = NetLab::new("dw").unwrap();
    let exec = lab.exec();
    let ip = lab.dpdk_ip(2);
    let serve = args(&[
        "--transport",
        "dpdk",
        "--eal",
        &lab.eal_lcores("serve", 2),
        "--ip",
        &format!("{ip}/24"),
        "--workers",
        "2",
    ]);
    let serve: Vec<&str> = serve.iter().map(String::as_str).collect();
    let d = Daemon::launch(
        TempDir::new("dpdk-workers").unwrap(),
        &exec,
        &format!("v1:{ip}:6800"),
        &serve,
    );
    let addr = d.addr.to_string();
    // The tap hands each flow to one of its two queues by the kernel's flow hash: sixteen
    // sessions (each a new source port) land on both workers but for a 2^-15 chance.
    const SESSIONS: u64 = 16;
    let posix = args(&["--transport", "posix"]);
    for _ in 0..SESSIONS {
        load(&exec, &posix, &addr, 100, 4096, 8);
    }
    let perf = d.perf();
    assert_eq!(counter(&perf, &["osd", "op"]), SESSIONS * 2 * 100, "{perf}");
    // Counters are published every 100 ms.
    std::thread::sleep(Duration::from_millis(300));
    let perf = d.perf();
    let workers = perf["dpdk"]["workers"]
        .as_array()
        .expect("dpdk workers")
        .clone();
    assert_eq!(workers.len(), 2, "{perf}");
    let accepted: Vec<u64> = workers
        .iter()
        .map(|w| counter(w, &["stack", "accepted"]))
        .collect();
    assert_eq!(accepted.iter().sum::<u64>(), SESSIONS, "{perf}");
    assert!(
        accepted.iter().all(|&a| a > 0),
        "both workers served: {accepted:?}"
    );
    for w in &workers {
        assert_eq!(counter(w, &["stack", "rx_dropped"]), 0, "{w}");
    }
    let st = d.shutdown();
    assert!(st.success(), "msgr serve exited with {st}");
}

/// tshark's Ceph dissector finds our sessions in a capture of the dpdk path: messages of
/// every type in `want`, and with `clean`, nothing malformed. (Wireshark 3.4/4.0's dissector
/// predates Pacific's MOSDOp v8 and does not reassemble it across segments: it marks real
/// Ceph's OSD ops malformed as well, so those are only identified, not held to `clean`.)
fn check_capture(pcap: &std::path::Path, want: &[MsgType], clean: bool) {
    if !support::skip::require(&support::skip::test_name(), "tshark", || {
        support::skip::programs(&["tshark"])
    }) {
        return;
    }
    let frames = Pcap::open(pcap).ceph_frames().unwrap();
    let types: Vec<u16> = frames
        .iter()
        .flat_map(|f| f.ceph_msg_types.iter().copied())
        .collect();
    for t in want {
        assert!(
            types.contains(&t.0),
            "{}: message types {types:?}, want {}",
            pcap.display(),
            t.0
        );
    }
    assert!(
        frames
            .iter()
            .any(|f| f.has_pdu("Connect") || f.has_pdu("Connect Reply")),
        "{}: no handshake in {:?}",
        pcap.display(),
        frames.iter().map(|f| &f.info).collect::<Vec<_>>()
    );
    if clean {
        let bad: Vec<_> = frames
            .iter()
            .filter(|f| f.is_bad())
            .map(|f| &f.info)
            .collect();
        assert!(bad.is_empty(), "{}: malformed: {bad:?}", pcap.display());
    }
}

#[test]
fn dpdk_clients_reach_a_kernel_serve() {
    skip_unless!("a network namespace with a tap", netlab::check);
    let _t = turn();
    let lab = NetLab::new("dc").unwrap();
    let exec = lab.exec();
    let d = Daemon::launch(
        TempDir::new("posix-serve").unwrap(),
        &exec,
        &format!("v1:{}:6800", lab.kernel_ip()),
        &["--transport", "posix"],
    );
    // A port nobody listens on: the kernel resets the SYN, and the DPDK client says so
    // at once (not after a handshake timeout).
    let mut a = lab.dpdk_args("refused", 5);
    a.extend(args(&[
        "ping",
        &format!("v1:{}:6801", lab.kernel_ip()),
        "-c",
        "1",
        "-W",
        "20",
    ]));
    let t0 = std::time::Instant::now();
    let out = msgr(&exec, &a);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("connection refused"), "{err}");
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "refused only after {:?}",
        t0.elapsed()
    );
    // No nonce: the client learns the one the daemon announces.
    let addr = format!("v1:{}:6800", lab.kernel_ip());
    ping(&exec, &lab.dpdk_args("ping", 2), &addr, 3);
    load(&exec, &lab.dpdk_args("load", 3), &addr, 2000, 4096, 16);
    load(&exec, &lab.dpdk_args("load4m", 4), &addr, 6, 4 << 20, 2);
    let perf = d.perf();
    assert_eq!(counter(&perf, &["osd", "op"]), 2 * (2000 + 6), "{perf}");
    let st = d.shutdown();
    assert!(st.success(), "msgr serve exited with {st}");
}

#[test]
fn dpdk_clients_reach_a_real_ceph_mon() {
    skip_unless!("a network namespace with a tap", netlab::check);
    skip_unless!("ceph-mon", MonFixture::check);
    let _t = turn();
    let lab = NetLab::new("dm").unwrap();
    let exec = lab.exec();
    let mon = MonFixture::builder()
        .netns(&lab.ns, lab.kernel_ip().parse().unwrap())
        .start()
        .unwrap();
    let addr = format!("v1:{}", mon.v1_addr());
    ping(&exec, &lab.dpdk_args("ping", 2), &addr, 2);
    let mut a = lab.dpdk_args("monmap", 3);
    a.extend(args(&["monmap", &addr, "--json"]));
    let out = ok("msgr monmap", &msgr(&exec, &a));
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["fsid"], mon.fsid_str(), "{v}");
    mon.stop().unwrap();
}

#[test]
fn dpdk_to_dpdk_across_processes_over_vhost_user() {
    skip_unless!("root (DPDK runtime directory)", support::skip::root);
    let _t = turn();
    let pair = VhostPair::start("vh", None);
    let addr = pair.d.addr.to_string();
    ping(&[], &pair.client("ping", 2), &addr, 3);
    let v = load(&[], &pair.client("load", 3), &addr, 3000, 4096, 16);
    assert_eq!(v["transport"], "dpdk", "{v}");
    let perf = pair.d.perf();
    assert_eq!(counter(&perf, &["osd", "op"]), 6000, "{perf}");
    pair.stop();
}

#[test]
fn dpdk_jumbo_frames_over_vhost_user() {
    skip_unless!("root (DPDK runtime directory)", support::skip::root);
    let _t = turn();
    let pair = VhostPair::start("vj", Some(9000));
    let addr = pair.d.addr.to_string();
    const OPS: u64 = 8;
    const SIZE: u32 = 4 << 20;
    load(&[], &pair.client("load", 2), &addr, OPS, SIZE, 2);
    std::thread::sleep(Duration::from_millis(300)); // counters are published every 100 ms
    let perf = pair.d.perf();
    let stack = &perf["dpdk"]["workers"][0]["stack"];
    let frames = counter(stack, &["rx_frames"]);
    // OPS objects of SIZE bytes came in; in 1500-byte frames that is over 5,700 frames per
    // object, in 9000-byte ones under 500.
    let standard = OPS * u64::from(SIZE) / 1448;
    assert!(
        frames < standard / 4,
        "{frames} frames received for {OPS} x {SIZE} B: not jumbo frames ({perf})"
    );
    assert_eq!(counter(stack, &["rx_dropped"]), 0, "{perf}");
    pair.stop();
}

/// `msgr serve` on `net_vhost` (client mode) and clients on `net_virtio_user` (server mode)
/// at the same socket, one after the other; `mtu` on both ends. The daemon stops first
/// (fields drop in order), then the socket's directory and the DPDK runtime directories go.
struct VhostPair {
    d: Daemon,
    sock: std::path::PathBuf,
    tag: String,
    mtu: Option<u16>,
    _dir: TempDir,
    prefixes: Mutex<Vec<RuntimeDir>>,
}

impl VhostPair {
    fn start(tag: &str, mtu: Option<u16>) -> Self {
        let dir = TempDir::new(tag).unwrap();
        let sock = dir.path().join("vhost.sock");
        let tag = format!("msgr-{tag}{}", std::process::id());
        let prefixes = Mutex::new(Vec::new());
        let vdev = format!("net_vhost0,iface={},client=1,queues=1", sock.display());
        let serve = dpdk_args(&prefixes, &format!("{tag}-serve"), &vdev, 1, mtu);
        let serve: Vec<&str> = serve.iter().map(String::as_str).collect();
        let d = Daemon::launch(
            TempDir::new("vhost-serve").unwrap(),
            &[],
            "v1:10.78.0.1:6800",
            &serve,
        );
        Self {
            d,
            sock,
            tag,
            mtu,
            _dir: dir,
            prefixes,
        }
    }

    /// The options of a client process `role` with address 10.78.0.`host`.
    fn client(&self, role: &str, host: u8) -> Vec<String> {
        let vdev = format!(
            "net_virtio_user0,path={},server=1,queues=1",
            self.sock.display()
        );
        dpdk_args(
            &self.prefixes,
            &format!("{}-{role}", self.tag),
            &vdev,
            host,
            self.mtu,
        )
    }

    fn stop(self) {
        let st = self.d.shutdown();
        assert!(st.success(), "msgr serve exited with {st}");
    }
}

/// `--transport dpdk` options for one process on `vdev` as 10.78.0.`host`/24, its runtime
/// directory (`prefix`) registered for removal.
fn dpdk_args(
    prefixes: &Mutex<Vec<RuntimeDir>>,
    prefix: &str,
    vdev: &str,
    host: u8,
    mtu: Option<u16>,
) -> Vec<String> {
    prefixes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(RuntimeDir::new(prefix));
    let eal = format!(
        "--no-huge -m 256 --no-pci --no-telemetry --file-prefix {prefix} --lcores 0@({}) \
         --vdev={vdev}",
        allowed_cpus()
    );
    let mut a = args(&[
        "--transport",
        "dpdk",
        "--eal",
        &eal,
        "--ip",
        &format!("10.78.0.{host}/24"),
    ]);
    if let Some(m) = mtu {
        a.extend(args(&["--mtu", &m.to_string()]));
    }
    a
}

#[test]
fn dpdk_start_failures_are_one_line() {
    skip_unless!("root (DPDK runtime directory)", support::skip::root);
    let _t = turn();
    let prefix = format!("msgr-np{}", std::process::id());
    let _cleanup = RuntimeDir::new(&prefix);
    let eal = format!("--no-huge -m 128 --no-pci --no-telemetry --file-prefix {prefix}");
    let cases: [(Vec<String>, &str); 2] = [
        // EAL starts, but no device is there.
        (
            args(&[
                "--transport",
                "dpdk",
                "--eal",
                &eal,
                "--ip",
                "10.79.0.2/24",
                "ping",
                "10.79.0.1:6789",
            ]),
            "0 ports probed",
        ),
        // The bind address is not the stack's.
        (
            args(&[
                "--transport",
                "dpdk",
                "--eal",
                &eal,
                "--ip",
                "10.79.0.2/24",
                "serve",
                "--bind",
                "v1:10.79.0.3:6800",
                "--run-for",
                "5",
            ]),
            "not this stack's address",
        ),
    ];
    for (a, want) in cases {
        let out = msgr(&[], &a);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{a:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{a:?}: not one line: {err}");
        assert!(
            err.starts_with("msgr: ") && err.contains(want),
            "{a:?}: {err}"
        );
    }
}
