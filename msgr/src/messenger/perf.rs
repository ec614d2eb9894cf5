//! The messenger's counters, served as JSON by the admin socket (`perf dump`).
//!
//! Counters are atomics written by network threads without locks; message-type counters
//! use a fixed table indexed by the low byte range Ceph's common types live in (anything
//! larger goes to one "other" slot), so the hot path never allocates or locks.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use serde_json::{json, Map, Value};

use crate::msg::MsgType;
use crate::proto::Fault;
use crate::wire::Tag;

/// Fault causes as `Fault::label` reports them, in a fixed order.
pub(crate) const FAULT_LABELS: [&str; 16] = [
    "bad_crc",
    "bad_banner",
    "unknown_tag",
    "too_large",
    "decode",
    "misbehaved",
    "incompatible",
    "wait",
    "ready_timeout",
    "idle_timeout",
    "body_timeout",
    "refused",
    "connect_failed",
    "eof",
    "io",
    "peer_closed",
];

/// The server's non-final answers to a connect (docs §2.8), as `perf dump` names them.
const ACCEPT_REPLIES: [(Tag, &str); 4] = [
    (Tag::RetryGlobal, "retry_global"),
    (Tag::RetrySession, "retry_session"),
    (Tag::ResetSession, "reset_session"),
    (Tag::Wait, "wait"),
];

/// Fault causes that are a peer leaving, not a problem.
const DISCONNECTS: [&str; 2] = ["eof", "peer_closed"];

const TYPE_SLOTS: usize = 256;

fn type_slot(t: MsgType) -> usize {
    usize::from(t.0).min(TYPE_SLOTS)
}

/// All counters of one messenger.
pub(crate) struct Perf {
    pub(crate) msgs_in: AtomicU64,
    pub(crate) msgs_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) sessions_opened: AtomicU64,
    pub(crate) sessions_accepted: AtomicU64,
    pub(crate) connections: AtomicI64,
    pub(crate) dials: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) accepts: AtomicU64,
    pub(crate) resets: AtomicU64,
    pub(crate) remote_resets: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) replaced: AtomicU64,
    pub(crate) throttle_waits: AtomicU64,
    pub(crate) fast_dispatched: AtomicU64,
    pub(crate) queued: AtomicU64,
    pub(crate) injected_failures: AtomicU64,
    pub(crate) send_queue_full: AtomicU64,
    pub(crate) handshakes_refused: AtomicU64,
    /// Handshakes closed to make room for a new accept (`Options::max_handshakes`).
    pub(crate) handshakes_evicted: AtomicU64,
    /// `accept` calls that failed (EMFILE and friends).
    pub(crate) accept_errors: AtomicU64,
    /// Non-final connect replies the server's decision table gave, by tag.
    accept_replies: [AtomicU64; ACCEPT_REPLIES.len()],
    faults: [AtomicU64; FAULT_LABELS.len()],
    in_by_type: [AtomicU64; TYPE_SLOTS + 1],
    out_by_type: [AtomicU64; TYPE_SLOTS + 1],
}

impl Default for Perf {
    fn default() -> Self {
        Self {
            msgs_in: AtomicU64::new(0),
            msgs_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            sessions_opened: AtomicU64::new(0),
            sessions_accepted: AtomicU64::new(0),
            connections: AtomicI64::new(0),
            dials: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            accepts: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            remote_resets: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            replaced: AtomicU64::new(0),
            throttle_waits: AtomicU64::new(0),
            fast_dispatched: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            injected_failures: AtomicU64::new(0),
            send_queue_full: AtomicU64::new(0),
            handshakes_refused: AtomicU64::new(0),
            handshakes_evicted: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
            accept_replies: std::array::from_fn(|_| AtomicU64::new(0)),
            faults: std::array::from_fn(|_| AtomicU64::new(0)),
            in_by_type: std::array::from_fn(|_| AtomicU64::new(0)),
            out_by_type: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Perf {
    pub(crate) fn fault(&self, f: &Fault) {
        let label = f.label();
        if let Some(i) = FAULT_LABELS.iter().position(|l| *l == label) {
            inc(&self.faults[i]);
        }
    }

    /// Counts a retry, reset or wait the decision table answered a connect with (the
    /// refusals, BADPROTOVER and friends, are `handshakes_refused`).
    pub(crate) fn accept_reply(&self, tag: Tag) {
        if let Some(i) = ACCEPT_REPLIES.iter().position(|(t, _)| *t == tag) {
            inc(&self.accept_replies[i]);
        }
    }

    pub(crate) fn msg_in(&self, t: MsgType) {
        inc(&self.msgs_in);
        inc(&self.in_by_type[type_slot(t)]);
    }

    pub(crate) fn msg_out(&self, t: MsgType) {
        inc(&self.msgs_out);
        inc(&self.out_by_type[type_slot(t)]);
    }

    /// Faults other than a peer going away (`eof`, `peer_closed`): a health signal that
    /// ordinary client disconnects do not move.
    pub(crate) fn faults_total(&self) -> u64 {
        FAULT_LABELS
            .iter()
            .zip(&self.faults)
            .filter(|(l, _)| !DISCONNECTS.contains(l))
            .map(|(_, c)| c.load(Ordering::Relaxed))
            .sum()
    }

    fn disconnects(&self) -> u64 {
        FAULT_LABELS
            .iter()
            .zip(&self.faults)
            .filter(|(l, _)| DISCONNECTS.contains(l))
            .map(|(_, c)| c.load(Ordering::Relaxed))
            .sum()
    }

    fn by_type(table: &[AtomicU64; TYPE_SLOTS + 1]) -> Value {
        let mut m = Map::new();
        for (i, c) in table.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            if n > 0 {
                let key = if i == TYPE_SLOTS {
                    "other".to_string()
                } else {
                    i.to_string()
                };
                m.insert(key, json!(n));
            }
        }
        Value::Object(m)
    }

    /// The counters as JSON, in the shape of Ceph's `perf dump` (a section per component).
    pub(crate) fn dump(&self, extra: Map<String, Value>) -> Value {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut faults = Map::new();
        for (l, c) in FAULT_LABELS.iter().zip(&self.faults) {
            faults.insert((*l).to_string(), json!(g(c)));
        }
        let mut replies = Map::new();
        for ((_, l), c) in ACCEPT_REPLIES.iter().zip(&self.accept_replies) {
            replies.insert((*l).to_string(), json!(g(c)));
        }
        let mut msgr = json!({
            "msgs_in": g(&self.msgs_in),
            "msgs_out": g(&self.msgs_out),
            "bytes_in": g(&self.bytes_in),
            "bytes_out": g(&self.bytes_out),
            "sessions_opened": g(&self.sessions_opened),
            "sessions_accepted": g(&self.sessions_accepted),
            "connections": self.connections.load(Ordering::Relaxed),
            "dials": g(&self.dials),
            "accepts": g(&self.accepts),
            "resets": g(&self.resets),
            "remote_resets": g(&self.remote_resets),
            "refused": g(&self.refused),
            "replaced": g(&self.replaced),
            "reconnects": g(&self.reconnects),
            "throttle_waits": g(&self.throttle_waits),
            "fast_dispatched": g(&self.fast_dispatched),
            "queued_dispatch": g(&self.queued),
            "injected_failures": g(&self.injected_failures),
            "send_queue_full": g(&self.send_queue_full),
            "faults": faults,
            "faults_total": self.faults_total(),
            "disconnects": self.disconnects(),
            "handshakes_refused": g(&self.handshakes_refused),
            "handshakes_evicted": g(&self.handshakes_evicted),
            "accept_errors": g(&self.accept_errors),
            "accept_replies": replies,
            "msgs_in_by_type": Self::by_type(&self.in_by_type),
            "msgs_out_by_type": Self::by_type(&self.out_by_type),
        });
        if let Value::Object(m) = &mut msgr {
            m.extend(extra);
        }
        json!({ "msgr": msgr })
    }
}
