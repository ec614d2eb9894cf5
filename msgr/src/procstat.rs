//! What Linux tells about a process's use of the machine (for `msgr load` and `bench`).

use std::time::Duration;

/// The kernel's fixed unit of `/proc/PID/stat` times (`USER_HZ`, 100 on every Linux ABI).
const USER_HZ: u64 = 100;

/// CPU time of a process so far (user + system, all threads): `pid`, or this process for
/// `None`. `None` if the process is gone, or off Linux.
pub fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    parse_cpu(&std::fs::read_to_string(path).ok()?)
}

/// The CPU time in a `/proc/PID/stat` line (fields 14 and 15, user and system ticks). The
/// command name (field 2) is in parentheses and may hold spaces and parentheses itself, so
/// fields are counted after the last closing parenthesis.
pub fn parse_cpu(stat: &str) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(Duration::from_millis(
        (utime + stime).saturating_mul(1000) / USER_HZ,
    ))
}

/// This process's resident memory now and at its peak (`VmRSS`, `VmHWM` of
/// /proc/self/status), KiB; `None` off Linux.
pub fn memory_kib() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = |key: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(key))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some((kib("VmRSS:")?, kib("VmHWM:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_of_this_process() {
        let (rss, peak) = memory_kib().expect("Linux reports VmRSS and VmHWM");
        assert!(rss > 0 && peak >= rss, "{rss} {peak}");
    }

    #[test]
    fn cpu_time_from_a_stat_line() {
        // utime 250 and stime 50 ticks; the name has a space and parentheses in it.
        let line = "1234 (ms-osd (0) x) R 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(parse_cpu(line), Some(Duration::from_secs(3)));
        assert_eq!(parse_cpu("garbage"), None);
        assert_eq!(parse_cpu("1 (x) R 1 2"), None);
        assert!(
            cpu_time(None).is_some(),
            "Linux tells a process its CPU time"
        );
        assert_eq!(cpu_time(Some(u32::MAX)), None, "no such process");
    }
}
