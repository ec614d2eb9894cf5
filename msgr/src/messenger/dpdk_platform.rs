//! The DPDK backend of the `dpdk` transport: EAL, one port, one queue pair and one stack
//! per worker, workers on lcores (the first on the main lcore: the transport's thread).
//!
//! Everything DPDK hands out borrows from the EAL guard (ports, pools, queues), so it all
//! lives in this function's frame: brought up in order, torn down in reverse when the
//! workers return (port stopped and closed, pools freed, `rte_eal_cleanup`).

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use stack::dpdk::{worker_lcores, Eal, EthPort, PortConfig};
use stack::dpdkport::stack_pool_mtu;
use stack::l2::Neighbors;
use stack::netstack::Forwarding;
use stack::rss::Steering;
use stack::worker::{Clock, TscClock};
use stack::{DpdkPort, NetStack};
use tracing::{info, warn};

use super::{stack_config, Body, DpdkConfig, Net};

/// Descriptors per RX and TX queue.
const DESCS: u16 = 1024;
/// Per-lcore mempool cache.
const POOL_CACHE: u32 = 256;
/// Frames a worker's forwarding queue holds (devices without RSS).
const FORWARD_DEPTH: usize = 4096;
/// How long start-up waits for the port's link before going on without it (a vhost-user
/// port is down until its peer process attaches; a NIC until its cable is in).
const LINK_WAIT: Duration = Duration::from_secs(3);

pub(super) fn run(
    net: &Net,
    d: &DpdkConfig,
    bodies: Vec<Body>,
    ready: &mpsc::Sender<Result<(), String>>,
) {
    let mut args = vec!["msgr".to_string()];
    args.extend(d.eal_args.iter().cloned());
    let eal = match Eal::init(&args) {
        Ok(e) => e,
        Err(e) => {
            let _ = ready.send(Err(format!(
                "EAL did not start: {e} (arguments: {})",
                d.eal_args.join(" ")
            )));
            return;
        }
    };
    if let Err(e) = serve(&eal, net, d, bodies, ready) {
        let _ = ready.send(Err(e));
    }
    if let Err(e) = eal.cleanup() {
        warn!(error = %e, "rte_eal_cleanup failed");
    }
}

fn serve(
    eal: &Eal,
    net: &Net,
    d: &DpdkConfig,
    bodies: Vec<Body>,
    ready: &mpsc::Sender<Result<(), String>>,
) -> Result<(), String> {
    let n = u16::try_from(bodies.len()).map_err(|_| "too many workers".to_string())?;
    let lcores = worker_lcores();
    if lcores.len() + 1 < bodies.len() {
        return Err(format!(
            "{n} workers need {n} lcores; EAL has {} (give -l/--lcores)",
            lcores.len() + 1
        ));
    }
    // Before the port: the port borrows them for as long as it lives.
    let pools = (0..n)
        .map(|q| {
            stack_pool_mtu(
                eal,
                &format!("msgr_q{q}"),
                u32::from(DESCS),
                u32::from(DESCS),
                POOL_CACHE,
                d.mtu.unwrap_or(1500),
            )
            .map_err(|e| format!("mempool for queue {q}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let port = EthPort::open(eal, d.port).map_err(|e| {
        format!(
            "DPDK port {}: {e} ({} ports probed: give --vdev or -a)",
            d.port,
            eal.port_count()
        )
    })?;
    let info = port.dev_info().clone();
    if info.max_rx_queues < n || info.max_tx_queues < n {
        return Err(format!(
            "{} has {} RX / {} TX queues; {n} workers need {n} of each",
            info.driver, info.max_rx_queues, info.max_tx_queues
        ));
    }
    if let Some(mtu) = d.mtu {
        if mtu < info.min_mtu || mtu > info.max_mtu {
            return Err(format!(
                "{}: MTU {mtu} is outside what the device takes ({} to {})",
                info.driver, info.min_mtu, info.max_mtu
            ));
        }
    }
    let mut pc = PortConfig::new(n, n);
    pc.mtu = d.mtu;
    let mut port = port
        .configure(&pc)
        .map_err(|e| format!("{}: configure: {e}", info.driver))?;
    for (q, pool) in (0..n).zip(&pools) {
        port.rx_queue_setup(q, DESCS, pool)
            .map_err(|e| format!("rx queue {q}: {e}"))?;
        port.tx_queue_setup(q, DESCS)
            .map_err(|e| format!("tx queue {q}: {e}"))?;
    }
    let port = port
        .start()
        .map_err(|e| format!("{}: start: {e}", info.driver))?;
    #[allow(clippy::disallowed_methods)] // a driver: bounds its wait by the clock
    let t0 = std::time::Instant::now();
    while !port.link().map(|l| l.up).unwrap_or(false) {
        if t0.elapsed() > LINK_WAIT {
            warn!(
                driver = %info.driver,
                port = d.port,
                "link still down after {LINK_WAIT:?}; serving anyway (frames flow once it is up)"
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mac = match port.mac_addr() {
        Ok(m) if m != [0; 6] && m[0] & 1 == 0 => m,
        _ => net.mac,
    };
    // With hardware RSS each flow lands on the queue the key and RETA say, and outbound
    // connections pick ports by that model; without it, ownership follows our own model
    // and frames of flows that land elsewhere are handed over in software.
    // Only RSS the device confirms (our key, TCP/IPv4 hashing) is trusted: net_tap, for one,
    // offers RSS but applies it with eBPF through rte_flow, and where that is missing the
    // kernel picks each flow's queue by its own hash.
    let hw_rss = port.config().rss && port.rss_confirmed();
    if port.config().rss && !hw_rss {
        warn!(
            driver = %info.driver,
            conf = ?port.rss_conf(),
            "the device does not confirm our RSS key: frames of flows that land on another \
             worker's queue are handed over in software"
        );
    }
    let steering = if hw_rss || n == 1 {
        port.steering(None)
    } else {
        Steering::round_robin(n, 128)
    };
    let mut fwd = if hw_rss || n == 1 {
        Vec::new()
    } else {
        Forwarding::group(usize::from(n), FORWARD_DEPTH)
    }
    .into_iter();
    let clock = TscClock::new(eal.tsc_hz());
    let neighbors = Neighbors::new();
    let mut stacks = Vec::with_capacity(bodies.len());
    for (q, pool) in (0..n).zip(&pools) {
        let dp = DpdkPort::new(&port, q, pool).map_err(|e| format!("queue pair {q}: {e}"))?;
        let mut sc = stack_config(net, mac, q);
        sc.steering = steering.clone();
        let mut st = NetStack::new(sc, dp, Arc::clone(&neighbors), clock.now());
        if let Some(f) = fwd.next() {
            st.set_forwarding(f);
        }
        stacks.push(st);
    }
    info!(
        driver = %info.driver,
        port = d.port,
        queues = n,
        rss = hw_rss,
        mac = %stack::smoltcp::wire::EthernetAddress(mac),
        ip = %net.ip,
        offloads = ?port.config().tx_checksum(),
        "dpdk transport up"
    );
    let _ = ready.send(Ok(()));

    let idle = net.idle;
    let stop_all = bodies.first().map(Body::stopper);
    let mut bodies = bodies.into_iter();
    let mut stacks = stacks.into_iter();
    let main_body = bodies.next();
    let main_stack = stacks.next();
    let launched = eal.scope(|scope| {
        let mut launched = Vec::new();
        for ((b, st), lcore) in bodies.zip(stacks).zip(lcores.iter().copied()) {
            let stop = b.stopper();
            match scope.launch(lcore, move || {
                let _stop = stop;
                b.run(st, clock, idle);
                0
            }) {
                Ok(h) => launched.push(h),
                Err(e) => warn!(lcore, error = %e, "worker launch failed"),
            }
        }
        if let (Some(b), Some(st)) = (main_body, main_stack) {
            b.run(st, clock, idle);
        }
        drop(stop_all);
        launched
            .into_iter()
            .map(|h| h.join())
            .filter(|r| r.is_err())
            .count()
    });
    if launched > 0 {
        warn!(panicked = launched, "workers panicked");
    }
    let port = port.stop().map_err(|e| format!("stop: {e}"))?;
    drop(port);
    Ok(())
}
