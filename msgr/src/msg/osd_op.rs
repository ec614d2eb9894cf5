//! `MOSDOp` (`CEPH_MSG_OSD_OP`, type 42) and `MOSDOpReply` (`CEPH_MSG_OSD_OPREPLY`,
//! type 43): object I/O between a client and the primary OSD of a placement group.
//!
//! Follows Ceph Pacific, field order verified against:
//! - `src/messages/MOSDOp.h`, `MOSDOp::encode_payload`, last branch ("latest v8 encoding",
//!   taken for peers with `RESEND_ON_SPLIT` = `SERVER_LUMINOUS`, so every Nautilus+ OSD):
//!   `spg_t pgid, u32 hash, u32 osdmap_epoch, u32 flags, osd_reqid_t reqid,
//!   blkin_trace_info trace` (the part `decode_payload` reads up front), then
//!   `u32 client_inc, utime_t mtime, object_locator_t, object_t oid (string),
//!   u16 num_ops, ceph_osd_op[num_ops], u64 snapid, u64 snap_seq, vector<u64> snaps,
//!   s32 retry_attempt, u64 features` (what `finish_decode` reads). `decode_payload`'s
//!   `header.version == 7` branch (`pg_t` raw pgid, epoch, flags, `eversion_t`
//!   reassert_version, reqid, then the same tail) is decoded too. HEAD_VERSION 8,
//!   COMPAT_VERSION 3.
//! - `src/messages/MOSDOpReply.h`, `MOSDOpReply::encode_payload` (the `PGID64` branch with
//!   `NEW_OSDOPREPLY_ENCODING`) and `decode_payload` (`header.version == HEAD_VERSION`):
//!   `object_t oid, pg_t pgid, s64 flags, errorcode32_t result, eversion_t
//!   bad_replay_version, u32 osdmap_epoch, u32 num_ops, ceph_osd_op[num_ops],
//!   s32 retry_attempt, s32 rval[num_ops], eversion_t replay_version, u64 user_version,
//!   bool do_redirect, [request_redirect_t], blkin_trace_info`. HEAD_VERSION 8,
//!   COMPAT_VERSION 2.
//! - `OSDOp::merge_osd_op_vector_in_data` / `_out_data` (`src/osd/osd_types.{h,cc}`): each
//!   op's input (request) or output (reply) data is concatenated, in op order, into the
//!   message's data segment, and `payload_len` says how much is each op's.
//! - `src/osdc/Objecter.cc`, `Objecter::_prepare_osd_op` and `op_target_t::get_hobj`
//!   (`Objecter.h`), for what a librados client puts in each field: flags gain `ONDISK` and
//!   `KNOWN_REDIR`; `hash` is the raw object hash; `pgid` is that hash folded onto the
//!   pool's `pg_num`; `reqid` is zero except `inc = client_inc`; header priority is
//!   `osd_client_op_priority` (63).
//!
//! Only the v8 encodings are produced: they need a peer with `SERVER_LUMINOUS` (MOSDOp)
//! and `PGID64` + `NEW_OSDOPREPLY_ENCODING` (MOSDOpReply), which every OSD since Luminous
//! has. The header `tid` is part of these structs because it is the op's identity
//! (`MOSDOp::get_client_tid`, echoed by the reply); `to_message` puts it in the header.

use bytes::Bytes;

use super::osd_types::{
    flags, merge_data, object_hash, stable_mod, take_data, EVersion, ObjectLocator, OsdOp,
    OsdOpCode, PgId, ReqId, RequestRedirect, SpgId, TraceInfo, NOSNAP, OSD_OP_LEN,
};
use super::types::UTime;
use super::{decode_front, encode_front, Message, MessageHeader, MsgType, Payload, TypedMessage};
use crate::denc::Reader;
use crate::error::DecodeError;
use crate::features;

/// `osd_client_op_priority`'s default: the header priority Objecter gives client ops.
pub const OSD_CLIENT_OP_PRIORITY: u16 = 63;

/// Decodes the `num` raw ops that follow and hands each its `payload_len` bytes of `data`
/// in order, without copying (Ceph's decode plus `split_osd_op_vector_*_data`).
fn decode_ops(r: &mut Reader, num: usize, data: &Bytes) -> Result<Vec<OsdOp>, DecodeError> {
    if num.saturating_mul(OSD_OP_LEN) > r.remaining() {
        return Err(DecodeError::Truncated {
            what: "ceph_osd_op",
        });
    }
    let mut ops = Vec::with_capacity(num);
    let mut at = 0;
    for _ in 0..num {
        let (mut op, len) = OsdOp::decode_raw(r)?;
        op.data = take_data(data, &mut at, len)?;
        ops.push(op);
    }
    Ok(ops)
}

/// `MOSDOp`: a client's request to run `ops` on one object.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MOSDOp {
    /// The header tid: the client's id for this op, echoed by the reply.
    pub tid: u64,
    /// The placement group the client believes holds the object (already folded onto the
    /// pool's `pg_num`; see [`MOSDOp::with_pg_num`]).
    pub pgid: SpgId,
    /// The object's raw hash (`hobject_t::get_hash`).
    pub hash: u32,
    /// The client's OSD map epoch.
    pub osdmap_epoch: u32,
    /// [`flags`] bits.
    pub flags: u32,
    /// Request id; Objecter leaves all but `inc` zero.
    pub reqid: ReqId,
    /// Tracing ids (zero: not traced).
    pub trace: TraceInfo,
    /// The client's incarnation.
    pub client_inc: u32,
    /// Modification time to record (writes).
    pub mtime: UTime,
    /// Pool, namespace and locator key.
    pub locator: ObjectLocator,
    /// The object name.
    pub oid: String,
    /// The ops, run in order; their `data` is the input.
    pub ops: Vec<OsdOp>,
    /// Snapshot to read ([`NOSNAP`]: the head).
    pub snapid: u64,
    /// The writer's snap context sequence.
    pub snap_seq: u64,
    /// The writer's snap context snapshots.
    pub snaps: Vec<u64>,
    /// Resend count (0 on the first attempt, -1 if unknown).
    pub retry_attempt: i32,
    /// The client's feature bits, as Objecter records them in the op.
    pub features: u64,
}

impl MOSDOp {
    /// A request for `ops` on object `oid` in `pool`, shaped as librados sends it: head
    /// snapshot, first attempt, Pacific features, flags `ONDISK | KNOWN_REDIR` plus `READ`
    /// and/or `WRITE` from the ops. The placement group is the raw object hash; call
    /// [`MOSDOp::with_pg_num`] with the pool's `pg_num` before sending.
    pub fn new(pool: i64, oid: impl Into<String>, ops: Vec<OsdOp>) -> Self {
        let oid = oid.into();
        let hash = object_hash("", &oid);
        let rw = ops.iter().fold(0, |f, o| {
            f | if o.op.is_write() {
                flags::WRITE
            } else {
                flags::READ
            }
        });
        Self {
            tid: 0,
            // pg_t's pool is unsigned; Ceph converts the locator's s64 the same way.
            pgid: SpgId::new(PgId {
                pool: pool as u64,
                seed: hash,
            }),
            hash,
            osdmap_epoch: 0,
            flags: rw | flags::ONDISK | flags::KNOWN_REDIR,
            reqid: ReqId::default(),
            trace: TraceInfo::default(),
            client_inc: 0,
            mtime: UTime::default(),
            locator: ObjectLocator::new(pool),
            oid,
            ops,
            snapid: NOSNAP,
            snap_seq: 0,
            snaps: Vec::new(),
            retry_attempt: 0,
            features: features::PACIFIC_ALL,
        }
    }

    /// Writes `data` at `offset` (`CEPH_OSD_OP_WRITE`). `data` is sent without copying.
    pub fn write(pool: i64, oid: impl Into<String>, offset: u64, data: Bytes) -> Self {
        let len = data.len() as u64;
        Self::new(
            pool,
            oid,
            vec![OsdOp::with_extent(OsdOpCode::WRITE, offset, len, data)],
        )
    }

    /// Replaces the object with `data` (`CEPH_OSD_OP_WRITEFULL`).
    pub fn write_full(pool: i64, oid: impl Into<String>, data: Bytes) -> Self {
        let len = data.len() as u64;
        Self::new(
            pool,
            oid,
            vec![OsdOp::with_extent(OsdOpCode::WRITEFULL, 0, len, data)],
        )
    }

    /// Reads `length` bytes at `offset` (`CEPH_OSD_OP_READ`); length 0 reads to the end.
    pub fn read(pool: i64, oid: impl Into<String>, offset: u64, length: u64) -> Self {
        Self::new(
            pool,
            oid,
            vec![OsdOp::with_extent(
                OsdOpCode::READ,
                offset,
                length,
                Bytes::new(),
            )],
        )
    }

    /// Asks for size and mtime (`CEPH_OSD_OP_STAT`; see [`super::osd_types::StatResult`]).
    pub fn stat(pool: i64, oid: impl Into<String>) -> Self {
        Self::new(pool, oid, vec![OsdOp::new(OsdOpCode::STAT)])
    }

    /// Deletes the object (`CEPH_OSD_OP_DELETE`).
    pub fn delete(pool: i64, oid: impl Into<String>) -> Self {
        Self::new(pool, oid, vec![OsdOp::new(OsdOpCode::DELETE)])
    }

    /// Creates the object; `exclusive` fails if it exists (`CEPH_OSD_OP_CREATE`).
    pub fn create(pool: i64, oid: impl Into<String>, exclusive: bool) -> Self {
        let mut op = OsdOp::new(OsdOpCode::CREATE);
        if exclusive {
            op.flags |= super::osd_types::op_flags::EXCL;
        }
        Self::new(pool, oid, vec![op])
    }

    /// Puts the object in namespace `nspace` (builder style). The hash covers the namespace,
    /// so this recomputes it and resets the PG to the raw hash: call it before
    /// [`MOSDOp::with_pg_num`].
    pub fn with_namespace(mut self, nspace: impl Into<String>) -> Self {
        self.locator.nspace = nspace.into();
        let key = if self.locator.key.is_empty() {
            &self.oid
        } else {
            &self.locator.key
        };
        self.hash = object_hash(&self.locator.nspace, key);
        self.pgid.pgid.seed = self.hash;
        self
    }

    /// Folds the object hash onto a pool of `pg_num` placement groups (`ceph_stable_mod`),
    /// giving the PG the primary OSD serves (builder style).
    pub fn with_pg_num(mut self, pg_num: u32) -> Self {
        self.pgid.pgid.seed = stable_mod(self.hash, pg_num);
        self
    }

    /// Sets the tid (builder style).
    pub fn with_tid(mut self, tid: u64) -> Self {
        self.tid = tid;
        self
    }

    /// Sets the client's OSD map epoch (builder style).
    pub fn with_epoch(mut self, epoch: u32) -> Self {
        self.osdmap_epoch = epoch;
        self
    }

    /// Sets the modification time (builder style).
    pub fn with_mtime(mut self, mtime: UTime) -> Self {
        self.mtime = mtime;
        self
    }

    /// The message data segment: the ops' input data in op order (shared, not copied, when
    /// only one op has data).
    pub fn data(&self) -> Bytes {
        merge_data(&self.ops)
    }

    /// The fields after `reqid`/`trace` (v8) or `reqid` (v7): Ceph's `finish_decode`.
    fn decode_tail(&mut self, r: &mut Reader, data: &Bytes) -> Result<(), DecodeError> {
        self.client_inc = r.u32()?;
        self.mtime = r.decode()?;
        self.locator = r.decode()?;
        self.oid = r.string()?;
        let num = usize::from(r.u16()?);
        self.ops = decode_ops(r, num, data)?;
        self.snapid = r.u64()?;
        self.snap_seq = r.u64()?;
        self.snaps = r.vec()?;
        self.retry_attempt = r.i32()?;
        self.features = r.u64()?;
        Ok(())
    }
}

impl TypedMessage for MOSDOp {
    const TYPE: MsgType = MsgType::OSD_OP;
    const HEAD_VERSION: u16 = 8;
    const COMPAT_VERSION: u16 = 3;

    fn encode_payload(&self, features: u64) -> Payload {
        let front = encode_front(features, |w| {
            w.put(&self.pgid);
            w.u32(self.hash);
            w.u32(self.osdmap_epoch);
            w.u32(self.flags);
            w.put(&self.reqid);
            w.put(&self.trace);
            w.u32(self.client_inc);
            w.put(&self.mtime);
            w.put(&self.locator);
            w.string(&self.oid);
            // Ceph's count is a u16; more ops than that is a caller bug, so saturate.
            let num = u16::try_from(self.ops.len()).unwrap_or(u16::MAX);
            w.u16(num);
            for op in self.ops.iter().take(usize::from(num)) {
                op.encode_raw(w);
            }
            w.u64(self.snapid);
            w.u64(self.snap_seq);
            w.put(&self.snaps);
            w.i32(self.retry_attempt);
            w.u64(self.features);
        });
        Payload {
            front,
            middle: Bytes::new(),
            data: self.data(),
        }
    }

    fn decode_payload(header: &MessageHeader, payload: Payload) -> Result<Self, DecodeError> {
        decode_front(payload.front, "MOSDOp", |r| {
            // Every field is overwritten below or keeps its Ceph default; `new` is not used
            // because it hashes the (empty) object name.
            let mut m = Self {
                tid: header.tid,
                pgid: SpgId::new(PgId { pool: 0, seed: 0 }),
                hash: 0,
                osdmap_epoch: 0,
                flags: 0,
                reqid: ReqId::default(),
                trace: TraceInfo::default(),
                client_inc: 0,
                mtime: UTime::default(),
                locator: ObjectLocator::new(0),
                oid: String::new(),
                ops: Vec::new(),
                snapid: NOSNAP,
                snap_seq: 0,
                snaps: Vec::new(),
                retry_attempt: 0,
                features: 0,
            };
            match header.version {
                8 => {
                    m.pgid = r.decode()?;
                    m.hash = r.u32()?;
                    m.osdmap_epoch = r.u32()?;
                    m.flags = r.u32()?;
                    m.reqid = r.decode()?;
                    m.trace = r.decode()?;
                }
                7 => {
                    let raw: PgId = r.decode()?;
                    m.pgid = SpgId::new(raw);
                    m.hash = raw.seed;
                    m.osdmap_epoch = r.u32()?;
                    m.flags = r.u32()?;
                    let _reassert_version: EVersion = r.decode()?;
                    m.reqid = r.decode()?;
                }
                _ => {
                    return Err(DecodeError::Invalid {
                        what: "MOSDOp encoding version (7 and 8 are supported)",
                    })
                }
            }
            m.decode_tail(r, &payload.data)?;
            Ok(m)
        })
    }

    /// Also sets the header tid and Objecter's priority for client ops.
    fn to_message(&self, features: u64) -> Message {
        let p = self.encode_payload(features);
        let header = MessageHeader::new(Self::TYPE, Self::HEAD_VERSION, Self::COMPAT_VERSION);
        Message::new(header, p.front, p.middle, p.data)
            .with_tid(self.tid)
            .with_priority(OSD_CLIENT_OP_PRIORITY)
    }
}

/// `MOSDOpReply`: the primary OSD's answer to an [`MOSDOp`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MOSDOpReply {
    /// The request's tid (header).
    pub tid: u64,
    /// The object name.
    pub oid: String,
    /// The request's placement group.
    pub pgid: PgId,
    /// The request's flags with the ack kind (`ACK`/`ONDISK`) replaced.
    pub flags: i64,
    /// Overall result: 0 or a negative errno.
    pub result: i32,
    /// What pre-Firefly clients read as the version.
    pub bad_replay_version: EVersion,
    /// The OSD's map epoch.
    pub osdmap_epoch: u32,
    /// The ops, with per-op `rval` and output `data`.
    pub ops: Vec<OsdOp>,
    /// The request's attempt number.
    pub retry_attempt: i32,
    /// The PG version of the write.
    pub replay_version: EVersion,
    /// The object's user-visible version.
    pub user_version: u64,
    /// Where to resend instead, if the OSD redirects.
    pub redirect: Option<RequestRedirect>,
    /// Tracing ids.
    pub trace: TraceInfo,
}

impl MOSDOpReply {
    /// A successful-by-default reply to `req` (Ceph's `MOSDOpReply(req, r, epoch, acktype)`
    /// with acktype `ACK | ONDISK`, as `PrimaryLogPG` sends): same tid, object, PG, ops
    /// (input data dropped; set each op's `data` and `rval` for the output).
    pub fn reply_to(req: &MOSDOp, result: i32, osdmap_epoch: u32) -> Self {
        let ack = flags::ACK | flags::ONDISK;
        let kept = req.flags & !(flags::ONDISK | flags::ONNVRAM | flags::ACK);
        let ops = req
            .ops
            .iter()
            .map(|o| OsdOp {
                data: Bytes::new(),
                rval: 0,
                ..o.clone()
            })
            .collect();
        Self {
            tid: req.tid,
            oid: req.oid.clone(),
            pgid: req.pgid.pgid,
            flags: i64::from(kept | ack),
            result,
            bad_replay_version: EVersion::default(),
            osdmap_epoch,
            ops,
            retry_attempt: req.retry_attempt,
            replay_version: EVersion::default(),
            user_version: 0,
            redirect: None,
            trace: TraceInfo::default(),
        }
    }

    /// The message data segment: the ops' output data in op order.
    pub fn data(&self) -> Bytes {
        merge_data(&self.ops)
    }
}

impl TypedMessage for MOSDOpReply {
    const TYPE: MsgType = MsgType::OSD_OPREPLY;
    const HEAD_VERSION: u16 = 8;
    const COMPAT_VERSION: u16 = 2;

    fn encode_payload(&self, features: u64) -> Payload {
        let front = encode_front(features, |w| {
            w.string(&self.oid);
            w.put(&self.pgid);
            w.i64(self.flags);
            w.i32(self.result);
            w.put(&self.bad_replay_version);
            w.u32(self.osdmap_epoch);
            let num = u32::try_from(self.ops.len()).unwrap_or(u32::MAX);
            w.u32(num);
            for op in &self.ops {
                op.encode_raw(w);
            }
            w.i32(self.retry_attempt);
            for op in &self.ops {
                w.i32(op.rval);
            }
            w.put(&self.replay_version);
            w.u64(self.user_version);
            w.bool(self.redirect.is_some());
            if let Some(r) = &self.redirect {
                w.put(r);
            }
            w.put(&self.trace);
        });
        Payload {
            front,
            middle: Bytes::new(),
            data: self.data(),
        }
    }

    fn decode_payload(header: &MessageHeader, payload: Payload) -> Result<Self, DecodeError> {
        if header.version != Self::HEAD_VERSION {
            return Err(DecodeError::Invalid {
                what: "MOSDOpReply encoding version (8 is supported)",
            });
        }
        decode_front(payload.front, "MOSDOpReply", |r| {
            let oid = r.string()?;
            let pgid = r.decode()?;
            let flags = r.i64()?;
            let result = r.i32()?;
            let bad_replay_version = r.decode()?;
            let osdmap_epoch = r.u32()?;
            // Each op is 38 bytes plus a 4-byte rval later on.
            let num = r.count(OSD_OP_LEN + 4)?;
            let mut ops = decode_ops(r, num, &payload.data)?;
            let retry_attempt = r.i32()?;
            for op in &mut ops {
                op.rval = r.i32()?;
            }
            let replay_version = r.decode()?;
            let user_version = r.u64()?;
            let redirect = if r.bool()? { Some(r.decode()?) } else { None };
            let trace = r.decode()?;
            Ok(Self {
                tid: header.tid,
                oid,
                pgid,
                flags,
                result,
                bad_replay_version,
                osdmap_epoch,
                ops,
                retry_attempt,
                replay_version,
                user_version,
                redirect,
                trace,
            })
        })
    }

    /// Also sets the header tid to the request's.
    fn to_message(&self, features: u64) -> Message {
        let p = self.encode_payload(features);
        let header = MessageHeader::new(Self::TYPE, Self::HEAD_VERSION, Self::COMPAT_VERSION);
        Message::new(header, p.front, p.middle, p.data).with_tid(self.tid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::PACIFIC_ALL;
    use crate::msg::golden;
    use crate::msg::osd_types::{op_flags, Extent, StatResult};

    /// The hand-checked head of an MOSDOp v8 front, in `MOSDOp::encode_payload` order.
    #[test]
    fn write_front_layout_is_hand_checked() {
        let data = Bytes::from_static(b"hello");
        let m = MOSDOp::write(1, "foo", 0, data.clone())
            .with_pg_num(48)
            .with_tid(9)
            .with_epoch(5)
            .with_mtime(UTime::new(100, 7));
        let msg = m.to_message(PACIFIC_ALL);
        assert_eq!(
            (msg.header.ty, msg.header.version, msg.header.compat_version),
            (MsgType::OSD_OP, 8, 3)
        );
        assert_eq!(
            (msg.header.tid, msg.header.priority),
            (9, OSD_CLIENT_OP_PRIORITY)
        );
        assert_eq!(msg.data.as_ptr(), data.as_ptr(), "write data is not copied");
        let f = &msg.front[..];
        let mut want: Vec<u8> = Vec::new();
        // spg_t: ENCODE_START(1,1) len 18, pg_t {u8 1, u64 pool 1, u32 seed 6, s32 -1}, s8 shard -1
        want.extend_from_slice(&[1, 1, 18, 0, 0, 0, 1]);
        want.extend_from_slice(&1u64.to_le_bytes());
        want.extend_from_slice(&6u32.to_le_bytes()); // stable_mod(0x7fc1f406, 48)
        want.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff]);
        want.extend_from_slice(&0x7fc1_f406u32.to_le_bytes()); // raw hash of "foo"
        want.extend_from_slice(&5u32.to_le_bytes()); // osdmap_epoch
        want.extend_from_slice(&0x0040_0024u32.to_le_bytes()); // KNOWN_REDIR | WRITE | ONDISK
                                                               // osd_reqid_t: DENC_START(2,2) len 21, name {u8 0, s64 0}, u64 tid 0, s32 inc 0
        want.extend_from_slice(&[2, 2, 21, 0, 0, 0]);
        want.extend_from_slice(&[0; 21]);
        want.extend_from_slice(&[0; 24]); // blkin_trace_info
        want.extend_from_slice(&0u32.to_le_bytes()); // client_inc
        want.extend_from_slice(&[100, 0, 0, 0, 7, 0, 0, 0]); // mtime
                                                             // object_locator_t: ENCODE_START(6,3) len 28, s64 pool, s32 -1, key "", nspace "", s64 hash -1
        want.extend_from_slice(&[6, 3, 28, 0, 0, 0]);
        want.extend_from_slice(&1i64.to_le_bytes());
        want.extend_from_slice(&[0xff; 4]);
        want.extend_from_slice(&[0; 8]);
        want.extend_from_slice(&[0xff; 8]);
        want.extend_from_slice(b"\x03\x00\x00\x00foo");
        want.extend_from_slice(&1u16.to_le_bytes()); // num_ops
        want.extend_from_slice(&0x2201u16.to_le_bytes()); // ceph_osd_op: WRITE
        want.extend_from_slice(&0u32.to_le_bytes()); // op flags
        want.extend_from_slice(&0u64.to_le_bytes()); // extent.offset
        want.extend_from_slice(&5u64.to_le_bytes()); // extent.length
        want.extend_from_slice(&[0; 12]); // truncate_size, truncate_seq
        want.extend_from_slice(&5u32.to_le_bytes()); // payload_len
        want.extend_from_slice(&NOSNAP.to_le_bytes()); // snapid
        want.extend_from_slice(&0u64.to_le_bytes()); // snap_seq
        want.extend_from_slice(&0u32.to_le_bytes()); // snaps: empty
        want.extend_from_slice(&0i32.to_le_bytes()); // retry_attempt
        want.extend_from_slice(&PACIFIC_ALL.to_le_bytes()); // features
        assert_eq!(f, &want[..]);

        let back = MOSDOp::from_message(&msg).unwrap();
        assert_eq!(back, m);
        assert_eq!(
            back.ops[0].data.as_ptr(),
            data.as_ptr(),
            "decoded data is a slice of the segment"
        );
    }

    #[test]
    fn builders_round_trip() {
        let cases = [
            MOSDOp::write_full(3, "obj", Bytes::from_static(b"full")),
            MOSDOp::read(3, "obj", 4096, 8192),
            MOSDOp::read(3, "obj", 0, 0),
            MOSDOp::stat(3, "obj"),
            MOSDOp::delete(3, "obj"),
            MOSDOp::create(3, "obj", true),
        ];
        for m in cases {
            let m = m.with_pg_num(32).with_tid(77);
            let back = MOSDOp::from_message(&m.to_message(PACIFIC_ALL)).unwrap();
            assert_eq!(back, m);
        }
        let r = MOSDOp::read(3, "obj", 1, 2);
        assert_eq!(r.flags, flags::READ | flags::ONDISK | flags::KNOWN_REDIR);
        assert_eq!(r.ops[0].extent().offset, 1);
        assert_eq!(MOSDOp::create(1, "o", true).ops[0].flags, op_flags::EXCL);
    }

    #[test]
    fn multi_op_data_is_split_in_op_order() {
        let mut m = MOSDOp::new(
            2,
            "multi",
            vec![
                OsdOp::with_extent(OsdOpCode::WRITE, 0, 3, Bytes::from_static(b"abc")),
                OsdOp::new(OsdOpCode::STAT),
                OsdOp::with_extent(OsdOpCode::WRITE, 10, 2, Bytes::from_static(b"xy")),
            ],
        );
        m.snaps = vec![5, 3];
        m.snap_seq = 5;
        m.locator.nspace = "ns".into();
        m.reqid = ReqId {
            tid: 4,
            inc: 1,
            ..ReqId::default()
        };
        m.trace = TraceInfo {
            trace_id: 1,
            span_id: 2,
            parent_span_id: 3,
        };
        let msg = m.to_message(PACIFIC_ALL);
        assert_eq!(&msg.data[..], b"abcxy");
        let back = MOSDOp::from_message(&msg).unwrap();
        assert_eq!(back, m);
        assert_eq!(&back.ops[2].data[..], b"xy");
    }

    #[test]
    fn version_7_decodes() {
        // Build a v7 front by hand: pg_t raw, epoch, flags, eversion, reqid, then the tail.
        let m = MOSDOp::stat(4, "old").with_tid(3);
        let v8 = m.encode_payload(PACIFIC_ALL).front;
        // The v8 tail starts after spg_t (24) + hash (4) + epoch (4) + flags (4) + reqid (27) + trace (24).
        let tail = &v8[87..];
        let mut f = Vec::new();
        f.push(1);
        f.extend_from_slice(&4u64.to_le_bytes());
        f.extend_from_slice(&m.hash.to_le_bytes());
        f.extend_from_slice(&[0xff; 4]);
        f.extend_from_slice(&m.osdmap_epoch.to_le_bytes());
        f.extend_from_slice(&m.flags.to_le_bytes());
        f.extend_from_slice(&[0; 12]);
        f.extend_from_slice(&v8[36..63]); // reqid bytes (27)
        f.extend_from_slice(tail);
        let mut h = MessageHeader::new(MsgType::OSD_OP, 7, 3);
        h.tid = 3;
        let back = MOSDOp::decode_payload(
            &h,
            Payload {
                front: Bytes::from(f),
                ..Payload::default()
            },
        )
        .unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        let m = MOSDOp::write(1, "o", 0, Bytes::from_static(b"data")).with_pg_num(8);
        let msg = m.to_message(PACIFIC_ALL);
        let h = msg.header;
        for cut in 0..msg.front.len() {
            let p = Payload {
                front: msg.front.slice(..cut),
                data: msg.data.clone(),
                ..Payload::default()
            };
            assert!(MOSDOp::decode_payload(&h, p.clone()).is_err(), "cut {cut}");
        }
        // Data segment shorter than payload_len.
        let p = Payload {
            front: msg.front.clone(),
            data: msg.data.slice(..3),
            ..Payload::default()
        };
        assert_eq!(
            MOSDOp::decode_payload(&h, p.clone()),
            Err(DecodeError::Truncated {
                what: "osd op data"
            })
        );
        // num_ops 0xffff with a short front.
        let mut f = msg.front.to_vec();
        let at = f.len() - (38 + 8 + 8 + 4 + 4 + 8) - 2;
        f[at..at + 2].copy_from_slice(&[0xff, 0xff]);
        let p = Payload {
            front: Bytes::from(f),
            data: msg.data.clone(),
            ..Payload::default()
        };
        assert_eq!(
            MOSDOp::decode_payload(&h, p.clone()),
            Err(DecodeError::Truncated {
                what: "ceph_osd_op"
            })
        );
        // Unsupported encoding versions and newer compat.
        let mut h6 = h;
        h6.version = 6;
        assert!(matches!(
            MOSDOp::decode_payload(&h6, Payload::default()),
            Err(DecodeError::Invalid { .. })
        ));
        let mut newer = msg.clone();
        newer.header.compat_version = 9;
        assert!(matches!(
            MOSDOp::from_message(&newer),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
    }

    #[test]
    fn reply_layout_is_hand_checked() {
        let req = MOSDOp::read(1, "foo", 0, 5).with_pg_num(48).with_tid(9);
        let mut rep = MOSDOpReply::reply_to(&req, 0, 7);
        rep.ops[0].data = Bytes::from_static(b"hello");
        rep.user_version = 2;
        rep.replay_version = EVersion {
            epoch: 7,
            version: 2,
        };
        let msg = rep.to_message(PACIFIC_ALL);
        assert_eq!(
            (
                msg.header.ty,
                msg.header.version,
                msg.header.compat_version,
                msg.header.tid
            ),
            (MsgType::OSD_OPREPLY, 8, 2, 9)
        );
        assert_eq!(&msg.data[..], b"hello");
        let mut want: Vec<u8> = Vec::new();
        want.extend_from_slice(b"\x03\x00\x00\x00foo");
        want.extend_from_slice(&[1]);
        want.extend_from_slice(&1u64.to_le_bytes());
        want.extend_from_slice(&6u32.to_le_bytes());
        want.extend_from_slice(&[0xff; 4]); // pg_t
        want.extend_from_slice(
            &i64::from(flags::READ | flags::KNOWN_REDIR | flags::ACK | flags::ONDISK).to_le_bytes(),
        );
        want.extend_from_slice(&0i32.to_le_bytes()); // result
        want.extend_from_slice(&[0; 12]); // bad_replay_version
        want.extend_from_slice(&7u32.to_le_bytes()); // osdmap_epoch
        want.extend_from_slice(&1u32.to_le_bytes()); // num_ops
        want.extend_from_slice(&0x1201u16.to_le_bytes());
        want.extend_from_slice(&[0; 4]);
        want.extend_from_slice(&0u64.to_le_bytes());
        want.extend_from_slice(&5u64.to_le_bytes());
        want.extend_from_slice(&[0; 12]);
        want.extend_from_slice(&5u32.to_le_bytes()); // payload_len = outdata length
        want.extend_from_slice(&0i32.to_le_bytes()); // retry_attempt
        want.extend_from_slice(&0i32.to_le_bytes()); // rval[0]
        want.extend_from_slice(&2u64.to_le_bytes());
        want.extend_from_slice(&7u32.to_le_bytes()); // replay_version
        want.extend_from_slice(&2u64.to_le_bytes()); // user_version
        want.push(0); // do_redirect
        want.extend_from_slice(&[0; 24]); // trace
        assert_eq!(&msg.front[..], &want[..]);
        assert_eq!(MOSDOpReply::from_message(&msg).unwrap(), rep);
    }

    #[test]
    fn reply_round_trips_with_redirect_rvals_and_stat() {
        let req = MOSDOp::new(
            2,
            "o",
            vec![
                OsdOp::new(OsdOpCode::STAT),
                OsdOp::with_extent(OsdOpCode::READ, 0, 0, Bytes::new()),
            ],
        );
        let mut rep = MOSDOpReply::reply_to(&req, -2, 3);
        let stat = StatResult {
            size: 42,
            mtime: UTime::new(5, 6),
        };
        rep.ops[0].data = stat.to_bytes();
        rep.ops[1].rval = -2;
        rep.redirect = Some(RequestRedirect {
            locator: ObjectLocator::new(9),
            object: "elsewhere".into(),
        });
        let msg = rep.to_message(PACIFIC_ALL);
        let back = MOSDOpReply::from_message(&msg).unwrap();
        assert_eq!(back, rep);
        assert_eq!(StatResult::from_bytes(&back.ops[0].data).unwrap(), stat);
        assert!(back.ops[1].data.is_empty());
    }

    #[test]
    fn reply_bad_inputs_are_errors() {
        let req = MOSDOp::read(1, "o", 0, 4);
        let mut rep = MOSDOpReply::reply_to(&req, 0, 1);
        rep.ops[0].data = Bytes::from_static(b"abcd");
        let msg = rep.to_message(PACIFIC_ALL);
        for cut in 0..msg.front.len() {
            let p = Payload {
                front: msg.front.slice(..cut),
                data: msg.data.clone(),
                ..Payload::default()
            };
            assert!(
                MOSDOpReply::decode_payload(&msg.header, p.clone()).is_err(),
                "cut {cut}"
            );
        }
        let p = Payload {
            front: msg.front.clone(),
            data: Bytes::new(),
            ..Payload::default()
        };
        assert_eq!(
            MOSDOpReply::decode_payload(&msg.header, p.clone()),
            Err(DecodeError::Truncated {
                what: "osd op data"
            })
        );
        // num_ops = 0xffffffff
        let mut f = msg.front.to_vec();
        let at = 4 + 1 + 17 + 8 + 4 + 12 + 4;
        f[at..at + 4].copy_from_slice(&[0xff; 4]);
        let p = Payload {
            front: Bytes::from(f),
            data: msg.data.clone(),
            ..Payload::default()
        };
        assert_eq!(
            MOSDOpReply::decode_payload(&msg.header, p.clone()),
            Err(DecodeError::Truncated { what: "container" })
        );
        let mut old = msg.header;
        old.version = 7;
        assert!(matches!(
            MOSDOpReply::decode_payload(&old, Payload::default()),
            Err(DecodeError::Invalid { .. })
        ));
        let mut newer = msg.clone();
        newer.header.compat_version = 9;
        assert!(matches!(
            MOSDOpReply::from_message(&newer),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
    }
    /// The one MOSDOp and one MOSDOpReply of capture stream `i` (`testdata/README.md`).
    fn captured(i: usize) -> (Message, Message) {
        let req = golden::messages(&format!("v1-osd-{i}-c2s.bin"));
        let rep = golden::messages(&format!("v1-osd-{i}-s2c.bin"));
        assert_eq!((req.len(), rep.len()), (1, 1), "stream {i}");
        (req[0].clone(), rep[0].clone())
    }

    /// Our message has the captured header (but seq, src and a default priority, which the
    /// connection fills in), front and data, byte for byte.
    fn assert_same_wire(ours: &Message, real: &Message) {
        let mut h = ours.header;
        h.seq = real.header.seq;
        h.src = real.header.src;
        if h.priority == 0 {
            // "Messenger default": what the sending messenger writes (CEPH_MSG_PRIO_DEFAULT).
            h.priority = crate::msg::priority::DEFAULT;
        }
        assert_eq!(h, real.header);
        assert_eq!(ours.front, real.front);
        assert_eq!(ours.data, real.data);
        assert!(ours.middle.is_empty() && real.middle.is_empty());
    }

    #[test]
    fn golden_captures_decode_and_reencode_identically() {
        for i in 0..8 {
            let (req, rep) = captured(i);
            let op = MOSDOp::from_message(&req).unwrap();
            assert_same_wire(&op.to_message(PACIFIC_ALL), &req);
            let reply = MOSDOpReply::from_message(&rep).unwrap();
            assert_same_wire(&reply.to_message(PACIFIC_ALL), &rep);
            assert_eq!(
                (reply.tid, reply.oid.as_str(), reply.pgid),
                (op.tid, op.oid.as_str(), op.pgid.pgid)
            );
        }
    }

    /// Builds what `rados` sent in stream `i` with our constructors: pool 1 (`test`,
    /// pg_num 8), OSD map epoch 10, tid 1; only the wall-clock mtime is copied.
    fn ours_like(i: usize, m: MOSDOp) -> MOSDOp {
        let (req, _) = captured(i);
        let real = MOSDOp::from_message(&req).unwrap();
        m.with_pg_num(8)
            .with_epoch(10)
            .with_tid(1)
            .with_mtime(real.mtime)
    }

    #[test]
    fn golden_requests_match_our_builders() {
        let data = Bytes::from_static(b"hello ceph osd\n");
        let cases = [
            (0, MOSDOp::write_full(1, "obj1", data.clone())), // rados put
            (1, MOSDOp::write(1, "obj1", 8, data)),           // rados put --offset 8
            (2, MOSDOp::stat(1, "obj1")),                     // rados stat
            (3, MOSDOp::read(1, "obj1", 0, 4 << 20)),         // rados get: 4 MiB reads
            (4, MOSDOp::create(1, "obj2", true)),             // rados create
            (6, MOSDOp::stat(1, "nosuch")),                   // rados stat of a missing object
        ];
        for (i, m) in cases {
            let ours = ours_like(i, m).to_message(PACIFIC_ALL);
            assert_same_wire(&ours, &captured(i).0);
        }
        // A namespaced object: the locator carries the namespace, and the hash is taken
        // over "ns1\x1fnsobj".
        let ns = MOSDOp::write_full(1, "nsobj", Bytes::from_static(b"hello ceph osd\n"))
            .with_namespace("ns1");
        assert_eq!(ns.hash, object_hash("", "ns1\x1fnsobj"));
        assert_same_wire(&ours_like(7, ns).to_message(PACIFIC_ALL), &captured(7).0);
        // `rados rm` passes LIBRADOS_OPERATION_FULL_FORCE (128) straight through as an OSD
        // flag, so its delete carries 0x80 on top of what our builder sets.
        let mut del = ours_like(5, MOSDOp::delete(1, "obj1"));
        del.flags |= 0x80;
        assert_same_wire(&del.to_message(PACIFIC_ALL), &captured(5).0);
    }

    #[test]
    fn golden_replies_match_reply_to() {
        // Write: ACK|ONDISK, versions (10, 1).
        let (req, rep) = captured(0);
        let mut ours = MOSDOpReply::reply_to(&MOSDOp::from_message(&req).unwrap(), 0, 10);
        ours.bad_replay_version = EVersion {
            epoch: 10,
            version: 1,
        };
        ours.replay_version = ours.bad_replay_version;
        ours.user_version = 1;
        assert_same_wire(&ours.to_message(PACIFIC_ALL), &rep);
        // Stat: 16 bytes of outdata (u64 size 23, utime mtime).
        let (req, rep) = captured(2);
        let reply = MOSDOpReply::from_message(&rep).unwrap();
        let stat = StatResult::from_bytes(&reply.ops[0].data).unwrap();
        assert_eq!(stat.size, 23);
        let mut ours = MOSDOpReply::reply_to(&MOSDOp::from_message(&req).unwrap(), 0, 10);
        ours.ops[0].data = stat.to_bytes();
        ours.bad_replay_version = EVersion {
            epoch: 0,
            version: 2,
        };
        ours.user_version = 2;
        assert_same_wire(&ours.to_message(PACIFIC_ALL), &rep);
        // Read: the OSD sets the extent length to what it read.
        let (req, rep) = captured(3);
        let reply = MOSDOpReply::from_message(&rep).unwrap();
        assert_eq!(&reply.ops[0].data[..], b"hello cehello ceph osd\n");
        assert_eq!(reply.ops[0].extent().length, 23);
        let mut ours = MOSDOpReply::reply_to(&MOSDOp::from_message(&req).unwrap(), 0, 10);
        let extent = Extent {
            length: 23,
            ..ours.ops[0].extent()
        };
        ours.ops[0].set_extent(extent);
        ours.ops[0].data = reply.ops[0].data.clone();
        ours.bad_replay_version = EVersion {
            epoch: 0,
            version: 2,
        };
        ours.user_version = 2;
        assert_same_wire(&ours.to_message(PACIFIC_ALL), &rep);
        // Missing object: -ENOENT, and the OSD does not add ACK/ONDISK on this path.
        let (_, rep) = captured(6);
        let reply = MOSDOpReply::from_message(&rep).unwrap();
        assert_eq!(reply.result, -2);
        assert_eq!(
            reply.flags,
            i64::from(flags::READ | flags::ONDISK | flags::KNOWN_REDIR)
        );
    }
}
