//! `bench stack --link vhost`: the stack over a real DPDK link between two processes, one
//! worker each, beside testpmd on the same link ([`crate::testpmd`]).
//!
//! - Side A is this process: `net_vhost0,iface=SOCK,client=1`, 10.78.0.1, the TCP client.
//! - Side B is this binary again (`bench stack-peer`, hidden): `net_virtio_user0,path=SOCK,
//!   server=1`, 10.78.0.2, listening on an echo port and a sink port. Its EAL init waits in
//!   accept() until A connects (the order-independent arrangement of
//!   dpdk-virtual-links.md §2); A waits for B's socket before its own EAL starts.
//!
//! Each side runs one [`Worker`] on its main lcore, pinned by `--lcores 0@CPU` to a CPU of its
//! own when there are two (A the first allowed CPU, B the second), with the TSC as clock
//! and, by default, busy polling (two busy pollers sharing a CPU collapse to ~125 round trips
//! per second, §7: with one CPU the default is `yield:0`, a yield on every empty turn).
//! Measured, after a 0.3 s warm-up each:
//! - echo: 64 B sent by A, echoed by B, one at a time on one connection: every round trip
//!   timed with the TSC into an HDR histogram (p50/p99), and round trips per second;
//! - bulk A→B on a second connection, B reading and discarding: bytes B acknowledged per
//!   second (A's sent − A's unacknowledged), and A's frames per second.
//!
//! Shutdown: A sends `stop` on B's stdin, B stops polling and reports its counters; A closes
//! its port and sends `bye`; B closes its port, cleans up EAL and exits. Every wait is
//! bounded; B is killed if anything fails and has a watchdog of its own; both runtime
//! directories, the socket and its directory go.

use std::io::BufRead;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use smoltcp::time::Instant as StackInstant;
use smoltcp::wire::{EthernetAddress, IpAddress, IpEndpoint, Ipv4Address, Ipv4Cidr};
use stack::dpdk::{tsc, Eal, EthPort, Mempool, PortConfig, Started};
use stack::dpdkport::stack_pool;
use stack::l2::Neighbors;
use stack::netstack::StackError;
use stack::peer::PeerProcess;
use stack::worker::{Clock, Handler, TscClock};
use stack::{ConnId, DpdkPort, IdlePolicy, NetStack, StackConfig, StackEvent, Worker};

use crate::dpdklink::{print_table, settle, Cpus, Row, RuntimeDir, TempDir};

const ECHO_PORT: u16 = 7301;
const SINK_PORT: u16 = 7302;
const IP_A: Ipv4Address = Ipv4Address::new(10, 78, 0, 1);
const IP_B: Ipv4Address = Ipv4Address::new(10, 78, 0, 2);
/// Used when a port reports no usable MAC address.
const MAC_A: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0x78, 0x01]);
const MAC_B: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0x78, 0x02]);
/// B's status lines on its stdout start with this.
const MARK: &str = "stack-peer:";
const DESCS: u16 = 1024;
const POOL_CACHE: u32 = 256;
const MSG: usize = 64;
const WARMUP_S: f64 = 0.3;
/// Setup steps (socket, link, ready, exit) and a handshake.
const STEP_LIMIT: Duration = Duration::from_secs(20);
const CONNECT_LIMIT_S: u64 = 10;

/// `busy`, `yield:SPINS`, `sleep:SPINS:MAX_US`: what [`IdlePolicy`]'s parser reads back.
fn idle_arg(p: IdlePolicy) -> String {
    match p {
        IdlePolicy::BusyPoll => "busy".into(),
        IdlePolicy::Yield { spins } => format!("yield:{spins}"),
        IdlePolicy::Sleep { spins, max } => format!("sleep:{spins}:{}", max.total_micros()),
    }
}

/// What the stack measured.
struct Figures {
    echo: Histogram<u64>,
    round_trips_s: f64,
    bulk_mb_s: f64,
    bulk_frames_s: f64,
}

/// `bench stack --link vhost`.
pub(crate) fn run(
    seconds: f64,
    idle: Option<IdlePolicy>,
    with_testpmd: bool,
    offload: bool,
) -> Result<(), String> {
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 600.0) {
        return Err(format!("--seconds {seconds}: want 0 < seconds <= 600"));
    }
    let cpus = Cpus::pick();
    crate::testpmd::note_cpus(cpus);
    // Sharing a CPU, a worker that yields at once on an empty turn lets the other run: 0.29 M
    // round trips/s measured on one CPU, against 33 k with `yield:200` (each side spinning
    // 200 empty turns first) and ~125 busy polling.
    let idle = idle.unwrap_or(if cpus.shared() {
        IdlePolicy::Yield { spins: 0 }
    } else {
        IdlePolicy::BusyPoll
    });
    if cpus.shared() && idle == IdlePolicy::BusyPoll {
        eprintln!("bench: warning: --idle busy with both sides on one CPU (expect ~8 ms RTTs)");
    }
    let mut rows = Vec::new();
    if with_testpmd {
        rows = crate::testpmd::rows(seconds.ceil() as u64, cpus);
    }
    let (row, result) = stack_row(seconds, idle, cpus, offload);
    rows.push(row);
    print_table(&rows);
    let n = result?;
    out!(
        "(stack: RTT percentiles of {n} round trips, TSC-timed; bulk = TCP payload B \
         acknowledged; testpmd: medians of 1 s Rx-pps samples, RTT = 1 / rate, MB/s of frames)"
    );
    Ok(())
}

/// The bare stack's row (echo round trips, bulk A->B) over vhost-user: its figures and the
/// number of round trips timed, or the row (marked skipped) and why it failed.
pub(crate) fn stack_row(
    seconds: f64,
    idle: IdlePolicy,
    cpus: Cpus,
    offload: bool,
) -> (Row, Result<u64, String>) {
    let load = settle(Duration::from_secs(15));
    eprintln!(
        "bench: stack over vhost-user, idle {}, {seconds} s per phase...",
        idle_arg(idle)
    );
    let mut row = Row {
        link: "vhost".into(),
        path: format!(
            "stack, 1 worker/side, idle {}, checksums {}",
            idle_arg(idle),
            if offload { "offloaded" } else { "in software" }
        ),
        load,
        ..Row::default()
    };
    match stack_vhost(seconds, idle, cpus, offload) {
        Ok(f) => {
            let us = |q: f64| f.echo.value_at_quantile(q) as f64 / 1000.0;
            row.rtt_mean_us = Some(f.echo.mean() / 1000.0);
            row.p50_us = Some(us(0.5));
            row.p99_us = Some(us(0.99));
            row.round_trips_s = Some(f.round_trips_s);
            row.bulk = Some(format!(
                "{:.0} MB/s, {:.2} Mpps",
                f.bulk_mb_s,
                f.bulk_frames_s / 1e6
            ));
            (row, Ok(f.echo.len()))
        }
        Err(e) => {
            row.skipped = Some(e.clone());
            (row, Err(e))
        }
    }
}

fn stack_vhost(
    seconds: f64,
    idle: IdlePolicy,
    cpus: Cpus,
    offload: bool,
) -> Result<Figures, String> {
    let pid = std::process::id();
    // Declared first, dropped last: after B is gone and both runtime directories.
    let tmp = TempDir::create("vhost")?;
    let sock = tmp.path.join("vhost.sock");
    // B first: its virtio-user server creates the socket (and waits in accept()).
    let watchdog = 2.0 * (seconds + WARMUP_S) + 90.0;
    let mut peer = spawn_peer(&sock, cpus.b, idle, watchdog, offload)?;
    peer.wait_socket(&sock, STEP_LIMIT)?;

    let prefix = format!("msgr-bench-a-{pid}");
    let mut runtime = RuntimeDir::new(&prefix);
    let vdev = format!(
        "--vdev=net_vhost0,iface={},client=1,queues=1",
        sock.display()
    );
    let args = eal_args(&prefix, cpus.a, &vdev);
    let eal = Eal::init(&args).map_err(|e| {
        format!(
            "EAL did not start in side A: {e} (args: {})",
            args.join(" ")
        )
    })?;
    runtime.dir = Some(eal.runtime_dir());
    match measure(&eal, &mut peer, seconds, idle, offload) {
        Ok(f) => {
            eal.cleanup()
                .map_err(|e| format!("A: rte_eal_cleanup: {e}"))?;
            Ok(f)
        }
        Err(e) => {
            // B killed first, then A's EAL.
            drop(peer);
            drop(eal);
            Err(e)
        }
    }
}

/// Side A's events: which connections came up or went.
#[derive(Default)]
struct Events {
    connected: Vec<ConnId>,
    closed: Vec<ConnId>,
}

impl<P: stack::Port> Handler<P> for Events {
    fn event(&mut self, _stack: &mut NetStack<P>, ev: StackEvent, _now: StackInstant) {
        match ev {
            StackEvent::Connected(c) => self.connected.push(c),
            StackEvent::Closed(c) | StackEvent::Refused(c) => self.closed.push(c),
            _ => {}
        }
    }
}

type NodeA<'p, 'a> = Worker<DpdkPort<'p, 'a>, Events, TscClock>;

/// Bounds a loop of worker steps: checked every step, it reads the TSC and, every 20 ms,
/// looks at the deadline and whether B still runs.
struct Guard {
    what: &'static str,
    hz: u64,
    end: u64,
    next: u64,
}

impl Guard {
    fn new(what: &'static str, hz: u64, limit_s: f64) -> Self {
        let now = tsc();
        Self {
            what,
            hz,
            end: now + (limit_s * hz as f64) as u64,
            next: now,
        }
    }

    fn check(&mut self, peer: &mut PeerProcess, conn: ConnId, ev: &Events) -> Result<(), String> {
        let now = tsc();
        if now < self.next {
            return Ok(());
        }
        self.next = now + self.hz / 50;
        if now > self.end {
            return Err(format!("{}: not done in time", self.what));
        }
        if ev.closed.contains(&conn) {
            return Err(format!("{}: the connection closed", self.what));
        }
        peer.check_running(self.what)
    }
}

fn err(what: &str) -> impl Fn(StackError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Everything between A's EAL init and cleanup.
fn measure(
    eal: &Eal,
    peer: &mut PeerProcess,
    seconds: f64,
    idle: IdlePolicy,
    offload: bool,
) -> Result<Figures, String> {
    // The vhost PMD copies each received frame into an mbuf of this pool and frees sent ones
    // at once: the pool holds what the stack holds (see tests/dpdk_vhost.rs).
    let pool =
        stack_pool(eal, "bench_a", 0, 0, POOL_CACHE).map_err(|e| format!("A: mempool: {e}"))?;
    let port = start_port(eal, &pool, "net_vhost", offload)?;
    wait_link(&port, Some(peer))?;
    let ready = peer.wait_line("ready", STEP_LIMIT)?;
    eprintln!("bench: A: port up; B: {ready}");
    let mac = port_mac(&port, MAC_A)?;
    let dp = DpdkPort::new(&port, 0, &pool).map_err(|e| format!("A: queue pair: {e}"))?;
    let hz = eal.tsc_hz();
    let clock = TscClock::new(hz);
    let stack = NetStack::new(
        StackConfig::new(mac, Ipv4Cidr::new(IP_A, 24)),
        dp,
        Neighbors::new(),
        clock.now(),
    );
    let mut w = Worker::new(stack, Events::default(), clock, idle);

    let echo_conn = connect(&mut w, peer, ECHO_PORT, hz)?;
    let (echo, round_trips_s) = echo_phase(&mut w, peer, echo_conn, seconds, hz)?;
    let bulk_conn = connect(&mut w, peer, SINK_PORT, hz)?;
    let (bulk_mb_s, bulk_frames_s) = bulk_phase(&mut w, peer, bulk_conn, seconds, hz)?;

    // Nobody polls while a port goes: B stops polling (and reports), then A closes its port
    // (the vhost back end lets go of the socket, so it does not try to reconnect once B's
    // socket is gone), then B closes its own and exits.
    peer.send_line("stop")?;
    let fin = peer.wait_line("final", STEP_LIMIT)?;
    eprintln!("bench: B: {fin}");
    eprintln!(
        "bench: A: worker {:?}; stack {:?}; queue {:?}",
        w.stats(),
        w.stack.stats(),
        w.stack.port().stats()
    );
    drop(w);
    let port = port.stop().map_err(|e| format!("A: stop port: {e}"))?;
    drop(port);
    peer.send_line("bye")?;
    let status = peer.wait_exit(STEP_LIMIT)?;
    if !status.success() {
        return Err(format!("B failed ({status}): {}", peer.tail()));
    }
    Ok(Figures {
        echo,
        round_trips_s,
        bulk_mb_s,
        bulk_frames_s,
    })
}

fn connect(
    w: &mut NodeA<'_, '_>,
    peer: &mut PeerProcess,
    port: u16,
    hz: u64,
) -> Result<ConnId, String> {
    let c = w
        .stack
        .connect(IpEndpoint::new(IpAddress::Ipv4(IP_B), port))
        .map_err(err("connect"))?;
    let mut guard = Guard::new("ARP + connect", hz, CONNECT_LIMIT_S as f64);
    while !w.handler.connected.contains(&c) {
        w.step();
        guard.check(peer, c, &w.handler)?;
    }
    Ok(c)
}

/// 64 B round trips, one at a time: the histogram (ns) and round trips per second.
fn echo_phase(
    w: &mut NodeA<'_, '_>,
    peer: &mut PeerProcess,
    c: ConnId,
    seconds: f64,
    hz: u64,
) -> Result<(Histogram<u64>, f64), String> {
    let mut h =
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| e.to_string())?;
    let msg = [0x5au8; MSG];
    let mut buf = [0u8; 2048];
    let ticks = |s: f64| (s * hz as f64) as u64;
    let warm_end = tsc() + ticks(WARMUP_S);
    let end = warm_end + ticks(seconds);
    let mut guard = Guard::new("echo", hz, WARMUP_S + seconds + 5.0);
    let (mut first, mut last) = (None, 0);
    loop {
        let t0 = tsc();
        if t0 >= end {
            break;
        }
        if w.stack.send(c, &msg).map_err(err("echo send"))? != MSG {
            return Err("echo: A's send buffer is full".into());
        }
        let mut got = 0;
        while got < MSG {
            w.step();
            loop {
                let k = w.stack.recv(c, &mut buf).map_err(err("echo recv"))?;
                if k == 0 {
                    break;
                }
                got += k;
            }
            guard.check(peer, c, &w.handler)?;
        }
        let t1 = tsc();
        if got != MSG {
            return Err(format!("echo: {got} bytes came back for {MSG}"));
        }
        if t0 >= warm_end {
            h.record((u128::from(t1 - t0) * 1_000_000_000 / u128::from(hz)) as u64)
                .map_err(|e| e.to_string())?;
            first.get_or_insert(t0);
            last = t1;
        }
    }
    let first = first.ok_or("echo: no round trip completed")?;
    let dt = (last - first) as f64 / hz as f64;
    let rate = h.len() as f64 / dt;
    Ok((h, rate))
}

/// Bulk A→B: payload bytes B acknowledged per second (MB/s) and A's frames per second.
fn bulk_phase(
    w: &mut NodeA<'_, '_>,
    peer: &mut PeerProcess,
    c: ConnId,
    seconds: f64,
    hz: u64,
) -> Result<(f64, f64), String> {
    let chunk = vec![0xa5u8; 64 << 10];
    let ticks = |s: f64| (s * hz as f64) as u64;
    let warm_end = tsc() + ticks(WARMUP_S);
    let end = warm_end + ticks(seconds);
    let mut guard = Guard::new("bulk", hz, WARMUP_S + seconds + 5.0);
    let mut sent = 0u64;
    let acked = |w: &NodeA<'_, '_>, sent: u64| -> Result<u64, String> {
        let queued = w.stack.send_queue(c).map_err(err("bulk"))?;
        Ok(sent - queued as u64)
    };
    let mut start = None;
    loop {
        let now = tsc();
        if start.is_none() && now >= warm_end {
            start = Some((now, acked(w, sent)?, w.stack.stats().tx_frames));
        }
        if now >= end {
            break;
        }
        sent += w.stack.send(c, &chunk).map_err(err("bulk send"))? as u64;
        w.step();
        guard.check(peer, c, &w.handler)?;
    }
    let t1 = tsc();
    let (t0, acked0, frames0) = start.ok_or("bulk: no measurement window")?;
    let dt = (t1 - t0) as f64 / hz as f64;
    let bytes = acked(w, sent)? - acked0;
    let frames = w.stack.stats().tx_frames - frames0;
    Ok((bytes as f64 / dt / 1e6, frames as f64 / dt))
}

// ---------------------------------------------------------------------------------------
// Side B: `bench stack-peer`.
// ---------------------------------------------------------------------------------------

/// Prints one status line for A.
fn say(msg: &str) {
    out!("{MARK} {msg}");
}

/// Side B's main: EAL with virtio-user (server), echo and sink servers until A says `stop`.
pub(crate) fn peer_main(
    socket: &Path,
    cpu: u32,
    idle: IdlePolicy,
    watchdog_s: f64,
    offload: bool,
) -> Result<(), String> {
    // A vanished without killing us: do not linger (A removes our runtime directory).
    thread::spawn(move || {
        thread::sleep(Duration::from_secs_f64(watchdog_s.clamp(1.0, 3600.0)));
        say("error: watchdog: giving up");
        std::process::exit(3);
    });
    let bye = stdin_lines();
    let prefix = format!("msgr-bench-b-{}", std::process::id());
    let mut runtime = RuntimeDir::new(&prefix);
    let vdev = format!(
        "--vdev=net_virtio_user0,path={},server=1,queues=1",
        socket.display()
    );
    let args = eal_args(&prefix, cpu, &vdev);
    let eal = match Eal::init(&args) {
        Ok(eal) => eal,
        Err(e) => {
            let msg = format!(
                "EAL did not start in side B: {e} (args: {})",
                args.join(" ")
            );
            say(&format!("error: {msg}"));
            return Err(msg);
        }
    };
    runtime.dir = Some(eal.runtime_dir());
    let r = serve(&eal, &bye, idle, offload);
    if let Err(e) = &r {
        say(&format!("error: {e}"));
    }
    let cleaned = eal
        .cleanup()
        .map_err(|e| format!("B: rte_eal_cleanup: {e}"));
    r.and(cleaned)?;
    say("done");
    Ok(())
}

/// Lines from stdin (A's), through a reader thread.
fn stdin_lines() -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// B's application: echoes what arrives on the echo port, discards what arrives on the sink.
#[derive(Default)]
struct Serve {
    echo: Vec<(ConnId, Vec<u8>)>,
    sink: Vec<ConnId>,
    echoed: u64,
    sunk: u64,
    buf: Vec<u8>,
}

impl<P: stack::Port> Handler<P> for Serve {
    fn event(&mut self, _stack: &mut NetStack<P>, ev: StackEvent, _now: StackInstant) {
        match ev {
            StackEvent::Accepted {
                conn, local_port, ..
            } => {
                if local_port == ECHO_PORT {
                    self.echo.push((conn, Vec::new()));
                } else {
                    self.sink.push(conn);
                }
            }
            StackEvent::Closed(c) | StackEvent::Refused(c) => {
                self.echo.retain(|(e, _)| *e != c);
                self.sink.retain(|s| *s != c);
            }
            _ => {}
        }
    }

    fn turn(&mut self, stack: &mut NetStack<P>, _now: StackInstant) -> bool {
        let Self {
            echo,
            sink,
            echoed,
            sunk,
            buf,
        } = self;
        if buf.is_empty() {
            buf.resize(64 << 10, 0);
        }
        let mut did = false;
        for (c, pending) in echo.iter_mut() {
            while let Ok(n @ 1..) = stack.recv(*c, buf) {
                pending.extend_from_slice(&buf[..n]);
            }
            if !pending.is_empty() {
                if let Ok(n @ 1..) = stack.send(*c, pending) {
                    pending.drain(..n);
                    *echoed += n as u64;
                    did = true;
                }
            }
        }
        for c in sink.iter() {
            while let Ok(n @ 1..) = stack.recv(*c, buf) {
                *sunk += n as u64;
                did = true;
            }
        }
        did
    }
}

/// Everything between B's EAL init and cleanup.
fn serve(eal: &Eal, bye: &Receiver<String>, idle: IdlePolicy, offload: bool) -> Result<(), String> {
    // virtio-user keeps mbufs of this pool in its RX ring and sent ones in its TX ring until
    // it reclaims them, besides what the stack holds.
    let pool = stack_pool(
        eal,
        "bench_b",
        u32::from(DESCS),
        u32::from(DESCS),
        POOL_CACHE,
    )
    .map_err(|e| format!("B: mempool: {e}"))?;
    let port = start_port(eal, &pool, "net_virtio_user", offload)?;
    wait_link(&port, None)?;
    let mac = port_mac(&port, MAC_B)?;
    let dp = DpdkPort::new(&port, 0, &pool).map_err(|e| format!("B: queue pair: {e}"))?;
    let hz = eal.tsc_hz();
    let clock = TscClock::new(hz);
    let mut cfg = StackConfig::new(mac, Ipv4Cidr::new(IP_B, 24));
    cfg.seed ^= 0xff;
    let mut stack = NetStack::new(cfg, dp, Neighbors::new(), clock.now());
    for p in [ECHO_PORT, SINK_PORT] {
        stack.listen(p).map_err(err("B: listen"))?;
    }
    let mut w = Worker::new(stack, Serve::default(), clock, idle);
    say(&format!(
        "ready: {} at {mac}, idle {}",
        IP_B,
        idle_arg(idle)
    ));
    let every = hz / 100;
    let mut next = tsc() + every;
    loop {
        w.step();
        let now = tsc();
        if now < next {
            continue;
        }
        next = now + every;
        match bye.try_recv() {
            Ok(l) if l == "stop" => break,
            Ok(_) | Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => return Err("B: stdin closed: A is gone".into()),
        }
    }
    let ps = port.stats().map_err(|e| format!("B: port stats: {e}"))?;
    say(&format!(
        "final: echoed {} B, sank {} B; port rx={} tx={} missed={}; stack {:?}",
        w.handler.echoed,
        w.handler.sunk,
        ps.ipackets,
        ps.opackets,
        ps.imissed,
        w.stack.stats()
    ));
    // A closes its port now; B's goes after A's `bye`.
    match bye.recv_timeout(STEP_LIMIT) {
        Ok(l) if l == "bye" => {}
        other => return Err(format!("B: no bye from A in {STEP_LIMIT:?}: {other:?}")),
    }
    drop(w);
    port.stop().map_err(|e| format!("B: stop port: {e}"))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Both.
// ---------------------------------------------------------------------------------------

/// EAL arguments: no hugepages (EAL backs its memory with one memfd, which virtio-user
/// passes to the vhost back end), no PCI, no telemetry, our own runtime-file prefix, the
/// main lcore (the worker) pinned to `cpu`, one vdev.
fn eal_args(prefix: &str, cpu: u32, vdev: &str) -> Vec<String> {
    [
        "msgr-bench",
        "--no-huge",
        "-m",
        "512",
        "--no-pci",
        "--no-telemetry",
        "--file-prefix",
        prefix,
        "--lcores",
        &format!("0@{cpu}"),
        "--log-level",
        "warning",
        vdev,
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

/// Opens port 0 (the vdev), checks its driver, one queue pair, starts it; with `offload`
/// the checksum offloads the device has (virtio's TCP checksum), else none.
fn start_port<'a>(
    eal: &'a Eal,
    pool: &'a Mempool<'a>,
    driver: &str,
    offload: bool,
) -> Result<EthPort<'a, Started>, String> {
    let port = EthPort::open(eal, 0).map_err(|e| format!("open port 0: {e}"))?;
    let info = port.dev_info().clone();
    if info.driver != driver {
        return Err(format!("port 0 is {}, not {driver}", info.driver));
    }
    let mut want = PortConfig::new(1, 1);
    if !offload {
        (want.rx_offloads, want.tx_offloads) = (0, 0);
    }
    let mut port = port
        .configure(&want)
        .map_err(|e| format!("{driver}: configure: {e}"))?;
    port.rx_queue_setup(0, DESCS, pool)
        .map_err(|e| format!("{driver}: rx queue: {e}"))?;
    port.tx_queue_setup(0, DESCS)
        .map_err(|e| format!("{driver}: tx queue: {e}"))?;
    port.start().map_err(|e| format!("{driver}: start: {e}"))
}

/// Waits (bounded) for the port's link; with `peer` (A), fails early if B exits.
fn wait_link(
    port: &EthPort<'_, Started>,
    mut peer: Option<&mut PeerProcess>,
) -> Result<(), String> {
    let start = Instant::now();
    loop {
        if port.link().map_err(|e| format!("link: {e}"))?.up {
            return Ok(());
        }
        if let Some(p) = peer.as_deref_mut() {
            p.check_running("waiting for link up")?;
        }
        if start.elapsed() > STEP_LIMIT {
            return Err(format!("port {}: link not up in {STEP_LIMIT:?}", port.id()));
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// The port's MAC address if it is a usable unicast one, else `fallback`.
fn port_mac(
    port: &EthPort<'_, Started>,
    fallback: EthernetAddress,
) -> Result<EthernetAddress, String> {
    let mac = EthernetAddress(port.mac_addr().map_err(|e| format!("mac: {e}"))?);
    Ok(if mac.is_unicast() && mac != EthernetAddress([0; 6]) {
        mac
    } else {
        fallback
    })
}

/// Starts side B (`bench stack-peer`): killed (if still running) and reaped when dropped,
/// then its runtime directory removed.
fn spawn_peer(
    sock: &Path,
    cpu: u32,
    idle: IdlePolicy,
    watchdog_s: f64,
    offload: bool,
) -> Result<PeerProcess, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("stack-peer")
        .arg("--socket")
        .arg(sock)
        .args(["--cpu", &cpu.to_string()])
        .args(["--idle", &idle_arg(idle)])
        .args(["--watchdog", &format!("{watchdog_s:.0}")])
        .args(["--checksum-offload", if offload { "on" } else { "off" }]);
    PeerProcess::spawn(cmd, "side B", MARK, |pid| format!("msgr-bench-b-{pid}"))
        .map(|p| p.abort_on("error"))
        .map_err(|e| format!("spawn side B: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_policies_round_trip_through_the_peer_argument() {
        for p in [
            IdlePolicy::BusyPoll,
            IdlePolicy::Yield { spins: 7 },
            IdlePolicy::default(),
        ] {
            assert_eq!(idle_arg(p).parse::<IdlePolicy>(), Ok(p));
        }
    }
}
