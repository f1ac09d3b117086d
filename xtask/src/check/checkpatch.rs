//! checkpatch --strict --codespell with the netdev CI's ignore list.

use std::process::Command;

use anyhow::{Context, Result};

use super::{Ctx, Outcome, Status};
use crate::deps::CODESPELL_DICT;

/// Message types the netdev CI (NIPA) ignores.
pub const IGNORE: &str = "COMMIT_LOG_LONG_LINE,MACRO_ARG_REUSE,ALLOC_SIZEOF_STRUCT,\
NO_AUTHOR_SIGN_OFF,GIT_COMMIT_ID,CAMELCASE,FILE_PATH_CHANGES,BAD_REPORTED_BY_LINK";

/// One checkpatch finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// ERROR, WARNING or CHECK.
    pub level: String,
    pub kind: String,
    pub message: String,
    /// `file:line` when checkpatch names one.
    pub place: Option<String>,
}

/// Parses checkpatch's `--show-types` output.
pub fn parse(out: &str) -> Vec<Finding> {
    let mut found: Vec<Finding> = Vec::new();
    let mut lines = out.lines().peekable();
    while let Some(line) = lines.next() {
        let Some((level, rest)) = ["ERROR:", "WARNING:", "CHECK:"]
            .iter()
            .find_map(|p| line.strip_prefix(p).map(|r| (p.trim_end_matches(':'), r)))
        else {
            continue;
        };
        let Some((kind, message)) = rest.split_once(": ") else {
            continue;
        };
        let place = lines
            .peek()
            .and_then(|next| next.split_once(": FILE: "))
            .map(|(_, p)| p.trim_end_matches(':').to_string());
        found.push(Finding {
            level: level.to_string(),
            kind: kind.to_string(),
            message: message.to_string(),
            place,
        });
    }
    found
}

/// checkpatch on one commit: errors fail, warnings and checks warn.
pub fn run(ctx: &Ctx) -> Result<Outcome> {
    let script = ctx.wt.join("scripts/checkpatch.pl");
    let mut command = Command::new("perl");
    command
        .arg(&script)
        .args(["--strict", "--show-types", "--max-line-length=80"])
        .arg(format!("--ignore={IGNORE}"));
    let spell = std::path::Path::new(CODESPELL_DICT).is_file();
    if spell {
        command
            .arg("--codespell")
            .arg(format!("--codespellfile={CODESPELL_DICT}"));
    }
    // spdxcheck.py must find the system python with its modules (git, ply).
    let path = std::env::var("PATH").unwrap_or_default();
    let out = command
        .arg("-g")
        .arg(&ctx.commit.id)
        .current_dir(&ctx.wt)
        .env("PATH", format!("/usr/bin:{path}"))
        .output()
        .context("cannot run scripts/checkpatch.pl")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let found = parse(&text);
    let mut o = Outcome::new("checkpatch", Status::Pass);
    for f in &found {
        let status = if f.level == "ERROR" {
            Status::Fail
        } else {
            Status::Warn
        };
        o.status = o.status.max(status);
        let place = f
            .place
            .clone()
            .unwrap_or_else(|| "commit message".to_string());
        let note = if f.kind == "UNKNOWN_COMMIT_ID" {
            " (the pinned base is a tarball import without upstream history: check the id in a linux clone)"
        } else {
            ""
        };
        o.details.push(format!(
            "{}: {place}: {}:{}: {}{note}",
            ctx.name(),
            f.level,
            f.kind,
            f.message
        ));
    }
    if found.is_empty() && !out.status.success() {
        o.status = Status::Fail;
        o.details.push(format!(
            "{}: checkpatch failed: {}",
            ctx.name(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    if !spell {
        o.details
            .push(format!("note: no codespell dictionary at {CODESPELL_DICT}"));
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_findings() {
        let out = "WARNING:COMMIT_MESSAGE: Missing commit description - Add an appropriate one\n\n\
                   ERROR:TRAILING_WHITESPACE: trailing whitespace\n#5: FILE: x.c:2:\n+b $\n\n\
                   CHECK:PARENTHESIS_ALIGNMENT: Alignment should match open parenthesis\n\
                   #9: FILE: net/a.c:40:\n\ntotal: 2 errors, 1 warnings, 2 lines checked\n";
        let f = parse(out);
        assert_eq!(f.len(), 3);
        assert_eq!(f[0].kind, "COMMIT_MESSAGE");
        assert_eq!(f[0].place, None);
        assert_eq!(f[1].level, "ERROR");
        assert_eq!(f[1].place.as_deref(), Some("x.c:2"));
        assert_eq!(f[2].place.as_deref(), Some("net/a.c:40"));
        assert!(parse("total: 0 errors, 0 warnings\n").is_empty());
    }
}
