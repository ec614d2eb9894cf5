//! The server's decision when a connect arrives for a peer that may already have a
//! session: Ceph's `ProtocolV1::handle_connect_message_2` after authentication, as a pure
//! function (docs/ceph-msgr-wire.md §2.8, rows 7–19; rows 1–6 are checked by the
//! connection itself before it asks).
//!
//! The messenger looks the peer's address up, summarizes what it finds as an
//! [`ExistingView`], and [`decide`] returns a [`Decision`] and the table row that produced
//! it. `Connection::resolve_accept` applies the decision to both connections.

use crate::wire::ConnectRepr;

/// Where an existing session is, as the table distinguishes it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ExistingState {
    /// Stopped: as good as no session.
    Closed,
    /// Still handshaking (either direction) or waiting to redial.
    Connecting,
    /// Open.
    Open,
    /// Parked after a fault.
    Standby,
}

/// What the table needs to know about an existing session with the same peer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ExistingView {
    /// Its state.
    pub state: ExistingState,
    /// Its `connect_seq`.
    pub connect_seq: u32,
    /// The peer's `global_seq` it last accepted or learned.
    pub peer_global_seq: u32,
    /// Its policy is lossy.
    pub lossy: bool,
    /// Its policy is `server`.
    pub policy_server: bool,
    /// It is in the middle of adopting another socket.
    pub replacing: bool,
}

/// The server's answer to a connect.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Decision {
    /// Open a new session on this connection (SEQ or READY).
    Open,
    /// Reply RETRY_GLOBAL: the client must use a global_seq above this.
    RetryGlobal(u32),
    /// Reply RETRY_SESSION: the client must use this connect_seq.
    RetrySession(u32),
    /// Reply RESETSESSION: we hold no session for a reconnecting client.
    ResetSession,
    /// Reply WAIT: our own outgoing connection wins the race.
    Wait,
    /// The existing session is lossy: reset and stop it, open a new one here.
    ReplaceLossy,
    /// The existing (lossless) session adopts this socket and answers RETRY_GLOBAL on it;
    /// the client's next connect then opens on the existing session.
    Replace {
        /// The peer restarted its session (cseq 0): open without the SEQ exchange.
        hard_reset: bool,
        /// Reset the existing session's queues and sequence numbers first.
        reset_session: bool,
    },
}

/// The §2.8 row a decision came from, for logs and tests.
pub type Row = u8;

/// Rows 7–19 of the server table.
///
/// - `resetcheck`: this connection's policy (for the peer's type) has `resetcheck`;
/// - `replacing`: this connection is the existing session that adopted the socket;
/// - `peer_lt_me`: the peer's address sorts before ours in Ceph's order
///   ([`crate::entity::EntityAddr::ceph_cmp`]).
pub fn decide(
    connect: &ConnectRepr,
    existing: Option<&ExistingView>,
    resetcheck: bool,
    replacing: bool,
    peer_lt_me: bool,
) -> (Decision, Row) {
    let Some(ex) = existing else {
        if !replacing && connect.connect_seq > 0 {
            return (Decision::ResetSession, 18);
        }
        return (Decision::Open, 19);
    };
    if ex.state == ExistingState::Closed {
        return (Decision::Open, 8);
    }
    if ex.replacing {
        return (Decision::RetryGlobal(ex.peer_global_seq), 9);
    }
    if connect.global_seq < ex.peer_global_seq {
        return (Decision::RetryGlobal(ex.peer_global_seq), 10);
    }
    if ex.lossy {
        return (Decision::ReplaceLossy, 11);
    }
    if connect.connect_seq == 0 && ex.connect_seq > 0 {
        return (
            Decision::Replace {
                hard_reset: true,
                reset_session: resetcheck,
            },
            12,
        );
    }
    if connect.connect_seq < ex.connect_seq {
        return (Decision::RetrySession(ex.connect_seq.wrapping_add(1)), 13);
    }
    if connect.connect_seq == ex.connect_seq {
        if matches!(ex.state, ExistingState::Open | ExistingState::Standby) {
            if resetcheck && ex.connect_seq == 0 {
                return (
                    Decision::Replace {
                        hard_reset: false,
                        reset_session: false,
                    },
                    14,
                );
            }
            return (Decision::RetrySession(ex.connect_seq.wrapping_add(1)), 14);
        }
        if peer_lt_me || ex.policy_server {
            return (
                Decision::Replace {
                    hard_reset: false,
                    reset_session: false,
                },
                15,
            );
        }
        return (Decision::Wait, 15);
    }
    if resetcheck && ex.connect_seq == 0 {
        return (Decision::ResetSession, 16);
    }
    (
        Decision::Replace {
            hard_reset: false,
            reset_session: false,
        },
        17,
    )
}

#[cfg(test)]
mod tests {
    //! One test per row of docs §2.8 that this function owns; rows 1–6 are tested on the
    //! connection (tests/handshake.rs), where they are decided.
    use super::*;
    use crate::entity::EntityType;

    fn connect(global_seq: u32, connect_seq: u32) -> ConnectRepr {
        ConnectRepr {
            features: crate::features::PACIFIC_ALL,
            host_type: EntityType::OSD,
            global_seq,
            connect_seq,
            protocol_version: 10,
            authorizer_protocol: 0,
            authorizer_len: 0,
            flags: 0,
        }
    }

    fn ex(state: ExistingState, connect_seq: u32, peer_global_seq: u32) -> ExistingView {
        ExistingView {
            state,
            connect_seq,
            peer_global_seq,
            lossy: false,
            policy_server: false,
            replacing: false,
        }
    }

    use ExistingState::*;

    #[test]
    fn row_8_closed_existing_opens() {
        assert_eq!(
            decide(&connect(5, 3), Some(&ex(Closed, 9, 9)), true, false, false),
            (Decision::Open, 8)
        );
    }

    #[test]
    fn row_9_existing_mid_replace_retries_global() {
        let e = ExistingView {
            replacing: true,
            ..ex(Open, 1, 7)
        };
        assert_eq!(
            decide(&connect(99, 1), Some(&e), true, false, false),
            (Decision::RetryGlobal(7), 9)
        );
    }

    #[test]
    fn row_10_stale_global_seq_retries_global() {
        assert_eq!(
            decide(&connect(5, 1), Some(&ex(Open, 1, 10)), true, false, false),
            (Decision::RetryGlobal(10), 10)
        );
    }

    #[test]
    fn row_11_lossy_existing_is_replaced() {
        let e = ExistingView {
            lossy: true,
            ..ex(Open, 4, 2)
        };
        assert_eq!(
            decide(&connect(3, 0), Some(&e), false, false, false),
            (Decision::ReplaceLossy, 11)
        );
    }

    #[test]
    fn row_12_peer_reset_replaces() {
        assert_eq!(
            decide(&connect(11, 0), Some(&ex(Open, 1, 10)), true, false, false),
            (
                Decision::Replace {
                    hard_reset: true,
                    reset_session: true
                },
                12
            )
        );
        assert_eq!(
            decide(&connect(11, 0), Some(&ex(Open, 1, 10)), false, false, false),
            (
                Decision::Replace {
                    hard_reset: true,
                    reset_session: false
                },
                12
            ),
            "without resetcheck the session survives"
        );
    }

    #[test]
    fn retry_session_wraps_an_existing_connect_seq_of_u32_max() {
        // Ceph's `existing->connect_seq + 1` is unsigned and wraps; it must not overflow.
        assert_eq!(
            decide(
                &connect(11, 1),
                Some(&ex(Connecting, u32::MAX, 10)),
                true,
                false,
                false
            ),
            (Decision::RetrySession(0), 13)
        );
        assert_eq!(
            decide(
                &connect(11, u32::MAX),
                Some(&ex(Open, u32::MAX, 10)),
                true,
                false,
                false
            ),
            (Decision::RetrySession(0), 14)
        );
    }

    #[test]
    fn row_13_old_connect_seq_retries_session() {
        assert_eq!(
            decide(
                &connect(11, 1),
                Some(&ex(Connecting, 3, 10)),
                true,
                false,
                false
            ),
            (Decision::RetrySession(4), 13)
        );
    }

    #[test]
    fn row_14_equal_cseq_on_open_session_retries() {
        assert_eq!(
            decide(&connect(11, 1), Some(&ex(Open, 1, 10)), true, false, false),
            (Decision::RetrySession(2), 14)
        );
        assert_eq!(
            decide(
                &connect(11, 1),
                Some(&ex(Standby, 1, 10)),
                false,
                false,
                false
            ),
            (Decision::RetrySession(2), 14)
        );
        // Both at zero: replace rather than deadlock.
        assert_eq!(
            decide(&connect(11, 0), Some(&ex(Open, 0, 10)), true, false, false),
            (
                Decision::Replace {
                    hard_reset: false,
                    reset_session: false
                },
                14
            )
        );
    }

    #[test]
    fn row_15_connection_race() {
        let e = ex(Connecting, 0, 0);
        assert_eq!(
            decide(&connect(2, 0), Some(&e), false, false, true),
            (
                Decision::Replace {
                    hard_reset: false,
                    reset_session: false
                },
                15
            ),
            "lower peer address wins"
        );
        assert_eq!(
            decide(&connect(2, 0), Some(&e), false, false, false),
            (Decision::Wait, 15),
            "our outgoing wins"
        );
        let server = ExistingView {
            policy_server: true,
            ..e
        };
        assert_eq!(
            decide(&connect(2, 0), Some(&server), false, false, false),
            (
                Decision::Replace {
                    hard_reset: false,
                    reset_session: false
                },
                15
            ),
            "a server never waits for its own dial"
        );
    }

    #[test]
    fn row_16_we_reset_sends_resetsession() {
        assert_eq!(
            decide(
                &connect(11, 2),
                Some(&ex(Connecting, 0, 10)),
                true,
                false,
                false
            ),
            (Decision::ResetSession, 16)
        );
    }

    #[test]
    fn row_17_normal_reconnect_replaces() {
        assert_eq!(
            decide(
                &connect(11, 2),
                Some(&ex(Standby, 1, 10)),
                true,
                false,
                false
            ),
            (
                Decision::Replace {
                    hard_reset: false,
                    reset_session: false
                },
                17
            )
        );
        assert_eq!(
            decide(
                &connect(11, 2),
                Some(&ex(Connecting, 0, 10)),
                false,
                false,
                false
            ),
            (
                Decision::Replace {
                    hard_reset: false,
                    reset_session: false
                },
                17
            ),
            "cseq 0 existing without resetcheck"
        );
    }

    #[test]
    fn row_18_unknown_peer_reconnecting_is_reset() {
        assert_eq!(
            decide(&connect(3, 3), None, true, false, false),
            (Decision::ResetSession, 18)
        );
    }

    #[test]
    fn row_19_new_session_opens() {
        assert_eq!(
            decide(&connect(3, 0), None, true, false, false),
            (Decision::Open, 19)
        );
        assert_eq!(
            decide(&connect(3, 5), None, true, true, false),
            (Decision::Open, 19),
            "the replacing session opens"
        );
    }
}
