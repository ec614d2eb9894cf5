//! `msgr`: the command-line program of the msgr crate (DESIGN.md, "Command-line contract").
//!
//! ```text
//! msgr serve --bind v1:127.0.0.1:6800 [--transport simple|posix|dpdk] [--name osd.0] [--admin-socket PATH]
//!     (dpdk: --eal "<EAL ARGS>" --ip CIDR [--gateway IP] [--dpdk-port N] [--idle POLICY])
//! msgr ping v1:127.0.0.1:6789 [--count N]
//! msgr load v1:127.0.0.1:6800 [--ops N] [--size BYTES] [--in-flight K]
//! msgr monmap v1:127.0.0.1:6789 [--json]
//! msgr admin PATH perf dump
//! ```
//!
//! Every failure ends in exactly one line on stderr, `msgr: <what went wrong>`, and a non-zero
//! exit status (2 for bad usage, 1 for everything else); `--help` and `--version` exit 0.
// A driver program: it reads the clock (round-trip times, deadlines, uptime). The workspace
// clippy.toml bans `Instant::now` for the sans-IO core, not for drivers.
#![allow(clippy::disallowed_methods)]

// The subcommands live in src/bin/msgr/ (a binary root's modules resolve next to it).
#[path = "msgr/client.rs"]
mod client;
#[path = "msgr/config.rs"]
mod config;
#[path = "msgr/load.rs"]
mod load;
#[path = "msgr/monmap.rs"]
mod monmap;
#[path = "msgr/net.rs"]
mod net;
#[path = "msgr/ping.rs"]
mod ping;
#[path = "msgr/serve.rs"]
mod serve;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use msgr::entity::{AddrType, EntityAddr, EntityName};
use msgr::messenger::TransportKind;
use stack::IdlePolicy;

/// Exit status for bad command-line usage (what clap uses too).
const EXIT_USAGE: u8 = 2;

const ABOUT: &str =
    "A Ceph-wire-compatible messenger (msgr v1): an OSD-like daemon and client tools";

const LONG_ABOUT: &str = "\
A Ceph-wire-compatible messenger (msgr v1): an OSD-like daemon and client tools.

Addresses are Ceph-style: v1:IP:PORT[/NONCE]; a bare IP:PORT means v1. Monitors use nonce 0;
`msgr serve` prints its full address (with its nonce) when it starts.";

const AFTER_HELP: &str = "\
Examples:
  msgr serve --bind v1:127.0.0.1:0 --admin-socket /tmp/osd.0.asok
  msgr ping v1:127.0.0.1:6789 --count 3
  msgr load v1:127.0.0.1:6800 --ops 10000 --size 4096 --in-flight 16
  msgr monmap v1:127.0.0.1:6789 --json
  msgr admin /tmp/osd.0.asok perf dump

Logging: --log-level, or RUST_LOG (e.g. RUST_LOG=msgr=debug) when --log-level is not given.";

#[derive(Parser, Debug)]
#[command(
    name = "msgr",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    propagate_version = true,
    color = clap::ColorChoice::Never
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand accepts.
#[derive(Args, Debug)]
struct GlobalArgs {
    /// Log verbosity on stderr [default: info for serve, error otherwise; RUST_LOG is used
    /// when this is not given]
    #[arg(long, global = true, value_enum, help_heading = "Global options")]
    log_level: Option<LogLevel>,

    /// Transport for subcommands that run a messenger: simple (a thread per connection),
    /// posix (epoll workers) or dpdk (the userspace TCP/IP stack on a DPDK port: needs --eal
    /// and --ip)
    #[arg(long, global = true, default_value = "posix", value_parser = parse_transport, help_heading = "Global options")]
    transport: TransportKind,

    /// DPDK EAL arguments, as one shell-quoted string, e.g. "-l 0-1 -a 0000:3b:00.0" or
    /// "--no-pci --vdev=net_tap0,iface=mt0" (--transport dpdk)
    #[arg(
        long,
        global = true,
        value_name = "EAL ARGS",
        allow_hyphen_values = true,
        help_heading = "DPDK options"
    )]
    eal: Option<String>,

    /// Our IP address and prefix on the DPDK port, e.g. 10.88.0.2/24 (--transport dpdk)
    #[arg(
        long,
        global = true,
        value_name = "CIDR",
        help_heading = "DPDK options"
    )]
    ip: Option<String>,

    /// Next hop for addresses outside --ip's subnet (--transport dpdk)
    #[arg(long, global = true, value_name = "IP", help_heading = "DPDK options")]
    gateway: Option<String>,

    /// The DPDK port to use [default: 0, the first device EAL found]
    #[arg(long, global = true, value_name = "N", help_heading = "DPDK options")]
    dpdk_port: Option<u16>,

    /// The DPDK port's MTU, e.g. 9000 for jumbo frames (both ends must agree) [default: the
    /// device's, normally 1500]
    #[arg(long, global = true, value_name = "BYTES", value_parser = clap::value_parser!(u16).range(576..=9600), help_heading = "DPDK options")]
    mtu: Option<u16>,

    /// What a worker does when a poll finds nothing: busy (poll again: isolated cores),
    /// yield[:SPINS], sleep[:SPINS[:MAX_US]] [default: sleep:200:50, for shared cores]
    #[arg(long, global = true, value_name = "POLICY", value_parser = parse_idle, help_heading = "DPDK options")]
    idle: Option<IdlePolicy>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// DPDK's log level for ours, one step quieter: EAL reports at INFO what is routine for
    /// it ("Detected CPU lcores") and its failures reach us as errors anyway.
    fn rte_level(self) -> u32 {
        match self {
            Self::Error => 3,
            Self::Warn => 4,
            Self::Info => 5,
            Self::Debug => 7,
            Self::Trace => 8,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the OSD-like daemon: an in-memory object store served by fast dispatch
    #[command(long_about = serve::LONG_ABOUT)]
    Serve(serve::ServeArgs),
    /// Send MPing round trips to a Ceph-speaking peer (a ceph-mon, or `msgr serve`)
    #[command(long_about = ping::LONG_ABOUT)]
    Ping(ping::PingArgs),
    /// Run an OSD write/read workload (pipelined, every read checked) and report rates
    #[command(long_about = load::LONG_ABOUT)]
    Load(load::LoadArgs),
    /// Authenticate to a Ceph monitor with auth none and print its monmap
    #[command(long_about = monmap::LONG_ABOUT)]
    Monmap(monmap::MonmapArgs),
    /// Send a command to an admin socket (`msgr serve --admin-socket`, or a Ceph daemon's)
    #[command(long_about = ADMIN_LONG_ABOUT)]
    Admin(AdminArgs),
}

const ADMIN_LONG_ABOUT: &str = "\
Send a command to an admin socket and print the reply.

The protocol is Ceph's: `msgr admin` can also query a Ceph daemon's socket, and
`ceph --admin-daemon PATH perf dump` can query `msgr serve`. Commands of `msgr serve`:
help, perf dump [SECTION], status, version, shutdown.";

#[derive(Args, Debug)]
struct AdminArgs {
    /// The admin socket (a Unix socket path)
    path: PathBuf,
    /// The command words, e.g. `perf dump`, `status`, `help`; or one JSON object such as
    /// '{"prefix": "perf dump", "format": "json"}'
    #[arg(required = true, num_args = 1.., allow_hyphen_values = true)]
    command: Vec<String>,
}

/// What ends the program with a message and a status.
#[derive(Debug)]
struct Failure {
    msg: String,
    code: u8,
}

impl Failure {
    fn usage(msg: impl Into<String>) -> Self {
        Self {
            msg: msg.into(),
            code: EXIT_USAGE,
        }
    }
}

impl From<String> for Failure {
    fn from(msg: String) -> Self {
        Self { msg, code: 1 }
    }
}

impl From<&str> for Failure {
    fn from(msg: &str) -> Self {
        msg.to_owned().into()
    }
}

type Result<T, E = Failure> = std::result::Result<T, E>;

fn parse_transport(s: &str) -> Result<TransportKind, String> {
    s.parse()
}

fn parse_idle(s: &str) -> Result<IdlePolicy, String> {
    s.parse()
}

/// A peer address from the command line, remembering whether the nonce was given.
#[derive(Clone, Copy, Debug)]
struct PeerAddr {
    addr: EntityAddr,
    /// `v1:IP:PORT/NONCE` (as opposed to a default nonce of 0).
    explicit_nonce: bool,
}

impl PeerAddr {
    fn socket(&self) -> SocketAddr {
        // Parsing guarantees an IP:PORT.
        self.addr
            .addr
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }
}

fn parse_peer_addr(s: &str) -> Result<PeerAddr, String> {
    let addr: EntityAddr = s.parse()?;
    if addr.ty == AddrType::MSGR2 {
        return Err(format!(
            "{s:?} is a msgr v2 address; only v1 is supported (use the peer's v1:IP:PORT)"
        ));
    }
    Ok(PeerAddr {
        addr: EntityAddr {
            ty: AddrType::LEGACY,
            ..addr
        },
        explicit_nonce: s.contains('/'),
    })
}

fn parse_entity_name(s: &str) -> Result<EntityName, String> {
    s.parse()
}

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_owned());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("msgr: internal error: {msg}{at}");
    }));
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return clap_exit(&e),
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("msgr: {}", f.msg);
            ExitCode::from(f.code)
        }
    }
}

/// Help and version go to stdout as clap renders them; every usage error becomes one line.
fn clap_exit(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => {
            let rendered = e.to_string();
            eprintln!(
                "msgr: {} (see '{} --help')",
                one_line(&rendered),
                command_of(&rendered)
            );
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// clap's message up to its first blank line, as one line, without the `error: ` tag.
fn one_line(rendered: &str) -> String {
    let text: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let joined = text.join(" ");
    joined.strip_prefix("error: ").unwrap_or(&joined).to_owned()
}

/// `msgr SUBCOMMAND` from the usage line of a clap error (`msgr` if there is none).
fn command_of(rendered: &str) -> String {
    rendered
        .lines()
        .find_map(|l| l.trim().strip_prefix("Usage: "))
        .map(|u| {
            u.split_whitespace()
                .take_while(|w| !w.starts_with(['[', '<', '-']))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "msgr".to_owned())
}

fn run(cli: Cli) -> Result<()> {
    if let Command::Serve(serve::ServeArgs {
        config: Some(path),
        check,
        ..
    }) = &cli.command
    {
        return from_config(path, *check);
    }
    let default_level = match cli.command {
        Command::Serve(_) => LogLevel::Info,
        _ => LogLevel::Error,
    };
    let net = net::Net::from_args(&cli.global, cli.global.log_level.unwrap_or(default_level))?;
    init_logging(cli.global.log_level, default_level);
    match cli.command {
        Command::Serve(a) => serve::run(a, &net),
        Command::Ping(a) => ping::run(a, &net),
        Command::Load(a) => load::run(a, &net),
        Command::Monmap(a) => monmap::run(a, &net),
        Command::Admin(a) => admin(a),
    }
}

/// `serve --config FILE [--check]`: the file's command line, checked, then run (or printed).
fn from_config(path: &std::path::Path, check: bool) -> Result<()> {
    // With --config the file says everything: other options would be a second source.
    let extra: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "serve" && a != "--check" && a != "--config")
        .filter(|a| std::path::Path::new(a) != path && !a.starts_with("--config="))
        .collect();
    if !extra.is_empty() {
        return Err(Failure::usage(format!(
            "with --config every setting comes from the file; not also {}",
            extra.join(" ")
        )));
    }
    let args = config::command_line(path).map_err(Failure::usage)?;
    let cli = Cli::try_parse_from(std::iter::once("msgr".to_owned()).chain(args.iter().cloned()))
        .map_err(|e| {
        Failure::usage(format!(
            "config {}: {}",
            path.display(),
            one_line(&e.to_string())
        ))
    })?;
    let level = cli.global.log_level.unwrap_or(LogLevel::Info);
    net::Net::from_args(&cli.global, level)
        .map_err(|f| Failure::usage(format!("config {}: {}", path.display(), f.msg)))?;
    if check {
        return emit(&format!(
            "config {}: OK\n{}",
            path.display(),
            config::shell_line(&args)
        ));
    }
    run(cli)
}

fn init_logging(level: Option<LogLevel>, default: LogLevel) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::new(l.as_str()),
        None => {
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default.as_str()))
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

fn admin(a: AdminArgs) -> Result<()> {
    let command = a.command.join(" ");
    let reply = msgr::admin::request(&a.path, &command).map_err(|e| {
        if e.starts_with("admin socket ") {
            e
        } else {
            format!("admin socket {}: {e}", a.path.display())
        }
    })?;
    emit(reply.trim_end())
}

/// Prints one chunk of output with a newline; a closed stdout (`| head`) ends the program
/// quietly instead of panicking.
fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(format!("writing to stdout: {e}").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn addresses() {
        let a = parse_peer_addr("v1:127.0.0.1:6789").unwrap();
        assert!(!a.explicit_nonce);
        assert_eq!(a.addr.to_string(), "v1:127.0.0.1:6789/0");
        let a = parse_peer_addr("127.0.0.1:6800/42").unwrap();
        assert!(a.explicit_nonce);
        assert_eq!(a.addr.to_string(), "v1:127.0.0.1:6800/42");
        assert!(parse_peer_addr("v2:127.0.0.1:3300").is_err());
        assert!(parse_peer_addr("localhost").is_err());
        assert!(parse_peer_addr("1.2.3.4:99999").is_err());
    }

    #[test]
    fn clap_errors_become_one_line() {
        let e = Cli::try_parse_from(["msgr", "ping"]).unwrap_err();
        let l = one_line(&e.to_string());
        assert!(!l.contains('\n') && l.contains("<ADDR>"), "{l}");
        let e = Cli::try_parse_from(["msgr", "--transport", "pigeon", "ping", "1.2.3.4:5"])
            .unwrap_err();
        let l = one_line(&e.to_string());
        assert!(!l.contains('\n') && l.contains("unknown transport"), "{l}");
    }
}
