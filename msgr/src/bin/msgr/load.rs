//! `msgr load`: an OSD write/read workload against an OSD (`msgr serve`), pipelined, with
//! every read checked against what was written.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use hdrhistogram::Histogram;
use msgr::entity::{EntityAddr, EntityName, EntityType};
use msgr::messenger::{ConnectionRef, Incoming};
use msgr::msg::{MOSDOp, MOSDOpReply, MsgType, TypedMessage};
use serde_json::json;

use crate::client::{establish_learning_nonce, Client};
use crate::net::Net;
use crate::ping::parse_positive_secs;
use crate::{emit, parse_peer_addr, PeerAddr, Result};

pub(crate) const LONG_ABOUT: &str = "\
Run an OSD write/read workload against an OSD (`msgr serve`) and report rates and latencies.

Phase 1 writes --ops objects (write_full of --size bytes) spread over --objects object names;
phase 2 reads --ops times back over the same names and checks every byte (each object has
its own content). Up to --in-flight ops are outstanding at once (1: ping-pong). With
--conns N the ops go over N client sessions, each a client of its own (own entity name and
nonce, as N client processes would be) with up to --in-flight outstanding. Each phase prints
ops/s, MB/s and latency percentiles; --json prints one JSON object instead.

Exit status: 0 if every op succeeded and every read matched; 1 otherwise (the first
problem is named).";

/// The pool the ops name (the OSD-like daemon has one store for every pool).
const POOL: i64 = 1;
/// Placement groups the ops' pgid is hashed into.
const PG_NUM: u32 = 32;
/// Distinct content offsets: object `j`'s bytes start at `j % SHIFTS` of a shared pattern.
const SHIFTS: usize = 251;

#[derive(Args, Debug)]
pub(crate) struct LoadArgs {
    /// The OSD: v1:IP:PORT[/NONCE] (the nonce is learned if not given)
    #[arg(value_parser = parse_peer_addr)]
    addr: PeerAddr,

    /// Ops per phase
    #[arg(short = 'n', long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    ops: u64,

    /// Bytes per object (0 to 64 MiB)
    #[arg(short = 's', long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(0..=(64 << 20)))]
    size: u32,

    /// Ops outstanding at once (on each session)
    #[arg(short = 'q', long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    in_flight: u32,

    /// Network workers: posix threads, or dpdk queues (one lcore each, from --eal's
    /// --lcores); sessions are spread over them
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=128))]
    workers: u16,

    /// Client sessions, each its own client (entity name and nonce); ops go to whichever
    /// has room
    #[arg(short = 'c', long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    conns: u32,

    /// Distinct objects [default: --ops, at most 1024]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    objects: Option<u32>,

    /// Seconds to wait for the session, and for each reply
    #[arg(short = 'W', long, default_value_t = 10.0, value_parser = parse_positive_secs)]
    timeout: f64,

    /// Print the results as one JSON object
    #[arg(long)]
    json: bool,
}

/// What one phase measured.
struct Phase {
    name: &'static str,
    ops: u64,
    bytes: u64,
    elapsed: Duration,
    /// CPU time this process used over the phase (user + system, all threads), if the
    /// system tells it.
    cpu: Option<Duration>,
    /// Per-op latency, nanoseconds (3 significant digits).
    lat: Histogram<u64>,
}

/// An empty latency histogram: 1 ns to an hour, 3 significant digits (HdrHistogram's
/// fixed-size buckets: memory does not grow with the op count).
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

/// Percentiles of the latency distribution in `--json` output.
const CDF_PERCENTILES: [f64; 16] = [
    0.0, 1.0, 5.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 98.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0,
];

impl Phase {
    fn pct(&self, p: f64) -> Duration {
        if self.lat.is_empty() {
            return Duration::ZERO;
        }
        let ns = if p >= 100.0 {
            self.lat.max()
        } else if p <= 0.0 {
            self.lat.min()
        } else {
            self.lat.value_at_quantile(p / 100.0)
        };
        Duration::from_nanos(ns)
    }

    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn json(&self) -> serde_json::Value {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        json!({
            "ops": self.ops,
            "bytes": self.bytes,
            "seconds": self.elapsed.as_secs_f64(),
            "ops_per_sec": self.ops_per_sec(),
            "mb_per_sec": self.mb_per_sec(),
            "cpu_seconds": self.cpu.map(|d| d.as_secs_f64()),
            "lat_us": {
                "p50": us(self.pct(50.0)),
                "p99": us(self.pct(99.0)),
                "p999": us(self.pct(99.9)),
                "max": us(self.pct(100.0)),
                // The distribution, for plots: [percentile, microseconds] pairs.
                "cdf": CDF_PERCENTILES
                    .iter()
                    .map(|&p| json!([p, us(self.pct(p))]))
                    .collect::<Vec<_>>(),
            },
        })
    }

    fn line(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        format!(
            "{:<5} {} ops in {:.3} s: {:.0} ops/s, {:.1} MB/s; latency p50 {:.3} ms, p99 {:.3} ms, \
             p99.9 {:.3} ms, max {:.3} ms",
            format!("{}:", self.name),
            self.ops,
            self.elapsed.as_secs_f64(),
            self.ops_per_sec(),
            self.mb_per_sec(),
            ms(self.pct(50.0)),
            ms(self.pct(99.0)),
            ms(self.pct(99.9)),
            ms(self.pct(100.0)),
        )
    }
}

/// Object `j`'s content: `size` bytes of a shared pattern, starting at its own offset.
#[derive(Clone)]
struct Contents {
    pattern: Bytes,
    size: usize,
}

impl Contents {
    fn new(size: usize) -> Self {
        let mut x: u32 = 0x9e37_79b9;
        let pattern = (0..size + SHIFTS)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect::<Vec<u8>>();
        Self {
            pattern: Bytes::from(pattern),
            size,
        }
    }

    fn of(&self, j: u32) -> Bytes {
        let at = j as usize % SHIFTS;
        self.pattern.slice(at..at + self.size)
    }
}

fn oid(j: u32) -> String {
    format!("load-{j}")
}

pub(crate) fn run(a: LoadArgs, net: &Net) -> Result<()> {
    let timeout = Duration::from_secs_f64(a.timeout);
    let objects = a
        .objects
        .unwrap_or_else(|| u32::try_from(a.ops.min(1024)).unwrap_or(1024));
    let c = Client::with_workers(net, usize::from(a.workers))?;
    let (conn, addr) = establish_learning_nonce(&c, a.addr, EntityType::OSD, timeout)
        .map_err(|(e, addr)| e.describe(&addr, timeout))?;
    let conns = open_more(&c, conn, addr, a.conns, timeout)?;
    if !a.json {
        emit(&format!(
            "LOAD {addr} (osd, {}): {} ops of {} bytes per phase, {} in flight on each of {} \
             session(s), {objects} objects",
            net.transport.name(),
            a.ops,
            a.size,
            a.in_flight,
            a.conns
        ))?;
    }
    let contents = Contents::new(a.size as usize);
    let mut run = Run {
        c: &c,
        conns,
        addr,
        timeout,
        tid: 0,
    };
    let result = (|| -> Result<Vec<Phase>> {
        let data = contents.clone();
        let w = run.phase(
            "write",
            a.ops,
            a.in_flight,
            Box::new(move |i| {
                let j = (i % u64::from(objects)) as u32;
                (MOSDOp::write_full(POOL, oid(j), data.of(j)), j)
            }),
            Box::new(|_, r| check_result(r)),
        )?;
        if !a.json {
            emit(&w.line())?;
        }
        let r = run.phase(
            "read",
            a.ops,
            a.in_flight,
            Box::new(move |i| {
                let j = (i % u64::from(objects)) as u32;
                (MOSDOp::read(POOL, oid(j), 0, 0), j)
            }),
            Box::new(move |j, r| {
                check_result(r)?;
                let got = r.data();
                let want = contents.of(j);
                if got != want {
                    let at = got.iter().zip(want.iter()).position(|(x, y)| x != y);
                    return Err(format!(
                    "read of {} returned wrong data: {} bytes (want {}), first difference at {:?}",
                    oid(j),
                    got.len(),
                    want.len(),
                    at.unwrap_or(got.len().min(want.len()))
                ));
                }
                Ok(got.len() as u64)
            }),
        )?;
        if !a.json {
            emit(&r.line())?;
        }
        Ok(vec![w, r])
    })();
    c.msgr.shutdown();
    c.msgr.wait();
    let phases = result?;
    if a.json {
        let mut v = json!({
            "addr": addr.to_string(),
            "transport": net.transport.name(),
            "size": a.size,
            "in_flight": a.in_flight,
            "conns": a.conns,
            "objects": objects,
        });
        for p in &phases {
            v[p.name] = p.json();
        }
        emit(&v.to_string())?;
    }
    Ok(())
}

fn check_result(r: &MOSDOpReply) -> Result<u64, String> {
    if r.result != 0 {
        return Err(format!("{} failed: result {}", r.oid, r.result));
    }
    Ok(0)
}

/// Opens `n - 1` more sessions to `addr` beside `first`, each a client of its own (entity
/// name and nonce), and waits until all are open.
fn open_more(
    c: &Client,
    first: ConnectionRef,
    addr: EntityAddr,
    n: u32,
    timeout: Duration,
) -> Result<Vec<ConnectionRef>> {
    let base = c.msgr.my_addr().nonce;
    let mut conns = vec![first];
    for i in 1..n {
        conns.push(c.msgr.connect_as(
            addr,
            EntityType::OSD,
            EntityName::new(EntityType::CLIENT, i64::from(i)),
            base.wrapping_add(i).max(1),
        ));
    }
    let deadline = Instant::now() + timeout;
    loop {
        let open = conns.iter().filter(|c| c.is_connected()).count();
        if open == conns.len() {
            return Ok(conns);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "only {open} of {n} sessions with {addr} opened within {timeout:?}"
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The sessions and the tid counter the phases share.
struct Run<'a> {
    c: &'a Client,
    conns: Vec<ConnectionRef>,
    addr: EntityAddr,
    timeout: Duration,
    tid: u64,
}

/// Builds op `i` and names its object.
type MakeOp<'f> = Box<dyn FnMut(u64) -> (MOSDOp, u32) + Send + 'f>;
/// Checks a reply to an op on object `j`; says how many data bytes it brought.
type CheckReply<'f> = Box<dyn FnMut(u32, &MOSDOpReply) -> Result<u64, String> + Send + 'f>;

/// One phase in flight. Replies are taken on the network thread that read them, and the
/// next op is sent from there (as an OSD client's completion path would): no thread hop
/// per op, on any transport. The main thread only starts the phase and waits for its end.
struct Pipeline {
    st: Mutex<PipeState>,
    progress: Condvar,
}

struct PipeState {
    name: &'static str,
    conns: Vec<ConnectionRef>,
    /// Session index by connection id.
    index: HashMap<u64, usize>,
    /// Ops outstanding on each session.
    outstanding: Vec<usize>,
    features: u64,
    n: u64,
    next: u64,
    tid: u64,
    /// tid → (sent at, object, data bytes sent, session).
    pending: HashMap<u64, (Instant, u32, u64, usize)>,
    /// Latency of each op done (nanoseconds), and how many are done.
    lat: Histogram<u64>,
    done: u64,
    bytes: u64,
    error: Option<String>,
    make: MakeOp<'static>,
    check: CheckReply<'static>,
}

impl PipeState {
    /// Sends ops on session `s` until `depth` are outstanding there or all were sent.
    fn fill(&mut self, s: usize, depth: usize) {
        while self.error.is_none() && self.next < self.n && self.outstanding[s] < depth {
            let (op, j) = (self.make)(self.next);
            let sent = op.data().len() as u64;
            self.tid += 1;
            let m = op
                .with_pg_num(PG_NUM)
                .with_tid(self.tid)
                .to_message(self.features);
            if let Err(e) = self.conns[s].send_message(m) {
                self.error = Some(format!("{}: sending op {}: {e}", self.name, self.next));
                return;
            }
            self.pending.insert(self.tid, (Instant::now(), j, sent, s));
            self.outstanding[s] += 1;
            self.next += 1;
        }
    }

    fn finished(&self) -> bool {
        self.error.is_some() || self.done == self.n
    }
}

impl Pipeline {
    /// Takes an op reply (others go back to the inbox).
    fn on_message(&self, m: Incoming, depth: usize) -> Option<Incoming> {
        if m.msg.ty() != MsgType::OSD_OPREPLY {
            return Some(m);
        }
        let mut st = self.st.lock().unwrap_or_else(|e| e.into_inner());
        if st.finished() {
            return None;
        }
        let tid = m.msg.header.tid;
        let on = st.index.get(&m.conn.id()).copied();
        let Some((at, j, sent, s)) = st.pending.remove(&tid).filter(|p| Some(p.3) == on) else {
            st.error = Some(format!(
                "{}: a reply to tid {tid}, which is not outstanding on that session",
                st.name
            ));
            self.progress.notify_all();
            return None;
        };
        let ns = u64::try_from(at.elapsed().as_nanos()).unwrap_or(u64::MAX);
        st.lat.saturating_record(ns.max(1));
        st.done += 1;
        st.outstanding[s] -= 1;
        let name = st.name;
        match MOSDOpReply::decode(m.msg)
            .map_err(|e| format!("undecodable MOSDOpReply: {e}"))
            .and_then(|r| (st.check)(j, &r))
        {
            Ok(got) => st.bytes += sent + got,
            Err(e) => st.error = Some(format!("{name}: {e}")),
        }
        st.fill(s, depth);
        if st.finished() || st.done.is_multiple_of(1024) {
            self.progress.notify_all();
        }
        None
    }
}

impl Run<'_> {
    /// Runs `n` ops with up to `depth` outstanding: `make(i)` builds op `i` (and names its
    /// object), `check(j, reply)` checks a reply and says how many data bytes it moved.
    fn phase(
        &mut self,
        name: &'static str,
        n: u64,
        depth: u32,
        make: MakeOp<'static>,
        check: CheckReply<'static>,
    ) -> Result<Phase> {
        let depth = depth as usize;
        let pipe = Arc::new(Pipeline {
            st: Mutex::new(PipeState {
                name,
                index: self
                    .conns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.id(), i))
                    .collect(),
                outstanding: vec![0; self.conns.len()],
                conns: self.conns.clone(),
                features: self.conns[0].features(),
                n,
                next: 0,
                tid: self.tid,
                pending: HashMap::with_capacity(depth * self.conns.len()),
                lat: histogram(),
                done: 0,
                bytes: 0,
                error: None,
                make,
                check,
            }),
            progress: Condvar::new(),
        });
        let p = Arc::clone(&pipe);
        self.c
            .set_handler(Some(Arc::new(move |m: Incoming| p.on_message(m, depth))));
        let cpu0 = msgr::procstat::cpu_time(None);
        let t0 = Instant::now();
        let mut st = pipe.st.lock().unwrap_or_else(|e| e.into_inner());
        for s in 0..st.conns.len() {
            st.fill(s, depth);
        }
        // Wait for the end; fail if no reply comes for `timeout`.
        let mut seen = st.done;
        let mut last = Instant::now();
        while !st.finished() {
            let (g, _) = pipe
                .progress
                .wait_timeout(st, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner());
            st = g;
            if st.done != seen {
                seen = st.done;
                last = Instant::now();
            } else if last.elapsed() >= self.timeout {
                st.error = Some(format!(
                    "{name}: no reply from {} within {:?} ({} ops outstanding, {} done; was \
                     the session reset?)",
                    self.addr,
                    self.timeout,
                    st.pending.len(),
                    st.done
                ));
            }
        }
        let elapsed = t0.elapsed();
        let cpu = msgr::procstat::cpu_time(None)
            .zip(cpu0)
            .map(|(b, a)| b.saturating_sub(a));
        self.tid = st.tid;
        let error = st.error.take();
        let lat = std::mem::replace(&mut st.lat, histogram());
        let bytes = st.bytes;
        drop(st);
        self.c.set_handler(None);
        if let Some(e) = error {
            return Err(e.into());
        }
        Ok(Phase {
            name,
            ops: n,
            bytes,
            elapsed,
            cpu,
            lat,
        })
    }
}
