//! Changes as data: computed first, then printed (dry run) or applied in order.

use std::fmt;
use std::path::PathBuf;
use std::process::Command;

/// One change to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write `value` to a file (a sysfs attribute, a config or state file).
    Write { path: PathBuf, value: String },
    /// Create a directory (and its parents).
    Mkdir { path: PathBuf },
    /// Run a command (skipped, and said so, on a fake host).
    Run { argv: Vec<String> },
}

impl Action {
    pub fn write(path: PathBuf, value: impl Into<String>) -> Self {
        Self::Write {
            path,
            value: value.into(),
        }
    }

    pub fn run(argv: &[&str]) -> Self {
        Self::Run {
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

/// Writing `value` to `path`, its directory created first if it does not exist yet.
pub fn write_file(path: PathBuf, value: impl Into<String>) -> Vec<Action> {
    let mut v = Vec::new();
    if let Some(dir) = path.parent().filter(|d| !d.exists()) {
        v.push(Action::Mkdir {
            path: dir.to_path_buf(),
        });
    }
    v.push(Action::write(path, value));
    v
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Write { path, value } => {
                let v = value.trim_end();
                if v.contains('\n') {
                    write!(f, "write {} ({} lines)", path.display(), v.lines().count())
                } else {
                    write!(f, "write {v:?} to {}", path.display())
                }
            }
            Self::Mkdir { path } => write!(f, "create directory {}", path.display()),
            Self::Run { argv } => write!(f, "run {}", argv.join(" ")),
        }
    }
}

/// Prints the actions (`dry_run`: "would ...") or applies them, printing each; stops at
/// the first that fails, saying which.
pub fn execute(actions: &[Action], dry_run: bool, run_commands: bool) -> Result<(), String> {
    if actions.is_empty() {
        println!("nothing to change");
        return Ok(());
    }
    for a in actions {
        if dry_run {
            println!("would {a}");
            continue;
        }
        println!("{a}");
        apply(a, run_commands).map_err(|e| format!("{a}: {e}"))?;
    }
    Ok(())
}

fn apply(a: &Action, run_commands: bool) -> Result<(), String> {
    match a {
        Action::Write { path, value } => std::fs::write(path, value).map_err(|e| e.to_string()),
        Action::Mkdir { path } => std::fs::create_dir_all(path).map_err(|e| e.to_string()),
        Action::Run { argv } => {
            if !run_commands {
                println!("  (not run: a fake host)");
                return Ok(());
            }
            let (prog, args) = argv.split_first().ok_or("empty command")?;
            let out = Command::new(prog)
                .args(args)
                .output()
                .map_err(|e| format!("cannot run {prog}: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{} ({})",
                    String::from_utf8_lossy(&out.stderr).trim(),
                    out.status
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_describe_themselves() {
        let w = Action::write("/sys/x".into(), "1024");
        assert_eq!(w.to_string(), "write \"1024\" to /sys/x");
        let m = Action::write("/etc/f".into(), "a=1\nb=2\n");
        assert_eq!(m.to_string(), "write /etc/f (2 lines)");
        assert_eq!(
            Action::run(&["modprobe", "vfio-pci"]).to_string(),
            "run modprobe vfio-pci"
        );
    }

    #[test]
    fn applying_writes_and_stops_at_a_failure() {
        let dir = std::env::temp_dir().join(format!("host-plan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ok = vec![
            Action::Mkdir {
                path: dir.join("d"),
            },
            Action::write(dir.join("d/f"), "x"),
            Action::run(&["false"]),
        ];
        execute(&ok, true, true).unwrap();
        assert!(!dir.join("d").exists(), "a dry run changes nothing");
        // Commands are not run on a fake host.
        execute(&ok, false, false).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("d/f")).unwrap(), "x");
        let e = execute(&ok, false, true).unwrap_err();
        assert!(e.starts_with("run false:"), "{e}");
        let bad = vec![Action::write(dir.join("missing/f"), "x")];
        assert!(execute(&bad, false, true)
            .unwrap_err()
            .contains("missing/f"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
