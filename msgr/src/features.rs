//! Ceph feature bits (`ceph_features.h`) that change what goes on the wire.
//!
//! Features are a `u64` mask exchanged in `ceph_msg_connect` / `connect_reply`; the
//! connection's features are the intersection. Advertising a bit obliges us to speak the
//! encodings it implies (docs/ceph-msgr-wire.md §2.9), so each bit we advertise is listed
//! here with what it changes.

/// Messages carry no source address (the peer knows it from the connection).
pub const NOSRCADDR: u64 = 1 << 1;
/// MMonSubscribe v2+ encoding (map of `{start, flags}`).
pub const SUBSCRIBE2: u64 = 1 << 4;
/// MonMap carries monitor names.
pub const MONNAMES: u64 = 1 << 5;
/// The `TAG_SEQ` exchange on reconnect.
pub const RECONNECT_SEQ: u64 = 1 << 6;
/// Replies to OSD ops multiplexed on the client's connection.
pub const OSDREPLYMUX: u64 = 1 << 12;
/// MonMap versioned encoding.
pub const MONENC: u64 = 1 << 15;
/// CRUSH tunables (required by a Pacific mon from every client).
pub const CRUSH_TUNABLES: u64 = 1 << 18;
/// 21-byte message footer with a signature field (else the 13-byte old footer).
pub const MSG_AUTH: u64 = 1 << 23;
/// CRUSH tunables v2.
pub const CRUSH_TUNABLES2: u64 = 1 << 25;
/// Keepalive with a timestamp (`TAG_KEEPALIVE2`) and its ack.
pub const MSGR_KEEPALIVE2: u64 = 1 << 42;
/// Incarnation bit 57 (`SERVER_JEWEL`, `MON_STATEFUL_SUB`).
pub const INCARNATION_2: u64 = 1 << 57;
/// Incarnation bits 57 and 28.
pub const INCARNATION_3: u64 = (1 << 57) | (1 << 28);
/// Stateful monitor subscriptions: no MMonSubscribeAck.
pub const MON_STATEFUL_SUB: u64 = INCARNATION_2;
/// New `entity_addr_t` form (marker 1) and addrvecs (marker 2) inside payloads.
pub const MSG_ADDR2: u64 = 1 << 59;
/// cephx v2 authorizers.
pub const CEPHX_V2: u64 = 1 << 61;
/// Luminous server (mask with incarnation 2).
pub const SERVER_LUMINOUS: u64 = (1 << 21) | INCARNATION_2;
/// Nautilus server (mask with incarnation 3): address type "any" allowed in payloads.
pub const SERVER_NAUTILUS: u64 = (1 << 2) | INCARNATION_3;
/// Octopus server.
pub const SERVER_OCTOPUS: u64 = (1 << 16) | INCARNATION_3;
/// Pacific server.
pub const SERVER_PACIFIC: u64 = (1 << 20) | INCARNATION_3;

/// Every feature Ceph Pacific 16.2.15 advertises (observed from the Debian ceph-mon).
///
/// This is our default `features_supported`: a Pacific peer accepts it with `TAG_SEQ`.
pub const PACIFIC_ALL: u64 = 0x3f01_cfbd_fffd_ffff;

/// What a fresh Pacific mon requires of a client because of its CRUSH map (§2.9).
pub const PACIFIC_MON_CLIENT_REQUIRED: u64 = 0x0401_0200_0204_0000;

/// Whether `features` contains every bit of `mask`.
pub const fn has(features: u64, mask: u64) -> bool {
    features & mask == mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacific_set_contains_what_we_rely_on() {
        for f in [
            NOSRCADDR,
            SUBSCRIBE2,
            MONNAMES,
            RECONNECT_SEQ,
            MSG_AUTH,
            MSGR_KEEPALIVE2,
            MSG_ADDR2,
            SERVER_NAUTILUS,
            SERVER_PACIFIC,
        ] {
            assert!(has(PACIFIC_ALL, f), "{f:#x}");
        }
        assert!(has(PACIFIC_ALL, PACIFIC_MON_CLIENT_REQUIRED));
    }
}
