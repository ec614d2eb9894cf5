//! One worker's TCP/IP stack over one [`Port`]: flows sharded over small smoltcp
//! Interfaces, a listener pool, and a byte-stream API for the messenger.
//!
//! Why shards: smoltcp walks every socket of an Interface for every packet received and
//! every poll, so one Interface with a thousand connections costs microseconds per packet.
//! Here a flow's 4-tuple picks one of `shards` Interfaces (all with the same address); a
//! packet touches only its shard, and a poll visits only shards that have packets, work
//! queued by the application, or a timer due. With 1,000 connections over 64 shards a
//! packet meets ~16 sockets.
//!
//! Why a listener pool: a listening smoltcp socket becomes the connection when a SYN
//! arrives, so each shard keeps `listen_backlog` listening sockets per port and replaces
//! each one that turns into a connection, up to `max_half_open` handshakes in flight per
//! shard (a SYN flood fills that and no more; the rest get RST from smoltcp).
//!
//! Ethernet and ARP are ours ([`crate::l2`]): the Interfaces run on `Medium::Ip`.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Checksum, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, HardwareAddress, IpAddress, IpCidr,
    IpEndpoint, IpListenEndpoint, Ipv4Address, Ipv4Cidr,
};
use tracing::{debug, trace};

use crossbeam_queue::ArrayQueue;

use crate::checksum::{self as csum, RxState, TxChecksum};
use crate::l2::{self, ArpAction, NeighborCache, Neighbors, ETH_HLEN};
use crate::pcap::{Capture, Recorded};
use crate::port::Port;
use crate::rss::Steering;

/// Frames of flows another worker owns, handed over between the workers of one port.
///
/// A device with RSS steers each flow to the queue of its owner (the stack picks local ports
/// so that replies come back there, see [`crate::rss`]). A device without it — or one whose
/// spreading the stack cannot predict, like af_packet's kernel fanout — delivers a flow's
/// packets to whichever queue it likes. Then ownership follows the stack's own model
/// (`StackConfig::steering`, `StackConfig::queue`) and a worker that receives a frame of a
/// flow it does not own pushes it onto the owner's queue, which the owner drains each turn.
pub struct Forwarding<F> {
    me: usize,
    queues: Arc<[ArrayQueue<F>]>,
}

impl<F> Forwarding<F> {
    /// One handle per worker (worker `i` gets index `i`), each queue `depth` frames deep.
    pub fn group(workers: usize, depth: usize) -> Vec<Self> {
        let queues: Arc<[ArrayQueue<F>]> = (0..workers.max(1))
            .map(|_| ArrayQueue::new(depth.max(1)))
            .collect();
        (0..workers.max(1))
            .map(|me| Self {
                me,
                queues: Arc::clone(&queues),
            })
            .collect()
    }
}

/// Default [`StackConfig::tx_queue_max`].
pub const DEFAULT_TX_QUEUE_MAX: usize = 1024;
/// Default [`StackConfig::rx_burst`].
pub const DEFAULT_RX_BURST: usize = 32;
/// Default [`StackConfig::shard_rx_max`].
pub const DEFAULT_SHARD_RX_MAX: usize = 1024;

/// Frames a stack with the default bounds holds at once: its transmit queue, packets
/// waiting for ARP, a receive burst, and received frames queued in a busy shard. What a
/// pool must hold for one stack on top of what the device itself keeps.
pub const DEFAULT_FRAMES_HELD: usize =
    DEFAULT_TX_QUEUE_MAX + UNRESOLVED_MAX + DEFAULT_RX_BURST + DEFAULT_SHARD_RX_MAX;

/// Configuration of one worker's stack.
#[derive(Debug, Clone)]
pub struct StackConfig {
    pub mac: EthernetAddress,
    pub ip: Ipv4Cidr,
    pub gateway: Option<Ipv4Address>,
    /// Interfaces the flows are spread over (rounded up to a power of two).
    pub shards: usize,
    /// Listening sockets per port per shard.
    pub listen_backlog: usize,
    /// Handshakes in progress per shard before listeners stop being replaced.
    pub max_half_open: usize,
    /// A handshake that makes no progress for this long is dropped.
    pub handshake_timeout: Duration,
    /// Socket buffers (the receive buffer is the advertised window).
    pub rx_buffer: usize,
    pub tx_buffer: usize,
    /// Keep-alive interval. Besides finding dead peers, a keep-alive makes the peer answer
    /// with its current window: smoltcp 0.12 sends no zero-window probes, and a lost
    /// window update would otherwise stall a connection for good.
    pub keepalive: Option<Duration>,
    /// This worker's queue and the device's RSS steering: outbound connections take a
    /// local port whose replies the device steers to this queue.
    pub queue: u16,
    pub steering: Steering,
    /// Local ports for outbound connections.
    pub ephemeral: (u16, u16),
    /// Frames waiting for the device, at most: smoltcp is told to hold back at this many,
    /// and what comes beyond (replies to received packets, ARP) is dropped, so a device that
    /// stops taking frames cannot make the stack hold more.
    pub tx_queue_max: usize,
    /// Frames per receive burst.
    pub rx_burst: usize,
    /// Received frames waiting per shard before more are dropped.
    pub shard_rx_max: usize,
    pub seed: u64,
}

impl StackConfig {
    /// Defaults for an address.
    pub fn new(mac: EthernetAddress, ip: Ipv4Cidr) -> Self {
        Self {
            mac,
            ip,
            gateway: None,
            shards: 256,
            listen_backlog: 1,
            max_half_open: 32,
            handshake_timeout: Duration::from_secs(3),
            rx_buffer: 256 * 1024,
            tx_buffer: 256 * 1024,
            keepalive: Some(Duration::from_secs(2)),
            queue: 0,
            steering: Steering::single(),
            ephemeral: (32768, 60999),
            tx_queue_max: DEFAULT_TX_QUEUE_MAX,
            rx_burst: DEFAULT_RX_BURST,
            shard_rx_max: DEFAULT_SHARD_RX_MAX,
            seed: 0x6d73_6772,
        }
    }
}

/// A connection of this stack. Stale after its `Closed` event (a later connection may
/// reuse the slot; the generation tells them apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    idx: u32,
    gen: u32,
}

/// What happened, for the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackEvent {
    /// A connection to a listening port completed its handshake.
    Accepted {
        conn: ConnId,
        local_port: u16,
        remote: IpEndpoint,
    },
    /// An outbound connection is established.
    Connected(ConnId),
    /// Bytes are waiting (or the peer finished sending): call [`NetStack::recv`]. Reported
    /// once until the receive queue is drained (edge-triggered): an application that stops
    /// reading early must come back by itself (e.g. on `Writable`, see
    /// [`NetStack::notify_writable`]).
    Readable(ConnId),
    /// Room opened up after a short [`NetStack::send`].
    Writable(ConnId),
    /// The connection is gone (closed, reset, or an outbound handshake that timed out); the
    /// id is stale.
    Closed(ConnId),
    /// An outbound connection was refused: the peer answered its SYN with a reset (a host
    /// that is up, nothing listening on the port). Instead of `Closed`; the id is stale.
    Refused(ConnId),
}

/// Errors of the application calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackError {
    /// The id is stale or unknown.
    NoSuchConnection,
    /// The connection cannot carry data in that direction any more.
    NotOpen,
    /// No local port left that steers replies to this queue.
    NoPort,
    /// The address is not one smoltcp can reach (unspecified, or no route).
    Unaddressable,
    /// A listening port is already set up.
    AlreadyListening,
}

impl std::fmt::Display for StackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NoSuchConnection => "no such connection",
            Self::NotOpen => "connection not open",
            Self::NoPort => "no free local port for this queue",
            Self::Unaddressable => "address unreachable",
            Self::AlreadyListening => "already listening on that port",
        })
    }
}

impl std::error::Error for StackError {}

/// Counters of one worker's stack.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StackStats {
    pub rx_frames: u64,
    pub tx_frames: u64,
    /// Frames not for us (another MAC or IP), dropped.
    pub rx_not_ours: u64,
    /// Frames too short or inconsistent to parse, dropped.
    pub rx_malformed: u64,
    /// Frames larger than the MTU, dropped.
    pub rx_oversize: u64,
    /// Frames dropped because their shard's queue was full.
    pub rx_shard_full: u64,
    /// Frames of protocols we do not serve.
    pub rx_other: u64,
    pub arp_requests_sent: u64,
    pub arp_replies_sent: u64,
    /// Frames dropped for want of a transmit buffer: none left, or the queue for the
    /// device full (`StackConfig::tx_queue_max`: the device stopped taking frames).
    pub tx_no_buffer: u64,
    /// Frames dropped while waiting for a neighbour that never answered.
    pub tx_unresolved: u64,
    pub accepted: u64,
    pub connected: u64,
    pub closed: u64,
    /// Handshakes that died before completing (flood, reset, timeout).
    pub handshakes_dropped: u64,
    /// Listeners not replaced because a shard had `max_half_open` handshakes in flight.
    pub listen_limited: u64,
    /// Frames handed to the worker that owns their flow ([`Forwarding`]).
    pub forwarded: u64,
    /// Frames dropped because the owner's forwarding queue was full.
    pub forward_full: u64,
    /// Frames with a wrong IPv4 header or TCP checksum (found by the device or by us),
    /// dropped.
    pub rx_bad_checksum: u64,
    /// TCP segments whose checksum the device verified (not summed in software).
    pub rx_checksum_by_device: u64,
    /// Frames whose checksums the device fills in.
    pub tx_checksum_offloaded: u64,
    /// Packets to our own address, delivered without the device.
    pub looped: u64,
    /// Frames queued for the packet capture ([`NetStack::set_capture`]).
    pub captured: u64,
    /// Frames the packet capture had no room for (its writer fell behind), not recorded.
    pub capture_dropped: u64,
}

impl StackStats {
    /// Every counter by name, for reports (`perf dump`).
    pub fn counters(&self) -> [(&'static str, u64); 25] {
        [
            ("rx_frames", self.rx_frames),
            ("tx_frames", self.tx_frames),
            ("rx_not_ours", self.rx_not_ours),
            ("rx_malformed", self.rx_malformed),
            ("rx_oversize", self.rx_oversize),
            ("rx_shard_full", self.rx_shard_full),
            ("rx_other", self.rx_other),
            ("arp_requests_sent", self.arp_requests_sent),
            ("arp_replies_sent", self.arp_replies_sent),
            ("tx_no_buffer", self.tx_no_buffer),
            ("tx_unresolved", self.tx_unresolved),
            ("accepted", self.accepted),
            ("connected", self.connected),
            ("closed", self.closed),
            ("handshakes_dropped", self.handshakes_dropped),
            ("listen_limited", self.listen_limited),
            ("forwarded", self.forwarded),
            ("forward_full", self.forward_full),
            ("rx_bad_checksum", self.rx_bad_checksum),
            ("rx_checksum_by_device", self.rx_checksum_by_device),
            ("tx_checksum_offloaded", self.tx_checksum_offloaded),
            ("looped", self.looped),
            ("captured", self.captured),
            ("capture_dropped", self.capture_dropped),
            ("rx_dropped", self.dropped_total()),
        ]
    }

    /// Received frames dropped for any reason (not ours, malformed, oversize, shard full,
    /// bad checksum, forwarding full).
    pub fn dropped_total(&self) -> u64 {
        self.rx_not_ours
            + self.rx_malformed
            + self.rx_oversize
            + self.rx_shard_full
            + self.rx_bad_checksum
            + self.forward_full
    }
}

/// Where the frames a stack holds wait ([`NetStack::frames_held`]), and the bound of each.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FramesHeld {
    /// Queued for the device: at most [`StackConfig::tx_queue_max`].
    pub tx_queue: usize,
    /// Packets to our own address, received at the next poll: at most
    /// [`StackConfig::tx_queue_max`].
    pub looped: usize,
    /// Packets waiting for an ARP answer: at most [`UNRESOLVED_MAX`].
    pub unresolved: usize,
    /// Received frames sorted to a shard and not yet processed: none between polls (a poll
    /// processes every shard it sorts frames to), at most [`StackConfig::shard_rx_max`] per
    /// shard during one.
    pub shard_rx: usize,
    /// Frames of this worker's flows that other workers handed over ([`Forwarding`]),
    /// waiting: at most the depth of its queue.
    pub handed_over: usize,
}

impl FramesHeld {
    pub fn total(&self) -> usize {
        self.tx_queue + self.looped + self.unresolved + self.shard_rx + self.handed_over
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Accepted by a listener, handshake not complete.
    HalfOpen,
    /// Outbound, handshake not complete.
    Connecting,
    Open,
}

#[derive(Debug)]
struct Conn {
    gen: u32,
    shard: usize,
    handle: SocketHandle,
    phase: Phase,
    local_port: u16,
    remote: IpEndpoint,
    /// `Readable` reported and not yet drained.
    readable: bool,
    /// The end of the peer's stream was reported.
    eof: bool,
    /// A `send` came up short: report `Writable` when room opens.
    want_write: bool,
    /// When an outbound connection started (the stack's clock at its last poll).
    started: Instant,
    /// The application closed or reset it (so its end is no refusal).
    by_us: bool,
    /// The application is done with it ([`NetStack::release`]): whatever still arrives is
    /// discarded, and it is forgotten once closed (TIME-WAIT included).
    released: bool,
}

struct Shard<F> {
    iface: Interface,
    sockets: SocketSet<'static>,
    rx: VecDeque<F>,
    /// In the active list: polled this turn (packets, application calls).
    dirty: bool,
    /// The deadline this shard has in the timer set.
    timer: Option<Instant>,
    /// Listening sockets: (port, handle).
    listeners: Vec<(u16, SocketHandle)>,
    /// Connections living here (slab indices).
    conns: Vec<u32>,
    half_open: usize,
    /// SYNs queued in `rx` per listening port: listeners are topped up to this before the
    /// poll (one listener takes one SYN; a burst may bring many to one shard).
    syns: Vec<(u16, usize)>,
}

/// The transmit side: frames for the device, neighbour resolution.
struct Tx<P: Port> {
    port: P,
    queue: VecDeque<P::Frame>,
    max: usize,
    mac: EthernetAddress,
    ip: Ipv4Cidr,
    gateway: Option<Ipv4Address>,
    /// Checksums the device fills in on transmit (smoltcp leaves them out).
    offload: TxChecksum,
    /// Packets to our own address (a connection to ourselves): they never reach the
    /// device, and are received at the start of the next poll.
    looped: VecDeque<P::Frame>,
    neighbors: NeighborCache,
    /// IP packets waiting for a neighbour: (next hop, since, frame).
    unresolved: VecDeque<(Ipv4Address, Instant, P::Frame)>,
    asked: HashMap<Ipv4Address, Instant>,
    stats: StackStats,
    /// Packet capture, when on.
    capture: Option<Capture>,
    /// Frames at the front of `queue` already recorded: those the device refused stay
    /// there for the next burst and must not be recorded again.
    queue_captured: usize,
}

/// Extra egress passes per shard poll (see `poll_shard`): a burst of segments per turn.
const EGRESS_PASSES: usize = 64;

/// Packets wait this long for an ARP answer.
const UNRESOLVED_WAIT: Duration = Duration::from_secs(1);
/// How long a released connection may wait for its peer before it is dropped
/// ([`NetStack::release`]).
pub const RELEASE_LINGER: Duration = Duration::from_secs(10);
/// At most this many packets wait for ARP answers.
pub const UNRESOLVED_MAX: usize = 256;
/// ARP requests for one address are this far apart at least.
const ARP_RETRY: Duration = Duration::from_millis(100);

impl<P: Port> Tx<P> {
    fn next_hop(&self, dst: Ipv4Address) -> Ipv4Address {
        if self.ip.contains_addr(&dst) {
            dst
        } else {
            self.gateway.unwrap_or(dst)
        }
    }

    /// Frames handed over and not yet sent (queued for the device or waiting for ARP).
    fn queued(&self) -> u64 {
        (self.queue.len() + self.unresolved.len()) as u64
    }

    fn full(&self) -> bool {
        self.queue.len() >= self.max
    }

    /// Frames an IP packet already written at `frame[ETH_HLEN..]` and queues it.
    fn send_ip(&mut self, mut frame: P::Frame, now: Instant) {
        let b = frame.as_ref();
        if b.len() < ETH_HLEN + 20 {
            return;
        }
        let dst = ip4(&b[ETH_HLEN + 16..ETH_HLEN + 20]);
        if dst == self.ip.address() {
            // smoltcp computed every checksum in software (the offload flags are unset):
            // the frame is received as the link would deliver it.
            l2::write_eth_header(frame.as_mut(), self.mac, self.mac, EthernetProtocol::Ipv4);
            if self.looped.len() < self.max {
                self.looped.push_back(frame);
            } else {
                self.stats.tx_no_buffer += 1;
            }
            return;
        }
        if self.offload.any() {
            self.prepare_offload(&mut frame);
        }
        let hop = self.next_hop(dst);
        match self.neighbors.lookup(hop, now) {
            Some(mac) if self.full() => {
                // smoltcp gets a transmit token with every received packet, whether or not
                // the queue has room: a reply while the device takes nothing is lost like a
                // drop on the wire, and the queue (the buffers it holds) stays bounded.
                self.stats.tx_no_buffer += 1;
                trace!(%mac, "transmit queue full: reply dropped");
            }
            Some(mac) => {
                l2::write_eth_header(frame.as_mut(), self.mac, mac, EthernetProtocol::Ipv4);
                self.queue.push_back(frame);
            }
            None => {
                if self.unresolved.len() >= UNRESOLVED_MAX {
                    self.unresolved.pop_front();
                    self.stats.tx_unresolved += 1;
                }
                self.unresolved.push_back((hop, now, frame));
                self.ask(hop, now);
            }
        }
    }

    /// Leaves the checksums the device computes to it: smoltcp wrote zeros there (see
    /// `ShardDevice::capabilities`); a TCP checksum field gets the pseudo-header sum.
    fn prepare_offload(&mut self, frame: &mut P::Frame) {
        let p = &mut frame.as_mut()[ETH_HLEN..];
        let ihl = usize::from(p[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
        let tcp = p[9] == 6 && total >= ihl + 20 && total <= p.len();
        if tcp && self.offload.tcp {
            let l4_len = (total - ihl) as u16;
            let (src, dst) = (octets(&p[12..16]), octets(&p[16..20]));
            let sum = csum::pseudo_header(src, dst, 6, l4_len);
            p[ihl + 16..ihl + 18].copy_from_slice(&sum.to_be_bytes());
        }
        let what = TxChecksum {
            ipv4: self.offload.ipv4,
            tcp: tcp && self.offload.tcp,
        };
        if what.any() {
            self.port.offload_tx(frame, ihl, what);
            self.stats.tx_checksum_offloaded += 1;
        }
    }

    fn ask(&mut self, hop: Ipv4Address, now: Instant) {
        if let Some(&at) = self.asked.get(&hop) {
            if now < at + ARP_RETRY {
                return;
            }
        }
        self.asked.insert(hop, now);
        let req = l2::arp_request(self.mac, self.ip.address(), hop);
        if self.send_raw(&req) {
            self.stats.arp_requests_sent += 1;
            trace!(%hop, "arp request");
        }
    }

    /// Queues a frame built elsewhere (copied into a device buffer), if the queue has room.
    fn send_raw(&mut self, bytes: &[u8]) -> bool {
        if self.full() {
            self.stats.tx_no_buffer += 1;
            return false;
        }
        match self.port.alloc(bytes.len()) {
            Some(mut f) => {
                f.as_mut().copy_from_slice(bytes);
                self.queue.push_back(f);
                true
            }
            None => {
                self.stats.tx_no_buffer += 1;
                false
            }
        }
    }

    /// Sends what waited for `ip`, now resolved; drops what waited too long. What is
    /// resolved but finds the queue full waits on (within `UNRESOLVED_MAX`) for room.
    fn resolved(&mut self, now: Instant) {
        let mut keep = VecDeque::with_capacity(self.unresolved.len());
        while let Some((hop, since, mut frame)) = self.unresolved.pop_front() {
            let mac = self.neighbors.lookup(hop, now);
            if mac.is_some() && self.full() {
                keep.push_back((hop, since, frame));
            } else if let Some(mac) = mac {
                l2::write_eth_header(frame.as_mut(), self.mac, mac, EthernetProtocol::Ipv4);
                self.queue.push_back(frame);
            } else if now >= since + UNRESOLVED_WAIT {
                self.stats.tx_unresolved += 1;
            } else {
                keep.push_back((hop, since, frame));
            }
        }
        self.unresolved = keep;
        if self.unresolved.is_empty() {
            self.asked.clear();
        }
    }

    fn flush(&mut self, now: Instant) {
        if self.queue.is_empty() {
            return;
        }
        if self.capture.is_some() && self.queue_captured < self.queue.len() {
            let fresh = self.queue.range(self.queue_captured..).map(|f| f.as_ref());
            record_frames(&mut self.capture, &mut self.stats, now, fresh);
            self.queue_captured = self.queue.len();
        }
        let n = self.port.tx_burst(&mut self.queue);
        // The device took `n` from the front (`Port::tx_burst`).
        self.queue_captured = self.queue_captured.saturating_sub(n);
        self.stats.tx_frames += n as u64;
    }
}

/// Offers frames to the packet capture and counts the outcome; lets go of a capture that
/// was stopped (its owner closed the file, or writing failed).
fn record_frames<'f>(
    capture: &mut Option<Capture>,
    stats: &mut StackStats,
    now: Instant,
    frames: impl Iterator<Item = &'f [u8]>,
) {
    let Some(c) = capture.as_ref() else {
        return;
    };
    for f in frames {
        match c.record(now, f) {
            Recorded::Queued => stats.captured += 1,
            Recorded::Dropped => stats.capture_dropped += 1,
            Recorded::Closed => {
                *capture = None;
                return;
            }
        }
    }
}

/// The smoltcp device of one shard: its received frames, and the worker's transmit side.
struct ShardDevice<'a, P: Port> {
    rx: &'a mut VecDeque<P::Frame>,
    tx: &'a mut Tx<P>,
    now: Instant,
    mtu: usize,
}

struct RxTok<F>(F);

struct TxTok<'a, P: Port> {
    tx: &'a mut Tx<P>,
    now: Instant,
}

impl<F: AsRef<[u8]>> phy::RxToken for RxTok<F> {
    fn consume<R, G>(self, f: G) -> R
    where
        G: FnOnce(&[u8]) -> R,
    {
        f(&self.0.as_ref()[ETH_HLEN..])
    }
}

impl<P: Port> phy::TxToken for TxTok<'_, P> {
    fn consume<R, G>(self, len: usize, f: G) -> R
    where
        G: FnOnce(&mut [u8]) -> R,
    {
        match self.tx.port.alloc(ETH_HLEN + len) {
            Some(mut frame) => {
                let r = f(&mut frame.as_mut()[ETH_HLEN..ETH_HLEN + len]);
                self.tx.send_ip(frame, self.now);
                r
            }
            None => {
                // smoltcp must still produce the packet (its state moved on); it is lost
                // like a drop on the wire and retransmitted like one.
                self.tx.stats.tx_no_buffer += 1;
                let mut scratch = vec![0u8; len];
                f(&mut scratch)
            }
        }
    }
}

impl<P: Port> phy::Device for ShardDevice<'_, P> {
    type RxToken<'a>
        = RxTok<P::Frame>
    where
        Self: 'a;
    type TxToken<'a>
        = TxTok<'a, P>
    where
        Self: 'a;

    fn receive(&mut self, _ts: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let f = self.rx.pop_front()?;
        Some((
            RxTok(f),
            TxTok {
                tx: self.tx,
                now: self.now,
            },
        ))
    }

    fn transmit(&mut self, _ts: Instant) -> Option<Self::TxToken<'_>> {
        if self.tx.full() {
            return None;
        }
        Some(TxTok {
            tx: self.tx,
            now: self.now,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        caps.max_burst_size = None;
        // IPv4 headers and TCP segments were verified in `demux` (by the device or by us);
        // on transmit smoltcp computes what the device does not.
        let tx_only = |offloaded: bool| {
            if offloaded {
                Checksum::None
            } else {
                Checksum::Tx
            }
        };
        caps.checksum.ipv4 = tx_only(self.tx.offload.ipv4);
        caps.checksum.tcp = tx_only(self.tx.offload.tcp);
        caps
    }
}

/// One worker's TCP/IP stack over one port.
pub struct NetStack<P: Port> {
    cfg: StackConfig,
    mtu: usize,
    tx: Tx<P>,
    shards: Vec<Shard<P::Frame>>,
    slab: Vec<Option<Conn>>,
    gens: Vec<u32>,
    free: Vec<u32>,
    /// Listening ports (a handful: a list, walked without allocating).
    listening: Vec<u16>,
    /// Local ports of outbound connections, by remote endpoint.
    used_ports: HashSet<(IpEndpoint, u16)>,
    next_port: u16,
    events: VecDeque<StackEvent>,
    rx_scratch: Vec<P::Frame>,
    /// Shards to poll this turn (each once: see `Shard::dirty`).
    active: Vec<usize>,
    /// Shard deadlines: (when, shard).
    timers: BTreeSet<(Instant, usize)>,
    fwd: Option<Forwarding<P::Frame>>,
    /// Spare list for `after_poll`'s rebuild of a shard's connections.
    conn_scratch: Vec<u32>,
    /// The time of the latest poll.
    now: Instant,
}

impl<P: Port> NetStack<P> {
    /// A stack on `port`, sharing `neighbors` with the other workers of the device.
    pub fn new(cfg: StackConfig, port: P, neighbors: Arc<Neighbors>, now: Instant) -> Self {
        let mtu = port.mtu();
        let offload = port.tx_checksum();
        let nshards = cfg.shards.max(1).next_power_of_two();
        let mut tx = Tx {
            port,
            queue: VecDeque::new(),
            max: cfg.tx_queue_max.max(1),
            mac: cfg.mac,
            ip: cfg.ip,
            gateway: cfg.gateway,
            offload,
            looped: VecDeque::new(),
            neighbors: NeighborCache::new(neighbors),
            unresolved: VecDeque::new(),
            asked: HashMap::new(),
            stats: StackStats::default(),
            capture: None,
            queue_captured: 0,
        };
        let mut shards = Vec::with_capacity(nshards);
        for i in 0..nshards {
            let mut rx = VecDeque::new();
            let mut dev = ShardDevice {
                rx: &mut rx,
                tx: &mut tx,
                now,
                mtu,
            };
            let mut c = Config::new(HardwareAddress::Ip);
            c.random_seed = cfg
                .seed
                .wrapping_add(i as u64)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut iface = Interface::new(c, &mut dev, now);
            iface.update_ip_addrs(|a| {
                let _ = a.push(IpCidr::Ipv4(cfg.ip));
            });
            if let Some(gw) = cfg.gateway {
                let _ = iface.routes_mut().add_default_ipv4_route(gw);
            }
            shards.push(Shard {
                iface,
                sockets: SocketSet::new(Vec::new()),
                rx,
                dirty: false,
                timer: None,
                listeners: Vec::new(),
                conns: Vec::new(),
                half_open: 0,
                syns: Vec::new(),
            });
        }
        let next_port = cfg.ephemeral.0;
        Self {
            cfg,
            mtu,
            tx,
            shards,
            slab: Vec::new(),
            gens: Vec::new(),
            free: Vec::new(),
            listening: Vec::new(),
            used_ports: HashSet::new(),
            next_port,
            events: VecDeque::new(),
            rx_scratch: Vec::new(),
            now,
            active: Vec::new(),
            timers: BTreeSet::new(),
            fwd: None,
            conn_scratch: Vec::new(),
        }
    }

    /// Hands frames of flows owned by other workers over (see [`Forwarding`]); this
    /// worker's index in the group must be `config().queue`.
    pub fn set_forwarding(&mut self, fwd: Forwarding<P::Frame>) {
        debug_assert_eq!(fwd.me, usize::from(self.cfg.queue));
        self.fwd = Some(fwd);
    }

    /// Starts (`Some`) or stops (`None`) recording this stack's frames into a packet
    /// capture (see [`crate::pcap`]); replaces any capture already set. Each worker sets
    /// its own handle, timestamped from its own clock ([`crate::pcap::TimeBase`]).
    ///
    /// Recorded: every frame a receive burst brings (before any check, so frames then
    /// dropped are in it); every frame handed to the device, once, when first offered to it
    /// (a frame the device refused waits for the next burst without being recorded again,
    /// also across a change of capture); packets to our own address once, as they are
    /// delivered. Frames of other workers' flows are recorded by the worker that received
    /// them, before forwarding. A capture that was stopped is let go of at the next frame.
    ///
    /// Off, it costs one branch per burst. On, each frame is copied (up to the snap
    /// length) and queued to the writer thread without blocking; frames that find the queue
    /// full count in [`StackStats::capture_dropped`], the rest in [`StackStats::captured`].
    pub fn set_capture(&mut self, capture: Option<Capture>) {
        self.tx.capture = capture;
    }

    /// Whether a packet capture is set (and was not found stopped yet).
    pub fn capturing(&self) -> bool {
        self.tx.capture.is_some()
    }

    pub fn config(&self) -> &StackConfig {
        &self.cfg
    }

    pub fn stats(&self) -> StackStats {
        self.tx.stats
    }

    pub fn port(&self) -> &P {
        &self.tx.port
    }

    pub fn port_mut(&mut self) -> &mut P {
        &mut self.tx.port
    }

    /// Connections open or opening.
    pub fn connections(&self) -> usize {
        self.slab.iter().filter(|c| c.is_some()).count()
    }

    /// The frames this stack holds, by where they wait (what its device's buffer pool
    /// must cover, see [`DEFAULT_FRAMES_HELD`]). For tests and diagnostics: it walks the
    /// shards.
    pub fn frames_held(&self) -> FramesHeld {
        FramesHeld {
            tx_queue: self.tx.queue.len(),
            looped: self.tx.looped.len(),
            unresolved: self.tx.unresolved.len(),
            shard_rx: self.shards.iter().map(|sh| sh.rx.len()).sum(),
            handed_over: self.fwd.as_ref().map_or(0, |f| f.queues[f.me].len()),
        }
    }

    /// What the stack holds now, by name, for reports: connections, handshakes accepted
    /// and not complete (`half_open`), listening sockets waiting for a SYN, local ports
    /// taken by connections (`ports_in_use`), and timers.
    pub fn gauges(&self) -> [(&'static str, u64); 5] {
        let n = |x: usize| x as u64;
        [
            ("connections", n(self.connections())),
            (
                "half_open",
                n(self.shards.iter().map(|s| s.half_open).sum()),
            ),
            (
                "listeners",
                n(self.shards.iter().map(|s| s.listeners.len()).sum()),
            ),
            ("ports_in_use", n(self.used_ports.len())),
            ("timers", n(self.timers.len())),
        ]
    }

    /// The shard of a flow, by its remote endpoint and local port.
    fn shard_of(&self, remote: Ipv4Address, rport: u16, lport: u16) -> usize {
        let r = u32::from_be_bytes(remote.octets());
        let k = (u64::from(r) << 32) | (u64::from(rport) << 16) | u64::from(lport);
        let h = k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> 32) as usize & (self.shards.len() - 1)
    }

    fn new_socket(&self) -> tcp::Socket<'static> {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; self.cfg.rx_buffer]),
            tcp::SocketBuffer::new(vec![0; self.cfg.tx_buffer]),
        );
        s.set_nagle_enabled(false);
        s.set_ack_delay(None);
        s.set_keep_alive(self.cfg.keepalive);
        s
    }

    fn add_listener(&mut self, shard: usize, port: u16) {
        let mut s = self.new_socket();
        s.set_timeout(Some(self.cfg.handshake_timeout));
        if s.listen(IpListenEndpoint::from(port)).is_err() {
            return;
        }
        let sh = &mut self.shards[shard];
        let h = sh.sockets.add(s);
        sh.listeners.push((port, h));
    }

    /// Accepts connections to `port` from now on (each shard gets its listeners).
    pub fn listen(&mut self, port: u16) -> Result<(), StackError> {
        if port == 0 {
            return Err(StackError::Unaddressable);
        }
        if self.listening.contains(&port) {
            return Err(StackError::AlreadyListening);
        }
        self.listening.push(port);
        for i in 0..self.shards.len() {
            for _ in 0..self.cfg.listen_backlog.max(1) {
                self.add_listener(i, port);
            }
        }
        Ok(())
    }

    /// Stops accepting, as a host whose service goes away: the listeners go (SYNs to their
    /// ports are answered with RST from now on) and handshakes in progress are reset, so no
    /// peer is left believing in a connection nobody will serve. Established connections
    /// stay (close them as usual).
    pub fn stop_listening(&mut self) {
        self.listening.clear();
        for sh in &mut self.shards {
            for (_, h) in sh.listeners.drain(..) {
                sh.sockets.remove(h);
            }
            sh.syns.clear();
        }
        let half_open: Vec<ConnId> = self
            .slab
            .iter()
            .enumerate()
            .filter_map(|(idx, c)| match c {
                Some(c) if c.phase == Phase::HalfOpen => Some(ConnId {
                    idx: idx as u32,
                    gen: c.gen,
                }),
                _ => None,
            })
            .collect();
        for id in half_open {
            let _ = self.abort(id);
        }
    }

    fn alloc_conn(&mut self, c: Conn) -> ConnId {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slab.push(None);
                self.gens.push(0);
                (self.slab.len() - 1) as u32
            }
        };
        let gen = self.gens[idx as usize];
        self.shards[c.shard].conns.push(idx);
        self.slab[idx as usize] = Some(Conn { gen, ..c });
        ConnId { idx, gen }
    }

    fn conn(&self, id: ConnId) -> Result<&Conn, StackError> {
        match self.slab.get(id.idx as usize) {
            Some(Some(c)) if c.gen == id.gen => Ok(c),
            _ => Err(StackError::NoSuchConnection),
        }
    }

    fn conn_mut(&mut self, id: ConnId) -> Result<&mut Conn, StackError> {
        match self.slab.get_mut(id.idx as usize) {
            Some(Some(c)) if c.gen == id.gen => Ok(c),
            _ => Err(StackError::NoSuchConnection),
        }
    }

    /// Opens a connection to `remote` from a local port whose replies the device steers to
    /// this worker's queue.
    pub fn connect(&mut self, remote: IpEndpoint) -> Result<ConnId, StackError> {
        let IpAddress::Ipv4(rip) = remote.addr;
        if rip.is_unspecified() || remote.port == 0 {
            return Err(StackError::Unaddressable);
        }
        let (lo, hi) = self.cfg.ephemeral;
        let span = u32::from(hi.saturating_sub(lo)) + 1;
        let me = self.cfg.ip.address();
        let mut chosen = None;
        for _ in 0..span {
            let p = self.next_port;
            self.next_port = if p >= hi { lo } else { p + 1 };
            if self.used_ports.contains(&(remote, p)) || self.listening.contains(&p) {
                continue;
            }
            // The reply travels remote -> us: that is the packet the NIC hashes.
            if self.cfg.steering.queue_of(rip, me, remote.port, p) == self.cfg.queue {
                chosen = Some(p);
                break;
            }
        }
        let lport = chosen.ok_or(StackError::NoPort)?;
        let shard = self.shard_of(rip, remote.port, lport);
        let mut s = self.new_socket();
        s.set_timeout(Some(self.cfg.handshake_timeout));
        let sh = &mut self.shards[shard];
        s.connect(sh.iface.context(), remote, (me, lport))
            .map_err(|_| StackError::Unaddressable)?;
        let handle = sh.sockets.add(s);
        if !sh.dirty {
            sh.dirty = true;
            self.active.push(shard);
        }
        self.used_ports.insert((remote, lport));
        Ok(self.alloc_conn(Conn {
            gen: 0,
            shard,
            handle,
            phase: Phase::Connecting,
            local_port: lport,
            remote,
            readable: false,
            eof: false,
            want_write: false,
            started: self.now,
            by_us: false,
            released: false,
        }))
    }

    /// Queues bytes; returns how many fit (0 when the send buffer is full: wait for
    /// `Writable`).
    pub fn send(&mut self, id: ConnId, data: &[u8]) -> Result<usize, StackError> {
        let (shard, handle) = {
            let c = self.conn(id)?;
            (c.shard, c.handle)
        };
        let sh = &mut self.shards[shard];
        let s = sh.sockets.get_mut::<tcp::Socket<'_>>(handle);
        if !s.may_send() {
            return Err(StackError::NotOpen);
        }
        let n = s.send_slice(data).map_err(|_| StackError::NotOpen)?;
        if n > 0 && !sh.dirty {
            sh.dirty = true;
            self.active.push(shard);
        }
        if n < data.len() {
            if let Some(Some(c)) = self.slab.get_mut(id.idx as usize) {
                c.want_write = true;
            }
        }
        Ok(n)
    }

    /// Asks for a `Writable` event once send room opens (for an application that holds
    /// back input until it can answer: it stops reading, so no `Readable` would wake it).
    pub fn notify_writable(&mut self, id: ConnId) -> Result<(), StackError> {
        self.conn(id)?;
        if let Some(Some(c)) = self.slab.get_mut(id.idx as usize) {
            c.want_write = true;
        }
        let shard = self.slab[id.idx as usize].as_ref().map_or(0, |c| c.shard);
        self.mark(shard);
        Ok(())
    }

    /// Takes received bytes; `Ok(0)` with nothing buffered means none yet, or — when
    /// [`NetStack::peer_closed`] — the end of the stream.
    pub fn recv(&mut self, id: ConnId, buf: &mut [u8]) -> Result<usize, StackError> {
        let mut at = 0;
        self.recv_with(id, buf.len(), |b| {
            buf[at..at + b.len()].copy_from_slice(b);
            at += b.len();
        })
    }

    /// Hands up to `max` received bytes to `f`, in place (one or two slices: the socket's
    /// buffer is a ring); returns how many. No intermediate copy: `f` appends them where
    /// the application parses (what `recv` into a scratch buffer would copy twice).
    pub fn recv_with(
        &mut self,
        id: ConnId,
        max: usize,
        mut f: impl FnMut(&[u8]),
    ) -> Result<usize, StackError> {
        let (shard, handle) = {
            let c = self.conn(id)?;
            (c.shard, c.handle)
        };
        let sh = &mut self.shards[shard];
        let s = sh.sockets.get_mut::<tcp::Socket<'_>>(handle);
        let mut total = 0;
        // At most two contiguous pieces (before and after the ring's wrap).
        for _ in 0..2 {
            if total == max {
                break;
            }
            let r = s.recv(|buf| {
                let n = buf.len().min(max - total);
                f(&buf[..n]);
                (n, n)
            });
            match r {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(tcp::RecvError::Finished) => break,
                Err(tcp::RecvError::InvalidState) => {
                    if total == 0 {
                        return Err(StackError::NotOpen);
                    }
                    break;
                }
            }
        }
        let drained = s.recv_queue() == 0;
        if total > 0 && !sh.dirty {
            sh.dirty = true;
            self.active.push(shard);
        }
        if drained {
            if let Some(Some(c)) = self.slab.get_mut(id.idx as usize) {
                c.readable = false;
            }
        }
        Ok(total)
    }

    /// The socket of a live connection.
    fn socket(&self, id: ConnId) -> Result<&tcp::Socket<'static>, StackError> {
        let c = self.conn(id)?;
        Ok(self.shards[c.shard]
            .sockets
            .get::<tcp::Socket<'static>>(c.handle))
    }

    /// Applies `f` to a live connection's socket and schedules its shard.
    fn with_socket(
        &mut self,
        id: ConnId,
        f: impl FnOnce(&mut tcp::Socket<'static>),
    ) -> Result<(), StackError> {
        let (shard, handle) = {
            let c = self.conn(id)?;
            (c.shard, c.handle)
        };
        f(self.shards[shard]
            .sockets
            .get_mut::<tcp::Socket<'static>>(handle));
        self.mark(shard);
        Ok(())
    }

    /// Whether the peer finished sending (after what is still buffered).
    pub fn peer_closed(&self, id: ConnId) -> Result<bool, StackError> {
        let s = self.socket(id)?;
        Ok(!s.may_recv() && s.recv_queue() == 0)
    }

    /// Bytes received and not yet taken.
    pub fn recv_queue(&self, id: ConnId) -> Result<usize, StackError> {
        Ok(self.socket(id)?.recv_queue())
    }

    /// Bytes queued and not yet acknowledged by the peer.
    pub fn send_queue(&self, id: ConnId) -> Result<usize, StackError> {
        Ok(self.socket(id)?.send_queue())
    }

    /// The TCP state (for diagnostics and tests).
    pub fn tcp_state(&self, id: ConnId) -> Result<tcp::State, StackError> {
        Ok(self.socket(id)?.state())
    }

    /// Local port and remote endpoint.
    pub fn endpoints(&self, id: ConnId) -> Result<(u16, IpEndpoint), StackError> {
        let c = self.conn(id)?;
        Ok((c.local_port, c.remote))
    }

    /// Finishes sending (FIN after the queued bytes); `Closed` follows.
    pub fn close(&mut self, id: ConnId) -> Result<(), StackError> {
        self.mark_by_us(id);
        self.with_socket(id, |s| s.close())
    }

    /// The application is done with the connection and will not read it again (a
    /// messenger dropping a failed or finished session): FIN if nothing arrived unread,
    /// else RST — what Linux's `close` does —, then whatever still arrives is discarded,
    /// and the connection (its buffers) is freed once closed, TIME-WAIT included, or after
    /// [`RELEASE_LINGER`] without a word from the peer. Without this a closed socket whose
    /// peer's last bytes were never read would hold its buffers for good.
    pub fn release(&mut self, id: ConnId) -> Result<(), StackError> {
        if let Ok(c) = self.conn_mut(id) {
            c.by_us = true;
            c.released = true;
        }
        self.with_socket(id, |s| {
            s.set_timeout(Some(RELEASE_LINGER));
            if s.recv_queue() > 0 {
                s.abort();
            } else {
                s.close();
            }
        })
    }

    /// Resets the connection; `Closed` follows.
    pub fn abort(&mut self, id: ConnId) -> Result<(), StackError> {
        self.mark_by_us(id);
        self.with_socket(id, |s| s.abort())
    }

    fn mark_by_us(&mut self, id: ConnId) {
        if let Ok(c) = self.conn_mut(id) {
            c.by_us = true;
        }
    }

    /// Next event, if any.
    pub fn next_event(&mut self) -> Option<StackEvent> {
        self.events.pop_front()
    }

    /// When the stack next needs a poll without new packets (a timer), if ever.
    pub fn poll_at(&self) -> Option<Instant> {
        let forwarded = self
            .fwd
            .as_ref()
            .is_some_and(|f| !f.queues[f.me].is_empty());
        if !self.active.is_empty() || forwarded || !self.tx.looped.is_empty() {
            return Some(Instant::ZERO);
        }
        self.timers.first().map(|(t, _)| *t)
    }

    /// One turn: receive a burst, feed the shards that have work, transmit. Returns whether
    /// anything happened (for the idle policy).
    pub fn poll(&mut self, now: Instant) -> bool {
        self.now = now;
        let mut work = false;
        let mut frames = std::mem::take(&mut self.rx_scratch);
        let n = self.tx.port.rx_burst(&mut frames, self.cfg.rx_burst.max(1));
        if n > 0 {
            work = true;
            self.tx.stats.rx_frames += n as u64;
            if self.tx.capture.is_some() {
                let tx = &mut self.tx;
                let got = frames.iter().map(|f| f.as_ref());
                record_frames(&mut tx.capture, &mut tx.stats, now, got);
            }
            for f in frames.drain(..) {
                self.demux(f, now);
            }
        }
        self.rx_scratch = frames;
        // Packets we sent ourselves.
        if self.tx.capture.is_some() && !self.tx.looped.is_empty() {
            let tx = &mut self.tx;
            let looped = tx.looped.iter().map(|f| f.as_ref());
            record_frames(&mut tx.capture, &mut tx.stats, now, looped);
        }
        for _ in 0..self.tx.looped.len() {
            let Some(f) = self.tx.looped.pop_front() else {
                break;
            };
            work = true;
            self.tx.stats.looped += 1;
            self.demux(f, now);
        }
        // Frames other workers received for our flows.
        if let Some((q, me)) = self.fwd.as_ref().map(|f| (Arc::clone(&f.queues), f.me)) {
            for _ in 0..self.cfg.rx_burst.max(1) * 4 {
                let Some(f) = q[me].pop() else { break };
                work = true;
                self.demux(f, now);
            }
        }
        if !self.tx.unresolved.is_empty() {
            self.tx.resolved(now);
        }
        while let Some(&(t, i)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            self.shards[i].timer = None;
            self.mark(i);
        }
        let mut active = std::mem::take(&mut self.active);
        if !active.is_empty() {
            work = true;
        }
        for &i in &active {
            self.poll_shard(i, now);
        }
        active.clear();
        // Shards touched while polling (a connection closed elsewhere) run next turn.
        if self.active.is_empty() {
            self.active = active;
        }
        if !self.tx.queue.is_empty() {
            work = true;
            self.tx.flush(now);
        }
        work
    }

    /// Sorts a received frame: ARP to us, TCP to its shard, the rest to shard 0 (smoltcp
    /// answers ICMP echo there) or dropped.
    fn demux(&mut self, frame: P::Frame, now: Instant) {
        let b = frame.as_ref();
        if b.len() > ETH_HLEN + self.mtu {
            self.tx.stats.rx_oversize += 1;
            return;
        }
        let Ok(eth) = EthernetFrame::new_checked(b) else {
            self.tx.stats.rx_malformed += 1;
            return;
        };
        let dst = eth.dst_addr();
        if dst != self.cfg.mac && !dst.is_broadcast() {
            self.tx.stats.rx_not_ours += 1;
            return;
        }
        match eth.ethertype() {
            EthernetProtocol::Arp => {
                let shared = Arc::clone(self.tx.neighbors.shared());
                match l2::handle_arp(eth.payload(), self.cfg.mac, self.cfg.ip, &shared, now) {
                    ArpAction::Reply(r) => {
                        if self.tx.send_raw(&r) {
                            self.tx.stats.arp_replies_sent += 1;
                        }
                        self.tx.resolved(now);
                    }
                    ArpAction::Learned(_) => self.tx.resolved(now),
                    ArpAction::Ignored => self.tx.stats.rx_other += 1,
                }
            }
            EthernetProtocol::Ipv4 => {
                let p = eth.payload();
                if p.len() < 20 || p[0] >> 4 != 4 {
                    self.tx.stats.rx_malformed += 1;
                    return;
                }
                let ihl = usize::from(p[0] & 0x0f) * 4;
                let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
                if ihl < 20 || total < ihl || total > p.len() {
                    self.tx.stats.rx_malformed += 1;
                    return;
                }
                let src = ip4(&p[12..16]);
                let to = ip4(&p[16..20]);
                if to != self.cfg.ip.address() {
                    self.tx.stats.rx_not_ours += 1;
                    return;
                }
                let verdict = self.tx.port.rx_checksum(&frame);
                let ip_ok = match verdict.ip {
                    RxState::Bad => false,
                    s if s.trusted() => true,
                    _ => csum::ipv4_header_ok(&p[..ihl]),
                };
                if !ip_ok {
                    self.tx.stats.rx_bad_checksum += 1;
                    return;
                }
                // Glean the sender's MAC (our subnet only): replies need no ARP round, and
                // a peer we keep hearing from stays known.
                if self.cfg.ip.contains_addr(&src) && self.tx.neighbors.wants_refresh(src, now) {
                    let smac = eth.src_addr();
                    if smac.is_unicast() {
                        self.tx.neighbors.shared().learn(src, smac, now);
                    }
                }
                let shard = if p[9] == 6 {
                    if total < ihl + 20 {
                        self.tx.stats.rx_malformed += 1;
                        return;
                    }
                    let t = &p[ihl..];
                    let sport = u16::from_be_bytes([t[0], t[1]]);
                    let dport = u16::from_be_bytes([t[2], t[3]]);
                    if let Some(fwd) = &self.fwd {
                        let owner = usize::from(self.cfg.steering.queue_of(src, to, sport, dport));
                        if owner != fwd.me && owner < fwd.queues.len() {
                            match fwd.queues[owner].push(frame) {
                                Ok(()) => self.tx.stats.forwarded += 1,
                                Err(_) => self.tx.stats.forward_full += 1,
                            }
                            return;
                        }
                    }
                    // Verified once, by the flow's owner (after any hand-over).
                    let tcp_ok = match verdict.l4 {
                        RxState::Bad => false,
                        s if s.trusted() => {
                            self.tx.stats.rx_checksum_by_device += 1;
                            true
                        }
                        _ => csum::l4_ok(octets(&p[12..16]), octets(&p[16..20]), 6, &p[ihl..total]),
                    };
                    if !tcp_ok {
                        self.tx.stats.rx_bad_checksum += 1;
                        return;
                    }
                    let shard = self.shard_of(src, sport, dport);
                    // A connection request (SYN without ACK) to a port we listen on.
                    if t[13] & 0x12 == 0x02 && self.listening.contains(&dport) {
                        let syns = &mut self.shards[shard].syns;
                        match syns.iter_mut().find(|(p, _)| *p == dport) {
                            Some((_, n)) => *n += 1,
                            None => syns.push((dport, 1)),
                        }
                    }
                    shard
                } else if p[9] == 1 {
                    0
                } else {
                    self.tx.stats.rx_other += 1;
                    return;
                };
                let sh = &mut self.shards[shard];
                if sh.rx.len() >= self.cfg.shard_rx_max {
                    self.tx.stats.rx_shard_full += 1;
                    return;
                }
                sh.rx.push_back(frame);
                self.mark(shard);
            }
            _ => self.tx.stats.rx_other += 1,
        }
    }

    fn poll_shard(&mut self, i: usize, now: Instant) {
        // Enough listeners for the SYNs about to be processed, within the budget.
        for (port, n) in std::mem::take(&mut self.shards[i].syns) {
            let sh = &self.shards[i];
            let have = sh.listeners.iter().filter(|(p, _)| *p == port).count();
            let room = self.cfg.max_half_open.saturating_sub(sh.half_open);
            for _ in have..n.min(room) {
                self.add_listener(i, port);
            }
        }
        {
            let sh = &mut self.shards[i];
            let mut dev = ShardDevice {
                rx: &mut sh.rx,
                tx: &mut self.tx,
                now,
                mtu: self.mtu,
            };
            sh.iface.poll(now, &mut dev, &mut sh.sockets);
            // smoltcp 0.12 emits at most one segment per socket per egress pass (0.13 made
            // egress exhaustive): keep passing while segments come out, up to a burst, so a
            // sending connection fills its window in one turn rather than one segment per
            // turn.
            for _ in 0..EGRESS_PASSES {
                let before = dev.tx.stats.tx_no_buffer + dev.tx.queued();
                sh.iface.poll_egress(now, &mut dev, &mut sh.sockets);
                if dev.tx.stats.tx_no_buffer + dev.tx.queued() == before || dev.tx.full() {
                    break;
                }
            }
            sh.dirty = false;
        }
        self.after_poll(i);
        let sh = &mut self.shards[i];
        let next = sh.iface.poll_at(now, &sh.sockets);
        if next != sh.timer {
            if let Some(old) = sh.timer {
                self.timers.remove(&(old, i));
            }
            if let Some(t) = next {
                self.timers.insert((t, i));
            }
            sh.timer = next;
        }
    }

    /// Puts a shard on this turn's list (once).
    fn mark(&mut self, i: usize) {
        let sh = &mut self.shards[i];
        if !sh.dirty {
            sh.dirty = true;
            self.active.push(i);
        }
    }

    /// Promotes listeners that took a SYN, replaces them, and reports connection changes.
    fn after_poll(&mut self, i: usize) {
        // Listeners that are no longer listening hold a connection now.
        let sh = &self.shards[i];
        let promoted: Vec<(u16, SocketHandle)> = sh
            .listeners
            .iter()
            .copied()
            .filter(|&(_, h)| sh.sockets.get::<tcp::Socket<'_>>(h).state() != tcp::State::Listen)
            .collect();
        for &(port, h) in &promoted {
            let sh = &mut self.shards[i];
            sh.listeners.retain(|&(_, lh)| lh != h);
            let s = sh.sockets.get::<tcp::Socket<'_>>(h);
            let remote = s.remote_endpoint().unwrap_or(IpEndpoint::new(
                IpAddress::Ipv4(Ipv4Address::UNSPECIFIED),
                0,
            ));
            sh.half_open += 1;
            self.alloc_conn(Conn {
                gen: 0,
                shard: i,
                handle: h,
                phase: Phase::HalfOpen,
                local_port: port,
                remote,
                readable: false,
                eof: false,
                want_write: false,
                started: self.now,
                by_us: false,
                released: false,
            });
        }
        // Connection changes.
        // The shard's list is rebuilt into a spare vector (the two swap: no allocation).
        let conns = std::mem::take(&mut self.shards[i].conns);
        let mut keep = std::mem::take(&mut self.conn_scratch);
        keep.clear();
        for &idx in &conns {
            let Some(c) = self.slab[idx as usize].as_mut() else {
                continue;
            };
            let id = ConnId { idx, gen: c.gen };
            let sh = &mut self.shards[i];
            let s = sh.sockets.get_mut::<tcp::Socket<'_>>(c.handle);
            if c.released && s.recv_queue() > 0 {
                // Nobody reads a released connection: drop what arrives.
                let _ = s.recv(|b| (b.len(), ()));
            }
            let state = s.state();
            let gone = match state {
                tcp::State::Closed | tcp::State::Listen => true,
                tcp::State::TimeWait if c.released => true,
                // Our FIN went first, then the peer's: what the peer sent before its FIN
                // may still be unread (often the last segment carries the FIN). It stays
                // readable; the connection ends when the application has drained it.
                tcp::State::TimeWait => s.recv_queue() == 0,
                _ => false,
            };
            if gone {
                // (A reset half-open socket may fall back to Listen in smoltcp.)
                match c.phase {
                    Phase::HalfOpen => {
                        sh.half_open = sh.half_open.saturating_sub(1);
                        self.tx.stats.handshakes_dropped += 1;
                        self.events.push_back(StackEvent::Closed(id));
                    }
                    // A handshake that ends before its timeout, and not by our hand, was
                    // reset by the peer (smoltcp does not say so itself).
                    Phase::Connecting
                        if !c.by_us && self.now < c.started + self.cfg.handshake_timeout =>
                    {
                        self.events.push_back(StackEvent::Refused(id));
                    }
                    Phase::Connecting | Phase::Open => {
                        self.events.push_back(StackEvent::Closed(id));
                    }
                }
                self.tx.stats.closed += 1;
                let h = c.handle;
                let (lp, remote, outbound) = (c.local_port, c.remote, c.phase == Phase::Connecting);
                sh.sockets.remove(h);
                self.slab[idx as usize] = None;
                self.gens[idx as usize] = self.gens[idx as usize].wrapping_add(1);
                self.free.push(idx);
                if outbound || !self.listening.contains(&lp) {
                    self.used_ports.remove(&(remote, lp));
                }
                debug!(conn = idx, ?state, "connection closed");
                continue;
            }
            let established = !matches!(state, tcp::State::SynSent | tcp::State::SynReceived);
            match c.phase {
                Phase::HalfOpen if established => {
                    c.phase = Phase::Open;
                    sh.half_open = sh.half_open.saturating_sub(1);
                    s.set_timeout(None);
                    c.remote = s.remote_endpoint().unwrap_or(c.remote);
                    self.tx.stats.accepted += 1;
                    self.events.push_back(StackEvent::Accepted {
                        conn: id,
                        local_port: c.local_port,
                        remote: c.remote,
                    });
                }
                Phase::Connecting if established => {
                    c.phase = Phase::Open;
                    s.set_timeout(None);
                    self.tx.stats.connected += 1;
                    self.events.push_back(StackEvent::Connected(id));
                }
                _ => {}
            }
            if c.phase == Phase::Open {
                if !c.readable && s.can_recv() {
                    c.readable = true;
                    self.events.push_back(StackEvent::Readable(id));
                } else if !c.eof && !s.may_recv() && s.recv_queue() == 0 {
                    c.eof = true;
                    self.events.push_back(StackEvent::Readable(id));
                }
                // Room for a worthwhile write (a quarter of the buffer, or all of it
                // once it drained), as Linux wakes writers at a third of the buffer free:
                // waking at the first free byte makes writers trickle a segment per turn.
                let free = s.send_capacity() - s.send_queue();
                if c.want_write
                    && s.can_send()
                    && (free >= s.send_capacity() / 4 || s.send_queue() == 0)
                {
                    c.want_write = false;
                    self.events.push_back(StackEvent::Writable(id));
                }
            }
            keep.push(idx);
        }
        self.shards[i].conns = keep;
        self.conn_scratch = conns;
        self.refill_listeners(i);
    }

    /// Tops up the shard's listeners for every port, within the half-open budget (a flood
    /// uses them up; they come back as its handshakes finish or expire).
    fn refill_listeners(&mut self, i: usize) {
        if self.listening.is_empty() {
            return;
        }
        let backlog = self.cfg.listen_backlog.max(1);
        for k in 0..self.listening.len() {
            let port = self.listening[k];
            let have = self.shards[i]
                .listeners
                .iter()
                .filter(|(p, _)| *p == port)
                .count();
            for _ in have..backlog {
                if self.shards[i].half_open >= self.cfg.max_half_open {
                    self.tx.stats.listen_limited += 1;
                    return;
                }
                self.add_listener(i, port);
            }
        }
    }
}

/// An IPv4 address from 4 bytes (callers pass exactly 4).
fn ip4(b: &[u8]) -> Ipv4Address {
    Ipv4Address::from(octets(b))
}

fn octets(b: &[u8]) -> [u8; 4] {
    [b[0], b[1], b[2], b[3]]
}
