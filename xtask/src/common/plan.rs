//! The merge plan: which patches of the series go to which tree, as separate
//! postings. It is the `[tree]` sections of patches/versions/send.conf:
//!
//! ```text
//! [rdma-rc]
//! patches = 1-3
//! stable = true
//! cover = cover-rdma-rc.txt
//!
//! [rdma-next]
//! patches = 4-15
//! acked-by = netdev 4-5
//! ```
//!
//! `send` writes one directory per part (`target/series/vN/<tree>/`, each applying on
//! the base on its own), `check` verifies the plan against the series (every patch in
//! one part, fixes with a Fixes: tag, another maintainer's files acked) and the
//! subject prefixes of what `send` wrote against the plan.

use anyhow::{bail, Context, Result};

/// Subject line, blank line, body: the text of the cover letter of a part that
/// names none, in patches/.
pub const COVER_SOURCE: &str = "cover-letter.txt";

/// The trailer a part with `stable = true` adds to each of its patches.
pub const STABLE_CC: &str = "Cc: stable@vger.kernel.org";

/// Which patches of the series a part takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Patches {
    /// Every patch (the one-part plan `tree = X`).
    All,
    /// 1-based positions in patches/series.
    List(Vec<usize>),
}

/// One posting of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The tree it goes to, named in the subject prefix (`[PATCH rdma-rc]`).
    pub tree: String,
    pub patches: Patches,
    /// A fix for stable kernels: every patch gets `Cc: stable@vger.kernel.org`.
    pub stable: bool,
    /// Patches another subsystem's maintainers ack (e.g. `netdev`, patches 2-3)
    /// because they touch its files but go through this tree.
    pub acks: Vec<(String, Vec<usize>)>,
    /// The cover letter's source (subject, blank line, text) in patches/versions/,
    /// for a part of more than one patch that is not the series itself; `None`:
    /// patches/cover-letter.txt.
    pub cover: Option<String>,
}

impl Part {
    pub fn new(tree: &str, patches: Patches) -> Part {
        Part {
            tree: tree.to_string(),
            patches,
            stable: false,
            acks: Vec::new(),
            cover: None,
        }
    }

    /// The part's patch positions in a series of `n` patches.
    pub fn numbers(&self, n: usize) -> Vec<usize> {
        match &self.patches {
            Patches::All => (1..=n).collect(),
            Patches::List(l) => l.clone(),
        }
    }

    /// Where its cover letter's text comes from, relative to patches/; `None` for a
    /// single patch, which is sent without one.
    pub fn cover_source(&self, n: usize) -> Option<String> {
        if self.numbers(n).len() < 2 {
            return None;
        }
        Some(match &self.cover {
            Some(c) => format!("versions/{c}"),
            None => COVER_SOURCE.to_string(),
        })
    }

    /// The patches another subsystem acks.
    pub fn acked_by(&self, who: &str) -> Vec<usize> {
        self.acks
            .iter()
            .filter(|(w, _)| w == who)
            .flat_map(|(_, l)| l.iter().copied())
            .collect()
    }
}

/// Parses `1`, `2-15`, `2,3,5-7` (1-based, ascending, no repeats).
pub fn parse_list(text: &str) -> Result<Vec<usize>> {
    let mut out: Vec<usize> = Vec::new();
    for item in text.split(',').map(str::trim) {
        let (a, b) = item.split_once('-').unwrap_or((item, item));
        let num = |s: &str| {
            s.trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)
                .with_context(|| format!("`{item}` is not a patch number or range (e.g. 1, 2-15)"))
        };
        let (a, b) = (num(a)?, num(b)?);
        if b < a {
            bail!("`{item}`: the range ends before it starts");
        }
        for n in a..=b {
            if out.last().is_some_and(|l| *l >= n) {
                bail!("`{text}`: patch {n} is listed twice or out of order");
            }
            out.push(n);
        }
    }
    Ok(out)
}

/// Parses `acked-by = netdev 2-3`.
pub fn parse_ack(text: &str) -> Result<(String, Vec<usize>)> {
    let (who, list) = text
        .trim()
        .split_once(char::is_whitespace)
        .with_context(|| {
            format!("`{text}`: expected `acked-by = WHO PATCHES` (e.g. netdev 2-3)")
        })?;
    Ok((who.to_string(), parse_list(list)?))
}

/// The subject prefixes of a part's mails as `git format-patch` writes them, the cover
/// letter (`00/N`) first when the part has more than one patch. `prefix` is e.g.
/// `PATCH rdma-next`.
pub fn expected_prefixes(prefix: &str, version: u32, count: usize) -> Vec<String> {
    let v = if version > 1 {
        format!(" v{version}")
    } else {
        String::new()
    };
    if count == 1 {
        return vec![format!("[{prefix}{v}]")];
    }
    let w = count.to_string().len();
    (0..=count)
        .map(|i| format!("[{prefix}{v} {i:0w$}/{count}]"))
        .collect()
}

/// Whose files a path is, for the acks: netdev's core and the RDMA subsystem's.
pub fn owner(path: &str) -> Option<&'static str> {
    const OWNERS: &[(&str, &[&str])] = &[
        ("netdev", &["net/", "include/net/"]),
        ("rdma", &["drivers/infiniband/", "include/rdma/"]),
    ];
    OWNERS
        .iter()
        .find(|(_, dirs)| dirs.iter().any(|d| path.starts_with(d)))
        .map(|(who, _)| *who)
}

/// Whose tree a tree name is (`rdma-next` is rdma's, `net-next` netdev's).
pub fn tree_owner(tree: &str) -> Option<&'static str> {
    if tree.starts_with("rdma") {
        Some("rdma")
    } else if tree == "net" || tree.starts_with("net-") {
        Some("netdev")
    } else {
        None
    }
}

/// A fixes tree (takes `Cc: stable` patches), as opposed to a -next tree.
pub fn is_fixes_tree(tree: &str) -> bool {
    tree == "net" || tree.ends_with("-rc") || tree.ends_with("-fixes")
}

/// What the plan check needs to know of one patch.
#[derive(Debug, Clone, Default)]
pub struct PatchInfo {
    pub subject: String,
    /// The commit message.
    pub message: String,
    /// Files it touches.
    pub files: Vec<String>,
}

/// The problems of a plan for a series: every patch in exactly one part, fixes with
/// a Fixes: tag sent to a fixes tree, another subsystem's files acked by it, and a
/// cover letter that states a plan of more than one posting. One line per problem.
pub fn problems(parts: &[Part], series: &[PatchInfo], cover: Option<&str>) -> Vec<String> {
    let n = series.len();
    let mut out = Vec::new();
    let mut owner_of: Vec<Vec<&str>> = vec![Vec::new(); n + 1];
    for p in parts {
        for i in p.numbers(n) {
            if i > n {
                out.push(format!(
                    "[{}] takes patch {i}, the series has {n}: update `patches =`",
                    p.tree
                ));
            } else {
                owner_of[i].push(&p.tree);
            }
        }
    }
    for (i, trees) in owner_of.iter().enumerate().skip(1) {
        match trees.len() {
            1 => {}
            0 => out.push(format!(
                "patch {i} ({}) is in no part of the plan: add it to a `patches =` line",
                series[i - 1].subject
            )),
            _ => out.push(format!(
                "patch {i} is in more than one part ({}): keep it in one",
                trees.join(", ")
            )),
        }
    }
    for p in parts {
        let mine = tree_owner(&p.tree);
        for i in p.numbers(n).into_iter().filter(|i| *i <= n) {
            let info = &series[i - 1];
            if p.stable {
                if !info.message.lines().any(|l| l.starts_with("Fixes: ")) {
                    out.push(format!(
                        "patch {i} ({}) goes to stable ([{}] stable = true) but has no Fixes: tag",
                        info.subject, p.tree
                    ));
                }
                if !is_fixes_tree(&p.tree) {
                    out.push(format!(
                        "[{}] has stable = true, but fixes go to a fixes tree (rdma-rc, net), not {}",
                        p.tree, p.tree
                    ));
                }
            }
            let mut others: Vec<(&str, &str)> = Vec::new();
            for f in &info.files {
                match owner(f) {
                    Some(o) if mine.is_some_and(|m| m != o) && !others.iter().any(|x| x.0 == o) => {
                        others.push((o, f))
                    }
                    _ => {}
                }
            }
            for (who, file) in others {
                if !p.acked_by(who).contains(&i) {
                    out.push(format!(
                        "patch {i} ({}) touches {file} ({who}'s) but goes through {}: \
                         add `acked-by = {who} {i}` to [{}] and state it in the cover letter's merge plan",
                        info.subject, p.tree, p.tree
                    ));
                }
            }
        }
        for (who, list) in &p.acks {
            for i in list {
                if !p.numbers(n).contains(i) {
                    out.push(format!(
                        "[{}] acked-by = {who} {i}: patch {i} is not in this part",
                        p.tree
                    ));
                } else if *i <= n && !series[i - 1].files.iter().any(|f| owner(f) == Some(who)) {
                    out.push(format!(
                        "[{}] acked-by = {who} {i}: patch {i} touches none of {who}'s files",
                        p.tree
                    ));
                }
            }
        }
    }
    let mut covers: Vec<(String, &str)> = Vec::new();
    for p in parts {
        match p.cover_source(n) {
            None if p.cover.is_some() => out.push(format!(
                "[{}] cover = {}: a single patch is sent without a cover letter; remove the line",
                p.tree,
                p.cover.as_deref().unwrap_or_default()
            )),
            None => {}
            Some(c) => match covers.iter().find(|(o, _)| *o == c) {
                Some((_, other)) => out.push(format!(
                    "[{other}] and [{}] would both be sent with patches/{c} as their cover letter: \
                     give one of them its own (`cover = cover-{}.txt` in patches/versions/)",
                    p.tree, p.tree
                )),
                None => covers.push((c, &p.tree)),
            },
        }
    }
    let shared = parts.len() > 1 || parts.iter().any(|p| !p.acks.is_empty());
    if let (true, Some(text)) = (shared, cover) {
        if !text
            .lines()
            .any(|l| l.trim().eq_ignore_ascii_case("merge plan"))
        {
            out.push(
                "patches/cover-letter.txt has no \"Merge plan\" paragraph: say which tree takes \
                 what and who acks what (send.conf's plan)"
                    .to_string(),
            );
        }
    }
    out
}

/// The `Subject:` of a mail, unfolded.
pub fn mail_subject(mail: &str) -> Option<String> {
    let mut lines = mail.lines().take_while(|l| !l.is_empty());
    let mut s = lines.find_map(|l| l.strip_prefix("Subject: "))?.to_string();
    for l in lines {
        match l.strip_prefix(' ') {
            Some(c) => {
                s.push(' ');
                s.push_str(c);
            }
            None => break,
        }
    }
    Some(s)
}

/// Checks the subjects `send` wrote for a part (`(file, subject)`, in order) against
/// the plan: `expected` prefixes (see [`expected_prefixes`]) and the `subjects` of
/// its commits. Returns (failures, stale): files whose patches no longer match the
/// commits are stale (send was not run again), not wrong.
pub fn subject_problems(
    dir: &str,
    written: &[(String, String)],
    expected: &[String],
    subjects: &[String],
) -> (Vec<String>, Vec<String>) {
    let cover = usize::from(expected.len() > subjects.len());
    let stale = written.len() != expected.len()
        || written
            .iter()
            .skip(cover)
            .zip(subjects)
            .any(|((_, s), want)| !s.ends_with(&format!("] {want}")));
    if stale {
        return (
            Vec::new(),
            vec![format!(
                "{dir} does not hold the series as it is now: run `cargo xtask send` again"
            )],
        );
    }
    let mut fails = Vec::new();
    for ((file, subject), want) in written.iter().zip(expected) {
        if !subject.starts_with(&format!("{want} ")) {
            let got = subject.split(']').next().unwrap_or_default();
            fails.push(format!(
                "{dir}/{file}: subject prefix `{got}]`, the plan says `{want}`"
            ));
        }
    }
    (fails, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists() {
        assert_eq!(parse_list("1").unwrap(), vec![1]);
        assert_eq!(parse_list("2-4, 6").unwrap(), vec![2, 3, 4, 6]);
        assert!(parse_list("0").is_err());
        assert!(parse_list("3-2").is_err());
        assert!(parse_list("1,1").is_err());
        assert!(parse_list("2,1").is_err());
        assert!(parse_list("x").is_err());
        assert_eq!(
            parse_ack("netdev 2-3").unwrap(),
            ("netdev".to_string(), vec![2, 3])
        );
        assert!(parse_ack("netdev").is_err());
    }

    #[test]
    fn prefixes_as_format_patch_writes_them() {
        assert_eq!(
            expected_prefixes("PATCH rdma-rc", 1, 1),
            vec!["[PATCH rdma-rc]"]
        );
        assert_eq!(
            expected_prefixes("PATCH rdma-rc", 2, 1),
            vec!["[PATCH rdma-rc v2]"]
        );
        let p = expected_prefixes("PATCH rdma-next", 1, 14);
        assert_eq!(p.len(), 15);
        assert_eq!(p[0], "[PATCH rdma-next 00/14]");
        assert_eq!(p[14], "[PATCH rdma-next 14/14]");
        assert_eq!(
            expected_prefixes("RFC PATCH net-next", 3, 3)[1],
            "[RFC PATCH net-next v3 1/3]"
        );
    }

    fn info(subject: &str, message: &str, files: &[&str]) -> PatchInfo {
        PatchInfo {
            subject: subject.into(),
            message: message.into(),
            files: files.iter().map(|f| f.to_string()).collect(),
        }
    }

    fn series() -> Vec<PatchInfo> {
        vec![
            info(
                "RDMA/rxe: fix",
                "x\n\nFixes: 8700e3e7c485 (\"Soft RoCE driver\")\nSigned-off-by: A <a@b.de>\n",
                &["drivers/infiniband/sw/rxe/rxe_recv.c"],
            ),
            info(
                "net: ipv4: add inet_addr_move()",
                "",
                &["net/ipv4/devinet.c", "include/linux/inetdevice.h"],
            ),
            info(
                "net: ipv6: add inet6_addr_move()",
                "",
                &["net/ipv6/addrconf.c", "include/net/addrconf.h"],
            ),
            info(
                "RDMA/rdmabond: add",
                "",
                &["drivers/infiniband/ulp/rdmabond/main.c", "MAINTAINERS"],
            ),
        ]
    }

    fn plan() -> Vec<Part> {
        let mut rc = Part::new("rdma-rc", Patches::List(vec![1]));
        rc.stable = true;
        let mut next = Part::new("rdma-next", Patches::List(vec![2, 3, 4]));
        next.acks.push(("netdev".into(), vec![2, 3]));
        vec![rc, next]
    }

    #[test]
    fn a_good_plan_has_no_problems() {
        let cover = "subject\n\nMerge plan\n----------\nrdma-rc, rdma-next, netdev acks 1-2.\n";
        assert_eq!(
            problems(&plan(), &series(), Some(cover)),
            Vec::<String>::new()
        );
        // A one-part plan of one tree needs no merge plan paragraph.
        let one = vec![Part::new("rdma-next", Patches::All)];
        assert!(problems(&one, &series()[..1], Some("s\n\nbody\n")).is_empty());
        // All of it to net-next: the RDMA files need rdma's ack, the net ones none.
        let net = vec![Part::new("net-next", Patches::All)];
        let e = problems(&net, &series(), None);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].contains(
            "patch 1 (RDMA/rxe: fix) touches drivers/infiniband/sw/rxe/rxe_recv.c (rdma's)"
        ));
    }

    #[test]
    fn plan_problems_are_named() {
        let s = series();
        let mut p = plan();
        let cover = Some("s\n\nno plan here\n");
        let e = problems(&p, &s, cover);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("Merge plan"));
        // A patch left out, one in two parts, one past the end.
        p[1].patches = Patches::List(vec![1, 2, 5]);
        p[1].acks.clear();
        let e = problems(&p, &s, None).join("\n");
        assert!(
            e.contains("patch 3 (net: ipv6: add inet6_addr_move()) is in no part"),
            "{e}"
        );
        assert!(
            e.contains("patch 4 (RDMA/rdmabond: add) is in no part"),
            "{e}"
        );
        assert!(
            e.contains("patch 1 is in more than one part (rdma-rc, rdma-next)"),
            "{e}"
        );
        assert!(
            e.contains("[rdma-next] takes patch 5, the series has 4"),
            "{e}"
        );
        // netdev's files through rdma-next without its ack.
        assert!(
            e.contains("patch 2 (net: ipv4: add inet_addr_move()) touches net/ipv4/devinet.c (netdev's) but goes through rdma-next"),
            "{e}"
        );
        // A stable fix without Fixes:, and stable to a -next tree.
        let mut s2 = s.clone();
        s2[0].message = "x\n\nSigned-off-by: A <a@b.de>\n".into();
        let mut p = plan();
        p[0].tree = "rdma-next".into();
        let e = problems(&p, &s2, None).join("\n");
        assert!(e.contains("has no Fixes: tag"), "{e}");
        assert!(e.contains("fixes go to a fixes tree"), "{e}");
        // An ack of a patch outside the part, or with none of the acker's files.
        let mut p = plan();
        p[1].acks.push(("netdev".into(), vec![1, 4]));
        let e = problems(&p, &s, None).join("\n");
        assert!(
            e.contains("acked-by = netdev 1: patch 1 is not in this part"),
            "{e}"
        );
        assert!(
            e.contains("acked-by = netdev 4: patch 4 touches none of netdev's files"),
            "{e}"
        );
    }

    #[test]
    fn a_cover_letter_per_part_of_several_patches() {
        let s = series();
        // Two parts of two patches: the second needs its own cover letter.
        let mut p = plan();
        p[0].patches = Patches::List(vec![1, 2]);
        p[1].patches = Patches::List(vec![3, 4]);
        p[1].acks = vec![("netdev".into(), vec![3])];
        let e = problems(&p, &s, None).join("\n");
        assert!(
            e.contains(
                "[rdma-rc] and [rdma-next] would both be sent with patches/cover-letter.txt"
            ),
            "{e}"
        );
        p[0].cover = Some("cover-rdma-rc.txt".into());
        assert_eq!(
            p[0].cover_source(4).as_deref(),
            Some("versions/cover-rdma-rc.txt")
        );
        assert_eq!(p[1].cover_source(4).as_deref(), Some(COVER_SOURCE));
        // (Patch 2 of the test series is no fix, which is reported too: only the
        // cover letters matter here.)
        let e = problems(&p, &s, None).join("\n");
        assert!(
            !e.contains("would both be sent") && !e.contains("cover ="),
            "{e}"
        );
        // A single patch has none.
        let mut p = plan();
        p[0].cover = Some("cover-rdma-rc.txt".into());
        assert_eq!(p[0].cover_source(4), None);
        let e = problems(&p, &s, None).join("\n");
        assert!(
            e.contains("[rdma-rc] cover = cover-rdma-rc.txt: a single patch is sent without a cover letter"),
            "{e}"
        );
    }

    #[test]
    fn written_subjects_against_the_plan() {
        let mail = "From 0 Mon\nFrom: A <a@b.de>\nSubject: [PATCH rdma-next 01/14] RDMA/rxe: initialise\n pkt->qp\n\nbody\nSubject: no\n";
        assert_eq!(
            mail_subject(mail).unwrap(),
            "[PATCH rdma-next 01/14] RDMA/rxe: initialise pkt->qp"
        );
        let subjects = vec!["a: one".to_string(), "b: two".to_string()];
        let expected = expected_prefixes("PATCH rdma-next", 1, 2);
        let w = |p: &[&str]| -> Vec<(String, String)> {
            p.iter()
                .enumerate()
                .map(|(i, s)| (format!("000{i}-x.patch"), s.to_string()))
                .collect()
        };
        let good = w(&[
            "[PATCH rdma-next 0/2] cover",
            "[PATCH rdma-next 1/2] a: one",
            "[PATCH rdma-next 2/2] b: two",
        ]);
        assert_eq!(
            subject_problems("d", &good, &expected, &subjects),
            (vec![], vec![])
        );
        let wrong = w(&[
            "[PATCH net-next 0/2] cover",
            "[PATCH net-next 1/2] a: one",
            "[PATCH rdma-next 2/2] b: two",
        ]);
        let (f, s) = subject_problems("d", &wrong, &expected, &subjects);
        assert!(s.is_empty());
        assert_eq!(f.len(), 2);
        assert_eq!(f[0], "d/0000-x.patch: subject prefix `[PATCH net-next 0/2]`, the plan says `[PATCH rdma-next 0/2]`");
        let stale = w(&[
            "[PATCH rdma-next 0/2] cover",
            "[PATCH rdma-next 1/2] a: old",
            "[PATCH rdma-next 2/2] b: two",
        ]);
        let (f, s) = subject_problems("d", &stale, &expected, &subjects);
        assert!(f.is_empty() && s[0].contains("run `cargo xtask send` again"));
        let (f, s) = subject_problems("d", &good[..2], &expected, &subjects);
        assert!(f.is_empty() && s.len() == 1);
        let one = w(&["[PATCH rdma-rc] a: one"]);
        let (f, s) = subject_problems(
            "d",
            &one,
            &expected_prefixes("PATCH rdma-rc", 1, 1),
            &subjects[..1],
        );
        assert!(f.is_empty() && s.is_empty());
    }
}
