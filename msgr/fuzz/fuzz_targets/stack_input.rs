//! The stack's packet input: arbitrary Ethernet frames into a [`stack::NetStack`] (one, or
//! two workers that hand frames over), with the application reading, writing, closing and
//! dialing in between, and time moving as the input says. Seeds: the TCP segments of real
//! Ceph sessions (msgr/tests/data/*.pcap, see seed-corpus.py), plus ARP, ICMP and IPv4
//! options and fragments.
//!
//! The stack runs on an in-memory device (`FuzzPort`) whose frames count themselves, so the
//! frames the stack holds (what a DPDK mempool must cover) are known at every step.
//!
//! Input:
//!
//! | bytes | meaning |
//! |---|---|
//! | 0 | setup: bits 0-1 scenario (below); bit 2 a device with checksum offloads (verdicts on receive, fills on transmit); bit 3 two workers with flow hand-over (`set_forwarding`, RSS over 2 queues); bit 4 packet capture on; bit 5 device pressure after the prologue (every 4th buffer allocation fails, at most 2 frames per transmit burst); bit 6 one shard (else 4); bit 7 tight bounds (transmit queue 4, shard queue 2, receive burst 2; else 64, 16, 8) |
//! | 1 | knobs: bits 0-1 `max_half_open` 32, 1, 4, 8; bits 2-3 `listen_backlog` 1, 1, 2, 4; bits 4-5 socket buffers 16 KiB, 2 KiB, 4 KiB rx / 64 KiB tx, 128 KiB (window scaling); bit 6 keep-alive off (else 2 s); bit 7 also listen on 3300 and route via gateway 10.0.0.254 |
//! | then, per step (at most 256) | `ctl` u8, `app` u8, le16 length (capped at 2048), that many bytes of Ethernet frame (fewer if the input ends; none: a step of time and `app` only) |
//!
//! Scenarios (the prologue, run before the frames with the device well-behaved):
//! 0. listening on 6789;
//! 1. listening, and a scripted peer 10.0.0.2 completed a handshake to 6789 (accepted; its
//!    SYN offers MSS 1460 and window scale 7, as Linux does);
//! 2. listening, and the application dialed 10.0.0.2:6789 (the peer answers ARP; the SYN is
//!    out, unanswered);
//! 3. as 2, and the peer answered the SYN: connected.
//!
//! The scenario's connection is "the flow": `ctl` modes 2 and 3 put its ports on a TCP
//! frame, and mode 2 also makes sequence and acknowledgment numbers relative to it (seq +=
//! the peer's ISN, ack += the stack's ISN, as learned from the stack's SYN), so a segment
//! taken from a capture (numbers relative to its own handshake, as Wireshark shows them)
//! lands where the same segment landed in the real session.
//!
//! `ctl`: bits 0-1 rewrite: 0 raw; 1 addressing (Ethernet source = the peer, destination =
//! the stack unless broadcast; IPv4 source/destination = peer/stack; ARP sender = the peer,
//! target IP = the stack); 2 addressing + the flow's ports + relative seq/ack; 3 addressing +
//! the flow's ports. Bit 2: make it well-formed: IPv4 total length = what the frame holds,
//! then IPv4 header, TCP and ICMP checksums filled in. Bit 3: deliver to the second worker
//! (when there is one). Bits 4-7: time step before the frame: 0, 1 µs, 100 µs, 1, 5, 10,
//! 50, 100, 200, 500 ms, 1, 2, 3.5, 10.5, 60 s, or to the stacks' next timer.
//!
//! `app`, after the frame was polled: bits 0-2 action, bits 3-7 `arg`. 0 nothing; 1 read up
//! to `size(arg)` bytes from every open connection; 2 write `size(arg)` bytes to open
//! connection `arg % n`; 3 close it; 4 abort it; 5 release it; 6 dial 10.0.0.2:6789 (`arg`
//! odd: dial our own address, the loopback path); 7 by `arg % 4`: stop listening, listen
//! again, stall/unstall the device's transmit side, or ask for `Writable` and read the
//! connection's state. `size(arg)` = 64 × (arg + 1)², 64 B to 64 KiB.
//!
//! Checked after every step (a frame or an `app` action, and the polls that settle it): no
//! panic; every event names a connection in the state the
//! event implies; the stack's counters agree with the events (accepted, connected, closed)
//! and with the device (frames received and sent); handshakes in progress, derived from the
//! counters, equal those derived from the events and stay within `shards × (max_half_open +
//! backlog × ports)`; the frames each stack holds (`NetStack::frames_held`) stay within
//! their bounds (transmit queue and looped-back packets `tx_queue_max`, packets waiting for
//! ARP `UNRESOLVED_MAX`, frames handed over at most the forwarding queue's depth, none left
//! in a shard) and are all the frames the devices handed out and did not get back; with a
//! capture, every frame received, looped or sent was offered to it.
#![no_main]

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use stack::checksum::{self, RxChecksum, RxState, TxChecksum};
use stack::netstack::{Forwarding, UNRESOLVED_MAX};
use stack::pcap::{Capture, CaptureConfig, PcapFile, TimeBase};
use stack::rss::Steering;
use stack::smoltcp::time::{Duration, Instant};
use stack::smoltcp::wire::{EthernetAddress, IpAddress, IpEndpoint, Ipv4Address, Ipv4Cidr};
use stack::{ConnId, NetStack, Port, StackConfig, StackEvent};

const STACK_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x0a]);
const PEER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x0b]);
const STACK_IP: [u8; 4] = [10, 0, 0, 1];
const PEER_IP: [u8; 4] = [10, 0, 0, 2];
const GATEWAY: [u8; 4] = [10, 0, 0, 254];
/// Where the stack listens, and where the peer listens when the stack dials.
const PORT: u16 = 6789;
const SECOND_PORT: u16 = 3300;
const PEER_ISN: u32 = 0x1000_0000;

const ETH: usize = 14;
const MAX_STEPS: usize = 256;
const MAX_FRAME_LEN: usize = 2048;
/// Polls per step: enough to settle a frame and its replies, bounded if it never settles.
const MAX_POLLS: usize = 16;
const FORWARD_DEPTH: usize = 16;

/// Time steps by `ctl >> 4`, in µs; the last means "to the next timer".
#[rustfmt::skip]
const STEPS: [u64; 16] = [
    0, 1, 100, 1_000, 5_000, 10_000, 50_000, 100_000, 200_000, 500_000,
    1_000_000, 2_000_000, 3_500_000, 10_500_000, 60_000_000, u64::MAX,
];

fuzz_target!(|data: &[u8]| run(data));

fn run(data: &[u8]) {
    let Some((&[setup, knobs], mut rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let mut h = Harness::new(setup, knobs);
    h.prologue(setup & 3);
    h.pressure(setup & 0x20 != 0);
    for _ in 0..MAX_STEPS {
        let Some((&[ctl, app, lo, hi], body)) = rest.split_first_chunk::<4>() else {
            break;
        };
        let len = usize::from(u16::from_le_bytes([lo, hi]))
            .min(MAX_FRAME_LEN)
            .min(body.len());
        let (frame, tail) = body.split_at(len);
        rest = tail;
        h.step(ctl, frame);
        h.app(app);
    }
    if debug() {
        h.report();
    }
}

/// `STACK_INPUT_DEBUG=1`: print where an input got (run the target on one file to see how
/// far a seed reaches).
fn debug() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("STACK_INPUT_DEBUG").is_some_and(|v| v == "1"))
}

/// A frame that counts itself in `live` while it exists: what the stack holds is what the
/// device handed out minus what it has back.
struct Frame {
    bytes: Vec<u8>,
    live: Rc<Cell<usize>>,
}

impl Frame {
    fn new(bytes: Vec<u8>, live: &Rc<Cell<usize>>) -> Self {
        live.set(live.get() + 1);
        Self {
            bytes,
            live: Rc::clone(live),
        }
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        self.live.set(self.live.get() - 1);
    }
}

impl AsRef<[u8]> for Frame {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl AsMut<[u8]> for Frame {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
}

/// The device under one worker: frames to receive, frames sent (the peer reads them).
struct FuzzPort {
    rx: VecDeque<Frame>,
    sent: Vec<Frame>,
    live: Rc<Cell<usize>>,
    offload: bool,
    /// Every 4th allocation fails and a transmit burst takes at most 2 frames.
    pressure: bool,
    /// The transmit side takes nothing (a stuck link).
    stalled: bool,
    allocs: u64,
    delivered: u64,
    taken: u64,
}

impl Port for FuzzPort {
    type Frame = Frame;

    fn rx_burst(&mut self, out: &mut Vec<Frame>, max: usize) -> usize {
        let n = self.rx.len().min(max);
        out.extend(self.rx.drain(..n));
        self.delivered += n as u64;
        n
    }

    fn alloc(&mut self, len: usize) -> Option<Frame> {
        self.allocs += 1;
        if self.pressure && self.allocs.is_multiple_of(4) {
            return None;
        }
        Some(Frame::new(vec![0; len], &self.live))
    }

    fn tx_burst(&mut self, frames: &mut VecDeque<Frame>) -> usize {
        let n = match (self.stalled, self.pressure) {
            (true, _) => 0,
            (false, true) => frames.len().min(2),
            (false, false) => frames.len(),
        };
        self.sent.extend(frames.drain(..n));
        self.taken += n as u64;
        n
    }

    fn rx_checksum(&self, frame: &Frame) -> RxChecksum {
        let mut v = RxChecksum::default();
        if !self.offload {
            return v;
        }
        // What a NIC checks: IPv4 headers, and TCP in them.
        let f = frame.as_ref();
        let Some((ihl, total)) = ipv4_lengths(f) else {
            return v;
        };
        let p = &f[ETH..];
        let verdict = |ok| if ok { RxState::Good } else { RxState::Bad };
        v.ip = verdict(checksum::ipv4_header_ok(&p[..ihl]));
        if p[9] == 6 {
            let (src, dst) = (octets(&p[12..16]), octets(&p[16..20]));
            v.l4 = verdict(checksum::l4_ok(src, dst, 6, &p[ihl..total]));
        }
        v
    }

    fn tx_checksum(&self) -> TxChecksum {
        TxChecksum {
            ipv4: self.offload,
            tcp: self.offload,
        }
    }

    fn offload_tx(&self, frame: &mut Frame, ihl: usize, what: TxChecksum) {
        // The stack hands over only frames it built, with consistent lengths.
        let p = &mut frame.as_mut()[ETH..];
        if what.ipv4 {
            p[10..12].fill(0);
            let c = !checksum::fold(checksum::sum(0, &p[..ihl]));
            p[10..12].copy_from_slice(&c.to_be_bytes());
        }
        if what.tcp {
            let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
            let c = !checksum::fold(checksum::sum(0, &p[ihl..total]));
            p[ihl + 16..ihl + 18].copy_from_slice(&c.to_be_bytes());
        }
    }
}

/// What the application knows of one worker's connections, from its events.
#[derive(Default)]
struct App {
    open: Vec<ConnId>,
    /// Dialed, not yet connected.
    pending: Vec<ConnId>,
    connects: u64,
    accepted: u64,
    connected: u64,
    /// `Closed` and `Refused` events.
    ended: u64,
}

impl App {
    fn event(&mut self, e: StackEvent) {
        match e {
            StackEvent::Accepted { conn, .. } => {
                assert!(!self.open.contains(&conn), "accepted twice: {e:?}");
                self.open.push(conn);
                self.accepted += 1;
            }
            StackEvent::Connected(c) => {
                let i = self.pending.iter().position(|&p| p == c);
                let i = i.unwrap_or_else(|| panic!("connected, never dialed: {e:?}"));
                self.pending.swap_remove(i);
                self.open.push(c);
                self.connected += 1;
            }
            StackEvent::Readable(c) | StackEvent::Writable(c) => {
                assert!(
                    self.open.contains(&c),
                    "event for no open connection: {e:?}"
                );
            }
            StackEvent::Closed(c) => {
                // A handshake that died before `Accepted` ends with a `Closed` of an id the
                // application never saw.
                self.open.retain(|&o| o != c);
                self.pending.retain(|&p| p != c);
                self.ended += 1;
            }
            StackEvent::Refused(c) => {
                let i = self.pending.iter().position(|&p| p == c);
                let i = i.unwrap_or_else(|| panic!("refused, never dialed: {e:?}"));
                self.pending.swap_remove(i);
                self.ended += 1;
            }
        }
    }
}

/// The scenario's connection as the peer sees it (ports 0: not known yet).
#[derive(Debug, Clone, Copy)]
struct Flow {
    peer_port: u16,
    stack_port: u16,
    stack_isn: u32,
}

struct Worker {
    stack: NetStack<FuzzPort>,
    app: App,
}

struct Harness {
    workers: Vec<Worker>,
    live: Rc<Cell<usize>>,
    now: Instant,
    flow: Flow,
    /// The peer answers the stack's ARP requests for it (in the prologue only).
    auto_arp: bool,
    capture: bool,
    /// Handshakes in progress per worker, at most.
    half_open_max: usize,
    ports: Vec<u16>,
}

/// A capture that writes nowhere, started once per process (a writer thread each input
/// would cost more than the input).
fn capture() -> Capture {
    static FILE: OnceLock<PcapFile> = OnceLock::new();
    let file = FILE.get_or_init(|| {
        let cfg = CaptureConfig {
            queue_depth: 4096,
            ..CaptureConfig::default()
        };
        PcapFile::with_writer(std::io::sink(), "fuzz", cfg).expect("capture to a sink")
    });
    file.capture(TimeBase::new(Instant::ZERO, std::time::Duration::ZERO))
}

fn write_pattern() -> &'static [u8] {
    static DATA: OnceLock<Vec<u8>> = OnceLock::new();
    DATA.get_or_init(|| (0..size(31)).map(|i| (i * 7 + i / 251) as u8).collect())
}

/// Bytes read or written by an `app` action.
fn size(arg: u8) -> usize {
    let k = usize::from(arg) + 1;
    64 * k * k
}

impl Harness {
    fn new(setup: u8, knobs: u8) -> Self {
        let live = Rc::new(Cell::new(0));
        let offload = setup & 0x04 != 0;
        let workers = if setup & 0x08 != 0 { 2 } else { 1 };
        let tight = setup & 0x80 != 0;
        let now = Instant::from_millis(1);
        let mut cfg = StackConfig::new(STACK_MAC, Ipv4Cidr::new(Ipv4Address::from(STACK_IP), 24));
        cfg.shards = if setup & 0x40 != 0 { 1 } else { 4 };
        (cfg.tx_queue_max, cfg.shard_rx_max, cfg.rx_burst) =
            if tight { (4, 2, 2) } else { (64, 16, 8) };
        cfg.max_half_open = [32, 1, 4, 8][usize::from(knobs & 3)];
        cfg.listen_backlog = [1, 1, 2, 4][usize::from(knobs >> 2 & 3)];
        (cfg.rx_buffer, cfg.tx_buffer) = [
            (16 << 10, 16 << 10),
            (2 << 10, 2 << 10),
            (4 << 10, 64 << 10),
            (128 << 10, 128 << 10),
        ][usize::from(knobs >> 4 & 3)];
        if knobs & 0x40 != 0 {
            cfg.keepalive = None;
        }
        let mut ports = vec![PORT];
        if knobs & 0x80 != 0 {
            cfg.gateway = Some(Ipv4Address::from(GATEWAY));
            ports.push(SECOND_PORT);
        }
        if workers > 1 {
            cfg.steering = Steering::round_robin(2, 128);
        }
        let neighbors = stack::l2::Neighbors::new();
        let mut fwd = Forwarding::group(workers, FORWARD_DEPTH).into_iter();
        let capture = setup & 0x10 != 0;
        let workers: Vec<Worker> = (0..workers)
            .map(|q| {
                let mut c = cfg.clone();
                c.queue = q as u16;
                c.seed ^= q as u64;
                let port = FuzzPort {
                    rx: VecDeque::new(),
                    sent: Vec::new(),
                    live: Rc::clone(&live),
                    offload,
                    pressure: false,
                    stalled: false,
                    allocs: 0,
                    delivered: 0,
                    taken: 0,
                };
                let mut stack = NetStack::new(c, port, Arc::clone(&neighbors), now);
                if let (Some(f), true) = (fwd.next(), workers > 1) {
                    stack.set_forwarding(f);
                }
                if capture {
                    stack.set_capture(Some(self::capture()));
                }
                Worker {
                    stack,
                    app: App::default(),
                }
            })
            .collect();
        let half_open_max = cfg.shards * (cfg.max_half_open + cfg.listen_backlog * ports.len());
        // The flow's peer port: one whose packets worker 0 owns.
        let peer_port = (40000..)
            .find(|&p| {
                cfg.steering.queue_of(
                    Ipv4Address::from(PEER_IP),
                    Ipv4Address::from(STACK_IP),
                    p,
                    PORT,
                ) == 0
            })
            .unwrap_or(40000);
        Self {
            workers,
            live,
            now,
            flow: Flow {
                peer_port,
                stack_port: PORT,
                stack_isn: 0,
            },
            auto_arp: true,
            capture,
            half_open_max,
            ports,
        }
    }

    fn listen(&mut self) {
        for w in &mut self.workers {
            for &p in &self.ports {
                // Listening again after `stop_listening`, or already listening: both fine.
                let _ = w.stack.listen(p);
            }
        }
    }

    fn prologue(&mut self, scenario: u8) {
        self.listen();
        self.settle();
        match scenario {
            1 => {
                let (sp, dp) = (self.flow.peer_port, self.flow.stack_port);
                self.inject(0, segment(sp, dp, PEER_ISN, 0, SYN, &[]));
                self.settle();
                let ack = self.flow.stack_isn.wrapping_add(1);
                self.inject(0, segment(sp, dp, PEER_ISN.wrapping_add(1), ack, ACK, &[]));
                self.settle();
                assert_eq!(self.workers[0].app.open.len(), 1, "scripted handshake");
            }
            2 | 3 => {
                self.flow.peer_port = PORT;
                let w = &mut self.workers[0];
                let c = w
                    .stack
                    .connect(IpEndpoint::new(IpAddress::Ipv4(PEER_IP.into()), PORT));
                let c = c.expect("dial the peer");
                w.app.pending.push(c);
                w.app.connects += 1;
                self.flow.stack_port = w.stack.endpoints(c).expect("dialed").0;
                self.settle();
                if scenario == 3 {
                    let (sp, dp) = (self.flow.peer_port, self.flow.stack_port);
                    let ack = self.flow.stack_isn.wrapping_add(1);
                    self.inject(0, segment(sp, dp, PEER_ISN, ack, SYN | ACK, &[]));
                    self.settle();
                    assert_eq!(self.workers[0].app.open.len(), 1, "scripted connect");
                }
            }
            _ => {}
        }
        self.auto_arp = false;
    }

    fn pressure(&mut self, on: bool) {
        for w in &mut self.workers {
            w.stack.port_mut().pressure = on;
        }
    }

    fn inject(&mut self, worker: usize, bytes: Vec<u8>) {
        let f = Frame::new(bytes, &self.live);
        self.workers[worker].stack.port_mut().rx.push_back(f);
    }

    fn step(&mut self, ctl: u8, frame: &[u8]) {
        let step = STEPS[usize::from(ctl >> 4)];
        self.now = if step == u64::MAX {
            let next = self.workers.iter().filter_map(|w| w.stack.poll_at()).min();
            match next {
                Some(t) if t > self.now => t,
                _ => self.now + Duration::from_millis(1),
            }
        } else {
            self.now + Duration::from_micros(step)
        };
        if !frame.is_empty() {
            let mut bytes = frame.to_vec();
            rewrite(&mut bytes, ctl & 3, self.flow);
            if ctl & 4 != 0 {
                well_formed(&mut bytes);
            }
            let worker = usize::from(ctl >> 3 & 1).min(self.workers.len() - 1);
            self.inject(worker, bytes);
        }
        self.settle();
    }

    fn app(&mut self, app: u8) {
        let arg = app >> 3;
        let action = app & 7;
        if action == 0 {
            return;
        }
        let w = &mut self.workers[0];
        // The open connection `arg` names, for the actions on one connection.
        let one = (!w.app.open.is_empty()).then(|| w.app.open[usize::from(arg) % w.app.open.len()]);
        match (action, one) {
            (1, _) => {
                for w in &mut self.workers {
                    for &c in &w.app.open {
                        let _ = w.stack.recv_with(c, size(arg), |_| {});
                    }
                }
            }
            (2, Some(c)) => {
                let _ = w.stack.send(c, &write_pattern()[..size(arg)]);
            }
            (3, Some(c)) => {
                let _ = w.stack.close(c);
            }
            (4, Some(c)) => {
                let _ = w.stack.abort(c);
            }
            (5, Some(c)) => {
                let _ = w.stack.release(c);
            }
            (6, _) => {
                let to = if arg & 1 == 0 { PEER_IP } else { STACK_IP };
                if let Ok(c) = w
                    .stack
                    .connect(IpEndpoint::new(IpAddress::Ipv4(to.into()), PORT))
                {
                    w.app.pending.push(c);
                    w.app.connects += 1;
                }
            }
            (7, _) => match (arg % 4, one) {
                (0, _) => {
                    for w in &mut self.workers {
                        w.stack.stop_listening();
                    }
                }
                (1, _) => self.listen(),
                (2, _) => {
                    for w in &mut self.workers {
                        let p = w.stack.port_mut();
                        p.stalled = !p.stalled;
                    }
                }
                (_, Some(c)) => {
                    let _ = w.stack.notify_writable(c);
                    let _ = (w.stack.peer_closed(c), w.stack.tcp_state(c));
                    let _ = (w.stack.recv_queue(c), w.stack.send_queue(c));
                }
                (_, None) => {}
            },
            _ => {}
        }
        self.settle();
    }

    /// Polls every worker until none has work at this time (bounded), then checks.
    fn settle(&mut self) {
        for _ in 0..MAX_POLLS {
            let mut work = false;
            for i in 0..self.workers.len() {
                work |= self.workers[i].stack.poll(self.now);
                self.drain(i);
            }
            let due = self.workers.iter().any(|w| {
                !w.stack.port().rx.is_empty() || w.stack.poll_at().is_some_and(|t| t <= self.now)
            });
            if !work && !due {
                break;
            }
        }
        self.check();
    }

    /// Hands a worker's events to the application and its sent frames to the peer.
    fn drain(&mut self, i: usize) {
        let w = &mut self.workers[i];
        while let Some(e) = w.stack.next_event() {
            w.app.event(e);
        }
        let sent = std::mem::take(&mut w.stack.port_mut().sent);
        for f in sent {
            if let Some(reply) = self.observe(f.as_ref()) {
                self.inject(0, reply);
            }
        }
    }

    /// What the peer learns from a frame the stack sent: the flow's port and the stack's
    /// ISN from its SYN. In the prologue, it answers ARP requests for itself.
    fn observe(&mut self, f: &[u8]) -> Option<Vec<u8>> {
        if f.len() >= ETH + 28 && f[12..14] == [0x08, 0x06] {
            let a = &f[ETH..];
            if !self.auto_arp || a[7] != 1 || a[24..28] != PEER_IP {
                return None;
            }
            let mut r = f[..ETH + 28].to_vec();
            r[0..6].copy_from_slice(&f[6..12]);
            r[6..12].copy_from_slice(&PEER_MAC.0);
            let ra = &mut r[ETH..];
            ra[7] = 2;
            ra[8..14].copy_from_slice(&PEER_MAC.0);
            ra[14..18].copy_from_slice(&PEER_IP);
            ra[18..28].copy_from_slice(&a[8..18]);
            return Some(r);
        }
        let (ihl, _) = ipv4_lengths(f)?;
        let p = &f[ETH..];
        if p[9] != 6 || p[16..20] != PEER_IP || p.len() < ihl + 20 {
            return None;
        }
        let t = &p[ihl..];
        let (sport, dport) = (be16(&t[0..2]), be16(&t[2..4]));
        let fl = self.flow;
        let ours = dport == fl.peer_port && (fl.stack_port == 0 || sport == fl.stack_port);
        if ours && t[13] & SYN != 0 {
            self.flow.stack_port = sport;
            self.flow.stack_isn = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
        }
        None
    }

    fn report(&self) {
        eprintln!("at {}; flow {:?}", self.now, self.flow);
        for (i, w) in self.workers.iter().enumerate() {
            let counters = w.stack.stats().counters();
            let nonzero: Vec<_> = counters.iter().filter(|(_, v)| *v > 0).collect();
            eprintln!("worker {i}: {nonzero:?}");
            for &c in w.app.open.iter().chain(&w.app.pending) {
                let st = w.stack.tcp_state(c);
                let q = (w.stack.recv_queue(c), w.stack.send_queue(c));
                eprintln!(
                    "  {c:?} {:?} {st:?} rx/tx queued {q:?}",
                    w.stack.endpoints(c)
                );
            }
        }
    }

    fn check(&self) {
        let (mut in_ports, mut held) = (0, 0);
        for w in &self.workers {
            let st = w.stack.stats();
            let port = w.stack.port();
            in_ports += port.rx.len() + port.sent.len();
            assert_eq!(st.rx_frames, port.delivered, "frames received");
            assert_eq!(st.tx_frames, port.taken, "frames sent");
            let a = &w.app;
            assert_eq!(st.accepted, a.accepted, "accepted vs events");
            assert_eq!(st.connected, a.connected, "connected vs events");
            assert_eq!(st.closed, a.ended, "closed vs events");
            let live = w.stack.connections();
            // Connections ever made (promoted listeners and dials) minus those closed, by
            // the counters; what is neither accepted, dropped nor dialed is a handshake in
            // progress. The events say the same from the other side.
            let by_counters = (live as i128 + i128::from(st.closed))
                - i128::from(st.accepted + st.handshakes_dropped + a.connects);
            let by_events = live as i128 - (a.open.len() + a.pending.len()) as i128;
            assert_eq!(by_counters, by_events, "handshakes in progress: {st:?}");
            let gauge = w
                .stack
                .gauges()
                .iter()
                .find(|(k, _)| *k == "half_open")
                .map(|g| g.1);
            assert_eq!(
                gauge.map(i128::from),
                Some(by_events),
                "the half_open gauge"
            );
            assert!(
                (0..=self.half_open_max as i128).contains(&by_events),
                "{by_events} handshakes in progress, at most {}",
                self.half_open_max
            );
            for &c in a.open.iter().chain(&a.pending) {
                assert!(w.stack.tcp_state(c).is_ok(), "{c:?} known and gone");
            }
            let h = w.stack.frames_held();
            let max = w.stack.config().tx_queue_max;
            assert!(
                h.tx_queue <= max,
                "{} frames queued for the device, at most {max}",
                h.tx_queue
            );
            assert!(
                h.looped <= max,
                "{} frames looped back, at most {max}",
                h.looped
            );
            assert!(h.unresolved <= UNRESOLVED_MAX, "{h:?}");
            assert!(h.handed_over <= FORWARD_DEPTH, "{h:?}");
            assert_eq!(h.shard_rx, 0, "frames left in shards after a poll");
            held += h.total();
            if self.capture {
                let offered = st.captured + st.capture_dropped;
                let seen = st.rx_frames + st.looped + st.tx_frames;
                // Frames offered to the device and refused were recorded, not yet sent.
                assert!(
                    offered >= seen && offered <= seen + self.live.get() as u64,
                    "captured {offered} of {seen}: {st:?}"
                );
            }
        }
        // Every frame the devices handed out and did not get back is in one of those places.
        assert_eq!(
            self.live.get() - in_ports,
            held,
            "frames held by the stacks"
        );
    }
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

/// A TCP segment from the peer to the stack, well-formed.
fn segment(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    // MSS 1460 and window scale 7 (what Linux sends, as in the captures the seeds are from).
    let opts: &[u8] = if flags & SYN != 0 {
        &[2, 4, 0x05, 0xb4, 1, 3, 3, 7]
    } else {
        &[]
    };
    let tcp_len = 20 + opts.len() + payload.len();
    let mut f = vec![0u8; ETH + 20 + tcp_len];
    f[0..6].copy_from_slice(&STACK_MAC.0);
    f[6..12].copy_from_slice(&PEER_MAC.0);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let p = &mut f[ETH..];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&PEER_IP);
    p[16..20].copy_from_slice(&STACK_IP);
    let t = &mut p[20..];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = (((20 + opts.len()) / 4) << 4) as u8;
    t[13] = flags;
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    t[20..20 + opts.len()].copy_from_slice(opts);
    t[20 + opts.len()..].copy_from_slice(payload);
    well_formed(&mut f);
    f
}

/// Puts the peer's and the stack's addresses on a frame (and the flow's ports and
/// numbers, by `mode`: see the module doc).
fn rewrite(f: &mut [u8], mode: u8, flow: Flow) {
    if mode == 0 || f.len() < ETH {
        return;
    }
    if f[0..6] != [0xff; 6] {
        f[0..6].copy_from_slice(&STACK_MAC.0);
    }
    f[6..12].copy_from_slice(&PEER_MAC.0);
    match f[12..14] {
        [0x08, 0x06] if f.len() >= ETH + 28 => {
            let a = &mut f[ETH..];
            a[8..14].copy_from_slice(&PEER_MAC.0);
            a[14..18].copy_from_slice(&PEER_IP);
            a[24..28].copy_from_slice(&STACK_IP);
        }
        [0x08, 0x00] if f.len() >= ETH + 20 => {
            let p = &mut f[ETH..];
            p[12..16].copy_from_slice(&PEER_IP);
            p[16..20].copy_from_slice(&STACK_IP);
            let ihl = usize::from(p[0] & 0x0f) * 4;
            if mode < 2 || p[9] != 6 || ihl < 20 || p.len() < ihl + 20 {
                return;
            }
            let t = &mut p[ihl..];
            t[0..2].copy_from_slice(&flow.peer_port.to_be_bytes());
            t[2..4].copy_from_slice(&flow.stack_port.to_be_bytes());
            if mode == 2 {
                let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]).wrapping_add(PEER_ISN);
                let ack =
                    u32::from_be_bytes([t[8], t[9], t[10], t[11]]).wrapping_add(flow.stack_isn);
                t[4..8].copy_from_slice(&seq.to_be_bytes());
                t[8..12].copy_from_slice(&ack.to_be_bytes());
            }
        }
        _ => {}
    }
}

/// Makes an IPv4 frame consistent: total length = what the frame holds, checksums right
/// (IPv4 header; TCP or ICMP unless the packet is a fragment's tail).
fn well_formed(f: &mut [u8]) {
    if f.len() < ETH + 20 || f[12..14] != [0x08, 0x00] || f[ETH] >> 4 != 4 {
        return;
    }
    let p = &mut f[ETH..];
    let ihl = usize::from(p[0] & 0x0f) * 4;
    if ihl < 20 || ihl > p.len() {
        return;
    }
    let total = p.len().min(usize::from(u16::MAX));
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[10..12].fill(0);
    let c = !checksum::fold(checksum::sum(0, &p[..ihl]));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let (src, dst, proto) = (octets(&p[12..16]), octets(&p[16..20]), p[9]);
    let tail = be16(&p[6..8]) & 0x1fff != 0;
    let l4 = &mut p[ihl..total];
    match proto {
        _ if tail => {}
        6 if l4.len() >= 20 => {
            l4[16..18].fill(0);
            let ph = checksum::pseudo_header(src, dst, 6, l4.len() as u16);
            let c = !checksum::fold(checksum::sum(u64::from(ph), l4));
            l4[16..18].copy_from_slice(&c.to_be_bytes());
        }
        1 if l4.len() >= 4 => {
            l4[2..4].fill(0);
            let c = !checksum::fold(checksum::sum(0, l4));
            l4[2..4].copy_from_slice(&c.to_be_bytes());
        }
        _ => {}
    }
}

/// (header length, total length) of a frame's IPv4 packet, when they are consistent.
fn ipv4_lengths(f: &[u8]) -> Option<(usize, usize)> {
    let p = f.get(ETH..)?;
    if f[12..14] != [0x08, 0x00] || p.len() < 20 || p[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let total = usize::from(be16(&p[2..4]));
    (ihl >= 20 && total >= ihl && total <= p.len()).then_some((ihl, total))
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn octets(b: &[u8]) -> [u8; 4] {
    [b[0], b[1], b[2], b[3]]
}
