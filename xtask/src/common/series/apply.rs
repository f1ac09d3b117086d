//! Applying the series: reset the work branch to the base and `git am` patches/.

use std::path::Path;

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::common::git;
use crate::common::project::{Project, WORK_BRANCH};
use crate::common::series;
use crate::common::series::generate;

/// Makes the work branch equal to base + patches/. Returns true when it changed.
pub fn apply(sh: &Shell, project: &Project, force: bool) -> Result<bool> {
    git::ensure_clean(sh, project, "cargo xtask apply")?;
    let dir = project.patches_dir();
    let stored = series::load(&dir)?;
    let base = git::base(sh, project)?;
    let old_tip = git::work_tip(sh, project)?;

    if let Some(tip) = &old_tip {
        if !force {
            let wanted = generate::generate(sh, project, &stored)?;
            let same = generate::compare(&stored.files, &wanted)
                .iter()
                .all(|c| c.kind == generate::Kind::Same);
            if same {
                checkout_branch(sh, project)?;
                eprintln!(
                    "branch {WORK_BRANCH} already matches patches/ ({} patches): nothing to apply",
                    stored.order.len()
                );
                return Ok(false);
            }
        }
        // Keep the old tip reachable: unexported commits are never lost.
        let backup = format!("refs/rdmabond/backup/{}", unix_time());
        let _d = sh.push_dir(&project.tree);
        cmd!(sh, "git update-ref {backup} {tip}").quiet().run()?;
        eprintln!(
            "previous {WORK_BRANCH} tip {} saved as {backup} (`git log {backup}` to see it)",
            &tip[..12.min(tip.len())]
        );
    }

    let _d = sh.push_dir(&project.tree);
    cmd!(sh, "git checkout -q -B {WORK_BRANCH} {base}")
        .quiet()
        .run()
        .context("cannot reset the work branch to the base")?;
    let patches = series::patch_paths(&dir, &stored);
    if patches.is_empty() {
        eprintln!("patches/series is empty: {WORK_BRANCH} is the base");
        return Ok(true);
    }
    let patch_refs = &patches;
    let out = cmd!(sh, "git am --quiet --3way --keep-cr {patch_refs...}")
        .quiet()
        .ignore_status()
        .output()?;
    if !out.status.success() {
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = cmd!(sh, "git am --abort").quiet().ignore_status().run();
        let _ = cmd!(sh, "git checkout -q -B {WORK_BRANCH} {base}")
            .quiet()
            .ignore_status()
            .run();
        let failure = AmFailure::parse(&text);
        bail!("{}", failure.explain(&dir, &stored.order));
    }
    eprintln!("applied {} patches onto {}", patches.len(), project.base);
    Ok(true)
}

fn checkout_branch(sh: &Shell, project: &Project) -> Result<()> {
    if git::current_branch(sh, project)?.as_deref() != Some(WORK_BRANCH) {
        let _d = sh.push_dir(&project.tree);
        cmd!(sh, "git checkout -q {WORK_BRANCH}").quiet().run()?;
    }
    Ok(())
}

fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// What `git am` said when a patch did not apply.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AmFailure {
    /// 1-based index of the failing patch ("Patch failed at 0003").
    pub index: Option<usize>,
    /// Its subject.
    pub subject: Option<String>,
    /// `file:line` of the hunk that failed, if git said.
    pub hunk: Option<(String, usize)>,
    /// The first `error:` line.
    pub error: Option<String>,
}

impl AmFailure {
    /// Parses git am's output.
    pub fn parse(text: &str) -> AmFailure {
        let mut f = AmFailure::default();
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("Patch failed at ") {
                let (num, subject) = rest.split_once(' ').unwrap_or((rest, ""));
                f.index = num.parse().ok();
                f.subject = Some(subject.to_string());
            } else if let Some(rest) = line.strip_prefix("error: patch failed: ") {
                if let Some((file, l)) = rest.rsplit_once(':') {
                    f.hunk = l.parse().ok().map(|n| (file.to_string(), n));
                }
                f.error.get_or_insert_with(|| line.to_string());
            } else if line.starts_with("error:") || line.starts_with("fatal:") {
                f.error.get_or_insert_with(|| line.to_string());
            }
        }
        f
    }

    /// One line naming the patch and the cause, then the hunk and the fix.
    pub fn explain(&self, dir: &Path, order: &[String]) -> String {
        let name = self
            .index
            .and_then(|i| order.get(i.wrapping_sub(1)))
            .cloned()
            .unwrap_or_else(|| "a patch of the series".to_string());
        let cause = self
            .error
            .clone()
            .unwrap_or_else(|| "git am failed".to_string());
        let mut msg = format!("patches/{name} does not apply: {cause}");
        if let Some((file, line)) = &self.hunk {
            if let Ok(text) = fs_err::read_to_string(dir.join(&name)) {
                if let Some(h) = find_hunk(&text, file, *line) {
                    msg.push_str(&format!("\nfailing hunk ({file}:{line}):\n{h}"));
                }
            }
        }
        msg.push_str(&format!(
            "\nfix: edit patches/{name} (or regenerate it with `cargo xtask export` from a branch \
             where it applies); to resolve by hand, run `git am -3` of the series in the kernel \
             tree, fix the conflict, `git am --continue`, then `cargo xtask export`"
        ));
        msg
    }
}

/// The hunk of `file` in a patch whose old range contains `line` (else its first hunk).
pub fn find_hunk(patch: &str, file: &str, line: usize) -> Option<String> {
    let mut hunks: Vec<(usize, usize, Vec<&str>)> = Vec::new();
    let mut in_file = false;
    let mut open = false;
    for l in patch.lines() {
        if l.starts_with("diff --git ") {
            in_file = false;
            open = false;
        } else if let Some(path) = l.strip_prefix("+++ ") {
            in_file = path.strip_prefix("b/").unwrap_or(path) == file;
            open = false;
        } else if in_file && l.starts_with("@@ -") {
            let range = l[4..].split(' ').next().unwrap_or("");
            let (start, len) = match range.split_once(',') {
                Some((s, n)) => (s.parse().unwrap_or(0), n.parse().unwrap_or(1)),
                None => (range.parse().unwrap_or(0), 1),
            };
            hunks.push((start, len, vec![l]));
            open = true;
        } else if in_file && open && (l.starts_with([' ', '+', '-', '\\']) || l.is_empty()) {
            if let Some(h) = hunks.last_mut() {
                h.2.push(l);
            }
        } else {
            open = false;
        }
    }
    let pick = hunks
        .iter()
        .find(|(start, len, _)| *start <= line && line <= start + len)
        .or(hunks.first())?;
    Some(pick.2.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_am_failure() {
        let out = "Applying: net: add x\nerror: patch failed: net/core/dev.c:120\n\
                   error: net/core/dev.c: patch does not apply\nPatch failed at 0002 net: add y\n\
                   hint: Use 'git am --show-current-patch=diff' to see the failed patch\n";
        let f = AmFailure::parse(out);
        assert_eq!(f.index, Some(2));
        assert_eq!(f.subject.as_deref(), Some("net: add y"));
        assert_eq!(f.hunk, Some(("net/core/dev.c".to_string(), 120)));
        assert_eq!(
            f.error.as_deref(),
            Some("error: patch failed: net/core/dev.c:120")
        );
        let order = vec!["0001-a.patch".to_string(), "0002-b.patch".to_string()];
        let msg = f.explain(Path::new("/nonexistent"), &order);
        assert!(
            msg.starts_with("patches/0002-b.patch does not apply: error: patch failed"),
            "{msg}"
        );
        assert!(msg.contains("fix: edit patches/0002-b.patch"));
    }

    #[test]
    fn parses_corrupt_patch() {
        let f = AmFailure::parse(
            "Applying: x\nerror: corrupt patch at line 14\nPatch failed at 0001 x\n",
        );
        assert_eq!(f.index, Some(1));
        assert_eq!(f.error.as_deref(), Some("error: corrupt patch at line 14"));
        assert_eq!(f.hunk, None);
    }

    #[test]
    fn finds_the_failing_hunk() {
        let patch = "diff --git a/x.c b/x.c\n--- a/x.c\n+++ b/x.c\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n\
                     @@ -100,3 +100,4 @@ f()\n y\n+z\n w\ndiff --git a/y.c b/y.c\n--- a/y.c\n+++ b/y.c\n\
                     @@ -100,2 +100,2 @@\n-q\n+r\n\nbase-commit: 0\n";
        let h = find_hunk(patch, "x.c", 100).unwrap();
        assert_eq!(h, "@@ -100,3 +100,4 @@ f()\n y\n+z\n w");
        let h = find_hunk(patch, "y.c", 100).unwrap();
        assert!(h.starts_with("@@ -100,2 +100,2 @@\n-q\n+r"), "{h}");
        assert_eq!(find_hunk(patch, "z.c", 1), None);
    }
}
