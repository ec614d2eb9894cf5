//! The OSD demo: an in-memory object store and the [`Dispatcher`] that serves it over a
//! [`crate::messenger::Messenger`] (what `msgr serve` runs).
//!
//! [`ObjectStore`] keeps objects keyed by (pool, namespace, name) in sharded maps, one lock
//! per shard, so connections served by different network threads rarely meet on a lock.
//! Object data is an immutable [`Bytes`] snapshot: a read returns a slice of it (no copy),
//! and a write replaces it, mutating in place when no reader still holds the old snapshot
//! and copying otherwise. Written data is copied out of the message, on purpose: keeping the
//! received [`Bytes`] would pin the transport's whole receive buffer for as long as the
//! object lives.
//!
//! [`OsdDispatcher`] claims `MOSDOp` (type 42) and `MPing` (type 2) for fast dispatch: it
//! runs on the network thread that read the request and queues the reply on the same
//! connection before returning (no thread hop). Execution follows Ceph's
//! `PrimaryLogPG::do_osd_ops`:
//! - ops run in order and stop at the first failure (unless the op has
//!   [`op_flags::FAILOK`]); the message result is that op's `rval`;
//! - a request is a transaction: when an op fails, the writes of earlier ops are undone;
//! - a failed request carries no output data unless the client asked for
//!   [`flags::RETURNVEC`];
//! - `WRITE` zero-fills a gap past the end, a zero-length `WRITE` only creates the object,
//!   `READ` of length 0 reads to the end and a read past the end is short (or empty);
//! - missing objects give `-ENOENT` (-2) to `READ`, `STAT` and `DELETE`; `CREATE` with
//!   [`op_flags::EXCL`] on an existing object gives `-EEXIST` (-17); unknown ops give
//!   `-EOPNOTSUPP` (-95).
//!
//! Counters (ops by type, bytes in and out, errors, pings) are atomics, dumped as JSON by
//! [`OsdDispatcher::perf_dump`] for the admin socket's `perf dump`.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use serde_json::{json, Map, Value};
use tracing::{debug, warn};

use crate::messenger::{Dispatcher, Incoming};
use crate::msg::osd_types::{flags, op_flags, Extent, StatResult};
use crate::msg::{
    MOSDOp, MOSDOpReply, MPing, Message, MsgType, OsdOp, OsdOpCode, TypedMessage, UTime,
};

/// `errno` values Ceph returns in `rval` and `result` (negated).
pub mod errno {
    /// No such object.
    pub const ENOENT: i32 = 2;
    /// The object exists (exclusive create).
    pub const EEXIST: i32 = 17;
    /// Malformed op (e.g. an extent length that does not match the data).
    pub const EINVAL: i32 = 22;
    /// The object would exceed the maximum object size.
    pub const EFBIG: i32 = 27;
    /// The op is not implemented.
    pub const EOPNOTSUPP: i32 = 95;
}

/// `osd_max_object_size`'s default (128 MiB): writes beyond it fail with `-EFBIG`.
pub const DEFAULT_MAX_OBJECT_SIZE: u64 = 128 << 20;

/// Shards of an [`ObjectStore`] by default.
const DEFAULT_SHARDS: usize = 64;

/// Identifies an object: pool, namespace and name (the locator key only places objects, it
/// does not name them).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct ObjectKey {
    /// Pool id.
    pub pool: i64,
    /// Namespace ("" is the default namespace).
    pub nspace: String,
    /// Object name.
    pub name: String,
}

impl ObjectKey {
    /// A key in the default namespace.
    pub fn new(pool: i64, name: impl Into<String>) -> Self {
        Self {
            pool,
            nspace: String::new(),
            name: name.into(),
        }
    }

    /// The object an `MOSDOp` addresses.
    pub fn of(op: &MOSDOp) -> Self {
        Self {
            pool: op.locator.pool,
            nspace: op.locator.nspace.clone(),
            name: op.oid.clone(),
        }
    }
}

/// One stored object.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Object {
    /// The contents (a snapshot: later writes do not change a clone taken now).
    pub data: Bytes,
    /// Last modification time.
    pub mtime: UTime,
    /// Bumped by every modifying request (Ceph's `user_version`).
    pub version: u64,
}

/// Where a time for objects whose request carries no mtime comes from.
pub type Clock = fn() -> UTime;

/// The wall clock, for mtimes of requests that carry none.
fn system_clock() -> UTime {
    // The store stamps objects with the wall clock as an OSD does; this is not protocol
    // time, which stays an input of the engine (STYLE.md R2).
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now();
    let d = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    UTime::new(
        u32::try_from(d.as_secs()).unwrap_or(u32::MAX),
        d.subsec_nanos(),
    )
}

type Shard = Mutex<HashMap<ObjectKey, Object>>;

/// An in-memory object store, safe to share between threads.
pub struct ObjectStore {
    shards: Box<[Shard]>,
    clock: Clock,
    max_object_size: u64,
}

impl Default for ObjectStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ObjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStore")
            .field("shards", &self.shards.len())
            .field("objects", &self.len())
            .finish()
    }
}

impl ObjectStore {
    /// An empty store with the default shard count, the wall clock and Ceph's maximum
    /// object size.
    pub fn new() -> Self {
        Self::with_shards(DEFAULT_SHARDS)
    }

    /// An empty store with `n` lock shards (at least one).
    pub fn with_shards(n: usize) -> Self {
        Self {
            shards: (0..n.max(1)).map(|_| Mutex::default()).collect(),
            clock: system_clock,
            max_object_size: DEFAULT_MAX_OBJECT_SIZE,
        }
    }

    /// Uses `clock` for the mtime of writes whose request has none (builder style; tests
    /// pass a fixed clock).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the largest object size a write may produce (builder style).
    pub fn with_max_object_size(mut self, bytes: u64) -> Self {
        self.max_object_size = bytes;
        self
    }

    fn shard(&self, key: &ObjectKey) -> MutexGuard<'_, HashMap<ObjectKey, Object>> {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        // The modulo result is below the shard count, which is a usize.
        let i = (h.finish() % self.shards.len() as u64) as usize;
        // A panic while holding a shard cannot leave an object half-written: objects are
        // replaced whole, so a poisoned lock is taken over.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Objects stored.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// Whether the store holds no object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A snapshot of one object.
    pub fn get(&self, key: &ObjectKey) -> Option<Object> {
        self.shard(key).get(key).cloned()
    }

    /// Runs `ops` on object `key` as one transaction and writes each op's `rval`, output
    /// data and (for reads) returned length into `out`, which must hold the same ops in the
    /// same order (as [`MOSDOpReply::reply_to`] makes them). `mtime` stamps modified
    /// objects (zero: the store's clock). Returns the request's result: 0, or the `rval` of
    /// the op that failed first.
    ///
    /// Only the shard holding `key` is locked, for the duration of the ops.
    pub fn execute(&self, key: &ObjectKey, ops: &[OsdOp], mtime: UTime, out: &mut [OsdOp]) -> i32 {
        self.execute_versioned(key, ops, mtime, out).0
    }

    /// [`ObjectStore::execute`], also returning the object's version afterwards (0 if it
    /// does not exist), for the reply's `user_version`: one lookup instead of a second one.
    pub fn execute_versioned(
        &self,
        key: &ObjectKey,
        ops: &[OsdOp],
        mtime: UTime,
        out: &mut [OsdOp],
    ) -> (i32, u64) {
        debug_assert_eq!(ops.len(), out.len());
        let mtime = if mtime == UTime::default() {
            (self.clock)()
        } else {
            mtime
        };
        let mut shard = self.shard(key);
        if !ops.iter().any(|o| o.op.is_write()) {
            // Read-only: no working copy, nothing to undo.
            let mut cur = shard.get(key).cloned();
            drop(shard);
            let version = cur.as_ref().map_or(0, |o| o.version);
            return (self.run(&mut cur, ops, mtime, out).0, version);
        }
        // Take the object out (so that an unshared buffer can be mutated in place); keep the
        // original only when a later op could fail after an earlier one wrote. The slot is
        // looked up once and written back in place.
        let mut slot = shard.get_mut(key);
        let mut cur = slot.as_deref_mut().map(std::mem::take);
        let base_version = cur.as_ref().map_or(0, |o| o.version);
        let undo = (ops.len() > 1).then(|| cur.clone());
        let (result, modified) = self.run(&mut cur, ops, mtime, out);
        let keep = if result < 0 {
            match undo {
                Some(orig) => orig,
                // A single failed op changes nothing.
                None => cur,
            }
        } else {
            if modified {
                if let Some(o) = cur.as_mut() {
                    // Monotonic even when the request deleted and re-created the object.
                    o.version = base_version + 1;
                }
            }
            cur
        };
        let version = keep.as_ref().map_or(0, |o| o.version);
        match (keep, slot.take()) {
            (Some(o), Some(s)) => *s = o,
            (Some(o), None) => {
                shard.insert(key.clone(), o);
            }
            (None, Some(_)) => {
                shard.remove(key);
            }
            (None, None) => {}
        }
        (result, version)
    }

    /// The op loop on a working copy. Returns the result and whether anything was written.
    fn run(
        &self,
        cur: &mut Option<Object>,
        ops: &[OsdOp],
        mtime: UTime,
        out: &mut [OsdOp],
    ) -> (i32, bool) {
        let mut modified = false;
        for (op, reply) in ops.iter().zip(out.iter_mut()) {
            let r = self.run_one(cur, op, mtime, reply);
            reply.rval = r;
            if r < 0 {
                if op.flags & op_flags::FAILOK != 0 {
                    continue;
                }
                return (r, modified);
            }
            modified |= op.op.is_write();
        }
        (0, modified)
    }

    fn run_one(
        &self,
        cur: &mut Option<Object>,
        op: &OsdOp,
        mtime: UTime,
        reply: &mut OsdOp,
    ) -> i32 {
        let ext = op.extent();
        match op.op {
            OsdOpCode::READ => {
                let Some(obj) = cur.as_ref() else {
                    return -errno::ENOENT;
                };
                let data = read_extent(&obj.data, ext.offset, ext.length);
                reply.set_extent(Extent {
                    length: data.len() as u64,
                    ..ext
                });
                reply.data = data;
                0
            }
            OsdOpCode::STAT => {
                let Some(obj) = cur.as_ref() else {
                    return -errno::ENOENT;
                };
                reply.data = StatResult {
                    size: obj.data.len() as u64,
                    mtime: obj.mtime,
                }
                .to_bytes();
                0
            }
            OsdOpCode::WRITE => {
                if ext.length != op.data.len() as u64 {
                    return -errno::EINVAL;
                }
                let Some(end) = self.end_within_limit(ext.offset, ext.length) else {
                    return -errno::EFBIG;
                };
                let obj = cur.get_or_insert_with(Object::default);
                if !op.data.is_empty() {
                    write_at(&mut obj.data, ext.offset, end, &op.data);
                }
                obj.mtime = mtime;
                0
            }
            OsdOpCode::WRITEFULL => {
                if ext.length != op.data.len() as u64 {
                    return -errno::EINVAL;
                }
                if self.end_within_limit(0, ext.length).is_none() {
                    return -errno::EFBIG;
                }
                let obj = cur.get_or_insert_with(Object::default);
                obj.data = Bytes::copy_from_slice(&op.data);
                obj.mtime = mtime;
                0
            }
            OsdOpCode::APPEND => {
                if ext.length != op.data.len() as u64 {
                    return -errno::EINVAL;
                }
                let at = cur.as_ref().map_or(0, |o| o.data.len() as u64);
                let Some(end) = self.end_within_limit(at, ext.length) else {
                    return -errno::EFBIG;
                };
                let obj = cur.get_or_insert_with(Object::default);
                if !op.data.is_empty() {
                    write_at(&mut obj.data, at, end, &op.data);
                }
                obj.mtime = mtime;
                0
            }
            OsdOpCode::TRUNCATE => {
                let Some(size) = self.end_within_limit(ext.offset, 0) else {
                    return -errno::EFBIG;
                };
                let obj = cur.get_or_insert_with(Object::default);
                let mut b = into_mut(std::mem::take(&mut obj.data));
                b.resize(size, 0);
                obj.data = b.freeze();
                obj.mtime = mtime;
                0
            }
            OsdOpCode::ZERO => {
                let Some(obj) = cur.as_mut() else {
                    return -errno::ENOENT;
                };
                let size = obj.data.len() as u64;
                // Zeroing never extends the object.
                let end = ext.offset.saturating_add(ext.length).min(size);
                if ext.offset < end {
                    let mut b = into_mut(std::mem::take(&mut obj.data));
                    // Both bounds are at most the object size, which fits in memory.
                    b[ext.offset as usize..end as usize].fill(0);
                    obj.data = b.freeze();
                }
                obj.mtime = mtime;
                0
            }
            OsdOpCode::DELETE => {
                if cur.take().is_none() {
                    return -errno::ENOENT;
                }
                0
            }
            OsdOpCode::CREATE => {
                match cur {
                    Some(_) if op.flags & op_flags::EXCL != 0 => return -errno::EEXIST,
                    Some(_) => {}
                    None => {
                        *cur = Some(Object {
                            mtime,
                            ..Object::default()
                        })
                    }
                }
                0
            }
            _ => -errno::EOPNOTSUPP,
        }
    }

    /// `offset + length` if it stays within the maximum object size (and memory).
    fn end_within_limit(&self, offset: u64, length: u64) -> Option<usize> {
        offset
            .checked_add(length)
            .filter(|&e| e <= self.max_object_size)
            .and_then(|e| usize::try_from(e).ok())
    }
}

/// `length` bytes of `data` from `offset` (0: to the end), short at the end, shared.
fn read_extent(data: &Bytes, offset: u64, length: u64) -> Bytes {
    let size = data.len() as u64;
    if offset >= size {
        return Bytes::new();
    }
    let end = if length == 0 {
        size
    } else {
        offset.saturating_add(length).min(size)
    };
    // Both bounds are at most the buffer's length.
    data.slice(offset as usize..end as usize)
}

/// The buffer for mutation: in place if nobody else holds it, else a copy.
fn into_mut(b: Bytes) -> BytesMut {
    b.try_into_mut()
        .unwrap_or_else(|shared| BytesMut::from(&shared[..]))
}

/// Writes `src` at `offset` (`end = offset + src.len()`), zero-filling any gap.
fn write_at(data: &mut Bytes, offset: u64, end: usize, src: &[u8]) {
    let mut b = into_mut(std::mem::take(data));
    if b.len() < end {
        b.resize(end, 0);
    }
    // `end` fits in usize (checked by the caller), so the offset below it does too.
    b[offset as usize..end].copy_from_slice(src);
    *data = b.freeze();
}

/// Op kinds counted separately, in dump order.
const OP_KINDS: [OsdOpCode; 9] = [
    OsdOpCode::READ,
    OsdOpCode::STAT,
    OsdOpCode::WRITE,
    OsdOpCode::WRITEFULL,
    OsdOpCode::APPEND,
    OsdOpCode::TRUNCATE,
    OsdOpCode::ZERO,
    OsdOpCode::DELETE,
    OsdOpCode::CREATE,
];

/// The OSD counters (lock-free; written on network threads).
#[derive(Default)]
struct Counters {
    /// MOSDOp messages.
    op: AtomicU64,
    /// ... with only read ops.
    op_r: AtomicU64,
    /// ... with a write op.
    op_w: AtomicU64,
    /// Requests whose result was an error.
    op_err: AtomicU64,
    /// Request data bytes (writes).
    op_in_bytes: AtomicU64,
    /// Reply data bytes (reads, stats).
    op_out_bytes: AtomicU64,
    /// Ops by kind ([`OP_KINDS`] order, then "other").
    by_kind: [AtomicU64; OP_KINDS.len() + 1],
    /// MPing answered.
    ping: AtomicU64,
    /// Claimed messages that did not decode.
    decode_errors: AtomicU64,
    /// Replies the connection refused (closed meanwhile).
    reply_errors: AtomicU64,
    /// Messages offered on the dispatch queue that this dispatcher does not handle.
    unhandled: AtomicU64,
}

fn inc(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// The fast-dispatch handler of the OSD demo: answers `MOSDOp` from an [`ObjectStore`] and
/// `MPing` with an `MPing` (see the module docs for the semantics).
pub struct OsdDispatcher {
    store: Arc<ObjectStore>,
    epoch: u32,
    counters: Counters,
}

impl std::fmt::Debug for OsdDispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OsdDispatcher")
            .field("store", &self.store)
            .field("epoch", &self.epoch)
            .finish()
    }
}

impl OsdDispatcher {
    /// A dispatcher serving `store`, claiming OSD map epoch 1.
    pub fn new(store: Arc<ObjectStore>) -> Self {
        Self {
            store,
            epoch: 1,
            counters: Counters::default(),
        }
    }

    /// The OSD map epoch put in replies (builder style).
    pub fn with_epoch(mut self, epoch: u32) -> Self {
        self.epoch = epoch;
        self
    }

    /// The store served.
    pub fn store(&self) -> &Arc<ObjectStore> {
        &self.store
    }

    /// Handles one message: the reply to send back, if any, encoded for a peer with
    /// `features`. `MOSDOp` and `MPing` get replies; other types and undecodable messages
    /// get none. This is all [`Dispatcher::ms_fast_dispatch`] does besides sending, so it
    /// can be tested without a network.
    pub fn handle(&self, msg: Message, features: u64) -> Option<Message> {
        match msg.ty() {
            MsgType::OSD_OP => self.handle_op(msg, features),
            MsgType::PING => self.handle_ping(msg, features),
            _ => None,
        }
    }

    fn handle_op(&self, msg: Message, features: u64) -> Option<Message> {
        let req = match MOSDOp::decode(msg) {
            Ok(r) => r,
            Err(e) => {
                inc(&self.counters.decode_errors, 1);
                warn!(error = %e, "undecodable MOSDOp dropped");
                return None;
            }
        };
        let c = &self.counters;
        inc(&c.op, 1);
        if req.ops.iter().any(|o| o.op.is_write()) {
            inc(&c.op_w, 1);
        } else {
            inc(&c.op_r, 1);
        }
        for o in &req.ops {
            let i = OP_KINDS
                .iter()
                .position(|k| *k == o.op)
                .unwrap_or(OP_KINDS.len());
            inc(&c.by_kind[i], 1);
            inc(&c.op_in_bytes, o.data.len() as u64);
        }
        let key = ObjectKey::of(&req);
        let mut reply = MOSDOpReply::reply_to(&req, 0, self.epoch);
        let (result, version) =
            self.store
                .execute_versioned(&key, &req.ops, req.mtime, &mut reply.ops);
        reply.result = result;
        if result < 0 {
            inc(&c.op_err, 1);
            if req.flags & flags::RETURNVEC == 0 {
                for o in &mut reply.ops {
                    o.data = Bytes::new();
                }
            }
        } else if version > 0 && req.ops.iter().any(|o| o.op.is_write()) {
            reply.user_version = version;
        }
        let out: u64 = reply.ops.iter().map(|o| o.data.len() as u64).sum();
        inc(&c.op_out_bytes, out);
        debug!(tid = req.tid, oid = %req.oid, ops = req.ops.len(), result, "osd op");
        Some(reply.to_message(features))
    }

    fn handle_ping(&self, msg: Message, features: u64) -> Option<Message> {
        let tid = msg.header.tid;
        // Only the data segment is echoed; a front we cannot read is no reason not to answer.
        let data = match MPing::decode(msg) {
            Ok(p) => p.data,
            Err(e) => {
                inc(&self.counters.decode_errors, 1);
                debug!(error = %e, "MPing with an unreadable front; answering anyway");
                Bytes::new()
            }
        };
        inc(&self.counters.ping, 1);
        let reply = MPing {
            payload: None,
            data,
        };
        Some(reply.to_message(features).with_tid(tid))
    }

    /// The counters as JSON, in the shape of Ceph's `perf dump` (`{"osd": {...}}`).
    pub fn perf_dump(&self) -> Value {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut by_kind = Map::new();
        for (i, k) in OP_KINDS.iter().enumerate() {
            by_kind.insert(k.to_string(), json!(g(&c.by_kind[i])));
        }
        by_kind.insert("other".into(), json!(g(&c.by_kind[OP_KINDS.len()])));
        json!({
            "osd": {
                "op": g(&c.op),
                "op_r": g(&c.op_r),
                "op_w": g(&c.op_w),
                "op_errors": g(&c.op_err),
                "op_in_bytes": g(&c.op_in_bytes),
                "op_out_bytes": g(&c.op_out_bytes),
                "ops_by_type": by_kind,
                "ping": g(&c.ping),
                "decode_errors": g(&c.decode_errors),
                "reply_errors": g(&c.reply_errors),
                "unhandled": g(&c.unhandled),
                "objects": self.store.len(),
                "osdmap_epoch": self.epoch,
            }
        })
    }
}

impl Dispatcher for OsdDispatcher {
    fn ms_can_fast_dispatch_any(&self) -> bool {
        true
    }

    fn ms_can_fast_dispatch(&self, m: &Message) -> bool {
        matches!(m.ty(), MsgType::OSD_OP | MsgType::PING)
    }

    fn ms_fast_dispatch(&self, m: Incoming) {
        // The rest of `m` (its throttle share) is dropped when this returns, after the
        // reply is queued.
        let Incoming {
            msg,
            conn,
            features,
            ..
        } = m;
        if let Some(reply) = self.handle(msg, features) {
            if let Err(e) = conn.send_message(reply) {
                inc(&self.counters.reply_errors, 1);
                debug!(error = %e, "reply not sent");
            }
        }
    }

    fn ms_dispatch(&self, m: &Incoming) -> bool {
        inc(&self.counters.unhandled, 1);
        debug!(ty = m.msg.ty().0, "not an OSD message");
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::PACIFIC_ALL;

    const T0: UTime = UTime::new(1_700_000_000, 5);

    fn clock() -> UTime {
        UTime::new(42, 0)
    }

    fn store() -> ObjectStore {
        ObjectStore::with_shards(4).with_clock(clock)
    }

    /// Runs one request through the store; returns (result, reply ops).
    fn exec(s: &ObjectStore, req: &MOSDOp) -> (i32, Vec<OsdOp>) {
        let mut reply = MOSDOpReply::reply_to(req, 0, 1);
        let r = s.execute(&ObjectKey::of(req), &req.ops, req.mtime, &mut reply.ops);
        (r, reply.ops)
    }

    fn b(s: &'static [u8]) -> Bytes {
        Bytes::from_static(s)
    }

    #[test]
    fn write_full_then_read_back() {
        let s = store();
        let (r, ops) = exec(&s, &MOSDOp::write_full(1, "o", b(b"hello")).with_mtime(T0));
        assert_eq!((r, ops[0].rval), (0, 0));
        assert!(ops[0].data.is_empty());
        let (r, ops) = exec(&s, &MOSDOp::read(1, "o", 0, 0));
        assert_eq!(r, 0);
        assert_eq!(&ops[0].data[..], b"hello");
        assert_eq!(ops[0].extent().length, 5);
        let o = s.get(&ObjectKey::new(1, "o")).unwrap();
        assert_eq!((o.mtime, o.version), (T0, 1));
    }

    #[test]
    fn writefull_replaces_and_shrinks() {
        let s = store();
        exec(&s, &MOSDOp::write_full(1, "o", b(b"a long value")));
        exec(&s, &MOSDOp::write_full(1, "o", b(b"short")));
        assert_eq!(
            &exec(&s, &MOSDOp::read(1, "o", 0, 0)).1[0].data[..],
            b"short"
        );
    }

    #[test]
    fn extents_write_and_read() {
        let s = store();
        exec(&s, &MOSDOp::write_full(1, "o", b(b"0123456789")));
        let (r, _) = exec(&s, &MOSDOp::write(1, "o", 3, b(b"abc")));
        assert_eq!(r, 0);
        let (_, ops) = exec(&s, &MOSDOp::read(1, "o", 2, 5));
        assert_eq!(&ops[0].data[..], b"2abc6");
        assert_eq!(ops[0].extent().offset, 2);
        assert_eq!(ops[0].extent().length, 5);
        assert_eq!(
            &exec(&s, &MOSDOp::read(1, "o", 0, 0)).1[0].data[..],
            b"012abc6789"
        );
    }

    #[test]
    fn write_past_end_zero_fills() {
        let s = store();
        exec(&s, &MOSDOp::write(1, "o", 0, b(b"ab")));
        exec(&s, &MOSDOp::write(1, "o", 5, b(b"cd")));
        let (_, ops) = exec(&s, &MOSDOp::read(1, "o", 0, 0));
        assert_eq!(&ops[0].data[..], b"ab\0\0\0cd");
        // Writing into a missing object at an offset creates it with a zero prefix.
        exec(&s, &MOSDOp::write(1, "new", 3, b(b"x")));
        assert_eq!(
            &exec(&s, &MOSDOp::read(1, "new", 0, 0)).1[0].data[..],
            b"\0\0\0x"
        );
    }

    #[test]
    fn read_past_end_is_short_or_empty() {
        let s = store();
        exec(&s, &MOSDOp::write_full(1, "o", b(b"abcdef")));
        let (r, ops) = exec(&s, &MOSDOp::read(1, "o", 4, 100));
        assert_eq!(r, 0);
        assert_eq!(&ops[0].data[..], b"ef");
        assert_eq!(ops[0].extent().length, 2);
        let (r, ops) = exec(&s, &MOSDOp::read(1, "o", 6, 10));
        assert_eq!((r, ops[0].data.len()), (0, 0));
        let (r, ops) = exec(&s, &MOSDOp::read(1, "o", u64::MAX, 10));
        assert_eq!((r, ops[0].data.len()), (0, 0));
        let (_, ops) = exec(&s, &MOSDOp::read(1, "o", 2, 0));
        assert_eq!(&ops[0].data[..], b"cdef");
    }

    #[test]
    fn reads_share_the_stored_buffer_and_survive_later_writes() {
        let s = store();
        exec(&s, &MOSDOp::write_full(1, "o", b(b"abcdef")));
        let snap = exec(&s, &MOSDOp::read(1, "o", 1, 3)).1[0].data.clone();
        let stored = s.get(&ObjectKey::new(1, "o")).unwrap().data;
        assert_eq!(
            snap.as_ptr(),
            stored[1..].as_ptr(),
            "a read is a slice, not a copy"
        );
        drop(stored);
        exec(&s, &MOSDOp::write(1, "o", 0, b(b"XYZW")));
        assert_eq!(&snap[..], b"bcd", "a reader's snapshot does not change");
        assert_eq!(
            &exec(&s, &MOSDOp::read(1, "o", 0, 0)).1[0].data[..],
            b"XYZWef"
        );
    }

    #[test]
    fn stat_reports_size_and_mtime() {
        let s = store();
        exec(&s, &MOSDOp::write_full(1, "o", b(b"12345")).with_mtime(T0));
        let (r, ops) = exec(&s, &MOSDOp::stat(1, "o"));
        assert_eq!(r, 0);
        let st = StatResult::from_bytes(&ops[0].data).unwrap();
        assert_eq!((st.size, st.mtime), (5, T0));
        // No mtime in the request: the store's clock.
        exec(&s, &MOSDOp::write(1, "o", 9, b(b"x")));
        let st = StatResult::from_bytes(&exec(&s, &MOSDOp::stat(1, "o")).1[0].data).unwrap();
        assert_eq!((st.size, st.mtime), (10, clock()));
    }

    #[test]
    fn missing_objects_are_enoent() {
        let s = store();
        for req in [
            MOSDOp::read(1, "nope", 0, 0),
            MOSDOp::stat(1, "nope"),
            MOSDOp::delete(1, "nope"),
        ] {
            let (r, ops) = exec(&s, &req);
            assert_eq!((r, ops[0].rval), (-2, -2), "{:?}", req.ops[0].op);
            assert!(ops[0].data.is_empty());
        }
        assert!(s.is_empty(), "failed ops create nothing");
    }

    #[test]
    fn delete_removes() {
        let s = store();
        exec(&s, &MOSDOp::write_full(1, "o", b(b"x")));
        assert_eq!(exec(&s, &MOSDOp::delete(1, "o")).0, 0);
        assert_eq!(exec(&s, &MOSDOp::read(1, "o", 0, 0)).0, -errno::ENOENT);
        assert_eq!(exec(&s, &MOSDOp::delete(1, "o")).0, -errno::ENOENT);
        assert!(s.is_empty());
    }

    #[test]
    fn create_exclusive_and_not() {
        let s = store();
        assert_eq!(exec(&s, &MOSDOp::create(1, "o", true)).0, 0);
        let o = s.get(&ObjectKey::new(1, "o")).unwrap();
        assert!(o.data.is_empty());
        assert_eq!(exec(&s, &MOSDOp::create(1, "o", true)).0, -errno::EEXIST);
        assert_eq!(exec(&s, &MOSDOp::create(1, "o", false)).0, 0);
        exec(&s, &MOSDOp::write_full(1, "o", b(b"keep")));
        assert_eq!(exec(&s, &MOSDOp::create(1, "o", false)).0, 0);
        assert_eq!(
            &exec(&s, &MOSDOp::read(1, "o", 0, 0)).1[0].data[..],
            b"keep"
        );
    }

    #[test]
    fn objects_are_keyed_by_pool_namespace_and_name() {
        let s = store();
        exec(&s, &MOSDOp::write_full(1, "o", b(b"p1")));
        exec(&s, &MOSDOp::write_full(2, "o", b(b"p2")));
        exec(
            &s,
            &MOSDOp::write_full(1, "o", b(b"ns")).with_namespace("ns"),
        );
        assert_eq!(s.len(), 3);
        assert_eq!(&exec(&s, &MOSDOp::read(2, "o", 0, 0)).1[0].data[..], b"p2");
        let r = exec(&s, &MOSDOp::read(1, "o", 0, 0).with_namespace("ns"));
        assert_eq!(&r.1[0].data[..], b"ns");
    }

    #[test]
    fn zero_length_write_creates_without_extending() {
        let s = store();
        exec(&s, &MOSDOp::write(1, "o", 100, Bytes::new()));
        let st = StatResult::from_bytes(&exec(&s, &MOSDOp::stat(1, "o")).1[0].data).unwrap();
        assert_eq!(st.size, 0);
    }

    #[test]
    fn bad_extent_and_huge_writes_fail() {
        let s = store().with_max_object_size(1024);
        let mut req = MOSDOp::write(1, "o", 0, b(b"abc"));
        let e = req.ops[0].extent();
        req.ops[0].set_extent(Extent { length: 4, ..e });
        assert_eq!(exec(&s, &req).0, -errno::EINVAL);
        assert_eq!(
            exec(&s, &MOSDOp::write(1, "o", 1022, b(b"abc"))).0,
            -errno::EFBIG
        );
        assert_eq!(
            exec(&s, &MOSDOp::write(1, "o", u64::MAX, b(b"a"))).0,
            -errno::EFBIG
        );
        assert!(s.is_empty());
    }

    #[test]
    fn append_truncate_zero() {
        let s = store();
        let op = |code, off, len, data: Bytes| OsdOp::with_extent(code, off, len, data);
        exec(
            &s,
            &MOSDOp::new(1, "o", vec![op(OsdOpCode::APPEND, 0, 3, b(b"abc"))]),
        );
        exec(
            &s,
            &MOSDOp::new(1, "o", vec![op(OsdOpCode::APPEND, 0, 2, b(b"de"))]),
        );
        assert_eq!(
            &exec(&s, &MOSDOp::read(1, "o", 0, 0)).1[0].data[..],
            b"abcde"
        );
        exec(
            &s,
            &MOSDOp::new(1, "o", vec![op(OsdOpCode::ZERO, 1, 2, Bytes::new())]),
        );
        assert_eq!(
            &exec(&s, &MOSDOp::read(1, "o", 0, 0)).1[0].data[..],
            b"a\0\0de"
        );
        exec(
            &s,
            &MOSDOp::new(1, "o", vec![op(OsdOpCode::TRUNCATE, 2, 0, Bytes::new())]),
        );
        assert_eq!(&exec(&s, &MOSDOp::read(1, "o", 0, 0)).1[0].data[..], b"a\0");
        exec(
            &s,
            &MOSDOp::new(1, "o", vec![op(OsdOpCode::TRUNCATE, 4, 0, Bytes::new())]),
        );
        assert_eq!(
            &exec(&s, &MOSDOp::read(1, "o", 0, 0)).1[0].data[..],
            b"a\0\0\0"
        );
    }

    #[test]
    fn unknown_ops_are_eopnotsupp() {
        let s = store();
        let (r, _) = exec(&s, &MOSDOp::new(1, "o", vec![OsdOp::new(OsdOpCode::CALL)]));
        assert_eq!(r, -errno::EOPNOTSUPP);
    }

    #[test]
    fn ops_stop_at_the_first_error_and_undo_earlier_writes() {
        let s = store();
        exec(&s, &MOSDOp::write_full(1, "o", b(b"orig")));
        let req = MOSDOp::new(
            1,
            "o",
            vec![
                OsdOp::with_extent(OsdOpCode::WRITE, 0, 2, b(b"XY")),
                OsdOp::new(OsdOpCode::DELETE),
                create_excl(),
                OsdOp::with_extent(OsdOpCode::WRITE, 0, 1, b(b"Z")),
            ],
        );
        let (r, ops) = exec(&s, &req);
        // WRITE ok, DELETE ok, CREATE ok (the object is gone by then)... then WRITE ok.
        assert_eq!(r, 0);
        assert_eq!(ops.iter().map(|o| o.rval).collect::<Vec<_>>(), [0, 0, 0, 0]);
        assert_eq!(&exec(&s, &MOSDOp::read(1, "o", 0, 0)).1[0].data[..], b"Z");

        let req = MOSDOp::new(
            1,
            "o",
            vec![
                OsdOp::with_extent(OsdOpCode::WRITE, 0, 3, b(b"abc")),
                create_excl(),
                OsdOp::with_extent(OsdOpCode::WRITE, 0, 3, b(b"never")),
            ],
        );
        let (r, ops) = exec(&s, &req);
        assert_eq!(r, -errno::EEXIST);
        assert_eq!(ops.iter().map(|o| o.rval).collect::<Vec<_>>(), [0, -17, 0]);
        assert_eq!(
            &exec(&s, &MOSDOp::read(1, "o", 0, 0)).1[0].data[..],
            b"Z",
            "the first write was undone"
        );
        let o = s.get(&ObjectKey::new(1, "o")).unwrap();
        assert_eq!(o.version, 2, "failed requests do not bump the version");
    }

    #[test]
    fn failok_ops_do_not_stop_the_request() {
        let s = store();
        let mut stat = OsdOp::new(OsdOpCode::STAT);
        stat.flags |= op_flags::FAILOK;
        let req = MOSDOp::new(
            1,
            "o",
            vec![stat, OsdOp::with_extent(OsdOpCode::WRITE, 0, 1, b(b"a"))],
        );
        let (r, ops) = exec(&s, &req);
        assert_eq!((r, ops[0].rval, ops[1].rval), (0, -2, 0));
        assert_eq!(s.len(), 1);
    }

    fn create_excl() -> OsdOp {
        let mut op = OsdOp::new(OsdOpCode::CREATE);
        op.flags |= op_flags::EXCL;
        op
    }

    fn dispatcher() -> OsdDispatcher {
        OsdDispatcher::new(Arc::new(store())).with_epoch(7)
    }

    fn reply(d: &OsdDispatcher, req: &MOSDOp) -> MOSDOpReply {
        let m = d.handle(req.to_message(PACIFIC_ALL), PACIFIC_ALL).unwrap();
        assert_eq!(m.ty(), MsgType::OSD_OPREPLY);
        MOSDOpReply::decode(m).unwrap()
    }

    #[test]
    fn dispatcher_replies_over_the_wire_encoding() {
        let d = dispatcher();
        let w = reply(&d, &MOSDOp::write_full(3, "obj", b(b"data")).with_tid(11));
        assert_eq!(
            (w.tid, w.result, w.osdmap_epoch, w.user_version),
            (11, 0, 7, 1)
        );
        assert_eq!(w.oid, "obj");
        let r = reply(&d, &MOSDOp::read(3, "obj", 1, 2).with_tid(12));
        assert_eq!((r.tid, r.result), (12, 0));
        assert_eq!(&r.ops[0].data[..], b"at");
        let st = reply(&d, &MOSDOp::stat(3, "obj"));
        assert_eq!(StatResult::from_bytes(&st.ops[0].data).unwrap().size, 4);
        let gone = reply(&d, &MOSDOp::read(3, "missing", 0, 0));
        assert_eq!((gone.result, gone.ops[0].rval), (-2, -2));

        let perf = d.perf_dump();
        let osd = &perf["osd"];
        assert_eq!(osd["op"], 4);
        assert_eq!(osd["op_w"], 1);
        assert_eq!(osd["op_r"], 3);
        assert_eq!(osd["op_errors"], 1);
        assert_eq!(osd["ops_by_type"]["read"], 2);
        assert_eq!(osd["ops_by_type"]["writefull"], 1);
        assert_eq!(osd["ops_by_type"]["stat"], 1);
        assert_eq!(osd["op_in_bytes"], 4);
        assert_eq!(osd["op_out_bytes"], 2 + 16);
        assert_eq!(osd["objects"], 1);
    }

    #[test]
    fn failed_requests_carry_no_data_unless_returnvec() {
        let d = dispatcher();
        reply(&d, &MOSDOp::write_full(1, "o", b(b"abc")));
        let ops = vec![
            OsdOp::with_extent(OsdOpCode::READ, 0, 0, Bytes::new()),
            create_excl(),
        ];
        let r = reply(&d, &MOSDOp::new(1, "o", ops.clone()));
        assert_eq!(r.result, -17);
        assert!(r.ops[0].data.is_empty());
        let mut req = MOSDOp::new(1, "o", ops);
        req.flags |= flags::RETURNVEC;
        let r = reply(&d, &req);
        assert_eq!(&r.ops[0].data[..], b"abc");
    }

    #[test]
    fn dispatcher_echoes_pings() {
        let d = dispatcher();
        let ping = MPing {
            payload: None,
            data: b(b"payload"),
        };
        let m = d
            .handle(ping.to_message(PACIFIC_ALL).with_tid(5), PACIFIC_ALL)
            .unwrap();
        assert_eq!((m.ty(), m.header.tid), (MsgType::PING, 5));
        assert!(m.front.is_empty());
        assert_eq!(&m.data[..], b"payload");
        assert_eq!(d.perf_dump()["osd"]["ping"], 1);
    }

    #[test]
    fn dispatcher_claims_only_its_types_and_survives_garbage() {
        let d = dispatcher();
        let ping = MPing::new().to_message(PACIFIC_ALL);
        assert!(d.ms_can_fast_dispatch_any());
        assert!(d.ms_can_fast_dispatch(&ping));
        let auth = crate::msg::MAuth::auth_none_request(crate::msg::AuthEntityName::client("x"))
            .to_message(PACIFIC_ALL);
        assert!(!d.ms_can_fast_dispatch(&auth));
        assert!(d.handle(auth, PACIFIC_ALL).is_none());
        let mut bad = MOSDOp::stat(1, "o").to_message(PACIFIC_ALL);
        bad.front = bad.front.slice(..10);
        assert!(d.handle(bad, PACIFIC_ALL).is_none());
        assert_eq!(d.perf_dump()["osd"]["decode_errors"], 1);
    }

    #[test]
    fn concurrent_writers_on_many_objects() {
        let s = Arc::new(ObjectStore::with_shards(8));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let s = Arc::clone(&s);
                std::thread::spawn(move || {
                    for i in 0..200u64 {
                        let name = format!("o{}", i % 20);
                        let req = MOSDOp::write(1, name, t * 4, Bytes::from(vec![t as u8 + 1; 4]));
                        assert_eq!(exec(&s, &req).0, 0);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(s.len(), 20);
        for i in 0..20 {
            let data = s.get(&ObjectKey::new(1, format!("o{i}"))).unwrap().data;
            assert_eq!(&data[..], &[1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4]);
        }
    }
}
