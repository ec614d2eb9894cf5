//! msgr: a Ceph-wire-compatible messenger.
//!
//! Layers, from the bytes up (each module's doc states its contract):
//! - [`crc`], [`denc`], [`entity`], [`features`]: Ceph's CRC convention, encoding
//!   primitives, addresses and feature bits.
//! - [`wire`]: zero-copy views and encoders for everything msgr v1 puts on the wire.
//! - [`msg`]: the message envelope and typed messages (MPing, MAuth, MMonMap, MOSDOp...).
//! - [`proto`]: the connection engine, a sans-IO state machine. It takes bytes and time in
//!   and gives bytes, deadlines and events out; it owns no socket, clock, thread or lock.
//! - [`time`]: the [`time::Instant`] drivers pass in.
//!
//! Transports (kernel TCP, DPDK) are thin drivers around [`proto::Connection`].
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admin;
pub mod blocking;
pub mod crc;
pub mod denc;
pub mod entity;
pub mod error;
pub mod features;
pub mod messenger;
pub mod msg;
pub mod osd;
pub mod procstat;
pub mod proto;
pub mod time;
pub mod wire;
