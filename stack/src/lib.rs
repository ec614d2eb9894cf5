//! The userspace network stack: DPDK poll-mode queues feeding smoltcp, one worker per queue.
//!
//! Layers, bottom up:
//! - [`port::Port`]: a queue pair that moves Ethernet frames: a DPDK queue pair
//!   ([`dpdkport::DpdkPort`] over the safe wrapper [`dpdk`], the crate's only unsafe code),
//!   or the in-memory link of [`memlink`] for tests without DPDK.
//! - [`l2`]: Ethernet framing and ARP with one neighbour table shared by all workers.
//! - [`netstack::NetStack`]: one worker's TCP/IP: flows demultiplexed by 4-tuple into small
//!   shards, each its own smoltcp `Interface` (smoltcp scans every socket of an Interface per
//!   packet; small shards keep that flat as connections grow), a pool of listeners per shard,
//!   Nagle and delayed ACK off, RSS-aware local ports for outbound connections ([`rss`]).
//! - [`pcap`]: packet capture of a stack's frames to a pcap file, off the data path (a
//!   writer thread behind a bounded queue).
//!
//! Time comes in as an argument everywhere (`smoltcp::time::Instant`): the stack is
//! deterministic under test.
#![deny(unsafe_code)]

pub mod checksum;
pub mod dpdk;
pub mod dpdk_files;
pub mod dpdkport;
pub mod l2;
pub mod memlink;
pub mod netstack;
pub mod pcap;
/// Process plumbing for tests and benchmarks that run a DPDK peer in a second process.
pub mod peer;
pub mod port;
pub mod rss;
pub mod worker;

/// The smoltcp this stack is built on (its address and time types are in the API).
pub use smoltcp;

pub use dpdkport::DpdkPort;
pub use netstack::{ConnId, NetStack, StackConfig, StackEvent, StackStats};
pub use port::Port;
pub use worker::{IdlePolicy, Worker};
