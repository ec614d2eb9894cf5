//! Hugepages: per size and NUMA node, what is reserved and free, where hugetlbfs is
//! mounted; reserving and releasing (idempotent), and making a reservation survive a reboot
//! through Debian's `dpdk.service` (`/etc/dpdk/dpdk.conf`: `NR_2M_PAGES`, `NR_1G_PAGES`,
//! a number, or a quoted list with one number per node).

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::plan::Action;
use crate::roots::{names, read_u64, Roots};

/// A hugepage size in kB (2048 for 2 MiB, 1048576 for 1 GiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PageSize(pub u64);

impl PageSize {
    /// "2M", "1G", "2048kB", "2MB", "1GiB".
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim().to_ascii_lowercase();
        let t = t.trim_end_matches("ib").trim_end_matches('b');
        let (num, mult) = if let Some(n) = t.strip_suffix('g') {
            (n, 1024 * 1024)
        } else if let Some(n) = t.strip_suffix('m') {
            (n, 1024)
        } else if let Some(n) = t.strip_suffix('k') {
            (n, 1)
        } else {
            return Err(format!("page size {s:?}: give 2M or 1G"));
        };
        let n: u64 = num
            .trim()
            .parse()
            .map_err(|_| format!("page size {s:?}: give 2M or 1G"))?;
        Ok(Self(n * mult))
    }

    /// The sysfs directory name: `hugepages-2048kB`.
    pub fn dir(self) -> String {
        format!("hugepages-{}kB", self.0)
    }

    /// Debian's dpdk.conf key: `NR_2M_PAGES`.
    pub fn conf_key(self) -> String {
        format!("NR_{}_PAGES", self.short())
    }

    /// "2M", "1G".
    pub fn short(self) -> String {
        if self.0.is_multiple_of(1024 * 1024) {
            format!("{}G", self.0 / (1024 * 1024))
        } else if self.0.is_multiple_of(1024) {
            format!("{}M", self.0 / 1024)
        } else {
            format!("{}K", self.0)
        }
    }
}

/// The pages of one size, on one node (or system-wide on a machine without NUMA nodes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub node: Option<u32>,
    pub size: PageSize,
    pub total: u64,
    pub free: u64,
}

/// NUMA nodes with a sysfs directory (empty without NUMA support).
pub fn nodes(roots: &Roots) -> Vec<u32> {
    let mut v: Vec<u32> = names(&roots.sys("devices/system/node"))
        .iter()
        .filter_map(|n| n.strip_prefix("node")?.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

/// Page sizes the kernel offers.
pub fn sizes(roots: &Roots) -> Vec<PageSize> {
    let mut v: Vec<PageSize> = names(&roots.sys("kernel/mm/hugepages"))
        .iter()
        .filter_map(|n| {
            n.strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()
                .map(PageSize)
        })
        .collect();
    v.sort_unstable();
    v
}

/// The `nr_hugepages` file of `size` on `node` (system-wide when `None`).
pub fn nr_path(roots: &Roots, size: PageSize, node: Option<u32>) -> PathBuf {
    match node {
        Some(n) => roots.sys(&format!(
            "devices/system/node/node{n}/hugepages/{}/nr_hugepages",
            size.dir()
        )),
        None => roots.sys(&format!("kernel/mm/hugepages/{}/nr_hugepages", size.dir())),
    }
}

/// Every size on every node (system-wide if there are no nodes).
pub fn pools(roots: &Roots) -> Vec<Pool> {
    let nodes = nodes(roots);
    let mut out = Vec::new();
    for size in sizes(roots) {
        let places: Vec<Option<u32>> = if nodes.is_empty() {
            vec![None]
        } else {
            nodes.iter().map(|&n| Some(n)).collect()
        };
        for node in places {
            let nr = nr_path(roots, size, node);
            let free = nr.with_file_name("free_hugepages");
            out.push(Pool {
                node,
                size,
                total: read_u64(&nr).unwrap_or(0),
                free: read_u64(&free).unwrap_or(0),
            });
        }
    }
    out
}

/// A hugetlbfs mount: where, and its page size (None: the default size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub dir: PathBuf,
    pub size: Option<PageSize>,
}

/// hugetlbfs mounts, from /proc/mounts.
pub fn mounts(roots: &Roots) -> Vec<Mount> {
    let text = std::fs::read_to_string(roots.proc("mounts")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && f[2] == "hugetlbfs").then(|| Mount {
                dir: PathBuf::from(f[1]),
                size: f[3]
                    .split(',')
                    .find_map(|o| o.strip_prefix("pagesize="))
                    .and_then(|s| PageSize::parse(s).ok()),
            })
        })
        .collect()
}

/// The kernel's default hugepage size (/proc/meminfo `Hugepagesize:`).
pub fn default_size(roots: &Roots) -> Option<PageSize> {
    let text = std::fs::read_to_string(roots.proc("meminfo")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Hugepagesize:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .map(PageSize)
}

/// Whether a mount serves pages of `size`.
fn serves(m: &Mount, size: PageSize, default: Option<PageSize>) -> bool {
    m.size.or(default) == Some(size)
}

/// `msgr-host hugepages show`.
pub fn show(roots: &Roots) -> String {
    let mut s = String::new();
    let pools = pools(roots);
    if pools.is_empty() {
        s.push_str("no hugepage support (no /sys/kernel/mm/hugepages)\n");
    }
    for p in &pools {
        let _ = writeln!(
            s,
            "{:<8} {:>4}: {:>6} reserved, {:>6} free ({} MiB reserved)",
            p.node
                .map_or_else(|| "system".to_owned(), |n| format!("node{n}")),
            p.size.short(),
            p.total,
            p.free,
            p.total * p.size.0 / 1024
        );
    }
    let default = default_size(roots);
    let mounts = mounts(roots);
    if mounts.is_empty() {
        s.push_str("hugetlbfs: not mounted\n");
    }
    for m in &mounts {
        let _ = writeln!(
            s,
            "hugetlbfs: {} ({} pages)",
            m.dir.display(),
            m.size.or(default).map_or("default".into(), PageSize::short)
        );
    }
    match persisted(roots) {
        Some(lines) if !lines.is_empty() => {
            let _ = writeln!(s, "at boot (/etc/dpdk/dpdk.conf): {}", lines.join(", "));
        }
        _ => s.push_str("at boot: nothing in /etc/dpdk/dpdk.conf\n"),
    }
    s
}

/// The `NR_*_PAGES` settings of dpdk.conf.
fn persisted(roots: &Roots) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(roots.etc.join("dpdk/dpdk.conf")).ok()?;
    Some(
        text.lines()
            .map(str::trim)
            .filter(|l| l.starts_with("NR_") && l.contains('='))
            .map(str::to_owned)
            .collect(),
    )
}

/// What `reserve` is asked.
#[derive(Debug, Clone)]
pub struct Request {
    pub size: PageSize,
    /// Pages on each node in `nodes` (or system-wide when `nodes` is empty).
    pub pages: u64,
    /// Nodes to reserve on; empty: system-wide (the kernel spreads them).
    pub nodes: Vec<u32>,
    /// Where to mount hugetlbfs for this size if nothing serves it yet (None: don't).
    pub mount: Option<PathBuf>,
    /// Also write the reservation to /etc/dpdk/dpdk.conf for dpdk.service at boot.
    pub persist: bool,
}

/// The changes that make `req` true; nothing for what already is.
pub fn reserve_plan(roots: &Roots, req: &Request) -> Result<Vec<Action>, String> {
    if !sizes(roots).contains(&req.size) {
        return Err(format!(
            "the kernel offers no {} hugepages here (it has: {})",
            req.size.short(),
            sizes(roots)
                .iter()
                .map(|s| s.short())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let known = nodes(roots);
    if let Some(n) = req.nodes.iter().find(|n| !known.contains(n)) {
        return Err(format!("there is no NUMA node {n} (nodes: {known:?})"));
    }
    let mut actions = Vec::new();
    let places: Vec<Option<u32>> = if req.nodes.is_empty() {
        vec![None]
    } else {
        req.nodes.iter().map(|&n| Some(n)).collect()
    };
    for node in places {
        let path = nr_path(roots, req.size, node);
        if read_u64(&path) != Some(req.pages) {
            actions.push(Action::write(path, req.pages.to_string()));
        }
    }
    if let Some(dir) = &req.mount {
        let default = default_size(roots);
        if req.pages > 0 && !mounts(roots).iter().any(|m| serves(m, req.size, default)) {
            actions.push(Action::Mkdir { path: dir.clone() });
            let opt = format!("pagesize={}", req.size.short());
            let target = dir.to_string_lossy();
            actions.push(Action::run(&[
                "mount",
                "-t",
                "hugetlbfs",
                "-o",
                &opt,
                "hugetlbfs",
                &target,
            ]));
        }
    }
    if req.persist {
        let value = if req.nodes.is_empty() {
            req.pages.to_string()
        } else {
            // One number per node, in node order, from node 0.
            let top = known.iter().copied().max().unwrap_or(0);
            let per: Vec<String> = (0..=top)
                .map(|n| {
                    if req.nodes.contains(&n) {
                        req.pages.to_string()
                    } else {
                        "0".into()
                    }
                })
                .collect();
            format!("\"{}\"", per.join(" "))
        };
        let conf = roots.etc.join("dpdk/dpdk.conf");
        let old = std::fs::read_to_string(&conf).unwrap_or_default();
        let new = set_conf(&old, &req.size.conf_key(), &value);
        if new != old {
            actions.extend(crate::plan::write_file(conf, new));
        }
    }
    Ok(actions)
}

/// `text` (a shell-variable file) with `key=value`: the existing assignment replaced, or
/// one appended.
pub fn set_conf(text: &str, key: &str, value: &str) -> String {
    let line = format!("{key}={value}");
    let mut found = false;
    let mut out: Vec<String> = text
        .lines()
        .map(|l| {
            let t = l.trim_start();
            if !found && t.strip_prefix(key).is_some_and(|r| r.starts_with('=')) {
                found = true;
                line.clone()
            } else {
                l.to_owned()
            }
        })
        .collect();
    if !found {
        out.push(line);
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

/// After applying: the pages the kernel actually reserved, or why it fell short.
pub fn verify(roots: &Roots, req: &Request) -> Result<(), String> {
    let places: Vec<Option<u32>> = if req.nodes.is_empty() {
        vec![None]
    } else {
        req.nodes.iter().map(|&n| Some(n)).collect()
    };
    for node in places {
        let got = read_u64(&nr_path(roots, req.size, node)).unwrap_or(0);
        if got < req.pages {
            return Err(format!(
                "the kernel reserved only {got} of {} {} pages{}: memory is too fragmented or \
                 too small; reserve them at boot (kernel command line `hugepagesz={} \
                 hugepages={}`, or /etc/dpdk/dpdk.conf with --persist) or free memory first",
                req.pages,
                req.size.short(),
                node.map_or_else(String::new, |n| format!(" on node {n}")),
                req.size.short(),
                req.pages
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes() {
        assert_eq!(PageSize::parse("2M"), Ok(PageSize(2048)));
        assert_eq!(PageSize::parse("1G"), Ok(PageSize(1_048_576)));
        assert_eq!(PageSize::parse("2048kB"), Ok(PageSize(2048)));
        assert_eq!(PageSize::parse("1GiB"), Ok(PageSize(1_048_576)));
        assert!(PageSize::parse("2").is_err());
        assert!(PageSize::parse("xM").is_err());
        assert_eq!(PageSize(2048).dir(), "hugepages-2048kB");
        assert_eq!(PageSize(1_048_576).conf_key(), "NR_1G_PAGES");
    }

    #[test]
    fn conf_lines_replaced_or_added() {
        let text = "# comment\n# NR_2M_PAGES=64\nNR_1G_PAGES=2\n";
        let t = set_conf(text, "NR_2M_PAGES", "1024");
        assert_eq!(
            t,
            "# comment\n# NR_2M_PAGES=64\nNR_1G_PAGES=2\nNR_2M_PAGES=1024\n"
        );
        let t2 = set_conf(&t, "NR_2M_PAGES", "\"0 512\"");
        assert!(
            t2.contains("NR_2M_PAGES=\"0 512\"\n") && !t2.contains("=1024"),
            "{t2}"
        );
        assert_eq!(set_conf(&t2, "NR_2M_PAGES", "\"0 512\""), t2, "idempotent");
    }
}
