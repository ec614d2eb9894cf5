//! `msgr serve`: the OSD-like daemon (a messenger, [`OsdDispatcher`] and an admin socket).

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use msgr::admin::{AdminServer, Handler};
use msgr::entity::{EntityName, EntityType};
use msgr::messenger::{CaptureConfig, DispatchPanic, Messenger, TransportKind};
use msgr::osd::{ObjectStore, OsdDispatcher};
use msgr::proto::{Options, Policy, Throttle};
use serde_json::{json, Value};
use tracing::info;

use crate::client::random_nonce;
use crate::net::Net;
use crate::ping::{parse_positive_secs, parse_secs};
use crate::{emit, parse_entity_name, parse_peer_addr, Failure, PeerAddr, Result};

pub(crate) const LONG_ABOUT: &str = "\
Run the OSD-like daemon: an in-memory object store served through fast dispatch.

MOSDOp (write, writefull, read, stat, delete, create, append, truncate, zero) is answered
with MOSDOpReply and MPing with MPing, on the network thread that read the request. Any
other message is counted and logged. Policies are a Ceph OSD's public messenger's:
clients stateless_registered_server, monitors and managers lossy_client. With a mon name
(--name mon.0) the daemon instead takes the v1 handshake of a monitor (clients send the
monitor protocol version) with a monitor's policies; it still only answers MOSDOp and
MPing, so a real Ceph client can reach its dispatcher but gets no auth reply.

On start the bound address is printed on stdout as one line, `listening on
v1:IP:PORT/NONCE` (use --bind v1:127.0.0.1:0 for any free port), and logged on stderr.

Packet capture (--transport dpdk): the kernel cannot see a DPDK port, so tcpdump cannot
either. --pcap FILE, or `msgr admin PATH pcap start FILE` and `pcap stop` at run time,
write every frame the workers receive and send to a pcap file for tshark or Wireshark
(`tshark -r FILE -Y ceph`). Frames go to a writer thread through a bounded queue; when the
disk falls behind frames are dropped and counted (`status` shows it), the workers never
wait. With checksum offload on, captured outgoing TCP checksums are not filled in.

Stopping: the admin socket's `shutdown` command (`msgr admin PATH shutdown`) or --run-for
stop the daemon cleanly (the socket file is removed). SIGINT and SIGTERM end the process
at once with the signal's default action (msgr handles no signals); a socket file left
behind that way is replaced at the next start.";

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// The address to listen on: v1:IP:PORT[/NONCE] (port 0: any free port)
    #[arg(long, value_name = "ADDR", value_parser = parse_peer_addr, required_unless_present = "config")]
    bind: Option<PeerAddr>,

    /// Take every setting from this TOML file (see /usr/share/doc or deploy/msgr.example.toml);
    /// no other options then, but --check
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// With --config: check the file and print the command line it stands for; start nothing
    #[arg(long, requires = "config")]
    pub(crate) check: bool,

    /// Bytes of messages queued for dispatch before the sockets stop being read
    /// (ms_dispatch_throttle_bytes; 0: no limit)
    #[arg(long, value_name = "BYTES", default_value_t = 100 << 20)]
    dispatch_throttle_bytes: u64,

    /// Client messages in flight in the daemon before their sockets stop being read
    /// (osd_client_message_cap; 0: no limit)
    #[arg(long, value_name = "N", default_value_t = 0)]
    client_message_cap: u64,

    /// Client message bytes in flight before their sockets stop being read
    /// (osd_client_message_size_cap; 0: no limit)
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    client_bytes_cap: u64,

    /// A peer type's policy, TYPE=PRESET (repeatable): TYPE client, mon, mgr, osd or mds;
    /// PRESET one of Ceph's: stateless_server, stateless_registered_server, stateful_server,
    /// lossy_client, lossless_client, lossless_peer, lossless_peer_reuse [default: an OSD's
    /// public messenger: client stateless_registered_server, mon and mgr lossy_client]
    #[arg(long, value_name = "TYPE=PRESET", value_parser = parse_policy)]
    policy: Vec<(EntityType, Policy)>,

    /// Our entity name: osd.N, or mon.N to take monitor handshakes
    #[arg(long, default_value = "osd.0", value_parser = parse_entity_name)]
    name: EntityName,

    /// Serve an admin socket (Ceph's protocol) at this path
    #[arg(long, value_name = "PATH")]
    admin_socket: Option<PathBuf>,

    /// Workers: threads of the posix transport [default: one per CPU]; queues of the dpdk
    /// transport, one worker per queue on its own lcore (the first on EAL's main lcore;
    /// give enough with --eal "-l ...") [default: 1]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,

    /// Make every Nth socket read or write fail (ms_inject_socket_failures; 0: never)
    #[arg(long, default_value_t = 0, value_name = "N")]
    inject_socket_failures: u64,

    /// Our address nonce [default: the one in --bind, else 0 for a mon name and random
    /// otherwise, as Ceph does]
    #[arg(long)]
    nonce: Option<u32>,

    /// Capture the dpdk transport's frames to this pcap file from the start (the admin
    /// socket's `pcap start PATH` / `pcap stop` do it at run time)
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,

    /// Bytes kept of each captured frame
    #[arg(long, value_name = "BYTES", default_value_t = stack::pcap::DEFAULT_SNAPLEN, value_parser = clap::value_parser!(u32).range(64..=i64::from(stack::pcap::MAX_SNAPLEN)))]
    pcap_snaplen: u32,

    /// Seconds an incoming connection has to finish its handshake before it is closed
    /// (ms_connection_ready_timeout): what a slowloris, or a client that connects and sends
    /// nothing, gets
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = parse_positive_secs)]
    ready_timeout: f64,

    /// Seconds a message that has taken throttle budget may go without bringing the rest of
    /// itself or 64 KiB per second: past it the connection faults (body_timeout in perf
    /// dump) and gives the budget back, so a peer that sends headers and withholds bodies
    /// cannot stall other clients [0: no check, as Ceph]
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = parse_secs)]
    body_timeout: f64,

    /// Incoming connections that may be in their handshake at once; at the bound each new
    /// one closes the oldest still handshaking (counted as handshakes_evicted in perf dump)
    /// [0: no bound]
    #[arg(long, value_name = "N", default_value_t = Options::default().max_handshakes)]
    max_handshakes: usize,

    /// What a panic in the OSD or monitor handler does: contain (log, count as
    /// dispatch_panics in perf dump, close that one connection, serve on) or abort (log,
    /// then end the process: for a supervisor that restarts it clean)
    #[arg(long, value_name = "POLICY", default_value = "contain", value_parser = ["contain", "abort"])]
    dispatch_panic: String,

    /// Stop cleanly after this many seconds (default: run until stopped)
    #[arg(long, value_name = "SECS", value_parser = parse_positive_secs)]
    run_for: Option<f64>,
}

pub(crate) fn run(a: ServeArgs, net: &Net) -> Result<()> {
    let transport = net.transport;
    let is_mon = a.name.ty == EntityType::MON;
    if !is_mon && a.name.ty != EntityType::OSD {
        return Err(Failure::usage(format!(
            "--name {}: serve runs as osd.N or mon.N",
            a.name
        )));
    }
    if a.name.num < 0 {
        return Err(Failure::usage(format!(
            "--name {}: the number must not be negative",
            a.name
        )));
    }
    let bind = a
        .bind
        .ok_or_else(|| Failure::usage("serve needs --bind (or --config)"))?;
    let nonce = a.nonce.unwrap_or(if bind.explicit_nonce {
        bind.addr.nonce
    } else if is_mon {
        0
    } else {
        random_nonce()
    });
    let options = Options {
        ready_timeout: Duration::from_secs_f64(a.ready_timeout),
        body_timeout: (a.body_timeout > 0.0).then(|| Duration::from_secs_f64(a.body_timeout)),
        max_handshakes: a.max_handshakes,
        ..Options::default()
    };
    let msgr = Arc::new(
        net.builder(a.name, nonce, a.workers.map(usize::from))
            .options(options)
            .inject_socket_failures(a.inject_socket_failures)
            .dispatch_throttle_bytes(a.dispatch_throttle_bytes)
            .dispatch_panic(if a.dispatch_panic == "abort" {
                DispatchPanic::Abort
            } else {
                DispatchPanic::Contain
            })
            .build(),
    );
    if is_mon {
        // Ceph's monitor: clients, OSDs and MDSs stateless, other monitors lossless.
        msgr.set_default_policy(Policy::stateless_server(0));
        msgr.set_policy(EntityType::MON, Policy::lossless_peer_reuse(0));
    } else {
        // Ceph's OSD public messenger, with its client throttles.
        msgr.set_default_policy(client_throttled(&a, Policy::stateless_registered_server(0)));
        msgr.set_policy(EntityType::MON, Policy::lossy_client(0));
        msgr.set_policy(EntityType::MGR, Policy::lossy_client(0));
    }
    for (ty, policy) in &a.policy {
        let p = policy.clone();
        if *ty == EntityType::CLIENT {
            // Clients take the default policy, and with it the client throttles.
            msgr.set_default_policy(client_throttled(&a, p));
        } else {
            msgr.set_policy(*ty, p);
        }
    }
    let osd = Arc::new(OsdDispatcher::new(Arc::new(ObjectStore::new())));
    msgr.add_dispatcher_tail(Arc::clone(&osd) as _);
    let want = bind.socket();
    let addr = msgr
        .bind(want)
        .map_err(|e| format!("cannot bind {}: {e}", bind.addr))?;
    if a.pcap.is_some() && transport != TransportKind::Dpdk {
        return Err(Failure::usage(
            "--pcap captures the dpdk transport's frames; on the kernel transports use tcpdump",
        ));
    }
    msgr.start()
        .map_err(|e| format!("cannot start the {} transport: {e}", transport.name()))?;
    if let Some(p) = &a.pcap {
        msgr.start_capture(p, capture_config(a.pcap_snaplen))
            .map_err(|e| format!("cannot capture to {}: {e}", p.display()))?;
        info!(file = %p.display(), "packet capture started");
    }
    let started = Instant::now();

    let (stop_tx, stop_rx) = mpsc::channel::<&'static str>();
    let admin =
        match &a.admin_socket {
            Some(path) => {
                let ctx = Ctx {
                    msgr: Arc::clone(&msgr),
                    osd: Arc::clone(&osd),
                    started,
                    stop: stop_tx.clone(),
                };
                let handler: Handler =
                    Arc::new(move |prefix: &str, args: &Value| ctx.command(prefix, args));
                Some(AdminServer::start(path, handler).map_err(|e| {
                    format!("cannot serve the admin socket {}: {e}", path.display())
                })?)
            }
            None => None,
        };
    emit(&format!("listening on {addr}"))?;
    info!(
        name = %a.name,
        %addr,
        transport = transport.name(),
        admin_socket = ?a.admin_socket,
        "msgr serve started"
    );

    let why = match a.run_for {
        Some(s) => stop_rx
            .recv_timeout(Duration::from_secs_f64(s))
            .unwrap_or("--run-for elapsed"),
        // `stop_tx` lives in this frame, so this waits for an admin `shutdown`.
        None => stop_rx.recv().unwrap_or("stop channel closed"),
    };
    drop(stop_tx);
    info!(reason = why, "shutting down");
    drop(admin);
    msgr.shutdown();
    msgr.wait();
    info!(
        uptime_secs = started.elapsed().as_secs_f64(),
        "msgr serve stopped"
    );
    Ok(())
}

/// `p` with the client throttles (osd_client_message_cap and _size_cap) of `a`.
fn client_throttled(a: &ServeArgs, mut p: Policy) -> Policy {
    p.throttles.messages = (a.client_message_cap > 0)
        .then(|| Throttle::new("osd_client_messages", a.client_message_cap));
    p.throttles.bytes =
        (a.client_bytes_cap > 0).then(|| Throttle::new("osd_client_bytes", a.client_bytes_cap));
    p
}

/// Ceph's policy presets, by name.
fn preset_policy(name: &str) -> Option<Policy> {
    Some(match name {
        "stateless_server" => Policy::stateless_server(0),
        "stateless_registered_server" => Policy::stateless_registered_server(0),
        "stateful_server" => Policy::stateful_server(0),
        "lossy_client" => Policy::lossy_client(0),
        "lossless_client" => Policy::lossless_client(0),
        "lossless_peer" => Policy::lossless_peer(0),
        "lossless_peer_reuse" => Policy::lossless_peer_reuse(0),
        _ => return None,
    })
}

/// `TYPE=PRESET` for --policy.
pub(crate) fn parse_policy(s: &str) -> std::result::Result<(EntityType, Policy), String> {
    let (ty, preset) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: give TYPE=PRESET, e.g. client=stateless_server"))?;
    let ty = match ty.trim() {
        "client" => EntityType::CLIENT,
        "mon" => EntityType::MON,
        "mgr" => EntityType::MGR,
        "osd" => EntityType::OSD,
        "mds" => EntityType::MDS,
        other => {
            return Err(format!(
                "{other:?}: the peer type is client, mon, mgr, osd or mds"
            ))
        }
    };
    let preset = preset.trim();
    let policy = preset_policy(preset).ok_or_else(|| {
        format!(
            "{preset:?}: the preset is stateless_server, stateless_registered_server, \
             stateful_server, lossy_client, lossless_client, lossless_peer or \
             lossless_peer_reuse"
        )
    })?;
    Ok((ty, policy))
}

/// What the admin socket's handler reads.
struct Ctx {
    msgr: Arc<Messenger>,
    osd: Arc<OsdDispatcher>,
    started: Instant,
    stop: mpsc::Sender<&'static str>,
}

impl Ctx {
    fn command(&self, prefix: &str, args: &Value) -> Result<Value, String> {
        match prefix {
            "perf dump" => self.perf_dump(args.get("logger").and_then(Value::as_str)),
            "status" => Ok(self.status()),
            "version" => Ok(json!({
                "version": env!("CARGO_PKG_VERSION"),
                "program": "msgr",
                "wire": "msgr v1 (Ceph Pacific compatible)",
            })),
            "pcap start" => {
                let path = args
                    .get("path")
                    .and_then(Value::as_str)
                    .ok_or("pcap start needs a path")?;
                let snaplen = match args.get("snaplen").and_then(Value::as_str) {
                    None => stack::pcap::DEFAULT_SNAPLEN,
                    Some(s) => s
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (64..=stack::pcap::MAX_SNAPLEN).contains(n))
                        .ok_or_else(|| {
                            format!("snaplen {s:?}: 64 to {}", stack::pcap::MAX_SNAPLEN)
                        })?,
                };
                self.msgr
                    .start_capture(std::path::Path::new(path), capture_config(snaplen))
                    .map_err(|e| e.to_string())?;
                info!(file = path, "packet capture started");
                Ok(json!({"capturing": path, "snaplen": snaplen}))
            }
            "pcap stop" => {
                let s = self.msgr.stop_capture().map_err(|e| e.to_string())?;
                info!(
                    written = s.written,
                    dropped = s.dropped,
                    "packet capture stopped"
                );
                Ok(json!({"written": s.written, "dropped": s.dropped, "bytes": s.bytes}))
            }
            "shutdown" => {
                self.stop
                    .send("admin socket shutdown")
                    .map_err(|_| "already shutting down".to_owned())?;
                Ok(json!({"shutdown": true}))
            }
            other => Err(format!("no handler for {other:?}")),
        }
    }

    fn perf_dump(&self, section: Option<&str>) -> Result<Value, String> {
        let mut all = self.msgr.perf_dump();
        if let (Value::Object(a), Value::Object(b)) = (&mut all, self.osd.perf_dump()) {
            a.extend(b);
        }
        match section {
            None => Ok(all),
            Some(s) => match all.get(s) {
                Some(v) => Ok(json!({ s: v })),
                None => {
                    let names: Vec<&String> = all
                        .as_object()
                        .map(|m| m.keys().collect())
                        .unwrap_or_default();
                    Err(format!("no section {s:?} (sections: {names:?})"))
                }
            },
        }
    }

    fn status(&self) -> Value {
        let sessions: Vec<Value> = self
            .msgr
            .connections()
            .iter()
            .map(|c| {
                json!({
                    "id": c.id(),
                    "peer_addr": c.peer_addr().map(|a| a.to_string()),
                    "peer_type": c.peer_type().map(|t| t.to_string()),
                    "phase": format!("{:?}", c.phase()),
                    "lossy": c.is_lossy(),
                    "features": format!("{:#x}", c.features()),
                })
            })
            .collect();
        json!({
            "name": self.msgr.name().to_string(),
            "addr": self.msgr.my_addr().to_string(),
            "transport": self.msgr.transport().name(),
            "pid": std::process::id(),
            "uptime_secs": self.started.elapsed().as_secs_f64(),
            "connections": sessions.len(),
            "sessions": sessions,
            "objects": self.osd.store().len(),
            "capture": self.msgr.capture_status().map(|(file, s)| json!({
                "file": file, "written": s.written, "dropped": s.dropped, "bytes": s.bytes,
            })),
        })
    }
}

fn capture_config(snaplen: u32) -> CaptureConfig {
    CaptureConfig {
        snaplen,
        ..CaptureConfig::default()
    }
}
