//! Packet capture on loopback ([`Capture`]) and tshark's Ceph dissector over pcaps
//! ([`dissect`]), so interop tests can check what Wireshark makes of our bytes.
//!
//! Capturing: `dumpcap -i lo -f '<capture filter>' -P -w <tmp>/capture.pcap -a duration:<max>`
//! (dumpcap is what tshark itself runs to capture; it starts faster). [`Capture::start`] returns
//! only after dumpcap printed `File: <path>` on stderr: that line comes after the interface is
//! open, the filter attached and the output file created. `Capturing on 'Loopback: lo'` is
//! printed BEFORE the interface is opened: traffic sent right after it is lost (measured: 0 of
//! 8 packets with no pause, 8 of 8 with 10 ms; 25 of 25 runs complete when waiting for `File:`).
//! [`Capture::stop`] first waits [`SETTLE`]: libpcap hands packets to dumpcap in blocks that
//! are retired only on a timeout (250 ms in dumpcap), and on SIGINT dumpcap does NOT drain the
//! block in progress, so stopping right after the traffic loses it (measured: 0 of 8 packets
//! with a 150 ms pause, 8 of 8 with 200 ms). Then SIGINT, a bounded wait, SIGKILL as fallback.
//! Needs root (CAP_NET_RAW) and dumpcap: [`Capture::check`] is the skip check.
//!
//! Dissecting: `tshark -r <pcap> -n -Y <display filter> -T fields -e ...`, one
//! [`DissectedFrame`] per frame. The Ceph dissector (Wireshark 4.0) is heuristic: it finds
//! msgr v1 streams by their banner on any port; it does not decode msgr v2. A frame's Info
//! column lists the Ceph PDUs in it (`"KEEPALIVE2 | Auth | Ping"`); the banner exchange shows as
//! `"Connect"` in both directions.
//!
//! Malformed detection: a dissector exception adds the `_ws.malformed` field (and Info gets a
//! `[Malformed Packet]` suffix); expert infos carry `_ws.expert.severity` (error = 0x800000,
//! warning = 0x600000, note = 0x400000, chat = 0x200000). [`MALFORMED_FILTER`] selects frames
//! that are malformed or have an error-level expert info. Wireshark 4.0 flags the real Pacific
//! MonMap ("Version 9 is higher then the maximum supported version (3)", then "Malformed
//! Packet (Exception occurred)") and puts warnings on correct frames too (e.g. "3287 unused
//! bytes" on the MPing reply, whose JSON it does not decode): judge our frames against what it
//! decodes cleanly from real Ceph (the pcaps in tests/data), and compare warnings, not just
//! errors, only with that in mind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{run_bounded, skip, tail, terminate, wait_until, TempDir};

/// Pause before stopping a capture so that packets still in libpcap's current block are
/// delivered (see the module docs).
pub(crate) const SETTLE: Duration = Duration::from_millis(500);

/// tshark display filter for frames Wireshark could not dissect cleanly.
pub(crate) const MALFORMED_FILTER: &str = "_ws.malformed || _ws.expert.severity == error";

/// Bound for dumpcap to report that it is capturing.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound for one tshark run over a pcap.
const TSHARK_TIMEOUT: Duration = Duration::from_secs(60);
/// dumpcap stops by itself after this long even if the test never calls `stop` or dies.
const MAX_DURATION: Duration = Duration::from_secs(600);

/// A running packet capture; see the module docs. Dropping it without [`Capture::stop`] stops
/// dumpcap and deletes the pcap.
#[derive(Debug)]
pub(crate) struct Capture {
    child: Option<Child>,
    dir: Option<TempDir>,
    pcap: PathBuf,
    filter: String,
}

impl Capture {
    /// The skip check for capturing tests: root (CAP_NET_RAW on `lo`), dumpcap and tshark.
    pub(crate) fn check() -> Result<(), String> {
        skip::programs(&["dumpcap", "tshark"])?;
        skip::root().map_err(|e| format!("{e} (packet capture needs CAP_NET_RAW)"))
    }

    /// Captures TCP traffic to or from `port` on `lo` (capture filter `tcp port <port>`).
    pub(crate) fn start(port: u16) -> Result<Self, String> {
        Self::start_filter("lo", &format!("tcp port {port}"))
    }

    /// Captures TCP traffic to or from any of `ports` on `lo`.
    pub(crate) fn start_ports(ports: &[u16]) -> Result<Self, String> {
        let filter = ports
            .iter()
            .map(|p| format!("tcp port {p}"))
            .collect::<Vec<_>>()
            .join(" or ");
        Self::start_filter("lo", &filter)
    }

    /// Captures on `interface` with a libpcap capture filter (`man pcap-filter`).
    pub(crate) fn start_filter(interface: &str, filter: &str) -> Result<Self, String> {
        let dir = TempDir::new("pcap")?;
        let pcap = dir.path().join("capture.pcap");
        let stderr_path = dir.path().join("dumpcap.stderr");
        let stderr = std::fs::File::create(&stderr_path)
            .map_err(|e| format!("creating {}: {e}", stderr_path.display()))?;
        let mut cmd = Command::new("dumpcap");
        cmd.args(["-i", interface, "-f", filter, "-P", "-w"])
            .arg(&pcap)
            .args(["-a", &format!("duration:{}", MAX_DURATION.as_secs())]);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = cmd.spawn().map_err(|e| format!("spawning {cmd:?}: {e}"))?;
        let mut cap = Self {
            child: Some(child),
            dir: Some(dir),
            pcap,
            filter: filter.to_owned(),
        };
        let ready = wait_until(
            "dumpcap to start capturing",
            START_TIMEOUT,
            Duration::from_millis(10),
            || {
                let text = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                if text.lines().any(|l| l.starts_with("File: ")) {
                    return Ok(Some(()));
                }
                if let Some(child) = cap.child.as_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        return Err(format!("dumpcap exited ({status})"));
                    }
                }
                Ok(None)
            },
        );
        match ready {
            Ok(()) => Ok(cap),
            Err(e) => Err(format!(
                "capture on {interface} with filter {filter:?}: {e}; stderr: {}",
                tail(&stderr_path, 20)
            )),
        }
    }

    /// Where the pcap is being written (complete only after [`Capture::stop`]).
    pub(crate) fn pcap_path(&self) -> &Path {
        &self.pcap
    }

    /// The capture filter in use.
    pub(crate) fn filter(&self) -> &str {
        &self.filter
    }

    /// Waits [`SETTLE`], stops dumpcap (SIGINT, bounded wait, SIGKILL) and returns the pcap.
    pub(crate) fn stop(mut self) -> Result<Pcap, String> {
        std::thread::sleep(SETTLE);
        let dir = self.dir.take();
        let stderr_path = dir.as_ref().map(|d| d.path().join("dumpcap.stderr"));
        let mut child = self.child.take().ok_or("capture already stopped")?;
        let status = terminate(&mut child, "INT", Duration::from_secs(10))?;
        let stderr = stderr_path.map(|p| tail(&p, 10)).unwrap_or_default();
        // dumpcap exits 0 on SIGINT; also accept death by the signal itself.
        if !(status.success() || status.code().is_none()) {
            return Err(format!("dumpcap failed ({status}): {stderr}"));
        }
        if !self.pcap.is_file() {
            return Err(format!(
                "dumpcap wrote no {}: {stderr}",
                self.pcap.display()
            ));
        }
        Ok(Pcap {
            path: self.pcap.clone(),
            dir,
        })
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(e) = terminate(&mut child, "INT", Duration::from_secs(10)) {
                eprintln!("warning: stopping dumpcap: {e}");
            }
        }
    }
}

/// A pcap file; if it came from a [`Capture`], it owns the temporary directory and deletes it
/// on drop (unless `MSGR_KEEP_TMP=1`; or call [`Pcap::keep`]).
#[derive(Debug)]
pub(crate) struct Pcap {
    path: PathBuf,
    dir: Option<TempDir>,
}

impl Pcap {
    /// An existing pcap (e.g. from tests/data); never deleted.
    pub(crate) fn open(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            dir: None,
        }
    }

    /// The file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the file (and its directory) on disk and returns its path.
    pub(crate) fn keep(self) -> PathBuf {
        if let Some(dir) = self.dir {
            dir.into_kept();
        }
        self.path
    }

    /// [`dissect`] over this file.
    pub(crate) fn dissect(&self, display_filter: &str) -> Result<Vec<DissectedFrame>, String> {
        dissect(&self.path, display_filter)
    }

    /// The frames the Ceph dissector claimed (display filter `ceph`).
    pub(crate) fn ceph_frames(&self) -> Result<Vec<DissectedFrame>, String> {
        dissect(&self.path, "ceph")
    }

    /// The frames matching [`MALFORMED_FILTER`].
    pub(crate) fn malformed_frames(&self) -> Result<Vec<DissectedFrame>, String> {
        dissect(&self.path, MALFORMED_FILTER)
    }
}

/// Severity of a Wireshark expert info (`_ws.expert.severity`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Severity {
    Comment,
    Chat,
    Note,
    Warning,
    Error,
    Other(u32),
}

impl Severity {
    fn from_raw(v: u32) -> Self {
        match v {
            0x0010_0000 => Self::Comment,
            0x0020_0000 => Self::Chat,
            0x0040_0000 => Self::Note,
            0x0060_0000 => Self::Warning,
            0x0080_0000 => Self::Error,
            other => Self::Other(other),
        }
    }
}

/// One expert info of a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Expert {
    pub(crate) severity: Severity,
    pub(crate) message: String,
}

/// What tshark made of one frame.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct DissectedFrame {
    /// `frame.number` (1-based).
    pub(crate) number: u64,
    /// `tcp.stream` index, if TCP.
    pub(crate) stream: Option<u32>,
    pub(crate) src_port: Option<u16>,
    pub(crate) dst_port: Option<u16>,
    /// `tcp.flags.syn` set.
    pub(crate) syn: bool,
    /// `tcp.flags.fin` set.
    pub(crate) fin: bool,
    /// This segment's TCP payload (`tcp.payload`), empty if none.
    pub(crate) payload: Vec<u8>,
    /// The Info column as tshark shows it, e.g. `"Mon Map[Malformed Packet]"`.
    pub(crate) info: String,
    /// The Info column split on `" | "`, with `[Malformed Packet]` suffixes removed: one entry
    /// per PDU for Ceph frames (`["KEEPALIVE2", "Auth", "Ping"]`).
    pub(crate) pdus: Vec<String>,
    /// `ceph.tag` values (msgr v1 tags: 7 MSG, 8 ACK, 14 KEEPALIVE2, ...).
    pub(crate) ceph_tags: Vec<u8>,
    /// `ceph.type` values (message types: 2 PING, 4 MON_MAP, 17 AUTH, ...).
    pub(crate) ceph_msg_types: Vec<u16>,
    /// `_ws.malformed` present (a dissector exception).
    pub(crate) malformed: bool,
    /// Expert infos, in order.
    pub(crate) expert: Vec<Expert>,
    /// `frame.protocols` split on `:` (e.g. `["eth", "ethertype", "ip", "tcp", "ceph"]`).
    pub(crate) protocols: Vec<String>,
}

impl DissectedFrame {
    /// True if one of the PDUs is exactly `name` (e.g. `"Ping"`, `"Connect Reply"`).
    pub(crate) fn has_pdu(&self, name: &str) -> bool {
        self.pdus.iter().any(|p| p == name)
    }

    /// True if the Ceph dissector claimed (part of) this frame.
    pub(crate) fn is_ceph(&self) -> bool {
        self.protocols.iter().any(|p| p == "ceph")
    }

    /// True if malformed or carrying an error-level expert info (what [`MALFORMED_FILTER`]
    /// selects).
    pub(crate) fn is_bad(&self) -> bool {
        self.malformed || self.expert.iter().any(|e| e.severity == Severity::Error)
    }
}

/// All PDU names of `frames`, in order (flattened [`DissectedFrame::pdus`]).
pub(crate) fn pdus(frames: &[DissectedFrame]) -> Vec<String> {
    frames.iter().flat_map(|f| f.pdus.iter().cloned()).collect()
}

/// The fields requested from tshark, in the order [`parse_line`] reads them. Index 7 is the
/// Info column, whose field name changed case in Wireshark 4.2 (`_ws.col.info`).
const FIELDS: [&str; 14] = [
    "frame.number",
    "tcp.stream",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.flags.syn",
    "tcp.flags.fin",
    "tcp.payload",
    "_ws.col.Info",
    "ceph.tag",
    "ceph.type",
    "_ws.malformed",
    "_ws.expert.severity",
    "_ws.expert.message",
    "frame.protocols",
];
const INFO_FIELD: usize = 7;
/// Separates repeated values of one field (ASCII unit separator: never in tshark's text).
const AGGREGATOR: char = '\u{1f}';

/// Runs tshark over `pcap` (single pass, no name resolution) and returns the frames matching
/// the display filter (`""`: all frames). Errors carry tshark's stderr (e.g. a bad filter).
pub(crate) fn dissect(pcap: &Path, display_filter: &str) -> Result<Vec<DissectedFrame>, String> {
    match run_tshark(pcap, display_filter, FIELDS[INFO_FIELD]) {
        // Wireshark >= 4.2 spells the column field in lower case.
        Err(e) if e.contains(FIELDS[INFO_FIELD]) => {
            run_tshark(pcap, display_filter, "_ws.col.info")
        }
        other => other,
    }
}

fn run_tshark(
    pcap: &Path,
    display_filter: &str,
    info_field: &str,
) -> Result<Vec<DissectedFrame>, String> {
    if !pcap.is_file() {
        return Err(format!("no pcap {}", pcap.display()));
    }
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(pcap).arg("-n");
    if !display_filter.is_empty() {
        cmd.args(["-Y", display_filter]);
    }
    cmd.args([
        "-T",
        "fields",
        "-E",
        "header=n",
        "-E",
        "separator=/t",
        "-E",
        "occurrence=a",
    ]);
    cmd.arg("-E").arg(format!("aggregator={AGGREGATOR}"));
    for (i, f) in FIELDS.iter().enumerate() {
        cmd.args(["-e", if i == INFO_FIELD { info_field } else { f }]);
    }
    let started = Instant::now();
    let out = run_bounded(&mut cmd, TSHARK_TIMEOUT)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // tshark warns on stderr when run as root; only the exit status counts.
    if !out.status.success() {
        return Err(format!(
            "tshark -r {} -Y {display_filter:?} failed ({}) after {:?}: {}",
            pcap.display(),
            out.status,
            started.elapsed(),
            stderr.trim()
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(parse_line)
        .collect()
}

/// One `-T fields` line split into its columns, with typed accessors.
struct Row<'a> {
    line: &'a str,
    cols: Vec<&'a str>,
}

impl<'a> Row<'a> {
    /// The non-empty values of field `i` (repeated values are joined by [`AGGREGATOR`]).
    fn values(&self, i: usize) -> Vec<&'a str> {
        self.cols[i]
            .split(AGGREGATOR)
            .filter(|v| !v.is_empty())
            .collect()
    }

    fn err(&self, i: usize, v: &str) -> String {
        format!(
            "tshark field {}: bad value {v:?} in {:?}",
            FIELDS[i], self.line
        )
    }

    /// A decimal or `0x` hex integer; out-of-range values are errors, not truncations.
    fn int<T: TryFrom<u64>>(&self, i: usize, v: &str) -> Result<T, String> {
        match v.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => v.parse().ok(),
        }
        .and_then(|x| T::try_from(x).ok())
        .ok_or_else(|| self.err(i, v))
    }

    /// The first value of field `i` as an integer, if present.
    fn opt<T: TryFrom<u64>>(&self, i: usize) -> Result<Option<T>, String> {
        self.values(i).first().map(|v| self.int(i, v)).transpose()
    }

    /// All values of field `i` as integers.
    fn all<T: TryFrom<u64>>(&self, i: usize) -> Result<Vec<T>, String> {
        self.values(i).iter().map(|v| self.int(i, v)).collect()
    }

    /// A boolean field (`1`/`True`), false if absent.
    fn flag(&self, i: usize) -> bool {
        self.values(i)
            .first()
            .is_some_and(|v| *v == "1" || v.eq_ignore_ascii_case("true"))
    }

    /// A bytes field (hex, with or without `:` separators), empty if absent.
    fn bytes(&self, i: usize) -> Result<Vec<u8>, String> {
        let Some(v) = self.values(i).first().copied() else {
            return Ok(Vec::new());
        };
        let hex: Vec<u8> = v.bytes().filter(|&c| c != b':').collect();
        if !hex.len().is_multiple_of(2) {
            return Err(self.err(i, v));
        }
        hex.chunks(2)
            .map(|p| {
                std::str::from_utf8(p)
                    .ok()
                    .and_then(|t| u8::from_str_radix(t, 16).ok())
                    .ok_or_else(|| self.err(i, v))
            })
            .collect()
    }
}

/// Parses one `-T fields` line (tab-separated [`FIELDS`]).
fn parse_line(line: &str) -> Result<DissectedFrame, String> {
    let row = Row {
        line,
        cols: line.split('\t').collect(),
    };
    if row.cols.len() != FIELDS.len() {
        return Err(format!(
            "tshark line with {} fields, expected {}: {line:?}",
            row.cols.len(),
            FIELDS.len()
        ));
    }
    let info = row.cols[INFO_FIELD].to_owned();
    let pdus = info
        .split(" | ")
        .map(|p| p.replace("[Malformed Packet]", "").trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    let messages = row.values(12);
    let expert = row
        .all::<u32>(11)?
        .into_iter()
        .enumerate()
        .map(|(i, raw)| Expert {
            severity: Severity::from_raw(raw),
            message: messages.get(i).copied().unwrap_or_default().to_owned(),
        })
        .collect();
    Ok(DissectedFrame {
        number: row.opt(0)?.ok_or_else(|| row.err(0, row.cols[0]))?,
        stream: row.opt(1)?,
        src_port: row.opt(2)?,
        dst_port: row.opt(3)?,
        syn: row.flag(4),
        fin: row.flag(5),
        payload: row.bytes(6)?,
        info,
        pdus,
        ceph_tags: row.all(8)?,
        ceph_msg_types: row.all(9)?,
        malformed: !row.values(10).is_empty(),
        expert,
        protocols: row
            .values(13)
            .first()
            .map(|p| p.split(':').map(str::to_owned).collect())
            .unwrap_or_default(),
    })
}
