//! The attacks of `bench hostile`: hostile msgr v1 peers on raw TCP sockets (std::net).
//!
//! Every attack is a set of bounded loops: each runs until the attack's deadline (or a
//! count bound) and stops by itself; every socket has connect, read and write timeouts.
//! Each attack returns its own tally of what it did and what it saw (connections made,
//! closed by the daemon, replies by tag); the daemon's side of the story is in its
//! `perf dump`, which the caller compares.
//!
//! | attack | what the peer does | what the daemon must show |
//! |---|---|---|
//! | garbage | random bytes instead of a banner; a banner then a garbage address; a whole handshake then a garbage stream | `bad_banner`, `decode`, `unknown_tag` faults |
//! | slowloris | a valid handshake at one byte per second; connections that send nothing; many at once, reopened when closed | `ready_timeout` faults |
//! | oversized | a message header claiming a front or data segment beyond the limits; an authorizer_len beyond its limit | `too_large` faults |
//! | bad-crc | a good handshake, then messages with a bad header, front or data CRC | `bad_crc` faults |
//! | flood | TCP connections as fast as possible, half held (more than the daemon's handshake bound), half abandoned | `accepts`, `handshakes_evicted` (or `ready_timeout` faults, if the daemon accepts too slowly for the bound) |
//! | reconnect-storm | handshakes reusing one entity address with stale global_seq / connect_seq, hard resets, unknown sessions reconnecting, one socket looping on stale connects | RETRY_GLOBAL, RETRY_SESSION and RESETSESSION replies, replaced sessions, `misbehaved` faults |
//! | throttle-hold (not run by default) | message headers claiming lengths *within* the limits (64 MiB, 32 MiB, ... 1 B: a ladder that fills any budget to the byte), bodies never sent; each claim made again on a new session when the daemon cuts it | `throttle_waits` (honest messages wait for the budget the claims hold) and `body_timeout` faults (the daemon cuts them) |
//!
//! The last is defended only in part. The messenger takes a message's throttle budget
//! when its header arrives (as Ceph does, so that it never reads more than the budget);
//! Ceph keeps it until the session's idle timeout (900 s) if the body never comes, while
//! msgr cuts a connection whose body stops arriving after `--body-timeout`. A peer that
//! claims again at once still makes honest messages wait up to that long, over and over:
//! Ceph closes the door with authentication (cephx) before any message is read; with auth
//! none, anyone can. `bench hostile --attacks throttle-hold` shows it.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use msgr::crc::ceph_crc32c;
use msgr::entity::{EntityAddr, EntityType};
use msgr::features;
use msgr::msg::{MessageHeader, MsgType};
use msgr::wire::banner::{BANNER, SERVER_HELLO_LEN};
use msgr::wire::{ConnectReply, ConnectReplyRepr, ConnectRepr, HeaderRepr, Tag};

/// Bound on one connect, read or write.
const IO_LIMIT: Duration = Duration::from_secs(1);
/// How long an attacker waits for the daemon to close a socket it sent poison on.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// The port attackers claim in their addresses (never dialed: the sessions are lossy, or
/// lossless ones that park in standby).
const FAKE_PORT: u16 = 9;
/// The daemon's limits (msgr's defaults): the oversized attack goes one beyond.
const MAX_FRONT: u32 = 64 << 20;
const MAX_DATA: u32 = 256 << 20;
const MAX_AUTHORIZER: u32 = 4096;
/// Connects a server takes on one socket (msgr's `max_connect_attempts` default); the
/// storm's hammer goes past it.
const MAX_CONNECTS: usize = 32;

/// The attacks, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub(crate) enum Kind {
    Garbage,
    Slowloris,
    Oversized,
    BadCrc,
    Flood,
    ReconnectStorm,
    ThrottleHold,
}

impl Kind {
    /// The defended attacks, run by default, in order.
    pub(crate) const ALL: [Self; 6] = [
        Self::Garbage,
        Self::Slowloris,
        Self::Oversized,
        Self::BadCrc,
        Self::Flood,
        Self::ReconnectStorm,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Garbage => "garbage",
            Self::Slowloris => "slowloris",
            Self::Oversized => "oversized",
            Self::BadCrc => "bad-crc",
            Self::Flood => "flood",
            Self::ReconnectStorm => "reconnect-storm",
            Self::ThrottleHold => "throttle-hold",
        }
    }

    /// The `perf dump` counters (paths under the `msgr` section) that show the attack: in
    /// each group at least one must have moved for the attack to count as seen. (A flood's
    /// held sockets are closed by the handshake bound or, if the flood is too slow to reach
    /// it — the simple transport accepts slowly, a thread pair per connection — by the
    /// ready timeout.)
    pub(crate) fn trace(self) -> &'static [&'static [&'static str]] {
        match self {
            Self::Garbage => &[
                &["faults.bad_banner"],
                &["faults.decode"],
                &["faults.unknown_tag"],
            ],
            Self::Slowloris => &[&["faults.ready_timeout"]],
            Self::Oversized => &[&["faults.too_large"]],
            Self::BadCrc => &[&["faults.bad_crc"]],
            Self::Flood => &[
                &["accepts"],
                &["handshakes_evicted", "faults.ready_timeout"],
            ],
            Self::ReconnectStorm => &[
                &["accept_replies.retry_global"],
                &["accept_replies.retry_session"],
                &["accept_replies.reset_session"],
                &["replaced"],
                &["faults.misbehaved"],
            ],
            Self::ThrottleHold => &[&["throttle_waits"], &["faults.body_timeout"]],
        }
    }
}

/// How many sockets the attacks use.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sizing {
    /// Slowloris connections held at once.
    pub(crate) slowloris: usize,
    /// Flood threads.
    pub(crate) flood_threads: usize,
    /// Flood connections held at once (beyond the daemon's handshake bound).
    pub(crate) flood_hold: usize,
    /// Most connections one flood opens.
    pub(crate) flood_max: u64,
}

/// Where the attacks aim, and what they know of the daemon.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
}

/// What an attack did and saw, by name.
pub(crate) type Tally = BTreeMap<&'static str, u64>;

fn add(t: &mut Tally, k: &'static str, n: u64) {
    *t.entry(k).or_insert(0) += n;
}

fn merge(into: &mut Tally, from: Tally) {
    for (k, v) in from {
        add(into, k, v);
    }
}

/// A small PRNG (xorshift64*): attack bytes need not be good randomness, only varied.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Seeds differ per thread and per run.
fn seed(k: u64) -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(std::process::id())
}

/// Runs attack `kind` against `t` until `until`, on threads at nice value `nice` (the
/// honest client's stay at the runner's).
pub(crate) fn run(kind: Kind, t: Target, until: Instant, sz: Sizing, nice: u8) -> Tally {
    std::thread::scope(|sc| {
        let h = sc.spawn(move || {
            // Threads this one spawns inherit its nice value.
            if nice > 0 {
                if let Err(e) = renice_this_thread(nice) {
                    eprintln!("bench hostile: attackers keep the runner's priority: {e}");
                }
            }
            match kind {
                Kind::Garbage => garbage(t, until),
                Kind::Slowloris => slowloris(t, until, sz.slowloris),
                Kind::Oversized => oversized(t, until),
                Kind::BadCrc => bad_crc(t, until),
                Kind::Flood => flood(t, until, sz),
                Kind::ReconnectStorm => storm(t, until),
                Kind::ThrottleHold => throttle_hold(t, until),
            }
        });
        h.join().unwrap_or_else(|_| {
            let mut t = Tally::new();
            add(&mut t, "attack_panicked", 1);
            t
        })
    })
}

/// Sets the calling thread's nice value with renice(1) (Linux keeps nice per thread; the
/// thread id comes from /proc/thread-self).
fn renice_this_thread(nice: u8) -> Result<(), String> {
    let link = std::fs::read_link("/proc/thread-self").map_err(|e| e.to_string())?;
    let tid = link
        .file_name()
        .and_then(|t| t.to_str())
        .ok_or_else(|| format!("/proc/thread-self -> {}", link.display()))?;
    super::netns::run("renice", &["-n", &nice.to_string(), "-p", tid])
}

// ---- raw msgr v1 client pieces ----

fn dial(t: Target) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&t.addr, IO_LIMIT)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(IO_LIMIT))?;
    s.set_write_timeout(Some(IO_LIMIT))?;
    Ok(s)
}

/// Our legacy address as a v1 peer: the socket's IP, a fake port, `nonce`.
fn my_addr(s: &TcpStream, nonce: u32) -> EntityAddr {
    let ip = s
        .local_addr()
        .map_or(IpAddr::from([127, 0, 0, 1]), |a| a.ip());
    EntityAddr::v1(SocketAddr::new(ip, FAKE_PORT), nonce)
}

/// Reads the server's banner and addresses, sends ours.
fn hello(s: &mut TcpStream, nonce: u32) -> io::Result<()> {
    let mut b = [0u8; SERVER_HELLO_LEN];
    s.read_exact(&mut b)?;
    if &b[..BANNER.len()] != BANNER {
        return Err(io::Error::other("not a msgr v1 server"));
    }
    let mut out = BANNER.to_vec();
    out.extend_from_slice(&my_addr(s, nonce).to_legacy());
    s.write_all(&out)
}

/// A connect as an entity of type `ty` (client: OSD client protocol 24; osd: cluster 10).
fn connect_msg(ty: EntityType, global_seq: u32, connect_seq: u32) -> ConnectRepr {
    ConnectRepr {
        features: features::PACIFIC_ALL,
        host_type: ty,
        global_seq,
        connect_seq,
        protocol_version: if ty == EntityType::OSD { 10 } else { 24 },
        authorizer_protocol: 0,
        authorizer_len: 0,
        flags: 0,
    }
}

/// Reads a connect reply (and its authorizer, bounded).
fn read_reply(s: &mut TcpStream) -> io::Result<ConnectReplyRepr> {
    let mut b = [0u8; ConnectReplyRepr::LEN];
    s.read_exact(&mut b)?;
    let r = ConnectReplyRepr::parse(&ConnectReply::new_unchecked(&b[..]))
        .map_err(|e| io::Error::other(e.to_string()))?;
    if r.authorizer_len > MAX_AUTHORIZER {
        return Err(io::Error::other("oversized authorizer reply"));
    }
    let mut auth = vec![0u8; r.authorizer_len as usize];
    s.read_exact(&mut auth)?;
    Ok(r)
}

/// After READY or SEQ: the SEQ exchange, if any; the session is open.
fn finish_open(s: &mut TcpStream, r: &ConnectReplyRepr) -> io::Result<()> {
    if r.tag == Tag::Seq {
        let mut acked = [0u8; 8];
        s.read_exact(&mut acked)?;
        s.write_all(&0u64.to_le_bytes())?;
    }
    Ok(())
}

/// A new open session as a client with `nonce` (the daemon's client policy: lossy).
fn open_session(t: Target, nonce: u32) -> io::Result<TcpStream> {
    let mut s = dial(t)?;
    hello(&mut s, nonce)?;
    s.write_all(&connect_msg(EntityType::CLIENT, 1, 0).emit())?;
    let r = read_reply(&mut s)?;
    match r.tag {
        Tag::Seq | Tag::Ready => {
            finish_open(&mut s, &r)?;
            Ok(s)
        }
        other => Err(io::Error::other(format!("session refused: {other:?}"))),
    }
}

/// Whether the daemon closes `s` within `limit` (reading and dropping what it sends).
fn closed_by_daemon(s: &mut TcpStream, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

/// Whether a non-blocking socket was closed by its peer (without waiting).
fn gone(mut s: &TcpStream) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

/// Which CRC of a message frame to spoil.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Spoil {
    Header,
    Front,
    Data,
}

/// A MSG frame (tag, header, payload, 21-byte footer) of an MPing-typed message.
fn msg_frame(seq: u64, front: &[u8], data: &[u8], spoil: Option<Spoil>) -> Vec<u8> {
    let mut h = MessageHeader::new(MsgType::PING, 1, 1);
    h.seq = seq;
    let repr = HeaderRepr {
        header: h,
        front_len: front.len() as u32,
        middle_len: 0,
        data_len: data.len() as u32,
    };
    let mut header = repr.emit(true);
    if spoil == Some(Spoil::Header) {
        header[HeaderRepr::LEN - 1] ^= 0x5a;
    }
    let mut b = vec![u8::from(Tag::Msg)];
    b.extend_from_slice(&header);
    b.extend_from_slice(front);
    b.extend_from_slice(data);
    let flip = |what: Spoil, crc: u32| if spoil == Some(what) { crc ^ 1 } else { crc };
    b.extend_from_slice(&flip(Spoil::Front, ceph_crc32c(0, front)).to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&flip(Spoil::Data, ceph_crc32c(0, data)).to_le_bytes());
    b.extend_from_slice(&[0; 8]);
    b.push(1); // COMPLETE
    b
}

/// A message header claiming the given segment lengths (nothing follows it).
fn header_claiming(front_len: u32, data_len: u32) -> Vec<u8> {
    let repr = HeaderRepr {
        header: MessageHeader::new(MsgType::PING, 1, 1),
        front_len,
        middle_len: 0,
        data_len,
    };
    let mut b = vec![u8::from(Tag::Msg)];
    b.extend_from_slice(&repr.emit(true));
    b
}

/// Nonces for attacking clients: distinct per run and per connection.
fn next_nonce() -> u32 {
    static N: AtomicU32 = AtomicU32::new(0);
    let base = (std::process::id() << 12) | 0x8000_0000;
    // Odd (never 0, what monitors use) and distinct: sessions are keyed by address.
    base.wrapping_add(2 * N.fetch_add(1, Ordering::Relaxed) + 1)
}

/// Runs `f(i, tally)` on `threads` threads until each returns; merges their tallies.
fn on_threads(threads: usize, f: impl Fn(usize, &mut Tally) + Sync) -> Tally {
    let f = &f;
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..threads)
            .map(|i| {
                sc.spawn(move || {
                    let mut t = Tally::new();
                    f(i, &mut t);
                    t
                })
            })
            .collect();
        let mut all = Tally::new();
        for h in hs {
            if let Ok(t) = h.join() {
                merge(&mut all, t);
            }
        }
        all
    })
}

/// Counts a connection whose poison the daemon should answer by closing it.
fn poisoned(t: &mut Tally, s: &mut TcpStream) {
    add(t, "connections", 1);
    if closed_by_daemon(s, CLOSE_WAIT) {
        add(t, "closed_by_daemon", 1);
    } else {
        add(t, "left_open_by_daemon", 1);
    }
}

// ---- the attacks ----

fn garbage(t: Target, until: Instant) -> Tally {
    on_threads(3, |i, tally| {
        let mut rng = Rng::new(seed(i as u64));
        while Instant::now() < until {
            let r = match i {
                // Random bytes instead of a banner (never starting with "ceph").
                0 => dial(t).and_then(|mut s| {
                    let n = 9 + rng.below(512) as usize;
                    let mut b = rng.bytes(n);
                    b[0] = b'G';
                    s.write_all(&b)?;
                    add(tally, "bytes_sent", n as u64);
                    Ok(s)
                }),
                // A good banner, then garbage where the address should be (its first
                // byte is no address marker).
                1 => dial(t).and_then(|mut s| {
                    let mut hello = [0u8; SERVER_HELLO_LEN];
                    s.read_exact(&mut hello)?;
                    let mut b = BANNER.to_vec();
                    let n = 136 + rng.below(64) as usize;
                    let mut junk = rng.bytes(n);
                    junk[0] = 0xff;
                    b.extend_from_slice(&junk);
                    s.write_all(&b)?;
                    add(tally, "bytes_sent", b.len() as u64);
                    Ok(s)
                }),
                // A whole handshake, then a garbage stream (an undefined tag first).
                _ => open_session(t, next_nonce()).and_then(|mut s| {
                    let n = 64 + rng.below(256) as usize;
                    let mut b = rng.bytes(n);
                    b[0] = 0xee;
                    s.write_all(&b)?;
                    add(tally, "bytes_sent", b.len() as u64);
                    Ok(s)
                }),
            };
            match r {
                Ok(mut s) => poisoned(tally, &mut s),
                Err(_) => add(tally, "errors", 1),
            }
        }
    })
}

/// One slowloris connection: the bytes it still has to trickle (none: it sends nothing).
struct Loris {
    sock: TcpStream,
    script: Vec<u8>,
    at: usize,
}

fn loris(t: Target, trickle: bool) -> io::Result<Loris> {
    let sock = dial(t)?;
    let script = if trickle {
        let mut b = BANNER.to_vec();
        b.extend_from_slice(&my_addr(&sock, next_nonce()).to_legacy());
        b.extend_from_slice(&connect_msg(EntityType::CLIENT, 1, 0).emit());
        b
    } else {
        Vec::new()
    };
    sock.set_nonblocking(true)?;
    Ok(Loris {
        sock,
        script,
        at: 0,
    })
}

fn slowloris(t: Target, until: Instant, n: usize) -> Tally {
    let mut tally = Tally::new();
    // Half trickle a valid handshake one byte a second, half send nothing.
    let mut held: Vec<Option<Loris>> = (0..n).map(|_| None).collect();
    let mut next_byte = Instant::now();
    while Instant::now() < until {
        for (k, slot) in held.iter_mut().enumerate() {
            if let Some(l) = slot {
                if gone(&l.sock) {
                    add(&mut tally, "closed_by_daemon", 1);
                    *slot = None;
                }
            }
            if slot.is_none() {
                match loris(t, k % 2 == 0) {
                    Ok(l) => {
                        add(&mut tally, "connections", 1);
                        *slot = Some(l);
                    }
                    Err(_) => add(&mut tally, "errors", 1),
                }
            }
        }
        if Instant::now() >= next_byte {
            next_byte += Duration::from_secs(1);
            for l in held.iter_mut().flatten() {
                if l.at < l.script.len()
                    && l.sock.write(&l.script[l.at..=l.at]).is_ok_and(|n| n == 1)
                {
                    l.at += 1;
                    add(&mut tally, "bytes_sent", 1);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let still = held.iter().flatten().count() as u64;
    add(&mut tally, "open_at_end", still);
    tally
}

fn oversized(t: Target, until: Instant) -> Tally {
    on_threads(2, |i, tally| {
        let mut k = i;
        while Instant::now() < until {
            k += 2;
            let r = match k % 4 {
                // A message header claiming a front one byte beyond the limit.
                0 => open_session(t, next_nonce()).and_then(|mut s| {
                    s.write_all(&header_claiming(MAX_FRONT + 1, 0))?;
                    Ok(s)
                }),
                // ... a data segment beyond the limit.
                1 => open_session(t, next_nonce()).and_then(|mut s| {
                    s.write_all(&header_claiming(0, MAX_DATA + 1))?;
                    Ok(s)
                }),
                // ... every length at its largest.
                2 => open_session(t, next_nonce()).and_then(|mut s| {
                    s.write_all(&header_claiming(u32::MAX, u32::MAX))?;
                    Ok(s)
                }),
                // An authorizer longer than allowed (one beyond, or 4 GiB).
                _ => dial(t).and_then(|mut s| {
                    hello(&mut s, next_nonce())?;
                    let mut c = connect_msg(EntityType::CLIENT, 1, 0);
                    c.authorizer_protocol = 1;
                    c.authorizer_len = if k % 8 < 4 {
                        MAX_AUTHORIZER + 1
                    } else {
                        u32::MAX
                    };
                    s.write_all(&c.emit())?;
                    Ok(s)
                }),
            };
            match r {
                Ok(mut s) => poisoned(tally, &mut s),
                Err(_) => add(tally, "errors", 1),
            }
        }
    })
}

fn bad_crc(t: Target, until: Instant) -> Tally {
    on_threads(2, |i, tally| {
        let mut rng = Rng::new(seed(100 + i as u64));
        let mut k = i;
        while Instant::now() < until {
            k += 2;
            let spoil = [Spoil::Header, Spoil::Front, Spoil::Data][k % 3];
            let r = open_session(t, next_nonce()).and_then(|mut s| {
                // A good message first: the session is really open and working.
                s.write_all(&msg_frame(1, &[], &rng.bytes(16), None))?;
                let (nf, nd) = (rng.below(256) as usize, 1 + rng.below(4096) as usize);
                let front = rng.bytes(nf);
                let data = rng.bytes(nd);
                s.write_all(&msg_frame(2, &front, &data, Some(spoil)))?;
                Ok(s)
            });
            match r {
                Ok(mut s) => poisoned(tally, &mut s),
                Err(_) => add(tally, "errors", 1),
            }
        }
    })
}

fn flood(t: Target, until: Instant, sz: Sizing) -> Tally {
    let held: Mutex<VecDeque<TcpStream>> = Mutex::new(VecDeque::new());
    let opened = AtomicU64::new(0);
    let mut tally = on_threads(sz.flood_threads.max(1), |i, tally| {
        let mut k = i as u64;
        while Instant::now() < until && opened.fetch_add(1, Ordering::Relaxed) < sz.flood_max {
            k += 1;
            match TcpStream::connect_timeout(&t.addr, IO_LIMIT) {
                Ok(mut s) => {
                    add(tally, "connections", 1);
                    match k % 4 {
                        // Held, sending nothing (the oldest let go beyond the cap).
                        0 | 1 => {
                            let _ = s.set_nonblocking(true);
                            let mut h = held.lock().unwrap_or_else(|e| e.into_inner());
                            h.push_back(s);
                            if h.len() > sz.flood_hold {
                                h.pop_front();
                            }
                        }
                        // Abandoned at once.
                        2 => drop(s),
                        // Abandoned after the banner.
                        _ => {
                            let _ = s.write_all(BANNER);
                        }
                    }
                }
                Err(_) => {
                    add(tally, "errors", 1);
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    });
    let h = held.into_inner().unwrap_or_else(|e| e.into_inner());
    let closed = h.iter().filter(|s| gone(s)).count() as u64;
    add(&mut tally, "held_at_end", h.len() as u64);
    add(&mut tally, "held_closed_by_daemon", closed);
    tally
}

/// Sessions whose message headers claim 64 MiB, 32 MiB, ... 1 byte of front, bodies never
/// sent: whatever the daemon's budget, the claims that fit fill it to the byte. A claim the
/// daemon cuts is made again on a new session.
fn throttle_hold(t: Target, until: Instant) -> Tally {
    let mut tally = Tally::new();
    let claim = |k: u32, tally: &mut Tally| {
        let r = open_session(t, next_nonce()).and_then(|mut s| {
            s.write_all(&header_claiming(1 << k, 0))?;
            s.set_nonblocking(true)?;
            Ok(s)
        });
        match r {
            Ok(s) => {
                add(tally, "connections", 1);
                add(tally, "bytes_claimed", 1 << k);
                Some(s)
            }
            Err(_) => {
                add(tally, "errors", 1);
                None
            }
        }
    };
    let mut held: Vec<(u32, Option<TcpStream>)> = (0..=26u32)
        .rev()
        .map(|k| (k, claim(k, &mut tally)))
        .collect();
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
        for (k, s) in &mut held {
            if s.as_ref().is_none_or(gone) {
                if s.is_some() {
                    add(&mut tally, "closed_by_daemon", 1);
                }
                *s = claim(*k, &mut tally);
            }
        }
    }
    tally
}

/// What the storm's threads share about the one session they fight over.
struct Victim {
    nonce: u32,
    /// Fresh global_seqs.
    gseq: AtomicU32,
    /// The session's connect_seq as last learned.
    cseq: AtomicU32,
}

/// One socket's connects as the victim until the session opens, the daemon closes the
/// socket, or [`MAX_CONNECTS`]` / 4` connects went by. `first` is the first connect's
/// (global_seq, connect_seq).
fn reconnect(t: Target, v: &Victim, first: (u32, u32), tally: &mut Tally) -> io::Result<()> {
    let mut s = dial(t)?;
    add(tally, "connections", 1);
    hello(&mut s, v.nonce)?;
    let (mut g, mut c) = first;
    for _ in 0..MAX_CONNECTS / 4 {
        s.write_all(&connect_msg(EntityType::OSD, g, c).emit())?;
        add(tally, "connects", 1);
        let r = read_reply(&mut s)?;
        match r.tag {
            Tag::RetryGlobal => {
                add(tally, "replies_retry_global", 1);
                v.gseq.fetch_max(r.global_seq, Ordering::Relaxed);
                g = v.gseq.fetch_add(1, Ordering::Relaxed) + 1;
            }
            Tag::RetrySession => {
                add(tally, "replies_retry_session", 1);
                c = r.connect_seq;
                v.cseq.fetch_max(c, Ordering::Relaxed);
            }
            Tag::ResetSession => {
                add(tally, "replies_reset_session", 1);
                c = 0;
            }
            Tag::Seq | Tag::Ready => {
                add(tally, "sessions_opened", 1);
                finish_open(&mut s, &r)?;
                v.cseq.store(r.connect_seq, Ordering::Relaxed);
                // Hang up: the (lossless) session parks, to be fought over again.
                return Ok(());
            }
            _ => {
                add(tally, "replies_other", 1);
                return Ok(());
            }
        }
    }
    Ok(())
}

fn storm(t: Target, until: Instant) -> Tally {
    let v = Victim {
        nonce: next_nonce(),
        gseq: AtomicU32::new(1000),
        cseq: AtomicU32::new(0),
    };
    on_threads(3, |i, tally| {
        let mut round = 0u32;
        while Instant::now() < until {
            round += 1;
            let fresh = || v.gseq.fetch_add(1, Ordering::Relaxed) + 1;
            let known = v.cseq.load(Ordering::Relaxed);
            let r = match (i, round % 4) {
                // Two threads reconnect the one session, racing each other: as its peer
                // would (the known connect_seq), with a stale global_seq, with a stale
                // connect_seq, and as a peer that restarted (connect_seq 0: a replace).
                (0 | 1, 0) => reconnect(t, &v, (fresh(), known), tally),
                (0 | 1, 1) => reconnect(t, &v, (1, known), tally),
                (0 | 1, 2) => reconnect(t, &v, (fresh(), known.saturating_sub(1).max(1)), tally),
                (0 | 1, _) => reconnect(t, &v, (fresh(), 0), tally),
                // Sessions the daemon never had, reconnecting: RESETSESSION.
                (_, 0..=2) => dial(t).and_then(|mut s| {
                    add(tally, "connections", 1);
                    hello(&mut s, next_nonce())?;
                    s.write_all(&connect_msg(EntityType::OSD, fresh(), 7).emit())?;
                    add(tally, "connects", 1);
                    let r = read_reply(&mut s)?;
                    if r.tag == Tag::ResetSession {
                        add(tally, "replies_reset_session", 1);
                    }
                    Ok(())
                }),
                // One socket looping on stale connects, each answered, past what the
                // daemon takes on one socket.
                _ => dial(t).and_then(|mut s| {
                    add(tally, "connections", 1);
                    add(tally, "hammer_sockets", 1);
                    hello(&mut s, v.nonce)?;
                    for _ in 0..MAX_CONNECTS + 8 {
                        let sent = s
                            .write_all(&connect_msg(EntityType::OSD, 1, 1).emit())
                            .and_then(|()| read_reply(&mut s));
                        if sent.is_err() {
                            add(tally, "hammer_closed_by_daemon", 1);
                            break;
                        }
                        add(tally, "connects", 1);
                    }
                    Ok(())
                }),
            };
            if r.is_err() {
                add(tally, "errors", 1);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use msgr::wire::Header;

    #[test]
    fn spoiled_frames_differ_only_where_spoiled() {
        let good = msg_frame(1, b"front", b"data", None);
        let h = HeaderRepr::parse(&Header::new_unchecked(&good[1..1 + HeaderRepr::LEN]), true)
            .expect("a good header");
        assert_eq!((h.front_len, h.data_len), (5, 4));
        for (spoil, at) in [
            (Spoil::Header, HeaderRepr::LEN),
            (Spoil::Front, 1 + HeaderRepr::LEN + 9),
            (Spoil::Data, 1 + HeaderRepr::LEN + 9 + 8),
        ] {
            let bad = msg_frame(1, b"front", b"data", Some(spoil));
            let diff: Vec<usize> = (0..good.len()).filter(|&i| good[i] != bad[i]).collect();
            assert_eq!(diff, vec![at], "only the spoiled CRC changes");
        }
        assert!(HeaderRepr::parse(
            &Header::new_unchecked(&msg_frame(1, b"", b"", Some(Spoil::Header))[1..54]),
            true
        )
        .is_err());
    }

    #[test]
    fn oversized_headers_carry_their_claims() {
        let b = header_claiming(MAX_FRONT + 1, 7);
        let h = HeaderRepr::parse(&Header::new_unchecked(&b[1..]), true).expect("valid CRC");
        assert_eq!((h.front_len, h.data_len), (MAX_FRONT + 1, 7));
    }

    #[test]
    fn every_attack_names_its_trace() {
        for k in Kind::ALL {
            assert!(!k.trace().is_empty(), "{}", k.name());
        }
    }
}
