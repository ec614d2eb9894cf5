//! The interop check against a real Ceph monitor, as a program: starts a Pacific
//! `ceph-mon` on loopback with auth none (or uses the one at ADDR) and walks a client
//! session through it with msgr's v1 engine, printing what happens.
//!
//! ```text
//! cargo run -p msgr --example mon_demo [-- v1:IP:PORT]
//! RUST_LOG=msgr=debug cargo run -p msgr --example mon_demo    (engine logs)
//! ```
#![allow(clippy::disallowed_methods)] // a driver program: it reads the clock

#[path = "../tests/support/mod.rs"]
#[allow(unreachable_pub, unused_imports, unused_macros)]
mod support;

use std::process::ExitCode;
use std::time::Instant;

use msgr::entity::EntityAddr;
use support::mon::MonFixture;
use support::monclient::MonSession;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "msgr=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mon_demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("usage: mon_demo [v1:IP:PORT]\n\nWithout an address, starts a throw-away ceph-mon (auth none) on loopback.");
        return Ok(());
    }
    let (_mon, addr, expect_fsid) = match args.as_slice() {
        [] => {
            MonFixture::check()?;
            let t = Instant::now();
            let mon = MonFixture::start()?;
            println!(
                "started ceph-mon a: fsid {} at {} ({:.0?})",
                mon.fsid_str(),
                mon.mon_host(),
                t.elapsed()
            );
            let (addr, fsid) = (mon.v1_addr(), Some(mon.fsid_str().to_string()));
            (Some(mon), addr, fsid)
        }
        [a] => {
            let e: EntityAddr = a.parse()?;
            (None, e.addr.ok_or("address has no IP:PORT")?, None)
        }
        _ => return Err("usage: mon_demo [v1:IP:PORT]".into()),
    };

    let t = Instant::now();
    let mut s = MonSession::connect(addr)?;
    let c = s.conn.connection();
    println!(
        "v1 handshake with {addr}: {:.1?}, features {:#x}, connect_seq {}, lossy {}, my address {}",
        t.elapsed(),
        c.features(),
        c.connect_seq(),
        c.policy().lossy,
        c.my_addr()
    );
    let (rtt, json) = s.ping()?;
    // The reply is pretty-printed JSON: `"health": { "status": "HEALTH_OK", ...`.
    let health = json
        .split("\"status\"")
        .nth(1)
        .and_then(|r| r.split('"').nth(1))
        .unwrap_or("?");
    println!(
        "MPing: {rtt:.1?} round trip, {} bytes of status JSON, health {health}",
        json.len()
    );
    let (reply, map) = s.authenticate("admin")?;
    println!("MAuth (auth none): global_id {}", reply.global_id);
    println!("MMonMap: fsid {} epoch {}", map.fsid, map.epoch);
    for m in map.monitors() {
        println!("  mon.{} {}", m.name, m.public_addrs);
    }
    if let Some(want) = expect_fsid {
        if map.fsid.to_string() != want {
            return Err(format!(
                "monmap fsid {} is not the cluster's {want}",
                map.fsid
            ));
        }
    }
    let sub = s.subscribe_monmap()?;
    println!("MMonSubscribe monmap: epoch {}", sub.epoch);
    let (tid, v) = s.get_version("osdmap", 1, 7)?;
    println!(
        "MMonGetVersion osdmap: version {} (oldest {}), tid {tid} echoed",
        v.version, v.oldest_version
    );
    let ka = s.keepalive()?;
    println!("KEEPALIVE2: acked in {ka:.1?}");
    let st = s.conn.connection().stats();
    println!(
        "session: {} messages out, {} in, {} bytes written, {} read",
        st.msgs_out, st.msgs_in, s.conn.bytes_written, s.conn.bytes_read
    );
    println!("interop check passed");
    Ok(())
}
