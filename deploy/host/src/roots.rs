//! Where the host is read from and written to.

use std::path::{Path, PathBuf};

/// The trees `msgr-host` reads and writes: the real ones by default, a test's fake ones
/// otherwise.
#[derive(Debug, Clone)]
pub struct Roots {
    /// sysfs (`/sys`).
    pub sys: PathBuf,
    /// procfs (`/proc`).
    pub proc: PathBuf,
    /// Configuration (`/etc`).
    pub etc: PathBuf,
    /// Our own records (`/var/lib/msgr-host`): the driver each device had before we bound it.
    pub state: PathBuf,
    /// Installed system files (`/lib`: systemd units).
    pub lib: PathBuf,
    /// Interface addresses and routes: `None` runs `ip -j addr` and `ip -j route`; a
    /// directory holds that output as `addr.json` and `route.json` (a test's fake host).
    pub ip_json: Option<PathBuf>,
    /// Run commands (`mount`, `modprobe`); off for a fake tree, whose changes are files only.
    pub run_commands: bool,
}

impl Default for Roots {
    fn default() -> Self {
        Self {
            sys: "/sys".into(),
            proc: "/proc".into(),
            etc: "/etc".into(),
            state: "/var/lib/msgr-host".into(),
            lib: "/lib".into(),
            ip_json: None,
            run_commands: true,
        }
    }
}

impl Roots {
    /// A fake host under `dir`: `sys/`, `proc/`, `etc/`, `state/`, `lib/`, `ip/` (a test
    /// builds them).
    pub fn fake(dir: &Path) -> Self {
        Self {
            sys: dir.join("sys"),
            proc: dir.join("proc"),
            etc: dir.join("etc"),
            state: dir.join("state"),
            lib: dir.join("lib"),
            ip_json: Some(dir.join("ip")),
            run_commands: false,
        }
    }

    /// `rel` under sysfs.
    pub fn sys(&self, rel: &str) -> PathBuf {
        self.sys.join(rel)
    }

    /// `rel` under procfs.
    pub fn proc(&self, rel: &str) -> PathBuf {
        self.proc.join(rel)
    }
}

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// A file's contents, trimmed; `None` if it cannot be read.
pub fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned())
}

/// A file holding one number.
pub fn read_u64(p: &Path) -> Option<u64> {
    read_trim(p)?.parse().ok()
}

/// The last component of where a symlink points (a driver's or group's name).
pub fn link_name(p: &Path) -> Option<String> {
    std::fs::read_link(p)
        .ok()?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

/// Directory entries' names, sorted; empty if the directory cannot be read.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A CPU list as the kernel writes them ("0-3,8"); bad parts are errors.
pub fn parse_cpu_list(text: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |t: &str| {
            t.trim()
                .parse::<u32>()
                .map_err(|_| format!("{t:?} is not a CPU number"))
        };
        match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (num(lo)?, num(hi)?);
                if lo > hi || hi - lo >= 65536 {
                    return Err(format!("{part:?} is not a CPU range"));
                }
                out.extend(lo..=hi);
            }
            None => out.push(num(part)?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The shortest list form of `cpus` ("0-3,8").
pub fn format_cpu_list(cpus: &[u32]) -> String {
    let mut v = cpus.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            v[i].to_string()
        } else {
            format!("{}-{}", v[i], v[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_both_ways() {
        assert_eq!(parse_cpu_list("0-3,8"), Ok(vec![0, 1, 2, 3, 8]));
        assert_eq!(parse_cpu_list(""), Ok(vec![]));
        assert_eq!(parse_cpu_list("5,1-2,2"), Ok(vec![1, 2, 5]));
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("a").is_err());
        assert_eq!(format_cpu_list(&[8, 0, 1, 2, 3, 10, 11]), "0-3,8,10-11");
        assert_eq!(format_cpu_list(&[]), "");
    }
}
