//! `cargo xtask send`: writes target/series/vN/<tree>/, one posting per part of the
//! merge plan (patches/versions/send.conf, see [`crate::common::plan`]): the part's patches
//! under the sender's git identity (From:, Signed-off-by:, the MAINTAINERS M: line;
//! see [`crate::common::identity`]), `Cc: stable` for a stable part, the subject prefix, To/Cc
//! from get_maintainer.pl, base-commit, and for a part of more than one patch the
//! cover letter with the changelog and a range-diff against the previous version. It
//! proves that `git am` of each part onto the base reproduces the part's commits and
//! of all parts the branch, and prints one `git send-email` command per part. It sends
//! nothing unless `--send` is given. Versions are tracked in patches/versions/:
//! `send.conf` (version and plan), `changes.txt` (the changelog), and `vN/<tree>/`
//! (the patches of every version that was sent, for the range-diff).

mod iproute2;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::common::git;
use crate::common::git::{checkout, worktree};
use crate::common::identity::{self, Identity};
use crate::common::plan::{self, Part};
use crate::common::project::{Project, WORK_BRANCH};
use crate::common::series;
use crate::common::series::send_conf::{
    patch_files, set_version, SendConfig, CHANGES_FILE, VERSIONS_DIR,
};

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// Record target/series/vN as sent (patches/versions/vN/), bump to vN+1 and add a
    /// "Changes in vN+1" stub to patches/versions/changes.txt.
    #[arg(long)]
    pub new_version: bool,
    /// Run the printed `git send-email` command (it asks before each mail).
    #[arg(long)]
    pub send: bool,
    #[command(flatten)]
    pub iproute2: crate::common::iproute2::Iproute2Arg,
}

/// Adds `Changes in vN` with a placeholder to the top of the changelog.
pub fn changelog_stub(old: &str, version: u32) -> String {
    format!(
        "Changes in v{version}:\n- TODO: what changed since v{}\n\n{}",
        version - 1,
        old.trim_start()
    )
}

/// Splits get_maintainer.pl output into (To, Cc): maintainers go to To, reviewers,
/// lists and the rest to Cc.
pub fn split_recipients(out: &str) -> (Vec<String>, Vec<String>) {
    let mut to = Vec::new();
    let mut cc = Vec::new();
    for line in out.lines().map(str::trim).filter(|l| l.contains('@')) {
        // `Name <a@b> (role: SECTION (MORE))` or `list@vger (open list:...)`: the
        // address ends at the first `>` or, without one, at the first ` (`.
        let end = match line.find('>') {
            Some(i) => i + 1,
            None => line.find(" (").unwrap_or(line.len()),
        };
        let (addr, role) = line.split_at(end);
        let role = role.trim().trim_start_matches('(');
        let addr = addr.trim().to_string();
        let list = if role.starts_with("maintainer") {
            &mut to
        } else {
            &mut cc
        };
        if !list.contains(&addr) {
            list.push(addr);
        }
    }
    cc.retain(|a| !to.contains(a));
    (to, cc)
}

/// Inserts To:/Cc: headers at the end of a mail's header block.
pub fn add_recipients(mail: &str, to: &[String], cc: &[String]) -> String {
    let Some(end) = mail.find("\n\n") else {
        return mail.to_string();
    };
    let mut headers = String::new();
    for (name, list) in [("To", to), ("Cc", cc)] {
        if !list.is_empty() {
            headers.push_str(&format!("\n{name}: {}", list.join(",\n ")));
        }
    }
    format!("{}{}{}", &mail[..end], headers, &mail[end..])
}

/// The `Date:` of a mail, when it has one.
fn mail_date(mail: &str) -> Option<&str> {
    mail.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix("Date: "))
}

/// The identity the series is sent under: GIT_AUTHOR_NAME/GIT_AUTHOR_EMAIL when
/// set (as git itself takes them), else `git config user.name/user.email` in the
/// kernel tree (its own config, then the global one). Refuses a missing or
/// placeholder identity with the cause and the fix on one line.
pub fn sender(sh: &Shell, project: &Project) -> Result<Identity> {
    let _d = sh.push_dir(&project.tree);
    let config = |key: &str| {
        cmd!(sh, "git config {key}")
            .quiet()
            .ignore_status()
            .ignore_stderr()
            .read()
            .ok()
            .filter(|v| !v.trim().is_empty())
    };
    let local = |key: &str| {
        cmd!(sh, "git config --local {key}")
            .quiet()
            .ignore_status()
            .ignore_stderr()
            .read()
            .is_ok_and(|v| !v.trim().is_empty())
    };
    let env = |key: &str| std::env::var(key).ok().filter(|v| !v.trim().is_empty());
    let name = env("GIT_AUTHOR_NAME").or_else(|| config("user.name"));
    let email = env("GIT_AUTHOR_EMAIL").or_else(|| config("user.email"));
    identity::validate(name.as_deref(), email.as_deref()).map_err(|cause| {
        let local = local("user.name") || local("user.email");
        anyhow::anyhow!(identity::refusal(
            &cause,
            &project.tree.display().to_string(),
            local
        ))
    })
}

/// One part of the plan, written.
struct Written {
    tree: String,
    dir: PathBuf,
    files: Vec<PathBuf>,
    to: Vec<String>,
    cc: Vec<String>,
    prefix: String,
}

/// The pinned format-patch settings a developer's git config could change.
const FORMAT_PATCH_PINS: [&str; 10] = [
    "-c",
    "format.signOff=false",
    "-c",
    "format.coverLetter=false",
    "-c",
    "diff.noprefix=false",
    "-c",
    "diff.mnemonicPrefix=false",
    "-c",
    "core.abbrev=12",
];

impl SendArgs {
    pub fn run(self, sh: &Shell, project: &Project) -> Result<()> {
        let versions = project.patches_dir().join(VERSIONS_DIR);
        let conf = SendConfig::load(project)?;
        if self.new_version {
            return bump(project, &versions, &conf);
        }
        let me = sender(sh, project)?;
        eprintln!(
            "send: the series goes out as {} (From:, Signed-off-by:, MAINTAINERS M:)",
            me.mailbox()
        );
        let base = git::base(sh, project)?;
        let tip = git::work_tip(sh, project)?
            .with_context(|| format!("no branch {WORK_BRANCH}: run `cargo xtask apply`"))?;
        let commits = git::commits(sh, project, &format!("{base}..{tip}"))?;
        let n_patches = commits.len();
        // The plan must cover the series before anything is written.
        let infos = git::patch_infos(sh, project, &commits)?;
        let problems = plan::problems(&conf.parts, &infos, None);
        if !problems.is_empty() {
            bail!(
                "the merge plan in {} does not fit the series:\n  {}",
                SendConfig::path(project).display(),
                problems.join("\n  ")
            );
        }
        let n = conf.version;
        let out = project.target_dir().join("series").join(format!("v{n}"));
        let _ = fs_err::remove_dir_all(&out);
        fs_err::create_dir_all(&out)?;
        let wt = worktree(sh, project, "send")?;
        let scratch = project.target_dir().join("send");

        // The neutral series, one mail per commit.
        let neutral_dir = scratch.join("neutral");
        let _ = fs_err::remove_dir_all(&neutral_dir);
        {
            let _d = sh.push_dir(&wt);
            let range = format!("{base}..{tip}");
            cmd!(
                sh,
                "git {FORMAT_PATCH_PINS...} format-patch --quiet --no-to --no-cc --no-signature --no-numbered
                 --no-cover-letter --output-directory {neutral_dir} {range}"
            )
            .quiet()
            .run()
            .context("git format-patch of the series failed")?;
        }
        let neutral = patch_files(&neutral_dir)?;
        if neutral.len() != n_patches {
            bail!(
                "format-patch wrote {} files for {n_patches} commits in {}",
                neutral.len(),
                neutral_dir.display()
            );
        }

        let mut written = Vec::new();
        for part in &conf.parts {
            written.push(self.write_part(
                sh, project, &conf, part, &me, &wt, &base, &neutral, &out, &versions,
            )?);
        }

        // Proof: the parts, applied in order onto the base, give the branch's tree
        // with only the MAINTAINERS M: line the sender's.
        let all: Vec<PathBuf> = written.iter().flat_map(|w| w.files.clone()).collect();
        let got = am(sh, &wt, &base, &all, &me).context(
            "the parts do not apply one after the other onto the base: see git's error above",
        )?;
        prove_same_as_branch(sh, &wt, &tip, &got, &me)?;
        eprintln!(
            "send: verified: git am of {} onto {} reproduces the tree of {WORK_BRANCH}, MAINTAINERS' M: line aside",
            written
                .iter()
                .map(|w| w.tree.as_str())
                .collect::<Vec<_>>()
                .join(" then "),
            project.base
        );

        // Nothing that names a placeholder address may go out.
        let mut bad = Vec::new();
        for f in &all {
            let text = fs_err::read_to_string(f)?;
            for (line, addr) in identity::placeholder_addresses(&text) {
                bad.push(format!("{}:{line}: {addr}", f.display()));
            }
        }
        if !bad.is_empty() {
            bail!(
                "placeholder addresses would be sent (replace them in the series, or teach \
                 identity::rewrite about them):\n  {}",
                bad.join("\n  ")
            );
        }

        for w in &written {
            let rel = w.dir.strip_prefix(&project.root).unwrap_or(&w.dir);
            println!(
                "wrote {} ({} file{}, v{n}, [{}])",
                rel.display(),
                w.files.len(),
                if w.files.len() == 1 { "" } else { "s" },
                w.prefix
            );
            println!("  To: {}", w.to.join(", "));
            println!("  Cc: {}", w.cc.join(", "));
            println!(
                "  send with: git send-email --confirm=always --suppress-cc=self {}/*.patch",
                rel.display()
            );
        }
        iproute2::send(sh, project, &out, &self.iproute2, &me)?;
        if !self.send {
            println!("after sending: cargo xtask send --new-version (records v{n} in patches/{VERSIONS_DIR}/)");
            return Ok(());
        }
        for w in &written {
            let status = std::process::Command::new("git")
                .args(["send-email", "--confirm=always", "--suppress-cc=self"])
                .args(&w.files)
                .current_dir(&project.root)
                .status()
                .context("cannot run git send-email")?;
            if !status.success() {
                bail!("git send-email of {} failed", w.dir.display());
            }
        }
        Ok(())
    }

    /// Writes one part of the plan into `out/<tree>/`: its patches rewritten to the
    /// sender (and `Cc: stable` for a stable part), applied alone onto the base,
    /// formatted with the part's subject prefix, recipients and (for more than one
    /// patch) the cover letter; proved by `git am` of what was written.
    #[allow(clippy::too_many_arguments)]
    fn write_part(
        &self,
        sh: &Shell,
        project: &Project,
        conf: &SendConfig,
        part: &Part,
        me: &Identity,
        wt: &Path,
        base: &str,
        neutral: &[PathBuf],
        out: &Path,
        versions: &Path,
    ) -> Result<Written> {
        let numbers = part.numbers(neutral.len());
        let k = numbers.len();
        let n = conf.version;
        let src = project
            .target_dir()
            .join("send")
            .join(format!("{}-src", part.tree));
        let _ = fs_err::remove_dir_all(&src);
        fs_err::create_dir_all(&src)?;
        let mut sources = Vec::new();
        for &i in &numbers {
            let from = &neutral[i - 1];
            let mut text = identity::rewrite(
                &fs_err::read_to_string(from)
                    .with_context(|| format!("cannot read {}", from.display()))?,
                &Identity::neutral(),
                me,
            );
            if part.stable {
                text = identity::add_trailer(&text, plan::STABLE_CC);
            }
            let dst = src.join(from.file_name().unwrap());
            fs_err::write(&dst, text)?;
            sources.push(dst);
        }
        let part_tip = am(sh, wt, base, &sources, me).with_context(|| {
            format!(
                "[{}] (patches {numbers:?}) does not apply onto the base on its own: each part of the \
                 merge plan goes to its tree alone; move the patch it needs into it",
                part.tree
            )
        })?;

        // The previous version of this part, for the range-diff.
        let mut range_diff = Vec::new();
        if n > 1 {
            let prev = versions.join(format!("v{}", n - 1)).join(&part.tree);
            if prev.is_dir() {
                let tip_prev = am(sh, wt, base, &patch_files(&prev)?, me)
                    .with_context(|| format!("cannot apply {} onto the base", prev.display()))?;
                range_diff.push(format!("--range-diff={base}..{tip_prev}"));
            } else {
                eprintln!(
                    "send: no {}: [{}] gets no range-diff",
                    prev.display(),
                    part.tree
                );
            }
        }

        let dir = out.join(&part.tree);
        let prefix = conf.prefix(part);
        let prefix_arg = format!("--subject-prefix={prefix}");
        let reroll: Vec<String> = if n > 1 {
            vec![format!("--reroll-count={n}")]
        } else {
            Vec::new()
        };
        let shape: &[&str] = if k > 1 {
            &["--numbered", "--cover-letter"]
        } else {
            &["--no-numbered", "--no-cover-letter"]
        };
        let base_arg = format!("--base={base}");
        let range = format!("{base}..{part_tip}");
        {
            let _d = sh.push_dir(wt);
            // The cover letter's From: is the committer's identity.
            cmd!(
                sh,
                "git {FORMAT_PATCH_PINS...} format-patch --quiet --no-to --no-cc --no-signature {shape...}
                 {base_arg} {prefix_arg} {reroll...} {range_diff...} --output-directory {dir} {range}"
            )
            .env("GIT_COMMITTER_NAME", &me.name)
            .env("GIT_COMMITTER_EMAIL", &me.email)
            .quiet()
            .run()
            .with_context(|| format!("git format-patch of [{}] failed", part.tree))?;
        }
        let files = patch_files(&dir)?;
        let (cover, patches) = if k > 1 {
            let (c, p) = files.split_first().context("format-patch wrote no files")?;
            (Some(c.clone()), p.to_vec())
        } else {
            (None, files.clone())
        };

        // Recipients per patch, from the tree at the part's tip (the series edits
        // MAINTAINERS).
        checkout(sh, wt, &part_tip)?;
        let mut all_to: Vec<String> = Vec::new();
        let mut all_cc: Vec<String> = Vec::new();
        for p in &patches {
            let script = wt.join("scripts/get_maintainer.pl");
            let gm = {
                let _d = sh.push_dir(wt);
                cmd!(sh, "perl {script} --no-git --no-git-fallback {p}")
                    .quiet()
                    .ignore_status()
                    .output()
                    .context("cannot run scripts/get_maintainer.pl")?
            };
            let (to, cc) = split_recipients(&String::from_utf8_lossy(&gm.stdout));
            let text = fs_err::read_to_string(p)?;
            fs_err::write(p, add_recipients(&text, &to, &cc))?;
            for a in to {
                if !all_to.contains(&a) {
                    all_to.push(a);
                }
            }
            for a in cc {
                if !all_cc.contains(&a) {
                    all_cc.push(a);
                }
            }
        }
        all_cc.retain(|a| !all_to.contains(a));

        // The cover letter: subject and text from patches/, then the changelog.
        if let Some(cover) = &cover {
            let name = part
                .cover_source(neutral.len())
                .context("a part of several patches has a cover letter source")?;
            let src =
                fs_err::read_to_string(project.patches_dir().join(&name)).with_context(|| {
                    format!(
                        "patches/{name} is missing: the cover letter of [{}]",
                        part.tree
                    )
                })?;
            let (subject, mut body) = series::parse_cover(&src)?;
            let changes = fs_err::read_to_string(versions.join(CHANGES_FILE)).unwrap_or_default();
            if !changes.trim().is_empty() {
                body.push_str("\n\n");
                body.push_str(changes.trim_end());
            } else if n > 1 {
                bail!(
                    "v{n} needs a changelog: write `Changes in v{n}:` into patches/{VERSIONS_DIR}/{CHANGES_FILE}"
                );
            }
            let generated = fs_err::read_to_string(cover)?;
            let date = mail_date(&generated).unwrap_or_default().to_string();
            let filled = series::fill_cover(&generated, &subject, &body, &date);
            fs_err::write(cover, add_recipients(&filled, &all_to, &all_cc))?;
        }
        if let Some(cover) = &cover {
            let text = fs_err::read_to_string(cover)?;
            if let Some((line, p)) = series::placeholders(&text).first() {
                bail!(
                    "{}:{line}: placeholder `{p}` in the cover letter",
                    cover.display()
                );
            }
        }

        // Proof: git am of the written files onto the base gives the part's tree.
        let got = am(sh, wt, base, &files, me)?;
        let (got_tree, want_tree) = (tree_id(sh, wt, &got)?, tree_id(sh, wt, &part_tip)?);
        if got_tree != want_tree {
            bail!(
                "git am of {} onto the base gives tree {got_tree}, the part's commits have {want_tree}",
                dir.display()
            );
        }
        eprintln!(
            "send: verified: git am of {} ({k} patch{}) onto the base reproduces its commits' tree ({want_tree})",
            dir.display(),
            if k == 1 { "" } else { "es" }
        );
        for (who, list) in &part.acks {
            let local: Vec<String> = list
                .iter()
                .filter_map(|i| numbers.iter().position(|x| x == i))
                .map(|p| (p + 1).to_string())
                .collect();
            eprintln!(
                "send: [{}]: {who} acks patches {} of this posting (series patches {list:?}); the cover letter says how",
                part.tree,
                local.join(", ")
            );
        }
        Ok(Written {
            tree: part.tree.clone(),
            dir,
            files,
            to: all_to,
            cc: all_cc,
            prefix,
        })
    }
}

/// `rev^{tree}`.
fn tree_id(sh: &Shell, wt: &Path, rev: &str) -> Result<String> {
    let _d = sh.push_dir(wt);
    let spec = format!("{rev}^{{tree}}");
    Ok(cmd!(sh, "git rev-parse {spec}").quiet().read()?)
}

/// The sent series (`got`) has the branch's tree but for MAINTAINERS, whose neutral
/// `M:` line is the sender's.
fn prove_same_as_branch(sh: &Shell, wt: &Path, tip: &str, got: &str, me: &Identity) -> Result<()> {
    let _d = sh.push_dir(wt);
    let names = cmd!(sh, "git diff --name-only {tip} {got}")
        .quiet()
        .read()?;
    let names: Vec<&str> = names.lines().collect();
    if names.iter().any(|n| *n != "MAINTAINERS") {
        bail!(
            "the written series differs from {WORK_BRANCH} in {}: only MAINTAINERS' M: line may",
            names.join(", ")
        );
    }
    if !names.is_empty() {
        let (a, b) = (format!("{tip}:MAINTAINERS"), format!("{got}:MAINTAINERS"));
        let want = identity::rewrite_maintainers(
            &cmd!(sh, "git show {a}").quiet().read()?,
            &Identity::neutral(),
            me,
        );
        if cmd!(sh, "git show {b}").quiet().read()? != want {
            bail!("the written series' MAINTAINERS differs from {WORK_BRANCH}'s by more than the M: line");
        }
    }
    Ok(())
}

/// Records the generated vN as sent and moves on to vN+1.
fn bump(project: &Project, versions: &Path, conf: &SendConfig) -> Result<()> {
    let n = conf.version;
    let sent = project.target_dir().join("series").join(format!("v{n}"));
    let keep = versions.join(format!("v{n}"));
    let mut copied = 0;
    for part in &conf.parts {
        let dir = sent.join(&part.tree);
        let files = patch_files(&dir)
            .ok()
            .filter(|f| !f.is_empty())
            .with_context(|| {
                format!(
                    "no {}: run `cargo xtask send` for v{n} first",
                    dir.display()
                )
            })?;
        fs_err::create_dir_all(keep.join(&part.tree))?;
        for f in &files {
            fs_err::copy(f, keep.join(&part.tree).join(f.file_name().unwrap()))?;
            copied += 1;
        }
    }
    let path = SendConfig::path(project);
    let text =
        fs_err::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    crate::common::util::write_atomic(&path, set_version(&text, n + 1).as_bytes())?;
    let changes = versions.join(CHANGES_FILE);
    let old = fs_err::read_to_string(&changes).unwrap_or_default();
    crate::common::util::write_atomic(&changes, changelog_stub(&old, n + 1).as_bytes())?;
    println!(
        "recorded v{n} ({copied} files) in {}; next is v{}: describe the changes in {} (check fails while it says TODO), then commit patches/{VERSIONS_DIR}",
        keep.display(),
        n + 1,
        changes.display()
    );
    Ok(())
}

/// `git am` of patch files (cover letters are skipped) onto `base` in the worktree,
/// committed as `me`; returns the resulting commit.
pub fn am(sh: &Shell, wt: &Path, base: &str, files: &[PathBuf], me: &Identity) -> Result<String> {
    checkout(sh, wt, base)?;
    let _d = sh.push_dir(wt);
    let files: Vec<&PathBuf> = files
        .iter()
        .filter(|f| {
            !f.file_name()
                .is_some_and(|n| n.to_string_lossy().contains("0000-cover-letter"))
        })
        .collect();
    let r = cmd!(
        sh,
        "git am --quiet --committer-date-is-author-date {files...}"
    )
    .env("GIT_COMMITTER_NAME", &me.name)
    .env("GIT_COMMITTER_EMAIL", &me.email)
    .quiet()
    .run();
    if let Err(e) = r {
        let _ = cmd!(sh, "git am --abort").quiet().ignore_status().run();
        return Err(e).context("git am failed");
    }
    Ok(cmd!(sh, "git rev-parse HEAD").quiet().read()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changelog() {
        let s = changelog_stub("Changes in v2:\n- a\n", 3);
        assert!(s.starts_with("Changes in v3:\n- TODO: what changed since v2\n\nChanges in v2:"));
    }

    #[test]
    fn recipients() {
        let out = "Jason G <jgg@z.ca> (maintainer:INFINIBAND SUBSYSTEM)\n\
                   R <r@x.org> (reviewer:NET)\n\
                   linux-rdma@vger.kernel.org (open list:INFINIBAND SUBSYSTEM)\n\
                   A <a@x.org> (maintainer:RDMABOND (RDMA IP FAILOVER GROUPS))\n\
                   Jason G <jgg@z.ca> (maintainer:OTHER)\n";
        let (to, cc) = split_recipients(out);
        assert_eq!(to, vec!["Jason G <jgg@z.ca>", "A <a@x.org>"]);
        assert_eq!(cc, vec!["R <r@x.org>", "linux-rdma@vger.kernel.org"]);
        let mail = "From x\nSubject: [PATCH 1/2] a\n\nbody\n\nmore\n";
        let to = &to[..1];
        let m = add_recipients(mail, to, &cc);
        assert_eq!(
            m,
            "From x\nSubject: [PATCH 1/2] a\nTo: Jason G <jgg@z.ca>\nCc: R <r@x.org>,\n linux-rdma@vger.kernel.org\n\nbody\n\nmore\n"
        );
        assert_eq!(mail_date("Date: Tue\nX: y\n\nDate: no\n"), Some("Tue"));
    }
}
