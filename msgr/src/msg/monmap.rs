//! `MMonMap` (type 4) and the `MonMap` it carries: which monitors a cluster has, where they
//! listen, and in which rank order.
//!
//! Follows Ceph Pacific:
//! - `src/messages/MMonMap.h`: the front is one bufferlist holding an encoded `MonMap`;
//!   `encode_payload` re-encodes the map for peers lacking `MONENC` or `MSG_ADDR2`.
//! - `src/mon/MonMap.cc`, `MonMap::encode` / `MonMap::decode`: four encodings chosen by the
//!   peer's features. `ENCODE_START(9, 6)` for `MONNAMES|MONENC|SERVER_NAUTILUS` peers
//!   (every Pacific client); `ENCODE_START(5, 3)` without `SERVER_NAUTILUS`; the legacy
//!   `u16 2` form without `MONENC` and `u16 1` without `MONNAMES`. The decoder
//!   (`DECODE_START_LEGACY_COMPAT_LEN_16(9, 3, 3)`) reads all of them, guards each field by
//!   `struct_v` as Ceph does, and skips fields a newer encoder appended.
//! - `mon_info_t::encode` / `decode` (same file): `ENCODE_START(5, 1)` (version 2 for
//!   pre-Nautilus peers): name, addrvec (a single legacy address before v3), priority,
//!   weight, crush location.
//! - `src/mon/mon_types.h`: `mon_feature_t` is `ENCODE_START(1, 1)` + `u64`;
//!   `infer_ceph_release_from_mon_features` for maps older than v7.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::types::{Fsid, UTime};
use super::{decode_front, encode_front, MessageHeader, MsgType, Payload, TypedMessage};
use crate::denc::{Decode, Encode, Reader, Writer};
use crate::entity::{AddrType, EntityAddr, EntityAddrVec, EntityType};
use crate::error::DecodeError;
use crate::features;

/// `ceph_release_t` numbers for `min_mon_release`.
pub mod release {
    /// No release known.
    pub const UNKNOWN: u8 = 0;
    /// Kraken (11).
    pub const KRAKEN: u8 = 11;
    /// Luminous (12).
    pub const LUMINOUS: u8 = 12;
    /// Mimic (13).
    pub const MIMIC: u8 = 13;
    /// Nautilus (14).
    pub const NAUTILUS: u8 = 14;
    /// Octopus (15).
    pub const OCTOPUS: u8 = 15;
    /// Pacific (16).
    pub const PACIFIC: u8 = 16;
}

/// `MonMap::election_strategy` values.
pub mod election {
    /// The original rank-based election.
    pub const CLASSIC: u8 = 1;
    /// Classic, but some monitors may not lead.
    pub const DISALLOW: u8 = 2;
    /// Prefers well-connected monitors.
    pub const CONNECTIVITY: u8 = 3;
}

/// `mon_feature_t` bits (`ceph::features::mon`), used to infer `min_mon_release`.
mod mon_feature {
    pub(super) const KRAKEN: u64 = 1 << 0;
    pub(super) const LUMINOUS: u64 = 1 << 1;
    pub(super) const MIMIC: u64 = 1 << 2;
    pub(super) const NAUTILUS: u64 = 1 << 4;
    pub(super) const OCTOPUS: u64 = 1 << 5;
    pub(super) const PACIFIC: u64 = 1 << 6;
}

/// `mon_info_t`: one monitor.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct MonInfo {
    /// Its name (`a` in `mon.a`).
    pub name: String,
    /// The addresses it listens on for clients (e.g. `[v2:...:3300, v1:...:6789]`).
    pub public_addrs: EntityAddrVec,
    /// Lower is preferred when clients pick a monitor.
    pub priority: u16,
    /// Weight for random monitor selection among equal priorities.
    pub weight: u16,
    /// Location in CRUSH terms (stretch clusters).
    pub crush_loc: BTreeMap<String, String>,
}

impl MonInfo {
    /// `mon_info_t::decode`.
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let h = r.struct_start("mon_info_t", 5)?;
        let mut m = Self {
            name: r.string()?,
            public_addrs: r.decode()?,
            ..Self::default()
        };
        if h.version >= 2 {
            m.priority = r.u16()?;
        }
        if h.version >= 4 {
            m.weight = r.u16()?;
        }
        if h.version >= 5 {
            m.crush_loc = r.map()?;
        }
        r.struct_end(h);
        Ok(m)
    }

    /// `mon_info_t::encode`: v5 for Nautilus+ peers, else v2 with one legacy address.
    fn encode(&self, w: &mut Writer) {
        let nautilus = features::has(w.features(), features::SERVER_NAUTILUS);
        let m = w.struct_start(if nautilus { 5 } else { 2 }, 1);
        w.string(&self.name);
        if nautilus {
            w.put(&self.public_addrs);
        } else {
            // Ceph lies to old peers with a legacy-looking address when there is none.
            let a = legacy_addr(&self.public_addrs)
                .unwrap_or_else(|| as_legacy_addr(&self.public_addrs));
            w.put(&a);
        }
        w.u16(self.priority);
        w.u16(self.weight);
        w.map(&self.crush_loc);
        w.struct_finish(m);
    }
}

/// `entity_addrvec_t::legacy_addr`: the first address of type v1, if any.
fn legacy_addr(v: &EntityAddrVec) -> Option<EntityAddr> {
    v.0.iter().find(|a| a.ty == AddrType::LEGACY).copied()
}

/// `entity_addrvec_t::as_legacy_addr`: the v1 address, else the first `any` address, else
/// the first address (blank if none), relabelled as v1.
fn as_legacy_addr(v: &EntityAddrVec) -> EntityAddr {
    for a in &v.0 {
        if a.ty == AddrType::LEGACY {
            return *a;
        }
        if a.ty == AddrType::ANY {
            return EntityAddr {
                ty: AddrType::LEGACY,
                ..*a
            };
        }
    }
    let front = v.0.first().copied().unwrap_or_else(EntityAddr::none);
    EntityAddr {
        ty: AddrType::LEGACY,
        ..front
    }
}

/// `entity_addrvec_t::legacy_or_front_addr`.
fn legacy_or_front_addr(v: &EntityAddrVec) -> EntityAddr {
    legacy_addr(v)
        .or_else(|| v.0.first().copied())
        .unwrap_or_else(EntityAddr::none)
}

/// `mon_feature_t`: `ENCODE_START(1, 1)` + `u64`.
fn decode_mon_features(r: &mut Reader) -> Result<u64, DecodeError> {
    let h = r.struct_start("mon_feature_t", 1)?;
    let f = r.u64()?;
    r.struct_end(h);
    Ok(f)
}

fn encode_mon_features(w: &mut Writer, f: u64) {
    let m = w.struct_start(1, 1);
    w.u64(f);
    w.struct_finish(m);
}

/// `infer_ceph_release_from_mon_features`, for maps encoded before `min_mon_release` existed.
fn infer_release(persistent: u64) -> u8 {
    [
        (mon_feature::PACIFIC, release::PACIFIC),
        (mon_feature::OCTOPUS, release::OCTOPUS),
        (mon_feature::NAUTILUS, release::NAUTILUS),
        (mon_feature::MIMIC, release::MIMIC),
        (mon_feature::LUMINOUS, release::LUMINOUS),
        (mon_feature::KRAKEN, release::KRAKEN),
    ]
    .into_iter()
    .find(|(bit, _)| persistent & bit != 0)
    .map_or(release::UNKNOWN, |(_, r)| r)
}

/// A cluster's monitor map.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MonMap {
    /// The cluster's fsid.
    pub fsid: Fsid,
    /// The map's epoch; bumped whenever the membership changes.
    pub epoch: u32,
    /// When the map last changed.
    pub last_changed: UTime,
    /// When the cluster was created.
    pub created: UTime,
    /// Monitor features every monitor has committed to (`mon_feature_t`).
    pub persistent_features: u64,
    /// Monitor features in use but not yet persistent.
    pub optional_features: u64,
    /// Monitors by name (Ceph's `std::map` order, which is byte order).
    pub mon_info: BTreeMap<String, MonInfo>,
    /// Monitor names in rank order (rank 0 first).
    pub ranks: Vec<String>,
    /// The oldest release a monitor may run ([`release`]).
    pub min_mon_release: u8,
    /// Ranks removed since the last election.
    pub removed_ranks: BTreeSet<i32>,
    /// Election strategy ([`election`]).
    pub strategy: u8,
    /// Ranks that may not become leader.
    pub disallowed_leaders: BTreeSet<i32>,
    /// Whether stretch mode is on.
    pub stretch_mode_enabled: bool,
    /// The stretch-mode tiebreaker monitor.
    pub tiebreaker_mon: String,
    /// Monitors marked down by stretch mode.
    pub stretch_marked_down_mons: BTreeSet<String>,
}

impl Default for MonMap {
    fn default() -> Self {
        Self {
            fsid: Fsid::ZERO,
            epoch: 0,
            last_changed: UTime::default(),
            created: UTime::default(),
            persistent_features: 0,
            optional_features: 0,
            mon_info: BTreeMap::new(),
            ranks: Vec::new(),
            min_mon_release: release::UNKNOWN,
            removed_ranks: BTreeSet::new(),
            strategy: election::CLASSIC,
            disallowed_leaders: BTreeSet::new(),
            stretch_mode_enabled: false,
            tiebreaker_mon: String::new(),
            stretch_marked_down_mons: BTreeSet::new(),
        }
    }
}

impl MonMap {
    /// The monitors in rank order (rank 0 first).
    pub fn monitors(&self) -> impl Iterator<Item = &MonInfo> + '_ {
        self.ranks.iter().filter_map(|n| self.mon_info.get(n))
    }

    /// The monitor with rank `rank`.
    pub fn by_rank(&self, rank: usize) -> Option<&MonInfo> {
        self.ranks.get(rank).and_then(|n| self.mon_info.get(n))
    }

    /// Decodes a whole encoded map (e.g. [`MMonMap::monmap`]), rejecting trailing bytes.
    pub fn from_bytes(b: &Bytes) -> Result<Self, DecodeError> {
        decode_front(b.clone(), "MonMap", Self::decode)
    }

    /// Encodes the map as Ceph would for a peer with `features`.
    pub fn to_bytes(&self, features: u64) -> Bytes {
        encode_front(features, |w| self.encode(w))
    }

    /// `MonMap::calc_legacy_ranks`: ranks of a map too old to carry them are the monitors
    /// sorted by legacy (else first) address, then by name.
    fn calc_legacy_ranks(&mut self) {
        let mut mons: Vec<&MonInfo> = self.mon_info.values().collect();
        mons.sort_by(|a, b| {
            let (aa, ba) = (
                legacy_or_front_addr(&a.public_addrs),
                legacy_or_front_addr(&b.public_addrs),
            );
            match aa.ceph_cmp(&ba) {
                Ordering::Equal => a.name.cmp(&b.name),
                o => o,
            }
        });
        self.ranks = mons.into_iter().map(|m| m.name.clone()).collect();
    }

    /// Legacy maps name monitors by address only; build `mon_info` from them.
    fn set_legacy_addrs(&mut self, mon_addr: BTreeMap<String, EntityAddr>) {
        for (name, addr) in mon_addr {
            let info = MonInfo {
                name: name.clone(),
                public_addrs: EntityAddrVec(vec![addr]),
                ..MonInfo::default()
            };
            self.mon_info.insert(name, info);
        }
    }

    fn legacy_mon_addr(&self) -> BTreeMap<String, EntityAddr> {
        self.mon_info
            .iter()
            .map(|(name, info)| {
                (
                    name.clone(),
                    legacy_addr(&info.public_addrs).unwrap_or_else(EntityAddr::none),
                )
            })
            .collect()
    }
}

impl Decode for MonMap {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        // DECODE_START_LEGACY_COMPAT_LEN_16(9, 3, 3): versions 1 and 2 wrote a u16 version
        // and no compat/length; from 3 on it is a normal ENCODE_START header.
        let version = r.peek_u8()?;
        let header = if version >= 3 {
            Some(r.struct_start("MonMap", 9)?)
        } else {
            r.u8()?;
            r.skip(1)?;
            None
        };
        let v = header.map_or(version, |h| h.version);

        let mut m = Self {
            fsid: r.decode()?,
            epoch: r.u32()?,
            ..Self::default()
        };
        let mut mon_addr = BTreeMap::new();
        if v == 1 {
            // vector<entity_inst_t>; monitors are named by their position.
            let n = r.count(1)?;
            for i in 0..n {
                // entity_name_t (u8 type, s64 num): always mon.<i>, so not kept.
                r.u8()?;
                r.i64()?;
                let addr: EntityAddr = r.decode()?;
                mon_addr.insert(i.to_string(), addr);
            }
        } else if v < 6 {
            mon_addr = r.map()?;
        }
        m.last_changed = r.decode()?;
        m.created = r.decode()?;
        if v >= 4 {
            m.persistent_features = decode_mon_features(r)?;
            m.optional_features = decode_mon_features(r)?;
        }
        if v < 5 {
            m.set_legacy_addrs(mon_addr);
        } else {
            let n = r.count(1)?;
            for _ in 0..n {
                let name = r.string()?;
                let info = MonInfo::decode(r)?;
                m.mon_info.insert(name, info);
            }
        }
        if v < 6 {
            m.calc_legacy_ranks();
        } else {
            m.ranks = r.vec()?;
        }
        m.min_mon_release = if v >= 7 {
            r.u8()?
        } else {
            infer_release(m.persistent_features)
        };
        if v >= 8 {
            m.removed_ranks = r.set()?;
            m.strategy = r.u8()?;
            m.disallowed_leaders = r.set()?;
        }
        if v >= 9 {
            m.stretch_mode_enabled = r.bool()?;
            m.tiebreaker_mon = r.string()?;
            m.stretch_marked_down_mons = r.set()?;
        }
        if let Some(h) = header {
            r.struct_end(h);
        }
        Ok(m)
    }
}

impl Encode for MonMap {
    /// `MonMap::encode(bl, con_features)`: the newest encoding the peer's features allow.
    fn encode(&self, w: &mut Writer) {
        let f = w.features();
        if !features::has(f, features::MONNAMES) {
            w.u16(1);
            w.put(&self.fsid);
            w.u32(self.epoch);
            w.u32(u32::try_from(self.ranks.len()).unwrap_or(u32::MAX));
            for (n, name) in self.ranks.iter().enumerate() {
                // entity_inst_t: entity_name_t MON(rank), then the legacy address.
                w.u8(EntityType::MON.0);
                w.i64(i64::try_from(n).unwrap_or(i64::MAX));
                let addr = self
                    .mon_info
                    .get(name)
                    .and_then(|i| legacy_addr(&i.public_addrs));
                w.put(&addr.unwrap_or_else(EntityAddr::none));
            }
            w.put(&self.last_changed);
            w.put(&self.created);
            return;
        }
        if !features::has(f, features::MONENC) {
            w.u16(2);
            w.put(&self.fsid);
            w.u32(self.epoch);
            w.map(&self.legacy_mon_addr());
            w.put(&self.last_changed);
            w.put(&self.created);
            return;
        }
        if !features::has(f, features::SERVER_NAUTILUS) {
            let m = w.struct_start(5, 3);
            w.put(&self.fsid);
            w.u32(self.epoch);
            w.map(&self.legacy_mon_addr());
            w.put(&self.last_changed);
            w.put(&self.created);
            encode_mon_features(w, self.persistent_features);
            encode_mon_features(w, self.optional_features);
            self.encode_mon_info(w);
            w.struct_finish(m);
            return;
        }
        let m = w.struct_start(9, 6);
        w.put(&self.fsid);
        w.u32(self.epoch);
        w.put(&self.last_changed);
        w.put(&self.created);
        encode_mon_features(w, self.persistent_features);
        encode_mon_features(w, self.optional_features);
        self.encode_mon_info(w);
        w.put(&self.ranks);
        w.u8(self.min_mon_release);
        w.put(&self.removed_ranks);
        w.u8(self.strategy);
        w.put(&self.disallowed_leaders);
        w.bool(self.stretch_mode_enabled);
        w.string(&self.tiebreaker_mon);
        w.put(&self.stretch_marked_down_mons);
        w.struct_finish(m);
    }
}

impl MonMap {
    fn encode_mon_info(&self, w: &mut Writer) {
        w.u32(u32::try_from(self.mon_info.len()).unwrap_or(u32::MAX));
        for (name, info) in &self.mon_info {
            w.string(name);
            info.encode(w);
        }
    }
}

/// `MMonMap`: a monitor pushing its current map.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MMonMap {
    /// The encoded map, as received (decode it with [`MMonMap::decode_monmap`]).
    pub monmap: Bytes,
}

impl MMonMap {
    /// A message carrying `map` encoded for a peer with `features`.
    pub fn new(map: &MonMap, features: u64) -> Self {
        Self {
            monmap: map.to_bytes(features),
        }
    }

    /// Decodes the carried map.
    pub fn decode_monmap(&self) -> Result<MonMap, DecodeError> {
        MonMap::from_bytes(&self.monmap)
    }
}

impl TypedMessage for MMonMap {
    const TYPE: MsgType = MsgType::MON_MAP;
    const HEAD_VERSION: u16 = 1;
    const COMPAT_VERSION: u16 = 1;

    /// Like Ceph, re-encodes the map for peers lacking `MONENC` or `MSG_ADDR2`; a map that
    /// does not decode is passed through unchanged.
    fn encode_payload(&self, features: u64) -> Payload {
        let old_peer = !features::has(features, features::MONENC)
            || !features::has(features, features::MSG_ADDR2);
        let map = if old_peer && !self.monmap.is_empty() {
            self.decode_monmap()
                .map_or_else(|_| self.monmap.clone(), |m| m.to_bytes(features))
        } else {
            self.monmap.clone()
        };
        Payload {
            front: encode_front(features, |w| w.bufferlist(&map)),
            ..Payload::default()
        }
    }

    fn decode_payload(_header: &MessageHeader, payload: Payload) -> Result<Self, DecodeError> {
        decode_front(payload.front, "MMonMap", |r| {
            Ok(Self {
                monmap: r.bufferlist()?,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::PACIFIC_ALL;
    use crate::msg::golden;

    fn addr(s: &str) -> EntityAddr {
        s.parse().unwrap()
    }

    fn sample() -> MonMap {
        let mut m = MonMap {
            fsid: "dd9a8e03-1acc-4040-892d-e1fe7581188b".parse().unwrap(),
            epoch: 3,
            last_changed: UTime::new(1_700_000_000, 5),
            created: UTime::new(1_600_000_000, 7),
            persistent_features: 0xff,
            optional_features: 0,
            min_mon_release: release::PACIFIC,
            ..MonMap::default()
        };
        for (name, v2, v1) in [
            ("b", "v2:10.0.0.2:3300", "v1:10.0.0.2:6789"),
            ("a", "v2:10.0.0.1:3300", "v1:10.0.0.1:6789"),
        ] {
            let info = MonInfo {
                name: name.into(),
                public_addrs: EntityAddrVec(vec![addr(v2), addr(v1)]),
                ..MonInfo::default()
            };
            m.mon_info.insert(name.into(), info);
        }
        m.mon_info
            .get_mut("b")
            .unwrap()
            .crush_loc
            .insert("datacenter".into(), "dc2".into());
        m.ranks = vec!["a".into(), "b".into()];
        m
    }

    #[test]
    fn golden_monmap_from_pacific_mon() {
        let msgs = golden::of_type("v1-ping-0-s2c.bin", MsgType::MON_MAP);
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].front.len(), 205);
        let mm = MMonMap::from_message(&msgs[0]).unwrap();
        assert_eq!(mm.monmap.len(), 201);
        assert_eq!(&mm.monmap[..2], &[9, 6]);
        let map = mm.decode_monmap().unwrap();
        assert_eq!(map.fsid.to_string(), "dd9a8e03-1acc-4040-892d-e1fe7581188b");
        assert_eq!(map.epoch, 1);
        assert_eq!((map.persistent_features, map.optional_features), (0xff, 0));
        assert_eq!(map.min_mon_release, release::PACIFIC);
        assert_eq!(map.strategy, election::CLASSIC);
        assert_eq!(map.ranks, vec!["a".to_string()]);
        let mons: Vec<&MonInfo> = map.monitors().collect();
        assert_eq!(mons.len(), 1);
        assert_eq!(mons[0].name, "a");
        assert_eq!(
            mons[0].public_addrs.to_string(),
            "[v2:127.0.0.1:43300/0,v1:127.0.0.1:46789/0]"
        );
        assert_eq!((mons[0].priority, mons[0].weight), (0, 0));
        assert!(
            map.removed_ranks.is_empty()
                && map.disallowed_leaders.is_empty()
                && !map.stretch_mode_enabled
        );
        // Byte-identical re-encoding, of the map and of the whole message.
        assert_eq!(map.to_bytes(PACIFIC_ALL), mm.monmap);
        assert_eq!(
            MMonMap::new(&map, PACIFIC_ALL)
                .encode_payload(PACIFIC_ALL)
                .front,
            msgs[0].front
        );
        assert_eq!(mm.encode_payload(PACIFIC_ALL).front, msgs[0].front);
    }

    #[test]
    fn golden_v1_only_monmap_from_status_captures() {
        for file in [
            "v1-status-0-s2c.bin",
            "v1-status-1-s2c.bin",
            "v1-status-2-s2c.bin",
            "v1-status-3-s2c.bin",
        ] {
            let msgs = golden::of_type(file, MsgType::MON_MAP);
            assert_eq!(msgs.len(), 2, "{file}");
            for m in &msgs {
                let mm = MMonMap::from_message(m).unwrap();
                let map = mm.decode_monmap().unwrap();
                assert_eq!(map.ranks, vec!["a".to_string()]);
                let a = map.by_rank(0).unwrap();
                assert_eq!(a.public_addrs.0.len(), 1, "{file}");
                assert_eq!(a.public_addrs.0[0].ty, AddrType::LEGACY);
                assert_eq!(
                    a.public_addrs.0[0].addr.unwrap().ip().to_string(),
                    "127.0.0.1"
                );
                assert_eq!(map.to_bytes(PACIFIC_ALL), mm.monmap, "{file}");
                assert_eq!(mm.encode_payload(PACIFIC_ALL).front, m.front, "{file}");
            }
        }
    }

    #[test]
    fn v9_round_trip_keeps_every_field() {
        let mut m = sample();
        m.removed_ranks.insert(4);
        m.disallowed_leaders.insert(1);
        m.strategy = election::DISALLOW;
        m.stretch_mode_enabled = true;
        m.tiebreaker_mon = "c".into();
        m.stretch_marked_down_mons.insert("b".into());
        let b = m.to_bytes(PACIFIC_ALL);
        assert_eq!(&b[..2], &[9, 6]);
        assert_eq!(MonMap::from_bytes(&b).unwrap(), m);
        let names: Vec<&str> = m.monitors().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn older_encodings_decode_to_what_they_carry() {
        let m = sample();
        // Pre-Nautilus (5, 3): legacy addresses only, no ranks (recomputed by address).
        let pre_nautilus = PACIFIC_ALL & !features::SERVER_NAUTILUS;
        let b = m.to_bytes(pre_nautilus);
        assert_eq!(&b[..2], &[5, 3]);
        let back = MonMap::from_bytes(&b).unwrap();
        assert_eq!(back.ranks, m.ranks);
        assert_eq!(
            back.by_rank(0).unwrap().public_addrs.0,
            vec![addr("v1:10.0.0.1:6789")]
        );
        // mon_info_t v2 still writes weight and crush_loc, but a decoder reading struct_v 2
        // (Ceph's included) skips them.
        assert!(back.by_rank(1).unwrap().crush_loc.is_empty());
        assert_eq!(back.persistent_features, 0xff);
        assert_eq!(back.min_mon_release, release::PACIFIC); // bit 6 of 0xff => inferred
                                                            // Without MONENC: u16 2 and a name -> addr map.
        let b = m.to_bytes(features::MONNAMES);
        assert_eq!(&b[..2], &[2, 0]);
        let back = MonMap::from_bytes(&b).unwrap();
        assert_eq!(
            (back.fsid, back.epoch, back.created),
            (m.fsid, m.epoch, m.created)
        );
        assert_eq!(back.ranks, m.ranks);
        assert_eq!(
            back.by_rank(1).unwrap().public_addrs.0,
            vec![addr("v1:10.0.0.2:6789")]
        );
        // Without MONNAMES: u16 1 and entity_inst_t's; names become ranks "0", "1".
        let b = m.to_bytes(0);
        assert_eq!(&b[..2], &[1, 0]);
        let back = MonMap::from_bytes(&b).unwrap();
        assert_eq!(back.ranks, vec!["0".to_string(), "1".to_string()]);
        assert_eq!(
            back.by_rank(0).unwrap().public_addrs.0,
            vec![addr("v1:10.0.0.1:6789")]
        );
        assert_eq!(back.last_changed, m.last_changed);
    }

    #[test]
    fn pre_nautilus_mon_info_lies_with_a_legacy_looking_address() {
        let v2_only = EntityAddrVec(vec![addr("v2:10.0.0.9:3300")]);
        assert_eq!(as_legacy_addr(&v2_only), addr("v1:10.0.0.9:3300"));
        let any = EntityAddrVec(vec![addr("any:10.0.0.9:3300")]);
        assert_eq!(as_legacy_addr(&any), addr("v1:10.0.0.9:3300"));
        assert_eq!(
            as_legacy_addr(&EntityAddrVec::default()).ty,
            AddrType::LEGACY
        );
    }

    #[test]
    fn mmonmap_reencodes_for_old_peers() {
        let m = sample();
        let mm = MMonMap::new(&m, PACIFIC_ALL);
        let old = PACIFIC_ALL & !features::MSG_ADDR2;
        let front = mm.encode_payload(old).front;
        let inner = Reader::new(front).bufferlist().unwrap();
        assert_eq!(inner, m.to_bytes(old));
        assert_ne!(inner, mm.monmap);
    }

    #[test]
    fn unknown_trailing_fields_are_skipped() {
        let m = sample();
        let b = m.to_bytes(PACIFIC_ALL);
        // Pretend a v10 encoder appended 3 bytes: bump version and length.
        let mut v = b.to_vec();
        v[0] = 10;
        let len = u32::from_le_bytes([v[2], v[3], v[4], v[5]]) + 3;
        v[2..6].copy_from_slice(&len.to_le_bytes());
        v.extend_from_slice(&[1, 2, 3]);
        assert_eq!(MonMap::from_bytes(&Bytes::from(v)).unwrap(), m);
    }

    #[test]
    fn truncated_and_hostile_maps_are_errors() {
        let b = sample().to_bytes(PACIFIC_ALL);
        for cut in 0..b.len() {
            assert!(MonMap::from_bytes(&b.slice(..cut)).is_err(), "cut {cut}");
        }
        // compat 10: newer than we understand.
        let mut v = b.to_vec();
        v[1] = 10;
        assert_eq!(
            MonMap::from_bytes(&Bytes::from(v)),
            Err(DecodeError::UnsupportedVersion {
                what: "MonMap",
                compat: 10,
                supported: 9
            })
        );
        // mon_info map count 0xffffffff (offset: 6 header + 16 fsid + 4 epoch + 16 times + 2*14 features).
        let mut v = b.to_vec();
        v[70..74].copy_from_slice(&[0xff; 4]);
        assert_eq!(
            MonMap::from_bytes(&Bytes::from(v)),
            Err(DecodeError::Truncated { what: "container" })
        );
        // A legacy v1 map whose entity_inst_t vector claims 4 billion entries.
        let mut v = vec![1u8, 0];
        v.extend_from_slice(&[0; 20]);
        v.extend_from_slice(&[0xff; 4]);
        assert_eq!(
            MonMap::from_bytes(&Bytes::from(v)),
            Err(DecodeError::Truncated { what: "container" })
        );
        // MMonMap front with a bufferlist longer than the front.
        let p = Payload {
            front: Bytes::from_static(b"\x10\x00\x00\x00abc"),
            ..Payload::default()
        };
        assert_eq!(
            MMonMap::decode_payload(&MessageHeader::new(MsgType::MON_MAP, 1, 1), p.clone()),
            Err(DecodeError::Truncated { what: "bufferlist" })
        );
    }

    #[test]
    fn newer_message_compat_is_refused() {
        let mut m = MMonMap::new(&sample(), PACIFIC_ALL).to_message(PACIFIC_ALL);
        m.header.compat_version = 2;
        assert!(matches!(
            MMonMap::from_message(&m),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
    }
}
