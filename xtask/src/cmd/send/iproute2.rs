//! `cargo xtask send` of the iproute2 series (patches/iproute2/, see
//! [`crate::common::iproute2`]): its own prefix, version and recipients.

use std::path::Path;

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::common::identity::{self, Identity};
use crate::common::iproute2::{
    detach_at, files, no_checkout_reason, patches, prepare, touched, Iproute2Arg, DIR, SEND_CONF,
};
use crate::common::plan::{Part, Patches};
use crate::common::project::Project;
use crate::common::series::send_conf::SendConfig;

/// Recipients from iproute2's MAINTAINERS (`Title` lines, then `M:`/`L:`/`F:`
/// lines, sections separated by blank lines): To is the maintainer of the "Next
/// Tree"; Cc its list and the maintainers and lists of every section with a file
/// the series touches.
pub fn recipients(maintainers: &str, files: &[String]) -> (Vec<String>, Vec<String>) {
    let mut to = Vec::new();
    let mut cc = Vec::new();
    for section in maintainers.split("\n\n") {
        let mut lines = section.lines().filter(|l| !l.trim().is_empty());
        let Some(title) = lines.next() else { continue };
        let mut people = Vec::new();
        let mut lists = Vec::new();
        let mut hit = false;
        for l in lines {
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            let v = v.trim();
            match k.trim() {
                "M" => people.push(v.to_string()),
                "L" => lists.push(v.split(" (").next().unwrap_or(v).to_string()),
                "F" => hit |= files.iter().any(|f| file_matches(v, f)),
                _ => {}
            }
        }
        if title.trim() == "Next Tree" {
            to.extend(people);
            cc.extend(lists);
        } else if hit {
            cc.extend(people);
            cc.extend(lists);
        }
    }
    let mut seen = Vec::new();
    cc.retain(|a| {
        !to.contains(a) && !seen.contains(a) && {
            seen.push(a.clone());
            true
        }
    });
    (to, cc)
}

/// MAINTAINERS `F:` patterns: `dir/` (everything below), `dir/*` and `x*` (a
/// prefix, no further directory), or a path.
fn file_matches(pattern: &str, file: &str) -> bool {
    if let Some(dir) = pattern.strip_suffix('/') {
        return file.starts_with(&format!("{dir}/"));
    }
    if let Some(prefix) = pattern.strip_suffix('*') {
        return file
            .strip_prefix(prefix)
            .is_some_and(|rest| !rest.contains('/'));
    }
    pattern == file
}

/// Rewrites the `[PATCH iproute2-next N/M]` of the first subject to
/// `[PREFIX vN N/M]` (no `vN` for version 1).
pub fn retitle(mail: &str, prefix: &str, version: u32) -> String {
    let mut done = false;
    mail.split_inclusive('\n')
        .map(|line| {
            let parts = line
                .strip_prefix("Subject: [")
                .and_then(|rest| rest.split_once("] ").or_else(|| rest.split_once(']')));
            let Some((inside, subject)) = parts.filter(|_| !done) else {
                return line.to_string();
            };
            done = true;
            let num = inside
                .rsplit_once(' ')
                .map(|(_, n)| n)
                .filter(|n| n.contains('/'))
                .map(|n| format!(" {n}"))
                .unwrap_or_default();
            let v = if version > 1 {
                format!(" v{version}")
            } else {
                String::new()
            };
            format!("Subject: [{prefix}{v}{num}] {subject}")
        })
        .collect()
}

/// A `git diff --unified=0` of MAINTAINERS that changes nothing but the neutral
/// identity's `M: ` lines into `me`'s.
pub fn maintainers_diff_is_identity(diff: &str, me: &Identity) -> bool {
    let neutral = format!("M: {}", Identity::neutral().mailbox());
    let mine = format!("M: {}", me.mailbox());
    diff.lines()
        .filter(|l| !l.starts_with("---") && !l.starts_with("+++"))
        .filter(|l| l.starts_with('-') || l.starts_with('+'))
        .all(|l| l[1..] == neutral || l[1..] == mine)
}

/// A mail of the neutral identity under `me`: what [`identity::rewrite`] does, and
/// iproute2's MAINTAINERS `M: ` lines, which have a space where the kernel's have a
/// tab.
pub fn rewrite_identity(mail: &str, me: &Identity) -> String {
    let neutral = Identity::neutral();
    identity::rewrite(mail, &neutral, me).replace(
        &format!("\n+M: {}\n", neutral.mailbox()),
        &format!("\n+M: {}\n", me.mailbox()),
    )
}

/// For `cargo xtask send`: writes the iproute2 series into `out`/iproute2/ with its
/// own prefix and version (patches/iproute2/send.conf, default iproute2-next v1),
/// with a checkout the recipients from its MAINTAINERS and the proof that the files
/// apply, and prints the `git send-email` command. It never sends: the series is
/// posted once the kernel part is merged.
pub fn send(
    sh: &Shell,
    project: &Project,
    out: &Path,
    arg: &Iproute2Arg,
    me: &Identity,
) -> Result<()> {
    let conf_path = project.patches_dir().join(DIR).join(SEND_CONF);
    let conf = match fs_err::read_to_string(&conf_path) {
        Ok(t) => {
            SendConfig::parse(&t).with_context(|| format!("invalid {}", conf_path.display()))?
        }
        Err(_) => SendConfig {
            version: 1,
            rfc: false,
            parts: vec![Part::new("iproute2-next", Patches::All)],
        },
    };
    let part = match conf.parts.as_slice() {
        [part] if part.patches == Patches::All => part,
        _ => bail!(
            "{}: the iproute2 series is one posting: write `tree = iproute2-next`, no plan sections",
            conf_path.display()
        ),
    };
    let files = files(project)?;
    let dir = out.join(DIR);
    let _ = fs_err::remove_dir_all(&dir);
    fs_err::create_dir_all(&dir)?;
    let all: Vec<String> = files
        .iter()
        .map(fs_err::read_to_string)
        .collect::<std::io::Result<_>>()?;
    let touched: Vec<String> = all.iter().flat_map(|t| touched(t)).collect();
    let (to, cc) = match arg.checkout() {
        Some(c) => {
            let wt = prepare(sh, project, c)?;
            let m = fs_err::read_to_string(wt.join("MAINTAINERS")).unwrap_or_default();
            recipients(&m, &touched)
        }
        None => {
            eprintln!(
                "send: iproute2: {}: To is netdev only",
                no_checkout_reason()
            );
            (vec!["netdev@vger.kernel.org".to_string()], Vec::new())
        }
    };
    // The MAINTAINERS entry the series adds names the neutral identity: on the
    // mails it is the sender, as in the patches themselves.
    let sender = |list: Vec<String>| -> Vec<String> {
        let neutral = Identity::neutral().mailbox();
        list.into_iter()
            .map(|r| if r == neutral { me.mailbox() } else { r })
            .collect()
    };
    let (to, cc) = (sender(to), sender(cc));
    let mut written = Vec::new();
    for (f, text) in files.iter().zip(&all) {
        let mail = rewrite_identity(text, me);
        let mail = retitle(&mail, &conf.prefix(part), conf.version);
        let mail = super::add_recipients(&mail, &to, &cc);
        let bad = identity::placeholder_addresses(&mail);
        if let Some((line, addr)) = bad.first() {
            bail!(
                "{}:{line}: placeholder address {addr} would be sent",
                f.display()
            );
        }
        let name = f.file_name().context("patch without a name")?;
        let name = match conf.version {
            1 => name.to_string_lossy().to_string(),
            n => format!("v{n}-{}", name.to_string_lossy()),
        };
        let dst = dir.join(name);
        fs_err::write(&dst, mail)?;
        written.push(dst);
    }
    if let Some(c) = arg.checkout() {
        // Proof: the written files apply onto the base.
        let wt = prepare(sh, project, c)?;
        let head = {
            let _d = sh.push_dir(&wt);
            cmd!(sh, "git rev-parse HEAD").quiet().read()?
        };
        let n = patches(&written).len();
        let r = super::am(sh, &wt, &format!("{head}~{n}"), &written, me);
        detach_at(sh, &wt, &head)?;
        let _d = sh.push_dir(&wt);
        let head_tree = format!("{head}^{{tree}}");
        let want = cmd!(sh, "git rev-parse {head_tree}").quiet().read()?;
        let got = r.context("git am of the written iproute2 series failed")?;
        // The written files carry the sender in MAINTAINERS' M: line, the patched
        // tree the neutral identity: everything else must be the same.
        let same = cmd!(
            sh,
            "git diff --quiet {want} {got} -- . :(exclude)MAINTAINERS"
        )
        .quiet()
        .run()
        .is_ok();
        let maint = cmd!(sh, "git diff --unified=0 {want} {got} -- MAINTAINERS")
            .quiet()
            .read()?;
        if !same || !maintainers_diff_is_identity(&maint, me) {
            bail!(
                "git am of {} does not give the patched tree (MAINTAINERS' M: line aside)",
                dir.display()
            );
        }
        eprintln!(
            "send: iproute2: verified: the {n} patches apply onto {}, as {}",
            c.display(),
            me.mailbox()
        );
    }
    let rel = dir.strip_prefix(&project.root).unwrap_or(&dir);
    println!(
        "wrote {} ({} files, [{}{}]); send it once the kernel part is merged:\n  git send-email --confirm=always --suppress-cc=self {}/*.patch",
        dir.display(),
        written.len(),
        conf.prefix(part),
        if conf.version > 1 { format!(" v{}", conf.version) } else { String::new() },
        rel.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::iproute2::subject_has_prefix;

    #[test]
    fn maintainers_diff_only_the_identity() {
        let me = Identity::new("Ada Tester", "ada@tester.dev");
        let n = Identity::neutral().mailbox();
        let ok = format!(
            "--- a/MAINTAINERS\n+++ b/MAINTAINERS\n@@ -1 +1 @@\n-M: {n}\n+M: Ada Tester <ada@tester.dev>\n"
        );
        assert!(maintainers_diff_is_identity(&ok, &me));
        assert!(maintainers_diff_is_identity("", &me));
        let other = format!("{ok}@@ -9 +9 @@\n-F: ip/\n+F: tc/\n");
        assert!(!maintainers_diff_is_identity(&other, &me));
    }

    #[test]
    fn identity_rewritten_with_iproute2s_maintainers_style() {
        let n = Identity::neutral().mailbox();
        let mail = format!(
            "From: {n}\nSubject: [PATCH] ip: x\n\nText.\n\nSigned-off-by: {n}\n---\n\
             diff --git a/MAINTAINERS b/MAINTAINERS\n@@ -1 +1,2 @@\n L: netdev\n+M: {n}\n"
        );
        let me = Identity::new("Ada Tester", "ada@tester.dev");
        let got = rewrite_identity(&mail, &me);
        assert!(!got.contains(&n), "{got}");
        assert!(got.starts_with("From: Ada Tester <ada@tester.dev>\n"));
        assert!(got.contains("\nSigned-off-by: Ada Tester <ada@tester.dev>\n"));
        assert!(got.contains("\n+M: Ada Tester <ada@tester.dev>\n"));
        assert!(identity::placeholder_addresses(&got).is_empty());
    }

    #[test]
    fn maintainers_recipients() {
        let m = "Iproute2 Maintainers\n====\n\nThe file ...\n\n\
                 Main Branch\nM: S H <s@n.org>\nL: netdev@vger.kernel.org\n\n\
                 Next Tree\nM: D A <d@k.org>\nT: git://x\nL: netdev@vger.kernel.org\n\n\
                 Ethernet Bridging - bridge\nM: I S <i@n.com>\nF: bridge/*\nF: ip/iplink_bridge*\n\n\
                 rdmabond\nM: rdmabond developers <r@e.org>\nL: linux-rdma@vger.kernel.org\n\
                 F: ip/iplink_rdmabond.c\n\n\
                 rdma\nM: L R <l@k.org>\nF: rdma/\n";
        let files = vec![
            "ip/iplink_rdmabond.c".to_string(),
            "include/uapi/linux/if_link.h".to_string(),
        ];
        let (to, cc) = recipients(m, &files);
        assert_eq!(to, vec!["D A <d@k.org>"]);
        assert_eq!(
            cc,
            vec![
                "netdev@vger.kernel.org",
                "rdmabond developers <r@e.org>",
                "linux-rdma@vger.kernel.org"
            ]
        );
        assert!(file_matches("rdma/", "rdma/sub/x.c"));
        assert!(file_matches("bridge/*", "bridge/fdb.c"));
        assert!(!file_matches("bridge/*", "bridge/sub/x.c"));
        assert!(file_matches(
            "ip/iplink_bridge*",
            "ip/iplink_bridge_slave.c"
        ));
        assert!(!file_matches("ip/iplink.c", "ip/iplink.cc"));
    }

    #[test]
    fn subjects() {
        let m = "From 0\nSubject: [PATCH iproute2-next 1/2] uapi: x\n\nbody\nSubject: [PATCH no]\n";
        assert!(subject_has_prefix(m, "PATCH iproute2-next"));
        assert!(!subject_has_prefix(m, "PATCH iproute2"));
        assert!(!subject_has_prefix(
            "Subject: [PATCH net-next 1/2] x\n",
            "PATCH iproute2-next"
        ));
        assert_eq!(
            retitle(m, "PATCH iproute2-next", 2),
            "From 0\nSubject: [PATCH iproute2-next v2 1/2] uapi: x\n\nbody\nSubject: [PATCH no]\n"
        );
        assert_eq!(retitle(m, "PATCH iproute2-next", 1), m);
        assert_eq!(
            retitle(
                "Subject: [PATCH iproute2-next] x y\n",
                "RFC PATCH iproute2-next",
                1
            ),
            "Subject: [RFC PATCH iproute2-next] x y\n"
        );
    }
}
