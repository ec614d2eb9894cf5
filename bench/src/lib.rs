//! Side-by-side benchmarks of the messenger's transports (dpdk, posix, simple) against the
//! raw-link ceiling and the kernel-TCP floor.
//!
//! Placeholder: built by the bench issue (#6). Micro-benchmarks live with their crates
//! (`msgr/benches`).
