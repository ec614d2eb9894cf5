//! A DPDK peer in a second process, driven from the first: the plumbing shared by the
//! tests and benchmarks that run two EALs (one per process) over a virtual link.
//!
//! [`PeerProcess::spawn`] starts the child with piped stdin, stdout and stderr. Two reader
//! threads forward its output lines, tagged `out: ` or `err: `, through a channel; the
//! parent collects them into a log. The child reports its progress in status lines on its
//! stdout, `<marker> <tag>[:] <rest>` (the marker names the peer, e.g. `stack-peer:`), and
//! reads commands, one a line, on its stdin. Every wait is bounded and fails early if the
//! child exits or prints a status line with one of the tags set by
//! [`PeerProcess::abort_on`].
//!
//! Dropping a `PeerProcess` closes the child's stdin, kills it if it is still running, reaps
//! it, joins the readers and only then removes the child's EAL runtime directory (its
//! `--file-prefix` is derived from its pid, see [`RuntimeDir`]).
//!
//! Errors are `String`s meant for people: each names the peer and ends with what it printed
//! last ([`PeerProcess::tail`]).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::dpdk_files::RuntimeDir;

/// How long a wait sleeps (or waits for a line) between two looks at the child.
const POLL: Duration = Duration::from_millis(5);

/// A child process running a DPDK peer; see the [module documentation](self).
#[derive(Debug)]
pub struct PeerProcess {
    /// What messages call the child, e.g. `B`.
    name: String,
    /// The start of the child's status lines.
    marker: String,
    /// Status-line tags that end every wait with an error.
    abort_tags: Vec<String>,
    /// How many of the last lines [`Self::tail`] gives.
    context: usize,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    readers: Vec<JoinHandle<()>>,
    log: Vec<String>,
    status: Option<ExitStatus>,
    /// The child's runtime directory guard: dropped after the kill (the field comes last).
    runtime: RuntimeDir,
}

impl PeerProcess {
    /// Spawns `cmd` (its stdin, stdout and stderr piped) as the peer called `name` in
    /// messages, whose status lines start with `marker`. `runtime_prefix` maps the child's
    /// pid to its EAL `--file-prefix`, whose runtime directory goes when this is dropped.
    pub fn spawn(
        mut cmd: Command,
        name: &str,
        marker: &str,
        runtime_prefix: impl FnOnce(u32) -> String,
    ) -> io::Result<Self> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let runtime = RuntimeDir::new(&runtime_prefix(child.id()));
        let (lines, readers) = forward_lines(&mut child);
        let stdin = child.stdin.take();
        Ok(Self {
            name: name.to_owned(),
            marker: marker.to_owned(),
            abort_tags: Vec::new(),
            context: 4,
            child,
            stdin,
            lines,
            readers,
            log: Vec::new(),
            status: None,
            runtime,
        })
    }

    /// Makes a status line `tag` end every wait (and [`Self::check_running`]) with an error,
    /// e.g. `error` for a child that reports a failure and then waits to be told to go.
    #[must_use]
    pub fn abort_on(mut self, tag: &str) -> Self {
        self.abort_tags.push(tag.to_owned());
        self
    }

    /// How many of the child's last lines [`Self::tail`] (and so every error) shows:
    /// 4 unless set; `usize::MAX` for all of them.
    #[must_use]
    pub fn context_lines(mut self, n: usize) -> Self {
        self.context = n;
        self
    }

    /// The child's pid.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The child's EAL `--file-prefix`, as `runtime_prefix` made it.
    pub fn runtime_prefix(&self) -> &str {
        self.runtime.prefix()
    }

    /// Takes in the lines printed so far.
    fn drain(&mut self) {
        while let Ok(l) = self.lines.try_recv() {
            self.log.push(l);
        }
    }

    /// The rest of the child's first status line `<marker> <tag>` (a leading `:` and
    /// blanks trimmed), if it printed one. The status line may follow other output on
    /// the same line (libtest's `test name ... `, say).
    pub fn seen(&mut self, tag: &str) -> Option<String> {
        self.drain();
        let head = format!("{} {tag}", self.marker);
        self.log
            .iter()
            .filter_map(|l| l.strip_prefix("out: "))
            .find_map(|l| l.find(&head).map(|at| &l[at + head.len()..]))
            .map(|rest| rest.trim_start_matches(':').trim().to_owned())
    }

    /// The child's exit status, once it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// The first status line with an abort tag, as `tag: rest`.
    fn aborted(&mut self) -> Option<String> {
        for tag in self.abort_tags.clone() {
            if let Some(rest) = self.seen(&tag) {
                return Some(format!("{tag}: {rest}"));
            }
        }
        None
    }

    /// For messages: the child's abort line if it printed one, else its last lines
    /// ([`Self::context_lines`]) joined by ` | `.
    pub fn tail(&mut self) -> String {
        if let Some(line) = self.aborted() {
            return line;
        }
        let n = self.log.len();
        self.log[n.saturating_sub(self.context)..].join(" | ")
    }

    /// Everything the child printed so far, joined by ` | `.
    pub fn output(&mut self) -> String {
        self.drain();
        self.log.join(" | ")
    }

    /// `Err` (starting with `what`) if the child has exited or printed an abort line.
    pub fn check_running(&mut self, what: &str) -> Result<(), String> {
        if let Some(status) = self.exited() {
            self.join_readers();
            let tail = self.tail();
            let name = &self.name;
            return Err(format!("{what}: {name} exited ({status}): {tail}"));
        }
        if let Some(line) = self.aborted() {
            return Err(format!("{what}: {} reported {line}", self.name));
        }
        Ok(())
    }

    /// Waits (at most `limit`) for the child's status line `tag`; the rest of it.
    // A driver for tests and benchmarks: its deadlines are on the real clock.
    #[allow(clippy::disallowed_methods)]
    pub fn wait_line(&mut self, tag: &str, limit: Duration) -> Result<String, String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(rest) = self.seen(tag) {
                return Ok(rest);
            }
            if let Err(e) = self.check_running(&format!("waiting for {}'s {tag:?}", self.name)) {
                // A child that printed the line and exited at once: its reader may have
                // passed the line on only now (an exited child's output is all in here).
                return self.seen(tag).ok_or(e);
            }
            if Instant::now() > deadline {
                let tail = self.tail();
                let name = &self.name;
                return Err(format!("{name}: no {tag:?} within {limit:?}: {tail}"));
            }
            if let Ok(l) = self.lines.recv_timeout(POLL) {
                self.log.push(l);
            }
        }
    }

    /// Waits (at most `limit`) for the file `path`, e.g. the unix socket of the child's
    /// virtio-user server, which its EAL creates while probing the device.
    // A driver for tests and benchmarks: its deadlines are on the real clock.
    #[allow(clippy::disallowed_methods)]
    pub fn wait_socket(&mut self, path: &Path, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        while !path.exists() {
            self.check_running(&format!("waiting for {}'s socket", self.name))?;
            if Instant::now() > deadline {
                let tail = self.tail();
                let (path, name) = (path.display(), &self.name);
                return Err(format!(
                    "no socket {path} from {name} within {limit:?}: {tail}"
                ));
            }
            thread::sleep(POLL);
        }
        Ok(())
    }

    /// Sends `line` (and a newline) to the child's stdin.
    pub fn send_line(&mut self, line: &str) -> Result<(), String> {
        let name = &self.name;
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| format!("{name}'s stdin is closed"))?;
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("telling {name} {line:?}: {e}"))
    }

    /// Waits (at most `limit`) for the child to exit; its status. Its output is all in
    /// once this returns `Ok`.
    // A driver for tests and benchmarks: its deadlines are on the real clock.
    #[allow(clippy::disallowed_methods)]
    pub fn wait_exit(&mut self, limit: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.exited() {
                self.join_readers();
                return Ok(s);
            }
            if Instant::now() > deadline {
                let tail = self.tail();
                let name = &self.name;
                return Err(format!("{name} did not exit within {limit:?}: {tail}"));
            }
            thread::sleep(POLL);
        }
    }

    /// Waits for the reader threads (they end when the child's pipes close, i.e. once it
    /// and whatever inherited them have exited) and takes in the rest of its output.
    pub fn join_readers(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        self.drain();
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        self.stdin = None;
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.join_readers();
        // (`runtime` is dropped after this: the child's runtime directory goes.)
    }
}

/// Takes `child`'s stdout and stderr (where piped) and forwards their lines, tagged `out: `
/// and `err: `, through a channel from one reader thread each. The threads end at the end
/// of their pipe, or when the receiver is gone.
pub fn forward_lines(child: &mut Child) -> (Receiver<String>, Vec<JoinHandle<()>>) {
    let (tx, lines) = mpsc::channel();
    let mut readers = Vec::new();
    let out = child
        .stdout
        .take()
        .map(|r| Box::new(r) as Box<dyn Read + Send>);
    let err = child
        .stderr
        .take()
        .map(|r| Box::new(r) as Box<dyn Read + Send>);
    for (tag, pipe) in [("out", out), ("err", err)] {
        let Some(pipe) = pipe else { continue };
        let tx = tx.clone();
        readers.push(thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(format!("{tag}: {line}")).is_err() {
                    return;
                }
            }
        }));
    }
    (lines, readers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> PeerProcess {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        PeerProcess::spawn(cmd, "P", "peer:", |pid| format!("msgr-peer-test-{pid}"))
            .expect("spawn sh")
    }

    #[test]
    fn reads_status_lines_and_commands() {
        let mut p = sh("echo 'noise peer: ready: 1 2'; read l; echo \"peer: got $l\"; exit 3");
        assert_eq!(
            p.wait_line("ready", Duration::from_secs(10)),
            Ok("1 2".into())
        );
        p.send_line("hello").unwrap();
        assert_eq!(
            p.wait_line("got", Duration::from_secs(10)),
            Ok("hello".into())
        );
        let status = p.wait_exit(Duration::from_secs(10)).unwrap();
        assert_eq!(status.code(), Some(3));
        assert!(p.check_running("after").unwrap_err().contains("P exited"));
        assert!(p.runtime_prefix().ends_with(&p.id().to_string()));
    }

    #[test]
    fn abort_lines_and_timeouts_end_waits() {
        let mut p = sh("echo 'peer: error: broken' >&1; exec sleep 30").abort_on("error");
        let e = p.wait_line("ready", Duration::from_secs(10)).unwrap_err();
        assert!(e.contains("P reported error: broken"), "{e}");
        let mut p = sh("echo something; exec sleep 30");
        let e = p.wait_exit(Duration::from_millis(50)).unwrap_err();
        assert!(e.contains("P did not exit"), "{e}");
        drop(p); // killed and reaped, not waited for
    }
}
