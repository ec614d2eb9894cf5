//! EAL's files on disk: what a process that ran EAL leaves behind, and its removal.

use std::env;
use std::fs;
use std::path::PathBuf;

/// Removes EAL's runtime directory for one `--file-prefix` when dropped, passing or failing:
/// where EAL said it is ([`RuntimeDir::dir`], from `Eal::runtime_dir`) and where it would be
/// (root: /var/run/dpdk; otherwise $XDG_RUNTIME_DIR/dpdk or /tmp/dpdk) in case EAL failed
/// half way. EAL itself leaves the directory (lock, config, multi-process socket) at cleanup.
/// Only directories named after the prefix are touched: other EAL processes share the
/// parent directory.
#[derive(Debug)]
pub struct RuntimeDir {
    prefix: String,
    /// Where EAL said its runtime directory is, once it started.
    pub dir: Option<PathBuf>,
}

impl RuntimeDir {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            dir: None,
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        let mut dirs: Vec<PathBuf> = ["/var/run/dpdk", "/tmp/dpdk"]
            .iter()
            .map(|b| PathBuf::from(b).join(&self.prefix))
            .collect();
        if let Some(xdg) = env::var_os("XDG_RUNTIME_DIR") {
            dirs.push(PathBuf::from(xdg).join("dpdk").join(&self.prefix));
        }
        dirs.extend(self.dir.clone());
        for d in dirs {
            if d.ends_with(&self.prefix) {
                let _ = fs::remove_dir_all(&d);
            }
        }
    }
}

/// The CPUs this process may run on (`Cpus_allowed_list` of /proc/self/status), in the
/// list syntax EAL's `-l`/`--lcores` take (`0-1`, `0,2`); `0` when /proc does not say.
pub fn allowed_cpus() -> String {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_ascii_digit() || c == ',' || c == '-')
        })
        .unwrap_or("0")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_only_its_own_prefix() {
        let base = env::temp_dir().join(format!("msgr-rtdir-{}", std::process::id()));
        let mine = base.join("mine");
        let other = base.join("other");
        fs::create_dir_all(mine.join("sub")).unwrap();
        fs::create_dir_all(&other).unwrap();
        let mut g = RuntimeDir::new("mine");
        g.dir = Some(mine.clone());
        drop(g);
        assert!(!mine.exists());
        assert!(other.exists());
        let mut g = RuntimeDir::new("mine");
        g.dir = Some(other.clone()); // not named after the prefix: left alone
        drop(g);
        assert!(other.exists());
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn allowed_cpus_is_a_cpu_list() {
        let l = allowed_cpus();
        assert!(
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_ascii_digit() || c == ',' || c == '-'),
            "{l}"
        );
    }
}
