//! Source rules of the netdev CI: no new `inline` in .c files, every static function
//! in a header inline, no module_param, no untracked dev_hold/dev_put; the author's
//! Signed-off-by; shellcheck and yamllint on touched files; Rust formatting.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use xshell::cmd;

use super::kdoc::new_findings;
use super::{Check, Ctx, FileDiff, Outcome, Status};

/// The code part of a C line: no `//` comment, no string literals, no `/* */` on it.
pub fn code_part(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        if in_str {
            if c == '\\' {
                chars.next();
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '/' if chars.peek() == Some(&'/') => break,
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            _ => out.push(c),
        }
    }
    let t = out.trim_start();
    if t.starts_with('*') {
        // Inside a block comment.
        return String::new();
    }
    out
}

/// True when `word` occurs in `code` as a whole identifier.
pub fn has_word(code: &str, word: &str) -> bool {
    let is_id = |c: char| c.is_alphanumeric() || c == '_';
    let mut start = 0;
    while let Some(pos) = code[start..].find(word) {
        let at = start + pos;
        let end = at + word.len();
        let before_ok = code[..at].chars().next_back().map_or(true, |c| !is_id(c));
        let after_ok = code[end..].chars().next().map_or(true, |c| !is_id(c));
        if before_ok && after_ok {
            return true;
        }
        start = end;
    }
    false
}

/// True when `name(` is called in `code`.
fn calls(code: &str, name: &str) -> bool {
    let mut start = 0;
    while let Some(pos) = code[start..].find(name) {
        let at = start + pos;
        let end = at + name.len();
        let id = |c: char| c.is_alphanumeric() || c == '_';
        let before_ok = code[..at].chars().next_back().map_or(true, |c| !id(c));
        if before_ok && code[end..].trim_start().starts_with('(') {
            return true;
        }
        start = end;
    }
    false
}

/// A static function definition or declaration starting on this added header line
/// that is not inline. `next` is the following added line (for split declarations).
pub fn static_not_inline(code: &str, next: &str) -> bool {
    let t = code.trim_start();
    if !t.starts_with("static ") || has_word(t, "inline") || has_word(t, "__always_inline") {
        return false;
    }
    if t.contains('=') || t.starts_with("static_assert") {
        return false;
    }
    // A function: an opening parenthesis on this line or the next, and no `=`.
    let paren = t.contains('(') || (!t.ends_with(';') && next.trim_start().contains('('));
    let data = t.contains('[') && !t.contains('(');
    paren && !data && !t.starts_with("static DEFINE_")
}

fn per_line(
    ctx: &Ctx,
    check: Check,
    bad: Status,
    want: impl Fn(&FileDiff) -> bool,
    rule: impl Fn(&str, &str) -> Option<String>,
) -> Outcome {
    let mut findings = Vec::new();
    let mut any = false;
    for f in ctx.files.iter().filter(|f| !f.deleted && want(f)) {
        any = true;
        for (i, (line, text)) in f.added.iter().enumerate() {
            let code = code_part(text);
            let next = f
                .added
                .get(i + 1)
                .filter(|(n, _)| *n == line + 1)
                .map(|(_, t)| code_part(t))
                .unwrap_or_default();
            if let Some(msg) = rule(&code, &next) {
                findings.push(format!("{}: {}:{line}: {msg}", ctx.name(), f.path));
            }
        }
    }
    if !any {
        return Outcome::new(check, Status::NotApplicable);
    }
    Outcome::from_findings(check, bad, findings)
}

/// Deprecated calls: (name, why).
pub const DEPRECATED: &[(&str, &str)] = &[
    (
        "module_param",
        "no new module parameters (use netlink/sysfs)",
    ),
    (
        "module_param_named",
        "no new module parameters (use netlink/sysfs)",
    ),
    ("dev_hold", "use netdev_hold() with a tracker"),
    ("dev_put", "use netdev_put() with a tracker"),
    ("get_net", "use get_net_track() with a tracker"),
    ("put_net", "use put_net_track() with a tracker"),
];

/// The three line rules.
pub fn run(ctx: &Ctx) -> Vec<Outcome> {
    let is_c = |f: &FileDiff| f.path.ends_with(".c");
    let is_h = |f: &FileDiff| f.path.ends_with(".h") && !f.path.contains("/uapi/");
    let is_ch = |f: &FileDiff| f.path.ends_with(".c") || f.path.ends_with(".h");
    vec![
        per_line(ctx, Check::Inline, Status::Fail, is_c, |code, _| {
            has_word(code, "inline")
                .then(|| "new `inline` in a .c file: let the compiler decide".to_string())
        }),
        per_line(ctx, Check::HdrStatic, Status::Fail, is_h, |code, next| {
            static_not_inline(code, next)
                .then(|| "static function in a header is not `static inline`".to_string())
        }),
        per_line(ctx, Check::Deprecated, Status::Fail, is_ch, |code, _| {
            DEPRECATED
                .iter()
                .find(|(name, _)| calls(code, name))
                .map(|(name, why)| format!("{name}(): {why}"))
        }),
    ]
}

/// The author signed the patch off.
pub fn signoff(ctx: &Ctx) -> Result<Outcome> {
    let _d = ctx.sh.push_dir(&ctx.project.tree);
    let id = &ctx.commit.id;
    let text = cmd!(ctx.sh, "git log -1 --format=%an%n%ae%n%B {id}")
        .quiet()
        .read()?;
    Ok(match signoff_problem(&text) {
        None => Outcome::new(Check::Signoff, Status::Pass),
        Some(msg) => Outcome::from_findings(
            Check::Signoff,
            Status::Fail,
            vec![format!("{}: {msg}", ctx.name())],
        ),
    })
}

/// `name\nemail\nbody`: None when the body has the author's Signed-off-by.
pub fn signoff_problem(text: &str) -> Option<String> {
    let mut lines = text.lines();
    let name = lines.next().unwrap_or_default().trim().to_string();
    let email = lines.next().unwrap_or_default().trim().to_lowercase();
    let body: Vec<&str> = lines.collect();
    let mut sobs = body
        .iter()
        .filter_map(|l| l.trim().strip_prefix("Signed-off-by:"))
        .map(|s| s.trim().to_lowercase());
    let want = format!("<{email}>");
    if sobs.any(|s| s.ends_with(&want)) {
        None
    } else {
        Some(format!(
            "commit message: no Signed-off-by from the author {name} <{email}>"
        ))
    }
}

/// Lint findings per tool, for the touched shell and YAML files.
pub type Lints = BTreeMap<&'static str, Vec<String>>;

fn run_tool(ctx: &Ctx, tool: &'static str, file: &str) -> Result<Vec<String>> {
    let path = ctx.wt.join(file);
    let dir = path.parent().unwrap_or(&ctx.wt).to_path_buf();
    let name = path.file_name().unwrap_or_default().to_owned();
    let sh = ctx.sh;
    let out = match tool {
        "shellcheck" => {
            let _d = sh.push_dir(&dir);
            cmd!(sh, "shellcheck -x -e SC2317 -e SC2329 -f gcc {name}")
                .quiet()
                .ignore_status()
                .output()
        }
        _ => {
            let _d = sh.push_dir(&ctx.wt);
            cmd!(sh, "yamllint -f parsable {path}")
                .quiet()
                .ignore_status()
                .output()
        }
    }
    .with_context(|| format!("cannot run {tool}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let prefix = if tool == "shellcheck" {
        format!("{}/", dir.strip_prefix(&ctx.wt).unwrap_or(&dir).display())
    } else {
        String::new()
    };
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let l = l.replace(&format!("{}/", ctx.wt.display()), "");
            if l.starts_with(&prefix) {
                l
            } else {
                format!("{prefix}{l}")
            }
        })
        .collect())
}

fn lint_targets(ctx: &Ctx) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for f in ctx.touched(&[".sh"]) {
        out.push(("shellcheck", f));
    }
    for f in ctx.touched(&[".yaml", ".yml"]) {
        out.push(("yamllint", f));
    }
    out
}

/// shellcheck and yamllint findings on the touched files as they are now.
pub fn lints(ctx: &Ctx) -> Result<Lints> {
    let mut out = Lints::new();
    for (tool, file) in lint_targets(ctx) {
        let found = if ctx.wt.join(&file).is_file() && crate::common::util::which(tool).is_some() {
            run_tool(ctx, tool, &file)?
        } else {
            Vec::new()
        };
        out.entry(tool).or_default().extend(found);
    }
    Ok(out)
}

/// New shellcheck / yamllint findings: errors fail, the rest warns.
pub fn lints_delta(ctx: &Ctx, before: &Lints) -> Result<Vec<Outcome>> {
    let after = lints(ctx)?;
    let mut out = Vec::new();
    for (tool, check) in [
        ("shellcheck", Check::Shellcheck),
        ("yamllint", Check::Yamllint),
    ] {
        let Some(now) = after.get(tool) else {
            out.push(Outcome::new(check, Status::NotApplicable));
            continue;
        };
        if crate::common::util::which(tool).is_none() {
            out.push(Outcome::skip(check, format!("{tool} is not installed")));
            continue;
        }
        let new = new_findings(before.get(tool).map_or(&[][..], |v| v), now);
        let status = if new.iter().any(|l| l.contains("error")) {
            Status::Fail
        } else {
            Status::Warn
        };
        let new = new
            .into_iter()
            .map(|l| format!("{}: {l}", ctx.name()))
            .collect();
        out.push(Outcome::from_findings(check, status, new));
    }
    Ok(out)
}

/// Rust: rustfmt --check on touched .rs files; CLIPPY=1 needs a Rust build.
pub fn rust(ctx: &Ctx) -> Result<Outcome> {
    let files = ctx.touched(&[".rs"]);
    if files.is_empty() {
        return Ok(Outcome::new(Check::Rust, Status::NotApplicable));
    }
    let rustfmt = ["/usr/bin/rustfmt"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file())
        .or_else(|| crate::common::util::which("rustfmt"));
    let Some(rustfmt) = rustfmt else {
        return Ok(Outcome::skip(Check::Rust, "rustfmt is not installed"));
    };
    // The kernel's .rustfmt.toml: the worktree has none (the base commit does not
    // track the tarball's dotfiles), the main tree has.
    let config = crate::common::kbuild::clippy::kernel_dotfile(
        &[&ctx.wt, &ctx.project.tree],
        ".rustfmt.toml",
    )?;
    let _d = ctx.sh.push_dir(&ctx.wt);
    let out = cmd!(
        ctx.sh,
        "{rustfmt} --check --edition 2021 --config-path {config} {files...}"
    )
    .quiet()
    .ignore_status()
    .output()
    .context("cannot run rustfmt")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut findings: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("Diff in "))
        .map(|l| {
            let l = l.replace(&format!("{}/", ctx.wt.display()), "");
            format!("{}: rustfmtcheck: {l}", ctx.name())
        })
        .collect();
    if !out.status.success() && findings.is_empty() {
        findings.push(format!(
            "{}: rustfmt failed: {}",
            ctx.name(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let mut o = Outcome::from_findings(Check::Rust, Status::Fail, findings);
    if o.status == Status::Pass {
        o.details.push(format!(
            "{}: rustfmt clean (CLIPPY=1 is the clippy column)",
            ctx.name()
        ));
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_without_comments_and_strings() {
        assert_eq!(code_part("int a; // inline"), "int a; ");
        assert_eq!(code_part("x(\"inline\") /* inline */;"), "x() ;");
        assert_eq!(code_part(" * inline here"), "");
        assert!(has_word("static inline int f(void)", "inline"));
        assert!(!has_word("static int inlined(void)", "inline"));
        assert!(!has_word("__always_inline_x", "inline"));
    }

    #[test]
    fn header_statics() {
        assert!(static_not_inline("static int foo(int a)", ""));
        assert!(static_not_inline("static void", "bar(void)"));
        assert!(!static_not_inline("static inline int foo(int a)", ""));
        assert!(!static_not_inline(
            "static __always_inline int foo(void)",
            ""
        ));
        assert!(!static_not_inline("static const int tbl[] = {", ""));
        assert!(!static_not_inline("static int x;", "int y(void);"));
        assert!(!static_not_inline("static_assert(sizeof(int) == 4);", ""));
        assert!(!static_not_inline("int foo(void);", ""));
    }

    #[test]
    fn deprecated_calls() {
        assert!(calls("\tdev_hold(dev);", "dev_hold"));
        assert!(!calls("\tnetdev_hold(dev, &t, GFP_KERNEL);", "dev_hold"));
        assert!(calls("module_param (x, int, 0);", "module_param"));
        assert!(!calls("int dev_hold_count;", "dev_hold"));
    }

    #[test]
    fn signoffs() {
        let ok = "A B\nab@x.org\nsubj\n\nbody\n\nSigned-off-by: A B <AB@x.org>\n";
        assert_eq!(signoff_problem(ok), None);
        let other = "A B\nab@x.org\nsubj\n\nSigned-off-by: C <c@x.org>\n";
        assert!(signoff_problem(other).unwrap().contains("A B <ab@x.org>"));
        assert!(signoff_problem("A\na@b\nsubj\n").is_some());
    }
}
