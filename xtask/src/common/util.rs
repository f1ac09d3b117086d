//! Small helpers shared by the subcommands.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use regex::Regex;

/// Writes a file atomically: a temporary file in the same directory, then a rename,
/// so an interrupted run never leaves a half-written file behind.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    fs_err::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    fs_err::write(&tmp, contents).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs_err::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// Looks a program up in PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Wall-clock timings of the phases of one run, printed at the end.
#[derive(Debug, Default)]
pub struct Phases {
    done: Vec<(String, Duration)>,
}

impl Phases {
    /// Runs `f` as the phase `name` and records how long it took.
    pub fn run<T>(&mut self, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        eprintln!("==> {name}");
        let start = Instant::now();
        let out = f();
        let took = start.elapsed();
        eprintln!("<== {name}: {}", fmt_duration(took));
        self.done.push((name.to_string(), took));
        out
    }

    /// One line: `phases: fetch 1.2s, apply 0.3s, ...`.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .done
            .iter()
            .map(|(name, d)| format!("{name} {}", fmt_duration(*d)))
            .collect();
        format!("phases: {}", parts.join(", "))
    }
}

/// `1.2s`, `3m04s`.
pub fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        let whole = d.as_secs();
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

/// Number of parallel build jobs: one more than the cores, as kernel developers do.
pub fn jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() + 1)
        .unwrap_or(2)
}

/// Strips a worktree or build-dir prefix from a path in a tool's output.
pub fn rel_path(path: &str, wt: &Path) -> String {
    let wt = wt.to_string_lossy();
    let p = path.strip_prefix(wt.as_ref()).unwrap_or(path);
    let p = p.trim_start_matches('/');
    let mut p = p;
    while let Some(rest) = p.strip_prefix("../") {
        p = rest;
    }
    p.strip_prefix("linux/").unwrap_or(p).to_string()
}

/// Removes `:line:col` numbers after a path so findings compare across line shifts.
pub fn without_lines(s: &str) -> String {
    static RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r":\d+(:\d+)?([:\s]|$)").unwrap());
    RE.replace_all(s, "$2").to_string()
}

/// Quotes one word for sh.
pub fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(fmt_duration(Duration::from_millis(1234)), "1.2s");
        assert_eq!(fmt_duration(Duration::from_secs(184)), "3m04s");
    }

    #[test]
    fn atomic_write_replaces() {
        let dir = std::env::temp_dir().join(format!("xtask-util-{}", std::process::id()));
        let file = dir.join("a.txt");
        write_atomic(&file, b"one").unwrap();
        write_atomic(&file, b"two").unwrap();
        assert_eq!(fs_err::read_to_string(&file).unwrap(), "two");
        let leftovers: Vec<_> = fs_err::read_dir(&dir).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
        fs_err::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn paths_and_line_numbers() {
        let wt = Path::new("/t/check/linux");
        assert_eq!(rel_path("/t/check/linux/net/a.c", wt), "net/a.c");
        assert_eq!(rel_path("../linux/net/a.c", wt), "net/a.c");
        assert_eq!(rel_path("net/a.c", wt), "net/a.c");
        assert_eq!(
            without_lines("net/a.c:12:5: warning: x [-Wy]"),
            "net/a.c: warning: x [-Wy]"
        );
        assert_eq!(without_lines("a.sh:3:1: note"), "a.sh: note");
    }
}
