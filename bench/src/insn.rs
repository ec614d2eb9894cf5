//! `bench instructions`: instructions per operation of the codec and the engine, counted by
//! valgrind's callgrind. Unlike times, instruction counts do not move with the machine's
//! load, so they catch regressions on a shared, noisy machine.
//!
//! Each workload runs in this binary (`bench insn-work`, hidden) under
//! `valgrind --tool=callgrind`, twice: with N and with 2N operations. The difference of the
//! two totals over N is the cost of one operation, without start-up and set-up.
//!
//! Workloads (deterministic: fixed data, fixed clock, fixed seeds):
//! - `encode-4k`: a 4 KiB MOSDOp write, typed message to framed bytes (header, CRCs, footer);
//! - `decode-4k`: those bytes back to a typed MOSDOp (CRCs checked);
//! - `engine-4k`: one 4 KiB MOSDOp through two sans-IO engines joined in memory — client
//!   `send_message`, its bytes into the server's `handle_input`, the message event, the ack
//!   back to the client (the whole per-message path of the connection state machine);
//! - `engine-0`: the same with an empty data segment (the engine's fixed cost).
//!
//! `--baseline FILE` compares with earlier counts (a JSON object, workload -> instructions
//! per op) and exits 1 if any grew by more than `--tolerance` percent; `--save FILE` writes
//! this run's counts in that form.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use msgr::entity::{EntityAddr, EntityName, EntityType};
use msgr::features;
use msgr::msg::osd_op::MOSDOp;
use msgr::msg::TypedMessage;
use msgr::proto::{Config, Connection, Event, Policy};
use msgr::time::Instant;
use msgr::wire::frame::{decode_msg, encode_msg, peek, FrameConfig, Peek, TxQueue};

/// The workloads, in report order.
pub(crate) const WORKLOADS: [&str; 4] = ["encode-4k", "decode-4k", "engine-4k", "engine-0"];

/// Runs `what` `n` times (inside valgrind, or natively to check it works).
pub(crate) fn work(what: &str, n: u64) -> Result<(), String> {
    match what {
        "encode-4k" => {
            let op = op(4096);
            let cfg = FrameConfig::default();
            let mut out = TxQueue::default();
            for i in 0..n {
                let mut m = op.to_message(features::PACIFIC_ALL);
                m.header.seq = i + 1;
                encode_msg(&m, &cfg, &mut out);
                out.cut();
                while let Some(c) = out.pop_chunk() {
                    std::hint::black_box(c);
                }
            }
            Ok(())
        }
        "decode-4k" => {
            let cfg = FrameConfig::default();
            let mut out = TxQueue::default();
            let mut m = op(4096).to_message(features::PACIFIC_ALL);
            m.header.seq = 1;
            encode_msg(&m, &cfg, &mut out);
            out.cut();
            let mut wire = BytesMut::new();
            while let Some(c) = out.pop_chunk() {
                wire.extend_from_slice(&c);
            }
            let wire = wire.freeze();
            for _ in 0..n {
                let Ok(Some(Peek::Msg { header, frame_len })) = peek(&wire, &cfg) else {
                    return Err("decode-4k: the encoded frame does not parse".into());
                };
                let (m, _) = decode_msg(wire.slice(..frame_len), &header, &cfg)
                    .map_err(|e| format!("decode-4k: {e:?}"))?;
                std::hint::black_box(MOSDOp::decode(m).map_err(|e| format!("decode-4k: {e}"))?);
            }
            Ok(())
        }
        "engine-4k" => engine(n, 4096),
        "engine-0" => engine(n, 0),
        other => Err(format!(
            "unknown workload {other:?} (one of {})",
            WORKLOADS.join(", ")
        )),
    }
}

fn op(size: usize) -> MOSDOp {
    MOSDOp::write(
        1,
        "rbd_data.1234.0000000000000001",
        0,
        Bytes::from(vec![0x5a; size]),
    )
}

/// Two engines joined in memory.
struct Pair {
    client: Connection,
    server: Connection,
    to_server: BytesMut,
    to_client: BytesMut,
    now: Instant,
    received: u64,
}

impl Pair {
    fn new() -> Self {
        let server_addr: EntityAddr = "v1:127.0.0.1:6800/1".parse().expect("an address");
        let ccfg = Config::new(
            EntityName::new(EntityType::CLIENT, 1),
            "v1:127.0.0.1:0/2".parse().expect("an address"),
        );
        let mut scfg = Config::new(EntityName::new(EntityType::OSD, 0), server_addr);
        scfg.policies.default = Policy::stateless_server(0);
        let now = Instant::ZERO;
        let mut client = Connection::connect(Arc::new(ccfg), now, server_addr, EntityType::OSD, 1);
        let server = Connection::accept(
            Arc::new(scfg),
            now,
            "127.0.0.1:40000".parse().expect("a socket address"),
            2,
        );
        client.handle_connected(now);
        Self {
            client,
            server,
            to_server: BytesMut::with_capacity(64 * 1024),
            to_client: BytesMut::with_capacity(64 * 1024),
            now,
            received: 0,
        }
    }

    /// Moves bytes both ways until neither side has anything to send; true if anything moved.
    fn pump(&mut self) -> Result<bool, String> {
        let mut any = false;
        loop {
            let mut moved = false;
            while let Some(c) = self.client.poll_transmit(self.now) {
                self.to_server.extend_from_slice(&c);
                moved = true;
            }
            if !self.to_server.is_empty() {
                self.server
                    .handle_input(self.now, &mut self.to_server)
                    .map_err(|f| format!("server: {f:?}"))?;
            }
            while let Some(ev) = self.server.poll_event() {
                match ev {
                    Event::AcceptRequest => {
                        self.server.resolve_accept(self.now, None);
                    }
                    Event::Message(r) => {
                        self.received += 1;
                        drop(r);
                    }
                    _ => {}
                }
            }
            while let Some(c) = self.server.poll_transmit(self.now) {
                self.to_client.extend_from_slice(&c);
                moved = true;
            }
            if !self.to_client.is_empty() {
                self.client
                    .handle_input(self.now, &mut self.to_client)
                    .map_err(|f| format!("client: {f:?}"))?;
            }
            while self.client.poll_event().is_some() {}
            if !moved {
                return Ok(any);
            }
            any = true;
        }
    }
}

/// `n` messages of `size` data bytes from client to server through the engines.
fn engine(n: u64, size: usize) -> Result<(), String> {
    let mut p = Pair::new();
    p.pump()?;
    if !(p.client.is_open() && p.server.is_open()) {
        return Err("engine: the handshake did not complete".into());
    }
    let op = op(size);
    for _ in 0..n {
        let m = op.to_message(p.client.features());
        p.client
            .send_message(p.now, m)
            .map_err(|e| format!("engine: send: {e:?}"))?;
        p.pump()?;
    }
    if p.received != n {
        return Err(format!("engine: {} of {n} messages arrived", p.received));
    }
    Ok(())
}

/// Instructions callgrind counted over a whole run of `what` x `n`.
fn count(bench: &Path, dir: &Path, what: &str, n: u64) -> Result<u64, String> {
    let out_file = dir.join(format!("callgrind.{what}.{n}"));
    let out = Command::new("valgrind")
        .args(["--tool=callgrind", "--quiet"])
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg(bench)
        .args(["insn-work", what, &n.to_string()])
        .output()
        .map_err(|e| format!("valgrind not runnable ({e}); apt-get install valgrind"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} under callgrind failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text =
        std::fs::read_to_string(&out_file).map_err(|e| format!("{}: {e}", out_file.display()))?;
    totals(&text).ok_or_else(|| format!("{}: no totals line", out_file.display()))
}

/// The `totals:` (or `summary:`) figure of a callgrind output file: instructions.
pub(crate) fn totals(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Instructions per op from runs of `n` and `2n` ops.
pub(crate) fn per_op(at_n: u64, at_2n: u64, n: u64) -> Option<f64> {
    (at_2n > at_n && n > 0).then(|| (at_2n - at_n) as f64 / n as f64)
}

/// What `bench instructions` was asked.
pub(crate) struct Plan {
    pub(crate) n: u64,
    pub(crate) baseline: Option<PathBuf>,
    pub(crate) save: Option<PathBuf>,
    pub(crate) tolerance: f64,
}

pub(crate) fn run(plan: Plan) -> Result<(), String> {
    let bench = std::env::current_exe().map_err(|e| format!("cannot find bench itself: {e}"))?;
    let dir = crate::dpdklink::TempDir::create("insn")?;
    let mut counts: BTreeMap<String, f64> = BTreeMap::new();
    for (i, what) in WORKLOADS.iter().enumerate() {
        eprintln!(
            "bench: [{}/{}] {what} under callgrind, {} and {} ops...",
            i + 1,
            WORKLOADS.len(),
            plan.n,
            2 * plan.n
        );
        let a = count(&bench, &dir.path, what, plan.n)?;
        let b = count(&bench, &dir.path, what, 2 * plan.n)?;
        let per = per_op(a, b, plan.n)
            .ok_or_else(|| format!("{what}: {} ops counted no more than {}", 2 * plan.n, plan.n))?;
        counts.insert((*what).to_owned(), per);
    }
    let base: Option<BTreeMap<String, f64>> = match &plan.baseline {
        Some(f) => Some(load(f)?),
        None => None,
    };
    let (table, worse) = report(&counts, base.as_ref(), plan.tolerance);
    out!("{table}");
    if let Some(f) = &plan.save {
        let json = serde_json::to_string_pretty(&counts).map_err(|e| e.to_string())?;
        std::fs::write(f, json + "\n").map_err(|e| format!("cannot write {}: {e}", f.display()))?;
        eprintln!("bench: counts saved to {}", f.display());
    }
    if worse.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "more than {}% more instructions than the baseline: {}",
            plan.tolerance,
            worse.join(", ")
        ))
    }
}

fn load(f: &Path) -> Result<BTreeMap<String, f64>, String> {
    let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}: not a JSON object of workload -> count: {e}",
            f.display()
        )
    })
}

/// The markdown table, and the workloads that grew beyond `tolerance` percent.
pub(crate) fn report(
    counts: &BTreeMap<String, f64>,
    base: Option<&BTreeMap<String, f64>>,
    tolerance: f64,
) -> (String, Vec<String>) {
    let mut s =
        String::from("| workload | instructions/op | baseline | change |\n|---|---:|---:|---:|\n");
    let mut worse = Vec::new();
    for what in WORKLOADS {
        let Some(&n) = counts.get(what) else { continue };
        let was = base.and_then(|b| b.get(what)).copied();
        let change = was.map(|w| 100.0 * (n - w) / w);
        if change.is_some_and(|c| c > tolerance) {
            worse.push(format!("{what} {:+.1}%", change.unwrap_or(0.0)));
        }
        s += &format!(
            "| {what} | {n:.0} | {} | {} |\n",
            was.map_or_else(|| "-".into(), |w| format!("{w:.0}")),
            change.map_or_else(|| "-".into(), |c| format!("{c:+.1}%"))
        );
    }
    (s, worse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_run_natively() {
        for w in WORKLOADS {
            work(w, 3).unwrap_or_else(|e| panic!("{w}: {e}"));
        }
        assert!(work("nope", 1).unwrap_err().contains("unknown workload"));
    }

    #[test]
    fn callgrind_totals_and_per_op() {
        let text = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\n\nfn=(1) main\n0 5\n\
                    totals: 123456\n";
        assert_eq!(totals(text), Some(123_456));
        assert_eq!(totals("summary: 42\n"), Some(42));
        assert_eq!(totals("events: Ir\n"), None);
        assert_eq!(per_op(1000, 3000, 100), Some(20.0));
        assert_eq!(per_op(3000, 1000, 100), None);
    }

    #[test]
    fn report_flags_growth_beyond_tolerance() {
        let now: BTreeMap<String, f64> = [("encode-4k", 1100.0), ("decode-4k", 990.0)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let base: BTreeMap<String, f64> = [("encode-4k", 1000.0), ("decode-4k", 1000.0)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let (table, worse) = report(&now, Some(&base), 5.0);
        assert_eq!(worse, vec!["encode-4k +10.0%".to_owned()]);
        assert!(
            table.contains("| encode-4k | 1100 | 1000 | +10.0% |"),
            "{table}"
        );
        assert!(
            table.contains("| decode-4k | 990 | 1000 | -1.0% |"),
            "{table}"
        );
        let (table, worse) = report(&now, None, 5.0);
        assert!(worse.is_empty());
        assert!(table.contains("| encode-4k | 1100 | - | - |"), "{table}");
    }
}
