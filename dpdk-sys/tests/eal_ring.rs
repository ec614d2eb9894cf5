//! End to end through the bindings: EAL without hugepages or PCI, one `net_ring0` vdev (its TX
//! ring is its own RX ring), mbufs written, sent, received back and compared byte for byte; plus
//! the `static inline` wrappers (mbuf editing, refcounts, rings, TSC, `rte_errno`, software RSS)
//! and the re-exported flag constants.
//!
//! EAL initialises once per process and every test file is its own process, so this file holds
//! exactly one `#[test]`. If EAL cannot start here, the test prints `SKIPPED eal_ring: <reason>`
//! and passes, unless `MSGR_REQUIRE_INTEROP=1` (set by deploy/test.sh once the Debian packages
//! are installed), where that is a failure. EAL never probes PCI devices (`--no-pci`).

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::PathBuf;
use std::{env, fs, ptr, slice};

use dpdk_sys as sys;

/// Packets sent through the loop in one burst.
const BURST: usize = 8;
/// Ethernet header (14) plus a recognisable payload; the frames never leave the process.
const FRAME_LEN: u16 = 64;
const POOL_SIZE: u32 = 511;
const POOL_CACHE: u32 = 32;
const RING_DESCS: u16 = 128;

#[test]
fn eal_ring() {
    // Needs no EAL: bindgen's constants and a pure static-inline function.
    check_constants();
    check_softrss();

    let prefix = format!("dpdk-sys-test-{}", std::process::id());
    // Declared before the EAL guard, so dropped after rte_eal_cleanup (also on panic).
    let _runtime_dir = RuntimeDir {
        prefix: prefix.clone(),
    };
    let args = eal_args(&prefix);
    if let Err(reason) = eal_init(&args) {
        let required = env::var("MSGR_REQUIRE_INTEROP").is_ok_and(|v| v == "1");
        assert!(!required, "eal_ring: {reason} (MSGR_REQUIRE_INTEROP=1)");
        println!("SKIPPED eal_ring: {reason}");
        return;
    }
    let _eal = Eal;

    check_eal_state();
    check_errno();
    let pool = create_pool();
    check_mbuf_editing(pool);
    check_port_loopback(pool);
    check_ring_and_ring_port();
    // SAFETY: every mbuf went back to the pool (checked above) and no port uses it any more.
    unsafe { sys::rte_mempool_free(pool) };
}

/// Re-exported `RTE_BIT64()` flags are `u64` and carry DPDK 22.11's bit positions.
fn check_constants() {
    let flags: [(u64, u64); 10] = [
        (sys::RTE_ETH_RSS_NONFRAG_IPV4_TCP, 1 << 4),
        (sys::RTE_ETH_RSS_NONFRAG_IPV6_TCP, 1 << 10),
        (sys::RTE_ETH_RSS_L3_SRC_ONLY, 1 << 63),
        (sys::RTE_ETH_RX_OFFLOAD_TCP_CKSUM, 1 << 3),
        (sys::RTE_ETH_RX_OFFLOAD_RSS_HASH, 1 << 19),
        (sys::RTE_ETH_TX_OFFLOAD_TCP_CKSUM, 1 << 3),
        (sys::RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE, 1 << 16),
        (sys::RTE_MBUF_F_RX_VLAN, 1),
        (sys::RTE_MBUF_F_TX_TCP_CKSUM, 1 << 52),
        (sys::RTE_MBUF_F_TX_IPV4, 1 << 55),
    ];
    for (i, (got, want)) in flags.iter().enumerate() {
        assert_eq!(got, want, "flag #{i}");
    }
    // Composite masks, built from other RTE_BIT64() macros.
    let ip = sys::RTE_ETH_RSS_IPV4 | sys::RTE_ETH_RSS_IPV6;
    assert_eq!(sys::RTE_ETH_RSS_IP & ip, ip);
    assert_ne!(sys::RTE_ETH_RSS_TCP, 0);
    assert_ne!(sys::RTE_ETH_RX_OFFLOAD_CHECKSUM, 0);
    assert_eq!(sys::RTE_MBUF_F_TX_L4_MASK, 3 << 52);
    // Plain macros that bindgen evaluates itself.
    assert_eq!(sys::RTE_PKTMBUF_HEADROOM, 128);
    assert_eq!(sys::RTE_ETHER_ADDR_LEN, 6);
    assert_eq!(size_of::<sys::rte_mbuf>(), 128);
    assert_eq!(size_of::<sys::rte_ether_hdr>(), 14);
    assert_eq!(size_of::<sys::rte_ipv4_hdr>(), 20);
    assert_eq!(size_of::<sys::rte_tcp_hdr>(), 20);
    assert_eq!(size_of::<sys::rte_arp_hdr>(), 28);
}

/// `rte_softrss` against the published Toeplitz verification vector (IPv4/TCP, default key):
/// 66.9.149.187:2794 -> 161.142.100.80:1766 hashes to 0x51ccc178.
fn check_softrss() {
    const KEY: [u8; 40] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f,
        0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
        0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ];
    // The rte_ipv4_tuple layout in host order: source, destination, (sport << 16 | dport).
    let mut tuple: [u32; 3] = [
        u32::from_be_bytes([66, 9, 149, 187]),
        u32::from_be_bytes([161, 142, 100, 80]),
        (2794 << 16) | 1766,
    ];
    // SAFETY: `tuple` holds the 3 words passed as its length; KEY is the 40-byte key it reads.
    let hash = unsafe { sys::rte_softrss(tuple.as_mut_ptr(), 3, KEY.as_ptr()) };
    assert_eq!(hash, 0x51cc_c178);
}

/// EAL arguments: no hugepages, no PCI, no telemetry, one lcore, our own runtime-file prefix.
fn eal_args(prefix: &str) -> Vec<CString> {
    let lcores = format!("0@{}", first_allowed_cpu());
    [
        "dpdk-sys-test",
        "--no-huge",
        "-m",
        "256",
        "--no-pci",
        "--no-telemetry",
        "--file-prefix",
        prefix,
        "--vdev=net_ring0",
        "--lcores",
        &lcores,
        "--log-level",
        "warning",
    ]
    .into_iter()
    .map(|a| CString::new(a).expect("no NUL in EAL arguments"))
    .collect()
}

/// The first CPU this process may run on (lcore 0 is pinned there); 0 if unknown.
fn first_allowed_cpu() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .and_then(|list| {
            let first = list.trim().split([',', '-']).next()?;
            first.parse().ok()
        })
        .unwrap_or(0)
}

/// Keeps `args` alive: EAL may hold on to argv strings until cleanup.
fn eal_init(args: &[CString]) -> Result<(), String> {
    let mut argv: Vec<*mut c_char> = args.iter().map(|a| a.as_ptr().cast_mut()).collect();
    let argc = c_int::try_from(argv.len()).expect("few arguments");
    // SAFETY: argv holds argc valid NUL-terminated strings that outlive EAL (the caller keeps
    // `args` until the end of the test); EAL only permutes the pointer array, which we own.
    let rc = unsafe { sys::rte_eal_init(argc, argv.as_mut_ptr()) };
    if rc < 0 {
        // SAFETY: reading rte_errno on the thread that called rte_eal_init.
        let errno = unsafe { sys::dpdk_sys_errno() };
        return Err(format!(
            "rte_eal_init failed: {} (rte_errno {errno})",
            strerror(errno)
        ));
    }
    Ok(())
}

/// After init: this thread is lcore 0, the TSC is calibrated, net_ring0 is port 0.
fn check_eal_state() {
    // SAFETY: plain getters, valid once EAL is initialised.
    let (lcore, hz, tsc1, tsc2, ports, version) = unsafe {
        (
            sys::rte_lcore_id(),
            sys::rte_get_tsc_hz(),
            sys::rte_rdtsc(),
            sys::rte_rdtsc(),
            sys::rte_eth_dev_count_avail(),
            CStr::from_ptr(sys::rte_version()),
        )
    };
    assert_eq!(
        lcore, 0,
        "the thread that ran rte_eal_init is the main lcore"
    );
    assert!(hz > 0, "rte_get_tsc_hz after init");
    assert!(tsc2 >= tsc1, "rte_rdtsc is monotonic here");
    assert_eq!(ports, 1, "only net_ring0 (no PCI)");
    let version = version.to_string_lossy();
    assert!(version.starts_with("DPDK 22.11"), "{version}");
}

/// `rte_errno` (a per-lcore variable) through the C accessors.
fn check_errno() {
    // SAFETY: rte_errno accessors for this thread; the lookup takes a NUL-terminated name.
    unsafe {
        sys::dpdk_sys_set_errno(0);
        assert_eq!(sys::dpdk_sys_errno(), 0);
        let pool = sys::rte_mempool_lookup(c"dpdk_sys_no_such_pool".as_ptr());
        assert!(pool.is_null());
        assert_eq!(sys::dpdk_sys_errno(), 2, "ENOENT from rte_mempool_lookup");
    }
}

fn create_pool() -> *mut sys::rte_mempool {
    let data_room = u16::try_from(sys::RTE_MBUF_DEFAULT_BUF_SIZE).expect("2176 fits");
    // SAFETY: NUL-terminated name; sizes are within DPDK's limits; EAL is initialised.
    let pool = unsafe {
        sys::rte_pktmbuf_pool_create(
            c"dpdk_sys_test".as_ptr(),
            POOL_SIZE,
            POOL_CACHE,
            0,
            data_room,
            c_int::try_from(sys::rte_socket_id()).expect("socket id"),
        )
    };
    assert!(!pool.is_null(), "rte_pktmbuf_pool_create: {}", last_error());
    // SAFETY: a valid pool.
    assert_eq!(unsafe { sys::rte_mempool_avail_count(pool) }, POOL_SIZE);
    pool
}

/// append / prepend / adj / trim / mtod / refcounts on one mbuf.
fn check_mbuf_editing(pool: *mut sys::rte_mempool) {
    // SAFETY: `m` is a freshly allocated mbuf that only this function uses, and every pointer
    // returned by the editing calls is checked against the mbuf's length before use.
    unsafe {
        let m = sys::rte_pktmbuf_alloc(pool);
        assert!(!m.is_null(), "rte_pktmbuf_alloc");
        assert_eq!((*m).data_off, sys::RTE_PKTMBUF_HEADROOM as u16);
        assert_eq!(
            sys::rte_pktmbuf_headroom(m),
            sys::RTE_PKTMBUF_HEADROOM as u16
        );

        let tail = sys::rte_pktmbuf_append(m, 100);
        assert!(!tail.is_null());
        assert_eq!(tail.cast::<c_void>(), sys::dpdk_sys_pktmbuf_mtod(m));
        assert_eq!(((*m).data_len, (*m).pkt_len), (100, 100));

        let head = sys::rte_pktmbuf_prepend(m, 14);
        assert_eq!(head.cast::<c_void>(), sys::dpdk_sys_pktmbuf_mtod(m));
        assert_eq!(head.add(14), tail);
        assert_eq!(
            sys::dpdk_sys_pktmbuf_mtod_offset(m, 14),
            tail.cast::<c_void>()
        );
        assert_eq!((*m).pkt_len, 114);

        assert_eq!(sys::rte_pktmbuf_adj(m, 14), tail);
        assert_eq!(sys::rte_pktmbuf_trim(m, 36), 0);
        assert_eq!(((*m).data_len, (*m).pkt_len), (64, 64));
        assert!(sys::rte_pktmbuf_trim(m, 65) < 0, "trim past the data fails");

        assert_eq!(sys::rte_mbuf_refcnt_read(m), 1);
        assert_eq!(sys::rte_mbuf_refcnt_update(m, 1), 2);
        sys::rte_pktmbuf_free(m); // drops one reference: still ours
        assert_eq!(sys::rte_mbuf_refcnt_read(m), 1);
        sys::rte_pktmbuf_free(m); // back to the pool
        assert_eq!(sys::rte_mempool_avail_count(pool), POOL_SIZE);
    }
}

/// Port 0 (net_ring0, a self-loop): configure, start, send BURST frames, receive them back.
fn check_port_loopback(pool: *mut sys::rte_mempool) {
    const PORT: u16 = 0;
    // SAFETY: port 0 exists (checked in check_eal_state); every mbuf pointer comes from the
    // pool or from rx_burst and is used only while we own it; arrays outlive the burst calls.
    unsafe {
        let mut info = sys::rte_eth_dev_info::default();
        check(
            sys::rte_eth_dev_info_get(PORT, &mut info),
            "rte_eth_dev_info_get",
        );
        let driver = CStr::from_ptr(info.driver_name).to_string_lossy();
        assert_eq!(driver, "net_ring");
        assert!(info.max_rx_queues >= 1 && info.max_tx_queues >= 1);

        let socket = sys::rte_socket_id();
        let conf = sys::rte_eth_conf::default();
        check(
            sys::rte_eth_dev_configure(PORT, 1, 1, &conf),
            "rte_eth_dev_configure",
        );
        let rc = sys::rte_eth_rx_queue_setup(PORT, 0, RING_DESCS, socket, ptr::null(), pool);
        check(rc, "rte_eth_rx_queue_setup");
        let rc = sys::rte_eth_tx_queue_setup(PORT, 0, RING_DESCS, socket, ptr::null());
        check(rc, "rte_eth_tx_queue_setup");
        check(sys::rte_eth_dev_start(PORT), "rte_eth_dev_start");

        let mut tx = [ptr::null_mut::<sys::rte_mbuf>(); BURST];
        let rc = sys::rte_pktmbuf_alloc_bulk(pool, tx.as_mut_ptr(), BURST as u32);
        check(rc, "rte_pktmbuf_alloc_bulk");
        for (i, &m) in tx.iter().enumerate() {
            let data = sys::rte_pktmbuf_append(m, FRAME_LEN);
            assert!(!data.is_null(), "rte_pktmbuf_append");
            let data = slice::from_raw_parts_mut(data.cast::<u8>(), usize::from(FRAME_LEN));
            data.copy_from_slice(&frame(i));
        }
        let sent = sys::rte_eth_tx_burst(PORT, 0, tx.as_mut_ptr(), BURST as u16);
        assert_eq!(usize::from(sent), BURST, "net_ring0 takes the whole burst");

        let mut rx = [ptr::null_mut::<sys::rte_mbuf>(); 32];
        let mut got = 0;
        for _ in 0..1000 {
            let rest = rx.len() - got;
            got += usize::from(sys::rte_eth_rx_burst(
                PORT,
                0,
                rx[got..].as_mut_ptr(),
                rest as u16,
            ));
            if got >= BURST {
                break;
            }
        }
        assert_eq!(got, BURST, "every frame comes back, and nothing else");
        for (i, &m) in rx[..got].iter().enumerate() {
            assert_eq!((*m).data_len, FRAME_LEN);
            assert_eq!((*m).pkt_len, u32::from(FRAME_LEN));
            assert_eq!((*m).nb_segs, 1);
            let data = sys::dpdk_sys_pktmbuf_mtod(m).cast::<u8>();
            let data = slice::from_raw_parts(data, usize::from(FRAME_LEN));
            assert_eq!(data, frame(i), "frame {i} comes back intact and in order");
        }

        let mut stats = sys::rte_eth_stats::default();
        check(
            sys::rte_eth_stats_get(PORT, &mut stats),
            "rte_eth_stats_get",
        );
        assert_eq!(
            (stats.opackets, stats.ipackets),
            (BURST as u64, BURST as u64)
        );

        sys::rte_pktmbuf_free_bulk(rx.as_mut_ptr(), got as u32);
        assert_eq!(
            sys::rte_mempool_avail_count(pool),
            POOL_SIZE,
            "no mbuf leaked"
        );

        check(sys::rte_eth_dev_stop(PORT), "rte_eth_dev_stop");
        check(sys::rte_eth_dev_close(PORT), "rte_eth_dev_close");
    }
}

/// An Ethernet frame (locally administered MACs, the local-experimental EtherType) whose
/// payload names its index.
fn frame(i: usize) -> [u8; FRAME_LEN as usize] {
    let mut f = [0u8; FRAME_LEN as usize];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    let text = format!("dpdk-sys eal_ring frame {i}");
    f[14..14 + text.len()].copy_from_slice(text.as_bytes());
    for (j, b) in f[14 + text.len()..].iter_mut().enumerate() {
        *b = (i * 16 + j) as u8;
    }
    f
}

/// rte_ring through the static-inline enqueue/dequeue, then as a port via rte_eth_from_rings
/// (in the ring PMD, which build.rs links explicitly).
fn check_ring_and_ring_port() {
    // SAFETY: the ring is created, used and freed here; the token is only compared, never
    // dereferenced; the port made from the ring is closed before the ring is freed.
    unsafe {
        let flags = sys::RING_F_SP_ENQ | sys::RING_F_SC_DEQ;
        let socket = c_int::try_from(sys::rte_socket_id()).expect("socket id");
        let ring = sys::rte_ring_create(c"dpdk_sys_test_ring".as_ptr(), 64, socket, flags);
        assert!(!ring.is_null(), "rte_ring_create: {}", last_error());

        let token = 0x5eed_usize as *mut c_void;
        assert_eq!(sys::rte_ring_enqueue(ring, token), 0);
        assert_eq!(sys::rte_ring_count(ring), 1);
        let mut out = ptr::null_mut();
        assert_eq!(sys::rte_ring_dequeue(ring, &mut out), 0);
        assert_eq!(out, token);
        assert!(sys::rte_ring_dequeue(ring, &mut out) < 0, "empty ring");

        let port = sys::rte_eth_from_rings(
            c"dpdk_sys_ring_port".as_ptr(),
            &ring,
            1,
            &ring,
            1,
            sys::rte_socket_id(),
        );
        assert!(port >= 0, "rte_eth_from_rings: {}", last_error());
        let port = u16::try_from(port).expect("port id");
        assert!(sys::rte_eth_dev_is_valid_port(port) != 0);
        check(sys::rte_eth_dev_close(port), "rte_eth_dev_close(ring port)");
        sys::rte_ring_free(ring);
    }
}

/// Panics with DPDK's message for a negative errno return.
fn check(rc: c_int, what: &str) {
    assert!(rc >= 0, "{what}: {}", strerror(-rc));
}

fn last_error() -> String {
    // SAFETY: reads this thread's rte_errno.
    strerror(unsafe { sys::dpdk_sys_errno() })
}

fn strerror(errno: c_int) -> String {
    // SAFETY: rte_strerror returns a pointer to a NUL-terminated static or per-lcore string.
    unsafe { CStr::from_ptr(sys::rte_strerror(errno)) }
        .to_string_lossy()
        .into_owned()
}

/// Runs rte_eal_cleanup when the test ends, passing or failing.
struct Eal;

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: EAL was initialised by this thread and nothing uses DPDK after this point.
        let rc = unsafe { sys::rte_eal_cleanup() };
        if rc != 0 && !std::thread::panicking() {
            panic!("rte_eal_cleanup: {}", strerror(-rc));
        }
    }
}

/// Removes EAL's runtime directory for our `--file-prefix` (root: /var/run/dpdk/<prefix>,
/// otherwise under $XDG_RUNTIME_DIR or /tmp), also when the test fails.
struct RuntimeDir {
    prefix: String,
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        let mut bases = vec![PathBuf::from("/var/run/dpdk"), PathBuf::from("/tmp/dpdk")];
        if let Some(xdg) = env::var_os("XDG_RUNTIME_DIR") {
            bases.push(PathBuf::from(xdg).join("dpdk"));
        }
        for base in bases {
            // Only our own prefix (unique per process): other EAL processes may share the base.
            let _ = fs::remove_dir_all(base.join(&self.prefix));
        }
    }
}
