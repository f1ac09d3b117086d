//! What `cargo xtask export` would write from the work branch (every patch, the
//! series list, the cover letter), and how it differs from patches/.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use similar::{ChangeTag, TextDiff};
use xshell::{cmd, Shell};

use crate::common::git;
use crate::common::project::{Project, WORK_BRANCH};
use crate::common::series::{self, COVER_PATCH, COVER_SOURCE, SERIES_FILE};

/// What export would write: every patch, the series list, the cover letter.
pub fn generate(
    sh: &Shell,
    project: &Project,
    stored: &series::Stored,
) -> Result<BTreeMap<String, String>> {
    let base = git::base(sh, project)?;
    let tip = git::work_tip(sh, project)?.with_context(|| {
        format!("the kernel tree has no branch {WORK_BRANCH} yet: run `cargo xtask apply` first")
    })?;
    let mut files = BTreeMap::new();
    let cover_src = stored
        .files
        .get(COVER_SOURCE)
        .cloned()
        .unwrap_or_else(series::default_cover);
    files.insert(COVER_SOURCE.to_string(), cover_src.clone());

    let tmp = project.target_dir().join("export-tmp");
    let _ = fs_err::remove_dir_all(&tmp);
    fs_err::create_dir_all(&tmp)?;
    let range = format!("{base}..{tip}");
    let count: usize = {
        let _d = sh.push_dir(&project.tree);
        cmd!(sh, "git rev-list --count {range}")
            .quiet()
            .read()?
            .trim()
            .parse()?
    };
    let mut order = Vec::new();
    if count > 0 {
        let _d = sh.push_dir(&project.tree);
        let base_arg = format!("--base={base}");
        cmd!(
            sh,
            "git -c core.abbrev=12 -c diff.noprefix=false -c diff.mnemonicPrefix=false
                 -c format.signOff=false
                 format-patch --quiet --numbered --no-thread --no-signature --zero-commit
                 --no-notes --no-to --no-cc --no-add-header --subject-prefix=PATCH
                 --cover-letter {base_arg} --filename-max-length=64 -o {tmp} {range}"
        )
        .quiet()
        .run()
        .context("git format-patch of the work branch failed")?;
        let (subject, body) =
            series::parse_cover(&cover_src).context("invalid patches/cover-letter.txt")?;
        // Pin the cover letter's author and date to the newest commit's, so the
        // file depends only on the branch.
        let date = cmd!(sh, "git log -1 --format=%aD {tip}").quiet().read()?;
        let fmt = "--format=%an <%ae>";
        let from = cmd!(sh, "git log -1 {fmt} {tip}").quiet().read()?;
        let mut names: Vec<String> = fs_err::read_dir(&tmp)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        for name in names {
            let text = fs_err::read_to_string(tmp.join(&name))?;
            let text = if name == COVER_PATCH {
                fix_from(
                    &series::fill_cover(&text, &subject, &body, date.trim()),
                    from.trim(),
                )
            } else {
                order.push(name.clone());
                text
            };
            files.insert(name, text);
        }
    }
    let _ = fs_err::remove_dir_all(&tmp);
    files.insert(SERIES_FILE.to_string(), series::render_series(&order));
    Ok(files)
}

/// Rewrites the header `From:` of a mail, including its folded continuation lines
/// (git folds a long identity onto a second line).
fn fix_from(mail: &str, from: &str) -> String {
    let mut out = String::with_capacity(mail.len());
    let mut done = false;
    let mut in_from = false;
    for line in mail.lines() {
        if in_from && line.starts_with([' ', '\t']) {
            continue;
        }
        in_from = false;
        if !done && line.starts_with("From: ") {
            out.push_str("From: ");
            out.push_str(from);
            done = true;
            in_from = true;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// How one file of patches/ changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Unchanged.
    Same,
    /// New file.
    Added,
    /// Removed file.
    Removed,
    /// Changed contents.
    Changed,
}

/// One file's change, with line counts.
#[derive(Debug, Clone)]
pub struct Change {
    pub name: String,
    pub kind: Kind,
    pub old: Option<String>,
    pub new: Option<String>,
    pub added: usize,
    pub removed: usize,
}

/// Compares the stored files with the wanted ones.
pub fn compare(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Vec<Change> {
    let mut names: Vec<&String> = old.keys().chain(new.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let o = old.get(name);
            let n = new.get(name);
            let (added, removed) = line_counts(o.map_or("", |s| s), n.map_or("", |s| s));
            let kind = match (o, n) {
                (Some(a), Some(b)) if a == b => Kind::Same,
                (Some(_), Some(_)) => Kind::Changed,
                (None, Some(_)) => Kind::Added,
                _ => Kind::Removed,
            };
            Change {
                name: name.clone(),
                kind,
                old: o.cloned(),
                new: n.cloned(),
                added,
                removed,
            }
        })
        .collect()
}

fn line_counts(old: &str, new: &str) -> (usize, usize) {
    let diff = TextDiff::from_lines(old, new);
    let mut added = 0;
    let mut removed = 0;
    for change in diff.iter_all_changes() {
        match change.tag() {
            ChangeTag::Insert => added += 1,
            ChangeTag::Delete => removed += 1,
            ChangeTag::Equal => {}
        }
    }
    (added, removed)
}

/// One line per changed file, and a count of the unchanged ones.
pub fn summary_lines(changes: &[Change]) -> Vec<String> {
    let mut lines = Vec::new();
    let same = changes.iter().filter(|c| c.kind == Kind::Same).count();
    for c in changes.iter().filter(|c| c.kind != Kind::Same) {
        let what = match c.kind {
            Kind::Added => "new",
            Kind::Removed => "removed",
            Kind::Changed => "changed",
            Kind::Same => unreachable!(),
        };
        lines.push(format!(
            "  {what:<8} patches/{} (+{} -{})",
            c.name, c.added, c.removed
        ));
    }
    lines.push(format!("  {same} file(s) unchanged"));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(items: &[(&str, &str)]) -> BTreeMap<String, String> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn compare_classifies_and_counts() {
        let old = map(&[
            ("a.patch", "1\n2\n3\n"),
            ("b.patch", "x\n"),
            ("series", "a\n"),
        ]);
        let new = map(&[
            ("a.patch", "1\n2b\n3\n4\n"),
            ("c.patch", "y\n"),
            ("series", "a\n"),
        ]);
        let changes = compare(&old, &new);
        let kinds: Vec<(&str, Kind, usize, usize)> = changes
            .iter()
            .map(|c| (c.name.as_str(), c.kind, c.added, c.removed))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("a.patch", Kind::Changed, 2, 1),
                ("b.patch", Kind::Removed, 0, 1),
                ("c.patch", Kind::Added, 1, 0),
                ("series", Kind::Same, 0, 0),
            ]
        );
        let lines = summary_lines(&changes);
        assert_eq!(lines[0], "  changed  patches/a.patch (+2 -1)");
        assert_eq!(lines.last().unwrap(), "  1 file(s) unchanged");
    }

    #[test]
    fn from_line_is_normalised_once() {
        let mail = "From 000 Mon\nFrom: Someone <s@x>\nSubject: s\n\nFrom: in body\n";
        assert_eq!(
            fix_from(mail, "A <a@b>"),
            "From 000 Mon\nFrom: A <a@b>\nSubject: s\n\nFrom: in body\n"
        );
        let folded = "From 000 Mon\nFrom: A Very Long Name\n <long@x>\nDate: d\n\n body\n";
        assert_eq!(
            fix_from(folded, "B <b@c>"),
            "From 000 Mon\nFrom: B <b@c>\nDate: d\n\n body\n"
        );
    }
}
