//! A network namespace with a veth pair into it and python3 peers inside: for the tests
//! that put our DPDK stack (net_af_packet on the root end) against the kernel's TCP.
// Each test uses part of this.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use smoltcp::wire::{EthernetAddress, Ipv4Address};
use stack::peer::forward_lines;

/// Python shared by every helper script (prepended to `Lab::create`'s `script`): the `prep`
/// mode (IPv6 and offloads off on a veth end; for the DPDK end also forwarding off and no ARP
/// answers from the root kernel), `pattern` (must match [`kernel_pattern`]), `differs` and
/// `recv_to_eof`. The script defines `TIMEOUT` and its own modes, and dispatches on argv[1].
pub(crate) const PY_COMMON: &str = r#"
import array, fcntl, os, socket, struct, sys, threading

SIOCETHTOOL = 0x8946
# (name, ETHTOOL_G*, ETHTOOL_S*): the legacy ethtool ioctls.
OFFLOADS = [("rx", 0x14, 0x15), ("tx", 0x16, 0x17), ("sg", 0x18, 0x19),
            ("tso", 0x1E, 0x1F), ("gso", 0x23, 0x24), ("gro", 0x2B, 0x2C)]

def pattern(seed, n):
    off = seed * 16777619
    return bytes((((i + off) * 2654435761) & 0xFFFFFFFF) >> 24 for i in range(n))

def ethtool(s, ifname, cmd, data=0):
    buf = array.array("I", [cmd, data])
    ifr = struct.pack("16sP", ifname.encode(), buf.buffer_info()[0]) + bytes(16)
    fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifr)
    return buf[1]

def sysctl(path, value):
    with open(path, "w") as f:
        f.write(value)

def prep(ifname, role):
    if os.path.exists("/proc/sys/net/ipv6/conf/" + ifname):
        sysctl("/proc/sys/net/ipv6/conf/%s/disable_ipv6" % ifname, "1")
    if role == "dpdk":
        sysctl("/proc/sys/net/ipv4/conf/%s/forwarding" % ifname, "0")
        sysctl("/proc/sys/net/ipv4/conf/%s/arp_ignore" % ifname, "8")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for name, get, set_ in OFFLOADS:
        if ethtool(s, ifname, get):
            ethtool(s, ifname, set_, 0)
    left = [name for name, get, _ in OFFLOADS if ethtool(s, ifname, get)]
    if left:
        sys.exit("%s: offloads still on: %s" % (ifname, left))
    print("%s: IPv6 and offloads off" % ifname, flush=True)

def differs(what, got, want):
    if got == want:
        return None
    at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    return "%s: %d bytes, want %d; first difference at %d" % (what, len(got), len(want), at)

def recv_to_eof(s, limit):
    buf = bytearray()
    while len(buf) <= limit:
        chunk = s.recv(1 << 16)
        if not chunk:
            break
        buf += chunk
    return bytes(buf)
"#;

/// The MTU of both veth ends: the PMD's default (2048-byte ring frames) and the stack's.
pub(crate) const MTU: u16 = 1500;
/// A setup step (a device coming up, a helper starting) takes at most this long.
pub(crate) const STEP_LIMIT: StdDuration = StdDuration::from_secs(20);

/// Root, `ip` and python3: the path of the real python3 binary (not a shim), or why not.
pub(crate) fn preflight() -> Result<PathBuf, String> {
    let status = fs::read_to_string("/proc/self/status").map_err(|e| format!("/proc: {e}"))?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .ok_or("no Uid in /proc/self/status")?;
    if euid != "0" {
        return Err(format!("needs root for network namespaces (euid {euid})"));
    }
    ip(&["-V"]).map_err(|e| format!("no usable `ip`: {e}"))?;
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("no python3: {e}"))?;
    let exe = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || exe.is_empty() || !Path::new(&exe).exists() {
        return Err(format!("python3 does not run ({})", out.status));
    }
    Ok(PathBuf::from(exe))
}

/// Runs `ip` with `args`; its stdout, or its stderr as the error.
pub(crate) fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespace and the veth pair of this test process; dropping it deletes both.
pub(crate) struct Lab {
    pub(crate) ns: String,
    /// The root-namespace end, for DPDK.
    pub(crate) dev: String,
    /// The namespace end, the kernel's.
    pub(crate) peer: String,
    subnet: u8,
    /// Second octet of the test's 10.x.subnet.0/24.
    net: u8,
    python: PathBuf,
    /// The helpers' own python3 (after [`PY_COMMON`]); its dispatch must map `prep` to
    /// `prep` (see `Lab::prep`).
    script: &'static str,
}

impl Lab {
    /// Creates the namespace (nothing else yet): the guard exists from here on.
    /// `names`: the namespace's tag and the two veth ends' prefixes (each gets the pid).
    pub(crate) fn create(
        pid: u32,
        names: [&str; 3],
        net: u8,
        python: PathBuf,
        script: &'static str,
    ) -> Result<Self, String> {
        let [tag, dev, peer] = names;
        let lab = Self {
            ns: format!("msgr-{tag}-{pid}"),
            dev: format!("{dev}{pid}"),
            peer: format!("{peer}{pid}"),
            // Any subnet works (the namespace has its own routes and the root namespace
            // gets no address); vary it anyway, for readable captures.
            subnet: (pid % 200 + 20) as u8,
            net,
            python,
            script,
        };
        ip(&["netns", "add", &lab.ns])?;
        Ok(lab)
    }

    pub(crate) fn kernel_ip(&self) -> Ipv4Address {
        Ipv4Address::new(10, self.net, self.subnet, 1)
    }

    pub(crate) fn our_ip(&self) -> Ipv4Address {
        Ipv4Address::new(10, self.net, self.subnet, 2)
    }

    /// The veth pair, one end in the namespace with the kernel's address, offloads off on
    /// both; the root end up without an address.
    pub(crate) fn setup(&self) -> Result<(), String> {
        let (ns, dev, peer) = (self.ns.as_str(), self.dev.as_str(), self.peer.as_str());
        let mtu = MTU.to_string();
        ip(&[
            "link", "add", dev, "mtu", &mtu, "type", "veth", "peer", "name", peer, "mtu", &mtu,
            "netns", ns,
        ])?;
        self.prep(false, dev, "dpdk")?;
        ip(&["link", "set", dev, "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        self.prep(true, peer, "kernel")?;
        let cidr = format!("{}/24", self.kernel_ip());
        ip(&["-n", ns, "addr", "add", &cidr, "dev", peer])?;
        ip(&["-n", ns, "link", "set", peer, "up"])?;
        let deadline = StdInstant::now() + STEP_LIMIT;
        while fs::read_to_string(format!("/sys/class/net/{dev}/operstate"))
            .map_err(|e| format!("{dev}: {e}"))?
            .trim()
            != "up"
        {
            if StdInstant::now() > deadline {
                return Err(format!("{dev} not up after {STEP_LIMIT:?}"));
            }
            thread::sleep(StdDuration::from_millis(10));
        }
        let mtu_now = fs::read_to_string(format!("/sys/class/net/{dev}/mtu"))
            .map_err(|e| format!("{dev}: {e}"))?;
        if mtu_now.trim() != mtu {
            return Err(format!("{dev}: MTU {} not {mtu}", mtu_now.trim()));
        }
        Ok(())
    }

    /// Runs the `prep` helper for `iface`, in the namespace or not.
    pub(crate) fn prep(&self, in_ns: bool, iface: &str, role: &str) -> Result<(), String> {
        let out = self
            .python(in_ns, &["prep", iface, role])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("prep {iface}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "prep {iface}: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// `python3 -c PY args`, in the namespace (through `ip netns exec`, which execs it: the
    /// child's pid is python's) or in the root namespace.
    pub(crate) fn python(&self, in_ns: bool, args: &[&str]) -> Command {
        let mut cmd;
        if in_ns {
            cmd = Command::new("ip");
            cmd.args(["netns", "exec", &self.ns]).arg(&self.python);
        } else {
            cmd = Command::new(&self.python);
        }
        cmd.arg("-c")
            .arg(format!("{PY_COMMON}\n{}", self.script))
            .args(args);
        cmd
    }

    pub(crate) fn dev_mac(&self) -> Result<EthernetAddress, String> {
        let s = fs::read_to_string(format!("/sys/class/net/{}/address", self.dev))
            .map_err(|e| format!("{}: {e}", self.dev))?;
        let b: Vec<u8> = s
            .trim()
            .split(':')
            .filter_map(|x| u8::from_str_radix(x, 16).ok())
            .collect();
        <[u8; 6]>::try_from(b)
            .map(EthernetAddress)
            .map_err(|_| format!("{}: bad MAC {s:?}", self.dev))
    }

    /// The kernel's neighbour entry for our address ("" if none).
    pub(crate) fn kernel_neighbor(&self) -> String {
        let ours = self.our_ip().to_string();
        ip(&["-n", &self.ns, "neigh", "show", &ours, "dev", &self.peer])
            .unwrap_or_default()
            .trim()
            .to_owned()
    }
}

impl Lab {
    /// Deletes the namespace and the veth pair now and checks that both are gone.
    pub(crate) fn remove_and_verify(self) {
        let (ns, dev) = (self.ns.clone(), self.dev.clone());
        drop(self);
        let namespaces = ip(&["netns", "list"]).expect("ip netns list");
        assert!(
            !namespaces.split_whitespace().any(|w| w == ns),
            "namespace {ns} deleted: {namespaces}"
        );
        assert!(
            !Path::new("/sys/class/net").join(&dev).exists(),
            "veth {dev} deleted"
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting one end deletes both, at once (a namespace's own devices go away
        // asynchronously after `netns del`).
        if Path::new("/sys/class/net").join(&self.dev).exists() {
            if let Err(e) = ip(&["link", "del", &self.dev]) {
                eprintln!("cleanup: {e}");
            }
        }
        if let Err(e) = ip(&["netns", "del", &self.ns]) {
            eprintln!("cleanup: {e}");
        }
    }
}

/// A kernel-side helper process; killed (if still running) and reaped when dropped. Its
/// output lines (stdout and stderr) come through a channel from two reader threads.
pub(crate) struct Helper {
    pub(crate) what: &'static str,
    child: Child,
    lines: Receiver<String>,
    readers: Vec<JoinHandle<()>>,
    log: Vec<String>,
    status: Option<ExitStatus>,
}

impl Helper {
    pub(crate) fn spawn(lab: &Lab, what: &'static str, args: &[&str]) -> Self {
        let mut child = lab
            .python(true, args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let (lines, readers) = forward_lines(&mut child);
        Self {
            what,
            child,
            lines,
            readers,
            log: Vec::new(),
            status: None,
        }
    }

    /// Its exit status, once it has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .unwrap_or_else(|e| panic!("{}: wait: {e}", self.what));
        }
        self.status
    }

    /// Waits (at most `limit`) for an output line equal to `out: <line>`.
    pub(crate) fn wait_line(&mut self, line: &str, limit: StdDuration) {
        let want = format!("out: {line}");
        let what = self.what;
        let deadline = StdInstant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(StdInstant::now());
            match self
                .lines
                .recv_timeout(left.min(StdDuration::from_millis(100)))
            {
                Ok(l) => {
                    let found = l == want;
                    self.log.push(l);
                    if found {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    panic!(
                        "{what} ended ({status:?}) before {line:?}: {}",
                        self.output()
                    );
                }
            }
            assert!(
                StdInstant::now() < deadline,
                "{what}: no {line:?} within {limit:?}: {}",
                self.output()
            );
        }
    }

    /// Everything it printed so far (for messages).
    pub(crate) fn output(&mut self) -> String {
        while let Ok(l) = self.lines.try_recv() {
            self.log.push(l);
        }
        self.log.join(" | ")
    }

    /// After it exited: its status was 0, else fail with its output.
    pub(crate) fn assert_success(&mut self) {
        let status = self.exited().expect("exited");
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let out = self.output();
        assert!(status.success(), "{} failed ({status}): {out}", self.what);
        eprintln!("{}: {out}", self.what);
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

/// The helpers' test bytes (`pattern` in [`PY`]): byte i is the top byte of
/// (i + seed * 16777619) * 2654435761 mod 2^32, a sequence that no shift, loss or
/// duplication of a segment reproduces.
pub(crate) fn kernel_pattern(seed: u32, len: usize) -> Vec<u8> {
    let off = seed.wrapping_mul(16_777_619);
    (0..len)
        .map(|i| ((i as u32).wrapping_add(off).wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}
