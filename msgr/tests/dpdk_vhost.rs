//! Ceph's reconnect/replay scenario across two processes on the dpdk transport: two OSD
//! messengers with lossless peer policies, each in its own process with its own EAL,
//! joined by vhost-user (the test process: `net_vhost` in client mode) ↔ virtio-user (a
//! child process, this same test binary run again: `net_virtio_user` in server mode, the
//! order-independent arrangement of dpdk-virtual-links.md). Both inject socket failures
//! (`ms_inject_socket_failures`), so the session breaks over and over; thousands of stamped
//! messages of mixed sizes go each way, and each receiver checks that its stream arrived
//! exactly once, in order, every byte intact (mtest's recorder), and that the session was
//! really re-established (reconnects counted).
//!
//! The child is driven over its stdin/stdout, one line per step: it prints `READY <addr>`,
//! is told `PEER <addr>` (the test's messenger, to send its own stream to), prints `SENT`,
//! answers `REPORT` with `GOT <n> <check>`, and leaves on `BYE` (it stops first: the
//! vhost side keeps polling while its peer leaves, which is the clean order). Every wait
//! is bounded; the child also has a watchdog; its DPDK runtime directory, the socket and
//! the temporary directory are removed, passing or failing.
//!
//! Needs root (EAL's runtime directory); otherwise `SKIPPED` (a failure under
//! `MSGR_REQUIRE_INTEROP=1`). EAL starts once per process: this file holds one test.
#![allow(clippy::disallowed_methods)] // a test driver: it reads the clock for bounded waits

mod mtest;

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use msgr::entity::{EntityAddr, EntityType};
use msgr::messenger::{Backend, DpdkConfig, TransportKind, UserspaceConfig};
use msgr::proto::Policy;
use mtest::*;
use stack::dpdk_files::{allowed_cpus, RuntimeDir};

/// Set in the child's environment: the vhost-user socket path.
const CHILD_ENV: &str = "MSGR_VHOST_SCENARIO_SOCK";
/// Messages per direction.
const N: u64 = 2000;
const STEP: Duration = Duration::from_secs(30);
/// Everything, including two EAL starts.
const LIMIT: Duration = Duration::from_secs(240);

fn node(num: i64, ip: Ipv4Addr, prefix: &str, vdev: String, inject: u64) -> Node {
    let eal_args = format!(
        "--no-huge -m 512 --no-pci --no-telemetry --file-prefix {prefix} --lcores 0@({}) \
         --log-level=4 --vdev={vdev}",
        allowed_cpus()
    );
    let cfg = UserspaceConfig::new(
        Backend::Dpdk(DpdkConfig {
            eal_args: eal_args.split_whitespace().map(str::to_owned).collect(),
            port: 0,
            workers: 1,
            mtu: None,
        }),
        ip,
        24,
    );
    NodeBuilder::new(TransportKind::Dpdk, EntityType::OSD, num)
        .policy(Policy::lossless_peer(0))
        .inject(inject)
        .options(|o| {
            o.initial_backoff = Duration::from_millis(20);
            o.max_backoff = Duration::from_millis(200);
            // Injected failures close sockets, they never lose bytes silently: a
            // handshake that stalls is a bug, which the ready timeout must not hide.
            o.ready_timeout = Duration::from_secs(60);
        })
        .userspace(cfg)
        .start()
}

/// Sends `n` stamped messages of mixed sizes (mostly small, some 200 KB) on `s`.
fn send_stream(s: &mut Stream, n: u64, seed: u64) {
    let mut rng = Rng::new(seed);
    for _ in 0..n {
        let len = if rng.percent(2) {
            200_000
        } else {
            rng.below(8192) as usize
        };
        assert!(s.send(len), "the session closed");
    }
}

/// The only stream a recorder has seen (the peer's), if any.
fn only_stream(n: &Node) -> Option<StreamLog> {
    let s = n.rec.streams();
    assert!(s.len() <= 1, "{}: streams {:?}", n.rec.name, s.keys());
    s.values().next().cloned()
}

#[test]
fn lossless_sessions_survive_injected_failures_across_processes() {
    if let Ok(sock) = std::env::var(CHILD_ENV) {
        child(&sock);
        return;
    }
    if !root() {
        return;
    }
    let _g = begin_exclusive("dpdk_vhost scenario", LIMIT);
    let dir = std::env::temp_dir().join(format!("msgr-vhs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _dir = RemoveDir(dir.clone());
    let sock = dir.join("vhost.sock");
    let prefix = format!("msgr-vhs-a{}", std::process::id());
    let _rt = RuntimeDir::new(&prefix);
    let _rt_child = RuntimeDir::new(&format!("msgr-vhs-b{}", std::process::id()));

    // virtio-user in server mode waits in its probe until the vhost side connects, and
    // our vhost side (client mode) retries every second: start both, ours in this thread.
    let mut peer = Peer::spawn(&sock);
    let a = node(
        1,
        Ipv4Addr::new(10, 81, 0, 1),
        &prefix,
        format!("net_vhost0,iface={},client=1,queues=1", sock.display()),
        40,
    );
    let b_addr: EntityAddr = peer.expect("READY").parse().expect("the child's address");
    let ab = a.m.connect_to(b_addr, EntityType::OSD);
    peer.say(&format!("PEER {}", a.addr));
    let mut up = Stream::new(ab);
    send_stream(&mut up, N, 4);
    peer.expect("SENT");
    wait_for_detail(
        "the child's stream",
        STEP * 4,
        || only_stream(&a).is_some_and(|s| s.seqs.len() as u64 >= N),
        || {
            format!(
                "got {:?}\n{}",
                only_stream(&a).map(|s| s.seqs.len()),
                a.describe()
            )
        },
    );
    a.rec.assert_clean();
    only_stream(&a).unwrap().exactly(N).unwrap();
    peer.say("REPORT");
    let report = peer.expect("GOT");
    assert_eq!(report, format!("{N} ok"), "the child's view of our stream");
    let injected = a.perf("injected_failures");
    let reconnects = a.perf("reconnects") + a.perf("accepts");
    assert!(
        injected > 0 && reconnects > 1,
        "failures were injected and survived: injected {injected}, reconnects+accepts {reconnects}"
    );
    eprintln!(
        "dpdk_vhost: {N} messages each way across processes; injected failures here {injected}, \
         reconnects+accepts {reconnects}"
    );
    peer.say("BYE");
    peer.wait_success();
    shutdown_all(&[&a]);
}

/// True if root; otherwise the skip line (or a failure under MSGR_REQUIRE_INTEROP=1).
fn root() -> bool {
    let euid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        });
    if euid.as_deref() == Some("0") {
        return true;
    }
    let required = std::env::var("MSGR_REQUIRE_INTEROP").is_ok_and(|v| v == "1");
    assert!(!required, "dpdk_vhost: needs root (MSGR_REQUIRE_INTEROP=1)");
    println!("SKIPPED dpdk_vhost: needs root for EAL's runtime directory");
    false
}

/// The child process, driven line by line.
struct Peer {
    child: Child,
    lines: Receiver<String>,
}

impl Peer {
    fn spawn(sock: &std::path::Path) -> Self {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new(exe)
            .args([
                "--exact",
                "lossless_sessions_survive_injected_failures_across_processes",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, sock)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Self { child, lines: rx }
    }

    /// Waits for a line with `WORD rest` and returns `rest` (libtest's own lines are
    /// skipped).
    fn expect(&mut self, word: &str) -> String {
        let deadline = std::time::Instant::now() + STEP * 2;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    // libtest may have started the line ("test NAME ... ").
                    let key = format!("{word} ");
                    if let Some(at) = l.find(&key) {
                        return l[at + key.len()..].to_owned();
                    }
                    if l.ends_with(word) {
                        return String::new();
                    }
                }
                Err(e) => panic!(
                    "the child did not say {word} ({e}); exit: {:?}",
                    self.child.try_wait()
                ),
            }
        }
    }

    fn say(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap();
    }

    fn wait_success(&mut self) {
        let deadline = std::time::Instant::now() + STEP;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(st.success(), "the child exited with {st}");
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the child did not exit"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

struct RemoveDir(std::path::PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The child's side: a lossless OSD on virtio-user that records what it gets, sends its
/// own stream when told where to, and reports.
fn child(sock: &str) {
    // A watchdog in case the parent disappears without a BYE.
    std::thread::spawn(|| {
        std::thread::sleep(LIMIT);
        eprintln!("dpdk_vhost child: watchdog: exiting");
        std::process::exit(3);
    });
    let prefix = format!("msgr-vhs-b{}", std::os::unix::process::parent_id());
    let b = node(
        2,
        Ipv4Addr::new(10, 81, 0, 2),
        &prefix,
        format!("net_virtio_user0,path={sock},server=1,queues=1"),
        55,
    );
    println!("READY {}", b.addr);
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut next = || lines.next().and_then(Result::ok).unwrap_or_default();
    let peer = next();
    let a_addr: EntityAddr = peer
        .strip_prefix("PEER ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("child: expected PEER, got {peer:?}"));
    // Our stream goes on the session the parent opened (as connect_to finds it once it
    // is accepted), not on a racing connection of our own.
    wait_for("the parent's session", STEP, || {
        !b.rec.accepted().is_empty()
    });
    let ba = b.m.connect_to(a_addr, EntityType::OSD);
    assert_eq!(
        Some(ba.id()),
        b.rec.accepted().first().copied(),
        "child: connect_to finds the accepted session"
    );
    let mut down = Stream::new(ba);
    send_stream(&mut down, N, 5);
    println!("SENT");
    let cmd = next();
    assert_eq!(cmd, "REPORT", "child: expected REPORT");
    wait_for("the parent's stream", STEP * 4, || {
        only_stream(&b).is_some_and(|s| s.seqs.len() as u64 >= N)
    });
    let check = match (
        b.rec.errors().is_empty(),
        only_stream(&b).map(|s| s.exactly(N)),
    ) {
        (true, Some(Ok(()))) => "ok".to_owned(),
        (clean, r) => format!("clean={clean} {r:?}"),
    };
    println!("GOT {N} {check}");
    let bye = next();
    assert_eq!(bye, "BYE", "child: expected BYE");
    shutdown_all(&[&b]);
}
