//! checkpatch --strict --codespell with the netdev CI's ignore list.

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::Output;

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use super::{Check, Ctx, Outcome, Status};
use crate::common::deps::CODESPELL_DICT;

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

/// Runs the checkpatch.pl of the kernel worktree `wt` as the gate does: `--strict
/// --show-types`, lines up to `max_line` columns, the netdev CI's ignore list plus
/// `extra_ignore`, and `--codespell` when the dictionary is installed; `target` is
/// what to check (`-g COMMIT`, or `--no-tree FILE`). Returns checkpatch's output and
/// whether the dictionary was there.
pub fn invoke(
    wt: &Path,
    max_line: u32,
    extra_ignore: &str,
    target: &[&OsStr],
) -> Result<(Output, bool)> {
    let mut ignore = IGNORE.to_string();
    if !extra_ignore.is_empty() {
        ignore = format!("{ignore},{extra_ignore}");
    }
    let script = wt.join("scripts/checkpatch.pl");
    let mut args: Vec<OsString> = vec![
        "--strict".into(),
        "--show-types".into(),
        format!("--max-line-length={max_line}").into(),
        format!("--ignore={ignore}").into(),
    ];
    let spell = Path::new(CODESPELL_DICT).is_file();
    if spell {
        args.push("--codespell".into());
        args.push(format!("--codespellfile={CODESPELL_DICT}").into());
    }
    args.extend(target.iter().map(|t| t.to_os_string()));
    // spdxcheck.py must find the system python with its modules (git, ply).
    let path = std::env::var("PATH").unwrap_or_default();
    let sh = Shell::new()?;
    let _d = sh.push_dir(wt);
    let out = cmd!(sh, "perl {script} {args...}")
        .env("PATH", format!("/usr/bin:{path}"))
        .quiet()
        .ignore_status()
        .output()
        .context("cannot run scripts/checkpatch.pl")?;
    Ok((out, spell))
}

/// checkpatch --strict does not know the TRACE_EVENT() layout: every trace
/// header of the tree (include/trace/events/bridge.h, neigh.h, ...) has these
/// two CHECKs on its `TP_PROTO(`, `TP_STRUCT__entry(` lines.
fn trace_layout(f: &Finding) -> bool {
    let file = f
        .place
        .as_deref()
        .and_then(|p| p.split(':').next())
        .unwrap_or("");
    matches!(f.kind.as_str(), "OPEN_ENDED_LINE" | "PARENTHESIS_ALIGNMENT")
        && (file.starts_with("include/trace/") || file.ends_with("_trace.h"))
}

/// What checkpatch's output means for a cell: errors fail, warnings and checks
/// warn (except the trace headers' TRACE_EVENT() layout, listed as accepted), a
/// failed run without findings fails; one detail line per finding, each starting
/// with `name`.
pub fn judge(name: &str, out: &Output) -> (Status, Vec<String>) {
    let found = parse(&String::from_utf8_lossy(&out.stdout));
    let mut status = Status::Pass;
    let mut details = Vec::new();
    for f in &found {
        if trace_layout(f) {
            continue;
        }
        status = status.max(if f.level == "ERROR" {
            Status::Fail
        } else {
            Status::Warn
        });
        let place = f.place.as_deref().unwrap_or("commit message");
        let note = if f.kind == "UNKNOWN_COMMIT_ID" {
            " (the pinned base is a tarball import without upstream history: check the id in a linux clone)"
        } else {
            ""
        };
        details.push(format!(
            "{name}: {place}: {}:{}: {}{note}",
            f.level, f.kind, f.message
        ));
    }
    let layout = found.iter().filter(|f| trace_layout(f)).count();
    if layout > 0 {
        details.push(format!(
            "{name}: accepted: {layout} CHECK(s) OPEN_ENDED_LINE/PARENTHESIS_ALIGNMENT on the TRACE_EVENT() layout of a trace header"
        ));
    }
    if found.is_empty() && !out.status.success() {
        status = Status::Fail;
        details.push(format!(
            "{name}: checkpatch failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    (status, details)
}

/// checkpatch on one commit: errors fail, warnings and checks warn.
pub fn run(ctx: &Ctx) -> Result<Outcome> {
    let (out, spell) = invoke(
        &ctx.wt,
        80,
        "",
        &[OsStr::new("-g"), OsStr::new(&ctx.commit.id)],
    )?;
    let (status, details) = judge(&ctx.name(), &out);
    let mut o = Outcome::new(Check::Checkpatch, status);
    o.details = details;
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

    #[test]
    fn trace_event_layout_is_accepted_only_in_trace_headers() {
        use std::os::unix::process::ExitStatusExt;
        let out = |text: &str| Output {
            status: std::process::ExitStatus::from_raw(0),
            stdout: text.as_bytes().to_vec(),
            stderr: Vec::new(),
        };
        let trace = "CHECK:OPEN_ENDED_LINE: Lines should not end with a '('\n\
                     #9: FILE: include/trace/events/rdmabond.h:40:\n\n\
                     CHECK:PARENTHESIS_ALIGNMENT: Alignment should match open parenthesis\n\
                     #12: FILE: drivers/infiniband/core/cma_trace.h:72:\n";
        let (st, d) = judge("p1", &out(trace));
        assert_eq!(st, Status::Pass);
        assert!(d[0].contains("accepted: 2 CHECK(s)"));
        let code = "CHECK:OPEN_ENDED_LINE: Lines should not end with a '('\n\
                    #9: FILE: drivers/infiniband/ulp/rdmabond/addr.c:40:\n";
        assert_eq!(judge("p1", &out(code)).0, Status::Warn);
    }
}
