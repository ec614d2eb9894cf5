//! What the DPDK benchmarks share (`bench stack --link vhost`, `bench testpmd`): the CPU of
//! each side, a temporary directory for the vhost-user socket, removal of EAL runtime
//! directories, a wait for a quiet machine, and the result table.

use std::path::PathBuf;
use std::time::{Duration, Instant};
use std::{env, fs};

/// The CPUs this process may run on (`Cpus_allowed_list` of /proc/self/status), ascending.
pub(crate) fn allowed_cpus() -> Vec<u32> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(parse_cpu_list)
        .unwrap_or_default()
}

/// `0-3,8,10-11` → [0, 1, 2, 3, 8, 10, 11]; malformed parts are skipped.
pub(crate) fn parse_cpu_list(list: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((lo, hi)) => {
                if let (Ok(lo), Ok(hi)) = (lo.trim().parse::<u32>(), hi.trim().parse::<u32>()) {
                    if lo <= hi && hi - lo < 4096 {
                        out.extend(lo..=hi);
                    }
                }
            }
            None => out.extend(part.parse::<u32>().ok()),
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The CPU of side A (the bench process, vhost back end) and of side B (the peer process,
/// virtio-user front end): the first two CPUs this process may use, or both on the only one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cpus {
    pub(crate) a: u32,
    pub(crate) b: u32,
}

impl Cpus {
    pub(crate) fn pick() -> Self {
        Self::from_allowed(&allowed_cpus())
    }

    pub(crate) fn from_allowed(cpus: &[u32]) -> Self {
        match cpus {
            // Unknown (no /proc): CPU 0 exists everywhere.
            [] => Self { a: 0, b: 0 },
            [only] => Self { a: *only, b: *only },
            [a, b, ..] => Self { a: *a, b: *b },
        }
    }

    /// Both sides on one CPU: two busy pollers there take turns only when the scheduler
    /// preempts one (~125 round trips/s, dpdk-virtual-links.md §7).
    pub(crate) fn shared(self) -> bool {
        self.a == self.b
    }
}

/// A directory under the system's temporary directory, removed with its contents on drop.
pub(crate) struct TempDir {
    pub(crate) path: PathBuf,
}

impl TempDir {
    pub(crate) fn create(tag: &str) -> Result<Self, String> {
        let path = env::temp_dir().join(format!("msgr-bench-{tag}-{}", std::process::id()));
        // A stale one from a killed run with the same pid: ours now.
        let _ = fs::remove_dir_all(&path);
        fs::create_dir(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.path) {
            eprintln!("bench: cleanup {}: {e}", self.path.display());
        }
    }
}

pub(crate) use stack::dpdk_files::RuntimeDir;

/// Busy and steal time of all CPUs since boot (jiffies): (total, idle, steal).
fn cpu_times() -> Option<(u64, u64, u64)> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 8 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let total = v[..8].iter().sum();
    Some((total, v[3] + v[4], v[7]))
}

/// How busy the machine was while it waited: percent of all CPUs, and percent stolen.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    pub(crate) busy: f64,
    pub(crate) steal: f64,
}

/// Waits (at most `limit`) for a half second in which the whole machine was under 10 %
/// busy (other users' builds move these figures by 2x: dpdk-virtual-links.md §0); returns
/// the load of the last half second.
pub(crate) fn settle(limit: Duration) -> Option<Load> {
    let deadline = Instant::now() + limit;
    loop {
        let (t0, i0, s0) = cpu_times()?;
        std::thread::sleep(Duration::from_millis(500));
        let (t1, i1, s1) = cpu_times()?;
        let dt = t1.saturating_sub(t0).max(1) as f64;
        let load = Load {
            busy: 100.0 * (1.0 - i1.saturating_sub(i0) as f64 / dt),
            steal: 100.0 * s1.saturating_sub(s0) as f64 / dt,
        };
        if load.busy < 10.0 || Instant::now() >= deadline {
            return Some(load);
        }
    }
}

/// One line of the result table.
#[derive(Debug, Clone, Default)]
pub(crate) struct Row {
    pub(crate) link: String,
    pub(crate) path: String,
    pub(crate) rtt_mean_us: Option<f64>,
    pub(crate) p50_us: Option<f64>,
    pub(crate) p99_us: Option<f64>,
    pub(crate) round_trips_s: Option<f64>,
    /// Bulk A→B, already formatted ("812 MB/s, 0.56 Mpps").
    pub(crate) bulk: Option<String>,
    /// Frames per second of a one-way run (testpmd txonly -> rxonly).
    pub(crate) frames_s: Option<f64>,
    /// Machine load just before the measurement.
    pub(crate) load: Option<Load>,
    /// Why the row has no figures.
    pub(crate) skipped: Option<String>,
}

fn cell(v: Option<f64>, unit: &str, prec: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |x| format!("{x:.prec$}{unit}"))
}

pub(crate) fn print_table(rows: &[Row]) {
    out!("{}", markdown(rows));
}

/// The rows as a markdown table.
pub(crate) fn markdown(rows: &[Row]) -> String {
    let mut s = String::from(
        "| link | path | RTT mean | RTT p50 | RTT p99 | round trips/s | bulk A->B | busy before |\n\
         |---|---|---:|---:|---:|---:|---|---|\n",
    );
    for r in rows {
        if let Some(why) = &r.skipped {
            s += &format!(
                "| {} | {} | skipped: {} | | | | | |\n",
                r.link,
                r.path,
                why.replace('|', "/")
            );
            continue;
        }
        let load = r.load.map_or_else(
            || "-".to_owned(),
            |l| format!("{:.0}% (steal {:.0}%)", l.busy, l.steal),
        );
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {load} |\n",
            r.link,
            r.path,
            cell(r.rtt_mean_us, " us", 2),
            cell(r.p50_us, " us", 2),
            cell(r.p99_us, " us", 2),
            cell(r.round_trips_s, "", 0),
            r.bulk.as_deref().unwrap_or("-"),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1"), vec![0, 1]);
        assert_eq!(
            parse_cpu_list(" 0-3,8,10-11\n"),
            vec![0, 1, 2, 3, 8, 10, 11]
        );
        assert_eq!(parse_cpu_list("5"), vec![5]);
        assert_eq!(parse_cpu_list("x,3-1,2"), vec![2]);
        assert!(parse_cpu_list("").is_empty());
    }

    #[test]
    fn sides_get_a_cpu_each_when_there_are_two() {
        assert_eq!(Cpus::from_allowed(&[0, 1]), Cpus { a: 0, b: 1 });
        assert_eq!(Cpus::from_allowed(&[2, 5, 7]), Cpus { a: 2, b: 5 });
        assert!(Cpus::from_allowed(&[3]).shared());
        assert_eq!(Cpus::from_allowed(&[]), Cpus { a: 0, b: 0 });
    }
}
