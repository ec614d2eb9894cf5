//! Who is talking: entity types and names, and Ceph's `entity_addr_t` in its two encodings.
//!
//! An address has two wire forms (docs/ceph-msgr-wire.md §2.3):
//! - the **legacy** 136-byte form (`ceph_entity_addr`): used for every address in the v1
//!   banner exchange and in payloads for peers without `MSG_ADDR2`. The `sockaddr_storage`
//!   inside carries `ss_family` big-endian; port and IPv4 address are network order.
//! - the **new** form (marker `1`, `ENCODE_START(1,1)`, type, nonce, sockaddr length,
//!   little-endian family, `sa_data`), used in payloads for peers with `MSG_ADDR2`.
//!
//! An `entity_addrvec_t` is marker `2` plus a vector of new-form addresses, or a single
//! legacy address for peers without `MSG_ADDR2`.

use std::cmp::Ordering;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::str::FromStr;

use crate::denc::{Decode, Encode, Reader, Writer};
use crate::error::DecodeError;
use crate::features;

/// `CEPH_ENTITY_TYPE_*`: what kind of daemon or client an entity is.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct EntityType(pub u8);

impl EntityType {
    /// A monitor.
    pub const MON: Self = Self(0x01);
    /// A metadata server.
    pub const MDS: Self = Self(0x02);
    /// An object storage daemon.
    pub const OSD: Self = Self(0x04);
    /// A client.
    pub const CLIENT: Self = Self(0x08);
    /// A manager.
    pub const MGR: Self = Self(0x10);
    /// The auth service.
    pub const AUTH: Self = Self(0x20);
    /// Any type (wildcard).
    pub const ANY: Self = Self(0xff);

    /// Ceph's short name ("mon", "osd", ...), or `None` for an unknown code.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::MON => "mon",
            Self::MDS => "mds",
            Self::OSD => "osd",
            Self::CLIENT => "client",
            Self::MGR => "mgr",
            Self::AUTH => "auth",
            _ => return None,
        })
    }

    /// The type for a short name.
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "mon" => Self::MON,
            "mds" => Self::MDS,
            "osd" => Self::OSD,
            "client" => Self::CLIENT,
            "mgr" => Self::MGR,
            "auth" => Self::AUTH,
            _ => return None,
        })
    }
}

impl fmt::Display for EntityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "type{}", self.0),
        }
    }
}

/// `entity_name_t`: type plus number, as carried in the v1 message header (`src`).
///
/// Number `-1` ([`EntityName::NEW`]) means "not assigned yet" (a client before auth).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct EntityName {
    /// The entity's type.
    pub ty: EntityType,
    /// Its number (`osd.3` is 3); `-1` if unassigned.
    pub num: i64,
}

impl EntityName {
    /// The number of an entity that has none yet.
    pub const NEW: i64 = -1;

    /// A name.
    pub const fn new(ty: EntityType, num: i64) -> Self {
        Self { ty, num }
    }
}

impl fmt::Display for EntityName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.num < 0 {
            write!(f, "{}.?", self.ty)
        } else {
            write!(f, "{}.{}", self.ty, self.num)
        }
    }
}

impl FromStr for EntityName {
    type Err = String;
    /// Parses `osd.3`, `client.admin` is not a numeric name and is refused.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (t, n) = s
            .split_once('.')
            .ok_or_else(|| format!("entity name {s:?} is not TYPE.NUM"))?;
        let ty = EntityType::from_name(t)
            .ok_or_else(|| format!("unknown entity type {t:?} in {s:?}"))?;
        let num = n
            .parse::<i64>()
            .map_err(|_| format!("entity number {n:?} in {s:?} is not an integer"))?;
        Ok(Self { ty, num })
    }
}

/// `entity_addr_t::type`: which protocol an address speaks.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct AddrType(pub u32);

impl AddrType {
    /// No address.
    pub const NONE: Self = Self(0);
    /// msgr v1 ("v1:").
    pub const LEGACY: Self = Self(1);
    /// msgr v2 ("v2:").
    pub const MSGR2: Self = Self(2);
    /// Either protocol.
    pub const ANY: Self = Self(3);
    /// A CIDR range (blocklists, 16.2.11+).
    pub const CIDR: Self = Self(4);

    fn prefix(self) -> &'static str {
        match self {
            Self::LEGACY => "v1:",
            Self::MSGR2 => "v2:",
            Self::ANY => "any:",
            Self::CIDR => "cidr:",
            _ => "-",
        }
    }
}

/// Size of the legacy `ceph_entity_addr` on the wire.
pub const LEGACY_ADDR_LEN: usize = 136;
const SOCKADDR_STORAGE_LEN: usize = 128;
/// Linux `AF_INET` / `AF_INET6`, the values Ceph puts on the wire.
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// `entity_addr_t`: protocol type, nonce and socket address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct EntityAddr {
    /// Protocol type.
    pub ty: AddrType,
    /// Distinguishes restarts of a process on the same IP and port.
    pub nonce: u32,
    /// The socket address; `None` for a blank address (family `AF_UNSPEC`).
    pub addr: Option<SocketAddr>,
}

impl EntityAddr {
    /// A v1 address.
    pub const fn v1(addr: SocketAddr, nonce: u32) -> Self {
        Self {
            ty: AddrType::LEGACY,
            nonce,
            addr: Some(addr),
        }
    }

    /// The all-zero address (`TYPE_NONE`, no sockaddr).
    pub const fn none() -> Self {
        Self {
            ty: AddrType::NONE,
            nonce: 0,
            addr: None,
        }
    }

    /// The port, or 0 if there is no sockaddr.
    pub fn port(&self) -> u16 {
        self.addr.map_or(0, |a| a.port())
    }

    /// Whether the IP is unspecified (0.0.0.0, ::) or missing, as Ceph's `is_blank_ip`.
    pub fn is_blank_ip(&self) -> bool {
        self.addr.is_none_or(|a| a.ip().is_unspecified())
    }

    /// Encodes the 136-byte legacy form (`encode(addr, bl, 0)`): the type field is always 0.
    pub fn to_legacy(&self) -> [u8; LEGACY_ADDR_LEN] {
        let mut b = [0u8; LEGACY_ADDR_LEN];
        b[4..8].copy_from_slice(&self.nonce.to_le_bytes());
        let ss = &mut b[8..];
        match self.addr {
            None => {}
            Some(SocketAddr::V4(a)) => {
                ss[0..2].copy_from_slice(&AF_INET.to_be_bytes());
                ss[2..4].copy_from_slice(&a.port().to_be_bytes());
                ss[4..8].copy_from_slice(&a.ip().octets());
            }
            Some(SocketAddr::V6(a)) => {
                ss[0..2].copy_from_slice(&AF_INET6.to_be_bytes());
                ss[2..4].copy_from_slice(&a.port().to_be_bytes());
                ss[4..8].copy_from_slice(&a.flowinfo().to_be_bytes());
                ss[8..24].copy_from_slice(&a.ip().octets());
                ss[24..28].copy_from_slice(&a.scope_id().to_le_bytes());
            }
        }
        b
    }

    /// Decodes the 136-byte legacy form. Byte 0 must be 0 (the legacy marker); the type
    /// becomes `LEGACY`, or `NONE` when the family is `AF_UNSPEC`, as Ceph decodes it.
    pub fn from_legacy(b: &[u8]) -> Result<Self, DecodeError> {
        let b: &[u8; LEGACY_ADDR_LEN] = b
            .get(..LEGACY_ADDR_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(DecodeError::Truncated {
                what: "legacy entity_addr",
            })?;
        if b[0] != 0 {
            return Err(DecodeError::Invalid {
                what: "legacy entity_addr marker",
            });
        }
        let nonce = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        let family = u16::from_be_bytes([b[8], b[9]]);
        let addr = sockaddr_from_parts(family, &b[10..8 + SOCKADDR_STORAGE_LEN], true)?;
        let ty = if addr.is_some() {
            AddrType::LEGACY
        } else {
            AddrType::NONE
        };
        Ok(Self { ty, nonce, addr })
    }

    /// The bytes Ceph's `entity_addr_t::operator<` compares with `memcmp`: the in-memory
    /// struct on a little-endian host (type, nonce, host-order family, port and address in
    /// network order, padded to `sockaddr_in6`). Connection races are decided by this order,
    /// so it must match Ceph's, not numeric order.
    fn memcmp_key(&self) -> [u8; 36] {
        let mut k = [0u8; 36];
        k[0..4].copy_from_slice(&self.ty.0.to_le_bytes());
        k[4..8].copy_from_slice(&self.nonce.to_le_bytes());
        match self.addr {
            None => {}
            Some(SocketAddr::V4(a)) => {
                k[8..10].copy_from_slice(&AF_INET.to_le_bytes());
                k[10..12].copy_from_slice(&a.port().to_be_bytes());
                k[12..16].copy_from_slice(&a.ip().octets());
            }
            Some(SocketAddr::V6(a)) => {
                k[8..10].copy_from_slice(&AF_INET6.to_le_bytes());
                k[10..12].copy_from_slice(&a.port().to_be_bytes());
                k[12..16].copy_from_slice(&a.flowinfo().to_be_bytes());
                k[16..32].copy_from_slice(&a.ip().octets());
                k[32..36].copy_from_slice(&a.scope_id().to_le_bytes());
            }
        }
        k
    }

    /// Ceph's address order (`memcmp` of the struct), used to break connection races.
    pub fn ceph_cmp(&self, other: &Self) -> Ordering {
        self.memcmp_key().cmp(&other.memcmp_key())
    }
}

/// Builds a socket address from a family and the bytes after the family field
/// (`sa_data`: port BE, then the address). `storage` tells whether the input is a whole
/// `sockaddr_storage` (legacy form) or exactly the sockaddr's length (new form).
fn sockaddr_from_parts(
    family: u16,
    data: &[u8],
    storage: bool,
) -> Result<Option<SocketAddr>, DecodeError> {
    match family {
        0 => Ok(None),
        AF_INET => {
            if data.len() < 6 || (!storage && data.len() != 14) {
                return Err(DecodeError::Invalid {
                    what: "sockaddr_in length",
                });
            }
            let port = u16::from_be_bytes([data[0], data[1]]);
            let ip = Ipv4Addr::new(data[2], data[3], data[4], data[5]);
            Ok(Some(SocketAddr::V4(SocketAddrV4::new(ip, port))))
        }
        AF_INET6 => {
            if data.len() < 26 || (!storage && data.len() != 26) {
                return Err(DecodeError::Invalid {
                    what: "sockaddr_in6 length",
                });
            }
            let port = u16::from_be_bytes([data[0], data[1]]);
            let flow = u32::from_be_bytes([data[2], data[3], data[4], data[5]]);
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&data[6..22]);
            let scope = u32::from_le_bytes([data[22], data[23], data[24], data[25]]);
            Ok(Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                flow,
                scope,
            ))))
        }
        _ => Err(DecodeError::Invalid {
            what: "sockaddr family",
        }),
    }
}

/// In a payload: the new form for peers with `MSG_ADDR2`, else the legacy form.
impl Encode for EntityAddr {
    fn encode(&self, w: &mut Writer) {
        if !features::has(w.features(), features::MSG_ADDR2) {
            w.raw(&self.to_legacy());
            return;
        }
        w.u8(1);
        let m = w.struct_start(1, 1);
        let ty = if self.ty == AddrType::ANY
            && !features::has(w.features(), features::SERVER_NAUTILUS)
        {
            AddrType::LEGACY
        } else {
            self.ty
        };
        w.u32(ty.0);
        w.u32(self.nonce);
        match self.addr {
            None => w.u32(0),
            Some(SocketAddr::V4(a)) => {
                w.u32(16);
                w.raw(&AF_INET.to_le_bytes());
                w.raw(&a.port().to_be_bytes());
                w.raw(&a.ip().octets());
                w.raw(&[0u8; 8]);
            }
            Some(SocketAddr::V6(a)) => {
                w.u32(28);
                w.raw(&AF_INET6.to_le_bytes());
                w.raw(&a.port().to_be_bytes());
                w.raw(&a.flowinfo().to_be_bytes());
                w.raw(&a.ip().octets());
                w.raw(&a.scope_id().to_le_bytes());
            }
        }
        w.struct_finish(m);
    }
}

impl Decode for EntityAddr {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let marker = r.u8()?;
        match marker {
            0 => {
                let mut b = [0u8; LEGACY_ADDR_LEN];
                b[1..].copy_from_slice(&r.raw::<{ LEGACY_ADDR_LEN - 1 }>()?);
                Self::from_legacy(&b)
            }
            1 => {
                let h = r.struct_start("entity_addr_t", 1)?;
                let ty = AddrType(r.u32()?);
                let nonce = r.u32()?;
                let elen = r.u32()? as usize;
                let addr = if elen == 0 {
                    None
                } else {
                    if !(2..=128).contains(&elen) {
                        return Err(DecodeError::Invalid {
                            what: "sockaddr length",
                        });
                    }
                    let family = r.u16()?;
                    let data = r.bytes(elen - 2)?;
                    sockaddr_from_parts(family, &data, false)?
                };
                r.struct_end(h);
                Ok(Self { ty, nonce, addr })
            }
            _ => Err(DecodeError::Invalid {
                what: "entity_addr_t marker",
            }),
        }
    }
}

impl fmt::Display for EntityAddr {
    /// Ceph's form: `v1:127.0.0.1:6789/0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            Some(a) => write!(f, "{}{}/{}", self.ty.prefix(), a, self.nonce),
            None => write!(f, "{}/{}", self.ty.prefix(), self.nonce),
        }
    }
}

impl FromStr for EntityAddr {
    type Err = String;
    /// Parses `v1:IP:PORT[/NONCE]`, `v2:...`, `any:...` or a bare `IP:PORT` (meaning v1).
    /// IPv6 addresses go in brackets: `v1:[::1]:6789`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ty, rest) = if let Some(r) = s.strip_prefix("v1:") {
            (AddrType::LEGACY, r)
        } else if let Some(r) = s.strip_prefix("v2:") {
            (AddrType::MSGR2, r)
        } else if let Some(r) = s.strip_prefix("any:") {
            (AddrType::ANY, r)
        } else {
            (AddrType::LEGACY, s)
        };
        let (sock, nonce) = match rest.rsplit_once('/') {
            Some((a, n)) => (
                a,
                n.parse::<u32>()
                    .map_err(|_| format!("bad nonce {n:?} in address {s:?}"))?,
            ),
            None => (rest, 0),
        };
        let addr = SocketAddr::from_str(sock)
            .map_err(|_| format!("bad address {s:?}: expected [v1:]IP:PORT"))?;
        Ok(Self {
            ty,
            nonce,
            addr: Some(addr),
        })
    }
}

/// `entity_addrvec_t`: the addresses an entity listens on (e.g. `[v2:..., v1:...]`).
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct EntityAddrVec(pub Vec<EntityAddr>);

impl EntityAddrVec {
    /// Ceph's `legacy_addr()`: the first v1 address, if any.
    pub fn legacy_addr(&self) -> Option<EntityAddr> {
        self.0.iter().find(|a| a.ty == AddrType::LEGACY).copied()
    }

    /// Ceph's `legacy_or_front_addr()`: the first v1 address, else the first address.
    pub fn legacy_or_front_addr(&self) -> Option<EntityAddr> {
        self.legacy_addr().or_else(|| self.0.first().copied())
    }
}

impl Encode for EntityAddrVec {
    fn encode(&self, w: &mut Writer) {
        if !features::has(w.features(), features::MSG_ADDR2) {
            let legacy = self.legacy_addr().unwrap_or_else(EntityAddr::none);
            w.raw(&legacy.to_legacy());
            return;
        }
        w.u8(2);
        w.seq(self.0.iter());
    }
}

impl Decode for EntityAddrVec {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        // Peek the marker: 0 and 1 are a single address, 2 a vector.
        match r.peek_u8()? {
            0 | 1 => Ok(Self(vec![EntityAddr::decode(r)?])),
            2 => {
                r.u8()?;
                Ok(Self(r.vec()?))
            }
            _ => Err(DecodeError::Invalid {
                what: "entity_addrvec_t marker",
            }),
        }
    }
}

impl fmt::Display for EntityAddrVec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{a}")?;
        }
        f.write_str("]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn v4(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn legacy_form_matches_ceph_bytes() {
        // docs §2.3: 127.0.0.1:6789 nonce 0.
        let a = EntityAddr::v1(v4("127.0.0.1:6789"), 0);
        let b = a.to_legacy();
        assert_eq!(
            &b[..16],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0x1a, 0x85, 0x7f, 0, 0, 1]
        );
        assert!(b[16..].iter().all(|&x| x == 0));
        assert_eq!(EntityAddr::from_legacy(&b).unwrap(), a);
    }

    #[test]
    fn legacy_blank_and_bad_inputs() {
        let mut b = [0u8; LEGACY_ADDR_LEN];
        b[4] = 7;
        let a = EntityAddr::from_legacy(&b).unwrap();
        assert_eq!((a.ty, a.nonce, a.addr), (AddrType::NONE, 7, None));
        assert!(a.is_blank_ip());
        b[0] = 1;
        assert_eq!(
            EntityAddr::from_legacy(&b),
            Err(DecodeError::Invalid {
                what: "legacy entity_addr marker"
            })
        );
        b[0] = 0;
        b[9] = 99;
        assert_eq!(
            EntityAddr::from_legacy(&b),
            Err(DecodeError::Invalid {
                what: "sockaddr family"
            })
        );
        assert_eq!(
            EntityAddr::from_legacy(&b[..100]),
            Err(DecodeError::Truncated {
                what: "legacy entity_addr"
            })
        );
    }

    #[test]
    fn new_form_matches_ceph_bytes() {
        // docs §2.3 example: v1 127.0.0.1:6789 nonce 0, 35 bytes.
        let a = EntityAddr::v1(v4("127.0.0.1:6789"), 0);
        let mut w = Writer::new(features::PACIFIC_ALL);
        w.put(&a);
        let b = w.finish();
        let mut want = vec![
            1, 1, 1, 0x1c, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 2, 0, 0x1a, 0x85, 0x7f,
            0, 0, 1,
        ];
        want.extend_from_slice(&[0; 8]);
        assert_eq!(&b[..], &want[..]);
        let mut r = Reader::new(b);
        assert_eq!(r.decode::<EntityAddr>().unwrap(), a);
        r.finish("addr").unwrap();
    }

    #[test]
    fn ipv6_round_trips_in_both_forms() {
        let a = EntityAddr::v1(
            "[fe80::1%3]:6800"
                .parse::<SocketAddrV6>()
                .map(SocketAddr::V6)
                .unwrap(),
            9,
        );
        assert_eq!(EntityAddr::from_legacy(&a.to_legacy()).unwrap(), a);
        let mut w = Writer::new(features::MSG_ADDR2);
        w.put(&a);
        assert_eq!(Reader::new(w.finish()).decode::<EntityAddr>().unwrap(), a);
    }

    #[test]
    fn addrvec_forms() {
        let v = EntityAddrVec(vec![
            EntityAddr {
                ty: AddrType::MSGR2,
                nonce: 0,
                addr: Some(v4("127.0.0.1:40000")),
            },
            EntityAddr::v1(v4("127.0.0.1:40001"), 0),
        ]);
        let mut w = Writer::new(features::PACIFIC_ALL);
        w.put(&v);
        let b = w.finish();
        assert_eq!(b[0], 2);
        assert_eq!(Reader::new(b).decode::<EntityAddrVec>().unwrap(), v);
        // Without MSG_ADDR2 only the v1 entry survives, in legacy form.
        let mut w = Writer::new(0);
        w.put(&v);
        let b = w.finish();
        assert_eq!(b.len(), LEGACY_ADDR_LEN);
        let back = Reader::new(b).decode::<EntityAddrVec>().unwrap();
        assert_eq!(back.0, vec![EntityAddr::v1(v4("127.0.0.1:40001"), 0)]);
        assert_eq!(
            Reader::new(Bytes::from_static(&[3])).decode::<EntityAddrVec>(),
            Err(DecodeError::Invalid {
                what: "entity_addrvec_t marker"
            })
        );
    }

    #[test]
    fn parse_and_display() {
        let a: EntityAddr = "v1:10.0.0.1:6789/42".parse().unwrap();
        assert_eq!(a, EntityAddr::v1(v4("10.0.0.1:6789"), 42));
        assert_eq!(a.to_string(), "v1:10.0.0.1:6789/42");
        assert_eq!(
            "127.0.0.1:1".parse::<EntityAddr>().unwrap().ty,
            AddrType::LEGACY
        );
        assert!("v1:nonsense".parse::<EntityAddr>().is_err());
        assert!("v1:1.2.3.4:5/x".parse::<EntityAddr>().is_err());
        assert_eq!(
            "osd.3".parse::<EntityName>().unwrap(),
            EntityName::new(EntityType::OSD, 3)
        );
        assert!("osd".parse::<EntityName>().is_err());
        assert_eq!(
            EntityName::new(EntityType::CLIENT, -1).to_string(),
            "client.?"
        );
    }

    #[test]
    fn race_order_is_memcmp_of_the_struct() {
        // Nonce is compared little-endian byte by byte: 256 (00 01 ..) sorts before 1 (01 00 ..).
        let a = EntityAddr::v1(v4("127.0.0.1:1"), 256);
        let b = EntityAddr::v1(v4("127.0.0.1:1"), 1);
        assert_eq!(a.ceph_cmp(&b), Ordering::Less);
        // Ports compare in network order.
        let c = EntityAddr::v1(v4("127.0.0.1:255"), 0);
        let d = EntityAddr::v1(v4("127.0.0.1:256"), 0);
        assert_eq!(c.ceph_cmp(&d), Ordering::Less);
    }
}
