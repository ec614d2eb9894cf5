//! The steps of a MonClient session, on the blocking driver: handshake, MPing, auth-none
//! MAuth with the MMonMap that follows, MMonSubscribe, MMonGetVersion, KEEPALIVE2.
//! Shared by the interop tests (which assert) and the demo (which prints).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use msgr::blocking::BlockingConn;
use msgr::entity::{EntityAddr, EntityName, EntityType};
use msgr::msg::{
    AuthEntityName, MAuth, MAuthReply, MMonGetVersion, MMonGetVersionReply, MMonMap, MMonSubscribe,
    MPing, MonMap, MsgType, TypedMessage,
};
use msgr::proto::{Config, Event, Policy};

pub(crate) const STEP: Duration = Duration::from_secs(10);

/// A session with one monitor, as `client.?` before auth.
pub(crate) struct MonSession {
    pub(crate) conn: BlockingConn,
}

/// The configuration a librados client uses towards monitors (lossy_client, all Pacific
/// features, no address of its own yet).
pub(crate) fn client_config() -> Config {
    let nonce = std::process::id() ^ 0x5a5a_0000;
    let mut cfg = Config::new(
        EntityName::new(EntityType::CLIENT, EntityName::NEW),
        EntityAddr {
            nonce,
            ..EntityAddr::none()
        },
    );
    cfg.policies.default = Policy::lossy_client(0);
    cfg
}

impl MonSession {
    /// Connects to the monitor's v1 address (monitors use nonce 0).
    pub(crate) fn connect(mon: SocketAddr) -> Result<Self, String> {
        let target = EntityAddr::v1(mon, 0);
        let conn = BlockingConn::connect(client_config(), target, EntityType::MON, STEP)
            .map_err(|e| format!("connect to {target}: {e}"))?;
        Ok(Self { conn })
    }

    /// MPing → MPing with the monitor's health JSON. Returns the round trip and the JSON.
    pub(crate) fn ping(&mut self) -> Result<(Duration, String), String> {
        let t = Instant::now();
        self.conn
            .send(MPing::new().to_message(self.conn.connection().features()))
            .map_err(|e| e.to_string())?;
        let m = self
            .conn
            .recv_type(MsgType::PING, STEP)
            .map_err(|e| format!("ping reply: {e}"))?;
        let rtt = t.elapsed();
        let p = MPing::from_message(&m).map_err(|e| format!("decode ping reply: {e}"))?;
        Ok((rtt, p.payload.unwrap_or_default()))
    }

    /// MAuth (auth none, as `client.<id>`) → MAuthReply, then the MMonMap the monitor
    /// pushes to a client that reports monmap epoch 0.
    pub(crate) fn authenticate(&mut self, id: &str) -> Result<(MAuthReply, MonMap), String> {
        let f = self.conn.connection().features();
        self.conn
            .send(MAuth::auth_none_request(AuthEntityName::client(id)).to_message(f))
            .map_err(|e| e.to_string())?;
        let m = self
            .conn
            .recv_type(MsgType::AUTH_REPLY, STEP)
            .map_err(|e| format!("auth reply: {e}"))?;
        let reply = MAuthReply::from_message(&m).map_err(|e| format!("decode auth reply: {e}"))?;
        if reply.result != 0 {
            return Err(format!(
                "auth failed: result {} {:?}",
                reply.result, reply.result_msg
            ));
        }
        let map = self.recv_monmap()?;
        Ok((reply, map))
    }

    fn recv_monmap(&mut self) -> Result<MonMap, String> {
        let m = self
            .conn
            .recv_type(MsgType::MON_MAP, STEP)
            .map_err(|e| format!("monmap: {e}"))?;
        let mm = MMonMap::from_message(&m).map_err(|e| format!("decode MMonMap: {e}"))?;
        mm.decode_monmap()
            .map_err(|e| format!("decode monmap: {e}"))
    }

    /// MMonSubscribe {"monmap": 0} → MMonMap.
    pub(crate) fn subscribe_monmap(&mut self) -> Result<MonMap, String> {
        let f = self.conn.connection().features();
        let sub = MMonSubscribe::new("msgr-test").want("monmap", 0, 0);
        self.conn
            .send(sub.to_message(f))
            .map_err(|e| e.to_string())?;
        self.recv_monmap()
    }

    /// MMonGetVersion(`what`) with header tid `tid` → the reply, whose tid must echo ours.
    pub(crate) fn get_version(
        &mut self,
        what: &str,
        handle: u64,
        tid: u64,
    ) -> Result<(u64, MMonGetVersionReply), String> {
        let f = self.conn.connection().features();
        self.conn
            .send(
                MMonGetVersion::new(handle, what)
                    .to_message(f)
                    .with_tid(tid),
            )
            .map_err(|e| e.to_string())?;
        let m = self
            .conn
            .recv_type(MsgType::MON_GET_VERSION_REPLY, STEP)
            .map_err(|e| format!("version reply: {e}"))?;
        let r = MMonGetVersionReply::from_message(&m)
            .map_err(|e| format!("decode version reply: {e}"))?;
        Ok((m.header.tid, r))
    }

    /// KEEPALIVE2 → KEEPALIVE2_ACK echoing our stamp. Returns the round trip.
    pub(crate) fn keepalive(&mut self) -> Result<Duration, String> {
        let t = Instant::now();
        self.conn.keepalive().map_err(|e| e.to_string())?;
        loop {
            match self
                .conn
                .next_event(STEP)
                .map_err(|e| format!("keepalive ack: {e}"))?
            {
                Event::KeepaliveAck { .. } => return Ok(t.elapsed()),
                Event::Message(_) => {}
                other => {
                    return Err(format!(
                        "unexpected {other:?} while waiting for the keepalive ack"
                    ))
                }
            }
        }
    }
}
