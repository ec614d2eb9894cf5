//! `msgr ping`: MPing round trips to any Ceph-speaking peer, printed like ping(8).

use std::time::{Duration, Instant};

use crate::net::Net;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use msgr::entity::{EntityAddr, EntityType};
use msgr::msg::{MPing, MsgType, TypedMessage};
use tracing::info;

use crate::client::{establish_learning_nonce, Client, ConnectError};
use crate::{emit, parse_peer_addr, Failure, PeerAddr, Result};

pub(crate) const LONG_ABOUT: &str = "\
Send MPing round trips to a Ceph-speaking peer and print each one and a summary.

A real ceph-mon answers (with its health report, which is not printed), and so does
`msgr serve` (echoing the data segment). The session opens first (its handshake is not
counted in the round trips); then one ping at a time is sent and its reply awaited.

Peer type: a v1 session names the type of peer it expects, and the peer refuses a session
meant for another type (BADPROTOVER). With --peer-type auto (the default) msgr tries mon
first and then osd. A bare address means nonce 0 (monitors); if the peer announces another
nonce (`msgr serve` picks a random one), msgr retries once with it.

Exit status: 0 if at least one reply came back, 1 otherwise.";

#[derive(Args, Debug)]
pub(crate) struct PingArgs {
    /// The peer: v1:IP:PORT[/NONCE] (a bare IP:PORT means v1, nonce 0)
    #[arg(value_parser = parse_peer_addr)]
    addr: PeerAddr,

    /// Round trips to make
    #[arg(short = 'c', long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    count: u64,

    /// Seconds between round trips
    #[arg(short = 'i', long, default_value_t = 1.0, value_parser = parse_secs)]
    interval: f64,

    /// Seconds to wait for the session, and for each reply
    #[arg(short = 'W', long, default_value_t = 5.0, value_parser = parse_positive_secs)]
    timeout: f64,

    /// The type of peer: mon, osd, or auto (mon, then osd if the peer refuses)
    #[arg(long, value_enum, default_value_t = PeerType::Auto)]
    peer_type: PeerType,

    /// Bytes in each ping's data segment (`msgr serve` echoes them; monitors ignore them)
    #[arg(short = 's', long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=(16 << 20)))]
    size: u32,
}

/// What kind of peer `ping` expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum PeerType {
    /// Try mon, then osd.
    Auto,
    /// A monitor.
    Mon,
    /// An OSD (`msgr serve`).
    Osd,
}

impl PeerType {
    pub(crate) fn candidates(self) -> &'static [EntityType] {
        match self {
            Self::Auto => &[EntityType::MON, EntityType::OSD],
            Self::Mon => &[EntityType::MON],
            Self::Osd => &[EntityType::OSD],
        }
    }
}

pub(crate) fn parse_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.0..=86_400.0).contains(&v) {
        return Err(format!("{s} is out of range (0 to 86400 seconds)"));
    }
    Ok(v)
}

pub(crate) fn parse_positive_secs(s: &str) -> Result<f64, String> {
    let v = parse_secs(s)?;
    if v < 0.001 {
        return Err(format!("{s} is too short (at least 0.001 seconds)"));
    }
    Ok(v)
}

/// Opens a session with the first peer type the peer accepts. Returns the session's peer
/// address (with the nonce learned, if any) and type.
pub(crate) fn connect_any(
    c: &Client,
    mut peer: PeerAddr,
    types: &[EntityType],
    timeout: Duration,
) -> Result<(EntityAddr, EntityType)> {
    for (i, &ty) in types.iter().enumerate() {
        match establish_learning_nonce(c, peer, ty, timeout) {
            Ok((_, addr)) => return Ok((addr, ty)),
            Err((ConnectError::Incompatible, addr)) if i + 1 < types.len() => {
                info!(peer = %addr, "the peer refused a session as {ty}; trying the next type");
                // Keep a nonce learned on the way.
                peer = PeerAddr {
                    addr,
                    explicit_nonce: peer.explicit_nonce || addr.nonce != peer.addr.nonce,
                };
            }
            Err((ConnectError::Incompatible, addr)) => {
                let tried: Vec<String> = types.iter().map(ToString::to_string).collect();
                return Err(format!(
                    "{addr} refused a session with a peer of type {} (protocol version, \
                     features or authorizer); check --peer-type",
                    tried.join(" or ")
                )
                .into());
            }
            Err((e, addr)) => return Err(e.describe(&addr, timeout).into()),
        }
    }
    Err("no peer type to try".into())
}

pub(crate) fn run(a: PingArgs, net: &Net) -> Result<()> {
    let transport = net.transport;
    let timeout = Duration::from_secs_f64(a.timeout);
    let interval = Duration::from_secs_f64(a.interval);
    let c = Client::start(net)?;
    let (addr, ty) = connect_any(&c, a.addr, a.peer_type.candidates(), timeout)?;
    emit(&format!(
        "PING {addr} ({ty}, {}): {} data bytes",
        transport.name(),
        a.size
    ))?;
    let data = Bytes::from(vec![0x5a; a.size as usize]);
    let mut rtts: Vec<Duration> = Vec::new();
    for seq in 1..=a.count {
        // A reply that came after its ping timed out must not answer this one.
        while c.rx.try_recv().is_ok() {}
        // The registered session, or a new one if the lossy session was reset meanwhile.
        let conn = c.msgr.connect_to(addr, ty);
        let ping = MPing {
            payload: None,
            data: data.clone(),
        };
        let m = ping.to_message(conn.features()).with_tid(seq);
        let t0 = Instant::now();
        if let Err(e) = conn.send_message(m) {
            emit(&format!("send to {addr} failed: seq={seq}: {e}"))?;
        } else {
            match wait_reply(&c, seq, timeout) {
                Some(()) => {
                    let rtt = t0.elapsed();
                    rtts.push(rtt);
                    emit(&format!(
                        "reply from {addr}: seq={seq} time={:.3} ms",
                        ms(rtt)
                    ))?;
                }
                None => emit(&format!(
                    "no reply from {addr}: seq={seq} (timeout {:.3} s)",
                    a.timeout
                ))?,
            }
        }
        if seq < a.count {
            std::thread::sleep(interval);
        }
    }
    let sent = a.count;
    let received = rtts.len() as u64;
    let loss = 100.0 * (sent - received) as f64 / sent as f64;
    emit(&format!("--- {addr} ping statistics ---"))?;
    emit(&format!(
        "{sent} sent, {received} received, {loss:.0}% loss"
    ))?;
    if let (Some(min), Some(max)) = (rtts.iter().min(), rtts.iter().max()) {
        let avg = rtts.iter().sum::<Duration>() / u32::try_from(rtts.len()).unwrap_or(u32::MAX);
        emit(&format!(
            "rtt min/avg/max = {:.3}/{:.3}/{:.3} ms",
            ms(*min),
            ms(avg),
            ms(*max)
        ))?;
    }
    c.msgr.shutdown();
    c.msgr.wait();
    if received == 0 {
        return Err(Failure::from(format!(
            "no reply from {addr} ({sent} pings sent)"
        )));
    }
    Ok(())
}

/// Waits for the ping reply to `seq`. `msgr serve` echoes the tid; a monitor's reply has
/// tid 0, which is taken as the answer to the one ping outstanding.
fn wait_reply(c: &Client, seq: u64, timeout: Duration) -> Option<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let m = c.recv_type(MsgType::PING, left)?;
        if m.header.tid == seq || m.header.tid == 0 {
            return Some(());
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
