//! The build checks: an incremental W=1 build of the test config (the series' driver
//! as a module, so modpost checks its symbols) in a build directory of its own, with
//! ccache and under /tmp/kbuild.lock; sparse (C=2) on the touched C files; and for the
//! series, `make headers` and the selftests build. Warnings are compared with every
//! warning seen before the patch (the base build and earlier patches), so only new
//! ones count.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use anyhow::Result;
use regex::Regex;
use xshell::Shell;

use super::rust_build::RustBuilder;
use super::series::SeriesCtx;
use super::sparse_tool::{self, Sparse};
use super::{Check, Ctx, Outcome, Status};
use crate::common::git::checkout;
use crate::common::kbuild::{self, first_errors, Make};
use crate::common::project::Project;
use crate::common::util::rel_path;

/// The base file sparse is tried on before it is trusted.
const PROBE: &str = "net/ipv4/devinet.o";

/// A compiler, linker or modpost diagnostic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diag {
    pub file: String,
    pub line: Option<usize>,
    /// `warning`, `error`, `fatal error`.
    pub level: String,
    pub message: String,
}

impl Diag {
    /// What compares across patches: no line number.
    pub fn key(&self) -> String {
        format!("{}: {}: {}", self.file, self.level, self.message)
    }

    pub fn place(&self) -> String {
        match self.line {
            Some(l) => format!("{}:{l}", self.file),
            None => self.file.clone(),
        }
    }
}

/// Parses gcc/sparse/modpost/ld diagnostics from a build log.
pub fn parse_diags(log: &str, wt: &Path) -> Vec<Diag> {
    static CC: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(\S+?):(\d+):(?:\d+:)? (warning|error|fatal error): (.*)$").unwrap()
    });
    static MODPOST: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^(WARNING|ERROR): modpost: (.*)$").unwrap());
    static LD: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^(?:ld|x86_64-linux-gnu-ld)(?:\.bfd)?: (.*)$").unwrap());
    let (cc, modpost, ld) = (&*CC, &*MODPOST, &*LD);
    let mut out = Vec::new();
    for line in log.lines() {
        if let Some(c) = cc.captures(line) {
            out.push(Diag {
                file: rel_path(&c[1], wt),
                line: c[2].parse().ok(),
                level: c[3].to_string(),
                message: c[4].to_string(),
            });
        } else if let Some(c) = modpost.captures(line) {
            out.push(Diag {
                file: "modpost".into(),
                line: None,
                level: c[1].to_lowercase(),
                message: c[2].to_string(),
            });
        } else if let Some(c) = ld.captures(line) {
            out.push(Diag {
                file: "ld".into(),
                line: None,
                level: "error".into(),
                message: c[1].to_string(),
            });
        }
    }
    out
}

/// The check build directory and its baseline.
pub struct Builder {
    project: Project,
    wt: PathBuf,
    dir: PathBuf,
    fragment: PathBuf,
    /// Warning keys of the base build.
    base_keys: BTreeSet<String>,
    /// The sparse to run (`CHECK=`), or why there is none.
    sparse: Sparse,
    /// The CLIPPY=1 build of Rust patches (a build directory of its own).
    rust: RustBuilder,
}

impl Builder {
    /// Prepares target/check/kbuild: the config fragment and the base build's warnings
    /// (built once per base, from scratch so every warning is seen).
    pub fn new(
        sh: &Shell,
        project: &Project,
        wt: &Path,
        workdir: &str,
        base: &str,
    ) -> Result<Builder> {
        let dir = project.target_dir().join(workdir).join("kbuild");
        fs_err::create_dir_all(&dir)?;
        let fragment = dir.join("xtask.fragment");
        let text = fragment_text(sh, project)?;
        if fs_err::read_to_string(&fragment).ok().as_deref() != Some(text.as_str()) {
            crate::common::util::write_atomic(&fragment, text.as_bytes())?;
        }
        let mut b = Builder {
            project: project.clone(),
            wt: wt.to_path_buf(),
            dir,
            fragment,
            base_keys: BTreeSet::new(),
            sparse: Sparse::Skip("not chosen yet".into()),
            rust: RustBuilder::new(sh, project, wt, workdir)?,
        };
        let base_log = b.dir.join(format!("base-{base}.log"));
        if !base_log.is_file() {
            eprintln!(
                "check: building the base with W=1 once (baseline warnings; log {})",
                base_log.display()
            );
            checkout(sh, wt, base)?;
            // Every object must be compiled to see every warning: start clean
            // (ccache makes this cheap after the first time).
            for e in fs_err::read_dir(&b.dir)? {
                let p = e?.path();
                if p != b.fragment {
                    let _ = if p.is_dir() {
                        fs_err::remove_dir_all(&p)
                    } else {
                        fs_err::remove_file(&p)
                    };
                }
            }
            b.configure()?;
            let tmp = b.dir.join("base.tmp.log");
            let (ok, text) = Make::new(project, wt, &b.dir)
                .locked()
                .run(&["W=1", "all"], &tmp)?;
            if !ok {
                anyhow::bail!(
                    "the base {base} does not build with the check config: see {}",
                    tmp.display()
                );
            }
            fs_err::write(&base_log, text)?;
        }
        let text = fs_err::read_to_string(&base_log)?;
        b.base_keys = parse_diags(&text, wt).iter().map(Diag::key).collect();
        b.sparse = match sparse_tool::choose(sh, project, wt) {
            Sparse::Use { check, about } => match b.sparse_probe(base, &check) {
                Ok(()) => {
                    eprintln!("check: sparse: {about}");
                    Sparse::Use { check, about }
                }
                Err(why) => Sparse::Skip(format!("{about}: {why}")),
            },
            skip => skip,
        };
        Ok(b)
    }

    /// Runs sparse on one unmodified base file once (cached in the build dir): a
    /// sparse too old for this kernel reports errors there. Err(reason) to skip.
    fn sparse_probe(&self, base: &str, check: &str) -> std::result::Result<(), String> {
        let tag = if check == "sparse" { "host" } else { "sid" };
        let probe = self.dir.join(format!("sparse-probe-{base}-{tag}.txt"));
        let check_var = format!("CHECK={check}");
        let text = match fs_err::read_to_string(&probe) {
            Ok(t) => t,
            Err(_) => {
                let log = self.dir.join("sparse-probe.log");
                let out = Make::new(&self.project, &self.wt, &self.dir)
                    .locked()
                    .run(&["C=2", &check_var, "-j1", PROBE], &log)
                    .map(|(_, t)| t)
                    .unwrap_or_default();
                let lines = sparse_lines(&out, &self.wt);
                let errors: Vec<&String> = lines.iter().filter(|l| l.contains("error:")).collect();
                let verdict = match errors.first() {
                    None if out.contains("CHECK") => "ok\n".to_string(),
                    None => "unknown: sparse did not run on the probe file\n".to_string(),
                    Some(e) => format!(
                        "sparse reports {} error(s) on the unmodified base ({e}): too old \
                         for this kernel (build sparse from git)\n",
                        errors.len()
                    ),
                };
                let _ = fs_err::write(&probe, &verdict);
                verdict
            }
        };
        if text.trim() == "ok" {
            Ok(())
        } else {
            Err(text.trim().to_string())
        }
    }

    fn configure(&self) -> Result<()> {
        let alloc = format!("KCONFIG_ALLCONFIG={}", self.fragment.display());
        let log = self.dir.join("config.log");
        let (ok, text) = Make::new(&self.project, &self.wt, &self.dir)
            .locked()
            .run(&[&alloc, "allnoconfig"], &log)?;
        if !ok {
            anyhow::bail!(
                "allnoconfig failed in {}:\n{}",
                self.dir.display(),
                first_errors(&text, 15)
            );
        }
        Ok(())
    }

    /// Builds the worktree as checked out (the patch applied); fails on errors and on
    /// warnings not seen before. Returns the outcome and every warning key.
    pub fn build_patch(&mut self, ctx: &Ctx, known: &[String]) -> Result<(Outcome, Vec<String>)> {
        self.configure()?;
        let log = self.dir.join(format!("patch-{}.log", ctx.index));
        let (ok, text) = Make::new(&self.project, &self.wt, &self.dir)
            .locked()
            .run(&["W=1", "all"], &log)?;
        let diags = parse_diags(&text, &self.wt);
        let known: BTreeSet<&str> = known.iter().map(String::as_str).collect();
        let mut o = Outcome::new(Check::Build, Status::Pass);
        let mut seen = BTreeSet::new();
        for d in &diags {
            let k = d.key();
            let is_new = !self.base_keys.contains(&k) && !known.contains(k.as_str());
            if (d.level.contains("error") || is_new) && seen.insert(k) {
                o.status = Status::Fail;
                o.details.push(format!(
                    "{}: {}: {}: {}",
                    ctx.name(),
                    d.place(),
                    d.level,
                    d.message
                ));
            }
        }
        if !ok && o.status != Status::Fail {
            o.status = Status::Fail;
            o.details.push(format!(
                "{}: make W=1 failed:\n{}",
                ctx.name(),
                first_errors(&text, 15)
            ));
        }
        if !ok {
            o.details.push(format!("log: {}", log.display()));
        }
        let keys = diags
            .iter()
            .filter(|d| !d.level.contains("error"))
            .map(Diag::key)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        Ok((o, keys))
    }

    /// Touched C files that this config compiles.
    fn sparse_targets(&self, ctx: &Ctx) -> Vec<String> {
        ctx.touched(&[".c"])
            .into_iter()
            .filter(|f| ctx.wt.join(f).is_file())
            .map(|f| format!("{}.o", f.trim_end_matches(".c")))
            .filter(|o| {
                self.dir.join(o).is_file() || self.dir.join(Path::new(o).parent().unwrap()).is_dir()
            })
            .collect()
    }

    /// sparse findings on the touched C files as they are now.
    pub fn sparse(&self, ctx: &Ctx) -> Result<Vec<String>> {
        let Sparse::Use { check, .. } = &self.sparse else {
            return Ok(Vec::new());
        };
        let targets = self.sparse_targets(ctx);
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        self.configure()?;
        let check_var = format!("CHECK={check}");
        let mut args = vec!["C=2", check_var.as_str(), "-j1"];
        args.extend(targets.iter().map(String::as_str));
        let log = self.dir.join("sparse.log");
        let (_, text) = Make::new(&self.project, &self.wt, &self.dir)
            .locked()
            .run(&args, &log)?;
        Ok(sparse_lines(&text, &self.wt))
    }

    /// New sparse findings after the patch.
    pub fn sparse_delta(&self, ctx: &Ctx, before: Vec<String>) -> Result<Outcome> {
        if let Sparse::Skip(why) = &self.sparse {
            return Ok(Outcome::skip(Check::Sparse, why.clone()));
        }
        if self.sparse_targets(ctx).is_empty() {
            return Ok(Outcome::new(Check::Sparse, Status::NotApplicable));
        }
        let after = self.sparse(ctx)?;
        let new = super::kdoc::new_findings(&before, &after)
            .into_iter()
            .map(|l| format!("{}: {l}", ctx.name()))
            .collect();
        Ok(Outcome::from_findings(Check::Sparse, Status::Fail, new))
    }

    /// The CLIPPY=1 check of a patch (N/A when it touches no .rs file).
    pub fn clippy(&self, ctx: &Ctx) -> Result<Outcome> {
        self.rust.check(ctx)
    }

    /// Series: `make headers` and the selftests the series adds build.
    pub fn series_builds(&mut self, ctx: &SeriesCtx) -> Result<Vec<Outcome>> {
        self.configure()?;
        let log = self.dir.join("headers.log");
        let (ok, text) = Make::new(&self.project, &self.wt, &self.dir)
            .locked()
            .run(&["headers"], &log)?;
        let headers = if ok {
            Outcome::new(Check::Headers, Status::Pass)
        } else {
            Outcome::from_findings(
                Check::Headers,
                Status::Fail,
                vec![format!("make headers failed:\n{}", first_errors(&text, 15))],
            )
        };
        let targets = super::series::selftest_dirs(ctx)?;
        let selftests = if targets.is_empty() {
            Outcome::new(Check::Selftests, Status::NotApplicable)
        } else {
            let t = format!("TARGETS={}", targets.join(" "));
            let log = self.dir.join("selftests.log");
            let (ok, text) = Make::new(&self.project, &self.wt, &self.dir)
                .locked()
                .run(&[&t, "kselftest-all"], &log)?;
            if ok {
                Outcome::new(Check::Selftests, Status::Pass)
            } else {
                Outcome::from_findings(
                    Check::Selftests,
                    Status::Fail,
                    vec![format!(
                        "make {t} kselftest-all failed:\n{}",
                        first_errors(&text, 15)
                    )],
                )
            }
        };
        Ok(vec![headers, selftests])
    }
}

/// The sparse lines of a `make C=2 -j1` log: diagnostics after a `CHECK` line.
pub fn sparse_lines(log: &str, wt: &Path) -> Vec<String> {
    let mut in_check = false;
    let mut out = Vec::new();
    for line in log.lines() {
        let t = line.trim_start();
        if t.starts_with("CHECK ") {
            in_check = true;
            continue;
        }
        if t.starts_with("CC ") || t.starts_with("LD ") || t.starts_with("AR ") {
            in_check = false;
            continue;
        }
        if in_check {
            if let Some(d) = parse_diags(line, wt).into_iter().next() {
                out.push(format!("{}: {}: {}", d.place(), d.level, d.message));
            }
        }
    }
    out
}

/// allnoconfig fragment of the check build (see [`kbuild::check_fragment`]).
fn fragment_text(sh: &Shell, project: &Project) -> Result<String> {
    let added = crate::common::git::added_files(sh, project).unwrap_or_default();
    kbuild::check_fragment(project, &kbuild::selftest_targets(&added))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics() {
        let wt = Path::new("/w/check/linux");
        let log = "  CC [M]  drivers/x/a.o\n\
/w/check/linux/drivers/x/a.c:12:5: warning: no previous prototype for 'f' [-Wmissing-prototypes]\n\
../drivers/x/b.c:3:1: error: expected ';' before '}' token\n\
ERROR: modpost: \"inet_addr_move\" [drivers/x/x.ko] undefined!\n\
ld: vmlinux.o: in function `f': undefined reference to `g'\n\
make[2]: *** [x] Error 1\n";
        let d = parse_diags(log, wt);
        assert_eq!(d.len(), 4);
        assert_eq!(d[0].file, "drivers/x/a.c");
        assert_eq!(d[0].place(), "drivers/x/a.c:12");
        assert_eq!(
            d[0].key(),
            "drivers/x/a.c: warning: no previous prototype for 'f' [-Wmissing-prototypes]"
        );
        assert_eq!(d[1].level, "error");
        assert_eq!(d[2].file, "modpost");
        assert_eq!(d[2].level, "error");
        assert_eq!(d[3].file, "ld");
    }

    #[test]
    fn sparse_output() {
        let wt = Path::new("/w");
        let log = "  CC      net/a.o\nnet/a.c:1:1: warning: gcc one\n  CHECK   net/a.c\n\
                   net/a.c:5:9: warning: incorrect type in assignment\n  CC      net/b.o\n";
        assert_eq!(
            sparse_lines(log, wt),
            vec!["net/a.c:5: warning: incorrect type in assignment"]
        );
    }
}
