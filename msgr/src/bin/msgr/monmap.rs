//! `msgr monmap`: authenticate to a monitor with auth none and print the monmap it sends.

use std::time::Duration;

use crate::net::Net;
use clap::Args;
use msgr::entity::{AddrType, EntityAddr, EntityType};
use msgr::msg::monmap::release;
use msgr::msg::{
    AuthEntityName, MAuth, MAuthReply, MMonMap, MMonSubscribe, MonMap, MsgType, TypedMessage, UTime,
};
use serde_json::{json, Value};

use crate::client::{establish_learning_nonce, Client};
use crate::ping::parse_positive_secs;
use crate::{emit, parse_peer_addr, PeerAddr, Result};

pub(crate) const LONG_ABOUT: &str = "\
Authenticate to a Ceph monitor with auth none and print the monmap it sends.

The steps are a MonClient's: a msgr v1 session as client.? with a monitor (nonce 0 unless
given), MAuth offering auth none, MAuthReply, then the MMonMap the monitor pushes (or, if
none comes within a second, the one MMonSubscribe asks for). The monitor must allow auth
none for clients (auth_client_required = none).

Text output follows `ceph mon dump`; --json prints the same as JSON.";

#[derive(Args, Debug)]
pub(crate) struct MonmapArgs {
    /// The monitor: v1:IP:PORT[/NONCE] (a bare IP:PORT means v1, nonce 0)
    #[arg(value_parser = parse_peer_addr)]
    addr: PeerAddr,

    /// Print JSON
    #[arg(long)]
    json: bool,

    /// The auth id to authenticate as (client.ID)
    #[arg(long, default_value = "admin")]
    id: String,

    /// Seconds to wait for the session and for each answer
    #[arg(short = 'W', long, default_value_t = 10.0, value_parser = parse_positive_secs)]
    timeout: f64,
}

/// A monmap comes unasked after auth; this long without one, it is asked for.
const PUSH_WAIT: Duration = Duration::from_secs(1);

pub(crate) fn run(a: MonmapArgs, net: &Net) -> Result<()> {
    let timeout = Duration::from_secs_f64(a.timeout);
    let c = Client::start(net)?;
    let (conn, addr) = establish_learning_nonce(&c, a.addr, EntityType::MON, timeout)
        .map_err(|(e, addr)| e.describe(&addr, timeout))?;
    let f = conn.features();
    conn.send_message(MAuth::auth_none_request(AuthEntityName::client(a.id.clone())).to_message(f))
        .map_err(|e| format!("sending MAuth to {addr}: {e}"))?;
    let m = c
        .recv_type(MsgType::AUTH_REPLY, timeout)
        .ok_or_else(|| format!("no MAuthReply from {addr} within {timeout:?}"))?;
    let reply = MAuthReply::decode(m).map_err(|e| format!("bad MAuthReply from {addr}: {e}"))?;
    if reply.result != 0 {
        let hint = if reply.result == -95 || reply.result == -13 {
            " (does the monitor allow auth none? auth_client_required = none)"
        } else {
            ""
        };
        return Err(format!(
            "{addr} refused authentication as client.{}: result {}{}{hint}",
            a.id,
            reply.result,
            if reply.result_msg.is_empty() {
                String::new()
            } else {
                format!(" ({})", reply.result_msg)
            }
        )
        .into());
    }
    let m = match c.recv_type(MsgType::MON_MAP, PUSH_WAIT.min(timeout)) {
        Some(m) => m,
        None => {
            let sub = MMonSubscribe::new("msgr").want("monmap", 0, 0);
            conn.send_message(sub.to_message(f))
                .map_err(|e| format!("sending MMonSubscribe to {addr}: {e}"))?;
            c.recv_type(MsgType::MON_MAP, timeout)
                .ok_or_else(|| format!("no MMonMap from {addr} within {timeout:?}"))?
        }
    };
    let map = MMonMap::decode(m)
        .and_then(|mm| mm.decode_monmap())
        .map_err(|e| format!("bad MMonMap from {addr}: {e}"))?;
    c.msgr.shutdown();
    c.msgr.wait();
    if a.json {
        let text = serde_json::to_string_pretty(&to_json(&map, reply.global_id))
            .map_err(|e| format!("formatting JSON: {e}"))?;
        emit(&text)
    } else {
        emit(&to_text(&map, reply.global_id))
    }
}

fn release_name(r: u8) -> &'static str {
    match r {
        release::KRAKEN => "kraken",
        release::LUMINOUS => "luminous",
        release::MIMIC => "mimic",
        release::NAUTILUS => "nautilus",
        release::OCTOPUS => "octopus",
        release::PACIFIC => "pacific",
        17 => "quincy",
        18 => "reef",
        19 => "squid",
        _ => "unknown",
    }
}

/// `ceph mon dump`'s text.
fn to_text(map: &MonMap, global_id: u64) -> String {
    let mut lines = vec![
        format!("epoch {}", map.epoch),
        format!("fsid {}", map.fsid),
        format!("last_changed {}", utime(map.last_changed)),
        format!("created {}", utime(map.created)),
        format!(
            "min_mon_release {} ({})",
            map.min_mon_release,
            release_name(map.min_mon_release)
        ),
        format!("election_strategy: {}", map.strategy),
    ];
    for (rank, m) in map.monitors().enumerate() {
        lines.push(format!("{rank}: {} mon.{}", m.public_addrs, m.name));
    }
    lines.push(format!(
        "(authenticated with auth none, global_id {global_id})"
    ));
    lines.join("\n")
}

/// `ceph mon dump -f json`'s shape, plus `global_id`.
fn to_json(map: &MonMap, global_id: u64) -> Value {
    let mons: Vec<Value> = map
        .monitors()
        .enumerate()
        .map(|(rank, m)| {
            let addrvec: Vec<Value> = m.public_addrs.0.iter().map(addr_json).collect();
            let legacy = m
                .public_addrs
                .legacy_or_front_addr()
                .map(|a| plain_addr(&a))
                .unwrap_or_default();
            json!({
                "rank": rank,
                "name": m.name,
                "public_addrs": { "addrvec": addrvec },
                "addr": legacy,
                "public_addr": legacy,
                "priority": m.priority,
                "weight": m.weight,
            })
        })
        .collect();
    json!({
        "epoch": map.epoch,
        "fsid": map.fsid.to_string(),
        "modified": utime(map.last_changed),
        "created": utime(map.created),
        "min_mon_release": map.min_mon_release,
        "min_mon_release_name": release_name(map.min_mon_release),
        "election_strategy": map.strategy,
        "persistent_features": format!("{:#x}", map.persistent_features),
        "optional_features": format!("{:#x}", map.optional_features),
        "mons": mons,
        "global_id": global_id,
    })
}

fn addr_json(a: &EntityAddr) -> Value {
    let ty = match a.ty {
        AddrType::LEGACY => "v1",
        AddrType::MSGR2 => "v2",
        AddrType::ANY => "any",
        _ => "none",
    };
    json!({
        "type": ty,
        "addr": a.addr.map(|s| s.to_string()).unwrap_or_default(),
        "nonce": a.nonce,
    })
}

/// `127.0.0.1:6789/0`, as Ceph prints a legacy address in JSON.
fn plain_addr(a: &EntityAddr) -> String {
    match a.addr {
        Some(s) => format!("{s}/{}", a.nonce),
        None => format!("-/{}", a.nonce),
    }
}

/// Ceph's `utime_t` form: `2024-01-31T12:34:56.789012+0000` (UTC).
fn utime(t: UTime) -> String {
    let secs = i64::from(t.sec);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:06}+0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        t.nsec / 1000
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // Both are small and positive by construction.
    (y, m as u32, d as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utime_is_ceph_style_utc() {
        assert_eq!(utime(UTime::new(0, 0)), "1970-01-01T00:00:00.000000+0000");
        assert_eq!(
            utime(UTime::new(1_709_210_096, 123_456_789)),
            "2024-02-29T12:34:56.123456+0000"
        );
    }
}
