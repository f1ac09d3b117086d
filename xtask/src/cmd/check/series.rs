//! Checks of the series as a whole: patch count, cover letter, subject prefix, merge
//! plan,
//! MAINTAINERS coverage of new files, selftest Makefile and config, YNL specs.

use std::path::Path;

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use super::{Check, Commit, Outcome, Status};
use crate::common::plan;
use crate::common::project::Project;
use crate::common::series::placeholders;

/// The netdev limit.
pub const MAX_PATCHES: usize = 15;

/// What the series checks see: the worktree at the tip of the range.
pub struct SeriesCtx<'a> {
    pub sh: &'a Shell,
    pub project: &'a Project,
    pub wt: &'a Path,
    pub base: &'a str,
    pub tip: &'a str,
    pub commits: &'a [Commit],
    /// True for the series of patches/ (cover letter and send config apply).
    pub is_series: bool,
}

impl SeriesCtx<'_> {
    /// `git diff --name-only --diff-filter=.. base tip`.
    pub fn changed(&self, filter: &str) -> Result<Vec<String>> {
        let _d = self.sh.push_dir(self.wt);
        let (base, tip) = (self.base, self.tip);
        let f = format!("--diff-filter={filter}");
        let out = cmd!(
            self.sh,
            "git diff --no-renames --name-only {f} {base} {tip}"
        )
        .quiet()
        .read()?;
        Ok(out.lines().map(str::to_string).collect())
    }

    /// The first patch (1-based, with its subject) that adds or changes `path`.
    pub fn patch_of(&self, path: &str) -> String {
        let _d = self.sh.push_dir(self.wt);
        for (i, c) in self.commits.iter().enumerate() {
            let (p, id) = (&c.parent, &c.id);
            let touched = cmd!(self.sh, "git diff --quiet {p} {id} -- {path}")
                .quiet()
                .ignore_status()
                .output()
                .map(|o| !o.status.success())
                .unwrap_or(false);
            if touched {
                return format!("patch {}", i + 1);
            }
        }
        "series".to_string()
    }
}

/// Known trees for the subject prefix.
pub const TREES: &[&str] = &["net-next", "net", "rdma-next", "rdma-rc", "for-next"];

/// The subject prefix problems of `prefix` (e.g. `PATCH net-next`).
pub fn prefix_problem(prefix: &str) -> Option<String> {
    let words: Vec<&str> = prefix.split_whitespace().collect();
    if !words.first().is_some_and(|w| *w == "PATCH" || *w == "RFC") {
        return Some(format!(
            "subject prefix `{prefix}` does not start with PATCH or RFC"
        ));
    }
    if !words.iter().any(|w| TREES.contains(w)) {
        return Some(format!(
            "subject prefix `{prefix}` names no tree ({})",
            TREES.join(", ")
        ));
    }
    None
}

/// Entries of a Makefile variable list (`TEST_PROGS := a.sh \` continued lines).
pub fn makefile_list(text: &str, var: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cont = false;
    for line in text.lines() {
        let t = line.split('#').next().unwrap_or_default().trim();
        if cont && t.is_empty() {
            // A comment or blank line ends the list (`# end of TEST_PROGS`).
            cont = false;
            continue;
        }
        let rest = if cont {
            Some(t)
        } else {
            t.strip_prefix(var).map(str::trim_start).and_then(|r| {
                r.strip_prefix(":=")
                    .or_else(|| r.strip_prefix("+="))
                    .or_else(|| r.strip_prefix('='))
            })
        };
        let Some(rest) = rest else { continue };
        cont = rest.ends_with('\\');
        out.extend(
            rest.trim_end_matches('\\')
                .split_whitespace()
                .map(str::to_string),
        );
    }
    out
}

/// Config lines that are out of order: `(line, text)` of the first unsorted one.
pub fn unsorted(lines: &[String]) -> Option<(usize, String)> {
    lines
        .windows(2)
        .position(|w| w[0] > w[1])
        .map(|i| (i + 2, lines[i + 1].clone()))
}

/// Selftest directories the range adds (with a Makefile).
pub fn selftest_dirs(ctx: &SeriesCtx) -> Result<Vec<String>> {
    Ok(crate::common::kbuild::selftest_targets(&ctx.changed("A")?))
}

fn count(ctx: &SeriesCtx) -> Outcome {
    let n = ctx.commits.len();
    if n > MAX_PATCHES {
        Outcome::from_findings(
            Check::Count,
            Status::Fail,
            vec![format!(
                "series: {n} patches, netdev takes at most {MAX_PATCHES}"
            )],
        )
    } else {
        Outcome::new(Check::Count, Status::Pass)
    }
}

fn cover(ctx: &SeriesCtx) -> Outcome {
    if !ctx.is_series {
        return Outcome::skip(Check::Cover, "an arbitrary --range has no cover letter");
    }
    let dir = ctx.project.patches_dir();
    let mut findings = Vec::new();
    let path = dir.join(crate::common::series::COVER_SOURCE);
    match fs_err::read_to_string(&path) {
        Err(_) if ctx.commits.len() >= 3 => findings.push(format!(
            "patches/{}: missing; a series of 3 or more patches needs a cover letter",
            crate::common::series::COVER_SOURCE
        )),
        Err(_) => {}
        Ok(text) => {
            for (line, p) in placeholders(&text) {
                findings.push(format!(
                    "patches/{}:{line}: placeholder `{p}`",
                    crate::common::series::COVER_SOURCE
                ));
            }
        }
    }
    // The cover letters of the other parts of the merge plan (a broken send.conf is
    // the plan cell's to report).
    if let Ok(conf) = crate::common::series::send_conf::SendConfig::load(ctx.project) {
        for part in &conf.parts {
            let Some(name) = part.cover_source(ctx.commits.len()) else {
                continue;
            };
            if name == crate::common::series::COVER_SOURCE {
                continue;
            }
            match fs_err::read_to_string(dir.join(&name)) {
                Err(_) => findings.push(format!(
                    "patches/{name}: missing; [{}] of the merge plan has more than one patch and \
                     names it as its cover letter (subject, blank line, text)",
                    part.tree
                )),
                Ok(text) => {
                    for (line, p) in placeholders(&text) {
                        findings.push(format!("patches/{name}:{line}: placeholder `{p}`"));
                    }
                }
            }
        }
    }
    let changes = dir
        .join(crate::common::series::send_conf::VERSIONS_DIR)
        .join(crate::common::series::send_conf::CHANGES_FILE);
    if let Ok(text) = fs_err::read_to_string(&changes) {
        for (line, p) in placeholders(&text) {
            findings.push(format!(
                "patches/{}/{}:{line}: placeholder `{p}`",
                crate::common::series::send_conf::VERSIONS_DIR,
                crate::common::series::send_conf::CHANGES_FILE
            ));
        }
    }
    Outcome::from_findings(Check::Cover, Status::Fail, findings)
}

fn prefix(ctx: &SeriesCtx) -> Outcome {
    if !ctx.is_series {
        return Outcome::skip(Check::Prefix, "an arbitrary --range has no send config");
    }
    match crate::common::series::send_conf::SendConfig::load(ctx.project) {
        Err(e) => Outcome::from_findings(Check::Prefix, Status::Fail, vec![format!("{e:#}")]),
        Ok(c) => Outcome::from_findings(
            Check::Prefix,
            Status::Fail,
            c.parts
                .iter()
                .filter_map(|p| prefix_problem(&c.prefix(p)))
                .map(|p| {
                    format!(
                        "patches/{}/{}: {p}",
                        crate::common::series::send_conf::VERSIONS_DIR,
                        crate::common::series::send_conf::CONFIG_FILE
                    )
                })
                .collect(),
        ),
    }
}

/// The merge plan of send.conf against the series (every patch in one part, fixes
/// with Fixes:, other subsystems' files acked, the cover letter's merge plan), and
/// the subject prefixes of what `send` wrote (target/series/vN/<tree>/) against it.
/// Written files that no longer match the series are stale: a warning.
fn plan_check(ctx: &SeriesCtx) -> Result<Outcome> {
    if !ctx.is_series {
        return Ok(Outcome::skip(
            Check::Plan,
            "an arbitrary --range has no merge plan",
        ));
    }
    let conf = match crate::common::series::send_conf::SendConfig::load(ctx.project) {
        Ok(c) => c,
        Err(e) => {
            return Ok(Outcome::from_findings(
                Check::Plan,
                Status::Fail,
                vec![format!("{e:#}")],
            ))
        }
    };
    let conf_path = format!(
        "patches/{}/{}",
        crate::common::series::send_conf::VERSIONS_DIR,
        crate::common::series::send_conf::CONFIG_FILE
    );
    let infos = crate::common::git::patch_infos(ctx.sh, ctx.project, ctx.commits)?;
    let cover = fs_err::read_to_string(
        ctx.project
            .patches_dir()
            .join(crate::common::series::COVER_SOURCE),
    )
    .ok();
    let mut fails: Vec<String> = plan::problems(&conf.parts, &infos, cover.as_deref())
        .into_iter()
        .map(|p| format!("{conf_path}: {p}"))
        .collect();
    let mut warns = Vec::new();
    let series_dir = ctx
        .project
        .target_dir()
        .join("series")
        .join(format!("v{}", conf.version));
    for part in &conf.parts {
        let dir = series_dir.join(&part.tree);
        let Ok(files) = crate::common::series::send_conf::patch_files(&dir) else {
            continue;
        };
        let mut written = Vec::new();
        for f in &files {
            let text = fs_err::read_to_string(f)?;
            let name = f.file_name().unwrap().to_string_lossy().to_string();
            written.push((name, plan::mail_subject(&text).unwrap_or_default()));
        }
        let numbers = part.numbers(infos.len());
        let subjects: Vec<String> = numbers
            .iter()
            .filter_map(|i| infos.get(i - 1).map(|p| p.subject.clone()))
            .collect();
        let expected = plan::expected_prefixes(&conf.prefix(part), conf.version, numbers.len());
        let rel = dir.strip_prefix(&ctx.project.root).unwrap_or(&dir);
        let (f, w) =
            plan::subject_problems(&rel.display().to_string(), &written, &expected, &subjects);
        fails.extend(f);
        warns.extend(w);
    }
    Ok(if !fails.is_empty() {
        fails.extend(warns);
        Outcome::from_findings(Check::Plan, Status::Fail, fails)
    } else {
        Outcome::from_findings(Check::Plan, Status::Warn, warns)
    })
}

/// Every added file is covered by a MAINTAINERS section other than THE REST.
fn maintainers(ctx: &SeriesCtx) -> Result<Outcome> {
    let added = ctx.changed("A")?;
    if added.is_empty() {
        return Ok(Outcome::new(Check::Maintainers, Status::NotApplicable));
    }
    let mut findings = Vec::new();
    for f in &added {
        let script = ctx.wt.join("scripts/get_maintainer.pl");
        let _d = ctx.sh.push_dir(ctx.wt);
        let out = cmd!(
            ctx.sh,
            "perl {script} --sections --no-git --no-git-fallback -f {f}"
        )
        .quiet()
        .ignore_status()
        .output()
        .context("cannot run scripts/get_maintainer.pl")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let sections = section_names(&text);
        if sections.iter().all(|s| s == "THE REST") {
            findings.push(format!(
                "{}: {f}: no MAINTAINERS entry covers this new file",
                ctx.patch_of(f)
            ));
        }
    }
    Ok(Outcome::from_findings(
        Check::Maintainers,
        Status::Fail,
        findings,
    ))
}

/// Section titles in `get_maintainer.pl --sections` output: the lines followed by a
/// `X:` field line, that are not field lines themselves.
pub fn section_names(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let field =
        |l: &str| l.len() > 2 && l.as_bytes()[1] == b':' && l.as_bytes()[0].is_ascii_uppercase();
    lines
        .iter()
        .enumerate()
        .filter(|(i, l)| {
            !l.trim().is_empty() && !field(l) && lines.get(i + 1).is_some_and(|n| field(n))
        })
        .map(|(_, l)| l.trim().to_string())
        .collect()
}

/// The selftest Makefile lists every added test, and config/Makefile lists are sorted.
fn selftests(ctx: &SeriesCtx) -> Result<Outcome> {
    let dirs = selftest_dirs(ctx)?;
    let touched: Vec<String> = ctx
        .changed("AM")?
        .into_iter()
        .filter(|f| f.starts_with("tools/testing/selftests/"))
        .collect();
    if dirs.is_empty() && touched.is_empty() {
        return Ok(Outcome::new(Check::SelftestList, Status::NotApplicable));
    }
    let added = ctx.changed("A")?;
    let mut findings = Vec::new();
    for d in &dirs {
        let root = format!("tools/testing/selftests/{d}");
        let mk_path = format!("{root}/Makefile");
        let mk = fs_err::read_to_string(ctx.wt.join(&mk_path)).unwrap_or_default();
        let mut listed = Vec::new();
        for var in [
            "TEST_PROGS",
            "TEST_FILES",
            "TEST_GEN_PROGS",
            "TEST_GEN_FILES",
            "TEST_INCLUDES",
            "TEST_PROGS_EXTENDED",
        ] {
            let list = makefile_list(&mk, var);
            if let Some((line, what)) = unsorted(&list) {
                findings.push(format!(
                    "{}: {mk_path}: {var} is not sorted (entry {line}: {what})",
                    ctx.patch_of(&mk_path)
                ));
            }
            listed.extend(list);
        }
        for f in added.iter().filter(|f| f.starts_with(&format!("{root}/"))) {
            let rel = &f[root.len() + 1..];
            if ["Makefile", "config", "settings"].contains(&rel) || rel.ends_with(".rst") {
                continue;
            }
            let base = Path::new(rel)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string();
            if !listed.iter().any(|l| l == rel || l.ends_with(&base)) && !mk.contains(rel) {
                findings.push(format!(
                    "{}: {f}: not listed in {mk_path} (TEST_PROGS/TEST_FILES)",
                    ctx.patch_of(f)
                ));
            }
        }
        let cfg_path = format!("{root}/config");
        if let Ok(text) = fs_err::read_to_string(ctx.wt.join(&cfg_path)) {
            let lines: Vec<String> = text
                .lines()
                .filter(|l| l.starts_with("CONFIG_"))
                .map(str::to_string)
                .collect();
            if let Some((line, what)) = unsorted(&lines) {
                findings.push(format!(
                    "{}: {cfg_path}: not sorted at entry {line} ({what})",
                    ctx.patch_of(&cfg_path)
                ));
            }
        }
    }
    Ok(Outcome::from_findings(
        Check::SelftestList,
        Status::Fail,
        findings,
    ))
}

/// Every YNL spec the range touches validates against its schema.
fn ynl(ctx: &SeriesCtx) -> Result<Outcome> {
    let specs: Vec<String> = ctx
        .changed("AM")?
        .into_iter()
        .filter(|f| f.starts_with("Documentation/netlink/specs/") && f.ends_with(".yaml"))
        .collect();
    if specs.is_empty() {
        return Ok(Outcome::new(Check::Ynl, Status::NotApplicable));
    }
    let cli = ctx.wt.join("tools/net/ynl/pyynl/cli.py");
    let mut findings = Vec::new();
    for s in &specs {
        let _d = ctx.sh.push_dir(ctx.wt);
        let out = cmd!(ctx.sh, "python3 {cli} --spec {s} --validate")
            .quiet()
            .ignore_status()
            .output()
            .context("cannot run tools/net/ynl/pyynl/cli.py")?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            findings.push(format!(
                "{}: {s}: does not validate: {last}",
                ctx.patch_of(s)
            ));
        }
    }
    Ok(Outcome::from_findings(Check::Ynl, Status::Fail, findings))
}

/// The series checks that need no build.
pub fn run(ctx: &SeriesCtx) -> Result<Vec<Outcome>> {
    Ok(vec![
        count(ctx),
        cover(ctx),
        prefix(ctx),
        plan_check(ctx)?,
        maintainers(ctx)?,
        selftests(ctx)?,
        ynl(ctx)?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(prefix_problem("PATCH net-next"), None);
        assert_eq!(prefix_problem("RFC PATCH rdma-next"), None);
        assert!(prefix_problem("PATCH").unwrap().contains("no tree"));
        assert!(prefix_problem("net-next").unwrap().contains("PATCH"));
    }

    #[test]
    fn makefile_lists_and_sorting() {
        let mk = "TEST_PROGS := \\\n\ttopology.sh \\\n\tfailover.sh \\\n# end of TEST_PROGS\nTEST_FILES := lib.sh rds_util.py\n# x\nTEST_PROGS += z.sh\n";
        assert_eq!(
            makefile_list(mk, "TEST_PROGS"),
            vec!["topology.sh", "failover.sh", "z.sh"]
        );
        assert_eq!(
            makefile_list(mk, "TEST_FILES"),
            vec!["lib.sh", "rds_util.py"]
        );
        let l = makefile_list(mk, "TEST_PROGS");
        assert_eq!(unsorted(&l), Some((2, "failover.sh".to_string())));
        assert_eq!(unsorted(&["a".to_string(), "b".to_string()]), None);
    }

    #[test]
    fn sections() {
        let out = "RDMABOND\nM:\tA <a@b>\nL:\tnetdev@vger.kernel.org\nF:\tdrivers/x/\n\nTHE REST\nM:\tL <l@b>\n";
        assert_eq!(section_names(out), vec!["RDMABOND", "THE REST"]);
    }
}
