//! kbuild: configure (allnoconfig + fragments, verified) and build the kernel out of
//! tree with ccache and Debian's Rust toolchain; install the series' selftests. The
//! one `make` wrapper and the one fragment builder of the xtask.

pub mod clippy;
pub mod config;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use xshell::Shell;

use crate::common::deps;
use crate::common::git;
use crate::common::project::Project;
use crate::common::util::{jobs, write_atomic};
use config::Want;

/// Options the series itself adds; the `m` variant builds them as modules.
pub const SERIES_OPTIONS: &[&str] = &["CONFIG_INFINIBAND_RDMABOND"];

/// How the series' own drivers are built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Variant {
    /// Built in (the configuration the tests boot).
    Y,
    /// As loadable modules.
    M,
    /// As modules, on a debug kernel (`ci/debug/dbg.config`: lockdep, kmemleak,
    /// the netdev reference trackers, ...), built with GCC and without Rust.
    Dbg,
    /// `dbg` plus KASAN (`ci/debug/kasan.config`).
    Kasan,
}

impl Variant {
    /// `y` or `m`, as used in the build directory name.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Y => "y",
            Variant::M => "m",
            Variant::Dbg => "dbg",
            Variant::Kasan => "kasan",
        }
    }

    /// The debug fragments merged last, in order.
    pub fn debug_fragments(self) -> &'static [&'static str] {
        match self {
            Variant::Y | Variant::M => &[],
            Variant::Dbg => &[DBG_FRAGMENT],
            Variant::Kasan => &[DBG_FRAGMENT, KASAN_FRAGMENT],
        }
    }

    /// Whether the series' drivers are modules in this variant.
    pub fn modular(self) -> bool {
        self != Variant::Y
    }
}

/// The debug variants' fragment, merged last.
pub const DBG_FRAGMENT: &str = "ci/debug/dbg.config";
/// The kasan variant's fragment, merged after [`DBG_FRAGMENT`].
pub const KASAN_FRAGMENT: &str = "ci/debug/kasan.config";

/// Whether an option is (or needs) the kernel's Rust support, which the debug variant
/// leaves out: with GCC, `CONFIG_RUST` excludes KASAN.
pub fn is_rust_option(name: &str) -> bool {
    ["CONFIG_RUST", "CONFIG_SAMPLES_RUST", "CONFIG_SAMPLE_RUST_"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct Built {
    /// Build directory.
    pub dir: PathBuf,
    /// bzImage.
    pub image: PathBuf,
    /// INSTALL_MOD_PATH with lib/modules/<release>.
    pub modroot: PathBuf,
    /// Installed kselftests (run_kselftest.sh), when the series has any.
    pub kselftest: Option<PathBuf>,
    /// Selftest TARGETS the series adds.
    pub targets: Vec<String>,
    /// The build's own checks that passed (a failed one fails the build).
    pub checks: Vec<String>,
}

/// Selftest directories the series adds: those with an added Makefile.
pub fn selftest_targets(added: &[String]) -> Vec<String> {
    let mut out: Vec<String> = added
        .iter()
        .filter_map(|f| f.strip_prefix("tools/testing/selftests/"))
        .filter_map(|f| f.strip_suffix("/Makefile"))
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Options of the Kconfig files the series adds or changes that depend on one of the
/// series' options being built in (`depends on OPTION=y`): the `m` variant cannot have
/// them, so it leaves them out rather than fail the dropped-option check.
pub fn builtin_only(sh: &Shell, project: &Project) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in git::changed_files(sh, project)? {
        let name = Path::new(&f)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        if !name.starts_with("Kconfig") {
            continue;
        }
        let text = std::fs::read_to_string(project.tree.join(&f))
            .with_context(|| format!("cannot read {f}"))?;
        for o in config::needs_builtin(&text, SERIES_OPTIONS) {
            if !out.contains(&o) {
                out.push(o);
            }
        }
    }
    Ok(out)
}

/// The fragments, in merge order: ci/*.config, the series' selftest configs, variant
/// (for `m` and `dbg`, without `builtin_only`; for `dbg`, without Rust and with
/// [`DBG_FRAGMENT`] last).
pub fn fragments(
    project: &Project,
    targets: &[String],
    variant: Variant,
    builtin_only: &[String],
) -> Result<Vec<Vec<Want>>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(project.ci_dir())
        .with_context(|| format!("cannot read {}", project.ci_dir().display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "config"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f)?;
        let origin = f
            .strip_prefix(&project.root)
            .unwrap_or(f)
            .display()
            .to_string();
        out.push(config::parse_fragment(&text, &origin)?);
    }
    for t in targets {
        let f = project
            .tree
            .join("tools/testing/selftests")
            .join(t)
            .join("config");
        if f.is_file() {
            let text = std::fs::read_to_string(&f)?;
            out.push(config::parse_fragment(
                &text,
                &format!("tools/testing/selftests/{t}/config"),
            )?);
        }
    }
    if variant.modular() {
        let asked: Vec<&String> = out.iter().flatten().map(|w| &w.name).collect();
        let mods: Vec<Want> = SERIES_OPTIONS
            .iter()
            .filter(|o| asked.iter().any(|a| a == *o))
            .map(|o| Want {
                name: o.to_string(),
                value: "m".into(),
                origin: format!("--variant {}", variant.name()),
            })
            .collect();
        out.push(mods);
        for frag in &mut out {
            frag.retain(|w| !builtin_only.contains(&w.name));
        }
    }
    let debug = variant.debug_fragments();
    if !debug.is_empty() {
        for frag in &mut out {
            frag.retain(|w| !is_rust_option(&w.name));
        }
        out.push(vec![Want {
            name: "CONFIG_RUST".into(),
            value: "n".into(),
            origin: format!("--variant {} (GCC: Rust excludes KASAN)", variant.name()),
        }]);
    }
    for name in debug {
        let f = project.root.join(name);
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?;
        out.push(config::parse_fragment(&text, name)?);
    }
    Ok(out)
}

/// `make -C SRC O=DIR CC="ccache gcc" -jN` with the project's ccache settings (shared
/// cache under the cache directory, paths relative to the checkout), run through
/// `launcher` (e.g. `flock LOCK`) when it is not empty. The caller adds targets,
/// variables and output.
pub fn kernel_make(
    project: &Project,
    launcher: &[&str],
    src: &Path,
    dir: &Path,
) -> Result<Command> {
    let cache = project.cache_dir()?;
    let mut cmd = match launcher.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg("make");
            c
        }
        None => Command::new("make"),
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
        .arg(src)
        .arg(format!("O={}", dir.display()))
        .arg("CC=ccache gcc")
        .arg(format!("-j{}", jobs()))
        .env("CCACHE_DIR", cache.join("ccache"))
        .env("CCACHE_BASEDIR", &project.root)
        .env("CCACHE_NOHASHDIR", "true")
        .env("CCACHE_MAXSIZE", "10G")
        .stdin(Stdio::null());
    Ok(cmd)
}

/// [`kernel_make`] with Debian's Rust toolchain: RUSTC, BINDGEN (on PATH too) and
/// LIBCLANG_PATH.
pub fn rust_make(
    project: &Project,
    launcher: &[&str],
    src: &Path,
    dir: &Path,
    bindgen: &Path,
) -> Result<Command> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths: Vec<PathBuf> = bindgen
        .parent()
        .map(Path::to_path_buf)
        .into_iter()
        .collect();
    paths.extend(std::env::split_paths(&path));
    let mut cmd = kernel_make(project, launcher, src, dir)?;
    cmd.arg(format!("RUSTC={}", deps::KERNEL_RUSTC))
        .arg(format!("BINDGEN={}", bindgen.display()))
        .env("PATH", std::env::join_paths(paths)?)
        .env("LIBCLANG_PATH", deps::LIBCLANG_PATH);
    Ok(cmd)
}

fn make(project: &Project, dir: &Path, bindgen: &Path, args: &[&str], log: &Path) -> Result<()> {
    let logf =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let status = rust_make(project, &[], &project.tree, dir, bindgen)?
        .args(args)
        .stdout(logf.try_clone()?)
        .stderr(logf)
        .status()
        .context("cannot run make")?;
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        bail!(
            "make {} failed; the first errors:\n{}\nfull log: {}",
            args.join(" "),
            first_errors(&text, 25),
            log.display()
        );
    }
    Ok(())
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

/// Configures and builds one variant.
pub fn build(sh: &Shell, project: &Project, variant: Variant, config_only: bool) -> Result<Built> {
    deps::ensure(sh, "the kernel build", deps::BUILD)?;
    let bindgen = deps::bindgen(sh, &project.cache_dir()?)?;
    let dir = project.build_dir(variant.name());
    std::fs::create_dir_all(&dir)?;
    let targets = selftest_targets(&git::added_files(sh, project)?);
    let builtin_only = if variant.modular() {
        builtin_only(sh, project)?
    } else {
        Vec::new()
    };
    if !builtin_only.is_empty() {
        eprintln!(
            "--variant {} leaves out what needs the series built in: {}",
            variant.name(),
            builtin_only.join(", ")
        );
    }
    let wants = config::merge(&fragments(project, &targets, variant, &builtin_only)?);
    let fragment = config::render(&wants);
    let frag_path = dir.join("xtask.fragment");
    let dotconfig = dir.join(".config");
    let stale = std::fs::read_to_string(&frag_path).ok().as_deref() != Some(fragment.as_str())
        || !dotconfig.is_file();
    if stale {
        write_atomic(&frag_path, fragment.as_bytes())?;
        let alloc = format!("KCONFIG_ALLCONFIG={}", frag_path.display());
        eprintln!(
            "configuring {} (allnoconfig + {} options)",
            dir.display(),
            wants.len()
        );
        make(
            project,
            &dir,
            &bindgen,
            &[&alloc, "allnoconfig"],
            &dir.join("config.log"),
        )?;
    }
    let have = config::parse_dotconfig(&std::fs::read_to_string(&dotconfig)?);
    let lost = config::dropped(&wants, &have);
    if !lost.is_empty() {
        // Force a fresh allnoconfig next time, after the fragments are fixed.
        let _ = std::fs::remove_file(&frag_path);
        bail!(
            "{}",
            config::dropped_error(&lost, &dir.display().to_string())
        );
    }
    let image = dir.join("arch/x86/boot/bzImage");
    let modroot = dir.join("modroot");
    if config_only {
        return Ok(Built {
            dir,
            image,
            modroot,
            kselftest: None,
            targets,
            checks: Vec::new(),
        });
    }
    let rust = have.get("CONFIG_RUST").is_some_and(|v| v == "y");
    let mut args: Vec<String> = Vec::new();
    if rust {
        // The Rust code is compiled by clippy-driver: same objects, plus the lints.
        args.extend(clippy::make_vars(&clippy::conf_dir(&[&project.tree])?));
    }
    args.extend(["bzImage", "modules", "headers"].map(String::from));
    let build_log = dir.join("build.log");
    eprintln!(
        "building bzImage and modules{} (log: {})",
        if rust { " with CLIPPY=1" } else { "" },
        build_log.display()
    );
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    make(project, &dir, &bindgen, &refs, &build_log)?;
    let mut checks = Vec::new();
    if rust {
        let text = std::fs::read_to_string(&build_log)?;
        clippy::gate(&text, &project.tree, &dir, &build_log)?;
        let linted = clippy::linted(&text);
        checks.push(format!(
            "kernel Rust code: CLIPPY=1 build with no warnings ({linted} object(s) linted now)"
        ));
    }
    let _ = std::fs::remove_dir_all(&modroot);
    let mod_path = format!("INSTALL_MOD_PATH={}", modroot.display());
    make(
        project,
        &dir,
        &bindgen,
        &[&mod_path, "INSTALL_MOD_STRIP=1", "modules_install"],
        &dir.join("modules_install.log"),
    )?;
    if rust {
        let rustfmt = format!(
            "RUSTFMT={} --config-path {}",
            deps::KERNEL_RUSTFMT,
            clippy::kernel_dotfile(&[&project.tree], ".rustfmt.toml")?.display()
        );
        make(
            project,
            &dir,
            &bindgen,
            &[&rustfmt, "rustfmtcheck"],
            &dir.join("rustfmtcheck.log"),
        )
        .context("the kernel's Rust code is not rustfmt-clean (`make rustfmtcheck`)")?;
        checks.push("kernel Rust code: make rustfmtcheck".to_string());
    }
    let kselftest = if targets.is_empty() {
        None
    } else {
        let t = format!("TARGETS={}", targets.join(" "));
        // net/lib, which the rdmabond tests install, builds BPF objects with clang.
        let clang = format!("CLANG={}", deps::SELFTEST_CLANG);
        make(
            project,
            &dir,
            &bindgen,
            &[&t, &clang, "kselftest-install"],
            &dir.join("kselftest.log"),
        )?;
        let path = dir.join("kselftest/kselftest_install");
        if !path.join("run_kselftest.sh").is_file() {
            bail!(
                "kselftest-install left no run_kselftest.sh in {}",
                path.display()
            );
        }
        Some(path)
    };
    Ok(Built {
        dir,
        image,
        modroot,
        kselftest,
        targets,
        checks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_dirs_with_new_makefiles() {
        let added = vec![
            "tools/testing/selftests/drivers/net/rdmabond/Makefile".to_string(),
            "tools/testing/selftests/drivers/net/rdmabond/lib.sh".to_string(),
            "drivers/infiniband/ulp/rdmabond/Makefile".to_string(),
            "tools/testing/selftests/Makefile".to_string(),
        ];
        assert_eq!(selftest_targets(&added), vec!["drivers/net/rdmabond"]);
    }

    #[test]
    fn first_errors_finds_the_error() {
        let log = "CC a.o\nCC b.o\nCC c.o\nCC d.o\nd.c:1:1: error: x\nmake: *** [d.o] Error 1\n";
        assert!(first_errors(log, 3).starts_with("CC b.o\nCC c.o\nCC d.o"));
        assert_eq!(first_errors("a\nb\nc\n", 2), "b\nc");
    }

    #[test]
    fn dbg_leaves_rust_out() {
        assert!(is_rust_option("CONFIG_RUST"));
        assert!(is_rust_option("CONFIG_SAMPLE_RUST_RDMABOND_MONITOR"));
        assert!(is_rust_option("CONFIG_SAMPLES_RUST"));
        assert!(!is_rust_option("CONFIG_KASAN"));
        assert!(!is_rust_option("CONFIG_SAMPLES"));
    }
}
