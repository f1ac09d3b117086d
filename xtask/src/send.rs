//! `cargo xtask send`: writes target/series/vN/ (cover letter and patches with the
//! subject prefix, To/Cc from get_maintainer.pl, base-commit, the changelog and a
//! range-diff against the previous version), proves that `git am` of the files onto
//! the base reproduces the branch, and prints the `git send-email` command. It sends
//! nothing unless `--send` is given. Versions are tracked in patches/versions/:
//! `send.conf` (tree and version), `changes.txt` (the changelog), and `vN/` (the
//! patches of every version that was sent, for the range-diff).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::check::{checkout, worktree};
use crate::project::{Project, WORK_BRANCH};
use crate::series;
use crate::tree;

/// patches/versions/.
pub const VERSIONS_DIR: &str = "versions";
/// patches/versions/send.conf.
pub const CONFIG_FILE: &str = "send.conf";
/// patches/versions/changes.txt.
pub const CHANGES_FILE: &str = "changes.txt";

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
    pub iproute2: crate::iproute2::Iproute2Arg,
}

/// patches/versions/send.conf: `key = value` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendConfig {
    /// Tree the series targets (net-next, rdma-next, ...).
    pub tree: String,
    /// Version of the next posting.
    pub version: u32,
    /// Extra prefix word before PATCH (e.g. RFC), may be empty.
    pub rfc: bool,
}

impl SendConfig {
    pub fn parse(text: &str) -> Result<SendConfig> {
        let mut tree = None;
        let mut version = 1;
        let mut rfc = false;
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .with_context(|| format!("line {}: expected `key = value`", n + 1))?;
            let v = v.trim().trim_matches('"');
            match k.trim() {
                "tree" => tree = Some(v.to_string()),
                "version" => {
                    version = v
                        .parse()
                        .ok()
                        .filter(|v| *v >= 1)
                        .with_context(|| format!("line {}: version must be 1 or more", n + 1))?
                }
                "rfc" => rfc = v == "true",
                other => bail!("line {}: unknown key `{other}` (tree, version, rfc)", n + 1),
            }
        }
        Ok(SendConfig {
            tree: tree.context("no `tree = ...` line (e.g. tree = net-next)")?,
            version,
            rfc,
        })
    }

    pub fn render(&self) -> String {
        format!(
            "# cargo xtask send: the tree the series targets and the version of its next\n\
             # posting (`cargo xtask send --new-version` bumps it after a posting).\n\
             tree = {}\nversion = {}\nrfc = {}\n",
            self.tree, self.version, self.rfc
        )
    }

    pub fn path(project: &Project) -> PathBuf {
        project.patches_dir().join(VERSIONS_DIR).join(CONFIG_FILE)
    }

    pub fn load(project: &Project) -> Result<SendConfig> {
        let path = Self::path(project);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {}: create it with `tree = net-next` and `version = 1`",
                path.display()
            )
        })?;
        Self::parse(&text).with_context(|| format!("invalid {}", path.display()))
    }

    /// `PATCH net-next` (format-patch adds `vN`).
    pub fn prefix(&self) -> String {
        let rfc = if self.rfc { "RFC " } else { "" };
        format!("{rfc}PATCH {}", self.tree)
    }
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

impl SendArgs {
    pub fn run(self, sh: &Shell, project: &Project) -> Result<()> {
        let versions = project.patches_dir().join(VERSIONS_DIR);
        let mut conf = SendConfig::load(project)?;
        if self.new_version {
            return bump(project, &versions, &mut conf);
        }
        let base = tree::base(sh, project)?;
        let tip = tree::work_tip(sh, project)?
            .with_context(|| format!("no branch {WORK_BRANCH}: run `cargo xtask apply`"))?;
        let n = conf.version;
        let out = project.target_dir().join("series").join(format!("v{n}"));
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out)?;
        let wt = worktree(sh, project, "send")?;

        // The previous version, applied in the worktree, for the range-diff.
        let mut range_diff = None;
        if n > 1 {
            let prev = versions.join(format!("v{}", n - 1));
            if prev.is_dir() {
                let tip_prev = am(sh, &wt, &base, &patch_files(&prev)?)
                    .with_context(|| format!("cannot apply {} onto the base", prev.display()))?;
                range_diff = Some(format!("--range-diff={base}..{tip_prev}"));
            } else {
                eprintln!(
                    "send: no {} (the v{} patches): no range-diff",
                    prev.display(),
                    n - 1
                );
            }
        }

        let prefix = format!("--subject-prefix={}", conf.prefix());
        let reroll: Vec<String> = if n > 1 {
            vec![format!("--reroll-count={n}")]
        } else {
            Vec::new()
        };
        let base_arg = format!("--base={base}");
        let range = format!("{base}..{tip}");
        {
            let _d = sh.push_dir(&project.tree);
            cmd!(
                sh,
                "git -c format.signOff=false -c format.coverLetter=false -c diff.noprefix=false -c diff.mnemonicPrefix=false -c core.abbrev=12
                 format-patch --quiet --no-to --no-cc --no-signature --cover-letter --numbered {base_arg} {prefix}
                 {reroll...} {range_diff...} --output-directory {out} {range}"
            )
            .quiet()
            .run()
            .context("git format-patch failed")?;
        }
        let files = patch_files(&out)?;
        let (cover, patches) = files.split_first().context("format-patch wrote no files")?;

        // Recipients per patch, from the tree at the tip (the series edits MAINTAINERS).
        checkout(sh, &wt, &tip)?;
        let mut all_to: Vec<String> = Vec::new();
        let mut all_cc: Vec<String> = Vec::new();
        for p in patches {
            let out = std::process::Command::new("perl")
                .arg(wt.join("scripts/get_maintainer.pl"))
                .args(["--no-git", "--no-git-fallback"])
                .arg(p)
                .current_dir(&wt)
                .output()
                .context("cannot run scripts/get_maintainer.pl")?;
            let (to, cc) = split_recipients(&String::from_utf8_lossy(&out.stdout));
            let text = std::fs::read_to_string(p)?;
            std::fs::write(p, add_recipients(&text, &to, &cc))?;
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
        let src = std::fs::read_to_string(project.patches_dir().join(series::COVER_SOURCE))
            .context("patches/cover-letter.txt is missing")?;
        let (subject, mut body) = series::parse_cover(&src)?;
        let changes = std::fs::read_to_string(versions.join(CHANGES_FILE)).unwrap_or_default();
        if !changes.trim().is_empty() {
            body.push_str("\n\n");
            body.push_str(changes.trim_end());
        } else if n > 1 {
            bail!(
                "v{n} needs a changelog: write `Changes in v{n}:` into patches/{VERSIONS_DIR}/{CHANGES_FILE}"
            );
        }
        let generated = std::fs::read_to_string(cover)?;
        let date = mail_date(&generated).unwrap_or_default().to_string();
        let filled = series::fill_cover(&generated, &subject, &body, &date);
        std::fs::write(cover, add_recipients(&filled, &all_to, &all_cc))?;
        if let Some((line, p)) =
            crate::check::placeholders(&std::fs::read_to_string(cover)?).first()
        {
            bail!(
                "{}:{line}: placeholder `{p}` in the cover letter",
                cover.display()
            );
        }

        // Proof: git am of the files onto the base gives the branch's tree.
        let got = am(sh, &wt, &base, patches)?;
        let (got_tree, want_tree) = {
            let _d = sh.push_dir(&wt);
            let a = format!("{got}^{{tree}}");
            let b = format!("{tip}^{{tree}}");
            (
                cmd!(sh, "git rev-parse {a}").quiet().read()?,
                cmd!(sh, "git rev-parse {b}").quiet().read()?,
            )
        };
        if got_tree != want_tree {
            bail!(
                "git am of {} onto the base gives tree {got_tree}, the branch has {want_tree}",
                out.display()
            );
        }
        eprintln!(
            "send: verified: git am of the {} patches onto {} reproduces the tree of {WORK_BRANCH} ({want_tree})",
            patches.len(),
            project.base
        );
        println!(
            "wrote {} ({} files, v{n}, [{}])",
            out.display(),
            files.len(),
            conf.prefix()
        );
        println!("To: {}", all_to.join(", "));
        println!("Cc: {}", all_cc.join(", "));
        let rel = out.strip_prefix(&project.root).unwrap_or(&out);
        let command = format!(
            "git send-email --confirm=always --suppress-cc=self {}/*.patch",
            rel.display()
        );
        println!("send with:\n  {command}");
        if n >= 1 && !self.send {
            println!("after sending: cargo xtask send --new-version (records v{n} in patches/{VERSIONS_DIR}/)");
        }
        if self.send {
            let mut args: Vec<PathBuf> = files.clone();
            args.sort();
            let status = std::process::Command::new("git")
                .args(["send-email", "--confirm=always", "--suppress-cc=self"])
                .args(&args)
                .current_dir(&project.root)
                .status()
                .context("cannot run git send-email")?;
            if !status.success() {
                bail!("git send-email failed");
            }
        }
        crate::iproute2::send(sh, project, &out, &self.iproute2)?;
        Ok(())
    }
}

/// Records the generated vN as sent and moves on to vN+1.
fn bump(project: &Project, versions: &Path, conf: &mut SendConfig) -> Result<()> {
    let n = conf.version;
    let sent = project.target_dir().join("series").join(format!("v{n}"));
    let files = patch_files(&sent)
        .ok()
        .filter(|f| !f.is_empty())
        .with_context(|| {
            format!(
                "no {}: run `cargo xtask send` for v{n} first",
                sent.display()
            )
        })?;
    let keep = versions.join(format!("v{n}"));
    std::fs::create_dir_all(&keep)?;
    for f in &files {
        let name = f.file_name().unwrap();
        std::fs::copy(f, keep.join(name))?;
    }
    conf.version = n + 1;
    crate::util::write_atomic(&SendConfig::path(project), conf.render().as_bytes())?;
    let changes = versions.join(CHANGES_FILE);
    let old = std::fs::read_to_string(&changes).unwrap_or_default();
    crate::util::write_atomic(&changes, changelog_stub(&old, n + 1).as_bytes())?;
    println!(
        "recorded v{n} in {}; next is v{}: describe the changes in {} (check fails while it says TODO), then commit patches/{VERSIONS_DIR}",
        keep.display(),
        n + 1,
        changes.display()
    );
    Ok(())
}

/// The .patch files of a directory in order (the cover letter, numbered 0000, first).
pub fn patch_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "patch"))
        .collect();
    v.sort();
    Ok(v)
}

/// `git am` of patch files (cover letters are skipped) onto `base` in the worktree;
/// returns the resulting commit.
pub fn am(sh: &Shell, wt: &Path, base: &str, files: &[PathBuf]) -> Result<String> {
    checkout(sh, wt, base)?;
    let _d = sh.push_dir(wt);
    let files: Vec<&PathBuf> = files
        .iter()
        .filter(|f| {
            !f.file_name()
                .is_some_and(|n| n.to_string_lossy().contains("0000-cover-letter"))
        })
        .collect();
    let r = cmd!(sh, "git -c user.name=xtask -c user.email=xtask@localhost am --quiet --committer-date-is-author-date {files...}")
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
    fn config_round_trip() {
        let c = SendConfig::parse("# x\ntree = net-next\nversion = 2\n").unwrap();
        assert_eq!(c.version, 2);
        assert_eq!(c.prefix(), "PATCH net-next");
        assert_eq!(SendConfig::parse(&c.render()).unwrap(), c);
        assert!(SendConfig::parse("version = 1\n").is_err());
        assert!(SendConfig::parse("tree = x\nversion = 0\n").is_err());
        assert!(SendConfig::parse("tree = x\ncolour = red\n").is_err());
        let rfc = SendConfig::parse("tree = rdma-next\nrfc = true\n").unwrap();
        assert_eq!(rfc.prefix(), "RFC PATCH rdma-next");
    }

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
