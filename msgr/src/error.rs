//! Errors for malformed bytes, shared by `denc`, `wire` and `msg`.
//!
//! Errors are typed by who is at fault (STYLE.md R5). This module holds the cheapest one:
//! [`DecodeError`], "the peer sent bytes that do not parse". It is `Copy` so that decoders
//! can return it from hot paths without allocating. Errors that need the connection's state
//! to judge (a frame in the wrong state, a stale sequence number) live in `proto::error`.

use std::fmt;

/// Bytes from the network (or a file) that do not decode.
///
/// Every decoder in this crate returns this instead of panicking, whatever the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before `what` was complete.
    Truncated {
        /// The item being decoded.
        what: &'static str,
    },
    /// `what` decoded but bytes were left over inside its bounds.
    TrailingData {
        /// The item being decoded.
        what: &'static str,
    },
    /// The 9-byte banner was not `ceph v027`.
    BadBanner,
    /// A CRC did not match.
    BadCrc {
        /// Which CRC: "header", "front", "middle" or "data".
        what: &'static str,
        /// CRC carried on the wire.
        expected: u32,
        /// CRC computed over the received bytes.
        computed: u32,
    },
    /// A stream tag that v1 does not define (or not in this state).
    UnknownTag(u8),
    /// A length field above the configured limit.
    TooLarge {
        /// The field.
        what: &'static str,
        /// Its value.
        len: u64,
        /// The configured limit.
        limit: u64,
    },
    /// A field holds a value its type cannot have (bad marker, bad UTF-8, bad family...).
    Invalid {
        /// The field.
        what: &'static str,
    },
    /// A struct whose `compat` version is newer than this decoder understands.
    UnsupportedVersion {
        /// The struct.
        what: &'static str,
        /// The encoder's compat version.
        compat: u8,
        /// The newest version this decoder understands.
        supported: u8,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { what } => write!(f, "truncated {what}"),
            Self::TrailingData { what } => write!(f, "trailing bytes after {what}"),
            Self::BadBanner => f.write_str("bad banner (expected \"ceph v027\")"),
            Self::BadCrc {
                what,
                expected,
                computed,
            } => {
                write!(
                    f,
                    "bad {what} crc: wire {expected:#010x}, computed {computed:#010x}"
                )
            }
            Self::UnknownTag(t) => write!(f, "unknown tag {t}"),
            Self::TooLarge { what, len, limit } => {
                write!(f, "{what} length {len} exceeds limit {limit}")
            }
            Self::Invalid { what } => write!(f, "invalid {what}"),
            Self::UnsupportedVersion {
                what,
                compat,
                supported,
            } => write!(
                f,
                "{what} needs decoder version {compat}, this one understands up to {supported}"
            ),
        }
    }
}

impl std::error::Error for DecodeError {}
