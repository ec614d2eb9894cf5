//! The skip convention for tests that need something outside Rust (a program such as
//! `ceph-mon` or `tshark`, root for packet capture, a data file).
//!
//! ```ignore
//! #[test]
//! fn talks_to_a_real_mon() {
//!     if !skip::require("talks_to_a_real_mon", "ceph-mon", MonFixture::check) {
//!         return;
//!     }
//!     // ... the real test ...
//! }
//! ```
//!
//! When the check fails, [`require`] prints one line to stderr,
//! `SKIPPED <test_name>: <what> unavailable: <reason>`, and returns `false`, so the test
//! returns early and passes (visible with `--nocapture`, or grep the output for `SKIPPED`).
//! When `MSGR_REQUIRE_INTEROP=1` is set (CI sets it, because CI installs every dependency), it
//! panics instead (`MISSING DEPENDENCY <test_name>: ...`): a missing dependency must fail CI,
//! never pass silently.
//!
//! [`skip_unless!`](crate::skip_unless) is the same with the test name taken from the test
//! thread and the early `return` built in.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Environment variable that turns every skip into a failure (`MSGR_REQUIRE_INTEROP=1`).
pub(crate) const REQUIRE_ENV: &str = "MSGR_REQUIRE_INTEROP";

/// True if `MSGR_REQUIRE_INTEROP=1`: missing dependencies are fatal.
pub(crate) fn interop_required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1")
}

/// Runs `check` for the dependency described by `what` (e.g. `"ceph-mon"`, `"root"`).
///
/// Returns `true` if it is available. Otherwise prints `SKIPPED <test_name>: ...` to stderr and
/// returns `false`, or panics (`MISSING DEPENDENCY <test_name>: ...`) if [`interop_required`].
pub(crate) fn require(
    test_name: &str,
    what: &str,
    check: impl FnOnce() -> Result<(), String>,
) -> bool {
    match check() {
        Ok(()) => true,
        Err(reason) => {
            if interop_required() {
                panic!(
                    "MISSING DEPENDENCY {test_name}: {what} unavailable: {reason} \
                     ({REQUIRE_ENV}=1: a missing dependency fails instead of skipping)"
                );
            }
            eprintln!("SKIPPED {test_name}: {what} unavailable: {reason} (set {REQUIRE_ENV}=1 to make this an error)");
            false
        }
    }
}

/// Returns early from the calling test if `check` fails, through [`require`], with the test
/// name taken from [`test_name`]. Usage: `skip_unless!("ceph-mon", MonFixture::check);`.
#[macro_export]
macro_rules! skip_unless {
    ($what:expr, $check:expr) => {
        if !$crate::support::skip::require(&$crate::support::skip::test_name(), $what, $check) {
            return;
        }
    };
}

/// The running test's name: libtest names each test's thread after the test
/// (`module::test_fn`). Falls back to `"<unnamed test>"` (e.g. on the main thread).
pub(crate) fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_owned()
}

/// The full path of `prog` as the shell would find it: `prog` itself if it contains a `/`,
/// else the first executable regular file named `prog` in a `$PATH` directory.
pub(crate) fn which(prog: &str) -> Option<PathBuf> {
    if prog.contains('/') {
        let p = Path::new(prog);
        return is_executable(p).then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(prog))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A check that every program in `progs` is in `$PATH`; the error lists all missing ones.
pub(crate) fn programs(progs: &[&str]) -> Result<(), String> {
    let missing: Vec<&str> = progs
        .iter()
        .copied()
        .filter(|p| which(p).is_none())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("not in PATH: {}", missing.join(", ")))
    }
}

/// The effective uid: the second field of `Uid:` in `/proc/self/status`, else `id -u`.
pub(crate) fn effective_uid() -> Option<u32> {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let euid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok());
        if euid.is_some() {
            return euid;
        }
    }
    let out = super::run_bounded(Command::new("id").arg("-u"), Duration::from_secs(5)).ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// True if the test runs as root (effective uid 0).
pub(crate) fn is_root() -> bool {
    effective_uid() == Some(0)
}

/// A check for root (needed e.g. for packet capture: CAP_NET_RAW).
pub(crate) fn root() -> Result<(), String> {
    match effective_uid() {
        Some(0) => Ok(()),
        Some(uid) => Err(format!("needs root, running as uid {uid}")),
        None => Err("needs root, cannot determine the uid".to_owned()),
    }
}

/// A check that `path` exists (data files that are not part of every checkout).
pub(crate) fn file(path: &Path) -> Result<(), String> {
    if path.is_file() {
        Ok(())
    } else {
        Err(format!("no file {}", path.display()))
    }
}
