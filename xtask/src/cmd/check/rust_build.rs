//! The per-patch `CLIPPY=1` check of a patch that touches Rust files. The W=1 check
//! build has no Rust (turning Rust on would rebuild its whole baseline), so Rust
//! patches get a build directory of their own, configured like the booted kernel
//! (`--variant y`), in which only the Rust directories the patch touches are built:
//! `make CLIPPY=1 rust/` and then the other touched directories. Warnings in the
//! patch's own files fail the check; warnings elsewhere were there before the patch
//! and are reported as such.

use std::path::{Path, PathBuf};

use anyhow::Result;
use xshell::Shell;

use super::{Check, Ctx, Outcome, Status};
use crate::common::kbuild::clippy;
use crate::common::kbuild::config;
use crate::common::kbuild::{self, Make, Variant};
use crate::common::project::Project;

/// The Rust check build directory (target/<workdir>/kbuild-rust).
pub struct RustBuilder {
    project: Project,
    wt: PathBuf,
    dir: PathBuf,
    bindgen: PathBuf,
}

impl RustBuilder {
    pub fn new(sh: &Shell, project: &Project, wt: &Path, workdir: &str) -> Result<RustBuilder> {
        let bindgen = crate::common::deps::bindgen(sh, &project.cache_dir()?)?;
        let dir = project.target_dir().join(workdir).join("kbuild-rust");
        fs_err::create_dir_all(&dir)?;
        Ok(RustBuilder {
            project: project.clone(),
            wt: wt.to_path_buf(),
            dir,
            bindgen,
        })
    }

    /// Runs make under the machine-wide build lock; (success, output).
    fn make(&self, args: &[String], log: &Path) -> Result<(bool, String)> {
        Make::new(&self.project, &self.wt, &self.dir)
            .rust(&self.bindgen)
            .locked()
            .run(args, log)
    }

    /// allnoconfig with the booted kernel's fragments, as the worktree is now.
    /// Options the tree does not have yet at this patch are simply left out.
    fn configure(&self) -> Result<()> {
        let targets = kbuild::selftest_targets(
            &crate::common::git::added_files(&Shell::new()?, &self.project).unwrap_or_default(),
        );
        let frags = kbuild::fragments(&self.project, &targets, Variant::Y, &[])?;
        let text = config::render(&config::merge(&frags));
        let frag = self.dir.join("xtask.fragment");
        crate::common::util::write_atomic(&frag, text.as_bytes())?;
        let alloc = format!("KCONFIG_ALLCONFIG={}", frag.display());
        let (ok, out) = self.make(&[alloc, "allnoconfig".into()], &self.dir.join("config.log"))?;
        if !ok {
            anyhow::bail!(
                "allnoconfig failed in {}:\n{}",
                self.dir.display(),
                kbuild::first_errors(&out, 15)
            );
        }
        Ok(())
    }

    /// The CLIPPY=1 check of one patch (N/A when it touches no .rs file).
    pub fn check(&self, ctx: &Ctx) -> Result<Outcome> {
        let files = ctx.touched(&[".rs"]);
        if files.is_empty() {
            return Ok(Outcome::new(Check::Clippy, Status::NotApplicable));
        }
        self.configure()?;
        let conf = clippy::conf_dir(&[&self.wt, &self.project.tree])?;
        let mut out = Outcome::new(Check::Clippy, Status::Pass);
        let mut log_text = String::new();
        for (i, dirs) in build_steps(&files).iter().enumerate() {
            let mut args = clippy::make_vars(&conf);
            args.extend(dirs.iter().cloned());
            let log = self.dir.join(format!("clippy-{}-{i}.log", ctx.index));
            let (ok, text) = self.make(&args, &log)?;
            log_text.push_str(&text);
            if !ok {
                out.status = Status::Fail;
                out.details.push(format!(
                    "{}: make CLIPPY=1 {} failed:\n{}\nlog: {}",
                    ctx.name(),
                    dirs.join(" "),
                    kbuild::first_errors(&text, 15),
                    log.display()
                ));
                break;
            }
        }
        for d in clippy::parse(&log_text, &self.wt) {
            let ours = d.file.as_ref().is_some_and(|f| files.contains(f));
            if ours || d.level == "error" {
                out.status = Status::Fail;
                out.details.push(format!(
                    "{}: {}: {}: {}",
                    ctx.name(),
                    d.place(),
                    d.level,
                    d.message
                ));
                if let Some(obj) = d.file.as_deref().and_then(clippy::object_of) {
                    let _ = fs_err::remove_file(self.dir.join(obj));
                }
            } else if out.status == Status::Pass {
                out.details.push(format!(
                    "{}: pre-existing, not in this patch: {}: {}",
                    ctx.name(),
                    d.place(),
                    d.message
                ));
            }
        }
        if out.status == Status::Pass {
            let linted = clippy::linted(&log_text);
            out.details.insert(
                0,
                format!(
                    "{}: make CLIPPY=1 {}: no warnings in {} ({linted} object(s) linted)",
                    ctx.name(),
                    build_steps(&files).concat().join(" "),
                    files.join(", ")
                ),
            );
        }
        Ok(out)
    }
}

/// The make goals, in order: `rust/` first (every Rust object needs the kernel
/// crate), then the other directories with touched Rust files.
pub fn build_steps(files: &[String]) -> Vec<Vec<String>> {
    let mut others: Vec<String> = files
        .iter()
        .filter(|f| !f.starts_with("rust/"))
        .filter_map(|f| Path::new(f).parent())
        .map(|p| format!("{}/", p.display()))
        .collect();
    others.sort();
    others.dedup();
    let mut steps = vec![vec!["rust/".to_string()]];
    if !others.is_empty() {
        steps.push(others);
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_build_the_kernel_crate_first() {
        let files = vec![
            "rust/kernel/rdmabond.rs".to_string(),
            "samples/rust/rust_rdmabond_monitor.rs".to_string(),
            "samples/rust/other.rs".to_string(),
        ];
        assert_eq!(
            build_steps(&files),
            vec![vec!["rust/".to_string()], vec!["samples/rust/".to_string()]]
        );
        assert_eq!(
            build_steps(&["rust/kernel/lib.rs".to_string()]),
            vec![vec!["rust/".to_string()]]
        );
    }
}
