//! Git operations on the kernel tree.

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::common::project::{Project, WORK_BRANCH};

/// Fails, with the command that makes one, when there is no kernel tree yet.
pub fn require(project: &Project) -> Result<()> {
    if project.tree.join(".git").exists() {
        return Ok(());
    }
    if project.external_tree {
        bail!(
            "{} is not a git checkout: pass the top of a linux clone to --tree",
            project.tree.display()
        );
    }
    bail!(
        "there is no kernel tree in {} yet: run `cargo xtask kernel fetch` (or pass your own \
         linux clone with --tree)",
        project.tree.display()
    )
}

/// Refuses to continue when the kernel tree has uncommitted edits to tracked files
/// or an interrupted git am/rebase, naming them and what to do.
pub fn ensure_clean(sh: &Shell, project: &Project, action: &str) -> Result<()> {
    require(project)?;
    let _d = sh.push_dir(&project.tree);
    let git_dir = cmd!(sh, "git rev-parse --git-dir").quiet().read()?;
    let git_dir = project.tree.join(git_dir);
    for busy in ["rebase-apply", "rebase-merge"] {
        if git_dir.join(busy).exists() {
            bail!(
                "a git am/rebase is in progress in {}: finish it (`git am --continue` / \
                 `git rebase --continue`) or abort it before `{action}`",
                project.tree.display()
            );
        }
    }
    let status = cmd!(sh, "git status --porcelain --untracked-files=no")
        .quiet()
        .read()?;
    if !status.trim().is_empty() {
        let files: Vec<&str> = status.lines().take(10).collect();
        bail!(
            "the kernel tree {} has uncommitted edits:\n  {}\n`{action}` would lose them: commit them \
             (git commit, or git commit --fixup and rebase) or stash them first",
            project.tree.display(),
            files.join("\n  ")
        );
    }
    Ok(())
}

/// The commit id of a revision, or None when it does not exist.
pub fn rev(sh: &Shell, project: &Project, rev: &str) -> Result<Option<String>> {
    require(project)?;
    let _d = sh.push_dir(&project.tree);
    let spec = format!("{rev}^{{commit}}");
    let out = cmd!(sh, "git rev-parse --verify --quiet {spec}")
        .quiet()
        .ignore_status()
        .output()?;
    if out.status.success() {
        Ok(Some(
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        ))
    } else {
        Ok(None)
    }
}

/// The commit id of the base, which must exist.
pub fn base(sh: &Shell, project: &Project) -> Result<String> {
    rev(sh, project, &project.base)?.with_context(|| {
        format!(
            "base `{}` is missing in {}: run `cargo xtask kernel fetch`",
            project.base,
            project.tree.display()
        )
    })
}

/// The work branch's tip, or None before the first apply.
pub fn work_tip(sh: &Shell, project: &Project) -> Result<Option<String>> {
    rev(sh, project, &format!("refs/heads/{WORK_BRANCH}"))
}

/// The branch checked out now (None when detached).
pub fn current_branch(sh: &Shell, project: &Project) -> Result<Option<String>> {
    let _d = sh.push_dir(&project.tree);
    let out = cmd!(sh, "git symbolic-ref --quiet --short HEAD")
        .quiet()
        .ignore_status()
        .output()?;
    Ok(out
        .status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()))
}

/// Files added (not modified) between the base and what is checked out.
pub fn added_files(sh: &Shell, project: &Project) -> Result<Vec<String>> {
    files_since_base(sh, project, "A")
}

/// Files added or modified between the base and what is checked out.
pub fn changed_files(sh: &Shell, project: &Project) -> Result<Vec<String>> {
    files_since_base(sh, project, "AM")
}

/// `git diff --name-only --diff-filter=FILTER base..HEAD`.
fn files_since_base(sh: &Shell, project: &Project, filter: &str) -> Result<Vec<String>> {
    base(sh, project)?;
    let _d = sh.push_dir(&project.tree);
    let range = format!("{}..HEAD", project.base);
    let filter = format!("--diff-filter={filter}");
    let out = cmd!(sh, "git diff --name-only {filter} {range}")
        .quiet()
        .read()?;
    Ok(out.lines().map(str::to_string).collect())
}
