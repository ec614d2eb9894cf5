//! Helpers for the tests that start EAL.

use std::env;
use std::fs;
use std::path::PathBuf;

/// Removes EAL's runtime directory for our (per-process) `--file-prefix` when dropped,
/// passing or failing: where EAL said it is, and where it would be (root: /var/run/dpdk,
/// otherwise $XDG_RUNTIME_DIR/dpdk or /tmp/dpdk) in case init failed half way.
pub(crate) struct RuntimeDir {
    prefix: String,
    /// Where EAL said its runtime directory is, once it started.
    pub(crate) dir: Option<PathBuf>,
}

impl RuntimeDir {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            dir: None,
        }
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
            // Only our own prefix: other EAL processes may share the parent directory.
            if d.ends_with(&self.prefix) {
                let _ = fs::remove_dir_all(&d);
            }
        }
    }
}

/// Prints why test `name` did not run, or fails it when interop tests are required
/// (`MSGR_REQUIRE_INTEROP=1`, set by the test script once it installed everything).
pub(crate) fn skip(name: &str, reason: &str) {
    let required = env::var("MSGR_REQUIRE_INTEROP").is_ok_and(|v| v == "1");
    assert!(!required, "{name}: {reason} (MSGR_REQUIRE_INTEROP=1)");
    println!("SKIPPED {name}: {reason}");
}
