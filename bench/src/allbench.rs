//! `bench all`: every path on the same machine in one command, one report.
//!
//! 1. The OSD workload (`osdbench`): msgr over dpdk, posix and simple, object sizes x ops in
//!    flight, real `msgr serve` and `msgr load` processes.
//! 2. The kernel TCP floor on loopback (`floor`): sockperf ping-pong and throughput, iperf3.
//! 3. The raw-link ceiling on the dpdk path's link (vhost-user): testpmd, and the bare
//!    userspace stack without the messenger.
//!
//! The report opens with the claims the project makes, each as measured here against its
//! target: dpdk against posix (latency, small-message rate, large-message throughput), the
//! dpdk messenger against the link's ceiling and posix against the kernel floor. `--quick`
//! (what the README's main job runs) takes about a minute; the full run about half an hour.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use msgr::messenger::TransportKind;
use stack::IdlePolicy;

use crate::dpdklink::{markdown, Cpus, Row};
use crate::osdbench::{self, median, Key, Phase, Point, Points};

/// What `bench all` runs.
pub(crate) struct Plan {
    /// About a minute: fewer sizes and in-flight counts, one round, short runs.
    pub(crate) quick: bool,
    /// Rounds of the OSD sweep (default: 1 quick, 3 full).
    pub(crate) rounds: Option<u32>,
    /// Multiplies the OSD sweep's op counts (default: 0.05 quick, 1 full).
    pub(crate) scale: Option<f64>,
    pub(crate) out: Option<PathBuf>,
    pub(crate) sides: crate::Sides,
}

/// Seconds per baseline measurement.
fn baseline_seconds(quick: bool) -> u64 {
    if quick {
        2
    } else {
        5
    }
}

/// Client sessions of the sessions sweep (0 B writes, 1 in flight on each).
fn sessions(quick: bool) -> Vec<u32> {
    if quick {
        vec![10, 100]
    } else {
        vec![10, 100, 1000]
    }
}

/// The OSD sweep `bench all` runs: sizes x ops in flight on one session.
fn osd_plan(plan: &Plan) -> osdbench::Plan {
    let (sizes, depths, scale) = if plan.quick {
        (vec![0, 4096, 4 << 20], vec![1, 16], 0.05)
    } else {
        (vec![0, 64, 4096, 64 << 10, 4 << 20], vec![1, 16, 128], 1.0)
    };
    osdbench::Plan {
        paths: vec![
            TransportKind::Dpdk,
            TransportKind::Posix,
            TransportKind::Simple,
        ],
        sizes,
        depths,
        conns: vec![1],
        rounds: plan.rounds.unwrap_or(if plan.quick { 1 } else { 3 }),
        scale: plan.scale.unwrap_or(scale),
        out: None,
        sides: plan.sides.clone(),
    }
}

pub(crate) fn run(plan: Plan) -> Result<(), String> {
    let started = Instant::now();
    let place = osdbench::Placement::from_args(&plan.sides, &crate::dpdklink::allowed_cpus())?;
    // The baselines run one thread per side, on each side's first CPU.
    let cpus = Cpus {
        a: place.server[0],
        b: place.client[0],
    };
    // Before anything runs: EAL (the bare stack's run, in this process) pins the thread.
    let machine = machine(&place);
    let secs = baseline_seconds(plan.quick);
    eprintln!("bench all: [1/3] the OSD workload over dpdk, posix and simple");
    let mut sweep = osdbench::measure(&osd_plan(&plan))?;
    eprintln!("bench all: [1/3] ... and many client sessions, one op in flight on each");
    let many = osdbench::Plan {
        sizes: vec![0],
        depths: vec![1],
        conns: sessions(plan.quick),
        ..osd_plan(&plan)
    };
    sweep.merge(osdbench::measure(&many)?);
    eprintln!("bench all: [2/3] the kernel TCP floor (sockperf, iperf3)");
    let floor = crate::floor::rows(secs, cpus);
    eprintln!("bench all: [3/3] the raw-link ceiling (testpmd, the bare stack) over vhost-user");
    let ceiling = ceiling_rows(secs, cpus);
    let mut report = String::new();
    let _ = writeln!(
        report,
        "# bench all{}\n\n{}\n",
        if plan.quick { " --quick" } else { "" },
        machine
    );
    let _ = writeln!(
        report,
        "## Claims\n\n{}",
        claims(&sweep.points, &Baselines::from_rows(&floor, &ceiling))
    );
    let _ = writeln!(
        report,
        "## OSD workload (msgr serve + msgr load)\n\n{}",
        sweep.report()
    );
    let _ = writeln!(
        report,
        "## Kernel TCP floor (loopback)\n\n{}",
        markdown(&floor)
    );
    let _ = writeln!(
        report,
        "## Raw-link ceiling (the dpdk path's vhost-user link)\n\n{}",
        markdown(&ceiling)
    );
    let _ = writeln!(report, "(took {:.0} s)", started.elapsed().as_secs_f64());
    out!("{report}");
    let mut why: Vec<String> = sweep.failure().into_iter().collect();
    for r in floor.iter().chain(&ceiling) {
        if let Some(e) = &r.skipped {
            why.push(format!("{}: {e}", r.path));
        }
    }
    if let Some(dir) = &plan.out {
        let written = osdbench::write_out(dir, &sweep).and_then(|()| {
            let f = dir.join("report.md");
            std::fs::write(&f, &report)
                .map_err(|e| format!("cannot write {}: {e}", f.display()))?;
            let f = dir.join("baselines.csv");
            std::fs::write(&f, baselines_csv(&floor, &ceiling))
                .map_err(|e| format!("cannot write {}: {e}", f.display()))?;
            eprintln!(
                "bench all: report.md and baselines.csv in {}",
                dir.display()
            );
            Ok(())
        });
        if let Err(e) = written {
            why.push(e);
        }
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(format!("what failed: {}", why.join("; ")))
    }
}

fn machine(place: &osdbench::Placement) -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!(
        "Machine: {} ({} CPUs online, {} allowed); {}; the baselines (sockperf, iperf3, \
         testpmd, the bare stack) run one thread per side on each side's first CPU.",
        model,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        crate::dpdklink::allowed_cpus().len(),
        place.describe()
    )
}

/// testpmd's rows and the bare stack's, on the vhost-user link.
fn ceiling_rows(secs: u64, cpus: Cpus) -> Vec<Row> {
    if !osdbench::is_root() {
        return vec![Row {
            link: "vhost".into(),
            path: "testpmd and the bare stack".into(),
            skipped: Some("needs root (DPDK's runtime directory)".into()),
            ..Row::default()
        }];
    }
    // At least 3 s: testpmd's first and last 1-s samples straddle start and stop.
    let mut rows = crate::testpmd::rows(secs.max(3), cpus);
    let idle = if cpus.shared() {
        IdlePolicy::Yield { spins: 0 }
    } else {
        IdlePolicy::BusyPoll
    };
    rows.push(crate::vhostbench::stack_row(secs as f64 / 2.0, idle, cpus, true).0);
    rows
}

/// The baseline figures the claims compare against.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Baselines {
    /// testpmd's 1-packet ping-pong: round trips/s.
    pub(crate) testpmd_rt_s: Option<f64>,
    /// testpmd's one-way 64 B frames/s.
    pub(crate) testpmd_pps_64: Option<f64>,
    /// sockperf's ping-pong RTT p50 and p99, us.
    pub(crate) sockperf_p50: Option<f64>,
    pub(crate) sockperf_p99: Option<f64>,
}

impl Baselines {
    fn from_rows(floor: &[Row], ceiling: &[Row]) -> Self {
        let find = |rows: &[Row], prefix: &str| {
            rows.iter()
                .find(|r| r.skipped.is_none() && r.path.starts_with(prefix))
                .cloned()
        };
        let pp = find(ceiling, "testpmd io");
        let tx = find(ceiling, "testpmd txonly 64 B");
        let sp = find(floor, "sockperf tcp ping-pong");
        Self {
            testpmd_rt_s: pp.and_then(|r| r.round_trips_s),
            testpmd_pps_64: tx.and_then(|r| r.frames_s),
            sockperf_p50: sp.as_ref().and_then(|r| r.p50_us),
            sockperf_p99: sp.and_then(|r| r.p99_us),
        }
    }
}

/// The medians of one row of the sweep.
fn med(points: &Points, size: u64, depth: u32, path: TransportKind) -> Option<Med> {
    med_on(points, Key::new(size, depth, Phase::Write, path))
}

/// The medians of one row of the sweep.
fn med_on(points: &Points, k: Key) -> Option<Med> {
    let pts = points.get(&k)?;
    let m = |f: &dyn Fn(&Point) -> f64| median(pts.iter().map(f).collect());
    Some(Med {
        ops_s: m(&|p| p.ops_per_sec)?,
        mb_s: m(&|p| p.mb_per_sec)?,
        p50: m(&|p| p.p50_us)?,
        p99: m(&|p| p.p99_us)?,
    })
}

#[derive(Debug, Clone, Copy)]
struct Med {
    ops_s: f64,
    mb_s: f64,
    p50: f64,
    p99: f64,
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

/// The claims, as lines of markdown: each figure, its ratio and whether the target is met.
/// Write phases; the smallest size at 1 in flight for latency, the smallest size at the most
/// in flight for rate, the largest size at the most in flight for throughput.
pub(crate) fn claims(points: &Points, base: &Baselines) -> String {
    let mut s = String::new();
    let one = || points.keys().filter(|k| k.conns == 1);
    let sizes: Vec<u64> = one().map(|k| k.size).collect();
    let depths: Vec<u32> = one().map(|k| k.depth).collect();
    let (Some(&small), Some(&large), Some(&deep)) =
        (sizes.iter().min(), sizes.iter().max(), depths.iter().max())
    else {
        return "- no OSD figures (see what failed below)\n".into();
    };
    let (d, p) = (TransportKind::Dpdk, TransportKind::Posix);
    let label = osdbench::size_label;
    match (med(points, small, 1, d), med(points, small, 1, p)) {
        (Some(a), Some(b)) => {
            let (r50, r99) = (a.p50 / b.p50, a.p99 / b.p99);
            let _ = writeln!(
                s,
                "- ping-pong latency ({}, 1 in flight): dpdk p50 {:.1} us / p99 {:.1} us, posix \
                 {:.1} / {:.1} us: {r50:.2}x / {r99:.2}x (target <= 0.5x: {})",
                label(small),
                a.p50,
                a.p99,
                b.p50,
                b.p99,
                verdict(r50 <= 0.5 && r99 <= 0.5)
            );
        }
        _ => s.push_str("- ping-pong latency: dpdk or posix missing\n"),
    }
    match (med(points, small, deep, d), med(points, small, deep, p)) {
        (Some(a), Some(b)) => {
            let r = a.ops_s / b.ops_s;
            let _ = writeln!(
                s,
                "- small-message rate ({}, {deep} in flight): dpdk {:.0} ops/s, posix {:.0}: \
                 {r:.2}x (target >= 2x: {})",
                label(small),
                a.ops_s,
                b.ops_s,
                verdict(r >= 2.0)
            );
        }
        _ => s.push_str("- small-message rate: dpdk or posix missing\n"),
    }
    match (med(points, large, deep, d), med(points, large, deep, p)) {
        (Some(a), Some(b)) if large > small => {
            let r = a.mb_s / b.mb_s;
            let _ = writeln!(
                s,
                "- large-message throughput ({}, {deep} in flight): dpdk {:.0} MB/s, posix \
                 {:.0}: {r:.2}x (target >= 1x: {})",
                label(large),
                a.mb_s,
                b.mb_s,
                verdict(r >= 1.0)
            );
        }
        _ => s.push_str("- large-message throughput: dpdk or posix missing\n"),
    }
    s.push_str(&sessions_claim(points));
    if let (Some(a), Some(rt)) = (med(points, small, 1, d), base.testpmd_rt_s) {
        let _ = writeln!(
            s,
            "- ceiling, latency: dpdk ping-pong {:.0} ops/s = {:.1}% of testpmd's {:.0} packet \
             round trips/s on the same link",
            a.ops_s,
            100.0 * a.ops_s / rt,
            rt
        );
    }
    if let (Some(a), Some(pps)) = (med(points, small, deep, d), base.testpmd_pps_64) {
        let msgs = 2.0 * a.ops_s;
        let _ = writeln!(
            s,
            "- ceiling, rate: one dpdk worker's {msgs:.0} messages/s (request + reply, {} in \
             flight) = {:.1}% of testpmd's {:.2} Mpps of 64 B frames",
            deep,
            100.0 * msgs / pps,
            pps / 1e6
        );
    }
    if let (Some(b), Some(sp50), Some(sp99)) = (
        med(points, small, 1, p),
        base.sockperf_p50,
        base.sockperf_p99,
    ) {
        let _ = writeln!(
            s,
            "- floor: posix ping-pong p50 {:.1} us / p99 {:.1} us against sockperf's {sp50:.1} / \
             {sp99:.1} us ({:.2}x / {:.2}x the bare kernel TCP round trip)",
            b.p50,
            b.p99,
            b.p50 / sp50,
            b.p99 / sp99
        );
    }
    s
}

/// How each path's latency grows with client sessions (the sessions sweep, if any): p50
/// and p99 at one session and at the most.
fn sessions_claim(points: &Points) -> String {
    let Some(most) = points.keys().map(|k| k.conns).max().filter(|&n| n > 1) else {
        return String::new();
    };
    let Some(k) = points.keys().find(|k| k.conns == most).copied() else {
        return String::new();
    };
    let mut parts = Vec::new();
    for path in [
        TransportKind::Dpdk,
        TransportKind::Posix,
        TransportKind::Simple,
    ] {
        let at = |n: u32| med_on(points, Key { path, ..k }.sessions(n));
        if let (Some(a), Some(b)) = (at(1), at(most)) {
            parts.push(format!(
                "{} p50 {:.1} -> {:.1} us, p99 {:.1} -> {:.1} us, {:.0} -> {:.0} ops/s",
                path.name(),
                a.p50,
                b.p50,
                a.p99,
                b.p99,
                a.ops_s,
                b.ops_s
            ));
        }
    }
    if parts.is_empty() {
        return String::new();
    }
    format!(
        "- sessions: from 1 to {most} client sessions ({}, {} in flight on each): {}\n",
        osdbench::size_label(k.size),
        k.depth,
        parts.join("; ")
    )
}

/// The floor and ceiling rows as CSV.
fn baselines_csv(floor: &[Row], ceiling: &[Row]) -> String {
    let mut s = String::from(
        "section,link,path,rtt_mean_us,p50_us,p99_us,round_trips_per_sec,frames_per_sec,bulk,skipped\n",
    );
    let cell = |v: Option<f64>| v.map_or_else(String::new, |x| format!("{x:.3}"));
    let quote = |t: &str| format!("\"{}\"", t.replace('"', "'"));
    for (section, rows) in [("floor", floor), ("ceiling", ceiling)] {
        for r in rows {
            let _ = writeln!(
                s,
                "{section},{},{},{},{},{},{},{},{},{}",
                r.link,
                quote(&r.path),
                cell(r.rtt_mean_us),
                cell(r.p50_us),
                cell(r.p99_us),
                cell(r.round_trips_s),
                cell(r.frames_s),
                quote(r.bulk.as_deref().unwrap_or("")),
                quote(r.skipped.as_deref().unwrap_or(""))
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(ops_s: f64, mb_s: f64, p50: f64, p99: f64) -> Point {
        Point {
            ops_per_sec: ops_s,
            mb_per_sec: mb_s,
            p50_us: p50,
            p99_us: p99,
            ..Point::default()
        }
    }

    fn sweep() -> Points {
        let mut p = Points::new();
        let (d, x) = (TransportKind::Dpdk, TransportKind::Posix);
        // Three rounds of dpdk's ping-pong: the median (5 us / 17 us) is taken.
        p.insert(
            Key::new(0, 1, Phase::Write, d),
            vec![
                pt(1e5, 0.0, 5.0, 17.0),
                pt(9e4, 0.0, 6.0, 30.0),
                pt(1.4e5, 0.0, 4.0, 16.0),
            ],
        );
        p.insert(
            Key::new(0, 1, Phase::Write, x),
            vec![pt(1.2e4, 0.0, 80.0, 130.0)],
        );
        p.insert(
            Key::new(0, 16, Phase::Write, d),
            vec![pt(5.6e5, 0.0, 25.0, 70.0)],
        );
        p.insert(
            Key::new(0, 16, Phase::Write, x),
            vec![pt(1.3e5, 0.0, 120.0, 180.0)],
        );
        p.insert(
            Key::new(4 << 20, 16, Phase::Write, d),
            vec![pt(380.0, 1594.0, 9e3, 1.6e4)],
        );
        p.insert(
            Key::new(4 << 20, 16, Phase::Write, x),
            vec![pt(525.0, 2200.0, 6e3, 1.7e4)],
        );
        // Read phases do not count.
        p.insert(Key::new(0, 1, Phase::Read, d), vec![pt(1.0, 0.0, 1e6, 1e6)]);
        p
    }

    #[test]
    fn claims_against_targets() {
        let base = Baselines {
            testpmd_rt_s: Some(1e6),
            testpmd_pps_64: Some(1.5e7),
            sockperf_p50: Some(40.0),
            sockperf_p99: Some(65.0),
        };
        let c = claims(&sweep(), &base);
        let lines: Vec<&str> = c.lines().collect();
        assert_eq!(lines.len(), 6, "{c}");
        assert!(lines[0].contains("dpdk p50 5.0 us / p99 17.0 us"), "{c}");
        assert!(
            lines[0].contains("0.06x / 0.13x (target <= 0.5x: met)"),
            "{c}"
        );
        assert!(lines[1].contains("0 B, 16 in flight"), "{c}");
        assert!(lines[1].contains("4.31x (target >= 2x: met)"), "{c}");
        assert!(lines[2].contains("4 MiB, 16 in flight"), "{c}");
        assert!(lines[2].contains("0.72x (target >= 1x: NOT met)"), "{c}");
        assert!(lines[3].contains("= 10.0% of testpmd's 1000000"), "{c}");
        assert!(lines[4].contains("1120000 messages/s"), "{c}");
        assert!(lines[4].contains("7.5% of testpmd's 15.00 Mpps"), "{c}");
        assert!(lines[5].contains("(2.00x / 2.00x"), "{c}");
    }

    #[test]
    fn claims_name_what_is_missing() {
        let mut p = sweep();
        p.retain(|k, _| k.path != TransportKind::Dpdk);
        let c = claims(&p, &Baselines::default());
        assert!(
            c.contains("ping-pong latency: dpdk or posix missing"),
            "{c}"
        );
        assert!(c.contains("throughput: dpdk or posix missing"), "{c}");
        assert!(!c.contains("ceiling"), "{c}");
        assert!(claims(&Points::new(), &Baselines::default()).contains("no OSD figures"));
    }

    #[test]
    fn baselines_from_rows_and_csv() {
        let floor = vec![Row {
            link: "lo".into(),
            path: "sockperf tcp ping-pong 64 B".into(),
            p50_us: Some(40.0),
            p99_us: Some(60.0),
            ..Row::default()
        }];
        let ceiling = vec![
            Row {
                link: "vhost".into(),
                path: "testpmd io, 1-packet ping-pong".into(),
                round_trips_s: Some(1e6),
                ..Row::default()
            },
            Row {
                link: "vhost".into(),
                path: "testpmd txonly 64 B frames".into(),
                skipped: Some("dpdk-testpmd not found".into()),
                ..Row::default()
            },
        ];
        let b = Baselines::from_rows(&floor, &ceiling);
        assert_eq!(b.testpmd_rt_s, Some(1e6));
        assert_eq!(b.testpmd_pps_64, None, "a skipped row gives nothing");
        assert_eq!((b.sockperf_p50, b.sockperf_p99), (Some(40.0), Some(60.0)));
        let csv = baselines_csv(&floor, &ceiling);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 4);
        // Fields: commas outside quotes, plus one.
        let fields = |l: &str| {
            l.split('"')
                .step_by(2)
                .map(|t| t.matches(',').count())
                .sum::<usize>()
                + 1
        };
        assert_eq!(fields(lines[0]), 10);
        assert!(lines.iter().all(|l| fields(l) == 10), "{csv}");
        assert!(lines[3].ends_with("\"dpdk-testpmd not found\""), "{csv}");
    }
}
