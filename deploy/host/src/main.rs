//! `msgr-host`: prepare a bare-metal host for the DPDK messenger, safely.
#![allow(clippy::print_stdout)] // a command-line tool: stdout is its output

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use host::plan::{execute, Action};
use host::{cpus, doctor, hugepages, is_root, nic, Roots};

#[derive(Parser)]
#[command(
    name = "msgr-host",
    version,
    about = "Prepare a host for the DPDK messenger: hugepages, NIC binding, core isolation, \
             and a doctor that says what is missing",
    long_about = "Prepare a bare-metal host for the DPDK messenger (msgr serve --transport \
                  dpdk): reserve hugepages, bind a NIC to vfio-pci (refusing one the host \
                  uses), check core isolation, and `doctor` to list what is ready and how to \
                  fix what is not. Builds on Debian's dpdk package: --persist writes \
                  /etc/dpdk/dpdk.conf and /etc/dpdk/interfaces, which dpdk.service applies at \
                  boot. Every change can be previewed with --dry-run; changes need root."
)]
struct Cli {
    /// Read and change a fake host under DIR (sys/, proc/, etc/, state/, lib/, ip/*.json)
    /// instead of this machine: for tests and for rehearsing on a captured tree.
    #[arg(long, global = true, value_name = "DIR")]
    fake_root: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Hugepages: show, reserve, release.
    #[command(subcommand)]
    Hugepages(Huge),
    /// Network devices: list, bind to a DPDK driver, give back.
    #[command(subcommand)]
    Nic(Nics),
    /// Core isolation and the NIC's NUMA node; suggested lcores.
    Cpus {
        /// Poll-mode workers to place.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// NUMA node to place them on [default: the first DPDK-ready NIC's].
        #[arg(long)]
        node: Option<u32>,
    },
    /// Everything above checked: PASS/WARN/FAIL with a fix for each; exit 1 on a FAIL.
    Doctor {
        /// Poll-mode workers the lcore suggestion is for.
        #[arg(long, default_value_t = 2)]
        workers: usize,
    },
}

#[derive(Subcommand)]
enum Huge {
    /// Reserved and free pages per size and node, hugetlbfs mounts, the boot-time setting.
    Show,
    /// Reserve pages (idempotent), mount hugetlbfs for that size if nothing serves it.
    Reserve {
        /// Page size: 2M or 1G.
        #[arg(long, default_value = "2M")]
        size: String,
        /// Pages (on each node given with --node; else system-wide).
        #[arg(long)]
        pages: u64,
        /// NUMA node(s): a number, a list (0,1) or `all`.
        #[arg(long)]
        node: Option<String>,
        /// Where to mount hugetlbfs if no mount serves this size.
        #[arg(long, default_value = "/dev/hugepages")]
        mount: PathBuf,
        /// Do not mount hugetlbfs.
        #[arg(long)]
        no_mount: bool,
        /// Also reserve them at every boot (/etc/dpdk/dpdk.conf, applied by dpdk.service).
        #[arg(long)]
        persist: bool,
        /// Print what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Give pages back (set the reservation to 0, or to --pages).
    Release {
        #[arg(long, default_value = "2M")]
        size: String,
        /// Pages to keep.
        #[arg(long, default_value_t = 0)]
        pages: u64,
        #[arg(long)]
        node: Option<String>,
        /// Also at boot (/etc/dpdk/dpdk.conf).
        #[arg(long)]
        persist: bool,
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum Nics {
    /// PCI network devices: driver, NUMA node, interface, link, addresses, routes.
    List,
    /// Bind a device (PCI address or interface name) to a DPDK driver; its driver is
    /// recorded for `unbind`. Refuses a device the host uses (up with an address, or
    /// carrying a route), NVIDIA/Mellanox devices (DPDK uses them in place), and vfio-pci
    /// without an IOMMU — unless --force.
    Bind {
        /// 0000:03:00.0, 03:00.0 or an interface name.
        dev: String,
        #[arg(long, default_value = "vfio-pci")]
        driver: String,
        #[arg(long)]
        force: bool,
        /// Also bind it at every boot (/etc/dpdk/interfaces, applied by dpdk.service).
        #[arg(long)]
        persist: bool,
        #[arg(long)]
        dry_run: bool,
    },
    /// Give a device back to the driver it had before `bind` (or --driver).
    Unbind {
        dev: String,
        /// The driver to bind to, when there is no record.
        #[arg(long)]
        driver: Option<String>,
        /// Also drop it from /etc/dpdk/interfaces.
        #[arg(long)]
        persist: bool,
        #[arg(long)]
        dry_run: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let roots = cli
        .fake_root
        .as_deref()
        .map_or_else(Roots::default, Roots::fake);
    match run(cli.cmd, &roots) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("msgr-host: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a command; `Ok(false)`: it ran and found a failure (doctor).
fn run(cmd: Cmd, roots: &Roots) -> Result<bool, String> {
    match cmd {
        Cmd::Hugepages(Huge::Show) => print!("{}", hugepages::show(roots)),
        Cmd::Hugepages(Huge::Reserve {
            size,
            pages,
            node,
            mount,
            no_mount,
            persist,
            dry_run,
        }) => {
            let mount = (!no_mount).then_some(mount);
            let req = huge_request(roots, &size, pages, node.as_deref(), mount, persist)?;
            reserve(roots, &req, dry_run)?;
        }
        Cmd::Hugepages(Huge::Release {
            size,
            pages,
            node,
            persist,
            dry_run,
        }) => {
            let req = huge_request(roots, &size, pages, node.as_deref(), None, persist)?;
            reserve(roots, &req, dry_run)?;
        }
        Cmd::Nic(Nics::List) => print!("{}", nic::show(roots)?),
        Cmd::Nic(Nics::Bind {
            dev,
            driver,
            force,
            persist,
            dry_run,
        }) => {
            let plan = nic::bind_plan(
                roots,
                &nic::BindRequest {
                    dev,
                    driver,
                    force,
                    persist,
                },
            )?;
            apply(roots, &plan, dry_run)?;
        }
        Cmd::Nic(Nics::Unbind {
            dev,
            driver,
            persist,
            dry_run,
        }) => {
            let plan = nic::unbind_plan(roots, &dev, driver.as_deref(), persist)?;
            apply(roots, &plan, dry_run)?;
        }
        Cmd::Cpus { workers, node } => {
            let c = cpus::read(roots);
            let node = node.or_else(|| {
                nic::list(roots)
                    .iter()
                    .find(|n| n.dpdk_ready())
                    .and_then(|n| n.numa)
            });
            print!("{}", cpus::show(&c, node, workers));
        }
        Cmd::Doctor { workers } => {
            let (text, failed) = doctor::report(&doctor::checks(roots, workers));
            print!("{text}");
            return Ok(!failed);
        }
    }
    Ok(true)
}

fn huge_request(
    roots: &Roots,
    size: &str,
    pages: u64,
    node: Option<&str>,
    mount: Option<PathBuf>,
    persist: bool,
) -> Result<hugepages::Request, String> {
    Ok(hugepages::Request {
        size: hugepages::PageSize::parse(size)?,
        pages,
        nodes: parse_nodes(roots, node)?,
        mount,
        persist,
    })
}

/// Applies a reservation (or release) and shows the result.
fn reserve(roots: &Roots, req: &hugepages::Request, dry_run: bool) -> Result<(), String> {
    let plan = hugepages::reserve_plan(roots, req)?;
    apply(roots, &plan, dry_run)?;
    if !dry_run {
        hugepages::verify(roots, req)?;
        print!("{}", hugepages::show(roots));
    }
    Ok(())
}

/// `--node`: none (system-wide), `all`, or a list.
fn parse_nodes(roots: &Roots, node: Option<&str>) -> Result<Vec<u32>, String> {
    match node {
        None => Ok(Vec::new()),
        Some("all") => {
            let n = hugepages::nodes(roots);
            if n.is_empty() {
                Err("--node all: this machine has no NUMA nodes in sysfs".into())
            } else {
                Ok(n)
            }
        }
        Some(list) => host::roots::parse_cpu_list(list).map_err(|e| format!("--node {list}: {e}")),
    }
}

/// Prints or applies `plan`; changing the real machine needs root.
fn apply(roots: &Roots, plan: &[Action], dry_run: bool) -> Result<(), String> {
    if !dry_run && roots.run_commands && !plan.is_empty() && !is_root() {
        return Err("changing the host needs root (or preview with --dry-run)".into());
    }
    execute(plan, dry_run, roots.run_commands)
}
