//! `bench stack`: the userspace TCP/IP stack on its own, two [`stack::NetStack`]s over the
//! in-memory link, driven by one thread in real time. It measures what the stack's own
//! code costs (smoltcp, the shard demux, framing): one echo round trip is two full passes
//! through both stacks. The hazard it checks: latency must stay flat as connections grow
//! (target: p50 with 1,000 open connections within 1.5x of the p50 with 10).

use std::time::Instant as StdInstant;

use hdrhistogram::Histogram;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, IpAddress, IpEndpoint, Ipv4Address, Ipv4Cidr};
use stack::l2::Neighbors;
use stack::memlink::{LinkConfig, MemLink, MemPort};
use stack::{ConnId, NetStack, StackConfig, StackEvent};

const PORT: u16 = 6800;

struct Pair {
    link: MemLink,
    a: NetStack<MemPort>,
    b: NetStack<MemPort>,
    t0: StdInstant,
}

impl Pair {
    fn new(buf: usize) -> Self {
        let link = MemLink::new(LinkConfig {
            delay: smoltcp::time::Duration::ZERO,
            capacity: 1 << 16,
            ..LinkConfig::default()
        });
        let (pa, pb) = link.ports();
        let mk = |last: u8| {
            let mut c = StackConfig::new(
                EthernetAddress([0x02, 0, 0, 0, 0, last]),
                Ipv4Cidr::new(Ipv4Address::new(10, 0, 0, last), 24),
            );
            c.rx_buffer = buf;
            c.tx_buffer = buf;
            c.rx_burst = 64;
            c
        };
        let t0 = StdInstant::now();
        let now = Instant::from_micros(1);
        let mut b = NetStack::new(mk(2), pb, Neighbors::new(), now);
        b.listen(PORT).expect("listen");
        Self {
            a: NetStack::new(mk(1), pa, Neighbors::new(), now),
            b,
            link,
            t0,
        }
    }

    fn now(&self) -> Instant {
        Instant::from_micros(1 + self.t0.elapsed().as_micros() as i64)
    }

    /// One turn of both stacks; events of each side handed to `on`.
    fn turn(&mut self, mut on: impl FnMut(bool, StackEvent)) {
        let now = self.now();
        self.link.set_now(now);
        self.a.poll(now);
        self.b.poll(now);
        while let Some(e) = self.a.next_event() {
            on(true, e);
        }
        while let Some(e) = self.b.next_event() {
            on(false, e);
        }
    }

    /// Opens `n` connections; returns (client, server) of the first one.
    fn open(&mut self, n: usize) -> Result<(ConnId, ConnId), String> {
        let to = IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::new(10, 0, 0, 2)), PORT);
        let first = self.a.connect(to).map_err(|e| e.to_string())?;
        let first_port = self.a.endpoints(first).map_err(|e| e.to_string())?.0;
        for _ in 1..n {
            self.a.connect(to).map_err(|e| e.to_string())?;
        }
        let (mut up, mut acc, mut server) = (0, 0, None);
        let deadline = StdInstant::now() + std::time::Duration::from_secs(30);
        while up < n || acc < n {
            if StdInstant::now() > deadline {
                return Err(format!("only {up}/{n} connected, {acc} accepted"));
            }
            self.turn(|client, e| match e {
                StackEvent::Connected(_) if client => up += 1,
                StackEvent::Accepted { conn, remote, .. } if !client => {
                    acc += 1;
                    if remote.port == first_port {
                        server = Some(conn);
                    }
                }
                _ => {}
            });
        }
        Ok((first, server.ok_or("first connection not accepted")?))
    }
}

/// Echo round trips of 64 B on one connection with `n` connections open.
fn echo(n: usize, seconds: f64) -> Result<Histogram<u64>, String> {
    let mut p = Pair::new(16 * 1024);
    let (c, s) = p.open(n)?;
    let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).map_err(|e| e.to_string())?;
    let msg = [0x5au8; 64];
    let mut buf = [0u8; 256];
    let warm = StdInstant::now() + std::time::Duration::from_millis(200);
    let end = warm + std::time::Duration::from_secs_f64(seconds);
    loop {
        let start = StdInstant::now();
        if start > end {
            break;
        }
        p.a.send(c, &msg).map_err(|e| e.to_string())?;
        let mut echoed = 0;
        let mut got = 0;
        let limit = start + std::time::Duration::from_secs(2);
        while got < msg.len() {
            if StdInstant::now() > limit {
                return Err("an echo took over 2 s".into());
            }
            p.turn(|_, _| {});
            while echoed < msg.len() {
                let k = p.b.recv(s, &mut buf).map_err(|e| e.to_string())?;
                if k == 0 {
                    break;
                }
                p.b.send(s, &buf[..k]).map_err(|e| e.to_string())?;
                echoed += k;
            }
            got += p.a.recv(c, &mut buf).map_err(|e| e.to_string())?;
        }
        if start >= warm {
            h.record(start.elapsed().as_nanos() as u64).ok();
        }
    }
    Ok(h)
}

/// Bulk transfer over one connection: MB/s.
fn bulk(seconds: f64) -> Result<f64, String> {
    let mut p = Pair::new(256 * 1024);
    let (c, s) = p.open(1)?;
    let chunk = vec![0xa5u8; 64 * 1024];
    let mut buf = vec![0u8; 256 * 1024];
    let start = StdInstant::now();
    let end = start + std::time::Duration::from_secs_f64(seconds);
    let mut moved = 0u64;
    while StdInstant::now() < end {
        p.a.send(c, &chunk).map_err(|e| e.to_string())?;
        p.turn(|_, _| {});
        loop {
            let k = p.b.recv(s, &mut buf).map_err(|e| e.to_string())?;
            if k == 0 {
                break;
            }
            moved += k as u64;
        }
    }
    Ok(moved as f64 / start.elapsed().as_secs_f64() / 1e6)
}

pub(crate) fn run(conns: usize, seconds: f64) -> Result<(), String> {
    eprintln!("bench: stack echo with 10 connections...");
    let few = echo(10, seconds)?;
    eprintln!("bench: stack echo with {conns} connections...");
    let many = echo(conns, seconds)?;
    eprintln!("bench: stack bulk...");
    let mbs = bulk(seconds)?;
    let us = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    for (label, h) in [("10", &few), (&conns.to_string()[..], &many)] {
        out!(
            "stack echo 64 B, {label:>5} conns   RTT p50 {:>7.2} us  p99 {:>7.2} us  ({} round trips, {:.0}/s)",
            us(h, 0.5),
            us(h, 0.99),
            h.len(),
            h.len() as f64 / seconds
        );
    }
    out!(
        "stack p50 with {conns} conns / with 10: {:.2}x (target <= 1.5x)",
        us(&many, 0.5) / us(&few, 0.5)
    );
    out!("stack bulk, one connection       {mbs:>9.1} MB/s");
    Ok(())
}
