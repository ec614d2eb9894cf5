//! How a subcommand's messenger reaches the network: the `--transport` and, for `dpdk`,
//! the userspace stack's options (`--eal`, `--ip`, `--gateway`, `--dpdk-port`, `--idle`).

use std::net::Ipv4Addr;

use msgr::entity::EntityName;
use msgr::messenger::{
    Backend, DpdkConfig, Messenger, MessengerBuilder, TransportKind, UserspaceConfig,
};
use stack::IdlePolicy;

use crate::{Failure, GlobalArgs, LogLevel, Result};

/// The userspace stack's side of `--transport dpdk`.
#[derive(Debug, Clone)]
pub(crate) struct DpdkNet {
    eal_args: Vec<String>,
    ip: Ipv4Addr,
    prefix: u8,
    gateway: Option<Ipv4Addr>,
    port: u16,
    idle: IdlePolicy,
    mtu: Option<u16>,
}

/// The transport a subcommand's messenger runs on.
#[derive(Debug, Clone)]
pub(crate) struct Net {
    pub(crate) transport: TransportKind,
    dpdk: Option<DpdkNet>,
}

impl Net {
    /// Checks that the DPDK options come with `--transport dpdk`, and all it needs with it.
    pub(crate) fn from_args(g: &GlobalArgs, log: LogLevel) -> Result<Self> {
        let given: Vec<&str> = [
            ("--eal", g.eal.is_some()),
            ("--ip", g.ip.is_some()),
            ("--gateway", g.gateway.is_some()),
            ("--dpdk-port", g.dpdk_port.is_some()),
            ("--idle", g.idle.is_some()),
            ("--mtu", g.mtu.is_some()),
        ]
        .iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| *name)
        .collect();
        if g.transport != TransportKind::Dpdk {
            if !given.is_empty() {
                return Err(Failure::usage(format!(
                    "{} only apply to --transport dpdk (the transport is {})",
                    given.join(", "),
                    g.transport.name()
                )));
            }
            return Ok(Self {
                transport: g.transport,
                dpdk: None,
            });
        }
        let eal = g.eal.as_deref().ok_or_else(|| {
            Failure::usage(
                "--transport dpdk needs --eal \"<EAL arguments>\", e.g. --eal \"--no-pci \
                 --vdev=net_tap0,iface=mt0\"",
            )
        })?;
        let mut eal_args = split_words(eal).map_err(|e| Failure::usage(format!("--eal: {e}")))?;
        if eal_args.is_empty() {
            return Err(Failure::usage("--eal: no EAL arguments given"));
        }
        if !eal_args.iter().any(|a| a.starts_with("--log-level")) {
            eal_args.insert(0, format!("--log-level={}", log.rte_level()));
        }
        let cidr = g.ip.as_deref().ok_or_else(|| {
            Failure::usage(
                "--transport dpdk needs --ip CIDR (our address on the port, e.g. 10.88.0.2/24)",
            )
        })?;
        let (ip, prefix) = parse_cidr(cidr).map_err(|e| Failure::usage(format!("--ip: {e}")))?;
        let gateway = match g.gateway.as_deref() {
            None => None,
            Some(s) => {
                let gw: Ipv4Addr = s
                    .parse()
                    .map_err(|_| Failure::usage(format!("--gateway {s:?}: not an IPv4 address")))?;
                if !same_subnet(gw, ip, prefix) {
                    return Err(Failure::usage(format!(
                        "--gateway {gw} is not in our subnet {ip}/{prefix}"
                    )));
                }
                Some(gw)
            }
        };
        Ok(Self {
            transport: TransportKind::Dpdk,
            dpdk: Some(DpdkNet {
                eal_args,
                ip,
                prefix,
                gateway,
                port: g.dpdk_port.unwrap_or(0),
                idle: g.idle.unwrap_or_default(),
                mtu: g.mtu,
            }),
        })
    }

    /// A messenger builder on this transport; `workers` is the posix transport's thread
    /// count or the dpdk transport's queue count (one worker per queue, default 1).
    pub(crate) fn builder(
        &self,
        name: EntityName,
        nonce: u32,
        workers: Option<usize>,
    ) -> MessengerBuilder {
        let b = Messenger::builder(name, nonce);
        match &self.dpdk {
            None => {
                let b = b.transport(self.transport);
                match workers {
                    Some(w) => b.workers(w),
                    None => b,
                }
            }
            Some(d) => {
                let workers = workers.unwrap_or(1).clamp(1, usize::from(u16::MAX));
                let backend = Backend::Dpdk(DpdkConfig {
                    eal_args: d.eal_args.clone(),
                    port: d.port,
                    workers: u16::try_from(workers).unwrap_or(u16::MAX),
                    mtu: d.mtu,
                });
                let mut cfg = UserspaceConfig::new(backend, d.ip, d.prefix);
                cfg.gateway = d.gateway;
                cfg.idle = d.idle;
                b.userspace(cfg)
            }
        }
    }
}

/// `A.B.C.D/N` → (address, prefix); a bare address means /32 would be useless, so the
/// prefix is required.
pub(crate) fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let (ip, prefix) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: give address and prefix, e.g. 10.88.0.2/24"))?;
    let ip: Ipv4Addr = ip
        .parse()
        .map_err(|_| format!("{s:?}: {ip:?} is not an IPv4 address"))?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| (1..=32).contains(p))
        .ok_or_else(|| format!("{s:?}: the prefix must be 1 to 32"))?;
    if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() {
        return Err(format!("{s:?}: {ip} cannot be a host's address"));
    }
    Ok((ip, prefix))
}

fn same_subnet(a: Ipv4Addr, b: Ipv4Addr, prefix: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    u32::from(a) & mask == u32::from(b) & mask
}

/// Splits a command line into words as a POSIX shell would for the simple cases: blanks
/// separate words, single quotes keep everything literally, double quotes keep blanks and
/// honour `\"` and `\\`, a backslash outside quotes escapes the next character.
pub(crate) fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => return Err("a trailing backslash escapes nothing".into()),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words() {
        let w = |s: &str| split_words(s).unwrap();
        assert_eq!(
            w("--no-pci  --vdev=net_tap0,iface=mt0 -l 0"),
            ["--no-pci", "--vdev=net_tap0,iface=mt0", "-l", "0"]
        );
        assert_eq!(
            w("a 'b c' \"d \\\" e\" f\\ g ''"),
            ["a", "b c", "d \" e", "f g", ""]
        );
        assert!(w("   ").is_empty());
        assert!(split_words("'open").is_err());
        assert!(split_words("\"open").is_err());
        assert!(split_words("end\\").is_err());
    }

    #[test]
    fn cidrs() {
        assert_eq!(
            parse_cidr("10.88.0.2/24").unwrap(),
            (Ipv4Addr::new(10, 88, 0, 2), 24)
        );
        for bad in [
            "10.88.0.2",
            "10.88.0.2/0",
            "10.88.0.2/33",
            "10.88.0/24",
            "0.0.0.0/8",
            "x/24",
        ] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
        assert!(same_subnet(
            Ipv4Addr::new(10, 88, 0, 1),
            Ipv4Addr::new(10, 88, 0, 2),
            24
        ));
        assert!(!same_subnet(
            Ipv4Addr::new(10, 88, 1, 1),
            Ipv4Addr::new(10, 88, 0, 2),
            24
        ));
        assert!(same_subnet(
            Ipv4Addr::new(1, 2, 3, 4),
            Ipv4Addr::new(10, 88, 0, 2),
            0
        ));
    }
}
