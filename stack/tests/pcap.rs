//! Packet capture of a stack's frames ([`stack::pcap`]), end to end: two stacks on the
//! in-memory link, a capture on one side, a TCP conversation; the file read back (by our own
//! reader here, and by tshark when it is installed) must hold every frame the stack sent and
//! received during the capture, once, in order, and nothing after it stopped.

mod common;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::pattern;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, IpAddress, IpEndpoint, Ipv4Address, Ipv4Cidr};
use stack::checksum::{RxChecksum, TxChecksum};
use stack::l2::Neighbors;
use stack::memlink::{LinkConfig, MemLink, MemPort};
use stack::pcap::{CaptureConfig, PcapFile, TimeBase};
use stack::{ConnId, NetStack, Port, StackConfig, StackEvent, StackStats};

const MAC_A: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0xa]);
const MAC_B: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0xb]);
const PORT: u16 = 6800;
/// Wall-clock time of the capture's start (a fixed one: the file's times are checkable).
const WALL: std::time::Duration = std::time::Duration::from_secs(1_700_000_000);

fn ip_a() -> Ipv4Address {
    Ipv4Address::new(10, 0, 0, 1)
}
fn ip_b() -> Ipv4Address {
    Ipv4Address::new(10, 0, 0, 2)
}
fn ep_b() -> IpEndpoint {
    IpEndpoint::new(IpAddress::Ipv4(ip_b()), PORT)
}

/// A file under the temp directory, removed when the guard goes (also when a test fails).
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let file = format!("msgr-pcap-{name}-{}-{n}.pcap", std::process::id());
        let path = std::env::temp_dir().join(file);
        let _ = std::fs::remove_file(&path);
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A memlink end whose device takes at most `limit` frames per transmit burst (a busy
/// NIC ring): the rest wait in the stack's queue for the next burst.
struct Stingy {
    inner: MemPort,
    limit: Option<usize>,
}

impl Port for Stingy {
    type Frame = Vec<u8>;

    fn rx_burst(&mut self, out: &mut Vec<Vec<u8>>, max: usize) -> usize {
        self.inner.rx_burst(out, max)
    }

    fn alloc(&mut self, len: usize) -> Option<Vec<u8>> {
        self.inner.alloc(len)
    }

    fn tx_burst(&mut self, frames: &mut VecDeque<Vec<u8>>) -> usize {
        let Some(limit) = self.limit else {
            return self.inner.tx_burst(frames);
        };
        let rest = frames.split_off(limit.min(frames.len()));
        let n = self.inner.tx_burst(frames);
        frames.extend(rest);
        n
    }

    fn rx_checksum(&self, frame: &Vec<u8>) -> RxChecksum {
        self.inner.rx_checksum(frame)
    }

    fn tx_checksum(&self) -> TxChecksum {
        self.inner.tx_checksum()
    }

    fn offload_tx(&self, frame: &mut Vec<u8>, ihl: usize, what: TxChecksum) {
        self.inner.offload_tx(frame, ihl, what)
    }
}

struct Net {
    link: MemLink,
    a: NetStack<Stingy>,
    b: NetStack<Stingy>,
    now: Instant,
    ev_a: Vec<StackEvent>,
    ev_b: Vec<StackEvent>,
}

impl Net {
    fn new(tx_limit: Option<usize>) -> Self {
        let link = MemLink::new(LinkConfig::default());
        let (pa, pb) = link.ports();
        let now = Instant::from_millis(1);
        let ca = StackConfig::new(MAC_A, Ipv4Cidr::new(ip_a(), 24));
        let mut cb = StackConfig::new(MAC_B, Ipv4Cidr::new(ip_b(), 24));
        cb.seed ^= 0xff;
        let port = |inner| Stingy {
            inner,
            limit: tx_limit,
        };
        Self {
            a: NetStack::new(ca, port(pa), Neighbors::new(), now),
            b: NetStack::new(cb, port(pb), Neighbors::new(), now),
            link,
            now,
            ev_a: Vec::new(),
            ev_b: Vec::new(),
        }
    }

    /// Polls both sides until neither has anything to do at the current time.
    fn settle(&mut self) {
        self.link.set_now(self.now);
        for _ in 0..10_000 {
            let wa = self.a.poll(self.now);
            let wb = self.b.poll(self.now);
            self.ev_a.extend(std::iter::from_fn(|| self.a.next_event()));
            self.ev_b.extend(std::iter::from_fn(|| self.b.next_event()));
            if !wa && !wb {
                return;
            }
        }
        panic!("stacks never went quiet");
    }

    /// Runs until `done`, moving time to whatever is due next; panics after `limit`.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Self) -> bool) {
        let end = self.now + limit;
        self.settle();
        while !done(self) {
            assert!(self.now < end, "condition not reached within {limit}");
            let next = [
                self.a.poll_at(),
                self.b.poll_at(),
                self.link.next_delivery(),
            ]
            .into_iter()
            .flatten()
            .min();
            let cap = self.now + Duration::from_millis(5);
            self.now = match next {
                Some(t) if t > self.now => t.min(cap),
                _ => self.now + Duration::from_micros(1),
            };
            self.settle();
        }
    }

    /// One connection A -> B: (A's id, B's id).
    fn connect(&mut self) -> (ConnId, ConnId) {
        let ca = self.a.connect(ep_b()).expect("connect");
        let mut cb = None;
        self.run_until(Duration::from_secs(5), |net| {
            cb = cb.or_else(|| {
                net.ev_b.iter().find_map(|e| match e {
                    StackEvent::Accepted { conn, .. } => Some(*conn),
                    _ => None,
                })
            });
            cb.is_some() && net.ev_a.contains(&StackEvent::Connected(ca))
        });
        self.ev_a.clear();
        self.ev_b.clear();
        (ca, cb.unwrap())
    }

    /// Sends `data` one way and reads it all on the other side.
    fn transfer(&mut self, from_a: bool, from: ConnId, to: ConnId, data: &[u8]) {
        let (mut sent, mut got) = (0, Vec::new());
        let mut buf = vec![0u8; 65_536];
        self.run_until(Duration::from_secs(10), |net| {
            let (tx, rx) = if from_a {
                (&mut net.a, &mut net.b)
            } else {
                (&mut net.b, &mut net.a)
            };
            if sent < data.len() {
                sent += tx.send(from, &data[sent..]).unwrap();
            }
            loop {
                let n = rx.recv(to, &mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            got.len() == data.len()
        });
        assert!(got == data, "bytes arrive intact");
    }

    /// A closes, then B: both see `Closed`.
    fn close(&mut self, ca: ConnId, cb: ConnId) {
        self.a.close(ca).unwrap();
        self.run_until(Duration::from_secs(5), |net| {
            net.b.peer_closed(cb) == Ok(true)
        });
        self.b.close(cb).unwrap();
        self.run_until(Duration::from_secs(5), |net| {
            net.ev_a.contains(&StackEvent::Closed(ca)) && net.ev_b.contains(&StackEvent::Closed(cb))
        });
    }
}

/// A record of the file.
struct Rec {
    ts: std::time::Duration,
    orig_len: usize,
    data: Vec<u8>,
}

/// Reads a microsecond pcap file (little-endian, Ethernet), checking its global header.
fn read_pcap(path: &Path, snaplen: u32) -> Vec<Rec> {
    let b = std::fs::read(path).expect("read the capture file");
    assert!(b.len() >= 24, "a global header");
    let le32 = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    assert_eq!(le32(0), 0xa1b2_c3d4, "magic (microseconds)");
    assert_eq!(b[4..8], [2, 0, 4, 0], "version 2.4");
    assert_eq!(le32(16), snaplen, "snaplen");
    assert_eq!(le32(20), 1, "LINKTYPE_ETHERNET");
    let mut recs = Vec::new();
    let mut at = 24;
    while at < b.len() {
        assert!(at + 16 <= b.len(), "a whole record header at {at}");
        let (sec, usec) = (le32(at), le32(at + 4));
        assert!(usec < 1_000_000, "microseconds in range");
        let incl = le32(at + 8) as usize;
        let orig_len = le32(at + 12) as usize;
        assert!(incl <= snaplen as usize && incl <= orig_len);
        let start = at + 16;
        assert!(start + incl <= b.len(), "a whole record at {at}");
        recs.push(Rec {
            ts: std::time::Duration::new(u64::from(sec), usec * 1_000),
            orig_len,
            data: b[start..start + incl].to_vec(),
        });
        at = start + incl;
    }
    recs
}

/// The TCP view of a frame (IPv4 over Ethernet), if it is one.
#[derive(Debug)]
struct Seg {
    src_mac: [u8; 6],
    sport: u16,
    dport: u16,
    seq: u32,
    flags: u8,
    payload: Vec<u8>,
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

fn tcp(frame: &[u8]) -> Option<Seg> {
    if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ip[9] != 6 || total > ip.len() {
        return None;
    }
    let t = &ip[ihl..total];
    let be16 = |o: usize| u16::from_be_bytes([t[o], t[o + 1]]);
    let doff = usize::from(t[12] >> 4) * 4;
    Some(Seg {
        src_mac: frame[6..12].try_into().unwrap(),
        sport: be16(0),
        dport: be16(2),
        seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
        flags: t[13],
        payload: t[doff..].to_vec(),
    })
}

/// The byte stream one side sent, rebuilt from its segments by sequence number (a
/// retransmission overwrites with the same bytes).
fn stream(segs: &[&Seg]) -> Vec<u8> {
    let isn = segs
        .iter()
        .find(|s| s.flags & SYN != 0)
        .expect("a SYN in this direction")
        .seq;
    let mut out = Vec::new();
    for s in segs.iter().filter(|s| !s.payload.is_empty()) {
        let off = s.seq.wrapping_sub(isn.wrapping_add(1)) as usize;
        if out.len() < off + s.payload.len() {
            out.resize(off + s.payload.len(), 0);
        }
        out[off..off + s.payload.len()].copy_from_slice(&s.payload);
    }
    out
}

/// What a captured conversation was.
struct Conversation {
    up: Vec<u8>,
    down: Vec<u8>,
    /// A's client port.
    lport: u16,
    /// A's counters when the capture started and when it stopped.
    before: StackStats,
    after: StackStats,
    /// Simulated time the capture lasted.
    span: Duration,
}

/// Captures on A: a connection to B, data both ways (`payloads(A's port)`: A's bytes, B's
/// bytes), both sides close. Then the capture is taken off A, more traffic flows, and the
/// file is stopped; a stale handle set again afterwards records nothing either.
fn capture_conversation(
    path: &Path,
    tx_limit: Option<usize>,
    payloads: impl FnOnce(u16) -> (Vec<u8>, Vec<u8>),
) -> Conversation {
    let mut net = Net::new(tx_limit);
    net.b.listen(PORT).unwrap();
    net.settle();
    let pcap = PcapFile::create(path, CaptureConfig::default()).expect("create the capture");
    let start = net.now;
    let before = net.a.stats();
    let cap = pcap.capture(TimeBase::new(start, WALL));
    net.a.set_capture(Some(cap.clone()));
    assert!(net.a.capturing());

    let (ca, cb) = net.connect();
    let lport = net.a.endpoints(ca).unwrap().0;
    let (up, down) = payloads(lport);
    net.transfer(true, ca, cb, &up);
    net.transfer(false, cb, ca, &down);
    net.close(ca, cb);
    net.settle();

    net.a.set_capture(None);
    let after = net.a.stats();
    let span = net.now - start;
    assert!(!net.a.capturing());
    let captured = after.captured - before.captured;

    // Off: traffic is not recorded.
    let (ca, cb) = net.connect();
    net.transfer(true, ca, cb, b"after the capture");
    net.close(ca, cb);
    assert_eq!(
        net.a.stats().captured,
        after.captured,
        "not captured when off"
    );

    // Everything queued while on is in the file, and nothing else.
    let stats = pcap.stop().expect("stop the capture");
    assert_eq!(stats.written, captured);
    assert_eq!(stats.dropped, 0);
    let len = std::fs::metadata(path).unwrap().len();
    assert_eq!(stats.bytes, len, "the stats count the file's bytes");

    // A handle a worker still held after the stop: refused, let go of, nothing written.
    net.a.set_capture(Some(cap));
    let (ca, cb) = net.connect();
    net.close(ca, cb);
    assert!(!net.a.capturing(), "a stopped capture is let go of");
    assert_eq!(net.a.stats().captured, after.captured);
    assert_eq!(
        std::fs::metadata(path).unwrap().len(),
        len,
        "file unchanged"
    );

    Conversation {
        up,
        down,
        lport,
        before,
        after,
        span,
    }
}

/// Several segments each way.
fn bulk(_: u16) -> (Vec<u8>, Vec<u8>) {
    (pattern(1, 20_000), pattern(2, 7_000))
}

fn check_conversation(path: &Path, tx_limit: Option<usize>) {
    let conv = capture_conversation(path, tx_limit, bulk);
    let recs = read_pcap(path, 65_535);
    let (before, after) = (conv.before, conv.after);
    let sent = after.tx_frames - before.tx_frames;
    let received = after.rx_frames - before.rx_frames;
    assert_eq!(after.capture_dropped - before.capture_dropped, 0);
    assert_eq!(after.captured - before.captured, sent + received);
    assert_eq!(recs.len() as u64, sent + received, "one record per frame");

    // Frames A sent (its source MAC) and frames it received, each counted once.
    let from_a = recs.iter().filter(|r| r.data[6..12] == MAC_A.0).count() as u64;
    let from_b = recs.iter().filter(|r| r.data[6..12] == MAC_B.0).count() as u64;
    assert_eq!(
        (from_a, from_b),
        (sent, received),
        "sent and received frames"
    );

    // Whole frames, times from the capture's base onwards, in order.
    let mut last = WALL;
    for r in &recs {
        assert_eq!(r.orig_len, r.data.len(), "not truncated");
        assert!(r.ts >= last, "times do not go back");
        last = r.ts;
    }
    let end = WALL + std::time::Duration::from_micros(conv.span.total_micros());
    assert!(last <= end, "{last:?} after the capture ended ({end:?})");

    // The conversation, in order.
    let segs: Vec<Seg> = recs.iter().filter_map(|r| tcp(&r.data)).collect();
    let up: Vec<&Seg> = segs
        .iter()
        .filter(|s| s.sport == conv.lport && s.dport == PORT && s.src_mac == MAC_A.0)
        .collect();
    let down: Vec<&Seg> = segs
        .iter()
        .filter(|s| s.sport == PORT && s.dport == conv.lport && s.src_mac == MAC_B.0)
        .collect();
    assert_eq!(
        up.len() + down.len(),
        segs.len(),
        "only this connection's segments"
    );
    let pos = |pred: &dyn Fn(&Seg) -> bool| {
        segs.iter()
            .position(pred)
            .unwrap_or_else(|| panic!("segment missing from {segs:#?}"))
    };
    let a_to_b = |s: &Seg| s.sport == conv.lport;
    let syn = pos(&|s| a_to_b(s) && s.flags & (SYN | ACK) == SYN);
    let syn_ack = pos(&|s| !a_to_b(s) && s.flags & (SYN | ACK) == SYN | ACK);
    let data_up = pos(&|s| a_to_b(s) && !s.payload.is_empty());
    let data_down = pos(&|s| !a_to_b(s) && !s.payload.is_empty());
    let fin_a = pos(&|s| a_to_b(s) && s.flags & FIN != 0);
    let fin_b = pos(&|s| !a_to_b(s) && s.flags & FIN != 0);
    assert!(
        syn < syn_ack && syn_ack < data_up && data_up < data_down && data_down < fin_a,
        "SYN {syn}, SYN-ACK {syn_ack}, data {data_up} then {data_down}, FIN {fin_a}"
    );
    assert!(fin_a < fin_b, "A closed first: FIN {fin_a} then {fin_b}");
    assert!(stream(&up) == conv.up, "A's bytes as sent");
    assert!(stream(&down) == conv.down, "B's bytes as sent");
}

#[test]
fn capture_records_a_conversation_both_ways() {
    let tmp = TempFile::new("conversation");
    check_conversation(tmp.path(), None);
}

/// A device that takes two frames per burst: the rest wait in the stack's queue, and each
/// frame is still recorded once, when first offered.
#[test]
fn frames_the_device_refused_are_recorded_once() {
    let tmp = TempFile::new("stingy");
    check_conversation(tmp.path(), Some(2));
}

/// A connection to our own address never reaches the port: each of its packets appears
/// once, as it loops back.
#[test]
fn looped_back_packets_are_recorded_once() {
    let tmp = TempFile::new("looped");
    let mut net = Net::new(None);
    net.b.listen(PORT).unwrap();
    let pcap = PcapFile::create(tmp.path(), CaptureConfig::default()).unwrap();
    let before = net.b.stats();
    net.b
        .set_capture(Some(pcap.capture(TimeBase::new(net.now, WALL))));
    let c = net.b.connect(ep_b()).unwrap();
    let mut server = None;
    net.run_until(Duration::from_secs(2), |net| {
        server = server.or_else(|| {
            net.ev_b.iter().find_map(|e| match e {
                StackEvent::Accepted { conn, .. } => Some(*conn),
                _ => None,
            })
        });
        server.is_some() && net.ev_b.contains(&StackEvent::Connected(c))
    });
    let s = server.unwrap();
    let data = pattern(3, 5_000);
    let mut buf = vec![0u8; 8_192];
    let mut got = Vec::new();
    assert_eq!(net.b.send(c, &data).unwrap(), data.len());
    net.run_until(Duration::from_secs(2), |net| {
        let n = net.b.recv(s, &mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
        got.len() == data.len()
    });
    net.b.set_capture(None);
    let after = net.b.stats();
    let stats = pcap.stop().unwrap();

    let looped = after.looped - before.looped;
    assert!(looped >= 4, "{after:?}");
    assert_eq!(
        after.tx_frames, before.tx_frames,
        "nothing through the port"
    );
    assert_eq!(stats.written, looped + (after.rx_frames - before.rx_frames));
    let recs = read_pcap(tmp.path(), 65_535);
    assert_eq!(recs.len() as u64, stats.written);
    let segs: Vec<Seg> = recs.iter().filter_map(|r| tcp(&r.data)).collect();
    let syns = segs.iter().filter(|s| s.flags & (SYN | ACK) == SYN).count();
    assert_eq!(syns, 1, "the SYN once");
    let mut seen: Vec<(u16, u32, u8, usize)> = segs
        .iter()
        .filter(|s| !s.payload.is_empty())
        .map(|s| (s.sport, s.seq, s.flags, s.payload.len()))
        .collect();
    let n = seen.len();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), n, "no data segment twice");
    let client: Vec<&Seg> = segs.iter().filter(|s| s.dport == PORT).collect();
    assert!(stream(&client) == data, "the bytes as sent");
}

/// Whether tshark can run here; if not, says so and lets the test pass, unless
/// `MSGR_REQUIRE_INTEROP=1`.
fn have_tshark(test: &str) -> bool {
    if Command::new("tshark").arg("--version").output().is_ok() {
        return true;
    }
    let required = std::env::var("MSGR_REQUIRE_INTEROP").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{test}: tshark not installed (MSGR_REQUIRE_INTEROP=1)"
    );
    println!("SKIPPED {test}: tshark not installed");
    false
}

/// Runs tshark on a capture file with `args`; its standard output. Fails on an error or a
/// complaint about the file.
fn tshark(path: &Path, args: &[&str]) -> String {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args(args)
        .output()
        .expect("run tshark");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tshark {args:?} failed: {stderr}");
    // (tshark warns on stderr when run as root; only complaints about the file matter.)
    for bad in ["damaged", "corrupt", "isn't a capture file", "cut short"] {
        assert!(!stderr.contains(bad), "tshark: {stderr}");
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// tshark reads the file and sees the TCP conversation.
#[test]
fn tshark_reads_the_capture() {
    if !have_tshark("tshark_reads_the_capture") {
        return;
    }
    let tmp = TempFile::new("tshark");
    let conv = capture_conversation(tmp.path(), None, bulk);
    let records = read_pcap(tmp.path(), 65_535).len();

    let stdout = tshark(
        tmp.path(),
        &[
            "-T",
            "fields",
            "-E",
            "separator=/t",
            "-e",
            "frame.number",
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.len",
            "-e",
            "tcp.flags.syn",
            "-e",
            "tcp.flags.fin",
        ],
    );
    let lines: Vec<Vec<&str>> = stdout.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), records, "tshark sees every record:\n{stdout}");
    let (mut up, mut down, mut syns, mut fins) = (0usize, 0usize, 0, 0);
    for f in lines.iter().filter(|f| f.len() == 5 && !f[1].is_empty()) {
        let len: usize = f[2].parse().expect("tcp.len");
        if f[1] == conv.lport.to_string() {
            up += len;
        } else {
            assert_eq!(f[1], PORT.to_string());
            down += len;
        }
        syns += usize::from(f[3] == "1" || f[3] == "True");
        fins += usize::from(f[4] == "1" || f[4] == "True");
    }
    assert_eq!(up, conv.up.len(), "tshark's A -> B payload:\n{stdout}");
    assert_eq!(down, conv.down.len(), "tshark's B -> A payload:\n{stdout}");
    assert_eq!((syns, fins), (2, 2), "SYN and SYN-ACK, two FINs:\n{stdout}");
    let malformed = tshark(
        tmp.path(),
        &["-Y", "_ws.malformed || _ws.expert.severity >= error"],
    );
    assert!(malformed.is_empty(), "tshark finds errors:\n{malformed}");
}

/// A Ceph (msgr v1) legacy entity_addr_t: type, nonce, then a sockaddr_storage with the
/// family in network byte order.
fn entity_addr(ip: Ipv4Address, port: u16) -> Vec<u8> {
    let mut a = vec![0u8; 136];
    a[8..10].copy_from_slice(&2u16.to_be_bytes());
    a[10..12].copy_from_slice(&port.to_be_bytes());
    a[12..16].copy_from_slice(&ip.octets());
    a
}

/// tshark's Ceph dissector finds the banner exchange of a Ceph connection in the capture
/// (the client's banner and address; the server's banner, its address, and the client's
/// as the server sees it).
#[test]
fn tshark_dissects_ceph_in_the_capture() {
    if !have_tshark("tshark_dissects_ceph_in_the_capture") {
        return;
    }
    let tmp = TempFile::new("ceph");
    let conv = capture_conversation(tmp.path(), None, |lport| {
        let mut client = b"ceph v027".to_vec();
        client.extend(entity_addr(ip_a(), lport));
        let mut server = b"ceph v027".to_vec();
        server.extend(entity_addr(ip_b(), PORT));
        server.extend(entity_addr(ip_a(), lport));
        (client, server)
    });
    let stdout = tshark(
        tmp.path(),
        &[
            "-Y",
            "ceph",
            "-T",
            "fields",
            "-E",
            "separator=/t",
            "-E",
            "aggregator=,",
            "-e",
            "ceph.ver",
            "-e",
            "ceph.client.ip4",
            "-e",
            "ceph.client.port",
        ],
    );
    let expect = format!("ceph v027\t10.0.0.2,10.0.0.1\t{PORT},{}", conv.lport);
    assert!(
        stdout.lines().any(|l| l == expect),
        "the server's banner, dissected as Ceph: want {expect:?} in\n{stdout}"
    );
}
