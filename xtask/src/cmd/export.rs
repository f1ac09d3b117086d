//! `cargo xtask export [--check]`: the work branch -> patches/, normalised.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use similar::TextDiff;
use xshell::Shell;

use crate::common::git;
use crate::common::project::{Project, WORK_BRANCH};
use crate::common::series::generate::{compare, generate, summary_lines, Change, Kind};
use crate::common::series::{self, COVER_PATCH};
use crate::common::util::write_atomic;

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Do not write; exit non-zero when patches/ differs from the branch.
    #[arg(long)]
    pub check: bool,
}

impl ExportArgs {
    pub fn run(self, sh: &Shell, project: &Project) -> Result<()> {
        git::ensure_clean(sh, project, "cargo xtask export")
            .context("uncommitted kernel edits would not be exported")?;
        let stored = series::load(&project.patches_dir())?;
        let wanted = generate(sh, project, &stored)?;
        let changes = compare(&stored.files, &wanted);
        if self.check {
            if changes.iter().all(|c| c.kind == Kind::Same) {
                eprintln!(
                    "patches/ matches branch {WORK_BRANCH} ({} patches)",
                    count_patches(&wanted)
                );
                return Ok(());
            }
            print_summary(&changes);
            print_diffs(&changes, 120);
            bail!(
                "patches/ differs from branch {WORK_BRANCH} of {}: run `cargo xtask export`, \
                 review `git diff patches/`, and commit",
                project.tree.display()
            );
        }
        print_summary(&changes);
        write(project, &changes)
    }
}

fn count_patches(files: &BTreeMap<String, String>) -> usize {
    files
        .keys()
        .filter(|n| n.ends_with(".patch") && n.as_str() != COVER_PATCH)
        .count()
}

fn print_summary(changes: &[Change]) {
    for line in summary_lines(changes) {
        eprintln!("{line}");
    }
}

fn print_diffs(changes: &[Change], max_lines: usize) {
    let mut budget = max_lines;
    for c in changes.iter().filter(|c| c.kind != Kind::Same) {
        let old = c.old.as_deref().unwrap_or("");
        let new = c.new.as_deref().unwrap_or("");
        let a = format!("patches/{} (stored)", c.name);
        let b = format!("patches/{} (from branch)", c.name);
        let text = TextDiff::from_lines(old, new)
            .unified_diff()
            .context_radius(2)
            .header(&a, &b)
            .to_string();
        for line in text.lines() {
            if budget == 0 {
                eprintln!("  ... (diff truncated)");
                return;
            }
            eprintln!("{line}");
            budget -= 1;
        }
    }
}

/// Writes the changed files atomically and removes the ones no longer in the series.
/// Every file it replaces or removes is first copied to target/export-backup/<time>/,
/// so even uncommitted edits in patches/ survive an export.
fn write(project: &Project, changes: &[Change]) -> Result<()> {
    let dir = project.patches_dir();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let backup = project.target_dir().join(format!("export-backup/{stamp}"));
    let mut saved = 0;
    for c in changes
        .iter()
        .filter(|c| matches!(c.kind, Kind::Changed | Kind::Removed))
    {
        if let Some(old) = &c.old {
            write_atomic(&backup.join(&c.name), old.as_bytes())?;
            saved += 1;
        }
    }
    if saved > 0 {
        eprintln!(
            "  previous versions of {saved} file(s) saved in {}",
            backup.display()
        );
    }
    for c in changes {
        let path = dir.join(&c.name);
        match (&c.kind, &c.new) {
            (Kind::Same, _) => {}
            (Kind::Removed, _) => fs_err::remove_file(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?,
            (_, Some(text)) => write_atomic(&path, text.as_bytes())?,
            (_, None) => unreachable!("added or changed files have new contents"),
        }
    }
    Ok(())
}
