//! Ethernet and ARP, done here rather than in smoltcp: every worker's smoltcp instances run
//! on `Medium::Ip`, and this layer frames their packets. That way one neighbour table serves
//! all workers (ARP replies arrive on one queue only, so a per-Interface cache would leave
//! the other workers asking forever) and its size is ours to choose (smoltcp's is 8).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Ipv4Address, Ipv4Cidr,
};

/// Ethernet header length.
pub const ETH_HLEN: usize = 14;

/// How long a learned neighbour is trusted.
pub const NEIGHBOR_TTL: Duration = Duration::from_secs(300);

/// Neighbours (IPv4 → MAC) shared by every worker of a port.
///
/// Writers (the worker that receives an ARP packet) take the lock; readers keep a private
/// copy and refresh it only when `version` moved, so the transmit path costs one atomic
/// load per packet and no lock.
#[derive(Debug, Default)]
pub struct Neighbors {
    map: RwLock<HashMap<Ipv4Address, (EthernetAddress, Instant)>>,
    version: AtomicU64,
}

impl Neighbors {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Learns (or refreshes) a neighbour.
    pub fn learn(&self, ip: Ipv4Address, mac: EthernetAddress, now: Instant) {
        let mut m = self.map.write().unwrap_or_else(|e| e.into_inner());
        m.insert(ip, (mac, now + NEIGHBOR_TTL));
        drop(m);
        // Always a new version, a refresh with the same MAC too: the workers' copies hold
        // the expiry time as well, and one kept from before a refresh would expire the
        // neighbour for good (every packet to it waiting for an answer already given).
        self.version.fetch_add(1, Ordering::Release);
    }

    /// Adds a static entry (from configuration: a neighbour that never expires).
    pub fn add_static(&self, ip: Ipv4Address, mac: EthernetAddress) {
        let mut m = self.map.write().unwrap_or_else(|e| e.into_inner());
        m.insert(ip, (mac, Instant::from_millis(i64::MAX / 2)));
        drop(m);
        self.version.fetch_add(1, Ordering::Release);
    }

    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    fn snapshot(&self, into: &mut HashMap<Ipv4Address, (EthernetAddress, Instant)>) {
        let m = self.map.read().unwrap_or_else(|e| e.into_inner());
        into.clone_from(&m);
    }
}

/// A worker's view of the shared table.
#[derive(Debug)]
pub struct NeighborCache {
    shared: Arc<Neighbors>,
    local: HashMap<Ipv4Address, (EthernetAddress, Instant)>,
    seen: u64,
}

impl NeighborCache {
    pub fn new(shared: Arc<Neighbors>) -> Self {
        Self {
            shared,
            local: HashMap::new(),
            seen: u64::MAX,
        }
    }

    pub fn shared(&self) -> &Arc<Neighbors> {
        &self.shared
    }

    /// The MAC of `ip`, if known and fresh.
    pub fn lookup(&mut self, ip: Ipv4Address, now: Instant) -> Option<EthernetAddress> {
        match self.entry(ip) {
            Some((mac, until)) if until > now => Some(mac),
            _ => None,
        }
    }

    /// Whether what we know of `ip` is missing or past half its lifetime: then a packet
    /// from it is worth learning from again, so a neighbour we keep talking to never
    /// expires (and never costs an ARP round trip mid-conversation).
    pub fn wants_refresh(&mut self, ip: Ipv4Address, now: Instant) -> bool {
        self.entry(ip)
            .is_none_or(|(_, until)| until < now + NEIGHBOR_TTL / 2)
    }

    fn entry(&mut self, ip: Ipv4Address) -> Option<(EthernetAddress, Instant)> {
        let v = self.shared.version();
        if v != self.seen {
            self.shared.snapshot(&mut self.local);
            self.seen = v;
        }
        self.local.get(&ip).copied()
    }
}

/// What an ARP packet asks of us.
#[derive(Debug, PartialEq, Eq)]
pub enum ArpAction {
    /// Nothing to answer (a reply, or a request for another address): learned if useful.
    Learned(Ipv4Address),
    /// A request for our address: answer with this frame.
    Reply(Vec<u8>),
    /// Not an ARP packet we understand.
    Ignored,
}

/// Handles an ARP payload (after the Ethernet header) received on a port owning `me`.
pub fn handle_arp(
    payload: &[u8],
    my_mac: EthernetAddress,
    me: Ipv4Cidr,
    neighbors: &Neighbors,
    now: Instant,
) -> ArpAction {
    let Ok(pkt) = ArpPacket::new_checked(payload) else {
        return ArpAction::Ignored;
    };
    let Ok(ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr,
        source_protocol_addr,
        target_protocol_addr,
        ..
    }) = ArpRepr::parse(&pkt)
    else {
        return ArpAction::Ignored;
    };
    if !source_hardware_addr.is_unicast() || !me.contains_addr(&source_protocol_addr) {
        return ArpAction::Ignored;
    }
    // Learn from every ARP packet of our subnet addressed to us or broadcast (RFC 826's
    // "merge" step), so the answer to our own request lands in the shared table.
    if target_protocol_addr == me.address() || operation == ArpOperation::Reply {
        neighbors.learn(source_protocol_addr, source_hardware_addr, now);
    }
    if operation == ArpOperation::Request && target_protocol_addr == me.address() {
        let reply = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: my_mac,
            source_protocol_addr: me.address(),
            target_hardware_addr: source_hardware_addr,
            target_protocol_addr: source_protocol_addr,
        };
        return ArpAction::Reply(arp_frame(&reply, my_mac, source_hardware_addr));
    }
    ArpAction::Learned(source_protocol_addr)
}

/// An ARP request for `target`, broadcast.
pub fn arp_request(my_mac: EthernetAddress, me: Ipv4Address, target: Ipv4Address) -> Vec<u8> {
    let req = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: my_mac,
        source_protocol_addr: me,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    arp_frame(&req, my_mac, EthernetAddress::BROADCAST)
}

fn arp_frame(repr: &ArpRepr, src: EthernetAddress, dst: EthernetAddress) -> Vec<u8> {
    let mut buf = vec![0u8; ETH_HLEN + repr.buffer_len()];
    write_eth_header(&mut buf, src, dst, EthernetProtocol::Arp);
    let mut pkt = ArpPacket::new_unchecked(&mut buf[ETH_HLEN..]);
    repr.emit(&mut pkt);
    buf
}

/// Writes an Ethernet header at the front of `buf` (at least [`ETH_HLEN`] bytes).
pub fn write_eth_header(
    buf: &mut [u8],
    src: EthernetAddress,
    dst: EthernetAddress,
    ethertype: EthernetProtocol,
) {
    let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
    EthernetRepr {
        src_addr: src,
        dst_addr: dst,
        ethertype,
    }
    .emit(&mut f);
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 1]);
    const B: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 2]);

    fn cidr(last: u8) -> Ipv4Cidr {
        Ipv4Cidr::new(Ipv4Address::new(10, 0, 0, last), 24)
    }

    #[test]
    fn request_for_us_is_answered_and_learned() {
        let n = Neighbors::new();
        let now = Instant::from_secs(1);
        let req = arp_request(A, cidr(1).address(), cidr(2).address());
        let action = handle_arp(&req[ETH_HLEN..], B, cidr(2), &n, now);
        let ArpAction::Reply(reply) = action else {
            panic!("expected a reply, got {action:?}");
        };
        let mut cache = NeighborCache::new(Arc::clone(&n));
        assert_eq!(cache.lookup(cidr(1).address(), now), Some(A));
        // The requester learns from the reply.
        let n2 = Neighbors::new();
        let back = handle_arp(&reply[ETH_HLEN..], A, cidr(1), &n2, now);
        assert_eq!(back, ArpAction::Learned(cidr(2).address()));
        let mut c2 = NeighborCache::new(n2);
        assert_eq!(c2.lookup(cidr(2).address(), now), Some(B));
        assert_eq!(
            c2.lookup(cidr(2).address(), now + NEIGHBOR_TTL),
            None,
            "expired"
        );
    }

    #[test]
    fn foreign_and_malformed_arp_is_ignored() {
        let n = Neighbors::new();
        let now = Instant::from_secs(1);
        let other_subnet = arp_request(A, Ipv4Address::new(192, 168, 0, 1), cidr(2).address());
        assert_eq!(
            handle_arp(&other_subnet[ETH_HLEN..], B, cidr(2), &n, now),
            ArpAction::Ignored
        );
        assert_eq!(
            handle_arp(&[1, 2, 3], B, cidr(2), &n, now),
            ArpAction::Ignored
        );
        assert!(n.is_empty());
    }

    #[test]
    fn a_neighbour_relearned_after_expiry_is_usable_again() {
        // Regression: a refresh with the same MAC did not move the table's version, so a
        // worker's copy kept the old expiry and the neighbour stayed expired for good
        // (bench soak's dpdk sessions all stalled 300 s into the run).
        let n = Neighbors::new();
        let t0 = Instant::from_secs(1);
        let mut c = NeighborCache::new(Arc::clone(&n));
        n.learn(cidr(9).address(), A, t0);
        assert_eq!(c.lookup(cidr(9).address(), t0), Some(A));
        let later = t0 + NEIGHBOR_TTL + Duration::from_secs(1);
        assert_eq!(c.lookup(cidr(9).address(), later), None, "expired");
        n.learn(cidr(9).address(), A, later);
        assert_eq!(c.lookup(cidr(9).address(), later), Some(A));
    }

    #[test]
    fn refresh_wanted_past_half_the_lifetime() {
        let n = Neighbors::new();
        let t0 = Instant::from_secs(1);
        let mut c = NeighborCache::new(Arc::clone(&n));
        assert!(c.wants_refresh(cidr(9).address(), t0), "unknown");
        n.learn(cidr(9).address(), A, t0);
        assert!(!c.wants_refresh(cidr(9).address(), t0));
        let half = t0 + NEIGHBOR_TTL / 2 + Duration::from_secs(1);
        assert!(c.wants_refresh(cidr(9).address(), half));
        assert_eq!(c.lookup(cidr(9).address(), half), Some(A), "still usable");
    }

    #[test]
    fn caches_refresh_when_the_table_changes() {
        let n = Neighbors::new();
        let now = Instant::from_secs(1);
        let mut c = NeighborCache::new(Arc::clone(&n));
        assert_eq!(c.lookup(cidr(9).address(), now), None);
        n.learn(cidr(9).address(), A, now);
        assert_eq!(c.lookup(cidr(9).address(), now), Some(A));
        n.learn(cidr(9).address(), B, now);
        assert_eq!(c.lookup(cidr(9).address(), now), Some(B));
    }
}
