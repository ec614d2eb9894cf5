//! A network namespace of the test's own with a persistent tap device in it, for running
//! `msgr --transport dpdk` against the kernel: DPDK's `net_tap` PMD attaches to the tap
//! (`--vdev=net_tap0,iface=TAP`), the kernel end of the same tap holds `10.77.N.1/24`,
//! and every process of the test runs inside the namespace (`ip netns exec`). Nothing is
//! added to the root namespace: no device, address or route.
//!
//! The tap is made with `ip tuntap add mode tap multi_queue` (the flags `net_tap` opens it
//! with), so it and its address exist before any DPDK process starts and outlive each one:
//! kernel-side servers (a posix `msgr serve`, a `ceph-mon`) can bind first, and DPDK
//! processes come and go. Dropping the lab deletes the namespace (and with it the tap) and
//! the DPDK runtime directories of the prefixes it handed out.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use stack::dpdk_files::{allowed_cpus, RuntimeDir};

use super::run_bounded;

/// Bound for one `ip` or `sysctl` command.
const CMD_LIMIT: Duration = Duration::from_secs(20);

/// Root, `ip`, and the tun device.
pub(crate) fn check() -> Result<(), String> {
    super::skip::root()?;
    super::skip::programs(&["ip"])?;
    if !Path::new("/dev/net/tun").exists() {
        return Err("no /dev/net/tun".to_owned());
    }
    Ok(())
}

fn run(prog: &str, args: &[&str]) -> Result<String, String> {
    let out = run_bounded(
        Command::new(prog).args(args).stdin(Stdio::null()),
        CMD_LIMIT,
    )?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{prog} {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespace, its tap and the DPDK file prefixes used in it; see the module docs.
pub(crate) struct NetLab {
    pub(crate) ns: String,
    pub(crate) tap: String,
    net: u8,
    prefixes: std::sync::Mutex<Vec<RuntimeDir>>,
}

impl NetLab {
    /// A new namespace `msgr-<tag><pid>-<n>` with tap `mt<pid><n>` holding 10.77.N.1/24,
    /// IPv6 off (no DAD or MLD frames on the link).
    pub(crate) fn new(tag: &str) -> Result<Self, String> {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let lab = Self {
            ns: format!("msgr-{tag}{pid}-{n}"),
            tap: format!("mt{}{n}", pid % 1_000_000),
            net: (n % 200 + 20) as u8,
            prefixes: std::sync::Mutex::new(Vec::new()),
        };
        run("ip", &["netns", "add", &lab.ns])?;
        let ns = lab.ns.as_str();
        run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        for key in ["all", "default"] {
            let _ = run(
                "ip",
                &[
                    "netns",
                    "exec",
                    ns,
                    "sysctl",
                    "-qw",
                    &format!("net.ipv6.conf.{key}.disable_ipv6=1"),
                ],
            );
        }
        run(
            "ip",
            &[
                "-n",
                ns,
                "tuntap",
                "add",
                "mode",
                "tap",
                "multi_queue",
                "name",
                &lab.tap,
            ],
        )?;
        let cidr = format!("{}/24", lab.kernel_ip());
        run("ip", &["-n", ns, "addr", "add", &cidr, "dev", &lab.tap])?;
        run("ip", &["-n", ns, "link", "set", &lab.tap, "up"])?;
        Ok(lab)
    }

    /// The kernel's address on the tap.
    pub(crate) fn kernel_ip(&self) -> String {
        format!("10.77.{}.1", self.net)
    }

    /// An address for a DPDK process on the link (`host` 2..254), as `IP`.
    pub(crate) fn dpdk_ip(&self, host: u8) -> String {
        format!("10.77.{}.{host}", self.net)
    }

    /// `ip netns exec NS`: the wrapper that runs a program inside the namespace.
    pub(crate) fn exec(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.ns]
    }

    /// EAL arguments for one DPDK process on the tap: no hugepages, no PCI, no telemetry,
    /// its own file prefix (removed when the lab is dropped), one lcore allowed on every
    /// CPU of this process (the workers nap when idle).
    pub(crate) fn eal(&self, role: &str) -> String {
        self.eal_lcores(role, 1)
    }

    /// [`NetLab::eal`] with `lcores` lcores (one per worker).
    pub(crate) fn eal_lcores(&self, role: &str, lcores: u32) -> String {
        let prefix = format!("{}-{role}", self.ns);
        self.prefixes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(RuntimeDir::new(&prefix));
        let cpus = allowed_cpus();
        let lcores: Vec<String> = (0..lcores.max(1))
            .map(|l| format!("{l}@({cpus})"))
            .collect();
        format!(
            "--no-huge -m 256 --no-pci --no-telemetry --file-prefix {prefix} --lcores {} \
             --vdev=net_tap0,iface={}",
            lcores.join(","),
            self.tap
        )
    }

    /// `--transport dpdk --eal ... --ip IP/24` for a DPDK process with address `host`.
    pub(crate) fn dpdk_args(&self, role: &str, host: u8) -> Vec<String> {
        vec![
            "--transport".into(),
            "dpdk".into(),
            "--eal".into(),
            self.eal(role),
            "--ip".into(),
            format!("{}/24", self.dpdk_ip(host)),
        ]
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        if let Err(e) = run("ip", &["netns", "del", &self.ns]) {
            eprintln!("cleanup: {e}");
        }
        // The runtime directories go as the guards drop.
        self.prefixes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}
