//! A device whose transmit side stops taking frames (a stuck link, a ring the NIC never
//! drains) while packets keep arriving: the stack holds no more frames than its bounds say
//! (`StackConfig::tx_queue_max`; what a DPDK pool is sized by), drops and counts the
//! replies beyond them, and serves again once the device takes frames.
//!
//! Found by the `stack_input` fuzz target (msgr/fuzz/corpus/stack_input/
//! regression-tx-queue-unbounded): ARP replies and smoltcp's replies to received packets
//! were queued without limit, one frame (one mbuf) per packet received.

use std::collections::VecDeque;

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, IpAddress, IpEndpoint, Ipv4Address, Ipv4Cidr};
use stack::checksum;
use stack::l2::{self, ArpAction, Neighbors, ETH_HLEN};
use stack::{NetStack, Port, StackConfig};

const MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 1]);
const PEER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 2]);
const FAR_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 3]);
const QUEUE_MAX: usize = 4;

fn ip(last: u8) -> Ipv4Address {
    Ipv4Address::new(10, 0, 0, last)
}

/// A device that takes nothing while `stalled`.
#[derive(Default)]
struct StallPort {
    rx: VecDeque<Vec<u8>>,
    sent: Vec<Vec<u8>>,
    stalled: bool,
}

impl Port for StallPort {
    type Frame = Vec<u8>;

    fn rx_burst(&mut self, out: &mut Vec<Vec<u8>>, max: usize) -> usize {
        let n = self.rx.len().min(max);
        out.extend(self.rx.drain(..n));
        n
    }

    fn alloc(&mut self, len: usize) -> Option<Vec<u8>> {
        Some(vec![0; len])
    }

    fn tx_burst(&mut self, frames: &mut VecDeque<Vec<u8>>) -> usize {
        if self.stalled {
            return 0;
        }
        let n = frames.len();
        self.sent.extend(frames.drain(..));
        n
    }
}

/// A SYN from the peer to `port` of ours, checksums filled in.
fn syn(sport: u16, port: u16) -> Vec<u8> {
    let mut f = vec![0u8; ETH_HLEN + 40];
    l2::write_eth_header(&mut f, PEER_MAC, MAC, smoltcp::wire::EthernetProtocol::Ipv4);
    let p = &mut f[ETH_HLEN..];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&40u16.to_be_bytes());
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&ip(2).octets());
    p[16..20].copy_from_slice(&ip(1).octets());
    let c = !checksum::fold(checksum::sum(0, &p[..20]));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let t = &mut p[20..];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&port.to_be_bytes());
    t[4..8].copy_from_slice(&1000u32.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = 0x02;
    t[14..16].copy_from_slice(&8192u16.to_be_bytes());
    let ph = checksum::pseudo_header(ip(2).octets(), ip(1).octets(), 6, 20);
    let c = !checksum::fold(checksum::sum(u64::from(ph), t));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    f
}

fn is_arp_reply(f: &[u8]) -> bool {
    f[12..14] == [0x08, 0x06] && f[ETH_HLEN + 7] == 2
}

#[test]
fn a_stalled_device_bounds_what_the_stack_holds() {
    let mut cfg = StackConfig::new(MAC, Ipv4Cidr::new(ip(1), 24));
    cfg.shards = 1;
    cfg.tx_queue_max = QUEUE_MAX;
    cfg.rx_buffer = 4096;
    cfg.tx_buffer = 4096;
    let now = Instant::from_millis(1);
    let port = StallPort {
        stalled: true,
        ..StallPort::default()
    };
    let mut st = NetStack::new(cfg, port, Neighbors::new(), now);
    st.listen(6800).unwrap();
    st.poll(now);

    // A dial to a host not yet resolved: its SYN waits for ARP, the request is queued.
    let far = IpEndpoint::new(IpAddress::Ipv4(ip(3)), 6800);
    st.connect(far).unwrap();
    st.poll(now);
    let held = st.frames_held();
    assert_eq!((held.tx_queue, held.unresolved), (1, 1), "{held:?}");

    // Each ARP request for us wants a reply, each SYN to a closed port a reset: 20 replies
    // for the 3 places left in the queue.
    for i in 0..10 {
        let req = l2::arp_request(PEER_MAC, ip(2), ip(1));
        st.port_mut().rx.push_back(req);
        st.port_mut().rx.push_back(syn(5000 + i, 9));
    }
    for _ in 0..10 {
        st.poll(now);
        let held = st.frames_held();
        assert!(held.tx_queue <= QUEUE_MAX, "{held:?}");
    }
    assert_eq!(st.frames_held().tx_queue, QUEUE_MAX);
    assert_eq!(st.stats().tx_no_buffer, 20 - (QUEUE_MAX as u64 - 1));

    // The far host answers: its SYN is ready to go and waits on for room in the queue.
    let ask = l2::arp_request(MAC, ip(1), ip(3));
    let far_cidr = Ipv4Cidr::new(ip(3), 24);
    let ArpAction::Reply(answer) =
        l2::handle_arp(&ask[ETH_HLEN..], FAR_MAC, far_cidr, &Neighbors::new(), now)
    else {
        panic!("no ARP answer built");
    };
    st.port_mut().rx.push_back(answer);
    st.poll(now);
    let held = st.frames_held();
    assert_eq!((held.tx_queue, held.unresolved), (QUEUE_MAX, 1), "{held:?}");

    // The device takes frames again: what waited goes out, the SYN to the far host
    // included, and ARP is answered as before.
    st.port_mut().stalled = false;
    let later = now + Duration::from_millis(1);
    for _ in 0..3 {
        st.poll(later);
    }
    let held = st.frames_held();
    assert_eq!((held.tx_queue, held.unresolved), (0, 0), "{held:?}");
    let sent = std::mem::take(&mut st.port_mut().sent);
    assert_eq!(
        sent.iter().filter(|f| is_arp_reply(f)).count(),
        QUEUE_MAX - 1
    );
    let syn_out = sent
        .iter()
        .any(|f| f[0..6] == FAR_MAC.0 && f[12..14] == [0x08, 0x00] && f[ETH_HLEN + 33] & 0x02 != 0);
    assert!(
        syn_out,
        "the dial's SYN was sent once the device took frames"
    );
    st.port_mut()
        .rx
        .push_back(l2::arp_request(PEER_MAC, ip(2), ip(1)));
    st.poll(later);
    assert!(st.port().sent.iter().any(|f| is_arp_reply(f)));
}
