//! Git operations on the kernel tree.

use std::path::{Path, PathBuf};

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

/// A commit of the range.
#[derive(Debug, Clone)]
pub struct Commit {
    pub id: String,
    pub parent: String,
    pub subject: String,
}

/// The worktree under target/ that checks (and send) use, created when missing.
/// It shares the kernel repository but never touches the work branch's checkout.
pub fn worktree(sh: &Shell, project: &Project, name: &str) -> Result<PathBuf> {
    let wt = project.target_dir().join(name).join("linux");
    if wt.join(".git").exists() {
        copy_dotfiles(&project.tree, &wt)?;
        return Ok(wt);
    }
    fs_err::create_dir_all(wt.parent().unwrap())?;
    let base = base(sh, project)?;
    let _d = sh.push_dir(&project.tree);
    cmd!(sh, "git worktree prune").quiet().run()?;
    cmd!(sh, "git worktree add --quiet --detach {wt} {base}")
        .quiet()
        .run()
        .with_context(|| format!("cannot create the worktree {}", wt.display()))?;
    copy_dotfiles(&project.tree, &wt)?;
    Ok(wt)
}

/// Copies the kernel's top-level dotfiles (.mailmap and .get_maintainer.ignore for
/// get_maintainer.pl, .rustfmt.toml, .clippy.toml, ...) from the main tree into a
/// worktree that lacks them: they come with the tarball, but the base commit does not
/// track them (the kernel's .gitignore ignores `.*`; upstream force-adds its dotfiles).
/// The series does not change them.
pub fn copy_dotfiles(tree: &Path, wt: &Path) -> Result<()> {
    for e in fs_err::read_dir(tree).with_context(|| format!("cannot read {}", tree.display()))? {
        let e = e?;
        let name = e.file_name();
        let is_dotfile = name.to_string_lossy().starts_with('.') && e.file_type()?.is_file();
        let dst = wt.join(&name);
        if is_dotfile && !dst.exists() {
            fs_err::copy(e.path(), &dst).with_context(|| {
                format!("cannot copy {} to {}", e.path().display(), wt.display())
            })?;
        }
    }
    Ok(())
}

/// Forces the worktree to `rev`, detached.
pub fn checkout(sh: &Shell, wt: &Path, rev: &str) -> Result<()> {
    let _d = sh.push_dir(wt);
    cmd!(
        sh,
        "git -c advice.detachedHead=false checkout --quiet --force --detach {rev}"
    )
    .quiet()
    .run()
    .with_context(|| format!("cannot check out {rev} in {}", wt.display()))?;
    Ok(())
}

/// The commits of `range` (oldest first) in the kernel repository.
pub fn commits(sh: &Shell, project: &Project, range: &str) -> Result<Vec<Commit>> {
    let _d = sh.push_dir(&project.tree);
    let out = cmd!(
        sh,
        "git log --reverse --no-merges --format=%H%x09%P%x09%s {range}"
    )
    .quiet()
    .read()
    .with_context(|| format!("cannot list the commits of {range}"))?;
    parse_log(&out)
}

/// What the merge plan check needs of each commit: subject, message, files.
pub fn patch_infos(
    sh: &Shell,
    project: &Project,
    commits: &[Commit],
) -> Result<Vec<crate::common::plan::PatchInfo>> {
    let _d = sh.push_dir(&project.tree);
    commits
        .iter()
        .map(|c| {
            let (id, parent) = (&c.id, &c.parent);
            let message = cmd!(sh, "git log -1 --format=%B {id}").quiet().read()?;
            let files = cmd!(sh, "git diff --no-renames --name-only {parent} {id}")
                .quiet()
                .read()?;
            Ok(crate::common::plan::PatchInfo {
                subject: c.subject.clone(),
                message,
                files: files.lines().map(str::to_string).collect(),
            })
        })
        .collect()
}

/// Parses `%H\t%P\t%s` lines.
pub fn parse_log(out: &str) -> Result<Vec<Commit>> {
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut it = l.splitn(3, '\t');
            let id = it.next().unwrap_or_default().to_string();
            let parent = it
                .next()
                .and_then(|p| p.split_whitespace().next())
                .with_context(|| format!("commit {id} has no parent"))?
                .to_string();
            let subject = it.next().unwrap_or_default().to_string();
            Ok(Commit {
                id,
                parent,
                subject,
            })
        })
        .collect()
}

/// The cache key of a commit: `git patch-id --stable`, plus an id of its message,
/// author and changed lines, which the patch id ignores (it drops whitespace, and
/// checkpatch and the sign-off check read the message).
pub fn patch_id(sh: &Shell, project: &Project, commit: &str) -> Result<String> {
    let _d = sh.push_dir(&project.tree);
    let show = cmd!(
        sh,
        "git show --no-color --format=%an%x00%ae%x00%B%x00 {commit}"
    )
    .quiet()
    .read()?;
    let id = cmd!(sh, "git patch-id --stable")
        .stdin(&show)
        .quiet()
        .read()?;
    let id = id.split_whitespace().next().unwrap_or(commit).to_string();
    let extra = exact_part(&show);
    let extra = cmd!(sh, "git hash-object --stdin")
        .stdin(&extra)
        .quiet()
        .read()?;
    Ok(format!("{id}-{}", &extra[..extra.len().min(12)]))
}

/// The message and the changed lines of `git show` output, whitespace kept.
pub fn exact_part(show: &str) -> String {
    let (msg, diff) = show.rsplit_once('\0').unwrap_or(("", show));
    let mut out = msg.to_string();
    for l in diff
        .lines()
        .filter(|l| l.starts_with('+') || l.starts_with('-'))
    {
        out.push('\n');
        out.push_str(l);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worktrees_get_the_dotfiles_git_does_not_track() {
        let base = std::env::temp_dir().join(format!("xtask-wt-{}", std::process::id()));
        let (tree, wt) = (base.join("tree"), base.join("wt"));
        fs_err::create_dir_all(tree.join(".git")).unwrap();
        fs_err::create_dir_all(&wt).unwrap();
        fs_err::write(tree.join(".mailmap"), "A <a@new> <a@old>\n").unwrap();
        fs_err::write(tree.join("Makefile"), "x\n").unwrap();
        fs_err::write(wt.join(".rustfmt.toml"), "mine\n").unwrap();
        fs_err::write(tree.join(".rustfmt.toml"), "theirs\n").unwrap();
        copy_dotfiles(&tree, &wt).unwrap();
        assert!(wt.join(".mailmap").is_file());
        assert!(!wt.join("Makefile").exists(), "only dotfiles");
        assert!(!wt.join(".git").exists(), "only files");
        let kept = fs_err::read_to_string(wt.join(".rustfmt.toml")).unwrap();
        assert_eq!(kept, "mine\n", "an existing file is not overwritten");
        let _ = fs_err::remove_dir_all(&base);
    }

    #[test]
    fn exact_part_keeps_message_and_whitespace() {
        let a = exact_part(
            "A\0a@b\0subj\n\nSigned-off-by: A <a@b>\n\0\ndiff\n@@ -1 +1 @@\n ctx\n+x \n",
        );
        let b = exact_part("A\0a@b\0subj\n\n\0\ndiff\n@@ -1 +1 @@\n ctx\n+x \n");
        let c =
            exact_part("A\0a@b\0subj\n\nSigned-off-by: A <a@b>\n\0\ndiff\n@@ -1 +1 @@\n ctx\n+x\n");
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert!(a.ends_with("\n+x "));
        assert!(!a.contains("ctx"));
    }

    #[test]
    fn log_lines() {
        let c = parse_log("aaa\tbbb ccc\tnet: x: do y\nddd\taaa\tsecond\n").unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].parent, "bbb");
        assert_eq!(c[0].subject, "net: x: do y");
        assert!(parse_log("eee\t\troot\n").is_err());
    }
}
