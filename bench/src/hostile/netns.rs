//! Network namespaces of `bench hostile`'s own for the dpdk daemon, with the link its DPDK
//! port attaches to ([`Link`]). The kernel end of the link holds [`KERNEL_IP`] in the peer
//! namespace, where every process that talks to the daemon runs (`ip netns exec`). Nothing
//! is added to the root namespace. Dropping it deletes the namespaces, and the link with
//! them. (The arrangement of the msgr tests' `netlab` and the stack tests' `netns`.)

use std::path::Path;
use std::process::{Command, Stdio};

/// The kernel's address on the link (the attackers' and the honest client's).
pub(crate) const KERNEL_IP: &str = "10.79.0.1";
/// The daemon's address on the DPDK port.
pub(crate) const DAEMON_IP: &str = "10.79.0.2";

/// The virtual link between the dpdk daemon and the kernel that the attackers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Link {
    /// DPDK's `net_af_packet` on a veth pair, the daemon's end in a namespace of its own
    /// (no address there). The PMD polls a mapped ring (no system call per received
    /// packet; one per sent burst), and receive packet steering hands the peer kernel's
    /// work on the daemon's packets to the runner's CPU: the daemon's lcore does what it
    /// would do with a NIC, and the peers' kernel runs elsewhere, as on other hosts.
    AfPacket,
    /// DPDK's `net_tap`: one `readv` per received packet, one `writev` per sent one, a
    /// signal per packet, and the peer kernel's receive work done inside the daemon's
    /// `writev` on its lcore. Every attacking packet costs the daemon's lcore the kernel's
    /// work too, which no NIC would.
    Tap,
}

impl Link {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::AfPacket => "af_packet",
            Self::Tap => "tap",
        }
    }
}

/// Root, `ip`, the tun device (tap) or ethtool (af_packet: offloads off on the veth).
pub(crate) fn check(link: Link) -> Result<(), String> {
    if !host::is_root() {
        return Err(
            "needs root (network namespaces, a tap or raw sockets, DPDK's runtime directory)"
                .into(),
        );
    }
    let runs = |prog: &str, arg: &str| {
        Command::new(prog)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    };
    if !runs("ip", "-V") {
        return Err("needs the ip program (iproute2)".into());
    }
    match link {
        Link::Tap if !Path::new("/dev/net/tun").exists() => Err("needs /dev/net/tun".into()),
        Link::AfPacket if !runs("ethtool", "--version") => Err(
            "needs ethtool (apt-get install ethtool), to turn the veth's offloads off; \
             or --link tap"
                .into(),
        ),
        _ => Ok(()),
    }
}

/// Runs `prog args`; its stderr is the error if it fails.
pub(crate) fn run(prog: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{prog}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{prog} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    run("ip", args)
}

/// `ip netns exec NS PROG ARGS...`.
fn in_ns(ns: &str, prog: &str, args: &[&str]) -> Result<(), String> {
    let mut all = vec!["netns", "exec", ns, prog];
    all.extend_from_slice(args);
    ip(&all)
}

/// A new namespace with lo up and IPv6 off (no neighbour discovery on the link).
fn add_ns(name: &str) -> Result<(), String> {
    // A namespace left by a killed run with the same pid: ours now.
    let _ = ip(&["netns", "del", name]);
    ip(&["netns", "add", name])?;
    ip(&["-n", name, "link", "set", "lo", "up"])?;
    for key in ["all", "default"] {
        in_ns(
            name,
            "sysctl",
            &["-qw", &format!("net.ipv6.conf.{key}.disable_ipv6=1")],
        )?;
    }
    Ok(())
}

/// The namespaces and their link; see the module docs.
pub(crate) struct Netns {
    /// The peers' namespace (the kernel end of the link).
    pub(crate) name: String,
    /// The daemon's namespace, for af_packet (its veth end must not be in the root one).
    daemon_ns: Option<String>,
    /// The interface DPDK attaches to.
    dev: String,
    link: Link,
}

impl Netns {
    /// `msgr-hostile-<pid>` with the kernel end up at [`KERNEL_IP`]/24; for af_packet also
    /// `msgr-hostile-<pid>-d` with the daemon's veth end. `peer_cpu`: where receive packet
    /// steering sends the peer kernel's work on the daemon's packets (af_packet).
    pub(crate) fn create(link: Link, peer_cpu: u32) -> Result<Self, String> {
        let pid = std::process::id();
        let name = format!("msgr-hostile-{pid}");
        let short = pid % 10_000_000;
        // Built first: dropping it on a failure below deletes what was made.
        let mut ns = Self {
            name,
            daemon_ns: None,
            dev: format!("mh{short}"),
            link,
        };
        let n = ns.name.clone();
        add_ns(&n)?;
        // The attackers open and close connections by the hundred thousand, and our
        // stack sends no TCP timestamps, so tcp_tw_reuse cannot free their ports in
        // TIME-WAIT (on loopback, where the kernel transports are attacked, it does): with
        // the range exhausted, connect() scans it under a lock on the runner's CPU and
        // starves the honest client there, for a minute after a storm. Attackers do not
        // protect their own closed connections: a small TIME-WAIT table and a wide range.
        for kv in [
            "net.ipv4.tcp_max_tw_buckets=4096",
            "net.ipv4.ip_local_port_range=10000 65000",
        ] {
            in_ns(&n, "sysctl", &["-qw", kv])?;
        }
        let kernel_dev = match link {
            Link::Tap => {
                ip(&[
                    "-n",
                    &n,
                    "tuntap",
                    "add",
                    "mode",
                    "tap",
                    "multi_queue",
                    "name",
                    &ns.dev,
                ])?;
                ns.dev.clone()
            }
            Link::AfPacket => {
                let d = format!("{n}-d");
                ns.daemon_ns = Some(d.clone());
                add_ns(&d)?;
                ns.dev = format!("mhd{short}");
                let peer = format!("mhp{short}");
                ip(&[
                    "-n", &d, "link", "add", &ns.dev, "type", "veth", "peer", "name", &peer,
                    "netns", &n,
                ])?;
                // The daemon's end: up, no address; its kernel forwards nothing (a new
                // namespace's default) and answers no ARP for the daemon's address.
                in_ns(
                    &d,
                    "sysctl",
                    &["-qw", &format!("net.ipv4.conf.{}.arp_ignore=8", ns.dev)],
                )?;
                // The PMD copies frames as the kernel hands them: checksums left for an
                // offload and GSO super-packets would reach the stack as they are.
                let off = [
                    "rx", "off", "tx", "off", "sg", "off", "tso", "off", "gso", "off", "gro", "off",
                ];
                for (space, dev) in [(d.as_str(), ns.dev.as_str()), (n.as_str(), peer.as_str())] {
                    let mut args = vec!["-K", dev];
                    args.extend_from_slice(&off);
                    in_ns(space, "ethtool", &args)?;
                }
                ip(&["-n", &d, "link", "set", &ns.dev, "up"])?;
                // The peer kernel's receive work on the daemon's packets: on the runner's
                // CPU, not in the daemon's send call.
                let mask = format!("{:x}", 1u64 << peer_cpu.min(63));
                in_ns(
                    &n,
                    "sh",
                    &[
                        "-c",
                        &format!("echo {mask} > /sys/class/net/{peer}/queues/rx-0/rps_cpus"),
                    ],
                )?;
                peer
            }
        };
        ip(&[
            "-n",
            &n,
            "addr",
            "add",
            &format!("{KERNEL_IP}/24"),
            "dev",
            &kernel_dev,
        ])?;
        ip(&["-n", &n, "link", "set", &kernel_dev, "up"])?;
        Ok(ns)
    }

    /// EAL's `--vdev` for the daemon's port.
    pub(crate) fn vdev(&self) -> String {
        match self.link {
            Link::Tap => format!("net_tap0,iface={}", self.dev),
            Link::AfPacket => format!("net_af_packet0,iface={}", self.dev),
        }
    }

    /// `ip netns exec NS`: runs a program where the peers are.
    pub(crate) fn exec(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.name]
    }

    /// `ip netns exec NS`: runs the daemon where its port's interface is.
    pub(crate) fn daemon_exec(&self) -> [&str; 4] {
        [
            "ip",
            "netns",
            "exec",
            self.daemon_ns.as_deref().unwrap_or(&self.name),
        ]
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in std::iter::once(&self.name).chain(self.daemon_ns.as_ref()) {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("bench: cleanup: {e}");
            }
        }
    }
}
