//! `msgr-host` on this machine, for real: hugepages reserved and released (then restored,
//! also on failure), hugetlbfs mounted and unmounted; the refusal to bind the machine's own
//! interface (the one carrying the default route), as a dry run; the doctor's report.
//!
//! Changing the host needs root: without it those parts say `SKIPPED`, and fail instead
//! when MSGR_REQUIRE_INTEROP=1 (CI). Never binds anything: the bind is a dry run that must
//! be refused before it plans a change.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use host::is_root;

const NR: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";

fn host(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_msgr-host"))
        .args(args)
        .output()
        .expect("msgr-host runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn skip(test: &str, why: &str) {
    assert!(
        !std::env::var("MSGR_REQUIRE_INTEROP").is_ok_and(|v| v == "1"),
        "{test}: {why} (MSGR_REQUIRE_INTEROP=1)"
    );
    eprintln!("SKIPPED {test}: {why}");
}

fn pages() -> u64 {
    std::fs::read_to_string(NR)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Puts the reservation back and unmounts the test's mount, whatever happened.
struct Restore {
    pages: u64,
    mount: PathBuf,
}

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
        let _ = std::fs::remove_dir(&self.mount);
        let _ = std::fs::write(NR, self.pages.to_string());
    }
}

fn mounted(dir: &Path) -> bool {
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(&*dir.to_string_lossy()))
}

#[test]
fn hugepages_reserved_and_released_for_real() {
    if !is_root() {
        return skip("hugepages_reserved_and_released_for_real", "needs root");
    }
    if !Path::new(NR).exists() {
        return skip(
            "hugepages_reserved_and_released_for_real",
            "no 2 MiB hugepages here",
        );
    }
    let before = pages();
    let mount = std::env::temp_dir().join(format!("msgr-host-huge-{}", std::process::id()));
    let _restore = Restore {
        pages: before,
        mount: mount.clone(),
    };
    let want = before + 16;
    // A hugetlbfs mount of the default size may already serve 2M pages (then none is made):
    // mount one of our own only if none exists.
    let had_mount = std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .contains(" hugetlbfs ");
    let o = host(&[
        "hugepages",
        "reserve",
        "--pages",
        &want.to_string(),
        "--mount",
        &mount.to_string_lossy(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(pages(), want, "{}", text(&o));
    assert!(
        text(&o).contains(&format!("{want} reserved")),
        "{}",
        text(&o)
    );
    if !had_mount {
        assert!(
            mounted(&mount),
            "hugetlbfs mounted at {}: {}",
            mount.display(),
            text(&o)
        );
    }
    // Idempotent.
    let o = host(&[
        "hugepages",
        "reserve",
        "--pages",
        &want.to_string(),
        "--no-mount",
    ]);
    assert!(text(&o).contains("nothing to change"), "{}", text(&o));
    // Released back to what it was.
    let o = host(&["hugepages", "release", "--pages", &before.to_string()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(pages(), before);
}

/// The interface that carries the default route, if any.
fn default_iface() -> Option<String> {
    let out = Command::new("ip")
        .args(["-j", "route", "show", "default"])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v.as_array()?.first()?["dev"].as_str().map(str::to_owned)
}

#[test]
fn refuses_to_bind_this_machines_own_interface() {
    let Some(iface) = default_iface() else {
        return skip(
            "refuses_to_bind_this_machines_own_interface",
            "no default route",
        );
    };
    // A dry run must still be refused: the refusal comes before any plan.
    let o = host(&["nic", "bind", &iface, "--dry-run"]);
    let t = text(&o);
    assert!(!o.status.success(), "binding {iface} must be refused: {t}");
    if t.contains("not a PCI network device") {
        return skip(
            "refuses_to_bind_this_machines_own_interface",
            &format!("{iface} is virtual here, not a PCI device: {t}"),
        );
    }
    assert!(t.contains("refusing to bind") && t.contains(&iface), "{t}");
    assert!(t.contains("DEFAULT ROUTE"), "{t}");
    assert!(!t.contains("would write"), "nothing planned: {t}");
    // And the listing says so.
    let list = text(&host(&["nic", "list"]));
    let line = list
        .lines()
        .find(|l| l.contains(&iface))
        .unwrap_or_default();
    assert!(line.contains("DEFAULT ROUTE"), "{list}");
}

#[test]
fn doctor_reports_this_machine() {
    let o = host(&["doctor"]);
    let t = text(&o);
    for name in [
        "hugepages ",
        "hugetlbfs ",
        "hugepages at boot",
        " dpdk ",
        "dpdk.service",
        "iommu ",
        "vfio-pci ",
        "nic ",
        "isolated cores",
    ] {
        assert!(t.contains(name), "check {name:?} missing: {t}");
    }
    // Every failure comes with a fix, and the exit status says whether any failed.
    let fails = t.lines().filter(|l| l.starts_with("FAIL")).count();
    assert_eq!(o.status.success(), fails == 0, "{t}");
    let lines: Vec<&str> = t.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with("FAIL") || l.starts_with("WARN") {
            assert!(
                lines.get(i + 1).is_some_and(|n| n.contains("fix:")),
                "{l}: {t}"
            );
        }
    }
    // DPDK is what this project builds against: the check finds it.
    assert!(t.contains("PASS  dpdk "), "{t}");
}
