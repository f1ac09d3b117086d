//! The one `make` of the kernel: `make -C SRC O=DIR CC="ccache gcc" -jN` with the
//! project's ccache settings, optionally with Debian's Rust toolchain and under the
//! machine-wide build lock, its output in a log file; the first errors of a failed
//! run; and, for the long builds, a progress line at least every 30 s.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use regex::Regex;

use crate::common::deps;
use crate::common::project::Project;
use crate::common::util::{fmt_duration, jobs, write_atomic};

/// The lock every check build takes, so that two gates on one machine do not build
/// at once.
const BUILD_LOCK: &str = "/tmp/kbuild.lock";

/// How often a long build says how far it is.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// A `make` in a kernel tree `src` with the build directory `dir`.
pub struct Make<'a> {
    project: &'a Project,
    src: &'a Path,
    dir: &'a Path,
    /// Debian's Rust toolchain (RUSTC, BINDGEN, LIBCLANG_PATH) with this bindgen.
    bindgen: Option<&'a Path>,
    /// Run under `flock` [`BUILD_LOCK`].
    locked: bool,
    /// Print progress lines: (what, the file that keeps the last build's count).
    progress: Option<(String, PathBuf)>,
}

impl<'a> Make<'a> {
    pub fn new(project: &'a Project, src: &'a Path, dir: &'a Path) -> Make<'a> {
        Make {
            project,
            src,
            dir,
            bindgen: None,
            locked: false,
            progress: None,
        }
    }

    /// With Debian's Rust toolchain: RUSTC, BINDGEN (on PATH too) and LIBCLANG_PATH.
    pub fn rust(mut self, bindgen: &'a Path) -> Make<'a> {
        self.bindgen = Some(bindgen);
        self
    }

    /// Under the machine-wide build lock (`flock /tmp/kbuild.lock make ...`).
    pub fn locked(mut self) -> Make<'a> {
        self.locked = true;
        self
    }

    /// Prints `WHAT: N/M objects (P%), ELAPSED` at least every 30 s, M being the
    /// count of the earlier builds in this directory (the largest; kept in
    /// `count_file`).
    pub fn progress(mut self, what: &str, count_file: PathBuf) -> Make<'a> {
        self.progress = Some((what.to_string(), count_file));
        self
    }

    /// The command, without targets: the caller may add arguments and output.
    pub fn command(&self) -> Result<Command> {
        let cache = self.project.cache_dir()?;
        let mut cmd = if self.locked {
            let mut c = Command::new("flock");
            c.arg(BUILD_LOCK).arg("make");
            c
        } else {
            Command::new("make")
        };
        // cargo's environment (CARGO_PKG_RUST_VERSION and the like, set for `cargo
        // xtask`) describes the xtask, not the kernel: clippy-driver would read it as the
        // kernel crate's MSRV and warn.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
                "CARGO_PRIMARY_",
            ]
            .iter()
            .any(|p| k.starts_with(p))
            {
                cmd.env_remove(k);
            }
        }
        cmd.arg("-C")
            .arg(self.src)
            .arg(format!("O={}", self.dir.display()))
            .arg("CC=ccache gcc")
            .arg(format!("-j{}", jobs()))
            .env("CCACHE_DIR", cache.join("ccache"))
            .env("CCACHE_BASEDIR", &self.project.root)
            .env("CCACHE_NOHASHDIR", "true")
            .env("CCACHE_MAXSIZE", "10G")
            .stdin(Stdio::null());
        if let Some(bindgen) = self.bindgen {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut paths: Vec<PathBuf> = bindgen
                .parent()
                .map(Path::to_path_buf)
                .into_iter()
                .collect();
            paths.extend(std::env::split_paths(&path));
            cmd.arg(format!("RUSTC={}", deps::KERNEL_RUSTC))
                .arg(format!("BINDGEN={}", bindgen.display()))
                .env("PATH", std::env::join_paths(paths)?)
                .env("LIBCLANG_PATH", deps::LIBCLANG_PATH);
        }
        Ok(cmd)
    }

    /// Runs `make ARGS`, stdout and stderr into `log`: whether it succeeded, and the
    /// log's text.
    pub fn run<S: AsRef<str>>(&self, args: &[S], log: &Path) -> Result<(bool, String)> {
        let logf = fs_err::File::create(log)?.into_parts().0;
        let mut cmd = self.command()?;
        cmd.args(args.iter().map(AsRef::as_ref))
            .stdout(logf.try_clone()?)
            .stderr(logf);
        let what = if self.locked {
            "cannot run flock make (is util-linux installed?)"
        } else {
            "cannot run make"
        };
        let ok = match &self.progress {
            None => cmd.status().context(what)?.success(),
            Some((name, count_file)) => {
                let child = cmd.spawn().context(what)?;
                watch(child, log, name, count_file)?
            }
        };
        let text = fs_err::read_to_string(log).unwrap_or_default();
        Ok((ok, text))
    }

    /// [`Make::run`], failing with the first errors and the log when make fails.
    pub fn run_ok<S: AsRef<str>>(&self, args: &[S], log: &Path) -> Result<String> {
        let (ok, text) = self.run(args, log)?;
        if !ok {
            let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
            bail!(
                "make {} failed; the first errors:\n{}\nfull log: {}",
                args.join(" "),
                first_errors(&text, 25),
                log.display()
            );
        }
        Ok(text)
    }
}

/// Waits for make, reading its log as it grows, and prints a progress line every
/// [`PROGRESS_EVERY`]; on success, keeps the count for the next build.
fn watch(
    mut child: std::process::Child,
    log: &Path,
    what: &str,
    count_file: &Path,
) -> Result<bool> {
    let expected: Option<usize> = fs_err::read_to_string(count_file)
        .ok()
        .and_then(|t| t.trim().parse().ok());
    let start = Instant::now();
    let mut last = start;
    let mut reader = fs_err::File::open(log)?;
    let mut offset = 0u64;
    let mut partial = String::new();
    let mut done = 0usize;
    let status = loop {
        let exited = child.try_wait()?;
        // Count the lines written since the last look.
        reader.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::new();
        reader.read_to_end(&mut buf)?;
        offset += buf.len() as u64;
        partial.push_str(&String::from_utf8_lossy(&buf));
        if let Some(end) = partial.rfind('\n') {
            done += count_steps(&partial[..end]);
            partial.drain(..=end);
        }
        if let Some(status) = exited {
            break status;
        }
        if last.elapsed() >= PROGRESS_EVERY {
            last = Instant::now();
            eprintln!("{}", progress_line(what, done, expected, start.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    done += count_steps(&partial);
    if status.success() {
        // Kept under the build directory (target/), for the next build's percentage:
        // the largest count so far, so that an incremental build of a few objects
        // does not make the next full build look finished at once.
        let keep = expected.map_or(done, |e| e.max(done));
        write_atomic(count_file, format!("{keep}\n").as_bytes())?;
    }
    Ok(status.success())
}

/// The kbuild steps of a stretch of make output: `  CC      net/a.o`,
/// `  LD [M]  x.ko`, `  RUSTC L rust/core.o`, ... (one per object it makes).
pub fn count_steps(text: &str) -> usize {
    static STEP: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?m)^  [A-Z][A-Z0-9_]{1,9}(?: \[M\]| [A-Z])? +\S").unwrap());
    STEP.find_iter(text).count()
}

/// `kernel build: 1234/5678 objects (21%), 3m 30s`; without a previous build, the
/// count alone.
pub fn progress_line(
    what: &str,
    done: usize,
    expected: Option<usize>,
    elapsed: Duration,
) -> String {
    let elapsed = fmt_duration(elapsed);
    match expected {
        Some(n) if n > 0 => format!(
            "{what}: {done}/{n} objects ({}%), {elapsed}",
            (done * 100 / n).min(100)
        ),
        _ => format!("{what}: {done} objects (no earlier build to compare), {elapsed}"),
    }
}

/// The first error lines of a build log with a little context; the tail otherwise.
pub fn first_errors(log: &str, max: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let first = lines
        .iter()
        .position(|l| l.contains("error:") || l.contains("Error ") || l.contains("*** "));
    let start = match first {
        Some(i) => i.saturating_sub(3),
        None => lines.len().saturating_sub(max),
    };
    lines[start..lines.len().min(start + max)].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_kbuild_steps() {
        let log = "  SYNC    include/config/auto.conf\n  CC      net/core/dev.o\n\
                   \x20 CC [M]  drivers/x.o\n  RUSTC L rust/core.o\n  LD [M]  drivers/x.ko\n\
                   net/a.c:1:1: warning: x\nmake[2]: Entering directory\n  HOSTCC  scripts/basic/fixdep\n";
        assert_eq!(count_steps(log), 6);
    }

    #[test]
    fn progress_lines() {
        let t = Duration::from_secs(210);
        let l = progress_line("kernel build", 1234, Some(5678), t);
        assert!(
            l.starts_with("kernel build: 1234/5678 objects (21%), "),
            "{l}"
        );
        assert!(l.contains(&fmt_duration(t)));
        let first = progress_line("kernel build", 10, None, t);
        assert!(first.contains("10 objects (no earlier build"), "{first}");
        assert!(progress_line("b", 900, Some(100), t).contains("(100%)"));
    }

    #[test]
    fn watching_a_build_counts_its_steps_and_keeps_the_largest() {
        let dir = std::env::temp_dir().join(format!("xtask-watch-{}", std::process::id()));
        fs_err::create_dir_all(&dir).unwrap();
        let (log, count) = (dir.join("build.log"), dir.join("count"));
        let run = |n: usize| {
            let f = std::fs::File::create(&log).unwrap();
            let script =
                format!("for i in $(seq {n}); do echo \"  CC      a$i.o\"; done; echo done");
            let child = Command::new("sh")
                .arg("-c")
                .arg(script)
                .stdout(f)
                .spawn()
                .unwrap();
            watch(child, &log, "test build", &count).unwrap()
        };
        assert!(run(5));
        assert_eq!(fs_err::read_to_string(&count).unwrap(), "5\n");
        assert!(run(2));
        assert_eq!(fs_err::read_to_string(&count).unwrap(), "5\n");
        let _ = fs_err::remove_dir_all(&dir);
    }
}
