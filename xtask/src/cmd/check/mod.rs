//! `cargo xtask check`: the upstream-readiness gate. Every patch of the series is
//! checked in order, in a worktree of its own under target/check/, against the state
//! before it (as the netdev CI does), so warnings the base kernel already has do not
//! count; then the series as a whole. Results are cached per patch, parent tree,
//! config and pin (see [`CacheKey`]).

mod build;
mod cache;
pub(crate) mod checkpatch;
mod checks;
mod iproute2;
mod kdoc;
mod outcome;
mod rust_build;
mod seeds;
mod series;
mod sparse_tool;
mod style;
mod table;
mod uapi;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::common::git::{self, checkout, commits, patch_id, worktree, Commit};
use crate::common::project::{Project, WORK_BRANCH};
use crate::common::util::fmt_duration;

use crate::common::diff::{self, FileDiff};
use cache::{config_inputs, digest, parse_cache, render_cache, tree_of, CacheKey};
pub use checks::Check;
pub use outcome::{Outcome, PatchReport, Status};

#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Check only patch N (1-based) of the range; earlier results come from the cache.
    #[arg(long)]
    pub patch: Option<usize>,
    /// Skip the builds (W=1/C=1, module, headers, selftests).
    #[arg(long)]
    pub fast: bool,
    /// Check this commit range of the kernel tree instead of the series
    /// (e.g. `base-7.3.4..my-branch`).
    #[arg(long)]
    pub range: Option<String>,
    /// Recheck every patch, ignoring target/check-cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Directory under target/ for the worktree and build dir (two checks can run
    /// side by side with different ones).
    #[arg(long, default_value = "check")]
    pub workdir: String,
    /// Commit known defects on top of the series (in target/seeds/) and check that
    /// each is caught by its check, in its patch, with file and line (with `--fast`,
    /// the seeds only a build can catch are left out).
    #[arg(long, conflicts_with_all = ["range", "patch"])]
    pub seeds: bool,
    #[command(flatten)]
    pub iproute2: crate::common::iproute2::Iproute2Arg,
}

/// Everything the checks of one patch need.
pub struct Ctx<'a> {
    pub sh: &'a Shell,
    pub project: &'a Project,
    /// The worktree the checks run in.
    pub wt: PathBuf,
    pub index: usize,
    pub commit: &'a Commit,
    /// Files the patch touches, with their added lines.
    pub files: Vec<FileDiff>,
}

impl Ctx<'_> {
    /// `patch N` for messages.
    pub fn name(&self) -> String {
        format!("patch {}", self.index)
    }

    /// Paths touched (added or modified, not deleted) ending in one of `exts`.
    pub fn touched(&self, exts: &[&str]) -> Vec<String> {
        self.files
            .iter()
            .filter(|f| !f.deleted && exts.iter().any(|e| f.path.ends_with(e)))
            .map(|f| f.path.clone())
            .collect()
    }

    /// Checks the worktree out at `rev` (the worktree is ours alone).
    pub fn checkout(&self, rev: &str) -> Result<()> {
        checkout(self.sh, &self.wt, rev)
    }
}

/// `--patch N` selects patch N only; no `--patch` selects every patch.
trait PatchFilter {
    fn is_none_or_eq(&self, index: usize) -> bool;
}

impl PatchFilter for Option<usize> {
    fn is_none_or_eq(&self, index: usize) -> bool {
        match self {
            Some(n) => *n == index,
            None => true,
        }
    }
}

impl CheckArgs {
    pub fn run(self, sh: &Shell, project: &Project) -> Result<()> {
        if self.seeds {
            let (_, missed) = self.run_seeds(sh, project)?;
            if missed > 0 {
                bail!("check --seeds: {missed} seeded defect(s) were not caught; see above");
            }
            return Ok(());
        }
        let (failed, _) = self.gate(sh, project)?;
        if failed > 0 {
            bail!("check: {failed} check(s) failed; the details are above");
        }
        Ok(())
    }

    /// `--seeds`: (caught, missed).
    pub fn run_seeds(&self, sh: &Shell, project: &Project) -> Result<(usize, usize)> {
        seeds::run(self, sh, project)
    }

    /// Runs the gate, prints the table, returns the numbers of failed and skipped
    /// cells.
    pub fn gate(&self, sh: &Shell, project: &Project) -> Result<(usize, usize)> {
        let e = self.evaluate(sh, project)?;
        Ok((e.failed, e.skipped))
    }

    /// Runs the gate and prints the table; returns every outcome.
    pub fn evaluate(&self, sh: &Shell, project: &Project) -> Result<Evaluation> {
        crate::common::deps::ensure(sh, "the gate", crate::common::deps::CHECK)?;
        let start = Instant::now();
        let base = git::base(sh, project)?;
        let is_series = self.range.is_none();
        let range = match &self.range {
            Some(r) => r.clone(),
            None => {
                let tip = git::work_tip(sh, project)?.with_context(|| {
                    format!("no branch {WORK_BRANCH} yet: run `cargo xtask apply`")
                })?;
                format!("{base}..{tip}")
            }
        };
        let list = commits(sh, project, &range)?;
        if list.is_empty() {
            bail!("the range {range} has no commits");
        }
        if let Some(n) = self.patch {
            if n == 0 || n > list.len() {
                bail!("--patch {n}: the range has {} patches", list.len());
            }
        }
        let wt = worktree(sh, project, &self.workdir)?;
        let cache = project.target_dir().join("check-cache");
        fs_err::create_dir_all(&cache)?;
        let mode = if self.fast { "fast" } else { "full" };
        // What every cached result depends on besides its patch and parent tree.
        let config = {
            let files = config_inputs(sh, project)?;
            let parts: Vec<(&str, &str)> = files
                .iter()
                .map(|(p, t)| (p.as_str(), t.as_str()))
                .collect();
            digest(&parts)
        };
        let pin_path = project.root.join(crate::common::pin::PIN_FILE);
        let pin = fs_err::read_to_string(&pin_path)
            .with_context(|| format!("cannot read the pin {}", pin_path.display()))?;
        let pin = digest(&[("kernel.toml", &pin)]);
        let mut builder = if self.fast {
            None
        } else {
            Some(build::Builder::new(
                sh,
                project,
                &wt,
                &self.workdir,
                &list[0].parent,
            )?)
        };
        let mut reports = Vec::new();
        let mut known: Vec<String> = Vec::new();
        for (i, c) in list.iter().enumerate() {
            let index = i + 1;
            let key = CacheKey {
                patch_id: patch_id(sh, project, &c.id)?,
                parent_tree: tree_of(sh, project, &c.parent)?,
                config: config.clone(),
                pin: pin.clone(),
                mode: mode.to_string(),
            };
            let cache_file = cache.join(key.file_name());
            let wanted = self.patch.is_none_or_eq(index);
            let cached = if self.no_cache && wanted {
                None
            } else {
                fs_err::read_to_string(&cache_file)
                    .ok()
                    .and_then(|t| parse_cache(&t))
            };
            let report = match cached {
                Some((outcomes, keys)) => PatchReport {
                    index,
                    commit: c.id.clone(),
                    subject: c.subject.clone(),
                    cached: true,
                    outcomes,
                    build_keys: keys,
                },
                None if !wanted => PatchReport {
                    index,
                    commit: c.id.clone(),
                    subject: c.subject.clone(),
                    cached: false,
                    outcomes: vec![Outcome::skip(Check::All, "not checked (--patch)")],
                    build_keys: Vec::new(),
                },
                None => {
                    let t = Instant::now();
                    eprintln!("check: patch {index}/{}: {}", list.len(), c.subject);
                    let (outcomes, keys) =
                        check_patch(sh, project, &wt, index, c, builder.as_mut(), &known)?;
                    eprintln!("check: patch {index} took {}", fmt_duration(t.elapsed()));
                    crate::common::util::write_atomic(
                        &cache_file,
                        render_cache(&outcomes, &keys).as_bytes(),
                    )?;
                    PatchReport {
                        index,
                        commit: c.id.clone(),
                        subject: c.subject.clone(),
                        cached: false,
                        outcomes,
                        build_keys: keys,
                    }
                }
            };
            known.extend(report.build_keys.iter().cloned());
            reports.push(report);
        }
        let series_outcomes = if self.patch.is_some() {
            Vec::new()
        } else {
            eprintln!("check: the series as a whole");
            let tip = &list.last().unwrap().id;
            checkout(sh, &wt, tip)?;
            let ctx = series::SeriesCtx {
                sh,
                project,
                wt: &wt,
                base: &list[0].parent,
                tip,
                commits: &list,
                is_series,
            };
            let mut out = series::run(&ctx)?;
            out.push(uapi::series_check(&ctx)?);
            out.extend(iproute2::check(
                sh,
                project,
                &wt,
                &self.iproute2,
                self.fast,
            )?);
            match builder.as_mut() {
                Some(b) => out.extend(b.series_builds(&ctx)?),
                None => out.push(Outcome::skip(Check::HeadersSelftests, "--fast")),
            }
            out
        };
        let text = table::render(&reports, &series_outcomes);
        println!("{text}");
        let cells = || {
            reports
                .iter()
                .filter(|r| self.patch.is_none_or_eq(r.index))
                .flat_map(|r| &r.outcomes)
                .chain(&series_outcomes)
        };
        let failed = cells().filter(|o| o.status == Status::Fail).count();
        let skipped: Vec<&Outcome> = cells().filter(|o| o.status == Status::Skip).collect();
        println!(
            "check: {} patches, {failed} failed check(s), {} skipped, took {}",
            reports.len(),
            skipped.len(),
            fmt_duration(start.elapsed())
        );
        let mut why: Vec<String> = skipped
            .iter()
            .map(|o| format!("{}: {}", o.check, o.details.join("; ")))
            .collect();
        let skipped = skipped.len();
        why.sort();
        why.dedup();
        for w in &why {
            println!("check: skipped {w}");
        }
        Ok(Evaluation {
            reports,
            series: series_outcomes,
            failed,
            skipped,
        })
    }
}

/// What one run of the gate found.
pub struct Evaluation {
    pub reports: Vec<PatchReport>,
    pub series: Vec<Outcome>,
    /// Failed cells (of the patches asked for, and of the series).
    pub failed: usize,
    /// Skipped cells, each printed with its reason.
    pub skipped: usize,
}

/// The context of one patch: its diff, parsed.
fn patch_ctx<'a>(
    sh: &'a Shell,
    project: &'a Project,
    wt: &Path,
    index: usize,
    commit: &'a Commit,
) -> Result<Ctx<'a>> {
    let patch = {
        let _d = sh.push_dir(&project.tree);
        let id = &commit.id;
        cmd!(
            sh,
            "git show --no-color --no-renames --format=%n --src-prefix=a/ --dst-prefix=b/ {id}"
        )
        .quiet()
        .read()?
    };
    Ok(Ctx {
        sh,
        project,
        wt: wt.to_path_buf(),
        index,
        commit,
        files: diff::parse(&patch),
    })
}

/// Runs every per-patch check of one commit.
fn check_patch(
    sh: &Shell,
    project: &Project,
    wt: &Path,
    index: usize,
    commit: &Commit,
    builder: Option<&mut build::Builder>,
    known: &[String],
) -> Result<(Vec<Outcome>, Vec<String>)> {
    let ctx = patch_ctx(sh, project, wt, index, commit)?;
    // Before the patch: the baselines the "no new warnings" checks compare with.
    ctx.checkout(&commit.parent)?;
    let kdoc_before = kdoc::run_kdoc(&ctx)?;
    let lint_before = style::lints(&ctx)?;
    let sparse_before = match &builder {
        Some(b) => Some(b.sparse(&ctx)?),
        None => None,
    };
    let uapi_before = uapi::enums_at(&ctx)?;
    // After it.
    ctx.checkout(&commit.id)?;
    let mut out = vec![checkpatch::run(&ctx)?];
    let mut keys = Vec::new();
    let clippy = match builder {
        Some(b) => {
            let (o, k) = b.build_patch(&ctx, known)?;
            out.push(o);
            keys = k;
            out.push(b.sparse_delta(&ctx, sparse_before.unwrap_or_default())?);
            b.clippy(&ctx)?
        }
        None => {
            out.push(Outcome::skip(Check::Build, "--fast"));
            out.push(Outcome::skip(Check::Sparse, "--fast"));
            Outcome::skip(Check::Clippy, "--fast")
        }
    };
    out.push(kdoc::delta(&ctx, &kdoc_before)?);
    out.push(kdoc::exported(&ctx)?);
    out.extend(style::run(&ctx));
    out.push(style::signoff(&ctx)?);
    out.extend(style::lints_delta(&ctx, &lint_before)?);
    out.push(style::rust(&ctx)?);
    out.push(uapi::append_only(&ctx, uapi_before)?);
    out.push(clippy);
    Ok((out, keys))
}
