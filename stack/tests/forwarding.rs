//! Two workers on a two-queue device that spreads flows by a hash the stack cannot predict
//! (the in-memory link's fanout, as af_packet's kernel fanout does): frames of flows the
//! other worker owns are handed over, and every connection works — accepted ones and
//! outbound ones, whose replies land on either queue. Without the handover, some fail.
//! Simulated time; ARP answers land on one queue and serve both workers (shared table).

mod common;

use common::pattern;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, IpAddress, IpEndpoint, Ipv4Address, Ipv4Cidr};
use stack::l2::Neighbors;
use stack::memlink::{LinkConfig, MemLink, MemPort};
use stack::netstack::Forwarding;
use stack::rss::Steering;
use stack::{ConnId, NetStack, StackConfig, StackEvent};

const PORT: u16 = 6800;

/// A connection seen from both ends: (B's worker, A's end, B's end).
type Pair = (usize, ConnId, ConnId);

fn cfg(last: u8) -> StackConfig {
    let mut c = StackConfig::new(
        EthernetAddress([0x02, 0, 0, 0, 0, last]),
        Ipv4Cidr::new(Ipv4Address::new(10, 0, 0, last), 24),
    );
    c.shards = 8;
    c.rx_buffer = 8192;
    c.tx_buffer = 8192;
    c
}

struct Net {
    link: MemLink,
    a: NetStack<MemPort>,
    b: Vec<NetStack<MemPort>>,
    now: Instant,
    ev_a: Vec<StackEvent>,
    ev_b: Vec<Vec<StackEvent>>,
}

impl Net {
    fn new(forward: bool) -> Self {
        let link = MemLink::new(LinkConfig::default());
        let (pa, pbs) = link.multi_queue(2);
        let now = Instant::from_millis(1);
        let a = NetStack::new(cfg(1), pa, Neighbors::new(), now);
        let shared = Neighbors::new();
        let mut fwd = Forwarding::group(2, 1024).into_iter();
        let b = pbs
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let mut c = cfg(2);
                c.queue = i as u16;
                c.steering = Steering::round_robin(2, 128);
                c.seed ^= i as u64 + 7;
                let mut st = NetStack::new(c, p, std::sync::Arc::clone(&shared), now);
                let f = fwd.next().expect("one per worker");
                if forward {
                    st.set_forwarding(f);
                }
                st
            })
            .collect();
        Self {
            link,
            a,
            b,
            now,
            ev_a: Vec::new(),
            ev_b: vec![Vec::new(), Vec::new()],
        }
    }

    fn settle(&mut self) {
        self.link.set_now(self.now);
        for _ in 0..10_000 {
            let mut work = self.a.poll(self.now);
            for b in &mut self.b {
                work |= b.poll(self.now);
            }
            while let Some(e) = self.a.next_event() {
                self.ev_a.push(e);
            }
            for (i, b) in self.b.iter_mut().enumerate() {
                while let Some(e) = b.next_event() {
                    self.ev_b[i].push(e);
                }
            }
            if !work {
                return;
            }
        }
        panic!("never quiet");
    }

    fn run(&mut self, limit: Duration, mut done: impl FnMut(&mut Self) -> bool) -> bool {
        let end = self.now + limit;
        self.settle();
        while !done(self) {
            if self.now >= end {
                return false;
            }
            let next = std::iter::once(self.a.poll_at())
                .chain(self.b.iter().map(|b| b.poll_at()))
                .chain(std::iter::once(self.link.next_delivery()))
                .flatten()
                .min();
            self.now = match next {
                Some(t) if t > self.now => t.min(end),
                _ => self.now + Duration::from_micros(10),
            };
            self.settle();
        }
        true
    }
}

/// Echo on every connection of `b`'s workers until each of `conns` got its bytes back.
fn echo_all(net: &mut Net, pairs: &[Pair], b_sends: bool) -> bool {
    let mut got = vec![Vec::new(); pairs.len()];
    for (k, &(w, ca, cb)) in pairs.iter().enumerate() {
        let msg = pattern(k as u64, 300);
        if b_sends {
            assert_eq!(net.b[w].send(cb, &msg).unwrap(), msg.len());
        } else {
            assert_eq!(net.a.send(ca, &msg).unwrap(), msg.len());
        }
    }
    let mut buf = [0u8; 4096];
    net.run(Duration::from_secs(5), |net| {
        for (k, &(w, ca, cb)) in pairs.iter().enumerate() {
            let (echoer, echo_conn) = if b_sends {
                (&mut net.a, ca)
            } else {
                (&mut net.b[w], cb)
            };
            let n = echoer.recv(echo_conn, &mut buf).unwrap_or(0);
            if n > 0 {
                echoer.send(echo_conn, &buf[..n]).unwrap();
            }
            let back = if b_sends {
                net.b[w].recv(cb, &mut buf).unwrap_or(0)
            } else {
                net.a.recv(ca, &mut buf).unwrap_or(0)
            };
            got[k].extend_from_slice(&buf[..back]);
        }
        got.iter().all(|g| g.len() == 300)
    }) && got
        .iter()
        .enumerate()
        .all(|(k, g)| *g == pattern(k as u64, 300))
}

/// Connects `n` from A to B (inbound for B's workers) and `n` from each B worker to A;
/// returns (inbound pairs, outbound pairs, outbound connections that never came up).
fn connect_both_ways(net: &mut Net, n: usize) -> (Vec<Pair>, Vec<Pair>, usize) {
    let to_b = IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::new(10, 0, 0, 2)), PORT);
    let to_a = IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::new(10, 0, 0, 1)), PORT);
    let inbound: Vec<ConnId> = (0..n).map(|_| net.a.connect(to_b).unwrap()).collect();
    let outbound: Vec<(usize, ConnId)> = (0..2)
        .flat_map(|w| (0..n).map(move |_| w))
        .map(|w| (w, net.b[w].connect(to_a).unwrap()))
        .collect();
    net.run(Duration::from_secs(10), |net| {
        let up_a = net
            .ev_a
            .iter()
            .filter(|e| matches!(e, StackEvent::Connected(_)))
            .count();
        let acc_a = net
            .ev_a
            .iter()
            .filter(|e| matches!(e, StackEvent::Accepted { .. }))
            .count();
        let closed_b: usize = net
            .ev_b
            .iter()
            .flatten()
            .filter(|e| matches!(e, StackEvent::Closed(_)))
            .count();
        let up_b: usize = net
            .ev_b
            .iter()
            .flatten()
            .filter(|e| matches!(e, StackEvent::Connected(_)))
            .count();
        up_a == n && acc_a + closed_b >= 2 * n && up_b + closed_b >= 2 * n
    });
    // Pair each side's ends by the client's local port.
    let mut accepted_by_b = std::collections::HashMap::new();
    for (w, evs) in net.ev_b.iter().enumerate() {
        for e in evs {
            if let StackEvent::Accepted { conn, remote, .. } = e {
                accepted_by_b.insert(remote.port, (w, *conn));
            }
        }
    }
    let mut accepted_by_a = std::collections::HashMap::new();
    for e in &net.ev_a {
        if let StackEvent::Accepted { conn, remote, .. } = e {
            accepted_by_a.insert(remote.port, *conn);
        }
    }
    let ins = inbound
        .iter()
        .filter_map(|&ca| {
            let lp = net.a.endpoints(ca).ok()?.0;
            let &(w, cb) = accepted_by_b.get(&lp)?;
            Some((w, ca, cb))
        })
        .collect::<Vec<_>>();
    assert_eq!(
        ins.len(),
        n,
        "every inbound connection accepted by some worker"
    );
    let mut failed = 0;
    let mut outs = Vec::new();
    for &(w, cb) in &outbound {
        let up = net.ev_b[w].contains(&StackEvent::Connected(cb));
        match (up, net.b[w].endpoints(cb)) {
            (true, Ok((lp, _))) => outs.push((w, accepted_by_a[&lp], cb)),
            _ => failed += 1,
        }
    }
    net.ev_a.clear();
    net.ev_b.iter_mut().for_each(Vec::clear);
    (ins, outs, failed)
}

#[test]
fn flows_reach_their_owner_on_a_device_without_rss() {
    let mut net = Net::new(true);
    net.a.listen(PORT).unwrap();
    for b in &mut net.b {
        b.listen(PORT).unwrap();
    }
    let (ins, outs, failed) = connect_both_ways(&mut net, 20);
    assert_eq!(failed, 0, "every outbound connection came up");
    assert_eq!(outs.len(), 40);
    // Inbound flows are owned by the worker the model names, whichever queue they hit.
    let per_worker = [0, 1].map(|w| ins.iter().filter(|(o, _, _)| *o == w).count());
    assert!(
        per_worker.iter().all(|&k| k > 0),
        "both workers own flows: {per_worker:?}"
    );
    assert!(echo_all(&mut net, &ins, false), "inbound echoes intact");
    assert!(echo_all(&mut net, &outs, true), "outbound echoes intact");
    let fwd: u64 = net.b.iter().map(|b| b.stats().forwarded).sum();
    assert!(fwd > 0, "frames were handed over");
    assert_eq!(net.b.iter().map(|b| b.stats().forward_full).sum::<u64>(), 0);
    // One table: the ARP answer for A reached one queue and serves both workers.
    eprintln!(
        "forwarded {fwd} frames; stats B0 {:?} B1 {:?}",
        net.b[0].stats(),
        net.b[1].stats()
    );
}

/// The control: the same device and traffic without the handover loses connections.
#[test]
fn without_forwarding_flows_get_lost() {
    let mut net = Net::new(false);
    net.a.listen(PORT).unwrap();
    for b in &mut net.b {
        b.listen(PORT).unwrap();
    }
    let to_a = IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::new(10, 0, 0, 1)), PORT);
    let outbound: Vec<(usize, ConnId)> = (0..2)
        .flat_map(|w| (0..20).map(move |_| w))
        .map(|w| (w, net.b[w].connect(to_a).unwrap()))
        .collect();
    net.run(Duration::from_secs(2), |_| false);
    let up = outbound
        .iter()
        .filter(|(w, c)| net.ev_b[*w].contains(&StackEvent::Connected(*c)))
        .count();
    assert!(
        up < outbound.len(),
        "some replies landed on the other queue: {up} of 40 up"
    );
}
