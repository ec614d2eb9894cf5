//! `msgr serve` as a child process, for the tests that drive the program.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use msgr::entity::EntityAddr;
use serde_json::Value;

use super::{wait_timeout, wait_until, TempDir};

const MSGR: &str = env!("CARGO_BIN_EXE_msgr");
/// A start-up or shutdown step takes at most this long.
const STEP: Duration = Duration::from_secs(20);

/// `msgr serve` as a child process with an admin socket; stopped (admin `shutdown`, then
/// killed) and reaped on drop, its log printed if the test is failing.
pub(crate) struct Daemon {
    pub(crate) child: Option<Child>,
    pub(crate) addr: EntityAddr,
    pub(crate) asok: PathBuf,
    pub(crate) log: PathBuf,
    pub(crate) dir: TempDir,
}

impl Daemon {
    /// Starts `msgr serve --bind v1:127.0.0.1:0 --admin-socket DIR/osd.asok --run-for 600
    /// ARGS` in a new temporary directory and waits for its `listening on` line and its
    /// admin socket.
    pub(crate) fn start(args: &[&str]) -> Self {
        Self::start_in(TempDir::new("serve").unwrap(), args)
    }

    /// [`Daemon::start`] in `dir` (its admin socket is `dir/osd.asok`).
    pub(crate) fn start_in(dir: TempDir, args: &[&str]) -> Self {
        Self::launch(dir, &[], "v1:127.0.0.1:0", args)
    }

    /// `WRAPPER... msgr serve --bind BIND ...ARGS` in `dir` (a wrapper such as `ip netns exec
    /// NS` must exec msgr, so that the child is msgr itself).
    pub(crate) fn launch(dir: TempDir, wrapper: &[&str], bind: &str, args: &[&str]) -> Self {
        let asok = dir.path().join("osd.asok");
        let asok_s = asok.to_string_lossy().into_owned();
        let mut all = vec!["serve", "--bind", bind, "--admin-socket", &asok_s];
        all.extend(["--run-for", "600"]);
        all.extend(args);
        Self::spawn(dir, wrapper, &all, asok)
    }

    /// `WRAPPER... msgr ARGS` (a `serve` command line whose admin socket is `asok`), waited
    /// for as [`Daemon::launch`] does: e.g. `serve --config FILE`, as a service starts it.
    pub(crate) fn spawn(dir: TempDir, wrapper: &[&str], args: &[&str], asok: PathBuf) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let log = dir
            .path()
            .join(format!("serve-{}.log", N.fetch_add(1, Ordering::Relaxed)));
        let mut cmd = match wrapper.split_first() {
            Some((prog, rest)) => {
                let mut c = Command::new(prog);
                c.args(rest).arg(MSGR);
                c
            }
            None => Command::new(MSGR),
        };
        let mut child = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Reads the first line, then drains stdout so the daemon never blocks on it.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            for _ in lines {}
        });
        let mut d = Self {
            child: Some(child),
            addr: EntityAddr::none(),
            asok,
            log,
            dir,
        };
        let first = match rx.recv_timeout(STEP) {
            Ok(Some(Ok(l))) => l,
            other => panic!(
                "msgr serve printed no address ({other:?}); log:\n{}",
                d.log_text()
            ),
        };
        let addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        d.addr = addr.parse().unwrap();
        assert_ne!(d.addr.port(), 0, "{first}");
        let asok = d.asok.clone();
        wait_until("the admin socket", STEP, Duration::from_millis(10), || {
            Ok(msgr::admin::request(&asok, "version").ok())
        })
        .unwrap();
        d
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn admin(&self, cmd: &str) -> Result<String, String> {
        msgr::admin::request(&self.asok, cmd)
    }

    pub(crate) fn perf(&self) -> Value {
        serde_json::from_str(&self.admin("perf dump").unwrap()).unwrap()
    }

    /// Stops the daemon with the admin `shutdown` command; returns its exit status.
    pub(crate) fn shutdown(mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        self.admin("shutdown").unwrap();
        let status = wait_timeout(&mut child, STEP).unwrap();
        let status = status.unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!("msgr serve did not stop within {STEP:?}")
        });
        assert!(!self.asok.exists(), "the admin socket file was removed");
        status
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if std::thread::panicking() {
            eprintln!(
                "--- msgr serve log ({}) ---\n{}",
                self.dir.path().display(),
                self.log_text()
            );
        }
        let _ = msgr::admin::request(&self.asok, "shutdown");
        if !matches!(
            wait_timeout(&mut child, Duration::from_secs(5)),
            Ok(Some(_))
        ) {
            let _ = child.kill();
            let _ = wait_timeout(&mut child, Duration::from_secs(5));
        }
    }
}
