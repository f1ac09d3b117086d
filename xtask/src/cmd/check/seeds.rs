//! `cargo xtask check --seeds`: proves the gate catches what it claims to. Known
//! defects are committed, one per commit, on top of the series in a worktree of
//! their own (target/seeds/linux, branch-less), the gate runs over the series plus
//! those commits, and each defect must be reported by the check meant for it, in its
//! own patch, with the file and line. The series' own patches come from the cache.
//!
//! The defects are edits anchored on text of the series (not line numbers), so they
//! keep applying while the series changes; an anchor that is gone is an error that
//! names it.

use std::path::Path;
use std::sync::LazyLock;

use anyhow::{bail, Context, Result};
use regex::Regex;
use xshell::{cmd, Shell};

use super::{Check, CheckArgs, Outcome, Status};
use crate::common::project::Project;

/// One edit of a seeded commit.
#[derive(Debug, Clone, Copy)]
pub enum Edit {
    /// Insert `text` after the first line that contains `anchor`.
    After {
        file: &'static str,
        anchor: &'static str,
        text: &'static str,
    },
    /// Insert `text` before the first line that contains `anchor`.
    Before {
        file: &'static str,
        anchor: &'static str,
        text: &'static str,
    },
    /// Replace the first occurrence of `from` by `to`.
    Replace {
        file: &'static str,
        from: &'static str,
        to: &'static str,
    },
}

/// A defect and where the gate must report it.
#[derive(Debug, Clone, Copy)]
pub struct Seed {
    pub name: &'static str,
    pub subject: &'static str,
    pub signoff: bool,
    pub edits: &'static [Edit],
    /// The check that must fail at this commit (None: a commit that must build
    /// again).
    pub check: Option<Check>,
    /// The file the finding must name with a line number.
    pub file: &'static str,
    /// Only the builds (not `--fast`) can see it.
    pub needs_build: bool,
}

/// The seeded defects, committed in this order.
pub const SEEDS: &[Seed] = &[
    Seed {
        name: "trailing whitespace",
        subject: "RDMA/rdmabond: seed: trailing whitespace",
        signoff: true,
        edits: &[Edit::After {
            file: "drivers/infiniband/ulp/rdmabond/failover.c",
            anchor: "#include",
            text: "/* Seeded: this line ends in a space. */ \n",
        }],
        check: Some(Check::Checkpatch),
        file: "drivers/infiniband/ulp/rdmabond/failover.c",
        needs_build: false,
    },
    Seed {
        name: "missing Signed-off-by",
        subject: "RDMA/rdmabond: seed: no Signed-off-by",
        signoff: false,
        edits: &[Edit::After {
            file: "drivers/infiniband/ulp/rdmabond/main.c",
            anchor: "#include",
            text: "/* Seeded: this patch has no Signed-off-by. */\n",
        }],
        check: Some(Check::Signoff),
        file: "",
        needs_build: false,
    },
    Seed {
        name: "undocumented exported function",
        subject: "RDMA/rdmabond: seed: export a function with no kernel-doc",
        signoff: true,
        edits: &[
            Edit::Before {
                file: "drivers/infiniband/ulp/rdmabond/rdmabond.h",
                anchor: "int rdmabond_fill_info(",
                text: "int rdmabond_seed_undocumented(void);\n",
            },
            Edit::After {
                file: "drivers/infiniband/ulp/rdmabond/api.c",
                anchor: "EXPORT_SYMBOL_GPL(",
                text: "\nint rdmabond_seed_undocumented(void)\n{\n\treturn 0;\n}\n\
                       EXPORT_SYMBOL_GPL(rdmabond_seed_undocumented);\n",
            },
        ],
        check: Some(Check::ExportDoc),
        file: "drivers/infiniband/ulp/rdmabond/api.c",
        needs_build: false,
    },
    Seed {
        name: "non-inline static function in a header",
        subject: "RDMA/rdmabond: seed: a static function in a header",
        signoff: true,
        edits: &[Edit::Before {
            file: "include/linux/rdmabond.h",
            anchor: "#endif /* _LINUX_RDMABOND_H */",
            text: "static int rdmabond_seed_static(void)\n{\n\treturn 0;\n}\n\n",
        }],
        check: Some(Check::HdrStatic),
        file: "include/linux/rdmabond.h",
        needs_build: false,
    },
    Seed {
        name: "IFLA attribute missing from the YNL spec",
        subject: "RDMA/rdmabond: seed: a new port attribute only in the uapi",
        signoff: true,
        edits: &[Edit::Before {
            file: "include/uapi/linux/if_link.h",
            anchor: "__IFLA_RDMABOND_PORT_MAX,",
            text: "\tIFLA_RDMABOND_PORT_SEED,\n",
        }],
        check: Some(Check::Uapi),
        file: "include/uapi/linux/if_link.h",
        needs_build: false,
    },
    Seed {
        name: "patch that breaks the build until the next patch",
        subject: "RDMA/rdmabond: seed: rename rdmabond_fill_info() but not its caller",
        signoff: true,
        edits: &[
            Edit::Replace {
                file: "drivers/infiniband/ulp/rdmabond/netlink.c",
                from: "int rdmabond_fill_info(struct sk_buff",
                to: "int rdmabond_fill_link_info(struct sk_buff",
            },
            Edit::Replace {
                file: "drivers/infiniband/ulp/rdmabond/rdmabond.h",
                from: "int rdmabond_fill_info(struct sk_buff",
                to: "int rdmabond_fill_link_info(struct sk_buff",
            },
        ],
        check: Some(Check::Build),
        file: "drivers/infiniband/ulp/rdmabond/main.c",
        needs_build: true,
    },
    Seed {
        name: "the next patch builds again",
        subject: "RDMA/rdmabond: seed: update the caller of rdmabond_fill_link_info()",
        signoff: true,
        edits: &[Edit::Replace {
            file: "drivers/infiniband/ulp/rdmabond/main.c",
            from: "= rdmabond_fill_info,",
            to: "= rdmabond_fill_link_info,",
        }],
        check: None,
        file: "",
        needs_build: true,
    },
    Seed {
        name: "clippy warning in Rust code",
        subject: "samples: rust: rdmabond: seed: an operation clippy flags",
        signoff: true,
        edits: &[Edit::Before {
            file: "samples/rust/rust_rdmabond_monitor.rs",
            anchor: "type Groups = Arc<",
            text: "/// Seeded: `x + 0` is clippy::identity_op.\n#[allow(dead_code)]\n\
                   fn seed_identity(x: u32) -> u32 {\n    x + 0\n}\n\n",
        }],
        check: Some(Check::Clippy),
        file: "samples/rust/rust_rdmabond_monitor.rs",
        needs_build: true,
    },
    Seed {
        name: "endianness mix-up only sparse sees",
        subject: "RDMA/rdmabond: seed: return a host-order value as __be16",
        signoff: true,
        edits: &[
            Edit::Before {
                file: "drivers/infiniband/ulp/rdmabond/rdmabond.h",
                anchor: "size_t rdmabond_get_size(",
                text: "__be16 rdmabond_seed_be16(u16 port);\n",
            },
            Edit::After {
                file: "drivers/infiniband/ulp/rdmabond/api.c",
                anchor: "EXPORT_SYMBOL_GPL(",
                text: "\n__be16 rdmabond_seed_be16(u16 port)\n{\n\treturn port;\n}\n",
            },
        ],
        check: Some(Check::Sparse),
        file: "drivers/infiniband/ulp/rdmabond/api.c",
        needs_build: true,
    },
];

/// Applies one edit to a file's text.
pub fn apply_edit(text: &str, edit: &Edit) -> Result<String> {
    let (anchor, file) = match edit {
        Edit::After { anchor, file, .. } | Edit::Before { anchor, file, .. } => (*anchor, *file),
        Edit::Replace { from, file, .. } => (*from, *file),
    };
    let Some(pos) = text.find(anchor) else {
        bail!(
            "seed anchor {anchor:?} is not in {file} any more: update the seed in \
             xtask/src/check/seeds.rs to text the series still has"
        );
    };
    let line_start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[pos..].find('\n').map_or(text.len(), |i| pos + i + 1);
    Ok(match edit {
        Edit::After { text: add, .. } => {
            format!("{}{add}{}", &text[..line_end], &text[line_end..])
        }
        Edit::Before { text: add, .. } => {
            format!("{}{add}{}", &text[..line_start], &text[line_start..])
        }
        Edit::Replace { from, to, .. } => text.replacen(from, to, 1),
    })
}

/// Commits the seeds on top of `tip` in the worktree; returns the last commit.
fn commit_seeds(sh: &Shell, wt: &Path, tip: &str, seeds: &[Seed]) -> Result<String> {
    crate::common::git::checkout(sh, wt, tip)?;
    let _d = sh.push_dir(wt);
    for seed in seeds {
        let mut files = Vec::new();
        for edit in seed.edits {
            let file = match edit {
                Edit::After { file, .. }
                | Edit::Before { file, .. }
                | Edit::Replace { file, .. } => *file,
            };
            let path = wt.join(file);
            let text = fs_err::read_to_string(&path)
                .with_context(|| format!("seed {:?}: cannot read {file}", seed.name))?;
            fs_err::write(&path, apply_edit(&text, edit)?)?;
            files.push(file);
        }
        let msg = format!(
            "{}\n\nSeeded defect for `cargo xtask check --seeds`: {}.\n",
            seed.subject, seed.name
        );
        let signoff = if seed.signoff {
            vec!["--signoff"]
        } else {
            vec![]
        };
        cmd!(sh, "git add -- {files...}").quiet().run()?;
        cmd!(sh, "git commit -q --no-verify {signoff...} -m {msg}")
            .quiet()
            .run()
            .with_context(|| format!("cannot commit seed {:?}", seed.name))?;
    }
    Ok(cmd!(sh, "git rev-parse HEAD")
        .quiet()
        .read()?
        .trim()
        .to_string())
}

/// Whether the outcome reports the seed as it must: failed, in its patch, with the
/// file and a line number when the seed names a file.
pub fn caught(o: &Outcome, seed: &Seed, index: usize) -> Option<String> {
    if o.status != Status::Fail {
        return None;
    }
    // `patch N` as words, and `FILE:LINE`.
    static PATCH: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\bpatch (\d+)\b").unwrap());
    let in_patch = |d: &str| PATCH.captures_iter(d).any(|c| c[1] == index.to_string());
    let has_line = |d: &str| {
        d.match_indices(seed.file).any(|(i, f)| {
            d[i + f.len()..]
                .strip_prefix(':')
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
    };
    o.details
        .iter()
        .find(|d| in_patch(d) && (seed.file.is_empty() || has_line(d)))
        .cloned()
}

/// Runs the gate over the series plus the seeds and reports each seed as a test.
/// Returns (passed, failed).
pub fn run(args: &CheckArgs, sh: &Shell, project: &Project) -> Result<(usize, usize)> {
    let base = crate::common::git::base(sh, project)?;
    let tip = crate::common::git::work_tip(sh, project)?
        .context("no series branch yet: run `cargo xtask apply`")?;
    let seeds: Vec<Seed> = SEEDS
        .iter()
        .filter(|s| !(args.fast && s.needs_build))
        .copied()
        .collect();
    let wt = crate::common::git::worktree(sh, project, "seeds")?;
    let seed_tip = commit_seeds(sh, &wt, &tip, &seeds)?;
    let first = crate::common::git::commits(sh, project, &format!("{base}..{tip}"))?.len() + 1;
    let gate = CheckArgs {
        range: Some(format!("{base}..{seed_tip}")),
        patch: None,
        ..args.clone()
    };
    let eval = gate.evaluate(sh, project)?;
    let (mut passed, mut failed) = (0, 0);
    println!("seeds: each defect must be caught by its check, in its patch, with a line");
    for (i, seed) in seeds.iter().enumerate() {
        let index = first + i;
        let report = eval
            .reports
            .iter()
            .find(|r| r.index == index)
            .context("the gate skipped a seeded patch")?;
        let verdict = if let Some(check) = seed.check {
            report
                .outcomes
                .iter()
                .chain(&eval.series)
                .filter(|o| o.check == check)
                .find_map(|o| caught(o, seed, index))
                .ok_or_else(|| {
                    format!(
                        "not caught by {check} in patch {index} with {}:LINE",
                        seed.file
                    )
                })
        } else {
            let errors: Vec<&Outcome> = report
                .outcomes
                .iter()
                .filter(|o| o.check == Check::Build && o.status == Status::Fail)
                .filter(|o| o.details.iter().any(|d| d.contains(": error:")))
                .collect();
            if errors.is_empty() {
                Ok("no build error".to_string())
            } else {
                Err(format!("still does not build: {:?}", errors[0].details))
            }
        };
        match verdict {
            Ok(detail) => {
                passed += 1;
                println!("ok   seed: {} (patch {index}): {detail}", seed.name);
            }
            Err(why) => {
                failed += 1;
                println!("not ok seed: {} (patch {index}): {why}", seed.name);
            }
        }
    }
    if args.fast {
        let left: Vec<&str> = SEEDS
            .iter()
            .filter(|s| s.needs_build)
            .map(|s| s.name)
            .collect();
        println!(
            "seeds: --fast leaves out the build seeds ({}); `cargo xtask check --seeds` runs them",
            left.join("; ")
        );
    }
    println!("seeds: {passed} caught, {failed} missed");
    Ok((passed, failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_insert_and_replace() {
        let t = "a\n#include <x>\n#include <y>\nb\n";
        let after = Edit::After {
            file: "f",
            anchor: "#include",
            text: "NEW\n",
        };
        assert_eq!(
            apply_edit(t, &after).unwrap(),
            "a\n#include <x>\nNEW\n#include <y>\nb\n"
        );
        let before = Edit::Before {
            file: "f",
            anchor: "<y>",
            text: "NEW\n",
        };
        assert_eq!(
            apply_edit(t, &before).unwrap(),
            "a\n#include <x>\nNEW\n#include <y>\nb\n"
        );
        let rep = Edit::Replace {
            file: "f",
            from: "<y>",
            to: "<z>",
        };
        assert_eq!(
            apply_edit(t, &rep).unwrap(),
            "a\n#include <x>\n#include <z>\nb\n"
        );
        let gone = Edit::Replace {
            file: "f",
            from: "nope",
            to: "",
        };
        let err = apply_edit(t, &gone).unwrap_err().to_string();
        assert!(err.contains("\"nope\" is not in f"), "{err}");
    }

    #[test]
    fn caught_needs_fail_patch_and_line() {
        let seed = SEEDS[0];
        let mut o = Outcome::new(Check::Checkpatch, Status::Fail);
        o.details.push(format!(
            "patch 16: ERROR: trailing whitespace at {}:12",
            seed.file
        ));
        assert!(caught(&o, &seed, 16).is_some());
        assert!(caught(&o, &seed, 1).is_none(), "patch 1 is not patch 16");
        let mut pass = o.clone();
        pass.status = Status::Pass;
        assert!(caught(&pass, &seed, 16).is_none());
        let mut noline = Outcome::new(Check::Checkpatch, Status::Fail);
        noline.details.push(format!("patch 16: {}", seed.file));
        assert!(caught(&noline, &seed, 16).is_none());
    }

    #[test]
    fn seeds_name_their_check_and_file() {
        for s in SEEDS {
            assert!(s.check.is_none() || !s.name.is_empty());
            for e in s.edits {
                let f = match e {
                    Edit::After { file, .. }
                    | Edit::Before { file, .. }
                    | Edit::Replace { file, .. } => file,
                };
                assert!(!f.is_empty());
            }
        }
        assert!(SEEDS.iter().any(|s| s.needs_build));
    }

    #[test]
    fn every_seed_names_a_check_of_the_table() {
        for s in SEEDS {
            if let Some(c) = s.check {
                assert!(Check::ORDER.contains(&c) && c != Check::All, "{}", s.name);
            }
        }
    }
}
