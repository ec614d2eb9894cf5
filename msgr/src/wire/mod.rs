//! msgr v1 on the wire: zero-copy views, typed representations and encoders.
//!
//! Following smoltcp's `wire` layer, each fixed-layout structure has
//! - a **view** (`Connect<T: AsRef<[u8]>>`, `Header<T>`, ...) over a byte buffer, with a private
//!   `field` module of byte ranges, `new_unchecked` / `new_checked` / `check_len`, and typed
//!   getters (and setters when `T: AsMut<[u8]>`). Once `check_len` passes no accessor panics;
//! - a **representation** (`ConnectRepr`, `HeaderRepr`, ...) holding only valid values, with
//!   `parse` (length, then semantics: CRCs, limits) and `emit` into a buffer of exactly
//!   `buffer_len()` bytes.
//!
//! Layout sources: `msgr.h` and `msg_types.h` of Ceph Pacific, checked against real traffic
//! (docs/ceph-msgr-wire.md §2, §8, §10). Everything is little-endian except inside
//! sockaddrs (see [`crate::entity`]).
//!
//! | module | what |
//! |---|---|
//! | [`banner`] | `ceph v027` and the address exchange that follows it |
//! | [`connect`] | `ceph_msg_connect` (33 bytes) and `ceph_msg_connect_reply` (26 bytes) |
//! | [`tag`] | `CEPH_MSGR_TAG_*` |
//! | [`header`] | `ceph_msg_header` (53 bytes) and its CRC |
//! | [`footer`] | `ceph_msg_footer` (21 bytes) / `ceph_msg_footer_old` (13 bytes) |
//! | [`frame`] | the open-session stream: MSG, ACK, KEEPALIVE(2)(_ACK), CLOSE |

pub mod banner;
pub mod connect;
pub mod footer;
pub mod frame;
pub mod header;
pub mod tag;

pub use banner::{BANNER, BANNER_LEN};
pub use connect::{Connect, ConnectReply, ConnectReplyRepr, ConnectRepr};
pub use footer::{FooterKind, FooterRepr};
pub use frame::{FrameConfig, Limits, Peek, Timespec};
pub use header::{Header, HeaderRepr};
pub use tag::Tag;

/// A byte range inside a fixed-layout structure.
type Field = core::ops::Range<usize>;
