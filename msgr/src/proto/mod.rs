//! The msgr v1 connection engine: a sans-IO state machine (STYLE.md R1–R3, R5).
//!
//! A [`Connection`] owns no socket, clock, thread or lock. Drivers (the kernel-TCP and DPDK
//! transports, the test simulator) feed it bytes and time and carry out what it asks.
//!
//! # Call order
//!
//! ```text
//! create:   Connection::connect(...)  (client; emits Event::Dial)
//!           Connection::accept(...)   (server, for a freshly accepted transport)
//! inputs:   handle_connected / handle_transport_error / handle_input / handle_timeout
//!           resolve_accept (server, after Event::AcceptRequest)
//! commands: send_message / send_keepalive / mark_down
//! then, after any of the above, drain the outputs in this order:
//!   1. poll_transmit until None   → write every chunk to the transport
//!   2. poll_timeout               → arm one timer; call handle_timeout when it passes
//!   3. poll_event until None      → Dial, AcceptRequest, Connected, Message, Reset...
//! ```
//!
//! `now` must not go backwards between calls. When a `handle_*` returns `Err(Fault)` the
//! engine has already taken Ceph's reaction (reset a lossy session, park in standby, back
//! off and redial); the driver only closes the transport and drops its receive buffer.
//!
//! # Modules
//! - [`config`]: who we are, policies and their Ceph presets, options, `global_seq`.
//! - [`accept`]: the server's decision table (docs/ceph-msgr-wire.md §2.8) as a pure fn.
//! - [`error`]: faults and errors by who is at fault.
//! - [`throttle`]: receive throttles as shared counters with RAII release.
//! - `connection`, `session`, `timer`, `rng`: the engine itself.

pub mod accept;
pub mod config;
mod connection;
pub mod error;
mod rng;
mod session;
pub mod throttle;
mod timer;

pub use accept::{Decision, ExistingState, ExistingView};
pub use config::{AuthConfig, Config, GlobalSeq, Options, Policies, Policy};
pub use connection::{AcceptOutcome, ConnStats, Connection, Event, InputStatus, Phase, Received};
pub use error::{Fault, PeerIncompatible, PeerMisbehaved, SendError, Timeout, TransportError};
pub use throttle::{RecvThrottles, Throttle, ThrottleGuard};
