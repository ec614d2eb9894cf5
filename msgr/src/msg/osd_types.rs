//! The value types an OSD request and reply are made of: placement groups, request ids,
//! object locators, versions, and the raw `ceph_osd_op` with its input/output data.
//! Also the object-name hash that picks an object's placement group.
//!
//! Follows Ceph Pacific:
//! - `src/osd/osd_types.h`: `pg_t::encode` (`u8 1, u64 pool, u32 seed, s32 -1`),
//!   `spg_t::encode` (`ENCODE_START(1, 1)`, `pg_t`, `s8 shard`), `osd_reqid_t`'s `DENC`
//!   (`DENC_START(2, 2)`, `entity_name_t` as `u8 type + s64 num`, `u64 tid`, `s32 inc`),
//!   `eversion_t::encode` (`u64 version, u32 epoch`), `OSDOp` and its
//!   `merge_osd_op_vector_in_data` / `split_osd_op_vector_in_data`;
//! - `src/osd/osd_types.cc`: `object_locator_t::encode` (`ENCODE_START(6, 3)`, compat raised
//!   to 6 when a hash is set; `s64 pool, s32 preferred = -1, string key, string nspace,
//!   s64 hash`) and `decode` (`DECODE_START_LEGACY_COMPAT_LEN(6, 3, 3)`),
//!   `request_redirect_t::encode`/`decode`, `OSDOp::merge_osd_op_vector_out_data` /
//!   `split_osd_op_vector_out_data`;
//! - `src/include/rados.h`: `struct ceph_osd_op` (packed, 38 bytes: `le16 op, le32 flags`,
//!   a 28-byte union whose `extent` arm is `le64 offset, le64 length, le64 truncate_size,
//!   le32 truncate_seq`, then `le32 payload_len`), the `CEPH_OSD_OP_*` codes and the
//!   `CEPH_OSD_FLAG_*` bits;
//! - `src/common/zipkin_trace.h`: `blkin_trace_info` is three `s64` (zeros without tracing);
//! - `src/common/ceph_hash.cc` (`ceph_str_hash_rjenkins`, Bob Jenkins' public-domain
//!   lookup2 hash), `src/osd/osd_types.cc` (`pg_pool_t::hash_key`: `nspace + '\x1f' + key`)
//!   and `src/include/rados.h` (`ceph_stable_mod`). Checked against `osdmaptool
//!   --test-map-object` from Ceph 16.2.15 (see the tests).

use std::fmt;

use bytes::Bytes;

use super::types::UTime;
use crate::denc::{Decode, Encode, Reader, Writer};
use crate::entity::{EntityName, EntityType};
use crate::error::DecodeError;

/// `CEPH_NOSNAP`: the "head" (live) version of an object.
pub const NOSNAP: u64 = u64::MAX - 1;

/// `CEPH_OSD_FLAG_*`: request/reply flags (`rados.h`).
pub mod flags {
    /// Want (or is) an "ack" reply.
    pub const ACK: u32 = 0x0001;
    /// Want (or is) an "onnvram" reply.
    pub const ONNVRAM: u32 = 0x0002;
    /// Want (or is) an "ondisk" reply. Clients always set it (pre-Luminous OSDs need it).
    pub const ONDISK: u32 = 0x0004;
    /// This is a resend.
    pub const RETRY: u32 = 0x0008;
    /// The op may read.
    pub const READ: u32 = 0x0010;
    /// The op may write.
    pub const WRITE: u32 = 0x0020;
    /// Reject out-of-order snap contexts.
    pub const ORDERSNAP: u32 = 0x0040;
    /// A PG op, no object.
    pub const PGOP: u32 = 0x0400;
    /// The op may execute a class method.
    pub const EXEC: u32 = 0x0800;
    /// Ignore the pool's cache tier.
    pub const IGNORE_CACHE: u32 = 0x8000;
    /// Ignore a pool overlay.
    pub const IGNORE_OVERLAY: u32 = 0x20000;
    /// The client understands redirect replies (Objecter always sets it).
    pub const KNOWN_REDIR: u32 = 0x400000;
    /// Try the op even if the cluster is full.
    pub const FULL_TRY: u32 = 0x800000;
    /// Force the op even if the cluster is full.
    pub const FULL_FORCE: u32 = 0x1000000;
    /// Per-op return values and data even on success.
    pub const RETURNVEC: u32 = 0x4000000;
}

/// `CEPH_OSD_OP_FLAG_*`: per-op flags in `ceph_osd_op::flags`.
pub mod op_flags {
    /// Exclusive create.
    pub const EXCL: u32 = 0x1;
    /// Continue with later ops if this one fails.
    pub const FAILOK: u32 = 0x2;
    /// fadvise: random access.
    pub const FADVISE_RANDOM: u32 = 0x4;
    /// fadvise: sequential access.
    pub const FADVISE_SEQUENTIAL: u32 = 0x8;
    /// fadvise: will need soon.
    pub const FADVISE_WILLNEED: u32 = 0x10;
    /// fadvise: will not need soon.
    pub const FADVISE_DONTNEED: u32 = 0x20;
    /// fadvise: accessed once.
    pub const FADVISE_NOCACHE: u32 = 0x40;
}

/// `CEPH_OSD_OP_*`: what one op in an `MOSDOp` does. Mode bits 0xf000 (read 0x1000,
/// write 0x2000), type bits 0x0f00 (data 0x0200, attr 0x0300, exec 0x0400).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct OsdOpCode(pub u16);

impl OsdOpCode {
    /// Read an extent.
    pub const READ: Self = Self(0x1201);
    /// Size and mtime of the object (outdata: `u64 size`, `utime_t mtime`).
    pub const STAT: Self = Self(0x1202);
    /// Read an extent, returning a map of the allocated parts.
    pub const SPARSE_READ: Self = Self(0x1205);
    /// Write an extent.
    pub const WRITE: Self = Self(0x2201);
    /// Replace the whole object.
    pub const WRITEFULL: Self = Self(0x2202);
    /// Truncate to `extent.offset`.
    pub const TRUNCATE: Self = Self(0x2203);
    /// Zero an extent.
    pub const ZERO: Self = Self(0x2204);
    /// Delete the object.
    pub const DELETE: Self = Self(0x2205);
    /// Append data.
    pub const APPEND: Self = Self(0x2206);
    /// Create the object (exclusive with [`op_flags::EXCL`]).
    pub const CREATE: Self = Self(0x220d);
    /// Read an extended attribute.
    pub const GETXATTR: Self = Self(0x1301);
    /// Set an extended attribute.
    pub const SETXATTR: Self = Self(0x2301);
    /// Call an object class method.
    pub const CALL: Self = Self(0x1401);

    /// Ceph's name for the op ("read", "writefull", ...), for the ones listed here.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::READ => "read",
            Self::STAT => "stat",
            Self::SPARSE_READ => "sparse-read",
            Self::WRITE => "write",
            Self::WRITEFULL => "writefull",
            Self::TRUNCATE => "truncate",
            Self::ZERO => "zero",
            Self::DELETE => "delete",
            Self::APPEND => "append",
            Self::CREATE => "create",
            Self::GETXATTR => "getxattr",
            Self::SETXATTR => "setxattr",
            Self::CALL => "call",
            _ => return None,
        })
    }

    /// Whether the op may modify the object (write mode bit).
    pub fn is_write(self) -> bool {
        self.0 & 0x2000 != 0
    }
}

impl fmt::Display for OsdOpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "op{:#06x}", self.0),
        }
    }
}

/// `pg_t`: a placement group, pool plus seed (the folded object hash).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct PgId {
    /// Pool id.
    pub pool: u64,
    /// Placement seed (`ps`).
    pub seed: u32,
}

impl fmt::Display for PgId {
    /// Ceph's form, `1.1f` (seed in hex).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:x}", self.pool, self.seed)
    }
}

impl Encode for PgId {
    fn encode(&self, w: &mut Writer) {
        w.u8(1);
        w.u64(self.pool);
        w.u32(self.seed);
        w.i32(-1); // was "preferred"
    }
}

impl Decode for PgId {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let _v = r.u8()?;
        let pool = r.u64()?;
        let seed = r.u32()?;
        r.skip(4)?; // was "preferred"
        Ok(Self { pool, seed })
    }
}

/// `spg_t`: a placement group plus the erasure-code shard (`NO_SHARD` = -1 for replicated
/// pools).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct SpgId {
    /// The placement group.
    pub pgid: PgId,
    /// The shard, or [`SpgId::NO_SHARD`].
    pub shard: i8,
}

impl SpgId {
    /// `shard_id_t::NO_SHARD`.
    pub const NO_SHARD: i8 = -1;

    /// A replicated pool's placement group.
    pub const fn new(pgid: PgId) -> Self {
        Self {
            pgid,
            shard: Self::NO_SHARD,
        }
    }
}

impl Default for SpgId {
    fn default() -> Self {
        Self::new(PgId::default())
    }
}

impl Encode for SpgId {
    fn encode(&self, w: &mut Writer) {
        let m = w.struct_start(1, 1);
        w.put(&self.pgid);
        w.u8(self.shard.to_le_bytes()[0]);
        w.struct_finish(m);
    }
}

impl Decode for SpgId {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let h = r.struct_start("spg_t", 1)?;
        let pgid = r.decode()?;
        let shard = i8::from_le_bytes([r.u8()?]);
        r.struct_end(h);
        Ok(Self { pgid, shard })
    }
}

/// `osd_reqid_t`: who sent a request (name, incarnation) and its tid.
///
/// Objecter leaves `name` and `tid` zero (the OSD fills them from the message source and
/// header tid) and puts `client_inc` in `inc`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ReqId {
    /// The requester; `entity_name_t()` (type 0, num 0) when left to the OSD.
    pub name: EntityName,
    /// The request's tid; 0 when left to the OSD.
    pub tid: u64,
    /// The client's incarnation.
    pub inc: i32,
}

impl Default for ReqId {
    fn default() -> Self {
        Self {
            name: EntityName::new(EntityType(0), 0),
            tid: 0,
            inc: 0,
        }
    }
}

impl Encode for ReqId {
    fn encode(&self, w: &mut Writer) {
        let m = w.struct_start(2, 2);
        w.u8(self.name.ty.0);
        w.i64(self.name.num);
        w.u64(self.tid);
        w.i32(self.inc);
        w.struct_finish(m);
    }
}

impl Decode for ReqId {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let h = r.struct_start("osd_reqid_t", 2)?;
        let name = EntityName::new(EntityType(r.u8()?), r.i64()?);
        let v = Self {
            name,
            tid: r.u64()?,
            inc: r.i32()?,
        };
        r.struct_end(h);
        Ok(v)
    }
}

/// `object_locator_t`: where an object lives beyond its name (pool, locator key,
/// namespace, or an explicit hash).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct ObjectLocator {
    /// Pool id (-1: none).
    pub pool: i64,
    /// Locator key; when set, it is hashed instead of the object name.
    pub key: String,
    /// Namespace.
    pub nspace: String,
    /// Explicit hash position, or -1. Ceph forbids a hash together with a key.
    pub hash: i64,
}

impl ObjectLocator {
    /// An object in `pool`, default namespace, no key or hash.
    pub fn new(pool: i64) -> Self {
        Self {
            pool,
            key: String::new(),
            nspace: String::new(),
            hash: -1,
        }
    }
}

impl Default for ObjectLocator {
    fn default() -> Self {
        Self::new(-1)
    }
}

impl Encode for ObjectLocator {
    fn encode(&self, w: &mut Writer) {
        // Old decoders may read it unless a hash is set (ENCODE_FINISH_NEW_COMPAT).
        let m = w.struct_start(6, if self.hash == -1 { 3 } else { 6 });
        w.i64(self.pool);
        w.i32(-1); // preferred osd: none
        w.string(&self.key);
        w.string(&self.nspace);
        w.i64(self.hash);
        w.struct_finish(m);
    }
}

impl Decode for ObjectLocator {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        // DECODE_START_LEGACY_COMPAT_LEN(6, 3, 3): versions 1 and 2 have no compat byte
        // and no length.
        let v = r.peek_u8()?;
        if v < 3 {
            r.u8()?;
            let pool = if v < 2 {
                let p = i64::from(r.i32()?);
                r.i16()?;
                p
            } else {
                let p = r.i64()?;
                r.i32()?;
                p
            };
            return Ok(Self {
                pool,
                key: r.string()?,
                nspace: String::new(),
                hash: -1,
            });
        }
        let h = r.struct_start("object_locator_t", 6)?;
        let pool = r.i64()?;
        let _preferred = r.i32()?;
        let key = r.string()?;
        let nspace = if h.version >= 5 {
            r.string()?
        } else {
            String::new()
        };
        let hash = if h.version >= 6 { r.i64()? } else { -1 };
        r.struct_end(h);
        Ok(Self {
            pool,
            key,
            nspace,
            hash,
        })
    }
}

/// `eversion_t`: `(epoch, version)` of a PG log entry; 12 bytes, version first.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct EVersion {
    /// The OSD map epoch.
    pub epoch: u32,
    /// The version within the PG.
    pub version: u64,
}

impl Encode for EVersion {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.version);
        w.u32(self.epoch);
    }
}

impl Decode for EVersion {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let version = r.u64()?;
        Ok(Self {
            epoch: r.u32()?,
            version,
        })
    }
}

/// `blkin_trace_info`: tracing ids; all zero when the sender does not trace.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct TraceInfo {
    /// Trace id.
    pub trace_id: i64,
    /// Span id.
    pub span_id: i64,
    /// Parent span id.
    pub parent_span_id: i64,
}

impl Encode for TraceInfo {
    fn encode(&self, w: &mut Writer) {
        w.i64(self.trace_id);
        w.i64(self.span_id);
        w.i64(self.parent_span_id);
    }
}

impl Decode for TraceInfo {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            trace_id: r.i64()?,
            span_id: r.i64()?,
            parent_span_id: r.i64()?,
        })
    }
}

/// `request_redirect_t`: "send this op there instead" in an `MOSDOpReply`.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct RequestRedirect {
    /// Where to send it.
    pub locator: ObjectLocator,
    /// The object name to use there (empty: same name).
    pub object: String,
}

impl Encode for RequestRedirect {
    fn encode(&self, w: &mut Writer) {
        let m = w.struct_start(1, 1);
        w.put(&self.locator);
        w.string(&self.object);
        w.u32(0); // legacy osd_instructions: empty
        w.struct_finish(m);
    }
}

impl Decode for RequestRedirect {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let h = r.struct_start("request_redirect_t", 1)?;
        let locator = r.decode()?;
        let object = r.string()?;
        let legacy_len = r.u32()?;
        r.skip(
            usize::try_from(legacy_len).map_err(|_| DecodeError::Truncated {
                what: "request_redirect_t",
            })?,
        )?;
        r.struct_end(h);
        Ok(Self { locator, object })
    }
}

/// The `extent` arm of `ceph_osd_op`'s union (read, write, zero, truncate...).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Extent {
    /// Byte offset in the object.
    pub offset: u64,
    /// Length in bytes.
    pub length: u64,
    /// Truncation size for the snap-consistent truncate protocol (0: none).
    pub truncate_size: u64,
    /// Truncation sequence (0: none).
    pub truncate_seq: u32,
}

/// Size of `ceph_osd_op` on the wire.
pub const OSD_OP_LEN: usize = 38;
/// Size of the argument union inside `ceph_osd_op`.
pub const OSD_OP_ARGS_LEN: usize = 28;

/// One op of an `MOSDOp` / `MOSDOpReply`: the raw `ceph_osd_op` plus its data.
///
/// `payload_len` is not stored: it is `data.len()` on encode, and on decode it says how many
/// bytes of the message's data segment belong to this op.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct OsdOp {
    /// What to do.
    pub op: OsdOpCode,
    /// [`op_flags`].
    pub flags: u32,
    /// The 28-byte argument union, raw; [`OsdOp::extent`] reads the extent arm.
    pub args: [u8; OSD_OP_ARGS_LEN],
    /// Input data in a request (`indata`), output data in a reply (`outdata`).
    pub data: Bytes,
    /// Per-op result in a reply (`rval`); not sent in requests.
    pub rval: i32,
}

impl OsdOp {
    /// An op with zeroed arguments and no data.
    pub fn new(op: OsdOpCode) -> Self {
        Self {
            op,
            ..Self::default()
        }
    }

    /// An op whose arguments are an extent (`add_data` in Objecter).
    pub fn with_extent(op: OsdOpCode, offset: u64, length: u64, data: Bytes) -> Self {
        let mut o = Self {
            op,
            data,
            ..Self::default()
        };
        o.set_extent(Extent {
            offset,
            length,
            truncate_size: 0,
            truncate_seq: 0,
        });
        o
    }

    /// The arguments read as an extent.
    pub fn extent(&self) -> Extent {
        let a = &self.args;
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&a[i..i + 8]);
            u64::from_le_bytes(b)
        };
        Extent {
            offset: u64_at(0),
            length: u64_at(8),
            truncate_size: u64_at(16),
            truncate_seq: u32::from_le_bytes([a[24], a[25], a[26], a[27]]),
        }
    }

    /// Writes `e` into the arguments.
    pub fn set_extent(&mut self, e: Extent) {
        self.args[0..8].copy_from_slice(&e.offset.to_le_bytes());
        self.args[8..16].copy_from_slice(&e.length.to_le_bytes());
        self.args[16..24].copy_from_slice(&e.truncate_size.to_le_bytes());
        self.args[24..28].copy_from_slice(&e.truncate_seq.to_le_bytes());
    }

    /// Encodes the raw 38-byte `ceph_osd_op`, with `payload_len = data.len()`.
    pub(crate) fn encode_raw(&self, w: &mut Writer) {
        w.u16(self.op.0);
        w.u32(self.flags);
        w.raw(&self.args);
        // A message segment cannot exceed u32 either; saturating keeps the writer total.
        w.u32(u32::try_from(self.data.len()).unwrap_or(u32::MAX));
    }

    /// Decodes a raw `ceph_osd_op`; returns the op (without data) and its `payload_len`.
    pub(crate) fn decode_raw(r: &mut Reader) -> Result<(Self, u32), DecodeError> {
        let op = OsdOpCode(r.u16()?);
        let flags = r.u32()?;
        let args = r.raw::<OSD_OP_ARGS_LEN>()?;
        let payload_len = r.u32()?;
        Ok((
            Self {
                op,
                flags,
                args,
                data: Bytes::new(),
                rval: 0,
            },
            payload_len,
        ))
    }
}

/// Concatenates the ops' data in op order: the message data segment
/// (`merge_osd_op_vector_{in,out}_data`). With at most one op carrying data (the usual
/// case) this shares that op's buffer instead of copying.
pub(crate) fn merge_data(ops: &[OsdOp]) -> Bytes {
    let mut with_data = ops.iter().filter(|o| !o.data.is_empty());
    match (with_data.next(), with_data.next()) {
        (None, _) => Bytes::new(),
        (Some(only), None) => only.data.clone(),
        _ => {
            let total = ops.iter().map(|o| o.data.len()).sum();
            let mut v = Vec::with_capacity(total);
            for o in ops {
                v.extend_from_slice(&o.data);
            }
            Bytes::from(v)
        }
    }
}

/// The next `len` bytes of a data segment from `*at` on, shared (not copied).
pub(crate) fn take_data(data: &Bytes, at: &mut usize, len: u32) -> Result<Bytes, DecodeError> {
    let truncated = DecodeError::Truncated {
        what: "osd op data",
    };
    let len = usize::try_from(len).map_err(|_| truncated)?;
    let end = at
        .checked_add(len)
        .filter(|&e| e <= data.len())
        .ok_or(truncated)?;
    let b = data.slice(*at..end);
    *at = end;
    Ok(b)
}

/// The `outdata` of a `CEPH_OSD_OP_STAT`: `u64 size`, `utime_t mtime`
/// (`PrimaryLogPG::do_osd_ops`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct StatResult {
    /// Object size in bytes.
    pub size: u64,
    /// Last modification time.
    pub mtime: UTime,
}

impl StatResult {
    /// Decodes a stat op's output.
    pub fn from_bytes(b: &Bytes) -> Result<Self, DecodeError> {
        super::decode_front(b.clone(), "stat result", |r| {
            Ok(Self {
                size: r.u64()?,
                mtime: r.decode()?,
            })
        })
    }

    /// Encodes it, as an OSD does.
    pub fn to_bytes(&self) -> Bytes {
        super::encode_front(0, |w| {
            w.u64(self.size);
            w.put(&self.mtime);
        })
    }
}

/// `ceph_str_hash_rjenkins`: Bob Jenkins' lookup2 hash of `key` with initial value 0, the
/// default object-name hash of a pool (`object_hash rjenkins`).
pub fn str_hash_rjenkins(key: &[u8]) -> u32 {
    fn le32(b: &[u8]) -> u32 {
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
    fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
        *a = a.wrapping_sub(*b).wrapping_sub(*c) ^ (*c >> 13);
        *b = b.wrapping_sub(*c).wrapping_sub(*a) ^ (*a << 8);
        *c = c.wrapping_sub(*a).wrapping_sub(*b) ^ (*b >> 13);
        *a = a.wrapping_sub(*b).wrapping_sub(*c) ^ (*c >> 12);
        *b = b.wrapping_sub(*c).wrapping_sub(*a) ^ (*a << 16);
        *c = c.wrapping_sub(*a).wrapping_sub(*b) ^ (*b >> 5);
        *a = a.wrapping_sub(*b).wrapping_sub(*c) ^ (*c >> 3);
        *b = b.wrapping_sub(*c).wrapping_sub(*a) ^ (*a << 10);
        *c = c.wrapping_sub(*a).wrapping_sub(*b) ^ (*b >> 15);
    }
    let (mut a, mut b, mut c) = (0x9e37_79b9u32, 0x9e37_79b9u32, 0u32);
    let mut chunks = key.chunks_exact(12);
    for k in &mut chunks {
        a = a.wrapping_add(le32(&k[0..4]));
        b = b.wrapping_add(le32(&k[4..8]));
        c = c.wrapping_add(le32(&k[8..12]));
        mix(&mut a, &mut b, &mut c);
    }
    // Ceph passes the length as `unsigned`; keys are object names (a few KiB at most).
    c = c.wrapping_add(u32::try_from(key.len()).unwrap_or(u32::MAX));
    let mut tail = [0u8; 12];
    let rest = chunks.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    a = a.wrapping_add(le32(&tail[0..4]));
    b = b.wrapping_add(le32(&tail[4..8]));
    // The low byte of c holds the length, so the last tail bytes go one byte up.
    c = c.wrapping_add(le32(&tail[8..12]) << 8);
    mix(&mut a, &mut b, &mut c);
    c
}

/// `pg_pool_t::hash_key` for an rjenkins pool: the raw placement seed of object `name`
/// (or of its locator key) in namespace `nspace`.
pub fn object_hash(nspace: &str, name: &str) -> u32 {
    if nspace.is_empty() {
        return str_hash_rjenkins(name.as_bytes());
    }
    let mut buf = Vec::with_capacity(nspace.len() + 1 + name.len());
    buf.extend_from_slice(nspace.as_bytes());
    buf.push(0x1f);
    buf.extend_from_slice(name.as_bytes());
    str_hash_rjenkins(&buf)
}

/// `ceph_stable_mod(x, pg_num, pg_num_mask)`: folds a raw seed onto a pool's `pg_num`
/// placement groups so that splitting a PG moves only half of its objects.
pub fn stable_mod(x: u32, pg_num: u32) -> u32 {
    // pg_pool_t::calc_pg_masks: the smallest all-ones mask covering pg_num - 1.
    let bits = 32 - pg_num.saturating_sub(1).leading_zeros();
    let mask = u32::try_from((1u64 << bits) - 1).unwrap_or(u32::MAX);
    if x & mask < pg_num {
        x & mask
    } else {
        x & (mask >> 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rjenkins_matches_osdmaptool() {
        // `osdmaptool --test-map-object NAME --pool 1` (Ceph 16.2.15) on pools with
        // pg_num 48 and 2^24 (low 24 bits of the hash); the full 0x7fc1f406 for "foo" is
        // the well-known `ceph osd map rbd foo` answer.
        let cases: &[(&str, u32, u32)] = &[
            ("foo", 0x7fc1_f406, 0x06),
            ("test-object-1", 0x74dc_35e2, 0x22),
            ("abcdefghijkl", 0x0b1b_3ea5, 0x25), // exactly one 12-byte block
            ("abcdefghijklm", 0x3122_b031, 0x11),
            ("object-name", 0xbeba_f5d8, 0x18),
            ("a", 0x29ee_c818, 0x18),
        ];
        for &(name, hash, pg48) in cases {
            let h = object_hash("", name);
            assert_eq!(h, hash, "{name}");
            assert_eq!(h & 0x00ff_ffff, hash & 0x00ff_ffff);
            assert_eq!(stable_mod(h, 48), pg48, "{name}");
        }
    }

    #[test]
    fn stable_mod_edges() {
        assert_eq!(stable_mod(0xffff_ffff, 1), 0);
        assert_eq!(stable_mod(5, 8), 5);
        assert_eq!(stable_mod(13, 12), 5); // 13 & 15 = 13 >= 12, so 13 & 7
        assert_eq!(stable_mod(7, 0), 0);
        assert_eq!(stable_mod(0xdead_beef, 1 << 31), 0xdead_beef & 0x7fff_ffff);
    }

    #[test]
    fn namespaced_hash_uses_unit_separator() {
        assert_eq!(object_hash("ns", "obj"), str_hash_rjenkins(b"ns\x1fobj"));
    }

    fn round<T: Encode + Decode + PartialEq + fmt::Debug>(v: &T) -> Bytes {
        let mut w = Writer::new(0);
        w.put(v);
        let b = w.finish();
        let mut r = Reader::new(b.clone());
        assert_eq!(&r.decode::<T>().unwrap(), v);
        r.finish("round").unwrap();
        b
    }

    #[test]
    fn small_types_have_cephs_bytes() {
        let b = round(&SpgId::new(PgId {
            pool: 1,
            seed: 0x22,
        }));
        assert_eq!(
            &b[..],
            &[
                1, 1, 18, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0x22, 0, 0, 0, 0xff, 0xff, 0xff,
                0xff, 0xff
            ]
        );
        let b = round(&ReqId {
            inc: 3,
            ..ReqId::default()
        });
        assert_eq!(&b[..6], &[2, 2, 21, 0, 0, 0]);
        assert_eq!(b.len(), 27);
        assert_eq!(&b[23..], &[3, 0, 0, 0]);
        let b = round(&ObjectLocator::new(1));
        assert_eq!(&b[..6], &[6, 3, 28, 0, 0, 0]);
        assert_eq!(&b[6..14], &1i64.to_le_bytes());
        assert_eq!(&b[14..18], &[0xff; 4]);
        let hashed = ObjectLocator {
            hash: 7,
            ..ObjectLocator::new(2)
        };
        assert_eq!(&round(&hashed)[..2], &[6, 6]);
        assert_eq!(
            &round(&EVersion {
                epoch: 2,
                version: 1
            })[..],
            &[1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0]
        );
        assert_eq!(round(&TraceInfo::default()).len(), 24);
        let redirect = RequestRedirect {
            locator: ObjectLocator::new(5),
            object: "o".into(),
        };
        round(&redirect);
    }

    #[test]
    fn legacy_object_locators_decode() {
        // v2: u8 2, s64 pool, s32 preferred, string key.
        let mut v = vec![2u8];
        v.extend_from_slice(&9i64.to_le_bytes());
        v.extend_from_slice(&[0xff; 4]);
        v.extend_from_slice(b"\x01\x00\x00\x00k");
        let l = Reader::new(Bytes::from(v))
            .decode::<ObjectLocator>()
            .unwrap();
        assert_eq!((l.pool, l.key.as_str(), l.hash), (9, "k", -1));
        // v1: u8 1, s32 pool, s16 preferred, string key.
        let v = b"\x01\x04\x00\x00\x00\xff\xff\x00\x00\x00\x00".to_vec();
        let l = Reader::new(Bytes::from(v))
            .decode::<ObjectLocator>()
            .unwrap();
        assert_eq!(l.pool, 4);
    }

    #[test]
    fn osd_op_raw_layout() {
        let op = OsdOp::with_extent(OsdOpCode::WRITE, 0x10, 3, Bytes::from_static(b"abc"));
        let mut w = Writer::new(0);
        op.encode_raw(&mut w);
        let b = w.finish();
        assert_eq!(b.len(), OSD_OP_LEN);
        assert_eq!(&b[0..2], &[0x01, 0x22]);
        assert_eq!(&b[2..6], &[0; 4]);
        assert_eq!(&b[6..14], &0x10u64.to_le_bytes());
        assert_eq!(&b[14..22], &3u64.to_le_bytes());
        assert_eq!(&b[22..34], &[0; 12]);
        assert_eq!(&b[34..38], &[3, 0, 0, 0]);
        let (back, len) = OsdOp::decode_raw(&mut Reader::new(b)).unwrap();
        assert_eq!(
            (back.op, back.extent(), len),
            (OsdOpCode::WRITE, op.extent(), 3)
        );
        assert_eq!(OsdOpCode::CREATE.to_string(), "create");
        assert_eq!(OsdOpCode(0x1234).to_string(), "op0x1234");
        assert!(OsdOpCode::DELETE.is_write() && !OsdOpCode::STAT.is_write());
    }

    #[test]
    fn data_merge_shares_single_buffers_and_split_checks_lengths() {
        let a = Bytes::from(vec![1u8; 10]);
        let ops = vec![
            OsdOp::new(OsdOpCode::STAT),
            OsdOp::with_extent(OsdOpCode::WRITE, 0, 10, a.clone()),
        ];
        assert_eq!(merge_data(&ops).as_ptr(), a.as_ptr());
        let two = vec![
            OsdOp::with_extent(OsdOpCode::WRITE, 0, 2, Bytes::from_static(b"ab")),
            OsdOp::with_extent(OsdOpCode::WRITE, 2, 1, Bytes::from_static(b"c")),
        ];
        let merged = merge_data(&two);
        assert_eq!(&merged[..], b"abc");
        let mut at = 0;
        let first = take_data(&merged, &mut at, 2).unwrap();
        let second = take_data(&merged, &mut at, 1).unwrap();
        assert_eq!((&first[..], &second[..]), (&b"ab"[..], &b"c"[..]));
        assert_eq!(first.as_ptr(), merged.as_ptr(), "shared, not copied");
        let truncated = Err(DecodeError::Truncated {
            what: "osd op data",
        });
        assert_eq!(take_data(&merged, &mut 2, 2), truncated);
        assert_eq!(take_data(&merged, &mut 1, u32::MAX), truncated);
        let mut end = usize::MAX;
        assert_eq!(take_data(&merged, &mut end, 1), truncated);
    }

    #[test]
    fn stat_result_bytes() {
        let s = StatResult {
            size: 4096,
            mtime: UTime::new(1, 2),
        };
        let b = s.to_bytes();
        assert_eq!(b.len(), 16);
        assert_eq!(StatResult::from_bytes(&b).unwrap(), s);
        assert!(StatResult::from_bytes(&b.slice(..15)).is_err());
    }
}
