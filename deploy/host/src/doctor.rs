//! `msgr-host doctor`: is this host ready to run the DPDK messenger? Each check passes,
//! warns or fails, and every failure comes with its fix.

use std::fmt::Write as _;
use std::path::Path;

use crate::cpus;
use crate::hugepages;
use crate::nic;
use crate::roots::{format_cpu_list, names, read_trim, Roots};

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to do about a warning or failure.
    pub fix: Option<String>,
}

fn pass(name: &'static str, detail: String) -> Check {
    Check {
        name,
        status: Status::Pass,
        detail,
        fix: None,
    }
}

fn not(name: &'static str, status: Status, detail: String, fix: String) -> Check {
    Check {
        name,
        status,
        detail,
        fix: Some(fix),
    }
}

/// DPDK's version: `pkg-config --modversion libdpdk`, else the EAL library's ABI.
pub fn dpdk_version() -> Option<String> {
    if let Ok(out) = std::process::Command::new("pkg-config")
        .args(["--modversion", "libdpdk"])
        .output()
    {
        if out.status.success() {
            let v = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if !v.is_empty() {
                return Some(v);
            }
        }
    }
    for dir in [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
    ] {
        for n in names(Path::new(dir)) {
            if let Some(abi) = n.strip_prefix("librte_eal.so.") {
                return Some(format!("EAL ABI {abi} (22.11 is ABI 23)"));
            }
        }
    }
    None
}

/// Runs every check.
pub fn checks(roots: &Roots, workers: usize) -> Vec<Check> {
    let mut v = Vec::new();
    // Hugepages, their mount, and the boot-time reservation.
    let pools = hugepages::pools(roots);
    let reserved: Vec<&hugepages::Pool> = pools.iter().filter(|p| p.total > 0).collect();
    let reserve_fix = "msgr-host hugepages reserve --size 2M --pages 1024 --persist".to_owned();
    if reserved.is_empty() {
        v.push(not(
            "hugepages",
            Status::Fail,
            "none reserved".into(),
            reserve_fix.clone(),
        ));
    } else {
        let what: Vec<String> = reserved
            .iter()
            .map(|p| {
                format!(
                    "{} x {}{} ({} free)",
                    p.total,
                    p.size.short(),
                    p.node.map_or_else(String::new, |n| format!(" on node{n}")),
                    p.free
                )
            })
            .collect();
        v.push(pass("hugepages", what.join(", ")));
    }
    let default = hugepages::default_size(roots);
    let mounts = hugepages::mounts(roots);
    let served = mounts
        .iter()
        .any(|m| reserved.iter().any(|p| m.size.or(default) == Some(p.size)));
    if served {
        let dirs: Vec<String> = mounts.iter().map(|m| m.dir.display().to_string()).collect();
        v.push(pass("hugetlbfs", format!("mounted at {}", dirs.join(", "))));
    } else {
        v.push(not(
            "hugetlbfs",
            Status::Fail,
            "no hugetlbfs mount serves the reserved pages".into(),
            format!("{reserve_fix} (mounts /dev/hugepages)"),
        ));
    }
    let conf = std::fs::read_to_string(roots.etc.join("dpdk/dpdk.conf")).unwrap_or_default();
    let at_boot = conf.lines().map(str::trim).any(|l| {
        l.starts_with("NR_")
            && l.split_once('=')
                .is_some_and(|(_, n)| n.trim_matches('"').split_whitespace().any(|x| x != "0"))
    });
    if at_boot {
        v.push(pass(
            "hugepages at boot",
            "/etc/dpdk/dpdk.conf reserves them".into(),
        ));
    } else {
        v.push(not(
            "hugepages at boot",
            Status::Warn,
            "nothing reserves them at boot (runtime reservations fail once memory fragments)"
                .into(),
            reserve_fix,
        ));
    }
    // DPDK and its service.
    match dpdk_version() {
        Some(ver) => v.push(pass("dpdk", ver)),
        None => v.push(not(
            "dpdk",
            Status::Fail,
            "DPDK's libraries are not installed".into(),
            "apt-get install dpdk libdpdk-dev".into(),
        )),
    }
    if roots.lib.join("systemd/system/dpdk.service").exists() {
        v.push(pass(
            "dpdk.service",
            "installed (binds /etc/dpdk/interfaces, reserves dpdk.conf's pages at boot)".into(),
        ));
    } else {
        v.push(not(
            "dpdk.service",
            Status::Warn,
            "not installed: nothing binds NICs or reserves hugepages at boot".into(),
            "apt-get install dpdk".into(),
        ));
    }
    // IOMMU and vfio.
    let groups = names(&roots.sys("kernel/iommu_groups"));
    let noiommu = read_trim(&roots.sys("module/vfio/parameters/enable_unsafe_noiommu_mode"))
        .is_some_and(|x| x == "Y");
    if !groups.is_empty() {
        v.push(pass("iommu", format!("{} IOMMU groups", groups.len())));
    } else if noiommu {
        v.push(not(
            "iommu",
            Status::Warn,
            "no IOMMU; vfio runs in unsafe no-IOMMU mode (no DMA isolation)".into(),
            "enable VT-d/AMD-Vi and boot with intel_iommu=on iommu=pt (AMD: amd_iommu=on)".into(),
        ));
    } else {
        v.push(not(
            "iommu",
            Status::Fail,
            "no IOMMU groups: vfio-pci cannot take a device".into(),
            "enable VT-d/AMD-Vi in the firmware and boot with `intel_iommu=on iommu=pt` (AMD: \
             `amd_iommu=on iommu=pt`); in a VM without a vIOMMU: `modprobe vfio \
             enable_unsafe_noiommu_mode=1`"
                .into(),
        ));
    }
    if roots.sys("bus/pci/drivers/vfio-pci").exists() {
        v.push(pass("vfio-pci", "module loaded".into()));
    } else {
        v.push(not(
            "vfio-pci",
            Status::Fail,
            "the vfio-pci module is not loaded".into(),
            "modprobe vfio-pci; echo vfio-pci > /etc/modules-load.d/vfio-pci.conf".into(),
        ));
    }
    // NICs.
    let nics = nic::list(roots);
    let ready: Vec<&nic::Nic> = nics.iter().filter(|n| n.dpdk_ready()).collect();
    let node = ready.first().and_then(|n| n.numa);
    if ready.is_empty() {
        v.push(not(
            "nic",
            Status::Fail,
            format!(
                "no network device is on a DPDK driver ({} PCI network device(s))",
                nics.len()
            ),
            "msgr-host nic list; then msgr-host nic bind PCI --persist".into(),
        ));
    } else {
        let what: Vec<String> = ready
            .iter()
            .map(|n| {
                format!(
                    "{} on {}{}",
                    n.pci,
                    n.driver.as_deref().unwrap_or("?"),
                    n.numa.map_or_else(String::new, |x| format!(", node {x}"))
                )
            })
            .collect();
        v.push(pass("nic", what.join("; ")));
    }
    // Cores.
    let c = cpus::read(roots);
    let sg = cpus::suggest(&c, node, workers).ok();
    if c.isolated.is_empty() {
        v.push(not(
            "isolated cores",
            Status::Warn,
            "no isolcpus: poll-mode workers share their cores with everything else".into(),
            sg.as_ref().map_or_else(
                || "add isolcpus=, nohz_full=, rcu_nocbs= for the worker cores".into(),
                |s| format!("add `{}` to the kernel command line", s.cmdline()),
            ),
        ));
    } else if c.nohz_full.is_empty() || c.rcu_nocbs.is_empty() {
        let l = format_cpu_list(&c.isolated);
        v.push(not(
            "isolated cores",
            Status::Warn,
            format!("isolcpus={l} without nohz_full/rcu_nocbs: timer ticks and RCU callbacks still run there"),
            format!("add `nohz_full={l} rcu_nocbs={l}` to the kernel command line"),
        ));
    } else {
        v.push(pass(
            "isolated cores",
            format!("isolcpus={}", format_cpu_list(&c.isolated)),
        ));
    }
    if let Some(s) = sg {
        v.push(Check {
            name: "lcores",
            status: if s.isolated {
                Status::Pass
            } else {
                Status::Warn
            },
            detail: format!(
                "for {workers} worker(s){}: EAL `{}`",
                s.node.map_or_else(String::new, |n| format!(" on node {n}")),
                s.eal()
            ),
            fix: (!s.isolated).then(|| format!("isolate them: `{}`", s.cmdline())),
        });
    }
    v
}

/// The report, and whether any check failed.
pub fn report(checks: &[Check]) -> (String, bool) {
    let mut s = String::new();
    for c in checks {
        let tag = match c.status {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        let _ = writeln!(s, "{tag}  {:<17} {}", c.name, c.detail);
        if let Some(f) = &c.fix {
            let _ = writeln!(s, "      {:<17} fix: {f}", "");
        }
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    let warned = checks.iter().filter(|c| c.status == Status::Warn).count();
    let _ = writeln!(
        s,
        "{} checks: {} passed, {warned} warnings, {failed} failed",
        checks.len(),
        checks.len() - failed - warned
    );
    (s, failed > 0)
}
