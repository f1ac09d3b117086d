//! kbuild: configure (allnoconfig + fragments, verified) and build the kernel out of
//! tree with ccache and Debian's Rust toolchain; install the series' selftests. The
//! one `make` wrapper and the one fragment builder of the xtask.

pub mod clippy;
pub mod config;
pub mod make;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::Shell;

use crate::common::deps;
use crate::common::git;
use crate::common::project::Project;
use crate::common::util::write_atomic;
use config::Want;
pub use make::{first_errors, Make};

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
        let text = fs_err::read_to_string(project.tree.join(&f))
            .with_context(|| format!("cannot read {f}"))?;
        for o in config::needs_builtin(&text, SERIES_OPTIONS) {
            if !out.contains(&o) {
                out.push(o);
            }
        }
    }
    Ok(out)
}

/// ci/*.config in name order (without ci/rust.config unless `rust`).
fn ci_fragments(project: &Project, rust: bool) -> Result<Vec<Vec<Want>>> {
    let mut files: Vec<PathBuf> = fs_err::read_dir(project.ci_dir())
        .with_context(|| format!("cannot read {}", project.ci_dir().display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "config"))
        .filter(|p| rust || p.file_name().is_some_and(|n| n != "rust.config"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in &files {
        let text = fs_err::read_to_string(f)?;
        let origin = f
            .strip_prefix(&project.root)
            .unwrap_or(f)
            .display()
            .to_string();
        out.push(config::parse_fragment(&text, &origin)?);
    }
    Ok(out)
}

/// The `config` files of the series' selftest directories that exist.
fn selftest_fragments(project: &Project, targets: &[String]) -> Result<Vec<Vec<Want>>> {
    let mut out = Vec::new();
    for t in targets {
        let f = project
            .tree
            .join("tools/testing/selftests")
            .join(t)
            .join("config");
        if f.is_file() {
            let text = fs_err::read_to_string(&f)?;
            out.push(config::parse_fragment(
                &text,
                &format!("tools/testing/selftests/{t}/config"),
            )?);
        }
    }
    Ok(out)
}

/// [`SERIES_OPTIONS`] as modules.
fn series_modules(origin: &str) -> Vec<Want> {
    SERIES_OPTIONS
        .iter()
        .map(|o| Want {
            name: o.to_string(),
            value: "m".into(),
            origin: origin.to_string(),
        })
        .collect()
}

/// The allnoconfig fragment of `cargo xtask check`'s W=1 build: ci/*.config without
/// Rust (the check build has none; test-qemu builds it), the series' selftest
/// configs, and the series' own drivers as modules.
pub fn check_fragment(project: &Project, targets: &[String]) -> Result<String> {
    let mut frags = ci_fragments(project, false)?;
    frags.extend(selftest_fragments(project, targets)?);
    frags.push(series_modules("check"));
    Ok(config::render(&config::merge(&frags)))
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
    let mut out = ci_fragments(project, true)?;
    out.extend(selftest_fragments(project, targets)?);
    if variant.modular() {
        let asked: Vec<&String> = out.iter().flatten().map(|w| &w.name).collect();
        let mods: Vec<Want> = series_modules(&format!("--variant {}", variant.name()))
            .into_iter()
            .filter(|w| asked.iter().any(|a| **a == w.name))
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
            fs_err::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?;
        out.push(config::parse_fragment(&text, name)?);
    }
    Ok(out)
}

/// Configures and builds one variant.
pub fn build(sh: &Shell, project: &Project, variant: Variant, config_only: bool) -> Result<Built> {
    deps::ensure(sh, "the kernel build", deps::BUILD)?;
    let bindgen = deps::bindgen(sh, &project.cache_dir()?)?;
    let dir = project.build_dir(variant.name());
    fs_err::create_dir_all(&dir)?;
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
    let stale = fs_err::read_to_string(&frag_path).ok().as_deref() != Some(fragment.as_str())
        || !dotconfig.is_file();
    if stale {
        write_atomic(&frag_path, fragment.as_bytes())?;
        let alloc = format!("KCONFIG_ALLCONFIG={}", frag_path.display());
        eprintln!(
            "configuring {} (allnoconfig + {} options)",
            dir.display(),
            wants.len()
        );
        Make::new(project, &project.tree, &dir)
            .rust(&bindgen)
            .run_ok(&[&alloc, "allnoconfig"], &dir.join("config.log"))?;
    }
    let have = config::parse_dotconfig(&fs_err::read_to_string(&dotconfig)?);
    let lost = config::dropped(&wants, &have);
    if !lost.is_empty() {
        // Force a fresh allnoconfig next time, after the fragments are fixed.
        let _ = fs_err::remove_file(&frag_path);
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
    Make::new(project, &project.tree, &dir)
        .rust(&bindgen)
        .progress("kernel build", dir.join("xtask-build-objects"))
        .run_ok(&refs, &build_log)?;
    let mut checks = Vec::new();
    if rust {
        let text = fs_err::read_to_string(&build_log)?;
        clippy::gate(&text, &project.tree, &dir, &build_log)?;
        let linted = clippy::linted(&text);
        checks.push(format!(
            "kernel Rust code: CLIPPY=1 build with no warnings ({linted} object(s) linted now)"
        ));
    }
    let _ = fs_err::remove_dir_all(&modroot);
    let mod_path = format!("INSTALL_MOD_PATH={}", modroot.display());
    Make::new(project, &project.tree, &dir)
        .rust(&bindgen)
        .run_ok(
            &[&mod_path, "INSTALL_MOD_STRIP=1", "modules_install"],
            &dir.join("modules_install.log"),
        )?;
    if rust {
        let rustfmt = format!(
            "RUSTFMT={} --config-path {}",
            deps::KERNEL_RUSTFMT,
            clippy::kernel_dotfile(&[&project.tree], ".rustfmt.toml")?.display()
        );
        Make::new(project, &project.tree, &dir)
            .rust(&bindgen)
            .run_ok(&[&rustfmt, "rustfmtcheck"], &dir.join("rustfmtcheck.log"))
            .context("the kernel's Rust code is not rustfmt-clean (`make rustfmtcheck`)")?;
        checks.push("kernel Rust code: make rustfmtcheck".to_string());
    }
    let kselftest = if targets.is_empty() {
        None
    } else {
        let t = format!("TARGETS={}", targets.join(" "));
        // net/lib, which the rdmabond tests install, builds BPF objects with clang.
        let clang = format!("CLANG={}", deps::SELFTEST_CLANG);
        Make::new(project, &project.tree, &dir)
            .rust(&bindgen)
            .run_ok(
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
