//! What a connection is configured with: who we are, per-peer-type policies, timers,
//! CRC and size options, and the messenger-wide `global_seq` counter.
//!
//! Policies follow Ceph's `Messenger::Policy` and its presets (docs §3). Option defaults
//! are Ceph Pacific's (`ms_*` in `options.cc`, docs §2.11).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::throttle::RecvThrottles;
use crate::entity::{EntityAddr, EntityName, EntityType};
use crate::features;
use crate::msg::priority;
use crate::wire::Limits;

/// How sessions with one type of peer behave (Ceph's `Messenger::Policy`).
#[derive(Clone, Debug)]
pub struct Policy {
    /// Drop the session on any fault; messages may be lost (each loss reported as a reset).
    pub lossy: bool,
    /// Never initiate a reconnect: on fault, park in standby and wait for the peer.
    pub server: bool,
    /// When idle after a fault, park instead of reconnecting until something is queued.
    pub standby: bool,
    /// Detect peer session resets (enables RESETSESSION and the cseq-0 replace rule).
    pub resetcheck: bool,
    /// Server only: register incoming lossy sessions so a new one from the same address
    /// replaces the old (otherwise they are anonymous).
    pub register_lossy_clients: bool,
    /// Features we offer.
    pub features_supported: u64,
    /// Features the peer must have.
    pub features_required: u64,
    /// Throttles every incoming message of this peer type must pass.
    pub throttles: RecvThrottles,
}

impl Policy {
    fn preset(
        lossy: bool,
        server: bool,
        standby: bool,
        resetcheck: bool,
        register: bool,
        required: u64,
    ) -> Self {
        Self {
            lossy,
            server,
            standby,
            resetcheck,
            register_lossy_clients: register,
            features_supported: features::PACIFIC_ALL,
            features_required: required,
            throttles: RecvThrottles::default(),
        }
    }

    /// Server keeping per-client sessions across reconnects (MDS ← client).
    pub fn stateful_server(required: u64) -> Self {
        Self::preset(false, true, true, true, true, required)
    }
    /// Lossy server with one registered session per client address (OSD public).
    pub fn stateless_registered_server(required: u64) -> Self {
        Self::preset(true, true, false, false, true, required)
    }
    /// Lossy server with anonymous sessions (mon ← clients).
    pub fn stateless_server(required: u64) -> Self {
        Self::preset(true, true, false, false, false, required)
    }
    /// Symmetric daemons (osd ↔ osd).
    pub fn lossless_peer(required: u64) -> Self {
        Self::preset(false, false, true, false, true, required)
    }
    /// Symmetric daemons that detect resets (mon ↔ mon).
    pub fn lossless_peer_reuse(required: u64) -> Self {
        Self::preset(false, false, true, true, true, required)
    }
    /// Clients of mons and OSDs (librados, MonClient).
    pub fn lossy_client(required: u64) -> Self {
        Self::preset(true, false, false, false, true, required)
    }
    /// Clients needing a reliable session.
    pub fn lossless_client(required: u64) -> Self {
        Self::preset(false, false, false, true, true, required)
    }
}

impl Default for Policy {
    /// Ceph's default-constructed policy: lossless, not server, resetcheck on.
    fn default() -> Self {
        Self::preset(false, false, false, true, true, 0)
    }
}

/// Policies per peer type, with a default for types not listed.
#[derive(Clone, Debug, Default)]
pub struct Policies {
    /// For peer types without their own entry.
    pub default: Policy,
    /// Per peer type.
    pub by_type: BTreeMap<EntityType, Policy>,
}

impl Policies {
    /// The policy for a peer of type `t`.
    pub fn get(&self, t: EntityType) -> &Policy {
        self.by_type.get(&t).unwrap_or(&self.default)
    }

    /// Sets the policy for one peer type (builder style).
    pub fn with(mut self, t: EntityType, p: Policy) -> Self {
        self.by_type.insert(t, p);
        self
    }
}

/// Timers, CRC switches and limits (Ceph's `ms_*` options).
#[derive(Clone, Debug)]
pub struct Options {
    /// `ms_connection_ready_timeout`: a handshake must finish within this.
    pub ready_timeout: Duration,
    /// `ms_connection_idle_timeout`: an open session with no traffic faults after this.
    pub idle_timeout: Duration,
    /// A message whose header has taken throttle budget must keep arriving: every window
    /// of this length must bring the rest of it or at least 64 KiB per second of the
    /// window, or the connection faults (`body_timeout`) and the budget goes back. Ceph
    /// holds the budget until `ms_connection_idle_timeout` (900 s), so a peer that sends
    /// headers and never the bodies stalls every other client's messages for that long;
    /// Ceph has cephx in front of it, a messenger with auth none does not. `None`: no
    /// check.
    pub body_timeout: Option<Duration>,
    /// `ms_initial_backoff`: first redial delay after a failed connect.
    pub initial_backoff: Duration,
    /// `ms_max_backoff`: cap of the doubling backoff, and the delay after WAIT.
    pub max_backoff: Duration,
    /// Send a KEEPALIVE2 this often on open sessions (Ceph's MonClient does so; the
    /// messenger itself only on request). `None`: only on `send_keepalive`.
    pub keepalive_interval: Option<Duration>,
    /// `ms_crc_header`: compute and check header, front and middle CRCs.
    pub crc_header: bool,
    /// `ms_crc_data`: compute and check data CRCs.
    pub crc_data: bool,
    /// Largest segments and authorizers accepted.
    pub limits: Limits,
    /// Priority given to messages sent with priority 0 (`CEPH_MSG_PRIO_DEFAULT`).
    pub default_priority: u16,
    /// `ms_learn_addr_from_peer`: take our IP from what the server says it sees.
    pub learn_addr_from_peer: bool,
    /// Most messages queued for sending on one connection before `send_message` refuses.
    pub max_queued_messages: usize,
    /// Most payload bytes one connection holds for its peer — queued, and written but not
    /// yet acknowledged — before `send_message` refuses (`QueueFull`): a stalled receiver
    /// makes its senders fail instead of buffering without bound.
    pub max_queued_bytes: usize,
    /// Most stream items `handle_input` processes per call before yielding.
    pub input_budget: usize,
    /// Most `ceph_msg_connect`s a server takes on one transport (each answered with a
    /// retry, a reset or a refusal) before it gives the transport up as misbehaving. An
    /// honest client needs a few (RESETSESSION, RETRY_GLOBAL, RETRY_SESSION, a replace);
    /// a peer looping on stale sequence numbers would otherwise take the session table's
    /// lock at wire speed until the ready timeout. 0: no limit (Ceph has none).
    pub max_connect_attempts: u32,
    /// Messenger-wide: accepted connections that may be in their handshake at once (Ceph
    /// has no such bound; the kernel's default listen backlog, `somaxconn`, is 4096). At
    /// the bound, each new accept closes the oldest handshake still in progress: memory,
    /// sockets and (on the simple transport) threads stay bounded under a connection
    /// flood or a slowloris, while a new client, whose handshake takes a round trip or
    /// two, still gets in. 0: no limit.
    pub max_handshakes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            ready_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(900),
            body_timeout: Some(Duration::from_secs(10)),
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(15),
            keepalive_interval: None,
            crc_header: true,
            crc_data: true,
            limits: Limits::default(),
            default_priority: priority::DEFAULT,
            learn_addr_from_peer: true,
            max_queued_messages: 1 << 16,
            max_queued_bytes: 1 << 30,
            input_budget: 256,
            max_connect_attempts: 32,
            max_handshakes: 4096,
        }
    }
}

/// How this side authenticates in `ceph_msg_connect` (msgr v1 authorizers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthConfig {
    /// Send no authorizer (protocol 0). What clients send to mons (they authenticate
    /// later with MAuth).
    Empty,
    /// Send an auth-none authorizer (protocol 1) naming `id` (e.g. "admin" for
    /// client.admin) with the `global_id` the mon assigned.
    None {
        /// The auth entity id.
        id: String,
        /// The global id from MAuthReply (0 before auth).
        global_id: u64,
    },
}

/// Ceph's messenger-wide `global_seq`: a counter bumped on every connect attempt and
/// moved past any value a peer reports (`get_global_seq(old)`).
#[derive(Clone, Debug, Default)]
pub struct GlobalSeq(Arc<AtomicU32>);

impl GlobalSeq {
    /// A counter starting at 0 (the first attempt uses 1).
    pub fn new() -> Self {
        Self::default()
    }

    /// The next value.
    pub fn next(&self) -> u32 {
        self.0.fetch_add(1, Ordering::AcqRel).wrapping_add(1)
    }

    /// The next value above both the counter and `old`.
    pub fn next_above(&self, old: u32) -> u32 {
        self.0.fetch_max(old, Ordering::AcqRel);
        self.next()
    }

    /// The last value handed out.
    pub fn current(&self) -> u32 {
        self.0.load(Ordering::Acquire)
    }
}

/// Everything a connection needs to know about its messenger.
#[derive(Clone, Debug)]
pub struct Config {
    /// Our entity name (type and number), put in every message header we send.
    pub name: EntityName,
    /// Our address (IP may be blank: then we learn it from the first server we reach).
    pub addr: EntityAddr,
    /// Policies per peer type.
    pub policies: Policies,
    /// Options.
    pub options: Options,
    /// Authorizer to send.
    pub auth: AuthConfig,
    /// Whether to accept a connect with no authorizer (what a mon does for non-mon peers).
    pub accept_empty_authorizer: bool,
    /// The messenger's `global_seq`, shared by all its connections.
    pub global_seq: GlobalSeq,
}

impl Config {
    /// A configuration with Ceph's defaults for an entity `name` at `addr`.
    pub fn new(name: EntityName, addr: EntityAddr) -> Self {
        Self {
            name,
            addr,
            policies: Policies::default(),
            options: Options::default(),
            auth: AuthConfig::Empty,
            accept_empty_authorizer: true,
            global_seq: GlobalSeq::new(),
        }
    }

    /// The protocol version for a session with a peer of type `peer` (Ceph's
    /// `get_proto_version`): same type → our cluster protocol; otherwise chosen by the
    /// peer's type when connecting and by ours when accepting, so both ends agree.
    pub fn proto_version(&self, peer: EntityType, connecting: bool) -> u32 {
        let me = self.name.ty;
        if peer == me {
            return match me {
                EntityType::MON => 13,
                EntityType::OSD => 10,
                EntityType::MDS => 36,
                _ => 0,
            };
        }
        match if connecting { peer } else { me } {
            EntityType::MON => 15,
            EntityType::OSD => 24,
            EntityType::MDS => 32,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_match_ceph() {
        let p = Policy::stateless_server(0);
        assert!(p.lossy && p.server && !p.standby && !p.resetcheck && !p.register_lossy_clients);
        let p = Policy::lossless_peer_reuse(0);
        assert!(!p.lossy && !p.server && p.standby && p.resetcheck);
        let p = Policy::default();
        assert!(!p.lossy && p.resetcheck && p.register_lossy_clients);
    }

    #[test]
    fn global_seq_moves_past_peers() {
        let g = GlobalSeq::new();
        assert_eq!(g.next(), 1);
        assert_eq!(g.next_above(10), 11);
        assert_eq!(g.next_above(3), 12);
    }

    #[test]
    fn proto_versions_agree_on_both_ends() {
        let client = Config::new(EntityName::new(EntityType::CLIENT, -1), EntityAddr::none());
        let mon = Config::new(EntityName::new(EntityType::MON, 0), EntityAddr::none());
        let osd = Config::new(EntityName::new(EntityType::OSD, 0), EntityAddr::none());
        assert_eq!(client.proto_version(EntityType::MON, true), 15);
        assert_eq!(mon.proto_version(EntityType::CLIENT, false), 15);
        assert_eq!(client.proto_version(EntityType::OSD, true), 24);
        assert_eq!(osd.proto_version(EntityType::CLIENT, false), 24);
        assert_eq!(osd.proto_version(EntityType::OSD, true), 10);
        assert_eq!(mon.proto_version(EntityType::MON, false), 13);
    }
}
