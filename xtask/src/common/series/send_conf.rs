//! patches/versions/: send.conf (the version and the merge plan), changes.txt (the
//! changelog) and the patches of every version that was sent.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::common::plan::{self, Part, Patches};
use crate::common::project::Project;

/// patches/versions/.
pub const VERSIONS_DIR: &str = "versions";
/// patches/versions/send.conf.
pub const CONFIG_FILE: &str = "send.conf";
/// patches/versions/changes.txt.
pub const CHANGES_FILE: &str = "changes.txt";

/// patches/versions/send.conf: `key = value` lines (version, rfc), then the merge
/// plan: one `[tree]` section per posting (see [`crate::common::plan`]). A file with
/// `tree = X` and no section is the one-part plan "every patch to X".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendConfig {
    /// Version of the next posting.
    pub version: u32,
    /// `RFC PATCH` instead of `PATCH`.
    pub rfc: bool,
    /// The merge plan, in posting order.
    pub parts: Vec<Part>,
}

impl SendConfig {
    pub fn parse(text: &str) -> Result<SendConfig> {
        let mut tree: Option<String> = None;
        let mut version = 1;
        let mut rfc = false;
        let mut parts: Vec<Part> = Vec::new();
        let mut has_patches: Vec<bool> = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let at = || format!("line {}", n + 1);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                let name = name.trim();
                if name.is_empty() || name.contains(char::is_whitespace) {
                    bail!(
                        "{}: `{line}`: a section names one tree, e.g. [rdma-next]",
                        at()
                    );
                }
                if parts.iter().any(|p| p.tree == name) {
                    bail!("{}: [{name}] appears twice", at());
                }
                parts.push(Part::new(name, Patches::List(Vec::new())));
                has_patches.push(false);
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .with_context(|| format!("{}: expected `key = value` or `[tree]`", at()))?;
            let (k, v) = (k.trim(), v.trim().trim_matches('"'));
            let bool_value = |v: &str| match v {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => bail!("{}: `{k} = {v}`: true or false", at()),
            };
            match (parts.last_mut(), k) {
                (None, "tree") => tree = Some(v.to_string()),
                (None, "version") => {
                    version = v
                        .parse()
                        .ok()
                        .filter(|v| *v >= 1)
                        .with_context(|| format!("{}: version must be 1 or more", at()))?
                }
                (None, "rfc") => rfc = bool_value(v)?,
                (None, other) => bail!(
                    "{}: unknown key `{other}` (version, rfc, tree; or a [tree] section of the merge plan)",
                    at()
                ),
                (Some(p), "patches") => {
                    p.patches = Patches::List(
                        plan::parse_list(v).with_context(|| format!("{}: [{}] patches", at(), p.tree))?,
                    );
                    *has_patches.last_mut().unwrap() = true;
                }
                (Some(p), "stable") => p.stable = bool_value(v)?,
                (Some(p), "acked-by") => p.acks.push(
                    plan::parse_ack(v).with_context(|| format!("{}: [{}] acked-by", at(), p.tree))?,
                ),
                (Some(p), "cover") => {
                    if v.is_empty() || v.contains('/') || v.starts_with('.') {
                        bail!(
                            "{}: [{}] cover = {v}: the name of a file in patches/versions/, e.g. cover-{}.txt",
                            at(),
                            p.tree,
                            p.tree
                        );
                    }
                    p.cover = Some(v.to_string());
                }
                (Some(p), other) => bail!(
                    "{}: [{}]: unknown key `{other}` (patches, stable, acked-by, cover)",
                    at(),
                    p.tree
                ),
            }
        }
        if let Some(i) = has_patches.iter().position(|h| !h) {
            bail!(
                "[{}] has no `patches = ...` line (e.g. patches = 2-15)",
                parts[i].tree
            );
        }
        match (tree, parts.is_empty()) {
            (Some(_), false) => bail!(
                "both `tree = ...` and [tree] sections: the sections are the plan, remove `tree =`"
            ),
            (Some(t), true) => parts.push(Part::new(&t, Patches::All)),
            (None, true) => bail!(
                "no merge plan: add a [tree] section with `patches = ...` per posting (or `tree = net-next` for one)"
            ),
            (None, false) => {}
        }
        Ok(SendConfig {
            version,
            rfc,
            parts,
        })
    }

    pub fn path(project: &Project) -> PathBuf {
        project.patches_dir().join(VERSIONS_DIR).join(CONFIG_FILE)
    }

    pub fn load(project: &Project) -> Result<SendConfig> {
        let path = Self::path(project);
        let text = fs_err::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {}: create it with `version = 1` and a [tree] section per posting \
                 (see Documentation/workflow.md)",
                path.display()
            )
        })?;
        Self::parse(&text).with_context(|| format!("invalid {}", path.display()))
    }

    /// `PATCH rdma-next` (format-patch adds `vN` and the numbers).
    pub fn prefix(&self, part: &Part) -> String {
        let rfc = if self.rfc { "RFC " } else { "" };
        format!("{rfc}PATCH {}", part.tree)
    }
}

/// send.conf with its `version =` line set to `version`; comments and the plan kept.
pub fn set_version(text: &str, version: u32) -> String {
    let mut out = String::new();
    let mut replaced = false;
    let mut in_plan = false;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        in_plan |= t.starts_with('[');
        let is_version = t
            .split_once('=')
            .is_some_and(|(k, _)| k.trim() == "version");
        if !in_plan && !replaced && is_version {
            out.push_str(&format!("version = {version}\n"));
            replaced = true;
        } else {
            out.push_str(line);
        }
    }
    if replaced {
        out
    } else {
        format!("version = {version}\n{out}")
    }
}

/// The .patch files of a directory in order (the cover letter, numbered 0000, first).
pub fn patch_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = fs_err::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "patch"))
        .collect();
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_and_plan() {
        let c = SendConfig::parse("# x\ntree = net-next\nversion = 2\n").unwrap();
        assert_eq!(c.version, 2);
        assert_eq!(c.parts, vec![Part::new("net-next", Patches::All)]);
        assert_eq!(c.prefix(&c.parts[0]), "PATCH net-next");
        assert!(SendConfig::parse("version = 1\n")
            .unwrap_err()
            .to_string()
            .contains("no merge plan"));
        assert!(SendConfig::parse("tree = x\nversion = 0\n").is_err());
        assert!(SendConfig::parse("tree = x\ncolour = red\n").is_err());
        assert!(SendConfig::parse("tree = x\nrfc = yes\n").is_err());
        let rfc = SendConfig::parse("tree = rdma-next\nrfc = true\n").unwrap();
        assert_eq!(rfc.prefix(&rfc.parts[0]), "RFC PATCH rdma-next");

        let text = "# plan\nversion = 1\nrfc = false\n\n# the fix\n[rdma-rc]\npatches = 1\nstable = true\n\n\
                    [rdma-next]\npatches = 2-15\nacked-by = netdev 2-3\n";
        let c = SendConfig::parse(text).unwrap();
        assert_eq!(c.parts.len(), 2);
        assert_eq!(c.parts[0].tree, "rdma-rc");
        assert!(c.parts[0].stable);
        assert_eq!(c.parts[0].numbers(15), vec![1]);
        assert_eq!(c.parts[1].numbers(15), (2..=15).collect::<Vec<_>>());
        assert_eq!(c.parts[1].acked_by("netdev"), vec![2, 3]);
        assert!(!c.parts[1].stable);
        assert_eq!(c.parts[1].cover, None);
        let c = SendConfig::parse("[rdma-rc]\npatches = 1-2\ncover = cover-rdma-rc.txt\n").unwrap();
        assert_eq!(c.parts[0].cover.as_deref(), Some("cover-rdma-rc.txt"));
        for (bad, want) in [
            ("tree = x\n[a]\npatches = 1\n", "both"),
            ("[a]\nstable = true\n", "no `patches = ...`"),
            ("[a]\npatches = 1\n[a]\npatches = 2\n", "twice"),
            ("[a b]\npatches = 1\n", "one tree"),
            ("[a]\npatches = 1\ncolour = red\n", "unknown key `colour`"),
            ("[a]\npatches = 2-1\n", "patches"),
            ("[a]\npatches = 1\nacked-by = netdev\n", "acked-by"),
            (
                "[a]\npatches = 1-2\ncover = ../x.txt\n",
                "a file in patches/versions/",
            ),
        ] {
            let e = format!("{:#}", SendConfig::parse(bad).unwrap_err());
            assert!(e.contains(want), "{bad:?}: {e}");
        }
        // --new-version changes the version line only.
        let bumped = set_version(text, 2);
        assert_eq!(bumped, text.replace("version = 1\n", "version = 2\n"));
        assert_eq!(SendConfig::parse(&bumped).unwrap().version, 2);
        assert_eq!(
            set_version("[a]\npatches = 1\n", 3),
            "version = 3\n[a]\npatches = 1\n"
        );
    }

    #[test]
    fn the_committed_plan_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../patches/versions/send.conf");
        let c = SendConfig::parse(&fs_err::read_to_string(path).unwrap()).unwrap();
        assert_eq!(c.parts[0].tree, "rdma-rc");
        assert!(c.parts[0].stable);
        assert_eq!(c.parts[1].tree, "rdma-next");
        // Every cover letter the plan names is committed.
        for p in &c.parts {
            if let Some(src) = p.cover_source(15) {
                let f = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../patches")
                    .join(&src);
                assert!(f.is_file(), "[{}]: patches/{src} is missing", p.tree);
            }
        }
    }
}
