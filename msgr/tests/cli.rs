//! The `msgr` program as users run it: real processes, real sockets on loopback.
//!
//! - `--help`, `--version`, and bad input (one `msgr: ...` line on stderr, a non-zero exit,
//!   never a panic);
//! - `msgr serve` on both transports, pinged by `msgr ping` on both transports (all four
//!   combinations), with `msgr admin ... perf dump` showing the traffic and `shutdown`
//!   stopping the daemon cleanly (as does `--run-for`; after SIGTERM, the stale admin socket
//!   is replaced by the next daemon);
//! - an OSD workload (write, read back, stat, extent write/read, delete, read of a deleted
//!   object) from a client `Messenger` in this process against `msgr serve`;
//! - `msgr ping` and `msgr monmap` against a real `ceph-mon` (skipped without one, see
//!   `support::skip`).
//!
//! Every spawned process is stopped in `Drop` (admin `shutdown`, then SIGKILL) and every
//! wait is bounded; each daemon also runs with `--run-for` so that it exits by itself even if
//! this test process is killed.
#![allow(clippy::disallowed_methods)] // a test driver: it reads the clock for bounded waits

mod support;

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use msgr::entity::{EntityAddr, EntityName, EntityType};
use msgr::messenger::{ConnectionRef, Dispatcher, Incoming, Messenger, TransportKind};
use msgr::msg::osd_types::StatResult;
use msgr::msg::{MOSDOp, MOSDOpReply, Message, MsgType, TypedMessage};
use msgr::proto::Policy;
use serde_json::Value;
use support::daemon::Daemon;
use support::mon::MonFixture;
use support::{counter, run_bounded, TempDir};

const MSGR: &str = env!("CARGO_BIN_EXE_msgr");
/// Bound for a whole `msgr` client command.
const CMD_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound for a daemon to start or stop, and for one reply.
const STEP: Duration = Duration::from_secs(20);
const TRANSPORTS: [&str; 2] = ["simple", "posix"];

/// Runs `msgr ARGS...` to completion (bounded).
fn msgr(args: &[&str]) -> Output {
    run_bounded(Command::new(MSGR).args(args), CMD_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---------------------------------------------------------------------------------------
// Help, version, bad input

#[test]
fn help_and_version() {
    let out = msgr(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for word in [
        "serve",
        "ping",
        "monmap",
        "admin",
        "--transport",
        "--log-level",
    ] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
    let out = msgr(&["serve", "--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for word in [
        "--bind",
        "--admin-socket",
        "--name",
        "--workers",
        "listening on",
    ] {
        assert!(help.contains(word), "serve --help lacks {word}:\n{help}");
    }
    for sub in ["ping", "monmap", "admin"] {
        let out = msgr(&[sub, "--help"]);
        assert!(out.status.success(), "{sub} --help");
        assert!(text(&out.stdout).contains("Usage: msgr"));
    }
    let out = msgr(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!("msgr {}", env!("CARGO_PKG_VERSION"))
    );
}

/// A free loopback port nobody listens on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn assert_one_line_error(args: &[&str], code: i32, want: &str) {
    let out = msgr(args);
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "msgr {args:?}: status {}, stderr {err}",
        out.status
    );
    assert_eq!(
        err.lines().count(),
        1,
        "msgr {args:?}: not one line: {err:?}"
    );
    assert!(err.starts_with("msgr: "), "msgr {args:?}: {err:?}");
    assert!(err.contains(want), "msgr {args:?}: {err:?} lacks {want:?}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

#[test]
fn bad_input_gives_one_line_and_a_status() {
    let closed = format!("127.0.0.1:{}", closed_port());
    let cases: &[(&[&str], i32, &str)] = &[
        (&["ping"], 2, "<ADDR>"),
        (&["ping", "not-an-address"], 2, "bad address"),
        (&["ping", "v1:127.0.0.1:99999"], 2, "bad address"),
        (&["ping", "v1:127.0.0.1:6789/x"], 2, "bad nonce"),
        (&["ping", "v2:127.0.0.1:3300"], 2, "v2"),
        (
            &["--transport", "dpdk", "serve", "--bind", "v1:127.0.0.1:0"],
            2,
            "needs --eal",
        ),
        (
            &[
                "--transport",
                "dpdk",
                "--eal",
                "--no-pci",
                "ping",
                "10.9.0.1:6789",
            ],
            2,
            "needs --ip",
        ),
        (
            &[
                "--transport",
                "dpdk",
                "--eal",
                "--no-pci",
                "--ip",
                "10.9.0.2",
                "ping",
                "10.9.0.1:6789",
            ],
            2,
            "prefix",
        ),
        (
            &[
                "--transport",
                "dpdk",
                "--eal",
                "--no-pci",
                "--ip",
                "10.9.0.2/33",
                "ping",
                "10.9.0.1:6789",
            ],
            2,
            "1 to 32",
        ),
        (
            &[
                "--transport",
                "dpdk",
                "--eal",
                "'--no-pci",
                "--ip",
                "10.9.0.2/24",
                "ping",
                "10.9.0.1:6789",
            ],
            2,
            "unterminated",
        ),
        (
            &[
                "--transport",
                "dpdk",
                "--eal",
                "--no-pci",
                "--ip",
                "10.9.0.2/24",
                "--gateway",
                "10.8.0.1",
                "ping",
                "10.9.0.1:6789",
            ],
            2,
            "not in our subnet",
        ),
        (
            &[
                "--transport",
                "dpdk",
                "--eal",
                "--no-pci",
                "--ip",
                "10.9.0.2/24",
                "--idle",
                "spin",
                "ping",
                "10.9.0.1:6789",
            ],
            2,
            "idle policy",
        ),
        (
            &[
                "--transport",
                "posix",
                "--ip",
                "10.9.0.2/24",
                "ping",
                "10.9.0.1:6789",
            ],
            2,
            "only apply to --transport dpdk",
        ),
        (
            &["ping", "--transport", "carrier-pigeon", "127.0.0.1:1"],
            2,
            "unknown transport",
        ),
        (
            &["serve", "--bind", "v1:127.0.0.1:0", "--eal", "--no-huge"],
            2,
            "--transport dpdk",
        ),
        (
            &["serve", "--bind", "v1:127.0.0.1:0", "--name", "client.1"],
            2,
            "osd.N or mon.N",
        ),
        (
            &["serve", "--bind", "v1:127.0.0.1:0", "--name", "osd"],
            2,
            "TYPE.NUM",
        ),
        (&["serve"], 2, "--bind"),
        (&["ping", "127.0.0.1:1", "--count", "0"], 2, "--count"),
        (
            &["--log-level", "loud", "ping", "127.0.0.1:1"],
            2,
            "--log-level",
        ),
        (&["frobnicate"], 2, "frobnicate"),
        (&["ping", &closed, "-c", "1"], 1, "connection refused"),
        (
            &["--transport", "simple", "ping", &closed, "-c", "1"],
            1,
            "connection refused",
        ),
        (&["monmap", &closed], 1, "connection refused"),
        (
            &["admin", "/nonexistent/msgr.asok", "perf", "dump"],
            1,
            "admin socket",
        ),
    ];
    for (args, code, want) in cases {
        assert_one_line_error(args, *code, want);
    }
}

#[test]
fn bind_failure_is_one_line() {
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("v1:{}", held.local_addr().unwrap());
    for t in TRANSPORTS {
        assert_one_line_error(
            &["--transport", t, "serve", "--bind", &addr, "--run-for", "5"],
            1,
            "cannot bind",
        );
    }
}

#[test]
fn a_peer_that_is_not_ceph_is_reported() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    // Answers every connection with an HTTP error page, for as long as the test runs.
    std::thread::spawn(move || {
        for mut s in l.incoming().take(16).flatten() {
            let _ = s.write_all(&[b'x'; 300]);
            let _ = s.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n");
        }
    });
    assert_one_line_error(
        &["ping", &addr, "-c", "1", "-W", "5"],
        1,
        "does not speak Ceph",
    );
}

// ---------------------------------------------------------------------------------------
// serve + ping + admin

#[test]
fn serve_answers_ping_on_both_transports_and_admin_shows_it() {
    for server in TRANSPORTS {
        let d = Daemon::start(&["--transport", server, "--workers", "2"]);
        let full = d.addr.to_string();
        for client in TRANSPORTS {
            let out = msgr(&[
                "--transport",
                client,
                "ping",
                &full,
                "-c",
                "3",
                "-i",
                "0.05",
            ]);
            let so = text(&out.stdout);
            assert!(
                out.status.success(),
                "{server}/{client}: {so} {}",
                text(&out.stderr)
            );
            assert_eq!(so.matches("reply from ").count(), 3, "{so}");
            assert!(so.contains("seq=3 time="), "{so}");
            assert!(so.contains("3 sent, 3 received, 0% loss"), "{so}");
            assert!(so.contains(&format!("(osd, {client})")), "{so}");
        }
        // A bare address: msgr learns the daemon's nonce from its banner and retries.
        let bare = format!("127.0.0.1:{}", d.addr.port());
        let out = msgr(&["ping", &bare, "-c", "1", "--size", "4096"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(text(&out.stdout).contains(&format!("PING {full}")));
        // Asking for a monitor gets a clear refusal.
        let out = msgr(&["ping", &full, "-c", "1", "--peer-type", "mon"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(text(&out.stderr).contains("check --peer-type"));

        // The counters, through the program and through the library client.
        let out = msgr(&["admin", d.asok.to_str().unwrap(), "perf", "dump"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let perf: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(counter(&perf, &["msgr", "msgs_in"]) >= 7, "{perf}");
        assert!(counter(&perf, &["msgr", "msgs_in_by_type", "2"]) >= 7);
        assert!(counter(&perf, &["msgr", "fast_dispatched"]) >= 7);
        assert_eq!(counter(&perf, &["osd", "ping"]), 7);
        assert_eq!(counter(&perf, &["msgr", "faults", "bad_crc"]), 0);
        let out = msgr(&["admin", d.asok.to_str().unwrap(), "perf", "dump", "osd"]);
        let osd: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            osd.get("msgr").is_none() && osd["osd"]["ping"] == 7,
            "{osd}"
        );
        let status: Value = serde_json::from_str(&d.admin("status").unwrap()).unwrap();
        assert_eq!(status["transport"], server);
        assert_eq!(status["addr"], full);
        assert_eq!(status["name"], "osd.0");
        let out = msgr(&["admin", d.asok.to_str().unwrap(), "no", "such", "command"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(text(&out.stderr).contains("unknown command"));

        let status = d.shutdown();
        assert!(status.success(), "serve exited with {status}");
    }
}

#[test]
fn serve_with_injected_socket_failures_counts_them() {
    let d = Daemon::start(&[
        "--transport",
        "posix",
        "--workers",
        "2",
        "--inject-socket-failures",
        "5",
    ]);
    let full = d.addr.to_string();
    // Some pings may be lost; the session recovers or the ping says so.
    let _ = msgr(&["ping", &full, "-c", "4", "-i", "0.02", "-W", "2"]);
    let perf = d.perf();
    assert!(counter(&perf, &["msgr", "injected_failures"]) > 0, "{perf}");
    assert!(d.shutdown().success());
}

#[test]
fn sigterm_leaves_a_stale_socket_that_the_next_start_replaces() {
    let mut d = Daemon::start(&["--transport", "posix", "--workers", "2"]);
    let mut child = d.child.take().unwrap();
    support::terminate(&mut child, "TERM", STEP).unwrap();
    assert!(
        d.asok.exists(),
        "SIGTERM's default action leaves the socket file"
    );
    assert!(d.admin("version").is_err());
    // The next daemon on the same path replaces the stale socket.
    let dir = std::mem::replace(&mut d.dir, TempDir::new("unused").unwrap());
    let d2 = Daemon::start_in(dir, &["--transport", "simple", "--workers", "2"]);
    assert!(d2.admin("version").is_ok());
    assert!(d2.shutdown().success());

    // --run-for stops the daemon cleanly by itself.
    let dir = TempDir::new("run-for").unwrap();
    let asok = dir.path().join("r.asok");
    let out = run_bounded(
        Command::new(MSGR)
            .args(["serve", "--bind", "v1:127.0.0.1:0", "--run-for", "0.3"])
            .arg("--admin-socket")
            .arg(&asok),
        STEP,
    )
    .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("listening on v1:127.0.0.1:"));
    assert!(!asok.exists());
}

// ---------------------------------------------------------------------------------------
// OSD workload from a client Messenger

/// Forwards every received message to a channel (fast dispatch, on the network thread).
struct Replies(mpsc::Sender<Message>);

impl Dispatcher for Replies {
    fn ms_can_fast_dispatch_any(&self) -> bool {
        true
    }
    fn ms_can_fast_dispatch(&self, _m: &Message) -> bool {
        true
    }
    fn ms_fast_dispatch(&self, m: Incoming) {
        let _ = self.0.send(m.msg);
    }
}

struct OsdClient {
    msgr: Messenger,
    conn: ConnectionRef,
    rx: mpsc::Receiver<Message>,
    tid: u64,
}

impl OsdClient {
    fn connect(transport: TransportKind, osd: EntityAddr) -> Self {
        let msgr = Messenger::builder(EntityName::new(EntityType::CLIENT, 4242), 0x0c11)
            .transport(transport)
            .workers(1)
            .build();
        msgr.set_default_policy(Policy::lossy_client(0));
        let (tx, rx) = mpsc::channel();
        msgr.add_dispatcher_tail(Arc::new(Replies(tx)));
        msgr.start().unwrap();
        let conn = msgr.connect_to(osd, EntityType::OSD);
        Self {
            msgr,
            conn,
            rx,
            tid: 0,
        }
    }

    /// Sends one op and waits for its reply (bounded).
    fn call(&mut self, op: MOSDOp) -> MOSDOpReply {
        self.tid += 1;
        let tid = self.tid;
        let op = op.with_pg_num(32).with_tid(tid);
        self.conn
            .send_message(op.to_message(self.conn.features()))
            .unwrap();
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("no reply to tid {tid} within {STEP:?}"));
            let m = self
                .rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no reply to tid {tid} within {STEP:?}"));
            if m.ty() == MsgType::OSD_OPREPLY && m.header.tid == tid {
                return MOSDOpReply::decode(m).unwrap();
            }
        }
    }
}

impl Drop for OsdClient {
    fn drop(&mut self) {
        self.msgr.shutdown();
        self.msgr.wait();
    }
}

fn read_all(c: &mut OsdClient, oid: &str) -> (i32, Bytes) {
    let r = c.call(MOSDOp::read(1, oid, 0, 0));
    (r.result, r.data())
}

fn workload(c: &mut OsdClient) -> u64 {
    let b = Bytes::from_static;
    let r = c.call(MOSDOp::write_full(1, "obj", b(b"hello world")));
    assert_eq!((r.result, r.ops[0].rval), (0, 0));
    assert_eq!(read_all(c, "obj"), (0, b(b"hello world")));
    let st = c.call(MOSDOp::stat(1, "obj"));
    assert_eq!(st.result, 0);
    assert_eq!(StatResult::from_bytes(&st.ops[0].data).unwrap().size, 11);
    // Extent write and read.
    assert_eq!(c.call(MOSDOp::write(1, "obj", 6, b(b"WORLD"))).result, 0);
    let r = c.call(MOSDOp::read(1, "obj", 6, 5));
    assert_eq!((r.result, &r.data()[..]), (0, &b"WORLD"[..]));
    assert_eq!(read_all(c, "obj"), (0, b(b"hello WORLD")));
    // Past the end: zero fill on write, short read.
    assert_eq!(c.call(MOSDOp::write(1, "obj", 13, b(b"!"))).result, 0);
    assert_eq!(read_all(c, "obj"), (0, b(b"hello WORLD\0\0!")));
    let r = c.call(MOSDOp::read(1, "obj", 12, 100));
    assert_eq!(&r.data()[..], b"\0!");
    // A larger object, to cross segment and read boundaries.
    let big = Bytes::from((0..200_000u32).map(|i| i as u8).collect::<Vec<_>>());
    assert_eq!(c.call(MOSDOp::write_full(1, "big", big.clone())).result, 0);
    assert_eq!(read_all(c, "big"), (0, big));
    // Delete; then the object is gone.
    assert_eq!(c.call(MOSDOp::delete(1, "obj")).result, 0);
    let r = c.call(MOSDOp::read(1, "obj", 0, 0));
    assert_eq!((r.result, r.ops[0].rval), (-2, -2));
    assert_eq!(c.call(MOSDOp::stat(1, "obj")).result, -2);
    assert_eq!(c.call(MOSDOp::delete(1, "obj")).result, -2);
    assert_eq!(c.call(MOSDOp::create(1, "obj", true)).result, 0);
    assert_eq!(c.call(MOSDOp::create(1, "obj", true)).result, -17);
    c.tid
}

#[test]
fn osd_workload_through_a_client_messenger() {
    for server in TRANSPORTS {
        let d = Daemon::start(&["--transport", server, "--workers", "2"]);
        let mut total = 0;
        for client in [TransportKind::Simple, TransportKind::Posix] {
            let mut c = OsdClient::connect(client, d.addr);
            total += workload(&mut c);
        }
        let perf = d.perf();
        assert_eq!(counter(&perf, &["osd", "op"]), total, "{perf}");
        assert_eq!(counter(&perf, &["msgr", "msgs_in_by_type", "42"]), total);
        assert_eq!(counter(&perf, &["msgr", "msgs_out_by_type", "43"]), total);
        assert_eq!(counter(&perf, &["osd", "objects"]), 2);
        assert_eq!(counter(&perf, &["msgr", "faults", "bad_crc"]), 0);
        assert!(d.shutdown().success());
    }
}

// ---------------------------------------------------------------------------------------
// Against a real ceph-mon

#[test]
fn ping_and_monmap_against_a_real_mon() {
    skip_unless!("ceph-mon", MonFixture::check);
    let mon = MonFixture::start().unwrap();
    let v1 = mon.v1_addr();
    let addr = format!("v1:{v1}");
    for t in TRANSPORTS {
        let out = msgr(&["--transport", t, "ping", &addr, "-c", "2", "-i", "0.1"]);
        let so = text(&out.stdout);
        assert!(out.status.success(), "{t}: {so} {}", text(&out.stderr));
        assert!(so.contains(&format!("PING {addr}/0 (mon, {t})")), "{so}");
        assert!(so.contains("2 sent, 2 received"), "{so}");
        eprintln!("msgr --transport {t} ping {addr}:\n{so}");

        let out = msgr(&["--transport", t, "monmap", &addr, "--json"]);
        assert!(out.status.success(), "{t}: {}", text(&out.stderr));
        let map: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(map["fsid"], mon.fsid_str(), "{map}");
        assert_eq!(map["epoch"], 1);
        let mons = map["mons"].as_array().unwrap();
        assert_eq!(mons.len(), 1);
        assert_eq!(mons[0]["name"], mon.name());
        assert_eq!(mons[0]["rank"], 0);
        assert_eq!(mons[0]["addr"], format!("{v1}/0"));
        let addrvec = mons[0]["public_addrs"]["addrvec"].as_array().unwrap();
        let want_v2 = mon.v2_addr().unwrap().to_string();
        assert!(
            addrvec
                .iter()
                .any(|a| a["type"] == "v1" && a["addr"] == v1.to_string() && a["nonce"] == 0),
            "{map}"
        );
        assert!(
            addrvec
                .iter()
                .any(|a| a["type"] == "v2" && a["addr"] == want_v2),
            "{map}"
        );

        let out = msgr(&["--transport", t, "monmap", &addr]);
        assert!(out.status.success(), "{t}: {}", text(&out.stderr));
        let so = text(&out.stdout);
        eprintln!("msgr --transport {t} monmap {addr}:\n{so}");
        assert!(so.contains(&format!("fsid {}", mon.fsid_str())), "{so}");
        assert!(
            so.contains(&format!("0: [v2:{want_v2}/0,v1:{v1}/0] mon.a")),
            "{so}"
        );
    }
}
