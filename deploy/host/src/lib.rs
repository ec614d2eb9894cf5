//! Host preparation for the DPDK messenger: what `msgr-host` does, as a library.
//!
//! Everything reads the machine through [`Roots`] (sysfs, procfs, /etc, a state directory,
//! and where interface addresses and routes come from), so tests run the same code on a
//! fake tree they build. Changes are computed first as a list of [`plan::Action`]s: a dry
//! run prints them, a real run applies them in order and stops at the first failure.
//!
//! - [`hugepages`]: reserve, release and show hugepages per size and NUMA node, mount
//!   hugetlbfs, persist the reservation (Debian's /etc/dpdk/dpdk.conf, or sysctl).
//! - [`nic`]: list network devices with their driver, interfaces, NUMA node, link, addresses
//!   and routes; bind to vfio-pci and back to the driver recorded at bind time, refusing to
//!   take a device the host is using.
//! - [`cpus`]: isolation (isolcpus, nohz_full, rcu_nocbs) and suggested lcore lists.
//! - [`doctor`]: all of it as a pass/fail list with the fix for each failure.

pub mod cpus;
pub mod doctor;
pub mod hugepages;
pub mod nic;
pub mod plan;
pub mod roots;

pub use roots::{is_root, Roots};
