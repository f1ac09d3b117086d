//! The kernel's `make CLIPPY=1` build: the Rust code is compiled by Debian's
//! clippy-driver (the same object code as rustc, plus clippy's lints) with the kernel's
//! clippy configuration, and any warning the compiler or clippy prints fails the build.
//! clippy reads the kernel's own configuration, .clippy.toml at the top of the tree
//! (`CLIPPY_CONF_DIR`).

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use anyhow::{Context, Result};
use regex::Regex;

use crate::common::deps::CLIPPY_DRIVER;

/// The `make` variables of a CLIPPY=1 build whose configuration is in `conf_dir`.
pub fn make_vars(conf_dir: &Path) -> Vec<String> {
    vec![
        "CLIPPY=1".into(),
        format!("CLIPPY_DRIVER={CLIPPY_DRIVER}"),
        format!("CLIPPY_CONF_DIR={}", conf_dir.display()),
    ]
}

/// The directory with the kernel's .clippy.toml: the first of `trees` that has it.
/// The tarball has the kernel's dotfiles, but the base commit does not track them (the
/// kernel's .gitignore ignores `.*`; upstream force-adds them), so a worktree of the
/// kernel repository has none and takes the main tree's.
pub fn conf_dir(trees: &[&Path]) -> Result<PathBuf> {
    kernel_dotfile(trees, ".clippy.toml").map(|f| f.parent().unwrap().to_path_buf())
}

/// A dotfile of the kernel tarball (.clippy.toml, .rustfmt.toml) from the first of
/// `trees` that has it.
pub fn kernel_dotfile(trees: &[&Path], name: &str) -> Result<PathBuf> {
    trees
        .iter()
        .map(|t| t.join(name))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "the kernel's {name} is missing from {}: extract the tree again \
                 (remove kernel-src/linux after exporting your work, then `cargo xtask apply`)",
                trees
                    .iter()
                    .map(|t| t.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" and ")
            )
        })
}

/// One warning or error rustc or clippy printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RustDiag {
    /// `warning` or `error`.
    pub level: String,
    /// The message, with the lint name when there is one (`[clippy::foo]` style is
    /// rustc's `warning: ...` line followed by `= note: ... #[warn(clippy::foo)]`).
    pub message: String,
    /// Source path (relative to the tree) and line, from the `-->` line.
    pub file: Option<String>,
    pub line: Option<usize>,
}

impl RustDiag {
    pub fn place(&self) -> String {
        match (&self.file, self.line) {
            (Some(f), Some(l)) => format!("{f}:{l}"),
            (Some(f), None) => f.clone(),
            _ => "(no location)".into(),
        }
    }
}

/// Parses rustc/clippy diagnostics out of a kernel build log: a `warning: ...` or
/// `error: ...` (or `error[E0...]: ...`) line followed, within a few lines, by
/// `--> file:line:col`. The summary lines ("N warnings emitted", "aborting due to")
/// are not diagnostics.
pub fn parse(log: &str, tree: &Path) -> Vec<RustDiag> {
    static HEAD: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^(warning|error)(?:\[[A-Z0-9]+\])?: (.*)$").unwrap());
    static ARROW: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^\s*--> (\S+?):(\d+):\d+$").unwrap());
    let (head, arrow) = (&*HEAD, &*ARROW);
    let lines: Vec<&str> = log.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(c) = head.captures(l) else { continue };
        let message = c[2].to_string();
        if is_summary(&message) {
            continue;
        }
        let mut d = RustDiag {
            level: c[1].to_string(),
            message,
            file: None,
            line: None,
        };
        for next in lines.iter().skip(i + 1).take(4) {
            if let Some(a) = arrow.captures(next) {
                d.file = Some(crate::common::util::rel_path(&a[1], tree));
                d.line = a[2].parse().ok();
                break;
            }
            if head.is_match(next) {
                break;
            }
        }
        out.push(d);
    }
    out
}

fn is_summary(message: &str) -> bool {
    (message.ends_with("emitted") && message.contains("warning"))
        || message.starts_with("aborting due to")
        || (message.contains(" generated ") && message.contains("warning"))
}

/// How many objects a kernel build log shows clippy-driver compiling.
pub fn linted(log: &str) -> usize {
    log.lines()
        .filter(|l| l.trim_start().starts_with("CLIPPY"))
        .count()
}

/// The object kbuild makes from a Rust source, so that deleting it makes the next
/// build compile (and lint) that source again.
pub fn object_of(file: &str) -> Option<String> {
    for (prefix, obj) in [
        ("rust/kernel/", "rust/kernel.o"),
        ("rust/pin-init/", "rust/pin_init.o"),
        ("rust/ffi", "rust/ffi.o"),
        ("rust/bindings/", "rust/bindings.o"),
        ("rust/uapi/", "rust/uapi.o"),
    ] {
        if file.starts_with(prefix) {
            return Some(obj.into());
        }
    }
    file.strip_suffix(".rs")
        .filter(|f| !f.starts_with("rust/"))
        .map(|f| format!("{f}.o"))
}

/// Fails when the build log has Rust warnings; first deletes the objects they came
/// from, so that the next (incremental) build compiles them again and reports them
/// again instead of passing because nothing was rebuilt.
pub fn gate(log_text: &str, tree: &Path, dir: &Path, log: &Path) -> Result<()> {
    let diags = parse(log_text, tree);
    if diags.is_empty() {
        return Ok(());
    }
    for d in &diags {
        if let Some(obj) = d.file.as_deref().and_then(object_of) {
            let _ = fs_err::remove_file(dir.join(obj));
        }
    }
    let list: Vec<String> = diags
        .iter()
        .map(|d| format!("  {}: {}: {}", d.place(), d.level, d.message))
        .collect();
    anyhow::bail!(
        "the CLIPPY=1 build printed {} Rust warning(s):\n{}\nfix them (the kernel's Rust \
         code must build without warnings); full log: {}",
        diags.len(),
        list.join("\n"),
        log.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "  CLIPPY  rust/kernel.o
warning: this `if` has identical blocks
   --> /k/rust/kernel/rdmabond.rs:120:9
    |
120 |         if a { 1 } else { 1 }
    = note: `#[warn(clippy::if_same_then_else)]` on by default
warning: 1 warning emitted

  CLIPPY [M] samples/rust/rust_rdmabond_monitor.o
error[E0425]: cannot find value `x` in this scope
  --> samples/rust/rust_rdmabond_monitor.rs:7:5
error: aborting due to 1 previous error
warning: `kernel` (lib) generated 1 warning
";

    #[test]
    fn parses_warnings_and_errors_with_places() {
        let d = parse(LOG, Path::new("/k"));
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0].level, "warning");
        assert_eq!(d[0].place(), "rust/kernel/rdmabond.rs:120");
        assert_eq!(d[0].message, "this `if` has identical blocks");
        assert_eq!(d[1].level, "error");
        assert_eq!(d[1].place(), "samples/rust/rust_rdmabond_monitor.rs:7");
    }

    #[test]
    fn clean_log_has_none() {
        let log = "  CLIPPY  rust/kernel.o\n  CC      net/a.o\nnet/a.c:1:1: warning: gcc\n";
        assert!(parse(log, Path::new("/k")).is_empty());
    }

    #[test]
    fn objects() {
        assert_eq!(
            object_of("rust/kernel/rdmabond.rs").as_deref(),
            Some("rust/kernel.o")
        );
        assert_eq!(
            object_of("samples/rust/rust_rdmabond_monitor.rs").as_deref(),
            Some("samples/rust/rust_rdmabond_monitor.o")
        );
        assert_eq!(object_of("rust/macros/lib.rs"), None);
    }

    #[test]
    fn dotfiles_come_from_the_first_tree_that_has_them() {
        let base = std::env::temp_dir().join(format!("xtask-dot-{}", std::process::id()));
        let (wt, main) = (base.join("wt"), base.join("main"));
        fs_err::create_dir_all(&wt).unwrap();
        fs_err::create_dir_all(&main).unwrap();
        fs_err::write(main.join(".clippy.toml"), "msrv = \"1.85.0\"\n").unwrap();
        assert_eq!(conf_dir(&[&wt, &main]).unwrap(), main);
        let err = format!("{:#}", kernel_dotfile(&[&wt], ".rustfmt.toml").unwrap_err());
        assert!(err.contains(".rustfmt.toml is missing"), "{err}");
        let _ = fs_err::remove_dir_all(&base);
    }

    #[test]
    fn gate_fails_and_forgets_objects() {
        let dir = std::env::temp_dir().join(format!("xtask-clippy-{}", std::process::id()));
        fs_err::create_dir_all(dir.join("rust")).unwrap();
        fs_err::write(dir.join("rust/kernel.o"), "x").unwrap();
        let err = gate(LOG, Path::new("/k"), &dir, Path::new("build.log")).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("2 Rust warning(s)"), "{msg}");
        assert!(msg.contains("rust/kernel/rdmabond.rs:120"), "{msg}");
        assert!(!dir.join("rust/kernel.o").exists());
        assert!(gate(
            "  CLIPPY  rust/kernel.o\n",
            Path::new("/k"),
            &dir,
            Path::new("l")
        )
        .is_ok());
        let _ = fs_err::remove_dir_all(&dir);
    }
}
