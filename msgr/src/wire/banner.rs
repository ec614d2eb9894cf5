//! The v1 banner and the address exchange that follows it (docs §2.2 steps 1–3).
//!
//! Server → client: banner, the server's own legacy address, the address it sees for the
//! client (9 + 136 + 136 = 281 bytes). Client → server: banner, then the client's own legacy
//! address (9 + 136 = 145 bytes).

use crate::entity::{EntityAddr, LEGACY_ADDR_LEN};
use crate::error::DecodeError;

/// `CEPH_BANNER`: 9 ASCII bytes, no NUL, no length prefix.
pub const BANNER: &[u8; 9] = b"ceph v027";
/// Length of [`BANNER`].
pub const BANNER_LEN: usize = 9;
/// Length of what the server sends first.
pub const SERVER_HELLO_LEN: usize = BANNER_LEN + 2 * LEGACY_ADDR_LEN;
/// Length of what the client sends first (banner, then its address once it has read the
/// server's).
pub const CLIENT_HELLO_LEN: usize = BANNER_LEN + LEGACY_ADDR_LEN;

/// Checks the first 9 bytes of `buf` against the banner.
pub fn check_banner(buf: &[u8]) -> Result<(), DecodeError> {
    match buf.get(..BANNER_LEN) {
        None => Err(DecodeError::Truncated { what: "banner" }),
        Some(b) if b == BANNER => Ok(()),
        Some(_) => Err(DecodeError::BadBanner),
    }
}

/// The server's first words: its address and the address it sees for the client.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ServerHello {
    /// The server's own (legacy) address.
    pub server_addr: EntityAddr,
    /// The client's address as the server's socket sees it.
    pub client_addr: EntityAddr,
}

impl ServerHello {
    /// Parses [`SERVER_HELLO_LEN`] bytes.
    pub fn parse(buf: &[u8]) -> Result<Self, DecodeError> {
        if buf.len() < SERVER_HELLO_LEN {
            return Err(DecodeError::Truncated {
                what: "server banner and addresses",
            });
        }
        check_banner(buf)?;
        let server_addr = EntityAddr::from_legacy(&buf[BANNER_LEN..BANNER_LEN + LEGACY_ADDR_LEN])?;
        let client_addr =
            EntityAddr::from_legacy(&buf[BANNER_LEN + LEGACY_ADDR_LEN..SERVER_HELLO_LEN])?;
        Ok(Self {
            server_addr,
            client_addr,
        })
    }

    /// Encodes [`SERVER_HELLO_LEN`] bytes.
    pub fn emit(&self) -> [u8; SERVER_HELLO_LEN] {
        let mut b = [0u8; SERVER_HELLO_LEN];
        b[..BANNER_LEN].copy_from_slice(BANNER);
        b[BANNER_LEN..BANNER_LEN + LEGACY_ADDR_LEN].copy_from_slice(&self.server_addr.to_legacy());
        b[BANNER_LEN + LEGACY_ADDR_LEN..].copy_from_slice(&self.client_addr.to_legacy());
        b
    }
}

/// The client's banner and own address, as the server reads them.
pub fn parse_client_hello(buf: &[u8]) -> Result<EntityAddr, DecodeError> {
    if buf.len() < CLIENT_HELLO_LEN {
        return Err(DecodeError::Truncated {
            what: "client banner and address",
        });
    }
    check_banner(buf)?;
    EntityAddr::from_legacy(&buf[BANNER_LEN..CLIENT_HELLO_LEN])
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL_S2C: &[u8] = include_bytes!("../../tests/data/v1-ping-0-s2c.bin");
    const REAL_C2S: &[u8] = include_bytes!("../../tests/data/v1-ping-0-c2s.bin");

    #[test]
    fn parses_a_real_monitor_hello() {
        let h = ServerHello::parse(REAL_S2C).unwrap();
        let sa = h.server_addr.addr.unwrap();
        assert_eq!(sa.ip().to_string(), "127.0.0.1");
        assert_eq!(h.server_addr.nonce, 0, "mons use nonce 0");
        assert_eq!(h.client_addr.addr.unwrap().ip().to_string(), "127.0.0.1");
        // Re-encoding gives back Ceph's exact bytes.
        assert_eq!(&h.emit()[..], &REAL_S2C[..SERVER_HELLO_LEN]);
    }

    #[test]
    fn parses_a_real_client_hello() {
        let a = parse_client_hello(REAL_C2S).unwrap();
        assert!(a.addr.unwrap().ip().is_loopback());
        assert_eq!(a.port(), 0, "the ceph CLI binds no port");
        assert_eq!(&a.to_legacy()[..], &REAL_C2S[BANNER_LEN..CLIENT_HELLO_LEN]);
    }

    #[test]
    fn rejects_wrong_banner_and_truncation() {
        let mut bad = REAL_S2C[..SERVER_HELLO_LEN].to_vec();
        bad[5] = b'x';
        assert_eq!(ServerHello::parse(&bad), Err(DecodeError::BadBanner));
        assert_eq!(
            ServerHello::parse(&REAL_S2C[..100]),
            Err(DecodeError::Truncated {
                what: "server banner and addresses"
            })
        );
        assert_eq!(
            check_banner(b"ceph"),
            Err(DecodeError::Truncated { what: "banner" })
        );
        assert_eq!(
            parse_client_hello(b"ceph v028"),
            Err(DecodeError::Truncated {
                what: "client banner and address"
            })
        );
    }
}
