//! Network devices: what they are, who drives them, whether the host uses them; binding to
//! a DPDK driver (vfio-pci) and back to the driver they had, which is recorded at bind time.
//!
//! Binding goes through the kernel's `driver_override` (as dpdk-devbind does): set the
//! override, unbind from the current driver, ask the bus to probe. A device whose interface
//! is up with an address, or carries a route, is the host's (perhaps the very link an
//! operator is logged in over): it is refused unless forced.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::plan::Action;
use crate::roots::{link_name, names, read_trim, Roots};

/// A PCI network device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// `0000:03:00.0`.
    pub pci: String,
    /// `8086:1572`.
    pub id: String,
    pub driver: Option<String>,
    /// Kernel interfaces (none while a DPDK driver holds it).
    pub ifaces: Vec<String>,
    pub numa: Option<u32>,
    pub iommu_group: Option<String>,
}

impl Nic {
    /// Whether DPDK can use it as it is: on vfio-pci/uio, or an mlx4/mlx5 device (DPDK's
    /// mlx PMDs drive those through the kernel driver, in place).
    pub fn dpdk_ready(&self) -> bool {
        matches!(
            self.driver.as_deref(),
            Some("vfio-pci" | "uio_pci_generic" | "igb_uio" | "mlx5_core" | "mlx4_core")
        )
    }

    fn dev(&self, roots: &Roots) -> PathBuf {
        roots.sys(&format!("bus/pci/devices/{}", self.pci))
    }
}

/// Every PCI device of class "network controller" (0x02....).
pub fn list(roots: &Roots) -> Vec<Nic> {
    let base = roots.sys("bus/pci/devices");
    names(&base)
        .into_iter()
        .filter_map(|pci| {
            let dev = base.join(&pci);
            let class = read_trim(&dev.join("class"))?;
            if !class.starts_with("0x02") {
                return None;
            }
            let hex = |f: &str| {
                read_trim(&dev.join(f)).map_or_else(
                    || "????".to_owned(),
                    |v| v.trim_start_matches("0x").to_owned(),
                )
            };
            // Interfaces: net/<if>, or one level down (virtio devices: virtioN/net/<if>).
            let mut ifaces = names(&dev.join("net"));
            for child in names(&dev) {
                if child.starts_with("virtio") {
                    ifaces.extend(names(&dev.join(&child).join("net")));
                }
            }
            Some(Nic {
                id: format!("{}:{}", hex("vendor"), hex("device")),
                driver: link_name(&dev.join("driver")),
                ifaces,
                numa: read_trim(&dev.join("numa_node")).and_then(|n| n.parse().ok()),
                iommu_group: link_name(&dev.join("iommu_group")),
                pci,
            })
        })
        .collect()
}

/// An interface as the host uses it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Link {
    /// Administratively up.
    pub up: bool,
    /// "192.0.2.2/24", ...
    pub addrs: Vec<String>,
    /// Destinations routed through it ("default", "192.0.2.0/24", ...).
    pub routes: Vec<String>,
}

/// Interfaces by name, from `ip -j addr` and `ip -j route` (or their saved output).
pub fn links(roots: &Roots) -> Result<BTreeMap<String, Link>, String> {
    let (addr, route) = match &roots.ip_json {
        Some(dir) => {
            let read = |f: &str| {
                std::fs::read_to_string(dir.join(f))
                    .map_err(|e| format!("{}: {e}", dir.join(f).display()))
            };
            (read("addr.json")?, read("route.json")?)
        }
        None => (
            ip(&["-j", "addr", "show"])?,
            ip(&["-j", "route", "show"])? + &ip(&["-j", "-6", "route", "show"])?,
        ),
    };
    parse_links(&addr, &route)
}

fn ip(args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip (iproute2): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Parses `ip -j addr` and `ip -j route` output (the latter may be several JSON arrays, one
/// per address family, one after the other).
pub fn parse_links(addr: &str, route: &str) -> Result<BTreeMap<String, Link>, String> {
    let mut out: BTreeMap<String, Link> = BTreeMap::new();
    let addrs: Value =
        serde_json::from_str(addr.trim()).map_err(|e| format!("ip -j addr: not JSON: {e}"))?;
    for i in addrs.as_array().into_iter().flatten() {
        let Some(name) = i["ifname"].as_str() else {
            continue;
        };
        let l = out.entry(name.to_owned()).or_default();
        l.up = i["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "UP"));
        for a in i["addr_info"].as_array().into_iter().flatten() {
            if let (Some(ip), Some(len)) = (a["local"].as_str(), a["prefixlen"].as_u64()) {
                // Link-local IPv6 addresses come with every up interface: they do not make
                // it the host's.
                if !ip.starts_with("fe80:") {
                    l.addrs.push(format!("{ip}/{len}"));
                }
            }
        }
    }
    for chunk in serde_json::Deserializer::from_str(route).into_iter::<Value>() {
        let routes = chunk.map_err(|e| format!("ip -j route: not JSON: {e}"))?;
        for r in routes.as_array().into_iter().flatten() {
            if let (Some(dev), Some(dst)) = (r["dev"].as_str(), r["dst"].as_str()) {
                if dst.starts_with("fe80:") || dst.starts_with("ff00:") {
                    continue;
                }
                out.entry(dev.to_owned())
                    .or_default()
                    .routes
                    .push(dst.to_owned());
            }
        }
    }
    Ok(out)
}

/// `msgr-host nic list`.
pub fn show(roots: &Roots) -> Result<String, String> {
    let nics = list(roots);
    let links = links(roots)?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<13} {:<10} {:<12} {:>4}  {:<10} {:<5} {:<20} uses",
        "PCI", "id", "driver", "numa", "interface", "link", "addresses"
    );
    for n in &nics {
        let ifname = n.ifaces.join(",");
        let link = n.ifaces.iter().find_map(|i| links.get(i));
        let mut uses: Vec<String> = link
            .map(|l| {
                l.routes
                    .iter()
                    .map(|r| {
                        if r == "default" {
                            "DEFAULT ROUTE".to_owned()
                        } else {
                            format!("route {r}")
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        // IPv4 and IPv6 both have a default route.
        uses.sort();
        uses.dedup();
        let _ = writeln!(
            s,
            "{:<13} {:<10} {:<12} {:>4}  {:<10} {:<5} {:<20} {}{}",
            n.pci,
            n.id,
            n.driver.as_deref().unwrap_or("-"),
            n.numa.map_or_else(|| "-".into(), |x| x.to_string()),
            if ifname.is_empty() { "-" } else { &ifname },
            link.map_or("-", |l| if l.up { "up" } else { "down" }),
            link.map_or_else(|| "-".into(), |l| l.addrs.join(",")),
            uses.join(", "),
            if n.dpdk_ready() { " [DPDK-ready]" } else { "" }
        );
    }
    if nics.is_empty() {
        s.push_str("no PCI network devices\n");
    }
    Ok(s)
}

/// The device named by a PCI address (`0000:03:00.0` or `03:00.0`) or an interface name.
pub fn resolve(roots: &Roots, dev: &str) -> Result<Nic, String> {
    let nics = list(roots);
    let pci = if dev.matches(':').count() == 1 && dev.contains('.') {
        format!("0000:{dev}")
    } else {
        dev.to_owned()
    };
    if let Some(n) = nics.iter().find(|n| n.pci == pci) {
        return Ok(n.clone());
    }
    if let Some(n) = nics.iter().find(|n| n.ifaces.iter().any(|i| i == dev)) {
        return Ok(n.clone());
    }
    if roots.sys(&format!("class/net/{dev}")).exists() {
        return Err(format!(
            "{dev} is not a PCI network device (a virtual interface?): nothing DPDK can bind"
        ));
    }
    Err(format!(
        "no PCI network device {dev} (see `msgr-host nic list`)"
    ))
}

/// Where the original drivers are recorded.
pub fn record_path(roots: &Roots) -> PathBuf {
    roots.state.join("bindings.json")
}

/// The record: PCI address -> {"driver": the driver before us (or null), "ifaces": [...]}.
pub fn records(roots: &Roots) -> Result<serde_json::Map<String, Value>, String> {
    let p = record_path(roots);
    match std::fs::read_to_string(&p) {
        Ok(t) => match serde_json::from_str::<Value>(&t) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(format!(
                "{}: not a JSON object (fix or remove it)",
                p.display()
            )),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::Map::new()),
        Err(e) => Err(format!("{}: {e}", p.display())),
    }
}

fn record_actions(roots: &Roots, m: &serde_json::Map<String, Value>) -> Vec<Action> {
    let text = serde_json::to_string_pretty(&Value::Object(m.clone())).unwrap_or_default() + "\n";
    crate::plan::write_file(record_path(roots), text)
}

/// What `bind` is asked.
#[derive(Debug, Clone)]
pub struct BindRequest {
    pub dev: String,
    pub driver: String,
    /// Take a device the host is using, or without an IOMMU.
    pub force: bool,
    /// Also list it in /etc/dpdk/interfaces (bound by dpdk.service at boot).
    pub persist: bool,
}

/// The changes that bind the device, after the safety checks; nothing if it already is.
pub fn bind_plan(roots: &Roots, req: &BindRequest) -> Result<Vec<Action>, String> {
    let nic = resolve(roots, &req.dev)?;
    let mut actions = Vec::new();
    if nic.driver.as_deref() != Some(req.driver.as_str()) {
        if nic.driver.as_deref().is_some_and(|d| d.starts_with("mlx")) && !req.force {
            return Err(format!(
                "{} is on {}: NVIDIA/Mellanox NICs stay on their kernel driver, which DPDK's \
                 mlx5 PMD drives in place (give EAL `-a {}`, install rdma-core); nothing to \
                 bind (--force to bind anyway)",
                nic.pci,
                nic.driver.as_deref().unwrap_or(""),
                nic.pci
            ));
        }
        let links = links(roots)?;
        for i in &nic.ifaces {
            let Some(l) = links.get(i) else { continue };
            let busy = !l.routes.is_empty() || (l.up && !l.addrs.is_empty());
            if busy && !req.force {
                let mut what = Vec::new();
                if l.up {
                    what.push("is up".to_owned());
                }
                if !l.addrs.is_empty() {
                    what.push(format!("has address {}", l.addrs.join(", ")));
                }
                if l.routes.iter().any(|r| r == "default") {
                    what.push("carries the DEFAULT ROUTE".to_owned());
                } else if !l.routes.is_empty() {
                    what.push(format!("carries routes to {}", l.routes.join(", ")));
                }
                return Err(format!(
                    "refusing to bind {} ({i}): the host is using it — {i} {}. Binding it to {} \
                     would cut that traffic (perhaps the session you are logged in over). Move \
                     the traffic off it and `ip link set {i} down`, or pass --force",
                    nic.pci,
                    what.join(", "),
                    req.driver
                ));
            }
        }
        if req.driver == "vfio-pci" {
            let groups = names(&roots.sys("kernel/iommu_groups"));
            let noiommu =
                read_trim(&roots.sys("module/vfio/parameters/enable_unsafe_noiommu_mode"))
                    .is_some_and(|v| v == "Y");
            if groups.is_empty() && !noiommu && !req.force {
                return Err(format!(
                    "no IOMMU: vfio-pci cannot take {} safely. Boot with `intel_iommu=on \
                     iommu=pt` (AMD: `amd_iommu=on iommu=pt`) and enable VT-d/AMD-Vi in the \
                     firmware; in a VM without a virtual IOMMU, `modprobe vfio \
                     enable_unsafe_noiommu_mode=1` (no isolation); or pass --force",
                    nic.pci
                ));
            }
        }
        if !roots
            .sys(&format!("bus/pci/drivers/{}", req.driver))
            .exists()
        {
            actions.push(Action::run(&["modprobe", &req.driver]));
        }
        let mut recs = records(roots)?;
        if !recs.contains_key(&nic.pci) {
            recs.insert(
                nic.pci.clone(),
                json!({"driver": nic.driver, "ifaces": nic.ifaces}),
            );
            actions.extend(record_actions(roots, &recs));
        }
        let dev = nic.dev(roots);
        actions.push(Action::write(
            dev.join("driver_override"),
            req.driver.clone(),
        ));
        if let Some(cur) = &nic.driver {
            actions.push(Action::write(
                roots.sys(&format!("bus/pci/drivers/{cur}/unbind")),
                nic.pci.clone(),
            ));
        }
        actions.push(Action::write(
            roots.sys("bus/pci/drivers_probe"),
            nic.pci.clone(),
        ));
    }
    if req.persist {
        actions.extend(interfaces_plan(roots, &nic.pci, Some(&req.driver)));
    }
    Ok(actions)
}

/// The changes that give the device back to the driver recorded when we bound it (or
/// `driver`, when given).
pub fn unbind_plan(
    roots: &Roots,
    dev: &str,
    driver: Option<&str>,
    persist: bool,
) -> Result<Vec<Action>, String> {
    let nic = resolve(roots, dev)?;
    let mut recs = records(roots)?;
    let rec = recs.remove(&nic.pci);
    let back: Option<String> = match (driver, &rec) {
        (Some(d), _) => Some(d.to_owned()),
        (None, Some(r)) => r["driver"].as_str().map(str::to_owned),
        (None, None) => {
            return Err(format!(
                "no record of the driver {} had before it was bound (`msgr-host nic bind` did \
                 not bind it): give --driver NAME (e.g. ixgbe, i40e, ice, virtio-pci)",
                nic.pci
            ))
        }
    };
    let mut actions = Vec::new();
    if nic.driver != back {
        let d = nic.dev(roots);
        actions.push(Action::write(d.join("driver_override"), "\n"));
        if let Some(cur) = &nic.driver {
            actions.push(Action::write(
                roots.sys(&format!("bus/pci/drivers/{cur}/unbind")),
                nic.pci.clone(),
            ));
        }
        if let Some(b) = &back {
            actions.push(Action::write(
                roots.sys(&format!("bus/pci/drivers/{b}/bind")),
                nic.pci.clone(),
            ));
        }
    }
    if rec.is_some() {
        actions.extend(record_actions(roots, &recs));
    }
    if persist {
        actions.extend(interfaces_plan(roots, &nic.pci, None));
    }
    Ok(actions)
}

/// /etc/dpdk/interfaces with the device's line set to `driver` (or removed: `None`).
fn interfaces_plan(roots: &Roots, pci: &str, driver: Option<&str>) -> Vec<Action> {
    let path = roots.etc.join("dpdk/interfaces");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let mut lines: Vec<String> = old
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            !(f.len() >= 2 && f[0] == "pci" && f[1] == pci)
        })
        .map(str::to_owned)
        .collect();
    if let Some(d) = driver {
        lines.push(format!("pci\t{pci}\t{d}"));
    }
    let mut new = lines.join("\n");
    new.push('\n');
    if new == old || (old.is_empty() && driver.is_none()) {
        return Vec::new();
    }
    crate::plan::write_file(path, new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_from_ip_json() {
        let addr = r#"[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP"],"addr_info":[
            {"family":"inet","local":"127.0.0.1","prefixlen":8}]},
            {"ifindex":4,"ifname":"eth0","flags":["BROADCAST","UP","LOWER_UP"],"addr_info":[
            {"family":"inet","local":"192.0.2.2","prefixlen":24},
            {"family":"inet6","local":"fe80::1","prefixlen":64}]},
            {"ifindex":5,"ifname":"eth1","flags":["BROADCAST"],"addr_info":[]}]"#;
        let route = r#"[{"dst":"default","gateway":"192.0.2.1","dev":"eth0"},
            {"dst":"192.0.2.0/24","dev":"eth0"}][{"dst":"fe80::/64","dev":"eth0"}]"#;
        let l = parse_links(addr, route).unwrap();
        assert_eq!(l["eth0"].addrs, vec!["192.0.2.2/24"]);
        assert_eq!(l["eth0"].routes, vec!["default", "192.0.2.0/24"]);
        assert!(l["eth0"].up);
        assert!(!l["eth1"].up && l["eth1"].addrs.is_empty() && l["eth1"].routes.is_empty());
        assert!(parse_links("nope", "[]").is_err());
    }
}
