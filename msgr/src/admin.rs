//! An admin socket like Ceph's: a Unix socket that answers commands such as `perf dump`.
//!
//! # Protocol (Ceph's `AdminSocket`, as the `ceph --admin-daemon` CLI speaks it)
//!
//! - The client connects and sends one command: a JSON object such as
//!   `{"prefix": "perf dump"}` (other keys are the command's arguments, plus an optional
//!   `"format"`), terminated by a NUL byte. A plain line of words, `perf dump\n`, is
//!   accepted too (words after the command's own are its arguments, in order).
//! - The server answers with a big-endian `u32` length and that many bytes (JSON, pretty
//!   printed unless `"format": "json"`), then closes the connection.
//! - `get_command_descriptions` returns Ceph's command table (`{"cmd000": {"sig": [...],
//!   "help": ...}, ...}`), which the `ceph` CLI fetches first to validate what it sends.
//!   `help` lists the commands with their help text.
//! - Errors (unknown command, bad input, a failing handler) are answered, never dropped:
//!   the body is `{"error": "..."}`. [`request`] turns such a reply into `Err`.
//!
//! # Bounds
//!
//! One thread serves clients one at a time. Each connection has read and write timeouts
//! ([`IO_TIMEOUT`]) and a command larger than [`MAX_COMMAND`] is refused, so a stuck or
//! hostile client costs at most a few seconds and a bounded buffer; the handler itself must
//! be quick (it runs on that thread). The thread waits in `epoll` (mio) for a client or a
//! stop request, so [`AdminServer`]'s `Drop` returns promptly: it stops the thread, joins
//! it and removes the socket file. A stale socket file left by a dead process is replaced at
//! start; a live one (another server answers) is an `AddrInUse` error, and a path that is
//! not a socket is never deleted.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mio::net::UnixListener;
use mio::{Events, Interest, Poll, Token, Waker};
use serde_json::{json, Map, Value};
use tracing::{debug, warn};

/// The largest command accepted, in bytes.
pub const MAX_COMMAND: usize = 64 * 1024;
/// Read and write timeout of one client connection (server and [`request`] client).
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest reply [`request`] accepts.
const MAX_REPLY: usize = 64 << 20;

const LISTEN: Token = Token(0);
const WAKE: Token = Token(1);

/// What runs a command: `(prefix, args)` → a JSON reply or an error message. `args` is the
/// JSON object the client sent (including `prefix` and, if given, `format`).
pub type Handler = Arc<dyn Fn(&str, &Value) -> Result<Value, String> + Send + Sync>;

/// One argument of a command (a `CephString`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ArgDesc {
    /// The argument's key in the JSON command.
    pub name: String,
    /// Whether it must be given.
    pub required: bool,
}

/// One command the socket answers, as listed by `help` and `get_command_descriptions`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CommandDesc {
    /// The command words, e.g. `"perf dump"`.
    pub prefix: String,
    /// Its arguments, in positional order.
    pub args: Vec<ArgDesc>,
    /// One line of help.
    pub help: String,
}

impl CommandDesc {
    /// A command without arguments.
    pub fn new(prefix: impl Into<String>, help: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            args: Vec::new(),
            help: help.into(),
        }
    }

    /// Adds a string argument (builder style).
    pub fn arg(mut self, name: impl Into<String>, required: bool) -> Self {
        self.args.push(ArgDesc {
            name: name.into(),
            required,
        });
        self
    }

    /// Ceph's descriptor: `{"sig": ["perf", "dump", {"name": ..., "type": "CephString",
    /// "req": "false"}], "help": ..., "module": ..., "perm": "r", "flags": 0}`.
    fn descriptor(&self) -> Value {
        let mut sig: Vec<Value> = self.prefix.split_whitespace().map(Value::from).collect();
        for a in &self.args {
            sig.push(json!({
                "name": a.name,
                "type": "CephString",
                "req": if a.required { "true" } else { "false" },
            }));
        }
        json!({"sig": sig, "help": self.help, "module": "msgr", "perm": "r", "flags": 0})
    }
}

/// The commands `msgr serve` answers (besides the built-in `help` and
/// `get_command_descriptions`): `perf dump [logger]`, `status`, `version`, `pcap start PATH
/// [snaplen]`, `pcap stop`, `shutdown`.
pub fn standard_commands() -> Vec<CommandDesc> {
    vec![
        CommandDesc::new(
            "perf dump",
            "dump the counters (messenger, OSD); optionally one section",
        )
        .arg("logger", false),
        CommandDesc::new(
            "status",
            "name, address, transport, uptime and connections of the daemon",
        ),
        CommandDesc::new("version", "the program version"),
        CommandDesc::new(
            "pcap start",
            "capture the dpdk transport's frames to a pcap file (tshark/Wireshark read it)",
        )
        .arg("path", true)
        .arg("snaplen", false),
        CommandDesc::new(
            "pcap stop",
            "stop the packet capture: frames written and dropped",
        ),
        CommandDesc::new("shutdown", "stop the daemon cleanly"),
    ]
}

/// The commands every admin socket answers itself.
fn builtin_commands() -> Vec<CommandDesc> {
    vec![
        CommandDesc::new("help", "list the available commands"),
        CommandDesc::new(
            "get_command_descriptions",
            "the command table, for the ceph CLI",
        ),
    ]
}

/// A running admin socket. Dropping it stops the server and removes the socket file.
pub struct AdminServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminServer")
            .field("path", &self.path)
            .finish()
    }
}

impl AdminServer {
    /// Serves [`standard_commands`] at `path` with `handler`.
    pub fn start(path: impl AsRef<Path>, handler: Handler) -> io::Result<Self> {
        Self::start_with_commands(path, standard_commands(), handler)
    }

    /// Serves `commands` at `path`: `handler` runs each of them; `help` and
    /// `get_command_descriptions` are answered from the table, and anything not in it is an
    /// error without calling the handler.
    pub fn start_with_commands(
        path: impl AsRef<Path>,
        commands: Vec<CommandDesc>,
        handler: Handler,
    ) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        remove_stale(&path)?;
        let mut listener = UnixListener::bind(&path)?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTEN, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let stop = Arc::new(AtomicBool::new(false));
        let mut table = builtin_commands();
        table.extend(commands);
        let server = Server {
            table,
            handler,
            stop: Arc::clone(&stop),
        };
        let thread = std::thread::Builder::new()
            .name("admin_socket".into())
            .spawn(move || server.run(poll, listener));
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        debug!(path = %path.display(), "admin socket listening");
        Ok(Self {
            path,
            stop,
            waker,
            thread: Some(thread),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops serving (a command in progress finishes first) and removes the socket file.
    pub fn stop(self) {}

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Remove our socket only: another server may have replaced a file we lost.
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.file_type().is_socket()) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Removes a socket file nobody listens on; refuses a live socket or a non-socket.
fn remove_stale(path: &Path) -> io::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{} is in use by a running server", path.display()),
        )),
        Err(_) => std::fs::remove_file(path),
    }
}

struct Server {
    table: Vec<CommandDesc>,
    handler: Handler,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn run(self, mut poll: Poll, listener: UnixListener) {
        let mut events = Events::with_capacity(8);
        while !self.stop.load(Ordering::Acquire) {
            if let Err(e) = poll.poll(&mut events, None) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                warn!(error = %e, "admin socket: poll failed; stopping");
                return;
            }
            // Serve what is pending, one client at a time, until the backlog is empty.
            while !self.stop.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((stream, _)) => self.serve(stream.into()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        warn!(error = %e, "admin socket: accept failed");
                        break;
                    }
                }
            }
        }
    }

    fn serve(&self, mut s: UnixStream) {
        let setup = s
            .set_nonblocking(false)
            .and_then(|()| s.set_read_timeout(Some(IO_TIMEOUT)))
            .and_then(|()| s.set_write_timeout(Some(IO_TIMEOUT)));
        if let Err(e) = setup {
            warn!(error = %e, "admin socket: client setup failed");
            return;
        }
        let body = match read_command(&mut s) {
            Ok(cmd) => self.execute(&cmd),
            // The peer left or stalled: nobody to answer.
            Err(ReadError::Io(e)) => {
                debug!(error = %e, "admin socket: client read failed");
                return;
            }
            Err(ReadError::Bad(msg)) => error_body(&msg, false),
        };
        if let Err(e) = write_reply(&mut s, body.as_bytes()) {
            debug!(error = %e, "admin socket: reply not written");
        }
    }

    /// Runs one command text; returns the reply body.
    fn execute(&self, text: &str) -> String {
        let args = match parse_command(text) {
            Ok(v) => v,
            Err(e) => return error_body(&e, false),
        };
        let pretty = args.get("format").and_then(Value::as_str) != Some("json");
        let prefix_text = args
            .get("prefix")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let Some((desc, args)) = self.resolve(&prefix_text, args) else {
            return error_body(
                &format!("unknown command {prefix_text:?}; \"help\" lists the commands"),
                pretty,
            );
        };
        debug!(command = %desc.prefix, "admin socket command");
        let result = match desc.prefix.as_str() {
            "help" => Ok(self.help()),
            "get_command_descriptions" => Ok(self.descriptions()),
            p => (self.handler)(p, &args),
        };
        match result {
            Ok(v) => render(&v, pretty),
            Err(e) => error_body(&e, pretty),
        }
    }

    /// Finds the command `prefix` names. An exact match wins; otherwise (a plain-text or
    /// positional request) the longest command whose words start `prefix` takes the rest
    /// of the words as its arguments, in order. Checks required arguments.
    fn resolve(&self, prefix: &str, mut args: Map<String, Value>) -> Option<(&CommandDesc, Value)> {
        let words: Vec<&str> = prefix.split_whitespace().collect();
        let mut best: Option<(&CommandDesc, usize)> = None;
        for d in &self.table {
            let dw: Vec<&str> = d.prefix.split_whitespace().collect();
            let fits = words.len() >= dw.len()
                && words[..dw.len()] == dw[..]
                && words.len() - dw.len() <= d.args.len();
            if fits && best.is_none_or(|(_, n)| dw.len() > n) {
                best = Some((d, dw.len()));
            }
        }
        let (desc, n) = best?;
        for (a, w) in desc.args.iter().zip(&words[n..]) {
            args.insert(a.name.clone(), Value::from(*w));
        }
        args.insert("prefix".into(), Value::from(desc.prefix.clone()));
        if desc
            .args
            .iter()
            .any(|a| a.required && !args.contains_key(&a.name))
        {
            return None;
        }
        Some((desc, Value::Object(args)))
    }

    fn help(&self) -> Value {
        let mut m = Map::new();
        for d in &self.table {
            let mut usage = d.prefix.clone();
            for a in &d.args {
                if a.required {
                    let _ = write!(usage, " <{}>", a.name);
                } else {
                    let _ = write!(usage, " [<{}>]", a.name);
                }
            }
            m.insert(usage, Value::from(d.help.clone()));
        }
        Value::Object(m)
    }

    fn descriptions(&self) -> Value {
        let mut m = Map::new();
        for (i, d) in self.table.iter().enumerate() {
            m.insert(format!("cmd{i:03}"), d.descriptor());
        }
        Value::Object(m)
    }
}

enum ReadError {
    /// The connection failed or timed out.
    Io(io::Error),
    /// The input is not a command; answer with this error.
    Bad(String),
}

/// Reads one command: bytes up to a NUL or a newline (or the end of the stream), at most
/// [`MAX_COMMAND`].
fn read_command(s: &mut UnixStream) -> Result<String, ReadError> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 4096];
    loop {
        let n = match s.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadError::Io(e)),
        };
        if n == 0 {
            if buf.is_empty() {
                return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            break;
        }
        if let Some(end) = chunk[..n].iter().position(|&b| b == 0 || b == b'\n') {
            buf.extend_from_slice(&chunk[..end]);
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_COMMAND {
            return Err(ReadError::Bad(format!(
                "command longer than {MAX_COMMAND} bytes"
            )));
        }
    }
    if buf.len() > MAX_COMMAND {
        return Err(ReadError::Bad(format!(
            "command longer than {MAX_COMMAND} bytes"
        )));
    }
    String::from_utf8(buf).map_err(|_| ReadError::Bad("command is not UTF-8".into()))
}

/// A command's arguments as a JSON object with a string `prefix` (a line of words becomes
/// `{"prefix": words}`).
fn parse_command(text: &str) -> Result<Map<String, Value>, String> {
    let t = text.trim();
    if t.starts_with('{') {
        let v: Value = serde_json::from_str(t).map_err(|e| format!("invalid JSON command: {e}"))?;
        let Value::Object(m) = v else {
            return Err("the command is not a JSON object".into());
        };
        match m.get("prefix") {
            Some(Value::String(_)) => Ok(m),
            _ => Err("the command has no \"prefix\" string".into()),
        }
    } else if t.is_empty() {
        Err("empty command; \"help\" lists the commands".into())
    } else {
        let mut m = Map::new();
        m.insert("prefix".into(), Value::from(t));
        Ok(m)
    }
}

fn render(v: &Value, pretty: bool) -> String {
    let s = if pretty {
        serde_json::to_string_pretty(v)
    } else {
        serde_json::to_string(v)
    };
    // Serializing a Value cannot fail (string keys only).
    let mut s = s.unwrap_or_default();
    s.push('\n');
    s
}

fn error_body(msg: &str, pretty: bool) -> String {
    render(&json!({ "error": msg }), pretty)
}

fn write_reply(s: &mut UnixStream, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "reply too large"))?;
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    s.write_all(&out)?;
    s.flush()
}

/// Sends `command` to the admin socket at `path` and returns the reply text.
///
/// `command` is either a JSON object (sent as is) or command words such as `"perf dump"`
/// (sent as `{"prefix": "perf dump"}`; the server maps extra words to arguments). A reply
/// of the form `{"error": "..."}` is returned as `Err` with that message; so are connection
/// failures. Bounded by [`IO_TIMEOUT`] per read and write.
pub fn request(path: impl AsRef<Path>, command: &str) -> Result<String, String> {
    let path = path.as_ref();
    let text = if command.trim_start().starts_with('{') {
        command.trim().to_owned()
    } else {
        json!({ "prefix": command.split_whitespace().collect::<Vec<_>>().join(" ") }).to_string()
    };
    let ctx = |what: &str, e: io::Error| format!("admin socket {}: {what}: {e}", path.display());
    let mut s = UnixStream::connect(path).map_err(|e| ctx("connect", e))?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| ctx("setting timeouts", e))?;
    let mut req = text.into_bytes();
    req.push(0);
    s.write_all(&req).map_err(|e| ctx("sending", e))?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)
        .map_err(|e| ctx("reading the reply length", e))?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_REPLY {
        return Err(format!(
            "admin socket {}: reply of {len} bytes is too large",
            path.display()
        ));
    }
    let mut body = vec![0; len];
    s.read_exact(&mut body)
        .map_err(|e| ctx("reading the reply", e))?;
    let body = String::from_utf8(body)
        .map_err(|_| format!("admin socket {}: the reply is not UTF-8", path.display()))?;
    if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&body) {
        if m.len() == 1 {
            if let Some(Value::String(e)) = m.get("error") {
                return Err(e.clone());
            }
        }
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    struct Tmp(PathBuf);

    impl Tmp {
        fn new(tag: &str) -> Self {
            static N: AtomicU64 = AtomicU64::new(0);
            let p = std::env::temp_dir().join(format!(
                "msgr-admin-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir(&p).unwrap();
            Self(p)
        }

        fn sock(&self) -> PathBuf {
            self.0.join("a.asok")
        }
    }

    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn handler() -> Handler {
        Arc::new(|prefix: &str, args: &Value| match prefix {
            "perf dump" => Ok(json!({"msgr": {"msgs_in": 3}, "logger": args.get("logger")})),
            "version" => Ok(json!({"version": "test"})),
            "status" => Err("status is broken".into()),
            other => Err(format!("unexpected {other}")),
        })
    }

    fn raw(path: &Path, bytes: &[u8]) -> io::Result<Vec<u8>> {
        let mut s = UnixStream::connect(path)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(bytes)?;
        let mut len = [0u8; 4];
        s.read_exact(&mut len)?;
        let mut body = vec![0; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut body)?;
        Ok(body)
    }

    #[test]
    fn round_trip_json_and_plain() {
        let t = Tmp::new("rt");
        let srv = AdminServer::start(t.sock(), handler()).unwrap();
        let r = request(srv.path(), "perf dump").unwrap();
        let v: Value = serde_json::from_str(&r).unwrap();
        assert_eq!(v["msgr"]["msgs_in"], 3);
        assert!(r.contains("\n  "), "pretty by default: {r}");
        let r = request(srv.path(), r#"{"prefix": "perf dump", "format": "json"}"#).unwrap();
        assert_eq!(r, "{\"logger\":null,\"msgr\":{\"msgs_in\":3}}\n");
        // Positional argument from words, and a plain newline-terminated line.
        let r = request(srv.path(), "perf dump msgr").unwrap();
        assert!(r.contains("\"logger\": \"msgr\""), "{r}");
        let body = raw(srv.path(), b"version\n").unwrap();
        assert!(String::from_utf8(body).unwrap().contains("\"test\""));
    }

    #[test]
    fn help_and_descriptions_list_the_table() {
        let t = Tmp::new("help");
        let srv = AdminServer::start(t.sock(), handler()).unwrap();
        let h: Value = serde_json::from_str(&request(srv.path(), "help").unwrap()).unwrap();
        assert!(h.get("perf dump [<logger>]").is_some(), "{h}");
        assert!(h.get("shutdown").is_some());
        let d: Value =
            serde_json::from_str(&request(srv.path(), "get_command_descriptions").unwrap())
                .unwrap();
        let perf = d
            .as_object()
            .unwrap()
            .values()
            .find(|c| c["sig"][0] == "perf")
            .unwrap();
        assert_eq!(perf["sig"][1], "dump");
        assert_eq!(perf["sig"][2]["type"], "CephString");
        assert_eq!(perf["sig"][2]["req"], "false");
        assert!(d.get("cmd000").is_some());
    }

    #[test]
    fn errors_are_replies() {
        let t = Tmp::new("err");
        let srv = AdminServer::start(t.sock(), handler()).unwrap();
        let e = request(srv.path(), "frobnicate").unwrap_err();
        assert!(e.contains("unknown command"), "{e}");
        assert_eq!(
            request(srv.path(), "status").unwrap_err(),
            "status is broken"
        );
        let e = request(srv.path(), "{\"prefix\": 3}").unwrap_err();
        assert!(e.contains("prefix"), "{e}");
        let e = request(srv.path(), "{not json").unwrap_err();
        assert!(e.contains("invalid JSON"), "{e}");
        // Too many words for the command's arguments.
        assert!(request(srv.path(), "perf dump a b").is_err());
    }

    #[test]
    fn garbage_and_oversized_input_do_not_kill_the_server() {
        let t = Tmp::new("garbage");
        let srv = AdminServer::start(t.sock(), handler()).unwrap();
        let body = raw(srv.path(), &vec![b'x'; MAX_COMMAND + 10]).unwrap();
        assert!(String::from_utf8_lossy(&body).contains("longer than"));
        let body = raw(srv.path(), b"\xff\xfe\x00").unwrap();
        assert!(String::from_utf8_lossy(&body).contains("UTF-8"));
        let body = raw(srv.path(), b"\0").unwrap();
        assert!(String::from_utf8_lossy(&body).contains("empty command"));
        // A client that connects and leaves, and one that sends half a command and leaves.
        drop(UnixStream::connect(srv.path()).unwrap());
        {
            let mut s = UnixStream::connect(srv.path()).unwrap();
            s.write_all(b"{\"prefix\": \"perf").unwrap();
        }
        assert!(request(srv.path(), "version").is_ok());
    }

    #[test]
    fn stale_socket_is_replaced_live_one_refused_and_file_removed_on_drop() {
        let t = Tmp::new("stale");
        let p = t.sock();
        // A stale socket: bound, then its listener dropped.
        drop(std::os::unix::net::UnixListener::bind(&p).unwrap());
        assert!(p.exists());
        let srv = AdminServer::start(&p, handler()).unwrap();
        let e = AdminServer::start(&p, handler()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(
            request(&p, "version").is_ok(),
            "the live server kept its socket"
        );
        srv.stop();
        assert!(!p.exists());
        // A regular file is never deleted.
        std::fs::write(&p, b"keep me").unwrap();
        assert!(AdminServer::start(&p, handler()).is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"keep me");
    }

    #[test]
    fn drop_is_prompt_with_a_client_connected() {
        let t = Tmp::new("drop");
        let srv = AdminServer::start(t.sock(), handler()).unwrap();
        let _idle = UnixStream::connect(srv.path()).unwrap();
        // The idle client holds the server for at most IO_TIMEOUT; stopping waits for it.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(srv);
            let _ = tx.send(());
        });
        rx.recv_timeout(IO_TIMEOUT + Duration::from_secs(5))
            .expect("drop returned");
    }
}
