//! A network namespace of `bench hostile`'s own, with a tap device in it, for the dpdk
//! daemon: DPDK's `net_tap` attaches to the tap, the kernel end holds [`KERNEL_IP`], and
//! every process that talks to the daemon runs inside the namespace (`ip netns exec`).
//! Nothing is added to the root namespace. Dropping it deletes the namespace, and the tap
//! with it. (The same arrangement as the msgr tests' `netlab`.)

use std::path::Path;
use std::process::{Command, Stdio};

/// The kernel's address on the tap (the attackers' and the honest client's).
pub(crate) const KERNEL_IP: &str = "10.79.0.1";
/// The daemon's address on the DPDK port.
pub(crate) const DAEMON_IP: &str = "10.79.0.2";

/// Root, `ip` and the tun device.
pub(crate) fn check() -> Result<(), String> {
    if !host::is_root() {
        return Err("needs root (a network namespace, a tap, DPDK's runtime directory)".into());
    }
    if Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        return Err("needs the ip program (iproute2)".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Err("needs /dev/net/tun".into());
    }
    Ok(())
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespace and its tap; see the module docs.
pub(crate) struct Netns {
    pub(crate) name: String,
    pub(crate) tap: String,
}

impl Netns {
    /// `msgr-hostile-<pid>` with tap `mh<pid>` up at [`KERNEL_IP`]/24, IPv6 off (no
    /// neighbour discovery on the link).
    pub(crate) fn create() -> Result<Self, String> {
        let pid = std::process::id();
        let ns = Self {
            name: format!("msgr-hostile-{pid}"),
            tap: format!("mh{}", pid % 10_000_000),
        };
        // A namespace left by a killed run with the same pid: ours now.
        let _ = ip(&["netns", "del", &ns.name]);
        ip(&["netns", "add", &ns.name])?;
        let n = ns.name.as_str();
        ip(&["-n", n, "link", "set", "lo", "up"])?;
        for key in ["all", "default"] {
            let _ = ip(&[
                "netns",
                "exec",
                n,
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{key}.disable_ipv6=1"),
            ]);
        }
        ip(&[
            "-n",
            n,
            "tuntap",
            "add",
            "mode",
            "tap",
            "multi_queue",
            "name",
            &ns.tap,
        ])?;
        ip(&[
            "-n",
            n,
            "addr",
            "add",
            &format!("{KERNEL_IP}/24"),
            "dev",
            &ns.tap,
        ])?;
        ip(&["-n", n, "link", "set", &ns.tap, "up"])?;
        Ok(ns)
    }

    /// `ip netns exec NS`: runs a program inside the namespace.
    pub(crate) fn exec(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.name]
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("bench: cleanup: {e}");
        }
    }
}
