//! `msgr serve --config FILE`: the daemon's settings in a TOML file (what a systemd unit
//! starts), turned into the same command line a user would type, so the file and the flags
//! mean exactly the same and are checked by the same code. `--check` validates and prints
//! that command line without starting anything.
//!
//! ```toml
//! name = "osd.0"
//! bind = "v1:10.0.0.5:6800"
//! transport = "dpdk"          # simple | posix | dpdk
//! workers = 2                 # posix threads, or dpdk queues (one lcore each)
//! admin_socket = "/run/msgr/osd.0.asok"
//! log_level = "info"
//! ready_timeout = 10.0        # seconds a handshake may take (ms_connection_ready_timeout)
//! body_timeout = 10.0        # seconds a message holding throttle budget may stall (0: off)
//! max_handshakes = 4096       # incoming handshakes in progress at once (0: no bound)
//! dispatch_panic = "contain"  # a handler panic: contain (close that connection) | abort
//!
//! [dpdk]
//! eal = "-l 2-3 --main-lcore 2 -a 0000:03:00.1 --file-prefix msgr-osd.0"
//! ip = "10.0.0.5/24"
//! gateway = "10.0.0.1"
//! mtu = 9000
//! idle = "busy"
//!
//! [throttle]
//! dispatch_bytes = 104857600  # ms_dispatch_throttle_bytes
//! client_messages = 256       # osd_client_message_cap (0: none)
//! client_bytes = 524288000    # osd_client_message_size_cap (0: none)
//!
//! [policy]                    # peer type = Ceph preset
//! client = "stateless_registered_server"
//! mon = "lossy_client"
//! ```

use std::path::Path;

use serde::Deserialize;

/// The file's settings; unknown keys are errors (a typo must not be silently ignored).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    name: Option<String>,
    bind: String,
    nonce: Option<u32>,
    transport: Option<String>,
    workers: Option<u16>,
    admin_socket: Option<String>,
    log_level: Option<String>,
    pcap: Option<String>,
    inject_socket_failures: Option<u64>,
    /// Seconds (ms_connection_ready_timeout).
    ready_timeout: Option<f64>,
    /// Seconds (0: off).
    body_timeout: Option<f64>,
    max_handshakes: Option<usize>,
    dispatch_panic: Option<String>,
    dpdk: Option<Dpdk>,
    throttle: Option<Throttles>,
    /// Peer type -> Ceph policy preset.
    policy: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Dpdk {
    /// One shell-quoted string, or a list of words.
    eal: Option<Eal>,
    ip: Option<String>,
    gateway: Option<String>,
    port: Option<u16>,
    mtu: Option<u16>,
    idle: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Eal {
    Line(String),
    Words(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Throttles {
    dispatch_bytes: Option<u64>,
    client_messages: Option<u64>,
    client_bytes: Option<u64>,
}

/// Reads `path` into the command line it stands for: `msgr [global options] serve
/// [serve options]`, without the program name. Errors name the file and the key.
pub(crate) fn command_line(path: &Path) -> Result<Vec<String>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("config {}: {e}", path.display()))?;
    let c: Config = toml::from_str(&text)
        .map_err(|e| format!("config {}: {}", path.display(), one_line(&e.to_string())))?;
    let bad = |key: &str, why: String| format!("config {}: {key}: {why}", path.display());
    let mut global: Vec<String> = Vec::new();
    let mut serve: Vec<String> = vec!["serve".into()];
    let flag = |v: &mut Vec<String>, f: &str, val: String| {
        v.push(format!("--{f}"));
        v.push(val);
    };
    // Each value is checked here too, so that an error names its key, not a flag.
    crate::parse_peer_addr(&c.bind).map_err(|e| bad("bind", e))?;
    flag(&mut serve, "bind", c.bind.clone());
    if let Some(n) = &c.name {
        crate::parse_entity_name(n).map_err(|e| bad("name", e))?;
        flag(&mut serve, "name", n.clone());
    }
    if let Some(n) = c.nonce {
        flag(&mut serve, "nonce", n.to_string());
    }
    if let Some(t) = &c.transport {
        crate::parse_transport(t).map_err(|e| bad("transport", e))?;
        flag(&mut global, "transport", t.clone());
    }
    if let Some(w) = c.workers {
        if w == 0 {
            return Err(bad("workers", "must be at least 1".into()));
        }
        flag(&mut serve, "workers", w.to_string());
    }
    if let Some(p) = &c.admin_socket {
        flag(&mut serve, "admin-socket", p.clone());
    }
    if let Some(l) = &c.log_level {
        if !["error", "warn", "info", "debug", "trace"].contains(&l.as_str()) {
            return Err(bad(
                "log_level",
                format!("{l:?}: one of error, warn, info, debug, trace"),
            ));
        }
        flag(&mut global, "log-level", l.clone());
    }
    if let Some(p) = &c.pcap {
        flag(&mut serve, "pcap", p.clone());
    }
    if let Some(n) = c.inject_socket_failures {
        flag(&mut serve, "inject-socket-failures", n.to_string());
    }
    if let Some(t) = c.ready_timeout {
        let v = t.to_string();
        crate::ping::parse_positive_secs(&v).map_err(|e| bad("ready_timeout", e))?;
        flag(&mut serve, "ready-timeout", v);
    }
    if let Some(t) = c.body_timeout {
        let v = t.to_string();
        crate::ping::parse_secs(&v).map_err(|e| bad("body_timeout", e))?;
        flag(&mut serve, "body-timeout", v);
    }
    if let Some(n) = c.max_handshakes {
        flag(&mut serve, "max-handshakes", n.to_string());
    }
    if let Some(p) = &c.dispatch_panic {
        if p != "contain" && p != "abort" {
            return Err(bad("dispatch_panic", format!("{p:?}: contain or abort")));
        }
        flag(&mut serve, "dispatch-panic", p.clone());
    }
    if let Some(d) = &c.dpdk {
        match &d.eal {
            Some(Eal::Line(l)) => {
                crate::net::split_words(l).map_err(|e| bad("dpdk.eal", e))?;
                flag(&mut global, "eal", l.clone());
            }
            Some(Eal::Words(w)) => flag(&mut global, "eal", join_words(w)),
            None => {}
        }
        if let Some(ip) = &d.ip {
            crate::net::parse_cidr(ip).map_err(|e| bad("dpdk.ip", e))?;
            flag(&mut global, "ip", ip.clone());
        }
        if let Some(g) = &d.gateway {
            g.parse::<std::net::Ipv4Addr>()
                .map_err(|_| bad("dpdk.gateway", format!("{g:?} is not an IPv4 address")))?;
            flag(&mut global, "gateway", g.clone());
        }
        if let Some(p) = d.port {
            flag(&mut global, "dpdk-port", p.to_string());
        }
        if let Some(m) = d.mtu {
            if !(576..=9600).contains(&m) {
                return Err(bad("dpdk.mtu", format!("{m}: must be 576 to 9600")));
            }
            flag(&mut global, "mtu", m.to_string());
        }
        if let Some(i) = &d.idle {
            crate::parse_idle(i).map_err(|e| bad("dpdk.idle", e))?;
            flag(&mut global, "idle", i.clone());
        }
    }
    if let Some(t) = &c.throttle {
        if let Some(n) = t.dispatch_bytes {
            flag(&mut serve, "dispatch-throttle-bytes", n.to_string());
        }
        if let Some(n) = t.client_messages {
            flag(&mut serve, "client-message-cap", n.to_string());
        }
        if let Some(n) = t.client_bytes {
            flag(&mut serve, "client-bytes-cap", n.to_string());
        }
    }
    for (ty, preset) in c.policy.iter().flatten() {
        let v = format!("{ty}={preset}");
        crate::serve::parse_policy(&v).map_err(|e| bad(&format!("policy.{ty}"), e))?;
        flag(&mut serve, "policy", v);
    }
    global.extend(serve);
    Ok(global)
}

/// Words as one shell-quoted string (what --eal takes).
fn join_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_=.,:/@".contains(c))
            {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A command line as one shell-quoted line (for --check).
pub(crate) fn shell_line(args: &[String]) -> String {
    std::iter::once("msgr".to_owned())
        .chain(args.iter().map(|a| join_words(std::slice::from_ref(a))))
        .collect::<Vec<_>>()
        .join(" ")
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '|' || c == '^' || c == ' '))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Result<Vec<String>, String> {
        // A file of its own per call: tests run in parallel (naming it by the text's
        // length let two tests with equally long texts remove each other's file).
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("msgr-config-{}-{n}.toml", std::process::id()));
        std::fs::write(&p, text).unwrap();
        let r = command_line(&p);
        let _ = std::fs::remove_file(&p);
        r
    }

    #[test]
    fn a_full_config_becomes_the_command_line() {
        let args = lines(
            r#"
name = "osd.3"
bind = "v1:10.0.0.5:6800"
transport = "dpdk"
workers = 2
admin_socket = "/run/msgr/osd.3.asok"
[dpdk]
eal = ["-l", "2-3", "-a", "0000:03:00.1", "--file-prefix", "msgr osd.3"]
ip = "10.0.0.5/24"
gateway = "10.0.0.1"
mtu = 9000
idle = "busy"
[throttle]
dispatch_bytes = 1048576
client_messages = 256
"#,
        )
        .unwrap();
        let line = shell_line(&args);
        assert_eq!(
            line,
            "msgr --transport dpdk --eal '-l 2-3 -a 0000:03:00.1 --file-prefix '\\''msgr \
             osd.3'\\''' --ip 10.0.0.5/24 --gateway 10.0.0.1 --mtu 9000 --idle busy serve \
             --bind v1:10.0.0.5:6800 --name osd.3 --workers 2 --admin-socket \
             /run/msgr/osd.3.asok --dispatch-throttle-bytes 1048576 --client-message-cap 256"
        );
    }

    #[test]
    fn handshake_bounds_become_flags() {
        let args =
            lines("bind = \"v1:1.2.3.4:1\"\nready_timeout = 2.5\nbody_timeout = 0\nmax_handshakes = 64\ndispatch_panic = \"abort\"\n").unwrap();
        assert!(
            shell_line(&args).ends_with(
                "--ready-timeout 2.5 --body-timeout 0 --max-handshakes 64 --dispatch-panic abort"
            ),
            "{args:?}"
        );
        let e = lines("bind = \"v1:1.2.3.4:1\"\nbody_timeout = -1.0\n").unwrap_err();
        assert!(e.contains(": body_timeout: "), "{e}");
        let e = lines("bind = \"v1:1.2.3.4:1\"\nready_timeout = 0.0\n").unwrap_err();
        assert!(e.contains(": ready_timeout: "), "{e}");
        let e = lines("bind = \"v1:1.2.3.4:1\"\ndispatch_panic = \"ignore\"\n").unwrap_err();
        assert!(e.contains(": dispatch_panic: "), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        let e = lines("bind = \"v1:1.2.3.4:6800\"\nbindd = 1\n").unwrap_err();
        assert!(e.contains("unknown field `bindd`"), "{e}");
        let e = lines("name = \"osd.0\"\n").unwrap_err();
        assert!(e.contains("missing field `bind`"), "{e}");
        let e = lines("bind = \"localhost\"\n").unwrap_err();
        assert!(e.contains(": bind: "), "{e}");
        let e = lines("bind = \"v1:1.2.3.4:1\"\n[dpdk]\nip = \"10.0.0.5\"\n").unwrap_err();
        assert!(e.contains(": dpdk.ip: ") && e.contains("prefix"), "{e}");
        let e = lines("bind = \"v1:1.2.3.4:1\"\n[dpdk]\nidle = \"lazy\"\n").unwrap_err();
        assert!(e.contains(": dpdk.idle: "), "{e}");
        let e = lines("bind = \"v1:1.2.3.4:1\"\ntransport = \"carrier\"\n").unwrap_err();
        assert!(e.contains(": transport: "), "{e}");
        let e = lines("bind = \"v1:1.2.3.4:1\"\nworkers = \"two\"\n").unwrap_err();
        assert!(e.contains("workers"), "{e}");
        let e = lines("bind = \"v1:1.2.3.4:1\"\n[dpdk]\nmtu = 100\n").unwrap_err();
        assert!(e.contains(": dpdk.mtu: "), "{e}");
        let e = lines("bind = \"v1:1.2.3.4:1\"\n[policy]\nclient = \"loose\"\n").unwrap_err();
        assert!(
            e.contains(": policy.client: ") && e.contains("preset"),
            "{e}"
        );
        let e = lines("bind = \"v1:1.2.3.4:1\"\n[policy]\nrgw = \"lossy_client\"\n").unwrap_err();
        assert!(
            e.contains(": policy.rgw: ") && e.contains("peer type"),
            "{e}"
        );
        let e = lines("bind = [\n").unwrap_err();
        assert!(e.contains("line 1") || e.contains("TOML"), "{e}");
    }
}
