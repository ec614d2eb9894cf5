//! The userspace network stack: DPDK poll-mode queues feeding smoltcp, one worker per queue.
//!
//! Placeholder: built by the userspace-stack issue (#4). It will be the only crate with
//! unsafe DPDK calls (in `stack::dpdk`), every block with a `SAFETY:` comment.
#![deny(unsafe_code)]
