//! `msgr-host` against a fake host the test builds (sysfs, procfs, /etc, saved `ip -j`
//! output): listing, the binding safety refusals, bind and unbind with the record of the
//! original driver, persistence through Debian's dpdk files, hugepages, and the doctor.
//! Nothing here touches the machine: a fake root runs no commands and writes only files.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Fake {
    dir: PathBuf,
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn put(p: &Path, text: &str) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

impl Fake {
    /// Two NUMA nodes of 4 CPUs; four network devices:
    /// - 0000:00:03.0 virtio-pci, eth0: up, 192.0.2.2/24, the default route (the host's);
    /// - 0000:03:00.0 i40e, ens1f0: up with 10.9.0.5/24 (in use);
    /// - 0000:03:00.1 i40e, ens1f1: down, no address (free for DPDK);
    /// - 0000:5e:00.0 mlx5_core, ens2.
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("msgr-host-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let sys = dir.join("sys");
        for d in ["i40e", "virtio-pci", "mlx5_core"] {
            fs::create_dir_all(sys.join("bus/pci/drivers").join(d)).unwrap();
        }
        put(&sys.join("bus/pci/drivers_probe"), "");
        let dev =
            |pci: &str, id: (&str, &str), driver: &str, node: &str, iface: &str, virtio: bool| {
                let d = sys.join("bus/pci/devices").join(pci);
                put(&d.join("class"), "0x020000\n");
                put(&d.join("vendor"), &format!("0x{}\n", id.0));
                put(&d.join("device"), &format!("0x{}\n", id.1));
                put(&d.join("numa_node"), &format!("{node}\n"));
                symlink(
                    format!("../../../bus/pci/drivers/{driver}"),
                    d.join("driver"),
                )
                .unwrap();
                let net = if virtio {
                    d.join("virtio2/net")
                } else {
                    d.join("net")
                };
                fs::create_dir_all(net.join(iface)).unwrap();
            };
        dev(
            "0000:00:03.0",
            ("1af4", "1041"),
            "virtio-pci",
            "-1",
            "eth0",
            true,
        );
        dev(
            "0000:03:00.0",
            ("8086", "1572"),
            "i40e",
            "1",
            "ens1f0",
            false,
        );
        dev(
            "0000:03:00.1",
            ("8086", "1572"),
            "i40e",
            "1",
            "ens1f1",
            false,
        );
        dev(
            "0000:5e:00.0",
            ("15b3", "1017"),
            "mlx5_core",
            "1",
            "ens2",
            false,
        );
        // Not a network device: ignored.
        put(
            &sys.join("bus/pci/devices/0000:00:1f.2/class"),
            "0x010601\n",
        );
        for g in 0..4 {
            fs::create_dir_all(sys.join(format!("kernel/iommu_groups/{g}"))).unwrap();
        }
        for size in ["2048", "1048576"] {
            put(
                &sys.join(format!(
                    "kernel/mm/hugepages/hugepages-{size}kB/nr_hugepages"
                )),
                "0\n",
            );
            for n in 0..2 {
                let h = sys.join(format!(
                    "devices/system/node/node{n}/hugepages/hugepages-{size}kB"
                ));
                put(&h.join("nr_hugepages"), "0\n");
                put(&h.join("free_hugepages"), "0\n");
            }
        }
        put(&sys.join("devices/system/node/node0/cpulist"), "0-3\n");
        put(&sys.join("devices/system/node/node1/cpulist"), "4-7\n");
        put(&sys.join("devices/system/cpu/online"), "0-7\n");
        put(&sys.join("devices/system/cpu/isolated"), "\n");
        put(&sys.join("devices/system/cpu/nohz_full"), "(null)\n");
        for c in 0..8 {
            put(
                &sys.join(format!(
                    "devices/system/cpu/cpu{c}/topology/thread_siblings_list"
                )),
                &format!("{c}\n"),
            );
        }
        let files: [(&str, &str); 8] = [
            (
                "proc/mounts",
                "sysfs /sys sysfs rw 0 0\nproc /proc proc rw 0 0\n",
            ),
            (
                "proc/meminfo",
                "MemTotal: 16000000 kB\nHugepagesize:       2048 kB\n",
            ),
            (
                "proc/cmdline",
                "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet\n",
            ),
            (
                "ip/addr.json",
                r#"[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP"],"addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},
{"ifindex":2,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"addr_info":[{"family":"inet","local":"192.0.2.2","prefixlen":24},{"family":"inet6","local":"fe80::fc:ff:fe00:1","prefixlen":64}]},
{"ifindex":3,"ifname":"ens1f0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"addr_info":[{"family":"inet","local":"10.9.0.5","prefixlen":24}]},
{"ifindex":4,"ifname":"ens1f1","flags":["BROADCAST","MULTICAST"],"addr_info":[]},
{"ifindex":5,"ifname":"ens2","flags":["BROADCAST","MULTICAST"],"addr_info":[]}]"#,
            ),
            (
                "ip/route.json",
                r#"[{"dst":"default","gateway":"192.0.2.1","dev":"eth0","flags":[]},{"dst":"192.0.2.0/24","dev":"eth0","protocol":"kernel","scope":"link","prefsrc":"192.0.2.2","flags":[]},{"dst":"10.9.0.0/24","dev":"ens1f0","flags":[]}]"#,
            ),
            (
                "etc/dpdk/dpdk.conf",
                "# The number of 2M hugepages to reserve on system boot\n# NR_2M_PAGES=64\n",
            ),
            ("etc/dpdk/interfaces", "# <bus>\t<id>\t<driver>\n"),
            ("lib/systemd/system/dpdk.service", "[Unit]\n"),
        ];
        for (rel, text) in files {
            put(&dir.join(rel), text);
        }
        Self { dir }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_msgr-host"))
            .arg("--fake-root")
            .arg(&self.dir)
            .args(args)
            .output()
            .expect("msgr-host runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "msgr-host {args:?} failed: {}{out}",
            String::from_utf8_lossy(&o.stderr)
        );
        out
    }

    fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(!o.status.success(), "msgr-host {args:?} should fail");
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    fn ok_line(&self, cmd: &str) -> String {
        self.ok(&cmd.split_whitespace().collect::<Vec<_>>())
    }

    fn fails_line(&self, cmd: &str) -> String {
        self.fails(&cmd.split_whitespace().collect::<Vec<_>>())
    }

    fn run_line(&self, cmd: &str) -> Output {
        self.run(&cmd.split_whitespace().collect::<Vec<_>>())
    }

    fn read(&self, rel: &str) -> Option<String> {
        fs::read_to_string(self.dir.join(rel)).ok()
    }

    fn dev(&self, pci: &str) -> PathBuf {
        self.dir.join("sys/bus/pci/devices").join(pci)
    }

    /// What the kernel does after a bind or unbind: the device's driver link moves.
    fn kernel_moves(&self, pci: &str, driver: &str, iface: Option<&str>) {
        let d = self.dev(pci);
        fs::create_dir_all(self.dir.join("sys/bus/pci/drivers").join(driver)).unwrap();
        fs::remove_file(d.join("driver")).unwrap();
        symlink(
            format!("../../../bus/pci/drivers/{driver}"),
            d.join("driver"),
        )
        .unwrap();
        let _ = fs::remove_dir_all(d.join("net"));
        if let Some(i) = iface {
            fs::create_dir_all(d.join("net").join(i)).unwrap();
        }
    }
}

#[test]
fn lists_devices_with_what_the_host_uses() {
    let f = Fake::new("list");
    let out = f.ok_line("nic list");
    let line = |pci: &str| {
        out.lines()
            .find(|l| l.starts_with(pci))
            .unwrap_or_else(|| panic!("no {pci}: {out}"))
            .to_owned()
    };
    let eth0 = line("0000:00:03.0");
    assert!(
        eth0.contains("virtio-pci") && eth0.contains("eth0"),
        "{eth0}"
    );
    assert!(
        eth0.contains("192.0.2.2/24") && eth0.contains("DEFAULT ROUTE"),
        "{eth0}"
    );
    assert!(
        !eth0.contains("fe80"),
        "link-local addresses are not shown: {eth0}"
    );
    let f0 = line("0000:03:00.0");
    assert!(
        f0.contains("8086:1572") && f0.contains("i40e") && f0.contains(" up "),
        "{f0}"
    );
    assert!(f0.contains("route 10.9.0.0/24"), "{f0}");
    let f1 = line("0000:03:00.1");
    assert!(f1.contains("ens1f1") && f1.contains("down"), "{f1}");
    assert!(
        line("0000:5e:00.0").contains("[DPDK-ready]"),
        "mlx5 is used in place"
    );
    assert!(!out.contains("0000:00:1f.2"), "only network devices: {out}");
}

#[test]
fn refuses_devices_the_host_uses() {
    let f = Fake::new("refuse");
    // The default route's device, by interface name and by PCI address.
    for dev in ["eth0", "00:03.0"] {
        let e = f.fails(&["nic", "bind", dev]);
        assert!(e.contains("refusing to bind 0000:00:03.0 (eth0)"), "{e}");
        assert!(e.contains("DEFAULT ROUTE") && e.contains("--force"), "{e}");
    }
    // Up with an address and a route of its own.
    let e = f.fails_line("nic bind ens1f0 --dry-run");
    assert!(
        e.contains("has address 10.9.0.5/24") && e.contains("routes to 10.9.0.0/24"),
        "{e}"
    );
    // NVIDIA/Mellanox: used in place.
    let e = f.fails_line("nic bind 0000:5e:00.0");
    assert!(
        e.contains("in place") && e.contains("-a 0000:5e:00.0"),
        "{e}"
    );
    // Unknown devices and virtual interfaces.
    assert!(f
        .fails(&["nic", "bind", "0000:99:00.0"])
        .contains("no PCI network device"));
    fs::create_dir_all(f.dir.join("sys/class/net/veth0")).unwrap();
    assert!(f
        .fails(&["nic", "bind", "veth0"])
        .contains("not a PCI network device"));
    // Without an IOMMU, vfio-pci is refused with the fix.
    fs::remove_dir_all(f.dir.join("sys/kernel/iommu_groups")).unwrap();
    let e = f.fails_line("nic bind ens1f1");
    assert!(
        e.contains("no IOMMU") && e.contains("intel_iommu=on iommu=pt"),
        "{e}"
    );
    // Nothing was changed by any of it.
    assert!(f.read("state/bindings.json").is_none());
    for pci in [
        "0000:00:03.0",
        "0000:03:00.0",
        "0000:03:00.1",
        "0000:5e:00.0",
    ] {
        assert!(
            !f.dev(pci).join("driver_override").exists(),
            "{pci} untouched"
        );
    }
    // --force takes the busy one (a fake host: files only).
    fs::create_dir_all(f.dir.join("sys/kernel/iommu_groups/0")).unwrap();
    f.ok_line("nic bind ens1f0 --force");
    assert_eq!(
        f.read("sys/bus/pci/devices/0000:03:00.0/driver_override")
            .as_deref(),
        Some("vfio-pci")
    );
}

#[test]
fn binds_records_and_gives_back() {
    let f = Fake::new("bind");
    // A dry run says everything it would do, and does none of it.
    let plan = f.ok_line("nic bind 03:00.1 --dry-run --persist");
    for step in [
        "would run modprobe vfio-pci",
        "bindings.json",
        "would write \"vfio-pci\" to",
        "drivers/i40e/unbind",
        "drivers_probe",
        "dpdk/interfaces",
    ] {
        assert!(plan.contains(step), "{step}: {plan}");
    }
    assert!(f.read("state/bindings.json").is_none());
    assert!(!f.dev("0000:03:00.1").join("driver_override").exists());

    f.ok_line("nic bind 03:00.1 --persist");
    let rec: serde_json::Value =
        serde_json::from_str(&f.read("state/bindings.json").unwrap()).unwrap();
    assert_eq!(rec["0000:03:00.1"]["driver"], "i40e");
    assert_eq!(rec["0000:03:00.1"]["ifaces"][0], "ens1f1");
    let sysfs = |rel: &str| f.read(&format!("sys/{rel}")).unwrap_or_default();
    assert_eq!(
        sysfs("bus/pci/devices/0000:03:00.1/driver_override"),
        "vfio-pci"
    );
    assert_eq!(sysfs("bus/pci/drivers/i40e/unbind"), "0000:03:00.1");
    assert_eq!(sysfs("bus/pci/drivers_probe"), "0000:03:00.1");
    assert!(f
        .read("etc/dpdk/interfaces")
        .unwrap()
        .contains("pci\t0000:03:00.1\tvfio-pci\n"));
    // The kernel moved it; binding again changes nothing, and the record keeps i40e.
    f.kernel_moves("0000:03:00.1", "vfio-pci", None);
    assert!(f
        .ok(&["nic", "bind", "0000:03:00.1"])
        .contains("nothing to change"));
    assert!(f.ok_line("nic list").contains("vfio-pci"));

    // Back to the recorded driver.
    f.ok_line("nic unbind 0000:03:00.1 --persist");
    assert_eq!(sysfs("bus/pci/devices/0000:03:00.1/driver_override"), "\n");
    assert_eq!(sysfs("bus/pci/drivers/vfio-pci/unbind"), "0000:03:00.1");
    assert_eq!(sysfs("bus/pci/drivers/i40e/bind"), "0000:03:00.1");
    let rec: serde_json::Value =
        serde_json::from_str(&f.read("state/bindings.json").unwrap()).unwrap();
    assert!(
        rec.get("0000:03:00.1").is_none(),
        "the record is gone: {rec}"
    );
    assert!(!f
        .read("etc/dpdk/interfaces")
        .unwrap()
        .contains("0000:03:00.1"));
    // Without a record, unbind needs to be told the driver.
    f.kernel_moves("0000:03:00.1", "vfio-pci", None);
    let e = f.fails_line("nic unbind 0000:03:00.1");
    assert!(e.contains("--driver"), "{e}");
    f.ok_line("nic unbind 0000:03:00.1 --driver i40e");
}

#[test]
fn hugepages_reserved_per_node_and_persisted() {
    let f = Fake::new("huge");
    let plan = f.ok_line("hugepages reserve --pages 512 --node all --persist --dry-run");
    assert!(
        plan.contains("node0/hugepages/hugepages-2048kB/nr_hugepages"),
        "{plan}"
    );
    assert!(
        plan.contains("would run mount -t hugetlbfs -o pagesize=2M"),
        "{plan}"
    );
    assert_eq!(
        f.read("sys/devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages")
            .as_deref(),
        Some("0\n")
    );
    f.ok_line("hugepages reserve --pages 512 --node all --persist");
    for n in 0..2 {
        let p = format!("sys/devices/system/node/node{n}/hugepages/hugepages-2048kB/nr_hugepages");
        assert_eq!(f.read(&p).as_deref(), Some("512"));
    }
    let conf = f.read("etc/dpdk/dpdk.conf").unwrap();
    assert!(conf.ends_with("NR_2M_PAGES=\"512 512\"\n"), "{conf}");
    assert!(conf.contains("# NR_2M_PAGES=64"), "comments kept: {conf}");
    // Idempotent: nothing left to do (pages, and dpdk.conf).
    let again = f.ok_line("hugepages reserve --pages 512 --node all --persist --no-mount");
    assert!(again.contains("nothing to change"), "{again}");
    let show = f.ok_line("hugepages show");
    assert!(show.contains("node1      2M:    512 reserved"), "{show}");
    assert!(show.contains("NR_2M_PAGES=\"512 512\""), "{show}");
    assert!(show.contains("hugetlbfs: not mounted"), "{show}");
    // 1 GiB pages on node 1 only; bad input.
    f.ok_line("hugepages reserve --size 1G --pages 4 --node 1 --no-mount");
    assert_eq!(
        f.read("sys/devices/system/node/node1/hugepages/hugepages-1048576kB/nr_hugepages")
            .as_deref(),
        Some("4")
    );
    assert!(f
        .fails(&["hugepages", "reserve", "--pages", "1", "--node", "7"])
        .contains("no NUMA node 7"));
    assert!(f
        .fails(&["hugepages", "reserve", "--size", "16M", "--pages", "1"])
        .contains("offers no 16M"));
    assert!(f
        .fails(&["hugepages", "reserve", "--size", "big", "--pages", "1"])
        .contains("give 2M or 1G"));
    // Release.
    f.ok_line("hugepages release --node all --persist");
    assert!(f
        .read("etc/dpdk/dpdk.conf")
        .unwrap()
        .contains("NR_2M_PAGES=\"0 0\""));
}

#[test]
fn doctor_lists_every_check_with_fixes() {
    let f = Fake::new("doctor");
    let o = f.run_line("doctor");
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "failures exit 1: {out}");
    for line in [
        "FAIL  hugepages",
        "FAIL  hugetlbfs",
        "WARN  hugepages at boot",
        "PASS  dpdk.service",
        "PASS  iommu             4 IOMMU groups",
        "FAIL  vfio-pci",
        "WARN  isolated cores",
        "isolcpus=6-7 nohz_full=6-7 rcu_nocbs=6-7",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
    assert!(
        out.contains("PASS  nic               0000:5e:00.0 on mlx5_core, node 1"),
        "{out}"
    );
    assert!(out.contains("fix: msgr-host hugepages reserve"), "{out}");
    // Fixed host: pages, a mount, vfio, a bound NIC, isolated cores.
    f.ok_line("hugepages reserve --pages 256 --node 1 --persist --no-mount");
    put(
        &f.dir.join("proc/mounts"),
        "hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n",
    );
    fs::create_dir_all(f.dir.join("sys/bus/pci/drivers/vfio-pci")).unwrap();
    put(&f.dir.join("sys/devices/system/cpu/isolated"), "6-7\n");
    put(&f.dir.join("sys/devices/system/cpu/nohz_full"), "6-7\n");
    put(
        &f.dir.join("proc/cmdline"),
        "ro isolcpus=6-7 nohz_full=6-7 rcu_nocbs=6-7\n",
    );
    let out = f.ok_line("doctor");
    assert!(!out.contains("FAIL"), "{out}");
    assert!(
        out.contains(
            "PASS  lcores            for 2 worker(s) on node 1: EAL `-l 6-7 --main-lcore 6`"
        ),
        "{out}"
    );
    let cpus = f.ok_line("cpus");
    assert!(cpus.contains("node1:     4-7  (the NIC's node)"), "{cpus}");
}
