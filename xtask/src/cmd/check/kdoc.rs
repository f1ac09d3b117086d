//! kernel-doc -Wall on the touched files (no new warnings), and kernel-doc for every
//! function a patch exports.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use anyhow::{Context, Result};
use regex::Regex;
use xshell::cmd;

use super::{Check, Ctx, Outcome, Status};
use crate::common::util::without_lines;

/// kernel-doc warnings on the touched C files as they are in the worktree now.
pub fn run_kdoc(ctx: &Ctx) -> Result<Vec<String>> {
    let files: Vec<String> = ctx
        .touched(&[".c", ".h"])
        .into_iter()
        .filter(|f| ctx.wt.join(f).is_file())
        .collect();
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let kernel_doc = ctx.wt.join("scripts/kernel-doc");
    let _d = ctx.sh.push_dir(&ctx.wt);
    let out = cmd!(ctx.sh, "{kernel_doc} -Wall -none {files...}")
        .quiet()
        .ignore_status()
        .output()
        .context("cannot run scripts/kernel-doc")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(parse(&text))
}

/// The warning lines of kernel-doc output, deduplicated, without the `Warning:` tag.
pub fn parse(text: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let l = line
            .strip_prefix("Warning: ")
            .or_else(|| line.strip_prefix("warning: "))
            .unwrap_or(line)
            .trim();
        let is_warning = line.starts_with("Warning") || line.contains(": warning:");
        if is_warning && seen.insert(l.to_string()) {
            out.push(l.to_string());
        }
    }
    out
}

/// Warnings after the patch that were not there before it (compared without line
/// numbers), i.e. the ones the patch adds.
pub fn new_findings(before: &[String], after: &[String]) -> Vec<String> {
    let old: BTreeSet<String> = before.iter().map(|l| without_lines(l)).collect();
    after
        .iter()
        .filter(|l| !old.contains(&without_lines(l)))
        .cloned()
        .collect()
}

/// kernel-doc -Wall: no new warnings.
pub fn delta(ctx: &Ctx, before: &[String]) -> Result<Outcome> {
    if ctx.touched(&[".c", ".h"]).is_empty() {
        return Ok(Outcome::new(Check::Kdoc, Status::NotApplicable));
    }
    let after = run_kdoc(ctx)?;
    let new = new_findings(before, &after)
        .into_iter()
        .map(|l| format!("{}: {l}", ctx.name()))
        .collect();
    Ok(Outcome::from_findings(Check::Kdoc, Status::Fail, new))
}

/// `EXPORT_SYMBOL*(name)` on an added line: the name.
pub fn exported_name(line: &str) -> Option<&str> {
    let rest = line.trim_start().strip_prefix("EXPORT_SYMBOL")?;
    let open = rest.find('(')?;
    let prefix = &rest[..open];
    if !prefix.is_empty() && !prefix.starts_with('_') {
        return None;
    }
    let args = &rest[open + 1..];
    let name = args.split([',', ')']).next()?.trim();
    (!name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_')).then_some(name)
}

/// Every function the patch exports has a kernel-doc comment in the tree.
pub fn exported(ctx: &Ctx) -> Result<Outcome> {
    let mut findings = Vec::new();
    let mut any = false;
    for f in &ctx.files {
        if !f.path.ends_with(".c") {
            continue;
        }
        for (line, text) in &f.added {
            let Some(name) = exported_name(text) else {
                continue;
            };
            any = true;
            // The kernel-doc sits next to the definition: look in the files this
            // patch touches (the exporting file first).
            // ` * name() -` or ` * name -`: the kernel-doc of `name`.
            static DOC: LazyLock<Regex> =
                LazyLock::new(|| Regex::new(r"(?m)^ \* (\w+)(?:\(\))? *-").unwrap());
            let documents = |t: &str| DOC.captures_iter(t).any(|c| &c[1] == name);
            let found = std::iter::once(f.path.as_str())
                .chain(ctx.files.iter().map(|g| g.path.as_str()))
                .filter(|p| p.ends_with(".c") || p.ends_with(".h"))
                .any(|p| fs_err::read_to_string(ctx.wt.join(p)).is_ok_and(|t| documents(&t)));
            if !found {
                findings.push(format!(
                    "{}: {}:{line}: {name}() is exported but has no kernel-doc comment",
                    ctx.name(),
                    f.path
                ));
            }
        }
    }
    if !any {
        return Ok(Outcome::new(Check::ExportDoc, Status::NotApplicable));
    }
    Ok(Outcome::from_findings(
        Check::ExportDoc,
        Status::Fail,
        findings,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_compares() {
        let before = parse(
            "Warning: a.c:4 function parameter 'a' not described in 'foo'\n\
             Warning: a.c:4 function parameter 'a' not described in 'foo'\n",
        );
        assert_eq!(before.len(), 1);
        let after = parse(
            "Warning: a.c:9 function parameter 'a' not described in 'foo'\n\
             Warning: a.c:20 No description found for return value of 'bar'\n",
        );
        assert_eq!(
            new_findings(&before, &after),
            vec!["a.c:20 No description found for return value of 'bar'"]
        );
    }

    #[test]
    fn export_names() {
        assert_eq!(exported_name("EXPORT_SYMBOL(foo);"), Some("foo"));
        assert_eq!(
            exported_name("EXPORT_SYMBOL_GPL(inet_addr_move);"),
            Some("inet_addr_move")
        );
        assert_eq!(
            exported_name("EXPORT_SYMBOL_NS_GPL(bar, \"NS\");"),
            Some("bar")
        );
        assert_eq!(exported_name("EXPORT_SYMBOLX(foo);"), None);
        assert_eq!(exported_name("int x;"), None);
    }
}
