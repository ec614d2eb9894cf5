//! Packet capture: the stack's Ethernet frames to a classic libpcap file, readable by
//! tcpdump, tshark and Wireshark. A DPDK port is invisible to the kernel's tcpdump; this is
//! the operator's tcpdump for it.
//!
//! Pieces, bottom up:
//! - [`PcapWriter`]: the file format over any [`Write`]: a global header (magic
//!   `0xa1b2c3d4` for microsecond or `0xa1b23c4d` for nanosecond timestamps, version 2.4,
//!   `LINKTYPE_ETHERNET`, a snap length), then a 16-byte header and the (possibly
//!   truncated) bytes per frame. Written little-endian, whatever the host: readers take the
//!   byte order from the magic.
//! - [`PcapFile`]: one writer thread that owns the file (buffered), fed by a bounded queue;
//!   [`PcapFile::stop`] writes what was queued, closes the file and reports
//!   [`CaptureStats`].
//! - [`Capture`]: the cheap clonable handle a worker's stack holds (see
//!   [`NetStack::set_capture`](crate::NetStack::set_capture)). [`Capture::record`] copies
//!   a frame (at most the snap length) into a record and offers it to the queue without
//!   ever blocking: a poll-mode worker must not wait for a disk. When the queue is full the
//!   record is dropped and counted. Record buffers go back to the workers through a
//!   bounded pool, so a capture that keeps up allocates nothing in the steady state.
//!
//! Memory is bounded: at most `queue_depth` records in the queue and as many spare buffers
//! in the pool, each at most the snap length.
//!
//! Time: the stack's clock is a worker's own (`smoltcp::time::Instant`, from the TSC or a
//! monotonic clock, starting anywhere). A [`TimeBase`] pairs one reading of it with the
//! wall-clock time taken at the same moment; a record's time is
//! `wall + (now - stack)`. Each worker has its own clock, so each worker's [`Capture`]
//! needs its own base ([`Capture::with_base`]). Records of different workers interleave in
//! the order they reached the queue, so their times may step back slightly between
//! workers (`reordercap` sorts a file).
//!
//! What a capture shows (see [`NetStack::set_capture`](crate::NetStack::set_capture)):
//! every frame a burst brought from the port, before any check (frames the stack then
//! drops are in it), every frame handed to the port, once (frames the device refused and
//! that wait for the next burst are not repeated), and packets to the stack's own address
//! once. Frames another worker received and forwarded to their flow's owner are recorded by
//! the worker that received them.
//!
//! Checksums: with transmit checksum offload the device fills in checksums after the
//! capture took its copy, so a captured outgoing TCP segment holds only the pseudo-header
//! sum in its checksum field, and the IPv4 header checksum is zero. tshark and Wireshark do
//! not validate either by default; with validation switched on, such frames show as bad.
//!
//! A driver's side of it (one file, any number of workers):
//! ```
//! use stack::pcap::{CaptureConfig, PcapFile, Recorded, TimeBase};
//! use stack::smoltcp::time::Instant;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let path = std::env::temp_dir().join(format!("msgr-pcap-doc-{}.pcap", std::process::id()));
//! let pcap = PcapFile::create(&path, CaptureConfig::default())?;
//! // Each worker: a handle timestamped from its own clock, given to its stack with
//! // `stack.set_capture(Some(capture))` (and taken off with `set_capture(None)`).
//! let worker_now = Instant::from_millis(0);
//! let capture = pcap.capture(TimeBase::from_system_clock(worker_now));
//! assert_eq!(capture.record(worker_now, &[0u8; 60]), Recorded::Queued);
//! // Everything queued is written; handles still held answer `Recorded::Closed`.
//! let stats = pcap.stop()?;
//! assert_eq!(stats.written, 1);
//! # std::fs::remove_file(&path)?;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use smoltcp::time::Instant;

/// The link type of the records: Ethernet II frames.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Default [`CaptureConfig::snaplen`]: whole frames, jumbo ones included (as tcpdump).
pub const DEFAULT_SNAPLEN: u32 = 65_535;
/// Largest accepted snap length: Wireshark's limit for Ethernet.
pub const MAX_SNAPLEN: u32 = 262_144;
/// Default [`CaptureConfig::queue_depth`]: a few bursts of every worker.
pub const DEFAULT_QUEUE_DEPTH: usize = 4_096;
/// Length of the file's global header.
pub const GLOBAL_HEADER_LEN: usize = 24;
/// Length of a record's header.
pub const RECORD_HEADER_LEN: usize = 16;

const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
const VERSION: (u16, u16) = (2, 4);
/// Capacity of a new record buffer: a standard frame fits without growing it.
const BUFFER_HINT: usize = 2_048;
/// The writer thread's buffer: large writes under load.
const WRITE_BUFFER: usize = 256 * 1024;

/// Resolution of the timestamps in the file.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Microseconds (magic `0xa1b2c3d4`): what every reader knows, and the resolution of
    /// the stack's clock.
    #[default]
    Micros,
    /// Nanoseconds (magic `0xa1b23c4d`).
    Nanos,
}

impl Precision {
    /// The magic number that announces this precision.
    pub fn magic(self) -> u32 {
        match self {
            Self::Micros => MAGIC_MICROS,
            Self::Nanos => MAGIC_NANOS,
        }
    }

    fn fraction(self, ts: Duration) -> u32 {
        match self {
            Self::Micros => ts.subsec_micros(),
            Self::Nanos => ts.subsec_nanos(),
        }
    }
}

/// The file's global header.
pub fn global_header(snaplen: u32, precision: Precision) -> [u8; GLOBAL_HEADER_LEN] {
    let mut h = [0u8; GLOBAL_HEADER_LEN];
    h[0..4].copy_from_slice(&precision.magic().to_le_bytes());
    h[4..6].copy_from_slice(&VERSION.0.to_le_bytes());
    h[6..8].copy_from_slice(&VERSION.1.to_le_bytes());
    // 8..12 thiszone and 12..16 sigfigs: zero (times are UTC).
    h[16..20].copy_from_slice(&snaplen.to_le_bytes());
    h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    h
}

/// A record's header: time since the UNIX epoch, bytes in the file, bytes on the wire.
/// Seconds are 32 bits in this format (until 2106).
pub fn record_header(
    ts: Duration,
    incl_len: u32,
    orig_len: u32,
    precision: Precision,
) -> [u8; RECORD_HEADER_LEN] {
    let mut h = [0u8; RECORD_HEADER_LEN];
    h[0..4].copy_from_slice(&(ts.as_secs() as u32).to_le_bytes());
    h[4..8].copy_from_slice(&precision.fraction(ts).to_le_bytes());
    h[8..12].copy_from_slice(&incl_len.to_le_bytes());
    h[12..16].copy_from_slice(&orig_len.to_le_bytes());
    h
}

/// The libpcap format over a writer: the global header when created, then records.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
    snaplen: u32,
    precision: Precision,
    /// Bytes written, headers included.
    bytes: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header to `out`.
    pub fn new(mut out: W, snaplen: u32, precision: Precision) -> io::Result<Self> {
        out.write_all(&global_header(snaplen, precision))?;
        Ok(Self {
            out,
            snaplen,
            precision,
            bytes: GLOBAL_HEADER_LEN as u64,
        })
    }

    /// Writes one record of a frame that was `orig_len` bytes long on the wire, of which
    /// `data` was kept: only the first `snaplen` bytes of `data` go into the file. Returns
    /// the bytes written.
    pub fn write_record(&mut self, ts: Duration, data: &[u8], orig_len: usize) -> io::Result<u64> {
        let kept = &data[..data.len().min(self.snaplen as usize)];
        let orig = orig_len.max(data.len()).min(u32::MAX as usize) as u32;
        // `kept` is at most `snaplen`, a u32.
        let h = record_header(ts, kept.len() as u32, orig, self.precision);
        self.out.write_all(&h)?;
        self.out.write_all(kept)?;
        let n = (RECORD_HEADER_LEN + kept.len()) as u64;
        self.bytes += n;
        Ok(n)
    }

    /// Pushes buffered bytes to the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Bytes written so far, headers included.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The snap length in the global header.
    pub fn snaplen(&self) -> u32 {
        self.snaplen
    }

    /// The underlying writer.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// The underlying writer (not flushed: call [`PcapWriter::flush`] first).
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Pairs a reading of a worker's clock with the wall-clock time of the same moment, to
/// timestamp records: `wall + (now - stack)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBase {
    stack: Instant,
    wall: Duration,
}

impl TimeBase {
    /// `stack` on the worker's clock is `wall` since the UNIX epoch.
    pub fn new(stack: Instant, wall: Duration) -> Self {
        Self { stack, wall }
    }

    /// `stack_now` (the worker's clock, read just now) is the system's wall-clock time now.
    /// The one place the stack reads the wall clock: call it from the driver that starts a
    /// capture, not from the data path.
    // The wall clock is an input to the stack (STYLE.md R2); a capture's time base is where
    // it comes in, once per capture and worker.
    #[allow(clippy::disallowed_methods)]
    pub fn from_system_clock(stack_now: Instant) -> Self {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            // A clock set before 1970: records start at the epoch rather than failing.
            .unwrap_or_default();
        Self::new(stack_now, wall)
    }

    /// Wall-clock time (since the UNIX epoch) of `now` on the worker's clock.
    pub fn wall_time(&self, now: Instant) -> Duration {
        let delta = now.total_micros() - self.stack.total_micros();
        if delta >= 0 {
            self.wall + Duration::from_micros(delta as u64)
        } else {
            self.wall
                .saturating_sub(Duration::from_micros(delta.unsigned_abs()))
        }
    }
}

/// Settings of a capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureConfig {
    /// Bytes kept of each frame (1 to [`MAX_SNAPLEN`]); the record keeps the frame's real
    /// length.
    pub snaplen: u32,
    /// Timestamp resolution.
    pub precision: Precision,
    /// Records waiting for the writer thread before more are dropped.
    pub queue_depth: usize,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            snaplen: DEFAULT_SNAPLEN,
            precision: Precision::Micros,
            queue_depth: DEFAULT_QUEUE_DEPTH,
        }
    }
}

impl CaptureConfig {
    fn check(&self) -> Result<(), CaptureError> {
        if self.snaplen == 0 || self.snaplen > MAX_SNAPLEN {
            return Err(CaptureError::InvalidConfig(
                "snaplen must be between 1 and 262144 bytes",
            ));
        }
        if self.queue_depth == 0 {
            return Err(CaptureError::InvalidConfig(
                "queue depth must be at least 1",
            ));
        }
        Ok(())
    }
}

/// Counters of a capture.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CaptureStats {
    /// Records in the file.
    pub written: u64,
    /// Records lost: the queue was full (the writer fell behind), or writing had failed.
    pub dropped: u64,
    /// Size of the file so far (headers included).
    pub bytes: u64,
}

/// Why a capture could not start, or ended badly.
#[derive(Debug)]
#[non_exhaustive]
pub enum CaptureError {
    /// A setting out of range.
    InvalidConfig(&'static str),
    /// The file could not be created.
    Create { path: PathBuf, source: io::Error },
    /// Writing failed (disk full, pipe closed); records since were dropped.
    Write {
        dest: String,
        source: io::Error,
        stats: CaptureStats,
    },
    /// The writer thread could not be started.
    Spawn(io::Error),
    /// The writer thread panicked (a bug); the file may be incomplete.
    WriterPanicked { dest: String },
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidConfig(what) => write!(f, "invalid capture settings: {what}"),
            Self::Create { path, source } => {
                write!(f, "cannot create capture file {}: {source}", path.display())
            }
            Self::Write {
                dest,
                source,
                stats,
            } => write!(
                f,
                "writing capture {dest} failed after {} records: {source}",
                stats.written
            ),
            Self::Spawn(e) => write!(f, "cannot start the capture writer thread: {e}"),
            Self::WriterPanicked { dest } => {
                write!(f, "the writer thread of capture {dest} panicked")
            }
        }
    }
}

impl std::error::Error for CaptureError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Create { source, .. } | Self::Write { source, .. } | Self::Spawn(source) => {
                Some(source)
            }
            Self::InvalidConfig(_) | Self::WriterPanicked { .. } => None,
        }
    }
}

/// What became of a frame offered to a [`Capture`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Recorded {
    /// Queued for the file.
    Queued,
    /// The queue was full: dropped (and counted in [`CaptureStats::dropped`]).
    Dropped,
    /// The capture was stopped (or writing failed): let go of the handle.
    Closed,
}

/// A frame's record on its way to the writer thread.
#[derive(Debug)]
struct Record {
    ts: Duration,
    orig_len: usize,
    data: Vec<u8>,
}

#[derive(Debug)]
enum Msg {
    Record(Record),
    /// Write what is queued, close, exit.
    Stop,
}

/// What the workers touch for every record (apart from the writer's counters: no false
/// sharing with them).
#[derive(Debug, Default)]
#[repr(align(64))]
struct Gate {
    /// No more records wanted: stopped, or writing failed.
    closed: AtomicBool,
    /// Workers between their check of `closed` and their offer to the queue (see
    /// `drain_after_stop`).
    inflight: AtomicUsize,
    dropped: AtomicU64,
}

/// The writer thread's counters.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Progress {
    written: AtomicU64,
    bytes: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    gate: Gate,
    progress: Progress,
    /// Spent record buffers, back from the writer thread.
    pool: ArrayQueue<Vec<u8>>,
}

impl Shared {
    fn stats(&self) -> CaptureStats {
        CaptureStats {
            written: self.progress.written.load(Ordering::Relaxed),
            dropped: self.gate.dropped.load(Ordering::Relaxed),
            bytes: self.progress.bytes.load(Ordering::Relaxed),
        }
    }

    fn recycle(&self, data: Vec<u8>) {
        // A full pool lets the buffer go.
        let _ = self.pool.push(data);
    }
}

/// A worker's handle on a capture: clone it freely (an `Arc` and a channel end). Offers
/// frames with [`Capture::record`], which never blocks.
#[derive(Debug, Clone)]
pub struct Capture {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
    base: TimeBase,
    snaplen: usize,
}

impl Capture {
    /// The same capture, timestamped from another worker's clock.
    pub fn with_base(mut self, base: TimeBase) -> Self {
        self.base = base;
        self
    }

    /// The time base of this handle's records.
    pub fn base(&self) -> TimeBase {
        self.base
    }

    /// Whether the capture was stopped or failed (records are no longer taken).
    pub fn is_closed(&self) -> bool {
        self.shared.gate.closed.load(Ordering::Relaxed)
    }

    /// Offers a frame seen at `now` (the worker's clock): copies at most the snap length
    /// and queues it for the file. Never blocks; when the queue is full the frame is
    /// dropped and counted.
    pub fn record(&self, now: Instant, frame: &[u8]) -> Recorded {
        let gate = &self.shared.gate;
        if gate.closed.load(Ordering::Relaxed) {
            return Recorded::Closed;
        }
        let kept = &frame[..frame.len().min(self.snaplen)];
        let mut data = self
            .shared
            .pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUFFER_HINT.min(self.snaplen)));
        data.clear();
        data.extend_from_slice(kept);
        let rec = Record {
            ts: self.base.wall_time(now),
            orig_len: frame.len(),
            data,
        };
        // `inflight` brackets the check and the offer, so that a stop waits for offers
        // that saw the capture open (see `drain_after_stop`): a record accepted is written.
        gate.inflight.fetch_add(1, Ordering::SeqCst);
        let outcome = if gate.closed.load(Ordering::SeqCst) {
            self.shared.recycle(rec.data);
            Recorded::Closed
        } else {
            match self.tx.try_send(Msg::Record(rec)) {
                Ok(()) => Recorded::Queued,
                Err(TrySendError::Full(m)) => {
                    gate.dropped.fetch_add(1, Ordering::Relaxed);
                    if let Msg::Record(r) = m {
                        self.shared.recycle(r.data);
                    }
                    Recorded::Dropped
                }
                Err(TrySendError::Disconnected(_)) => Recorded::Closed,
            }
        };
        gate.inflight.fetch_sub(1, Ordering::SeqCst);
        outcome
    }
}

/// A capture in progress: the writer thread and its file. Hand out [`Capture`] handles
/// with [`PcapFile::capture`]; end it with [`PcapFile::stop`] (dropping it stops it too,
/// logging any error).
#[derive(Debug)]
pub struct PcapFile {
    dest: String,
    cfg: CaptureConfig,
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl PcapFile {
    /// Creates (or truncates) the file at `path`, writes the global header and starts the
    /// writer thread.
    pub fn create(path: impl AsRef<Path>, cfg: CaptureConfig) -> Result<Self, CaptureError> {
        cfg.check()?;
        let path = path.as_ref();
        let file = File::create(path).map_err(|source| CaptureError::Create {
            path: path.to_owned(),
            source,
        })?;
        Self::with_writer(file, path.display().to_string(), cfg)
    }

    /// A capture into any writer (a pipe to `tshark -i -`, a socket, a buffer in a test).
    /// `dest` names it in errors. The global header is written and flushed before this
    /// returns, so a writer that cannot take bytes fails here.
    pub fn with_writer<W: Write + Send + 'static>(
        out: W,
        dest: impl Into<String>,
        cfg: CaptureConfig,
    ) -> Result<Self, CaptureError> {
        cfg.check()?;
        let dest = dest.into();
        let write_err = |source| CaptureError::Write {
            dest: dest.clone(),
            source,
            stats: CaptureStats::default(),
        };
        let mut writer = PcapWriter::new(
            BufWriter::with_capacity(WRITE_BUFFER, out),
            cfg.snaplen,
            cfg.precision,
        )
        .map_err(write_err)?;
        writer.flush().map_err(write_err)?;
        let shared = Arc::new(Shared {
            gate: Gate::default(),
            progress: Progress::default(),
            pool: ArrayQueue::new(cfg.queue_depth),
        });
        shared
            .progress
            .bytes
            .store(writer.bytes(), Ordering::Relaxed);
        let (tx, rx) = mpsc::sync_channel(cfg.queue_depth);
        let thread = std::thread::Builder::new()
            .name("pcap-writer".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || writer_loop(writer, &rx, &shared)
            })
            .map_err(CaptureError::Spawn)?;
        Ok(Self {
            dest,
            cfg,
            tx,
            shared,
            thread: Some(thread),
        })
    }

    /// A handle for a worker whose clock `base` relates to the wall clock.
    pub fn capture(&self, base: TimeBase) -> Capture {
        Capture {
            tx: self.tx.clone(),
            shared: Arc::clone(&self.shared),
            base,
            snaplen: self.cfg.snaplen as usize,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> CaptureStats {
        self.shared.stats()
    }

    /// Where the records go (the path, or the name given to [`PcapFile::with_writer`]).
    pub fn dest(&self) -> &str {
        &self.dest
    }

    /// The settings it was started with.
    pub fn config(&self) -> &CaptureConfig {
        &self.cfg
    }

    /// Whether records are no longer taken: writing failed (the error comes with
    /// [`PcapFile::stop`]).
    pub fn is_closed(&self) -> bool {
        self.shared.gate.closed.load(Ordering::Relaxed)
    }

    /// Stops taking records, writes every record already queued, flushes and closes the
    /// file, and joins the writer thread. Handles still held by workers answer
    /// [`Recorded::Closed`] from now on.
    pub fn stop(mut self) -> Result<CaptureStats, CaptureError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<CaptureStats, CaptureError> {
        let Some(thread) = self.thread.take() else {
            return Ok(self.stats());
        };
        self.shared.gate.closed.store(true, Ordering::SeqCst);
        // Waits only while the queue is full, which the writer is draining; fails at once if
        // the writer is gone (it panicked).
        let _ = self.tx.send(Msg::Stop);
        let joined = thread.join();
        let stats = self.stats();
        match joined {
            Ok(Ok(())) => Ok(stats),
            Ok(Err(source)) => Err(CaptureError::Write {
                dest: self.dest.clone(),
                source,
                stats,
            }),
            Err(_) => Err(CaptureError::WriterPanicked {
                dest: self.dest.clone(),
            }),
        }
    }
}

impl Drop for PcapFile {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            tracing::warn!(error = %e, "packet capture ended badly");
        }
    }
}

/// The writer thread's state.
struct Sink<'a, W: Write> {
    out: PcapWriter<W>,
    shared: &'a Shared,
    /// The first write error; records since are dropped.
    failed: Option<io::Error>,
}

impl<W: Write> Sink<'_, W> {
    fn write(&mut self, r: Record) {
        if self.failed.is_none() {
            match self.out.write_record(r.ts, &r.data, r.orig_len) {
                Ok(n) => {
                    let p = &self.shared.progress;
                    p.written.fetch_add(1, Ordering::Relaxed);
                    p.bytes.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => self.fail(e),
            }
        }
        if self.failed.is_some() {
            self.shared.gate.dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.shared.recycle(r.data);
    }

    fn flush(&mut self) {
        if self.failed.is_none() {
            if let Err(e) = self.out.flush() {
                self.fail(e);
            }
        }
    }

    fn fail(&mut self, e: io::Error) {
        // Workers stop offering; the error is reported by `stop`.
        self.shared.gate.closed.store(true, Ordering::SeqCst);
        self.failed = Some(e);
    }

    /// After `Stop`: `closed` is set, so new offers are refused, but a worker may be between
    /// its check (which saw the capture open) and its offer. Such workers hold `inflight`;
    /// wait them out, writing what they queue, then take the last of it.
    fn drain_after_stop(&mut self, rx: &Receiver<Msg>) {
        loop {
            self.drain(rx);
            if self.shared.gate.inflight.load(Ordering::SeqCst) == 0 {
                break;
            }
            std::thread::yield_now();
        }
        self.drain(rx);
    }

    fn drain(&mut self, rx: &Receiver<Msg>) {
        while let Ok(m) = rx.try_recv() {
            if let Msg::Record(r) = m {
                self.write(r);
            }
        }
    }
}

fn writer_loop<W: Write>(
    out: PcapWriter<W>,
    rx: &Receiver<Msg>,
    shared: &Shared,
) -> io::Result<()> {
    let mut sink = Sink {
        out,
        shared,
        failed: None,
    };
    loop {
        let msg = match rx.try_recv() {
            Ok(m) => m,
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                // Idle: what is buffered goes to the file now, so a reader following it is
                // current; under load the buffer fills and goes out in large writes.
                sink.flush();
                match rx.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                }
            }
        };
        match msg {
            Msg::Record(r) => sink.write(r),
            Msg::Stop => {
                sink.drain_after_stop(rx);
                break;
            }
        }
    }
    sink.flush();
    match sink.failed {
        Some(e) => Err(e),
        // Closing the file happens when `sink` goes (a buffered writer that was flushed).
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A writer into a buffer the test keeps.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Buffer {
        fn bytes(&self) -> Vec<u8> {
            self.0.lock().unwrap().clone()
        }
    }

    impl Write for Buffer {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A writer that holds the writer thread in its second `flush` (the first is the
    /// global header's, in `with_writer`; the second is the thread's when it finds the
    /// queue empty) until released: the thread then holds no record, and the queue fills.
    struct Gated {
        inner: Buffer,
        flushes: usize,
        entered: mpsc::Sender<()>,
        release: Receiver<()>,
    }

    impl Write for Gated {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.inner.write(b)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.flushes += 1;
            if self.flushes == 2 {
                let _ = self.entered.send(());
                // Bounded: a failing test must not hang in the writer's join.
                let _ = self.release.recv_timeout(Duration::from_secs(10));
            }
            Ok(())
        }
    }

    /// A writer that fails after `ok` bytes.
    struct Failing {
        ok: usize,
    }

    impl Write for Failing {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.ok == 0 {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
            }
            let n = b.len().min(self.ok);
            self.ok -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Parsed records: (seconds, fraction, incl_len, orig_len, data).
    type Rec = (u32, u32, u32, u32, Vec<u8>);

    fn parse(b: &[u8]) -> Vec<Rec> {
        let le = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let mut out = Vec::new();
        let mut at = GLOBAL_HEADER_LEN;
        while at < b.len() {
            let incl = le(at + 8);
            let start = at + RECORD_HEADER_LEN;
            let end = start + incl as usize;
            out.push((
                le(at),
                le(at + 4),
                incl,
                le(at + 12),
                b[start..end].to_vec(),
            ));
            at = end;
        }
        assert_eq!(at, b.len(), "no partial record at the end");
        out
    }

    fn base() -> TimeBase {
        TimeBase::new(
            Instant::from_millis(5),
            Duration::new(1_700_000_000, 250_000_000),
        )
    }

    #[test]
    fn global_header_bytes() {
        assert_eq!(
            global_header(65_535, Precision::Micros),
            [
                0xd4, 0xc3, 0xb2, 0xa1, // magic, little-endian
                2, 0, 4, 0, // version 2.4
                0, 0, 0, 0, // thiszone
                0, 0, 0, 0, // sigfigs
                0xff, 0xff, 0, 0, // snaplen
                1, 0, 0, 0, // LINKTYPE_ETHERNET
            ]
        );
        let h = global_header(128, Precision::Nanos);
        assert_eq!(h[0..4], [0x4d, 0x3c, 0xb2, 0xa1]);
        assert_eq!(h[16..20], [128, 0, 0, 0]);
    }

    #[test]
    fn record_header_bytes() {
        let ts = Duration::new(0x0102_0304, 123_456_789);
        assert_eq!(
            record_header(ts, 60, 1514, Precision::Micros),
            [
                0x04, 0x03, 0x02, 0x01, // seconds
                0x40, 0xe2, 0x01, 0x00, // 123456 us
                60, 0, 0, 0, // incl_len
                0xea, 0x05, 0, 0, // orig_len 1514
            ]
        );
        let h = record_header(ts, 60, 60, Precision::Nanos);
        assert_eq!(h[4..8], 123_456_789u32.to_le_bytes());
    }

    #[test]
    fn writer_truncates_to_snaplen_and_keeps_orig_len() {
        let mut w = PcapWriter::new(Vec::new(), 10, Precision::Micros).unwrap();
        let frame: Vec<u8> = (0..100).collect();
        assert_eq!(
            w.write_record(Duration::from_secs(7), &frame, 100).unwrap(),
            26
        );
        w.write_record(Duration::from_secs(8), &frame[..4], 4)
            .unwrap();
        assert_eq!(w.bytes(), 24 + 26 + 20);
        let b = w.into_inner();
        assert_eq!(b.len(), 24 + 26 + 20);
        let recs = parse(&b);
        assert_eq!(recs[0], (7, 0, 10, 100, (0..10).collect()));
        assert_eq!(recs[1], (8, 0, 4, 4, vec![0, 1, 2, 3]));
    }

    #[test]
    fn time_base_maps_the_worker_clock_to_wall_time() {
        let b = base();
        assert_eq!(b.wall_time(Instant::from_millis(5)), b.wall);
        assert_eq!(
            b.wall_time(Instant::from_micros(5_000 + 1_500_001)),
            Duration::new(1_700_000_001, 750_001_000)
        );
        // Before the base (another worker's earlier reading): earlier, never a panic.
        assert_eq!(
            b.wall_time(Instant::from_millis(4)),
            Duration::new(1_700_000_000, 249_000_000)
        );
        assert_eq!(
            TimeBase::new(Instant::from_secs(10), Duration::ZERO).wall_time(Instant::ZERO),
            Duration::ZERO
        );
    }

    #[test]
    fn capture_truncates_and_stop_writes_everything_queued() {
        let buf = Buffer::default();
        let cfg = CaptureConfig {
            snaplen: 64,
            precision: Precision::Nanos,
            queue_depth: 1_000,
        };
        let pcap = PcapFile::with_writer(buf.clone(), "buffer", cfg).unwrap();
        let cap = pcap.capture(base());
        let frame: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
        for i in 0..500 {
            let now = Instant::from_micros(5_000 + i);
            assert_eq!(
                cap.record(now, &frame[..60 + (i as usize % 100)]),
                Recorded::Queued
            );
        }
        let stats = pcap.stop().unwrap();
        assert_eq!(stats.written, 500);
        assert_eq!(stats.dropped, 0);
        let b = buf.bytes();
        assert_eq!(stats.bytes, b.len() as u64);
        assert_eq!(b[..24], global_header(64, Precision::Nanos));
        let recs = parse(&b);
        assert_eq!(recs.len(), 500);
        for (i, (s, ns, incl, orig, data)) in recs.into_iter().enumerate() {
            let len = 60 + i % 100;
            assert_eq!((s, ns), (1_700_000_000, 250_000_000 + i as u32 * 1_000));
            assert_eq!(orig as usize, len);
            assert_eq!(incl as usize, len.min(64));
            assert_eq!(data, frame[..len.min(64)]);
        }
        // The handle outlives the file: refused, not queued, not counted.
        assert_eq!(
            cap.record(Instant::from_millis(6), &frame),
            Recorded::Closed
        );
        assert!(cap.is_closed());
    }

    #[test]
    fn full_queue_drops_and_counts_without_blocking() {
        let buf = Buffer::default();
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        let gated = Gated {
            inner: buf.clone(),
            flushes: 0,
            entered: entered_tx,
            release: release_rx,
        };
        let cfg = CaptureConfig {
            queue_depth: 8,
            ..CaptureConfig::default()
        };
        let pcap = PcapFile::with_writer(gated, "gated", cfg).unwrap();
        entered
            .recv_timeout(Duration::from_secs(10))
            .expect("the writer thread reaches its idle flush");
        let cap = pcap.capture(base());
        let outcomes: Vec<Recorded> = (0..20u8)
            .map(|i| cap.record(Instant::from_millis(5), &[i; 60]))
            .collect();
        assert!(outcomes[..8].iter().all(|&o| o == Recorded::Queued));
        assert!(outcomes[8..].iter().all(|&o| o == Recorded::Dropped));
        assert_eq!(pcap.stats().dropped, 12);
        release.send(()).unwrap();
        let stats = pcap.stop().unwrap();
        assert_eq!((stats.written, stats.dropped), (8, 12));
        let recs = parse(&buf.bytes());
        let firsts: Vec<u8> = recs.iter().map(|r| r.4[0]).collect();
        assert_eq!(firsts, (0..8).collect::<Vec<u8>>(), "the first 8, in order");
    }

    #[test]
    fn dropping_the_file_writes_what_was_queued() {
        let buf = Buffer::default();
        let pcap = PcapFile::with_writer(buf.clone(), "buffer", CaptureConfig::default()).unwrap();
        let cap = pcap.capture(base());
        for _ in 0..100 {
            assert_eq!(
                cap.record(Instant::from_millis(5), &[7; 100]),
                Recorded::Queued
            );
        }
        drop(pcap);
        assert_eq!(parse(&buf.bytes()).len(), 100);
        assert_eq!(
            cap.record(Instant::from_millis(5), &[7; 100]),
            Recorded::Closed
        );
    }

    #[test]
    fn write_failure_closes_and_is_reported() {
        // Room for the global header and one 100-byte record.
        let out = Failing { ok: 24 + 16 + 100 };
        let cfg = CaptureConfig {
            queue_depth: 16,
            ..CaptureConfig::default()
        };
        let pcap = PcapFile::with_writer(out, "failing", cfg).unwrap();
        let cap = pcap.capture(base());
        for _ in 0..3 {
            let _ = cap.record(Instant::from_millis(5), &[1; 100]);
        }
        let err = pcap.stop().unwrap_err();
        let CaptureError::Write { stats, source, .. } = &err else {
            panic!("a write error, not {err:?}");
        };
        assert_eq!(source.kind(), io::ErrorKind::StorageFull);
        // Records reach the file's buffer before its flush fails; what came after the
        // failure was dropped or refused.
        assert!(stats.written + stats.dropped <= 3, "{stats:?}");
        assert!(err.to_string().contains("failing"), "{err}");
        assert!(cap.is_closed());
    }

    #[test]
    fn bad_settings_and_paths_are_clear_errors() {
        let bad = CaptureConfig {
            snaplen: 0,
            ..CaptureConfig::default()
        };
        let e = PcapFile::with_writer(Vec::new(), "x", bad).unwrap_err();
        assert!(matches!(e, CaptureError::InvalidConfig(_)), "{e:?}");
        let bad = CaptureConfig {
            queue_depth: 0,
            ..CaptureConfig::default()
        };
        assert!(PcapFile::with_writer(Vec::new(), "x", bad).is_err());
        let path = std::env::temp_dir().join("msgr-pcap-no-such-dir/x/y.pcap");
        let e = PcapFile::create(&path, CaptureConfig::default()).unwrap_err();
        assert!(matches!(e, CaptureError::Create { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("cannot create capture file") && msg.contains("y.pcap"),
            "{msg}"
        );
    }
}
