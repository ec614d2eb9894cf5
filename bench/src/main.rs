//! `bench`: the messenger's transports measured beside the kernel-TCP floor (sockperf).
//!
//! This first version (issue 3) measures, on loopback and in one run:
//! - `pingpong`: MPing-style round trips of a 64 B message between two messengers, the
//!   reply sent from the server's fast-dispatch callback and the next ping from the
//!   client's (no thread hop on either side); latency percentiles from an HDR histogram;
//! - `stream`: pipelined 4 KiB messages from one messenger to another, a bounded window in
//!   flight; MB/s and messages/s at the receiver;
//! - `idle`: resident memory per idle connection (N sessions held open);
//! - `sockperf`: `sockperf ping-pong --tcp` and `throughput --tcp` on loopback, the floor.
//!
//! Beside them (issue 4): `stack` (the userspace TCP/IP stack alone, on the in-memory link or,
//! with `--link vhost`, two processes over DPDK vhost-user, one worker each) and `testpmd`
//! (the raw-link ceiling on that same link).
//!
//! `osd` (issue 6, started): the OSD workload (`msgr serve` + `msgr load` processes) over
//! dpdk, posix and simple, a sweep of object sizes and ops in flight (`osdbench`).
//!
//! `loopback` runs the in-process loopback paths beside sockperf and prints one table.
//!
//! `all` (`allbench`) runs everything above that compares paths, in one command and one
//! report: the OSD sweep, the kernel TCP floor (sockperf, iperf3) and the raw-link ceiling
//! (testpmd, the bare stack), with the project's claims checked against their targets.
#![allow(clippy::disallowed_methods)] // a benchmark driver: it reads the clock

use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use msgr::entity::{EntityAddr, EntityName, EntityType};
use msgr::messenger::{ConnectionRef, Dispatcher, Incoming, Messenger, TransportKind};
use msgr::msg::{Message, MessageHeader, MsgType};
use msgr::proto::Policy;
use stack::IdlePolicy;

/// Prints a line to stdout; a closed pipe (`bench ... | head`) is not an error.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

mod allbench;
mod dpdklink;
mod floor;
mod hostile;
mod insn;
mod osdbench;
mod plots;
mod soak;
mod stackbench;
mod testpmd;
mod vhostbench;

#[derive(Parser)]
#[command(
    name = "bench",
    about = "msgr transports beside the kernel-TCP floor (loopback)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Round-trip latency of a small message.
    Pingpong {
        /// simple or posix.
        #[arg(long, default_value = "posix")]
        transport: TransportKind,
        /// Payload bytes (data segment).
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Seconds to measure (after a 0.5 s warm-up).
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
    /// Pipelined one-way stream.
    Stream {
        /// simple or posix.
        #[arg(long, default_value = "posix")]
        transport: TransportKind,
        /// Payload bytes per message.
        #[arg(long, default_value_t = 4096)]
        size: usize,
        /// Messages in flight (sent, not yet received) at most.
        #[arg(long, default_value_t = 256)]
        window: usize,
        /// Seconds to measure.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
    /// Memory per idle connection.
    Idle {
        /// simple or posix.
        #[arg(long, default_value = "posix")]
        transport: TransportKind,
        /// Connections to hold open.
        #[arg(long, default_value_t = 500)]
        conns: usize,
    },
    /// sockperf ping-pong and throughput over loopback TCP.
    Sockperf {
        /// Message size for both runs.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Seconds per run.
        #[arg(long, default_value_t = 3)]
        seconds: u64,
    },
    /// (internal) Hold N client sessions open to ADDR; used by `idle`.
    #[command(hide = true)]
    IdleClients {
        /// Server address.
        addr: EntityAddr,
        /// Sessions.
        n: usize,
        /// First client nonce (sessions are keyed by address, nonce included).
        nonce: u32,
    },
    /// The userspace TCP/IP stack alone: two stacks over a link (mem, or DPDK vhost).
    ///
    /// `--link mem`: two stacks on the in-memory link in one thread (no DPDK, no kernel): echo round trips with N idle connections open beside
    /// the measured one, and bulk throughput over one connection. `--link vhost`: two
    /// processes over DPDK vhost-user <-> virtio-user, one worker each on its own CPU: 64 B
    /// echo round trips and bulk A->B on one connection, beside testpmd on the same link.
    Stack {
        /// Idle connections to hold open (mem only: each figure is measured with 10 and with
        /// this).
        #[arg(long, default_value_t = 1000)]
        conns: usize,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// The link between the two stacks.
        #[arg(long, value_enum, default_value_t = Link::Mem)]
        link: Link,
        /// vhost only: each worker's idle policy: busy, yield[:SPINS], sleep[:SPINS[:MAX_US]]
        /// (default: busy when the two sides have a CPU each, else yield:0).
        #[arg(long)]
        idle: Option<IdlePolicy>,
        /// vhost only: leave out the testpmd rows.
        #[arg(long)]
        no_testpmd: bool,
        /// vhost only: let the devices verify and fill in TCP checksums (on), or sum every
        /// segment in software (off).
        #[arg(long, value_enum, default_value_t = OnOff::On)]
        checksum_offload: OnOff,
    },
    /// The raw-link ceiling: two dpdk-testpmd processes on the link.
    ///
    /// 1-packet ping-pong, and one-way 64 B and 1500 B frames A->B (the stack's bulk
    /// direction), on the CPUs `stack --link vhost` uses.
    Testpmd {
        /// The link (only vhost has a testpmd pair).
        #[arg(long, value_enum, default_value_t = Link::Vhost)]
        link: Link,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(2..=600))]
        seconds: u64,
    },
    /// (internal) Side B of `stack --link vhost`: virtio-user server, echo and sink.
    #[command(hide = true)]
    StackPeer {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long)]
        cpu: u32,
        #[arg(long)]
        idle: IdlePolicy,
        /// Seconds after which it gives up on its own.
        #[arg(long)]
        watchdog: f64,
        #[arg(long, value_enum)]
        checksum_offload: OnOff,
    },
    /// The OSD workload (`msgr serve` + `msgr load`) over dpdk, posix and simple, side by side.
    ///
    /// Each path runs a real server and a real client process, one CPU each: dpdk on a
    /// vhost-user pair (root), posix and simple on loopback pinned with taskset. For every
    /// object size and ops-in-flight: write_full ops then verified reads; ops/s, MB/s,
    /// latency percentiles, CPU and system calls per op; a markdown table of medians with
    /// ratios against posix; with --out, the table, every run as CSV and PNG plots. Exit
    /// status 1 if a path failed (the others still run), with why.
    Osd {
        /// Paths to run (comma-separated): dpdk (the userspace stack on a vhost-user pair),
        /// posix (kernel TCP, epoll workers), simple (kernel TCP, a thread per connection).
        #[arg(long, value_delimiter = ',', default_value = "dpdk,posix,simple")]
        paths: Vec<TransportKind>,
        /// Object sizes in bytes (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "0,64,4096,65536,4194304")]
        sizes: Vec<u64>,
        /// Ops in flight (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "1,16,128",
              value_parser = clap::value_parser!(u32).range(1..=4096))]
        in_flight: Vec<u32>,
        /// Client sessions (comma-separated): each a client of its own (`msgr load
        /// --conns`), with --in-flight ops outstanding on each; more than one adds
        /// connections.png (ops/s and latency against sessions) to --out.
        #[arg(long, value_delimiter = ',', default_value = "1",
              value_parser = clap::value_parser!(u32).range(1..=4096))]
        conns: Vec<u32>,
        /// Rounds; the paths take turns within each.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
        rounds: u32,
        /// Multiplies every op count (each run is about a second at 1; 0.02 for a smoke run).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Also write the table (table.md), every run (runs.csv) and plots (throughput.png,
        /// latency.png) into this directory.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        sides: Sides,
    },
    /// Every path on this machine in one command, one report: the OSD workload over dpdk,
    /// posix and simple (as `bench osd`), the kernel TCP floor (sockperf ping-pong and
    /// throughput, iperf3 on loopback) and the raw-link ceiling (testpmd and the bare stack on
    /// the dpdk path's vhost-user link).
    ///
    /// The report opens with the project's claims checked against their targets (dpdk
    /// against posix: ping-pong latency, small-message rate, 4 MiB throughput; the dpdk
    /// messenger against the link's ceiling; posix against the kernel floor). Root for the
    /// dpdk path and the ceiling. `--quick` takes about a minute, the full run about half an
    /// hour. Exit status 1 if any part failed (the others still run), naming each failure.
    All {
        /// The short run (3 sizes, 1 and 16 in flight, 1 round, 2 s per baseline).
        #[arg(long)]
        quick: bool,
        /// Rounds of the OSD sweep [default: 1 with --quick, else 3].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
        rounds: Option<u32>,
        /// Multiplies the OSD sweep's op counts [default: 0.05 with --quick, else 1].
        #[arg(long)]
        scale: Option<f64>,
        /// Also write report.md, baselines.csv and `bench osd --out`'s files (table.md,
        /// runs.csv, throughput.png, latency.png) into this directory.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        sides: Sides,
    },
    /// Instructions per operation of the codec and the engine, counted by valgrind's
    /// callgrind: stable on a noisy machine, for catching regressions.
    ///
    /// Workloads: encode-4k and decode-4k (a 4 KiB MOSDOp to framed bytes and back),
    /// engine-4k and engine-0 (one message through two sans-IO engines joined in memory,
    /// ack included). Each runs with N and 2N ops; the difference over N is one op.
    Instructions {
        /// Ops per workload run (N).
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(10..=10_000_000))]
        ops: u64,
        /// Compare with counts saved earlier (--save); exit 1 if any workload grew by more
        /// than --tolerance percent.
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// Write this run's counts (JSON: workload -> instructions per op).
        #[arg(long)]
        save: Option<PathBuf>,
        /// Allowed growth against --baseline, percent.
        #[arg(long, default_value_t = 2.0)]
        tolerance: f64,
    },
    /// (internal) One instruction-count workload, run N times (under callgrind).
    #[command(hide = true)]
    InsnWork { what: String, n: u64 },
    /// A messenger under fire: many sessions, random sizes, injected socket failures and
    /// mark_downs, every message's order and data checked at the receiver.
    ///
    /// One process: a server and a client standing in for --conns clients, on the chosen
    /// transport (dpdk: its workers and userspace stack on an in-memory switch), lossless
    /// or lossy (--policy). Reports sent, delivered, lost, duplicated, reordered, corrupt,
    /// discarded by mark_down, sessions reset (lossy), reconnects, faults by cause and
    /// resident memory; exit 1 on any loss (lossy: any not explained by a reset its
    /// dispatcher was told of), duplicate, reordering or corruption, a stall, or memory
    /// growing over 10% after the warm-up.
    Soak {
        #[arg(long, default_value = "posix")]
        transport: TransportKind,
        /// Seconds to run.
        #[arg(long, default_value_t = 60.0)]
        seconds: f64,
        /// Stop after this many messages instead (0: only --seconds).
        #[arg(long, default_value_t = 0)]
        messages: u64,
        /// Client sessions.
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
        conns: u64,
        /// Every Nth socket read or write fails, on both sides (0: never).
        #[arg(long, default_value_t = 200)]
        inject: u64,
        /// Mark a random session down (and open another) every N messages (0: never).
        #[arg(long, default_value_t = 5000)]
        mark_down_every: u64,
        /// Largest message, bytes.
        #[arg(long, default_value_t = 4 << 20, value_parser = clap::value_parser!(u64).range(0..=(64 << 20)))]
        max_size: u64,
        /// Seed of the random choices.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// lossless (stateful server, lossless clients: nothing may be lost) or lossy
        /// (stateless server, lossy clients: a session ends at its first fault, and only
        /// messages sent before a reset its dispatcher was told of may be missing).
        #[arg(long, default_value = "lossless", value_parser = ["lossless", "lossy"])]
        policy: String,
        /// Memory growth is measured from this many seconds in.
        #[arg(long, default_value_t = 120.0)]
        warmup: f64,
        /// One JSON object instead of the text report.
        #[arg(long)]
        json: bool,
    },
    /// Hostile peers against a running `msgr serve` on each transport, an honest client
    /// measuring all along.
    ///
    /// For each transport in turn: a real daemon (dpdk: on DPDK's net_tap, in a network
    /// namespace this command creates and deletes; needs root and /dev/net/tun), the honest
    /// client's MPing round trips unloaded, then each attack for --seconds while the client
    /// keeps measuring and new clients keep arriving: garbage bytes (instead of a banner,
    /// after one, after a handshake), slowloris (a handshake at one byte per second, and
    /// connections that send nothing), oversized lengths (front, data, authorizer), bad
    /// header/front/data CRCs, a connection flood (held and abandoned), a reconnect storm
    /// (one entity with stale global_seq/connect_seq, hard resets, unknown sessions, a
    /// socket looping on stale connects). Every attack is bounded in time and stops by
    /// itself.
    ///
    /// Reports per attack the honest p50/p99 and their ratio to unloaded with the 2x
    /// target's verdict (a benchmark figure, not a pass/fail), and the perf dump counters
    /// that show the attack. Exit status 1 if a daemon died, an attack left no trace in
    /// perf dump, or an honest client went unanswered.
    Hostile {
        /// Transports to attack, one after another (comma-separated): simple, posix, dpdk.
        #[arg(long, value_delimiter = ',', default_value = "simple,posix,dpdk")]
        transport: Vec<TransportKind>,
        /// Attacks to run (comma-separated), in this order [default: the defended ones:
        /// garbage, slowloris, oversized, bad-crc, flood, reconnect-storm]. throttle-hold
        /// (headers claiming lengths within the limits, bodies never sent) shows a known
        /// weakness and runs only when named.
        #[arg(long, value_delimiter = ',', value_enum)]
        attacks: Vec<hostile::attack::Kind>,
        /// Seconds per attack [default: 10, 2 with --quick].
        #[arg(long)]
        seconds: Option<f64>,
        /// Seconds of the unloaded measurement first [default: as --seconds].
        #[arg(long)]
        baseline: Option<f64>,
        /// The short run for CI: 2 s per attack, fewer attacking sockets, a daemon with a
        /// 1 s ready timeout and a bound of 64 handshakes.
        #[arg(long)]
        quick: bool,
        /// The msgr program [default: the one beside bench].
        #[arg(long)]
        msgr: Option<PathBuf>,
        /// One JSON object (every transport's report) instead of the tables.
        #[arg(long)]
        json: bool,
        /// The daemon's CPU and the runner's (the honest client and the attackers),
        /// SERVER,CLIENT [default: the first two this process may use].
        #[arg(long, value_delimiter = ',')]
        cpus: Vec<u32>,
        /// The dpdk daemon's link to the peers' kernel: af-packet (a veth pair; the PMD
        /// polls a mapped ring, and the peer kernel's work runs on the runner's CPU, as on
        /// other hosts) or tap (net_tap: a system call and a signal per packet, and the
        /// peer kernel's receive work inside the daemon's sends, on its lcore).
        #[arg(long, value_enum, default_value = "af-packet")]
        link: hostile::netns::Link,
        /// The attackers' nice value (0-19). They share the runner's CPU with the honest
        /// client, as they would not share a host in a real cluster: at 0, a flood's
        /// busy connect loops keep the honest client's threads waiting for that CPU, and
        /// the latency measured is the runner's, not the daemon's.
        #[arg(long, default_value_t = 19, value_parser = clap::value_parser!(u8).range(0..=19))]
        attacker_nice: u8,
    },
    /// (internal) The honest client and the attacks against one daemon; a JSON report.
    #[command(hide = true)]
    HostileRun {
        #[arg(long)]
        addr: EntityAddr,
        #[arg(long)]
        asok: PathBuf,
        #[arg(long)]
        daemon_log: Option<PathBuf>,
        #[arg(long)]
        seconds: f64,
        #[arg(long)]
        baseline: f64,
        #[arg(long)]
        ready_timeout: f64,
        #[arg(long)]
        max_handshakes: usize,
        #[arg(long, value_delimiter = ',', value_enum)]
        attacks: Vec<hostile::attack::Kind>,
        #[arg(long)]
        quick: bool,
        #[arg(long, default_value_t = 0)]
        attacker_nice: u8,
    },
    /// The messenger in one process on loopback beside sockperf: ping-pong and stream over
    /// posix and simple, idle memory per connection; rounds interleaved, medians reported.
    Loopback {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Rounds (each runs every latency and stream path once, in turn): a shared,
        /// noisy machine moves single figures by tens of percent; the median of per-round
        /// ratios does not.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
        rounds: u32,
    },
}

/// Where and how the msgr server and client processes run (`osd`, `all`).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Sides {
    /// The msgr program [default: the one beside bench].
    #[arg(long)]
    pub(crate) msgr: Option<PathBuf>,
    /// The server's and the client's CPU, SERVER,CLIENT [default: the first two this
    /// process may use]. On a many-core machine: two cores of the NIC's NUMA node.
    #[arg(long, value_delimiter = ',')]
    pub(crate) cpus: Vec<u32>,
    /// The dpdk link's MTU (the vhost-user pair; loopback, which the kernel paths use,
    /// has 65536).
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u16).range(576..=9000))]
    pub(crate) mtu: u16,
    /// Network workers on each side: posix threads; dpdk queues of the vhost-user pair, one
    /// lcore each (sessions spread over them).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub(crate) workers: u16,
    /// The server's CPUs, a list such as 2-5 or 2,4 (its workers go on them in turn);
    /// instead of --cpus' first.
    #[arg(long)]
    pub(crate) server_cpus: Option<String>,
    /// The client's CPUs, likewise; instead of --cpus' second.
    #[arg(long)]
    pub(crate) client_cpus: Option<String>,
}

/// A switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OnOff {
    On,
    Off,
}

/// The link between the two sides of a stack benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Link {
    /// The in-memory link, both stacks in one thread.
    Mem,
    /// DPDK vhost-user (side A, this process) <-> virtio-user (side B, a child process).
    Vhost,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Pingpong {
            transport,
            size,
            seconds,
        } => pingpong(transport, size, seconds).map(|r| out!("{r}")),
        Cmd::Stream {
            transport,
            size,
            window,
            seconds,
        } => stream(transport, size, window, seconds).map(|r| out!("{r}")),
        Cmd::Idle { transport, conns } => idle(transport, conns).map(|r| out!("{r}")),
        Cmd::Sockperf { size, seconds } => sockperf_pp(size, seconds, None).and_then(|pp| {
            out!("{pp}");
            sockperf_tp(4096, seconds, None).map(|tp| out!("{tp}"))
        }),
        Cmd::IdleClients { addr, n, nonce } => idle_clients(addr, n, nonce),
        Cmd::Stack {
            conns,
            seconds,
            link: Link::Mem,
            ..
        } => stackbench::run(conns, seconds),
        Cmd::Stack {
            seconds,
            link: Link::Vhost,
            idle,
            no_testpmd,
            checksum_offload,
            ..
        } => vhostbench::run(seconds, idle, !no_testpmd, checksum_offload == OnOff::On),
        Cmd::Testpmd {
            link: Link::Vhost,
            seconds,
        } => testpmd::run(seconds),
        Cmd::Testpmd {
            link: Link::Mem, ..
        } => Err("testpmd: the mem link is in-process only; use --link vhost".into()),
        Cmd::StackPeer {
            socket,
            cpu,
            idle,
            watchdog,
            checksum_offload,
        } => vhostbench::peer_main(&socket, cpu, idle, watchdog, checksum_offload == OnOff::On),
        Cmd::Instructions {
            ops,
            baseline,
            save,
            tolerance,
        } => insn::run(insn::Plan {
            n: ops,
            baseline,
            save,
            tolerance,
        }),
        Cmd::InsnWork { what, n } => insn::work(&what, n),
        Cmd::Soak { .. } if std::env::var_os("GLIBC_TUNABLES").is_none() => {
            // Soak the configuration the service runs (deploy/systemd/msgr@.service).
            use std::os::unix::process::CommandExt as _;
            let err = std::env::current_exe().map_or_else(
                |e| e,
                |exe| {
                    Command::new(exe)
                        .args(std::env::args_os().skip(1))
                        .env("GLIBC_TUNABLES", soak::MALLOC_TUNABLES)
                        .exec()
                },
            );
            Err(format!(
                "cannot re-run with GLIBC_TUNABLES={}: {err}",
                soak::MALLOC_TUNABLES
            ))
        }
        Cmd::Soak {
            transport,
            seconds,
            messages,
            conns,
            inject,
            mark_down_every,
            max_size,
            seed,
            policy,
            warmup,
            json,
        } => {
            if !(seconds.is_finite() && seconds > 0.0 && warmup.is_finite() && warmup >= 0.0) {
                Err("--seconds must be above 0 and --warmup at least 0".into())
            } else {
                soak::run(&soak::Plan {
                    transport,
                    seconds,
                    messages,
                    conns: conns as usize,
                    inject,
                    mark_down_every,
                    max_size: max_size as usize,
                    seed,
                    lossy: policy == "lossy",
                    warmup: Duration::from_secs_f64(warmup),
                    json,
                })
                .and_then(|(report, ok)| {
                    out!("{report}");
                    if ok {
                        Ok(())
                    } else {
                        Err("soak failed (see the report)".into())
                    }
                })
            }
        }
        Cmd::Loopback { seconds, rounds } => loopback(seconds, rounds as usize),
        Cmd::Hostile {
            transport,
            attacks,
            seconds,
            baseline,
            quick,
            msgr,
            json,
            cpus,
            link,
            attacker_nice,
        } => {
            let seconds = seconds.unwrap_or(if quick { 2.0 } else { 10.0 });
            let baseline = baseline.unwrap_or(seconds);
            let in_range = |s: f64| (0.5..=3600.0).contains(&s);
            if !(in_range(seconds) && in_range(baseline)) {
                Err("--seconds and --baseline: 0.5 to 3600".into())
            } else {
                osdbench::pick_cpus(&cpus, &dpdklink::allowed_cpus()).and_then(|cpus| {
                    hostile::run(&hostile::Plan {
                        transports: transport,
                        attacks: if attacks.is_empty() {
                            hostile::attack::Kind::ALL.to_vec()
                        } else {
                            attacks
                        },
                        seconds,
                        baseline,
                        quick,
                        msgr,
                        json,
                        cpus,
                        link,
                        attacker_nice,
                    })
                })
            }
        }
        Cmd::HostileRun {
            addr,
            asok,
            daemon_log,
            seconds,
            baseline,
            ready_timeout,
            max_handshakes,
            attacks,
            quick,
            attacker_nice,
        } => hostile::run_suite(&hostile::RunArgs {
            addr,
            asok,
            daemon_log,
            seconds,
            baseline,
            ready_timeout,
            max_handshakes,
            attacks: if attacks.is_empty() {
                hostile::attack::Kind::ALL.to_vec()
            } else {
                attacks
            },
            quick,
            attacker_nice,
        }),
        Cmd::All {
            quick,
            rounds,
            scale,
            out,
            sides,
        } => check_scale(scale.unwrap_or(1.0)).and_then(|()| {
            allbench::run(allbench::Plan {
                quick,
                rounds,
                scale,
                out,
                sides,
            })
        }),
        Cmd::Osd {
            paths,
            sizes,
            in_flight,
            conns,
            rounds,
            scale,
            out,
            sides,
        } => check_scale(scale).and_then(|()| {
            if sizes.iter().any(|&s| s > 64 << 20) {
                return Err("--sizes: at most 64 MiB (msgr load's limit)".into());
            }
            osdbench::run(osdbench::Plan {
                paths,
                sizes,
                depths: in_flight,
                conns,
                rounds,
                scale,
                out,
                sides,
            })
        }),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn messenger(
    kind: TransportKind,
    ty: EntityType,
    num: i64,
    nonce: u32,
    policy: Policy,
) -> Messenger {
    let mut options = msgr::proto::Options::default();
    // BENCH_NO_CRC=1 measures the framing without Ceph's CRCs (ms_crc_data/header off).
    if std::env::var("BENCH_NO_CRC").is_ok_and(|v| v == "1") {
        options.crc_data = false;
        options.crc_header = false;
    }
    let m = Messenger::builder(EntityName::new(ty, num), nonce)
        .transport(kind)
        .workers(1)
        .options(options)
        .build();
    m.set_default_policy(policy);
    m
}

fn ping(tid: u64, data: &Bytes) -> Message {
    let mut h = MessageHeader::new(MsgType::PING, 1, 1);
    h.tid = tid;
    Message::new(h, Bytes::new(), Bytes::new(), data.clone())
}

/// Replies to every MPing with the same message, from the network thread.
struct Echo;

impl Dispatcher for Echo {
    fn ms_can_fast_dispatch_any(&self) -> bool {
        true
    }
    fn ms_can_fast_dispatch(&self, m: &Message) -> bool {
        m.ty() == MsgType::PING
    }
    fn ms_fast_dispatch(&self, m: Incoming) {
        let _ = m.conn.send_message(m.msg.clone());
    }
}

/// The client side of a ping-pong: records each round trip and sends the next ping.
struct Pinger {
    data: Bytes,
    sent_at: Mutex<Instant>,
    hist: Mutex<Histogram<u64>>,
    recording: AtomicBool,
    stop: AtomicBool,
    count: AtomicU64,
    done: (Mutex<bool>, Condvar),
}

impl Dispatcher for Pinger {
    fn ms_can_fast_dispatch_any(&self) -> bool {
        true
    }
    fn ms_can_fast_dispatch(&self, m: &Message) -> bool {
        m.ty() == MsgType::PING
    }
    fn ms_fast_dispatch(&self, m: Incoming) {
        let now = Instant::now();
        let rtt = now.duration_since(*self.sent_at.lock().unwrap_or_else(|e| e.into_inner()));
        if self.recording.load(Ordering::Relaxed) {
            let _ = self
                .hist
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .record(rtt.as_nanos() as u64);
            self.count.fetch_add(1, Ordering::Relaxed);
        }
        if self.stop.load(Ordering::Relaxed) {
            let (l, cv) = &self.done;
            *l.lock().unwrap_or_else(|e| e.into_inner()) = true;
            cv.notify_all();
            return;
        }
        *self.sent_at.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        let _ = m.conn.send_message(ping(m.msg.header.tid + 1, &self.data));
    }
}

struct Pair {
    server: Messenger,
    client: Messenger,
    conn: ConnectionRef,
}

fn pair(
    kind: TransportKind,
    server_policy: Policy,
    client_policy: Policy,
    client_d: Arc<dyn Dispatcher>,
    server_d: Arc<dyn Dispatcher>,
) -> Result<Pair, String> {
    let server = messenger(kind, EntityType::OSD, 0, 11, server_policy);
    server.add_dispatcher_tail(server_d);
    let addr = server
        .bind("127.0.0.1:0".parse().map_err(|e| format!("{e}"))?)
        .map_err(|e| e.to_string())?;
    server.start().map_err(|e| e.to_string())?;
    let client = messenger(kind, EntityType::CLIENT, 1, 12, client_policy);
    client.add_dispatcher_tail(client_d);
    client.start().map_err(|e| e.to_string())?;
    let conn = client.connect_to(addr, EntityType::OSD);
    Ok(Pair {
        server,
        client,
        conn,
    })
}

/// Latency summary in microseconds.
#[derive(Clone)]
pub(crate) struct Lat {
    label: String,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    count: u64,
    /// Over how long `count` round trips were made.
    pub(crate) seconds: f64,
}

impl Lat {
    /// Round trips per second, when the duration is known.
    pub(crate) fn round_trips_s(&self) -> Option<f64> {
        (self.seconds > 0.0).then(|| self.count as f64 / self.seconds)
    }
}

impl std::fmt::Display for Lat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<28} RTT p50 {:>7.2} us  p99 {:>7.2} us  p99.9 {:>7.2} us  ({} round trips)",
            self.label, self.p50, self.p99, self.p999, self.count
        )
    }
}

fn pingpong(kind: TransportKind, size: usize, seconds: f64) -> Result<Lat, String> {
    let pinger = Arc::new(Pinger {
        data: Bytes::from(vec![0x42; size]),
        sent_at: Mutex::new(Instant::now()),
        hist: Mutex::new(
            Histogram::new_with_bounds(100, 10_000_000_000, 3).map_err(|e| e.to_string())?,
        ),
        recording: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        count: AtomicU64::new(0),
        done: (Mutex::new(false), Condvar::new()),
    });
    let p = pair(
        kind,
        Policy::stateless_server(0),
        Policy::lossy_client(0),
        pinger.clone(),
        Arc::new(Echo),
    )?;
    *pinger.sent_at.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    p.conn
        .send_message(ping(1, &pinger.data))
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(500));
    pinger.recording.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs_f64(seconds));
    pinger.recording.store(false, Ordering::Relaxed);
    pinger.stop.store(true, Ordering::Relaxed);
    let (l, cv) = &pinger.done;
    let _ = cv.wait_timeout_while(
        l.lock().unwrap_or_else(|e| e.into_inner()),
        Duration::from_secs(2),
        |d| !*d,
    );
    let h = pinger
        .hist
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    p.client.shutdown();
    p.server.shutdown();
    if h.is_empty() {
        return Err(format!("{}: no round trip completed", kind.name()));
    }
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Ok(Lat {
        label: format!("msgr {} {size} B", kind.name()),
        p50: us(0.5),
        p99: us(0.99),
        p999: us(0.999),
        count: h.len(),
        seconds,
    })
}

/// Counts what arrives, and wakes a sender waiting for window space.
#[derive(Default)]
struct Sink {
    msgs: AtomicU64,
    bytes: AtomicU64,
    waiting: AtomicBool,
    /// The receive count at which a waiting sender wants to be woken.
    wake_at: AtomicU64,
    space: (Mutex<()>, Condvar),
}

impl Sink {
    /// Blocks (without spinning: client and server workers need the cores) until fewer
    /// than `window` of the `sent` messages are in flight.
    fn wait_below(&self, sent: u64, window: u64) {
        let (l, cv) = &self.space;
        let mut g = l.lock().unwrap_or_else(|e| e.into_inner());
        self.wake_at
            .store(sent.saturating_sub(window) + 1, Ordering::SeqCst);
        self.waiting.store(true, Ordering::SeqCst);
        while sent - self.msgs.load(Ordering::SeqCst) >= window {
            g = cv
                .wait_timeout(g, Duration::from_millis(5))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        self.waiting.store(false, Ordering::SeqCst);
    }
}

impl Dispatcher for Sink {
    fn ms_can_fast_dispatch_any(&self) -> bool {
        true
    }
    fn ms_can_fast_dispatch(&self, _m: &Message) -> bool {
        true
    }
    fn ms_fast_dispatch(&self, m: Incoming) {
        self.bytes
            .fetch_add(m.msg.payload_len() as u64, Ordering::Relaxed);
        let n = self.msgs.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= self.wake_at.load(Ordering::SeqCst) && self.waiting.load(Ordering::SeqCst) {
            let _g = self.space.0.lock().unwrap_or_else(|e| e.into_inner());
            self.space.1.notify_one();
        }
    }
}

#[derive(Clone)]
pub(crate) struct Rate {
    label: String,
    pub(crate) mb_s: f64,
    pub(crate) msgs_s: f64,
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<28} {:>9.1} MB/s  {:>10.0} msg/s",
            self.label, self.mb_s, self.msgs_s
        )
    }
}

fn stream(kind: TransportKind, size: usize, window: usize, seconds: f64) -> Result<Rate, String> {
    let sink = Arc::new(Sink::default());
    // Lossless, so the sender can bound what is in flight by its unacked backlog.
    let p = pair(
        kind,
        Policy::stateful_server(0),
        Policy::lossless_client(0),
        Arc::new(Sink::default()),
        sink.clone(),
    )?;
    let data = Bytes::from(vec![0x5a; size]);
    let mut tid = 0u64;
    let warm = Instant::now() + Duration::from_millis(500);
    let mut start: Option<(Instant, u64, u64)> = None;
    let end_at = warm + Duration::from_secs_f64(seconds);
    loop {
        let now = Instant::now();
        if start.is_none() && now >= warm {
            start = Some((
                now,
                sink.msgs.load(Ordering::Relaxed),
                sink.bytes.load(Ordering::Relaxed),
            ));
        }
        if now >= end_at {
            break;
        }
        // Flow control by what the receiver has seen (both ends live in this process), so
        // the sender never contends for the connection's lock just to look.
        let in_flight = tid - sink.msgs.load(Ordering::Relaxed);
        if in_flight as usize >= window {
            // Refill at half a window, so the sender wakes once per batch, not per message.
            sink.wait_below(tid, (window / 2).max(1) as u64);
            continue;
        }
        for _ in 0..(window - in_flight as usize).min(64) {
            tid += 1;
            if p.conn.send_message(ping(tid, &data)).is_err() {
                tid -= 1;
                std::thread::yield_now();
                break;
            }
        }
    }
    let (t0, m0, b0) = start.ok_or("no measurement window")?;
    let dt = t0.elapsed().as_secs_f64();
    let msgs = sink.msgs.load(Ordering::Relaxed) - m0;
    let bytes = sink.bytes.load(Ordering::Relaxed) - b0;
    p.client.shutdown();
    p.server.shutdown();
    Ok(Rate {
        label: format!("msgr {} {size} B stream", kind.name()),
        mb_s: bytes as f64 / dt / 1e6,
        msgs_s: msgs as f64 / dt,
    })
}

fn rss_kib() -> Result<u64, String> {
    msgr::procstat::memory_kib()
        .map(|(rss, _)| rss)
        .ok_or_else(|| "no VmRSS in /proc/self/status".into())
}

struct Mem {
    label: String,
    per_conn_kib: f64,
}

impl std::fmt::Display for Mem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<28} {:>7.1} KiB per idle session (server side, RSS growth / sessions)",
            self.label, self.per_conn_kib
        )
    }
}

fn idle(kind: TransportKind, conns: usize) -> Result<Mem, String> {
    // The server under test lives here; the clients live in a child process (plain
    // blocking sessions), so what grows here is the server's per-session state only.
    let server = messenger(
        kind,
        EntityType::OSD,
        0,
        21,
        Policy::stateless_registered_server(0),
    );
    server.add_dispatcher_tail(Arc::new(Echo));
    let addr = server
        .bind("127.0.0.1:0".parse().map_err(|e| format!("{e}"))?)
        .map_err(|e| e.to_string())?;
    server.start().map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // One warm-up session first, so that lazily allocated shared structures are in place.
    let warm = Proc(
        Command::new(&exe)
            .args(["idle-clients", &addr.to_string(), "1", "900000"])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?,
    );
    wait_sessions(&server, 1)?;
    let before = rss_kib()?;
    let clients = Proc(
        Command::new(&exe)
            .args([
                "idle-clients",
                &addr.to_string(),
                &conns.to_string(),
                "5000",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?,
    );
    wait_sessions(&server, 1 + conns)?;
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib()?;
    drop(clients);
    drop(warm);
    server.shutdown();
    Ok(Mem {
        label: format!("msgr {} x{conns}", kind.name()),
        per_conn_kib: after.saturating_sub(before) as f64 / conns as f64,
    })
}

fn wait_sessions(m: &Messenger, n: usize) -> Result<(), String> {
    let t = Instant::now();
    while m.connections().iter().filter(|c| c.is_connected()).count() < n {
        if t.elapsed() > Duration::from_secs(30) {
            return Err(format!(
                "only {} of {n} sessions opened",
                m.connections().iter().filter(|c| c.is_connected()).count()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The child side of `idle`: hold `n` open client sessions until killed.
fn idle_clients(addr: EntityAddr, n: usize, nonce: u32) -> Result<(), String> {
    let mut held = Vec::new();
    for i in 0..n {
        let mut cfg = msgr::proto::Config::new(
            EntityName::new(EntityType::CLIENT, i as i64),
            EntityAddr {
                nonce: nonce + i as u32,
                ..EntityAddr::none()
            },
        );
        cfg.policies.default = Policy::lossy_client(0);
        let c = msgr::blocking::BlockingConn::connect(
            cfg,
            addr,
            EntityType::OSD,
            Duration::from_secs(10),
        )
        .map_err(|e| e.to_string())?;
        held.push(c);
    }
    std::thread::sleep(Duration::from_secs(3600));
    drop(held);
    Ok(())
}

/// A child process killed on drop.
pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// `prog`, under `taskset -c CPU` when given a CPU.
pub(crate) fn pinned(prog: &str, cpu: Option<u32>) -> Command {
    match cpu {
        Some(c) => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", &c.to_string(), prog]);
            cmd
        }
        None => Command::new(prog),
    }
}

fn sockperf_server(port: u16, cpu: Option<u32>) -> Result<Proc, String> {
    let child = pinned("sockperf", cpu)
        .args([
            "server",
            "--tcp",
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("sockperf not runnable ({e}); apt-get install sockperf"))?;
    std::thread::sleep(Duration::from_millis(300));
    Ok(Proc(child))
}

fn sockperf_run(args: &[&str], cpu: Option<u32>) -> Result<String, String> {
    let out = pinned("sockperf", cpu)
        .args(args)
        .output()
        .map_err(|e| format!("sockperf: {e}"))?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("sockperf {args:?} failed: {text}"));
    }
    Ok(text)
}

fn number_after(text: &str, key: &str) -> Option<f64> {
    let i = text.find(key)? + key.len();
    let rest = text[i..].trim_start_matches([' ', '=', ':']);
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Runs `sockperf MODE --tcp` against a fresh sockperf server on loopback; its output.
/// With `pin`, the server runs on its first CPU and the client on its second.
fn sockperf_client(
    mode: &str,
    size: usize,
    seconds: u64,
    pin: Option<dpdklink::Cpus>,
) -> Result<String, String> {
    let port = free_port()?;
    let _srv = sockperf_server(port, pin.map(|c| c.a))?;
    sockperf_run(
        &[
            mode,
            "--tcp",
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            &size.to_string(),
            "-t",
            &seconds.to_string(),
        ],
        pin.map(|c| c.b),
    )
}

pub(crate) fn sockperf_pp(
    size: usize,
    seconds: u64,
    pin: Option<dpdklink::Cpus>,
) -> Result<Lat, String> {
    let text = sockperf_client("ping-pong", size, seconds, pin)?;
    // sockperf reports one-way latency (half the round trip).
    let p = |k: &str| {
        number_after(&text, k)
            .map(|v| 2.0 * v)
            .ok_or_else(|| format!("no '{k}' in sockperf output"))
    };
    Ok(Lat {
        label: format!("sockperf tcp {size} B"),
        p50: p("percentile 50.000")?,
        p99: p("percentile 99.000")?,
        p999: p("percentile 99.900")?,
        count: sockperf_count(&text),
        seconds: sockperf_valid_seconds(&text),
    })
}

/// Round trips sockperf measured: the valid duration's, not the whole run's (warm-up).
fn sockperf_count(text: &str) -> u64 {
    text.find("[Valid Duration]")
        .and_then(|i| number_after(&text[i..], "ReceivedMessages"))
        .unwrap_or(0.0) as u64
}

/// The length of sockperf's valid duration (seconds; 0 when absent).
fn sockperf_valid_seconds(text: &str) -> f64 {
    text.find("[Valid Duration]")
        .and_then(|i| number_after(&text[i..], "RunTime"))
        .unwrap_or(0.0)
}

pub(crate) fn sockperf_tp(
    size: usize,
    seconds: u64,
    pin: Option<dpdklink::Cpus>,
) -> Result<Rate, String> {
    let text = sockperf_client("throughput", size, seconds, pin)?;
    let msgs =
        number_after(&text, "Message Rate is").ok_or("no message rate in sockperf output")?;
    Ok(Rate {
        label: format!("sockperf tcp {size} B stream"),
        mb_s: msgs * size as f64 / 1e6,
        msgs_s: msgs,
    })
}

fn loopback(seconds: f64, rounds: usize) -> Result<(), String> {
    let secs = seconds.ceil() as u64;
    let kinds = [TransportKind::Posix, TransportKind::Simple];
    // lat[path][round], rates[path][round]; path 0 is sockperf.
    let mut lat: Vec<Vec<Lat>> = vec![Vec::new(); 1 + kinds.len()];
    let mut rates: Vec<Vec<Rate>> = vec![Vec::new(); 1 + kinds.len()];
    for r in 1..=rounds {
        eprintln!("bench: round {r}/{rounds}: sockperf ping-pong...");
        lat[0].push(sockperf_pp(64, secs, None)?);
        for (i, kind) in kinds.iter().enumerate() {
            eprintln!(
                "bench: round {r}/{rounds}: msgr {} ping-pong...",
                kind.name()
            );
            lat[1 + i].push(pingpong(*kind, 64, seconds)?);
        }
        eprintln!("bench: round {r}/{rounds}: sockperf throughput...");
        rates[0].push(sockperf_tp(4096, secs, None)?);
        for (i, kind) in kinds.iter().enumerate() {
            eprintln!("bench: round {r}/{rounds}: msgr {} stream...", kind.name());
            rates[1 + i].push(stream(*kind, 4096, 256, seconds)?);
        }
    }
    let mut mem = Vec::new();
    for kind in kinds {
        eprintln!("bench: msgr {} idle memory...", kind.name());
        mem.push(idle(kind, 200)?);
    }
    out!(
        "machine: {} cores (client and server share them); {rounds} interleaved rounds of \
         {seconds} s; each row is the round with the median figure, ratios are medians of \
         per-round ratios",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for path in &lat {
        let row = median_by(path, |l| l.p50);
        let ratio = median((0..rounds).map(|r| path[r].p50 / lat[0][r].p50).collect());
        let p99 = median((0..rounds).map(|r| path[r].p99 / lat[0][r].p99).collect());
        out!("{row}   vs sockperf: p50 {ratio:.2}x  p99 {p99:.2}x");
    }
    for path in &rates {
        let row = median_by(path, |r| r.mb_s);
        let ratios: Vec<f64> = (0..rounds)
            .map(|r| 100.0 * path[r].mb_s / rates[0][r].mb_s)
            .collect();
        let each: Vec<String> = ratios.iter().map(|x| format!("{x:.0}")).collect();
        out!(
            "{row}   {:.0}% of sockperf (rounds: {}%)",
            median(ratios.clone()),
            each.join("/")
        );
    }
    for m in &mem {
        out!("{m}");
    }
    Ok(())
}

/// `--scale`: above 0, at most 100.
fn check_scale(scale: f64) -> Result<(), String> {
    if scale > 0.0 && scale <= 100.0 {
        Ok(())
    } else {
        Err(format!("--scale {scale}: must be above 0 and at most 100"))
    }
}

/// The median of `v` (the mean of the middle two for an even count); NaN when empty.
fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The element whose `key` is the (lower) median.
fn median_by<T>(v: &[T], key: impl Fn(&T) -> f64) -> &T {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| key(&v[a]).total_cmp(&key(&v[b])));
    &v[idx[(idx.len() - 1) / 2]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
        let v = [5.0, 9.0, 1.0, 7.0];
        assert_eq!(*median_by(&v, |x| *x), 5.0);
    }

    #[test]
    fn sockperf_counts_the_valid_duration() {
        let text = "sockperf: [Total Run] RunTime=1.000 sec; SentMessages=66458; \
                    ReceivedMessages=66457\nsockperf: [Valid Duration] RunTime=0.550 sec; \
                    SentMessages=33166; ReceivedMessages=33165\n";
        assert_eq!(sockperf_count(text), 33165);
        assert_eq!(sockperf_count("no summary"), 0);
    }
}
