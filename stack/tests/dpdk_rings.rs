//! Two stacks talking TCP through real DPDK ports: two ring-PMD ports cross-linked with
//! `rte_eth_from_rings` (A's TX ring is B's RX ring and back), one `NetStack` on each, in one
//! process, EAL without hugepages or PCI. One lcore polls both stacks in turn; time is real
//! (the TSC, converted once per turn). Checked: ARP and the handshake, 4 MiB A->B and 1 MiB
//! B->A at the same time byte for byte, 50 small echo round trips, a clean close on both
//! sides, port counters that agree with each other and with the stacks, no mbuf leaked, and
//! an orderly stop, close and EAL cleanup. Runtime files go away, also when the test fails.
//!
//! EAL initialises once per process and every test file is its own process, so this file
//! holds exactly one `#[test]`. If EAL cannot start here, the test prints
//! `SKIPPED dpdk_rings: <reason>` and passes, unless `MSGR_REQUIRE_INTEROP=1`, where that is
//! a failure. EAL never probes PCI devices (`--no-pci`); no frame leaves the process.

mod common;
#[path = "common/eal.rs"]
mod eal_common;

use std::fs;

use common::pattern;
use eal_common::{check_same, RuntimeDir};

use dpdk_sys as sys;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, IpAddress, IpEndpoint, Ipv4Address, Ipv4Cidr};
use stack::dpdk::{
    self, errno, Eal, EthPort, Mempool, PoolSizing, PortConfig, RingLink, Started, Unconfigured,
};
use stack::l2::Neighbors;
use stack::{ConnId, DpdkPort, NetStack, StackConfig, StackEvent};

const PORT: u16 = 6800;
const STREAM_AB: usize = 4 << 20;
const STREAM_BA: usize = 1 << 20;
const ECHOES: usize = 50;
/// Slots per ring of the link (each holds RING_SLOTS - 1 frames).
const RING_SLOTS: u32 = 1024;
const DESCS: u16 = 1024;
const POOL_CACHE: u32 = 256;
/// Used when a ring port reports no usable MAC address.
const MAC_A: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0xa]);
const MAC_B: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0xb]);

#[test]
fn dpdk_rings() {
    let prefix = format!("stack-test-{}", std::process::id());
    // Declared before the EAL guard, so dropped after rte_eal_cleanup (also on panic).
    let mut runtime = RuntimeDir::new(&prefix);
    let args = eal_args(&prefix);
    let eal = match Eal::init(&args) {
        Ok(eal) => eal,
        Err(e) => {
            eal_common::skip(
                "dpdk_rings",
                &format!("EAL did not start: {e}; args {args:?}"),
            );
            return;
        }
    };
    runtime.dir = Some(eal.runtime_dir());
    let again = Eal::init(&args).expect_err("a second EAL is refused");
    assert_eq!(again.errno, errno::EALREADY, "{again}");

    run(&eal);

    eal.cleanup().expect("rte_eal_cleanup");
    let dir = runtime.dir.clone().expect("runtime dir");
    drop(runtime);
    assert!(!dir.exists(), "{} removed", dir.display());
}

/// Everything between EAL init and cleanup; whatever it made is dropped (ports stopped and
/// closed, rings and pools freed) before it returns or unwinds.
fn run(eal: &Eal) {
    let clock = Clock::new(eal);
    let lcore = eal.lcore_id();
    assert_eq!(lcore, 0, "the test thread is the main lcore");

    // Each pool holds its stack's transmit frames wherever they are: queued in the stack
    // (tx_queue_max 1024, ARP waits 256, a receive burst 32), inside the ring link on the
    // way to the peer, in the lcore cache; plus spare.
    let sizing = PoolSizing {
        rx_descs: RING_SLOTS,
        tx_descs: 0,
        in_flight: 1024 + 256 + 32,
        lcores: 1,
        cache: POOL_CACHE,
        retransmit: 512,
    };
    let n = sizing.mbufs();
    let room = dpdk::MBUF_DEFAULT_DATA_ROOM;
    let socket = eal.socket_id();
    let pool_a =
        Mempool::pktmbuf(eal, "stack_test_a", n, POOL_CACHE, room, socket).expect("mempool a");
    let pool_b =
        Mempool::pktmbuf(eal, "stack_test_b", n, POOL_CACHE, room, socket).expect("mempool b");
    assert_eq!((pool_a.size(), pool_a.data_room()), (n, room));
    let base = (pool_a.in_use(), pool_b.in_use());

    let link = RingLink::new(eal, "stk", RING_SLOTS).expect("ring link");
    let (pa, pb) = link.ports().expect("ring ports");
    let again = link.ports().expect_err("ports are made once");
    assert_eq!(again.errno, errno::EBUSY);
    assert_eq!(eal.port_count(), 2, "the two ring ports and nothing else");
    let pa = start_port(pa, &pool_a);
    let pb = start_port(pb, &pool_b);
    assert!(pa.link().expect("link a").up && pb.link().expect("link b").up);

    // No RSS on ring ports: no redirection table to program, one queue in the model.
    let e = pa.set_reta(&[0]).expect_err("no RSS, no RETA");
    assert_eq!(e.errno, errno::ENOTSUP, "{e}");
    assert_eq!(pa.steering(None), stack::rss::Steering::single());
    let mac_a = port_mac(&pa, MAC_A);
    let mac_b = port_mac(&pb, MAC_B);
    let port_a = DpdkPort::new(&pa, 0, &pool_a).expect("queue pair a");
    let port_b = DpdkPort::new(&pb, 0, &pool_b).expect("queue pair b");
    assert_eq!(pa.rx_queue(0).err().map(|e| e.errno), Some(errno::EBUSY));
    assert_eq!(pa.tx_queue(1).err().map(|e| e.errno), Some(errno::EINVAL));
    eprintln!(
        "ports {} and {} ({}), MACs {mac_a} / {mac_b}, MTU {}, pools of {n} mbufs, lcore {lcore}",
        pa.id(),
        pb.id(),
        pa.dev_info().driver,
        pa.mtu().expect("mtu"),
    );

    let mut net = Net::new(clock, port_a, port_b, mac_a, mac_b);
    exercise(&mut net);

    // Everything delivered, nothing left in the link: the counters must agree.
    net.settle(&link);
    let (sa, sb) = (pa.stats().expect("stats a"), pb.stats().expect("stats b"));
    eprintln!("port A {sa:?}\nport B {sb:?}");
    eprintln!("stack A {:?}\nstack B {:?}", net.a.stats(), net.b.stats());
    eprintln!(
        "queues A {:?}\nqueues B {:?}",
        net.a.port().stats(),
        net.b.port().stats()
    );
    assert_eq!(sa.opackets, sb.ipackets, "A sent = B received");
    assert_eq!(sb.opackets, sa.ipackets, "B sent = A received");
    for s in [sa, sb] {
        assert_eq!((s.imissed, s.ierrors, s.oerrors, s.rx_nombuf), (0, 0, 0, 0));
    }
    for (st, ps, dp) in [
        (net.a.stats(), sa, net.a.port().stats()),
        (net.b.stats(), sb, net.b.port().stats()),
    ] {
        assert_eq!(
            st.tx_frames, ps.opackets,
            "every frame the stack sent left the port"
        );
        assert_eq!(
            st.rx_frames, ps.ipackets,
            "every frame the port got reached the stack"
        );
        assert_eq!(st.tx_no_buffer, 0, "the pool never ran dry");
        assert_eq!((dp.nombuf, dp.too_long, dp.rx_chained), (0, 0, 0));
        assert!(st.rx_frames > 700, "real traffic: {st:?}");
    }

    // Dropping the stacks frees every mbuf they still held; none is anywhere else.
    drop(net);
    assert_eq!(link.in_flight(), (0, 0));
    assert_eq!(
        (pool_a.in_use(), pool_b.in_use()),
        base,
        "every mbuf went back to its pool"
    );

    let pa = pa.stop().expect("stop a");
    let pb = pb.stop().expect("stop b");
    assert!(!pa.link().expect("link a").up, "link down after stop");
    drop((pa, pb)); // close
    assert_eq!(eal.port_count(), 0, "both ports closed");
    assert_eq!(
        (pool_a.in_use(), pool_b.in_use()),
        base,
        "and still none out"
    );
}

/// Configures one queue pair, asking for RSS and checksum offloads the ring PMD does not
/// have (so they must stay off), and starts the port.
fn start_port<'a>(port: EthPort<'a, Unconfigured>, pool: &'a Mempool<'_>) -> EthPort<'a, Started> {
    let info = port.dev_info().clone();
    assert_eq!(info.driver, "net_ring");
    assert!(
        info.max_rx_queues >= 1 && info.max_tx_queues >= 1,
        "{info:?}"
    );
    assert!(!info.supports_rss(), "the ring PMD has no RSS: {info:?}");
    let want = PortConfig {
        rss: true,
        rx_offloads: sys::RTE_ETH_RX_OFFLOAD_CHECKSUM,
        tx_offloads: sys::RTE_ETH_TX_OFFLOAD_IPV4_CKSUM | sys::RTE_ETH_TX_OFFLOAD_TCP_CKSUM,
        ..PortConfig::new(1, 1)
    };
    let mut port = port.configure(&want).expect("configure");
    let got = port.config().clone();
    assert!(
        !got.rss && got.rss_hf == 0,
        "RSS only where supported: {got:?}"
    );
    assert_eq!(
        (got.rx_offloads, got.tx_offloads),
        (0, 0),
        "offloads only where supported"
    );
    let rx = port.rx_queue_setup(0, DESCS, pool).expect("rx queue");
    let tx = port.tx_queue_setup(0, DESCS).expect("tx queue");
    assert_eq!((rx, tx), (DESCS, DESCS));
    port.start().expect("start")
}

/// The port's MAC address if it is a usable unicast one, else `fallback`.
fn port_mac<S: dpdk::PortState>(
    port: &EthPort<'_, S>,
    fallback: EthernetAddress,
) -> EthernetAddress {
    let mac = EthernetAddress(port.mac_addr().expect("mac address"));
    if mac.is_unicast() && mac != EthernetAddress([0; 6]) {
        mac
    } else {
        eprintln!("port {} reports MAC {mac}: using {fallback}", port.id());
        fallback
    }
}

/// Real time for the stacks: the TSC since the test started, converted once per turn.
struct Clock {
    t0: u64,
    hz: u64,
}

impl Clock {
    fn new(eal: &Eal) -> Self {
        let hz = eal.tsc_hz();
        assert!(hz > 0, "TSC calibrated");
        Self {
            t0: dpdk::tsc(),
            hz,
        }
    }

    fn now(&self) -> Instant {
        let ticks = u128::from(dpdk::tsc().saturating_sub(self.t0));
        let us = ticks * 1_000_000 / u128::from(self.hz);
        // Start at 1 ms, as the simulated tests do.
        Instant::from_micros(1000 + i64::try_from(us).expect("test runs less than ages"))
    }
}

type Stack<'p, 'a> = NetStack<DpdkPort<'p, 'a>>;

struct Net<'p, 'a> {
    a: Stack<'p, 'a>,
    b: Stack<'p, 'a>,
    clock: Clock,
    ev_a: Vec<StackEvent>,
    ev_b: Vec<StackEvent>,
}

impl<'p, 'a> Net<'p, 'a> {
    fn new(
        clock: Clock,
        pa: DpdkPort<'p, 'a>,
        pb: DpdkPort<'p, 'a>,
        mac_a: EthernetAddress,
        mac_b: EthernetAddress,
    ) -> Self {
        let tweak = |c: &mut StackConfig| c.shards = 4;
        let mut ca = StackConfig::new(mac_a, Ipv4Cidr::new(ip_a(), 24));
        let mut cb = StackConfig::new(mac_b, Ipv4Cidr::new(ip_b(), 24));
        tweak(&mut ca);
        tweak(&mut cb);
        cb.seed ^= 0xff;
        let now = clock.now();
        Self {
            a: NetStack::new(ca, pa, Neighbors::new(), now),
            b: NetStack::new(cb, pb, Neighbors::new(), now),
            clock,
            ev_a: Vec::new(),
            ev_b: Vec::new(),
        }
    }

    /// One turn of the poll loop: A, then B, at the current time. Whether either had work.
    fn turn(&mut self) -> bool {
        let now = self.clock.now();
        let wa = self.a.poll(now);
        let wb = self.b.poll(now);
        while let Some(e) = self.a.next_event() {
            self.ev_a.push(e);
        }
        while let Some(e) = self.b.next_event() {
            self.ev_b.push(e);
        }
        wa || wb
    }

    /// Turns until `done` (checked after each turn); fails after `limit` of real time.
    /// Returns the time it took.
    fn run_until(
        &mut self,
        limit: Duration,
        what: &str,
        mut done: impl FnMut(&mut Self) -> bool,
    ) -> Duration {
        let start = self.clock.now();
        loop {
            self.turn();
            if done(self) {
                return self.clock.now() - start;
            }
            assert!(
                self.clock.now() - start < limit,
                "{what}: not done within {limit}; A {:?}, B {:?}",
                self.a.stats(),
                self.b.stats()
            );
        }
    }

    /// Turns until both stacks stay idle and the link is empty for a while (at most 5 s).
    fn settle(&mut self, link: &RingLink<'_>) {
        let mut quiet = 0;
        self.run_until(Duration::from_secs(5), "settle", |net| {
            let busy = net.turn() || link.in_flight() != (0, 0);
            quiet = if busy { 0 } else { quiet + 1 };
            quiet >= 1000
        });
    }
}

fn ip_a() -> Ipv4Address {
    Ipv4Address::new(10, 0, 0, 1)
}

fn ip_b() -> Ipv4Address {
    Ipv4Address::new(10, 0, 0, 2)
}

/// Connect, both streams at once, echoes, close: the TCP part of the test.
fn exercise(net: &mut Net<'_, '_>) {
    net.b.listen(PORT).expect("listen");
    let ca = net
        .a
        .connect(IpEndpoint::new(IpAddress::Ipv4(ip_b()), PORT))
        .expect("connect");
    let took = net.run_until(Duration::from_secs(5), "handshake", |net| {
        net.ev_a.contains(&StackEvent::Connected(ca))
            && net
                .ev_b
                .iter()
                .any(|e| matches!(e, StackEvent::Accepted { .. }))
    });
    let cb = net
        .ev_b
        .iter()
        .find_map(|e| match *e {
            StackEvent::Accepted { conn, remote, .. } => {
                assert_eq!(remote.addr, IpAddress::Ipv4(ip_a()));
                Some(conn)
            }
            _ => None,
        })
        .expect("accepted");
    assert!(net.a.stats().arp_requests_sent >= 1, "A asked for B's MAC");
    eprintln!("ARP + handshake: {} us", took.total_micros());
    net.ev_a.clear();
    net.ev_b.clear();

    streams(net, ca, cb);
    echoes(net, ca, cb);

    net.a.close(ca).expect("close a");
    net.run_until(Duration::from_secs(5), "FIN from A", |net| {
        net.b.peer_closed(cb) == Ok(true)
    });
    net.b.close(cb).expect("close b");
    let took = net.run_until(Duration::from_secs(10), "close", |net| {
        net.ev_a.contains(&StackEvent::Closed(ca)) && net.ev_b.contains(&StackEvent::Closed(cb))
    });
    eprintln!("close: {} us", took.total_micros());
    assert_eq!((net.a.connections(), net.b.connections()), (0, 0));
}

/// 4 MiB A->B and 1 MiB B->A on one connection, both at once, every byte checked.
fn streams(net: &mut Net<'_, '_>, ca: ConnId, cb: ConnId) {
    let ab = pattern(1, STREAM_AB);
    let ba = pattern(2, STREAM_BA);
    let (mut sent_ab, mut sent_ba) = (0, 0);
    let mut got_ab = Vec::with_capacity(ab.len());
    let mut got_ba = Vec::with_capacity(ba.len());
    let mut buf = vec![0u8; 64 * 1024];
    let took = net.run_until(Duration::from_secs(120), "streams", |net| {
        if sent_ab < ab.len() {
            sent_ab += net.a.send(ca, &ab[sent_ab..]).expect("send a");
        }
        if sent_ba < ba.len() {
            sent_ba += net.b.send(cb, &ba[sent_ba..]).expect("send b");
        }
        read_all(&mut net.b, cb, &mut buf, &mut got_ab);
        read_all(&mut net.a, ca, &mut buf, &mut got_ba);
        got_ab.len() >= ab.len() && got_ba.len() >= ba.len()
    });
    check_same("A->B stream", &got_ab, &ab);
    check_same("B->A stream", &got_ba, &ba);
    let secs = took.total_micros() as f64 / 1e6;
    let mib = (STREAM_AB + STREAM_BA) as f64 / f64::from(1 << 20);
    eprintln!(
        "streams: 4 MiB A->B + 1 MiB B->A in {took} ({:.1} MiB/s together)",
        mib / secs
    );
}

/// 50 request/response round trips of 1..=400 bytes.
fn echoes(net: &mut Net<'_, '_>, ca: ConnId, cb: ConnId) {
    let mut buf = vec![0u8; 4096];
    let mut total = Duration::ZERO;
    let mut worst = Duration::ZERO;
    for i in 0..ECHOES {
        let msg = pattern(100 + i as u64, 1 + (i * 37) % 400);
        let start = net.clock.now();
        assert_eq!(net.a.send(ca, &msg), Ok(msg.len()), "request {i} fits");
        let mut at_b = Vec::new();
        net.run_until(Duration::from_secs(5), "request", |net| {
            read_all(&mut net.b, cb, &mut buf, &mut at_b);
            at_b.len() >= msg.len()
        });
        check_same("request", &at_b, &msg);
        assert_eq!(net.b.send(cb, &at_b), Ok(at_b.len()), "reply {i} fits");
        let mut at_a = Vec::new();
        net.run_until(Duration::from_secs(5), "reply", |net| {
            read_all(&mut net.a, ca, &mut buf, &mut at_a);
            at_a.len() >= msg.len()
        });
        check_same("reply", &at_a, &msg);
        let rtt = net.clock.now() - start;
        total += rtt;
        worst = worst.max(rtt);
    }
    eprintln!(
        "{ECHOES} echo round trips: mean {} us, worst {} us",
        total.total_micros() / ECHOES as u64,
        worst.total_micros()
    );
}

fn read_all(s: &mut Stack<'_, '_>, c: ConnId, buf: &mut [u8], into: &mut Vec<u8>) {
    loop {
        let n = s.recv(c, buf).expect("recv");
        if n == 0 {
            return;
        }
        into.extend_from_slice(&buf[..n]);
    }
}

/// EAL arguments: no hugepages, no PCI, no telemetry, one lcore on a CPU we may use, our own
/// runtime-file prefix.
fn eal_args(prefix: &str) -> Vec<String> {
    let cpu = pick_cpu();
    [
        "stack-test",
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
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

/// The CPU for lcore 0: of those this process may run on (`Cpus_allowed_list`), the one
/// that was least busy over the last 100 ms (benchmarks may be pinned to others); the first
/// allowed one if /proc/stat cannot tell; CPU 0 if nothing can be read.
fn pick_cpu() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|l| parse_cpu_list(l.trim()))
        .unwrap_or_default();
    let Some(&first) = allowed.first() else {
        return 0;
    };
    let before = cpu_ticks();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let after = cpu_ticks();
    allowed
        .iter()
        .filter_map(|&cpu| {
            let (b0, t0) = *before.iter().find(|(c, _)| *c == cpu).map(|(_, v)| v)?;
            let (b1, t1) = *after.iter().find(|(c, _)| *c == cpu).map(|(_, v)| v)?;
            let total = t1.saturating_sub(t0).max(1);
            Some((b1.saturating_sub(b0) * 1000 / total, cpu))
        })
        .min()
        .map_or(first, |(_, cpu)| cpu)
}

/// "0-3,8,10-11" -> [0, 1, 2, 3, 8, 10, 11].
fn parse_cpu_list(list: &str) -> Vec<u32> {
    let mut cpus = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        let mut ends = part.splitn(2, '-').map(|x| x.trim().parse::<u32>());
        match (ends.next(), ends.next()) {
            (Some(Ok(a)), None) => cpus.push(a),
            (Some(Ok(a)), Some(Ok(b))) if a <= b => cpus.extend(a..=b),
            _ => {}
        }
    }
    cpus
}

/// Per CPU: (busy ticks, all ticks) from /proc/stat.
fn cpu_ticks() -> Vec<(u32, (u64, u64))> {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let cpu = f.next()?.strip_prefix("cpu")?.parse::<u32>().ok()?;
            let v: Vec<u64> = f.filter_map(|x| x.parse().ok()).collect();
            let total: u64 = v.iter().take(8).sum();
            // idle + iowait are not busy.
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            Some((cpu, (total.saturating_sub(idle), total)))
        })
        .collect()
}
