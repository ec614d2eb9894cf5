//! Cores for poll-mode workers: what the kernel keeps off them (isolcpus, nohz_full,
//! rcu_nocbs), which node they sit on, and a suggested lcore list on the NIC's node, one
//! hyperthread per physical core.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::roots::{format_cpu_list, names, parse_cpu_list, read_trim, Roots};

/// What the host says about its CPUs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cpus {
    pub online: Vec<u32>,
    /// `isolcpus=` (sysfs `isolated`).
    pub isolated: Vec<u32>,
    pub nohz_full: Vec<u32>,
    /// `rcu_nocbs=` from the kernel command line.
    pub rcu_nocbs: Vec<u32>,
    /// CPUs of each NUMA node.
    pub nodes: BTreeMap<u32, Vec<u32>>,
    /// The first hyperthread of each CPU's core (itself for the first).
    pub core_first: BTreeMap<u32, u32>,
}

/// Reads the CPU topology and isolation settings.
pub fn read(roots: &Roots) -> Cpus {
    let list = |rel: &str| {
        read_trim(&roots.sys(rel))
            .and_then(|t| parse_cpu_list(&t).ok())
            .unwrap_or_default()
    };
    let online = list("devices/system/cpu/online");
    let cmdline = read_trim(&roots.proc("cmdline")).unwrap_or_default();
    let rcu_nocbs = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rcu_nocbs="))
        .and_then(|v| parse_cpu_list(v).ok())
        .unwrap_or_default();
    let mut nodes = BTreeMap::new();
    for n in names(&roots.sys("devices/system/node")) {
        if let Some(id) = n.strip_prefix("node").and_then(|i| i.parse::<u32>().ok()) {
            nodes.insert(id, list(&format!("devices/system/node/{n}/cpulist")));
        }
    }
    let core_first = online
        .iter()
        .map(|&c| {
            let sib = list(&format!(
                "devices/system/cpu/cpu{c}/topology/thread_siblings_list"
            ));
            (c, sib.first().copied().unwrap_or(c))
        })
        .collect();
    Cpus {
        isolated: list("devices/system/cpu/isolated"),
        nohz_full: list("devices/system/cpu/nohz_full"),
        online,
        rcu_nocbs,
        nodes,
        core_first,
    }
}

/// Suggested placement of `workers` poll-mode workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggestion {
    /// Worker CPUs, the first being EAL's main lcore (our first worker runs there).
    pub lcores: Vec<u32>,
    /// Whether all of them are already isolated.
    pub isolated: bool,
    /// The node they are on, when known.
    pub node: Option<u32>,
}

impl Suggestion {
    /// EAL arguments placing the workers: `-l 4-7 --main-lcore 4`.
    pub fn eal(&self) -> String {
        format!(
            "-l {} --main-lcore {}",
            format_cpu_list(&self.lcores),
            self.lcores.first().copied().unwrap_or(0)
        )
    }

    /// Kernel command line that keeps the kernel off them.
    pub fn cmdline(&self) -> String {
        let l = format_cpu_list(&self.lcores);
        format!("isolcpus={l} nohz_full={l} rcu_nocbs={l}")
    }
}

/// Picks `workers` CPUs on `node` (the NIC's; any node if `None`): isolated ones first, one
/// hyperthread per core, never CPU 0 (the kernel's housekeeping); without isolated CPUs,
/// the highest-numbered cores (to be isolated).
pub fn suggest(c: &Cpus, node: Option<u32>, workers: usize) -> Result<Suggestion, String> {
    let pool: Vec<u32> = match node.and_then(|n| c.nodes.get(&n)) {
        Some(cpus) => cpus.clone(),
        None => c.online.clone(),
    };
    let primary = |cpu: &u32| c.core_first.get(cpu).is_none_or(|f| f == cpu);
    let usable: Vec<u32> = pool.iter().copied().filter(|&x| x != 0).collect();
    let iso: Vec<u32> = usable
        .iter()
        .copied()
        .filter(|x| c.isolated.contains(x) && primary(x))
        .collect();
    let lcores: Vec<u32> = if iso.len() >= workers {
        iso[..workers].to_vec()
    } else {
        let mut cores: Vec<u32> = usable.iter().copied().filter(primary).collect();
        if cores.len() < workers {
            // Not enough whole cores: hyperthreads too.
            cores = usable.clone();
        }
        if cores.len() < workers {
            return Err(format!(
                "{} workers need {} CPUs besides CPU 0{}; there are {}",
                workers,
                workers,
                node.map_or_else(String::new, |n| format!(" on node {n}")),
                cores.len()
            ));
        }
        cores[cores.len() - workers..].to_vec()
    };
    Ok(Suggestion {
        isolated: lcores.iter().all(|x| c.isolated.contains(x)),
        lcores,
        node,
    })
}

/// `msgr-host cpus`.
pub fn show(c: &Cpus, nic_node: Option<u32>, workers: usize) -> String {
    let mut s = String::new();
    let l = |v: &[u32]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            format_cpu_list(v)
        }
    };
    let _ = writeln!(s, "online:    {}", l(&c.online));
    let _ = writeln!(s, "isolcpus:  {}", l(&c.isolated));
    let _ = writeln!(s, "nohz_full: {}", l(&c.nohz_full));
    let _ = writeln!(s, "rcu_nocbs: {}", l(&c.rcu_nocbs));
    for (n, cpus) in &c.nodes {
        let _ = writeln!(
            s,
            "node{n}:     {}{}",
            l(cpus),
            if nic_node == Some(*n) {
                "  (the NIC's node)"
            } else {
                ""
            }
        );
    }
    match suggest(c, nic_node, workers) {
        Ok(sg) => {
            let _ = writeln!(
                s,
                "suggested for {workers} worker(s): EAL `{}`, `msgr serve --workers {workers}`",
                sg.eal()
            );
            if !sg.isolated {
                let _ = writeln!(
                    s,
                    "  not isolated yet: add `{}` to the kernel command line and reboot",
                    sg.cmdline()
                );
            }
        }
        Err(e) => {
            let _ = writeln!(s, "no suggestion: {e}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Cpus {
        // 2 nodes x 4 cores x 2 threads: node0 = 0-3,8-11, node1 = 4-7,12-15.
        let mut core_first = BTreeMap::new();
        for c in 0..16u32 {
            core_first.insert(c, c % 8);
        }
        Cpus {
            online: (0..16).collect(),
            isolated: vec![],
            nohz_full: vec![],
            rcu_nocbs: vec![],
            nodes: [
                (0, vec![0, 1, 2, 3, 8, 9, 10, 11]),
                (1, vec![4, 5, 6, 7, 12, 13, 14, 15]),
            ]
            .into_iter()
            .collect(),
            core_first,
        }
    }

    #[test]
    fn suggestions_stay_on_the_node_one_thread_per_core() {
        let mut c = host();
        let s = suggest(&c, Some(1), 2).unwrap();
        assert_eq!(s.lcores, vec![6, 7]);
        assert!(!s.isolated);
        assert_eq!(s.eal(), "-l 6-7 --main-lcore 6");
        assert_eq!(s.cmdline(), "isolcpus=6-7 nohz_full=6-7 rcu_nocbs=6-7");
        // Isolated cores are taken first; CPU 0 never.
        c.isolated = vec![0, 1, 2, 9];
        let s = suggest(&c, Some(0), 2).unwrap();
        assert_eq!(s.lcores, vec![1, 2]);
        assert!(s.isolated);
        // More workers than cores on the node: hyperthreads too; more than CPUs: an error.
        assert_eq!(suggest(&c, Some(1), 5).unwrap().lcores.len(), 5);
        assert!(suggest(&c, Some(1), 9).is_err());
        let text = show(&c, Some(0), 2);
        assert!(
            text.contains("node0:     0-3,8-11  (the NIC's node)"),
            "{text}"
        );
        assert!(text.contains("EAL `-l 1-2 --main-lcore 1`"), "{text}");
    }
}
