//! [`MonFixture`]: a real Pacific `ceph-mon` for one test, on loopback, with auth none.
//!
//! Recipe (docs/ceph-msgr-wire.md §8), in a fresh [`TempDir`] per fixture:
//!
//! 1. two free loopback ports (v2, v1) and a random v4-style fsid;
//! 2. `ceph.conf` with auth none everywhere and every path (mon data, run dir, log, admin
//!    socket, pid file, crash dir) inside the temp dir, so nothing touches /etc, /var/lib/ceph,
//!    /var/log/ceph or /var/run/ceph;
//! 3. `monmaptool --create --fsid F --addv a '[v2:127.0.0.1:P2,v1:127.0.0.1:P1]'
//!    --enable-all-features --set-min-mon-release pacific monmap` (v1-only: `'[v1:...]'`);
//! 4. `ceph-mon -c ceph.conf --mkfs -i a --monmap monmap --keyring /dev/null` (with auth none
//!    the mon needs no key: an empty keyring is enough, no `ceph-authtool`);
//! 5. `ceph-mon -c ceph.conf -i a -f` as a child (stdout/stderr to files in the temp dir),
//!    wrapped in `timeout --foreground -k 5 <max_lifetime>` so that a mon outlives a
//!    SIGKILLed test run by at most that long;
//! 6. readiness: the v1 port sends the 9-byte banner `ceph v027` (and, with v2, the v2 port its
//!    `ceph v2\n`), then the admin socket's `mon_status` reports `"state":"leader"` (a single
//!    mon has then formed quorum by itself). The admin socket is spoken directly over a Unix
//!    socket, so the `ceph` CLI (package ceph-common) is not needed.
//!
//! If the ports were taken in the meantime (`ms_bind_retry_count = 1` makes the mon exit at
//! once), the whole attempt is redone with new ports, up to 3 times. If the mon exits for any
//! other reason, the error carries the tail of its log and its stderr.
//!
//! `Drop` stops the mon (SIGTERM, bounded wait, SIGKILL), reaps it and removes the temp dir
//! (unless `MSGR_KEEP_TMP=1`); on a panicking thread it first prints the tail of the mon log.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{process_alive, process_name, run_ok, skip, tail, terminate, wait_until, TempDir};

/// The msgr v1 banner a mon sends first on its v1 port.
pub(crate) const BANNER_V1: &[u8; 9] = b"ceph v027";
/// The start of the msgr v2 banner (`ceph v2\n`, followed by a length and feature bits).
pub(crate) const BANNER_V2: &[u8; 8] = b"ceph v2\n";

/// How often a start is retried with new ports when a port was taken meanwhile.
const BIND_ATTEMPTS: usize = 3;
/// Bound for `monmaptool` and `ceph-mon --mkfs`.
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound for the orderly shutdown of the mon before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Options for [`MonFixture`]; obtain with [`MonFixture::builder`].
#[derive(Clone, Debug)]
pub(crate) struct MonBuilder {
    v2: bool,
    startup_timeout: Duration,
    max_lifetime: Duration,
    extra_conf: Vec<(String, String)>,
    /// Run inside this network namespace, on this address (fixed ports 3300/6789).
    netns: Option<(String, Ipv4Addr)>,
}

impl Default for MonBuilder {
    fn default() -> Self {
        Self {
            v2: true,
            startup_timeout: Duration::from_secs(20),
            max_lifetime: Duration::from_secs(900),
            extra_conf: Vec::new(),
            netns: None,
        }
    }
}

impl MonBuilder {
    /// With `false`, the mon has only a v1 address (`--addv a '[v1:...]'`,
    /// `ms_bind_msgr2 = false`): for tests that must not hand a v2 address to a client, since a
    /// real client moves to msgr v2 once its monmap lists one. Default `true` (v2 + v1).
    pub(crate) fn v2(mut self, enabled: bool) -> Self {
        self.v2 = enabled;
        self
    }

    /// Bound for the mon to answer on its ports and reach quorum (default 20 s).
    pub(crate) fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// The mon is killed by `timeout(1)` after this long even if the test process dies without
    /// running `Drop` (default 15 min). Make it longer for long soak tests.
    pub(crate) fn max_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_lifetime = lifetime;
        self
    }

    /// Runs the mon inside network namespace `ns` (through `ip netns exec`) on `ip` with
    /// Ceph's default ports, 3300 and 6789 (the namespace is the test's: nothing else binds
    /// there). The test process cannot reach it over TCP, so readiness is judged by the admin
    /// socket alone (quorum implies bound ports).
    pub(crate) fn netns(mut self, ns: &str, ip: Ipv4Addr) -> Self {
        self.netns = Some((ns.to_owned(), ip));
        self
    }

    /// An extra `[global]` option, e.g. `.conf("debug_ms", "20")` or
    /// `.conf("ms_inject_socket_failures", "100")`. Later values override the fixture's.
    pub(crate) fn conf(mut self, key: &str, value: &str) -> Self {
        self.extra_conf.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Starts the mon and waits until it is ready (see the module docs).
    pub(crate) fn start(self) -> Result<MonFixture, String> {
        MonFixture::check()?;
        let mut errors = Vec::new();
        for attempt in 1..=BIND_ATTEMPTS {
            match self.try_start() {
                Ok(mon) => return Ok(mon),
                Err(StartError::PortTaken(e)) => {
                    errors.push(format!("attempt {attempt}: {e}"));
                }
                Err(StartError::Other(e)) => return Err(e),
            }
        }
        Err(format!(
            "ceph-mon could not bind its ports: {}",
            errors.join("; ")
        ))
    }

    fn try_start(&self) -> Result<MonFixture, StartError> {
        let began = Instant::now();
        let dir = TempDir::new("mon")?;
        let (ip, ports) = match &self.netns {
            Some((_, ip)) => (*ip, vec![3300, 6789]),
            None => (Ipv4Addr::LOCALHOST, super::free_loopback_ports(2)?),
        };
        let v1 = SocketAddr::V4(SocketAddrV4::new(ip, ports[1]));
        let v2 = self
            .v2
            .then(|| SocketAddr::V4(SocketAddrV4::new(ip, ports[0])));
        let addrvec = match v2 {
            Some(v2) => format!("[v2:{v2},v1:{v1}]"),
            None => format!("[v1:{v1}]"),
        };
        let fsid = random_uuid()?;
        let fsid_str = format_uuid(&fsid);
        let d = dir.path().to_path_buf();
        let asok = d.join("a.asok");
        // sun_path is 108 bytes including the NUL: a long TMPDIR would silently lose the
        // admin socket (the mon only logs the failure).
        if asok.as_os_str().len() > 100 {
            return Err(format!(
                "admin socket path too long for a Unix socket: {}",
                asok.display()
            )
            .into());
        }

        let mut conf = vec![
            ("fsid", fsid_str.clone()),
            ("mon_host", addrvec.clone()),
            ("mon_initial_members", MonFixture::NAME.to_owned()),
            ("auth_cluster_required", "none".to_owned()),
            ("auth_service_required", "none".to_owned()),
            ("auth_client_required", "none".to_owned()),
            ("ms_bind_msgr2", self.v2.to_string()),
            ("ms_bind_ipv4", "true".to_owned()),
            ("ms_bind_ipv6", "false".to_owned()),
            // Fail at once if a port was taken meanwhile (the default retries 3 x 5 s).
            ("ms_bind_retry_count", "1".to_owned()),
            ("ms_bind_retry_delay", "1".to_owned()),
            ("mon_data", path_str(&d.join("data"))),
            ("run_dir", path_str(&d)),
            ("admin_socket", path_str(&asok)),
            ("pid_file", path_str(&d.join("a.pid"))),
            ("crash_dir", path_str(&d.join("crash"))),
            ("log_file", path_str(&d.join("mon.a.log"))),
            ("log_to_file", "true".to_owned()),
            ("log_to_stderr", "false".to_owned()),
            ("err_to_stderr", "true".to_owned()),
            ("mon_cluster_log_to_file", "false".to_owned()),
            ("mon_cluster_log_file", path_str(&d.join("cluster.log"))),
            // The mon shuts itself down when its disk has < 5 % free; a test must not care.
            ("mon_data_avail_crit", "0".to_owned()),
            ("mon_data_avail_warn", "0".to_owned()),
            // rocksdb logs its options and statistics at level 4 (~25 KB per start).
            ("debug_rocksdb", "1/5".to_owned()),
        ];
        conf.extend(self.extra_conf.iter().map(|(k, v)| (k.as_str(), v.clone())));
        let mut text = String::from("# written by msgr/tests/support/mon.rs\n[global]\n");
        for (k, v) in &conf {
            let _ = writeln!(text, "{k} = {v}");
        }
        let conf_path = d.join("ceph.conf");
        std::fs::write(&conf_path, text)
            .map_err(|e| format!("writing {}: {e}", conf_path.display()))?;

        let monmap = d.join("monmap");
        run_ok(
            Command::new("monmaptool")
                .args([
                    "--create",
                    "--fsid",
                    &fsid_str,
                    "--addv",
                    MonFixture::NAME,
                    &addrvec,
                ])
                .args(["--enable-all-features", "--set-min-mon-release", "pacific"])
                .arg(&monmap),
            TOOL_TIMEOUT,
        )?;
        run_ok(
            Command::new("ceph-mon")
                .arg("-c")
                .arg(&conf_path)
                .args(["--mkfs", "-i", MonFixture::NAME, "--monmap"])
                .arg(&monmap)
                .args(["--keyring", "/dev/null"]),
            TOOL_TIMEOUT,
        )?;

        let netns = self.netns.as_ref().map(|(ns, _)| ns.as_str());
        let child = spawn_mon(&conf_path, &d, self.max_lifetime, netns)?;
        let mut mon = MonFixture {
            dir,
            child: Some(child),
            fsid,
            fsid_str,
            v1,
            v2,
            mon_host: addrvec,
            mon_pid: None,
            startup: Duration::ZERO,
            reachable: netns.is_none(),
        };
        match mon.wait_ready(self.startup_timeout) {
            Ok(()) => {
                mon.startup = began.elapsed();
                Ok(mon)
            }
            Err(e) => {
                let exited = mon
                    .child
                    .as_mut()
                    .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
                let log = log_excerpt(&mon.log_path(), 30);
                let stderr = tail(&mon.dir().join("stderr.log"), 30);
                let taken = log.contains("Address already in use")
                    || stderr.contains("Address already in use");
                let msg = format!(
                    "ceph-mon in {} did not become ready: {e}\n--- stderr ---\n{stderr}\n--- mon log (last {} entries) ---\n{log}",
                    mon.dir().display(),
                    30
                );
                drop(mon); // stops the child, removes the dir
                if exited && taken {
                    Err(StartError::PortTaken(msg))
                } else {
                    Err(StartError::Other(msg))
                }
            }
        }
    }
}

/// Why one start attempt failed: a port race (retry with new ports) or anything else.
enum StartError {
    PortTaken(String),
    Other(String),
}

impl From<String> for StartError {
    fn from(e: String) -> Self {
        Self::Other(e)
    }
}

/// `[timeout --foreground -k 5 <lifetime>] ceph-mon -c <conf> -i a -f`, output to files.
fn spawn_mon(
    conf: &Path,
    dir: &Path,
    lifetime: Duration,
    netns: Option<&str>,
) -> Result<Child, String> {
    let file = |name: &str| {
        std::fs::File::create(dir.join(name))
            .map_err(|e| format!("creating {name} in {}: {e}", dir.display()))
    };
    let mut cmd = if skip::which("timeout").is_some() {
        // --foreground: stay in the test's process group (Ctrl-C reaches the mon too);
        // timeout forwards our SIGTERM to the mon and SIGKILLs it 5 s later if still alive.
        let mut c = Command::new("timeout");
        c.args([
            "--foreground",
            "-k",
            "5",
            &format!("{}s", lifetime.as_secs().max(1)),
        ]);
        if let Some(ns) = netns {
            c.args(["ip", "netns", "exec", ns]);
        }
        c.arg("ceph-mon");
        c
    } else if let Some(ns) = netns {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, "ceph-mon"]);
        c
    } else {
        Command::new("ceph-mon")
    };
    cmd.arg("-c").arg(conf).args(["-i", MonFixture::NAME, "-f"]);
    cmd.stdin(Stdio::null())
        .stdout(file("stdout.log")?)
        .stderr(file("stderr.log")?);
    cmd.spawn().map_err(|e| format!("spawning {cmd:?}: {e}"))
}

/// A running single-mon Pacific cluster (auth none) on loopback; see the module docs.
#[derive(Debug)]
pub(crate) struct MonFixture {
    dir: TempDir,
    /// `timeout` (or `ceph-mon` itself without `timeout`); `None` once stopped.
    child: Option<Child>,
    fsid: [u8; 16],
    fsid_str: String,
    v1: SocketAddr,
    v2: Option<SocketAddr>,
    mon_host: String,
    /// Whether the test process can reach its ports (not inside a namespace).
    reachable: bool,
    /// The `ceph-mon` process (from its pid file), which may differ from `child`.
    mon_pid: Option<u32>,
    startup: Duration,
}

impl MonFixture {
    /// The mon's name (`mon.a`, rank 0).
    pub(crate) const NAME: &'static str = "a";

    /// Options for a mon; `MonFixture::builder().v2(false).start()` for a v1-only mon.
    pub(crate) fn builder() -> MonBuilder {
        MonBuilder::default()
    }

    /// Starts a mon with v2 and v1 addresses and default options.
    pub(crate) fn start() -> Result<Self, String> {
        MonBuilder::default().start()
    }

    /// The skip check for tests using this fixture: `ceph-mon` and `monmaptool` in `$PATH`.
    pub(crate) fn check() -> Result<(), String> {
        skip::programs(&["ceph-mon", "monmaptool"])
    }

    /// The cluster fsid as the 16 raw bytes that go on the wire.
    pub(crate) fn fsid(&self) -> [u8; 16] {
        self.fsid
    }

    /// The cluster fsid as text (`xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`).
    pub(crate) fn fsid_str(&self) -> &str {
        &self.fsid_str
    }

    /// The msgr v1 address (127.0.0.1, nonce 0).
    pub(crate) fn v1_addr(&self) -> SocketAddr {
        self.v1
    }

    /// The msgr v2 address, `None` for a v1-only mon.
    pub(crate) fn v2_addr(&self) -> Option<SocketAddr> {
        self.v2
    }

    /// The `mon_host` value: `[v2:127.0.0.1:P2,v1:127.0.0.1:P1]` or `[v1:127.0.0.1:P1]`.
    pub(crate) fn mon_host(&self) -> &str {
        &self.mon_host
    }

    /// The mon's name, `"a"`.
    pub(crate) fn name(&self) -> &'static str {
        Self::NAME
    }

    /// The temporary directory holding conf, monmap, mon data, logs and admin socket.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `ceph.conf` the mon runs with (a real `ceph -c <conf>` client can use it too).
    pub(crate) fn conf_path(&self) -> PathBuf {
        self.dir().join("ceph.conf")
    }

    /// The mon's log file.
    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir().join("mon.a.log")
    }

    /// The mon's admin socket.
    pub(crate) fn admin_socket_path(&self) -> PathBuf {
        self.dir().join("a.asok")
    }

    /// The pid of the `ceph-mon` process.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.mon_pid
    }

    /// How long the start took (temp dir to quorum).
    pub(crate) fn startup_time(&self) -> Duration {
        self.startup
    }

    /// The last `entries` log entries of the mon (timestamped lines only, rocksdb's lines and
    /// multi-line statistics dumps skipped), for assertion messages. The raw log is at
    /// [`MonFixture::log_path`].
    pub(crate) fn log_tail(&self, entries: usize) -> String {
        log_excerpt(&self.log_path(), entries)
    }

    /// Runs an admin-socket command (JSON, e.g. `{"prefix":"mon_status"}`) and returns the
    /// reply. Protocol: the command followed by a NUL byte; the reply is a big-endian u32
    /// length and that many bytes. Bounded by 5 s socket timeouts.
    pub(crate) fn admin_command(&self, json: &str) -> Result<String, String> {
        admin_command(&self.admin_socket_path(), json)
    }

    /// `mon_status` through the admin socket (JSON text).
    pub(crate) fn mon_status(&self) -> Result<String, String> {
        self.admin_command(r#"{"prefix":"mon_status"}"#)
    }

    /// Stops the mon now (as `Drop` does) and reports problems instead of printing them.
    pub(crate) fn stop(mut self) -> Result<(), String> {
        self.shutdown()
    }

    /// Polls until the banners arrive and the mon is leader, or it exits, or `timeout`.
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let poll = Duration::from_millis(20);
        let left = || deadline.saturating_duration_since(Instant::now());
        let v1 = self.v1;
        let (v1_check, v2_check) = if self.reachable {
            (Some(v1), self.v2)
        } else {
            (None, None)
        };
        if let Some(v1) = v1_check {
            wait_until("the v1 banner", left(), poll, || {
                self.check_running()?;
                Ok(read_banner(v1, BANNER_V1.len())
                    .ok()
                    .filter(|b| b == BANNER_V1))
            })?;
        }
        if let Some(v2) = v2_check {
            wait_until("the v2 banner", left(), poll, || {
                self.check_running()?;
                Ok(read_banner(v2, BANNER_V2.len())
                    .ok()
                    .filter(|b| b == BANNER_V2))
            })?;
        }
        let asok = self.admin_socket_path();
        wait_until("quorum (mon_status state leader)", left(), poll, || {
            self.check_running()?;
            Ok(admin_command(&asok, r#"{"prefix":"mon_status"}"#)
                .ok()
                .filter(|s| {
                    s.split_whitespace()
                        .collect::<String>()
                        .contains(r#""state":"leader""#)
                }))
        })?;
        let pid_file = self.dir().join("a.pid");
        self.mon_pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        if self.mon_pid.is_none() {
            return Err(format!("no pid in {}", pid_file.display()));
        }
        Ok(())
    }

    /// An error if the mon's process has exited.
    fn check_running(&mut self) -> Result<(), String> {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => Ok(()),
            Some(Ok(Some(status))) => Err(format!("ceph-mon exited early ({status})")),
            Some(Err(e)) => Err(format!("waiting for ceph-mon: {e}")),
            None => Err("ceph-mon was stopped".to_owned()),
        }
    }

    fn shutdown(&mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let result = terminate(&mut child, "TERM", STOP_GRACE).map(drop);
        // `timeout` reaps ceph-mon before it exits, so after an orderly stop the mon is gone.
        // Only a SIGKILLed wrapper leaves an orphaned mon behind: find it by pid, verified by
        // its command line (which names this fixture's conf file), and kill it (bounded).
        let Some(pid) = self.mon_pid else {
            return result;
        };
        if !self.is_our_mon(pid) {
            return result;
        }
        let _ = super::send_signal(pid, "KILL");
        let gone = wait_until(
            "the orphaned ceph-mon to exit",
            Duration::from_secs(5),
            Duration::from_millis(20),
            || Ok((!process_alive(pid)).then_some(())),
        );
        Err(format!(
            "ceph-mon pid {pid} outlived its wrapper ({}); SIGKILL: {}",
            result.err().unwrap_or_default(),
            gone.err().unwrap_or_else(|| "gone".to_owned())
        ))
    }

    /// True if `pid` is a live `ceph-mon` started with this fixture's conf file.
    fn is_our_mon(&self, pid: u32) -> bool {
        let conf = self.conf_path();
        process_alive(pid)
            && process_name(pid).as_deref() == Some("ceph-mon")
            && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                c.split(|&b| b == 0)
                    .any(|arg| arg == conf.as_os_str().as_encoded_bytes())
            })
    }
}

impl Drop for MonFixture {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- ceph-mon log tail ({}; MSGR_KEEP_TMP=1 keeps it) ---\n{}",
                self.log_path().display(),
                self.log_tail(20)
            );
        }
        if let Err(e) = self.shutdown() {
            eprintln!(
                "warning: stopping ceph-mon in {}: {e}",
                self.dir().display()
            );
        }
        // `self.dir` (TempDir) is dropped after this and removes the directory.
    }
}

/// Connects to `addr` and reads exactly `len` bytes (a banner), all bounded by 1 s timeouts.
pub(crate) fn read_banner(addr: SocketAddr, len: usize) -> Result<Vec<u8>, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| format!("set_read_timeout: {e}"))?;
    let mut buf = vec![0; len];
    s.read_exact(&mut buf)
        .map_err(|e| format!("reading {len} bytes from {addr}: {e}"))?;
    Ok(buf)
}

/// One admin-socket request/reply; see [`MonFixture::admin_command`].
pub(crate) fn admin_command(asok: &Path, json: &str) -> Result<String, String> {
    let ctx =
        |what: &str, e: std::io::Error| format!("admin socket {}: {what}: {e}", asok.display());
    let mut s = UnixStream::connect(asok).map_err(|e| ctx("connect", e))?;
    let timeout = Some(Duration::from_secs(5));
    s.set_read_timeout(timeout)
        .map_err(|e| ctx("set_read_timeout", e))?;
    s.set_write_timeout(timeout)
        .map_err(|e| ctx("set_write_timeout", e))?;
    let mut req = json.as_bytes().to_vec();
    req.push(0);
    s.write_all(&req).map_err(|e| ctx("write", e))?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).map_err(|e| ctx("read length", e))?;
    let len = u32::from_be_bytes(len) as usize;
    if len > 64 << 20 {
        return Err(format!(
            "admin socket {}: absurd reply length {len}",
            asok.display()
        ));
    }
    let mut body = vec![0; len];
    s.read_exact(&mut body).map_err(|e| ctx("read reply", e))?;
    String::from_utf8(body)
        .map_err(|e| format!("admin socket {}: reply not UTF-8: {e}", asok.display()))
}

/// 16 random bytes from `/dev/urandom` with the UUID version 4 and variant bits set.
pub(crate) fn random_uuid() -> Result<[u8; 16], String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| format!("reading /dev/urandom: {e}"))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    Ok(b)
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lowercase (the form Ceph prints and parses).
pub(crate) fn format_uuid(b: &[u8; 16]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Parses the text form back into the 16 wire bytes.
pub(crate) fn parse_uuid(s: &str) -> Result<[u8; 16], String> {
    let hex: Vec<u8> = s.bytes().filter(|&c| c != b'-').collect();
    if hex.len() != 32 || s.len() != 36 {
        return Err(format!("not a UUID: {s:?}"));
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let txt = std::str::from_utf8(pair).map_err(|_| format!("not a UUID: {s:?}"))?;
        out[i] = u8::from_str_radix(txt, 16).map_err(|_| format!("not a UUID: {s:?}"))?;
    }
    Ok(out)
}

/// The last `n` lines of a Ceph log that start with a timestamp (`2026-...`), without
/// rocksdb's chatter.
pub(crate) fn log_excerpt(path: &Path, n: usize) -> String {
    let text = match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => return format!("<{}: {e}>", path.display()),
    };
    let entries: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.len() > 4
                && l.as_bytes()[..4].iter().all(u8::is_ascii_digit)
                && l.as_bytes()[4] == b'-'
        })
        .filter(|l| !l.contains(" rocksdb: "))
        .collect();
    entries[entries.len().saturating_sub(n)..].join("\n")
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}
