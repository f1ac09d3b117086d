//! The gate's cache under target/check-cache: one file per patch, named by
//! everything its result depends on ([`CacheKey`]), holding its outcomes and build
//! warning keys.

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use super::{Check, Outcome, Status};
use crate::common::git;
use crate::common::project::Project;

/// The check's version: bump when a check changes, so cached results are recomputed.
/// It is part of every cache key (6: keys name the parent tree, config and pin).
const CACHE_VERSION: u32 = 6;

/// Everything the cached result of one patch depends on. The patch id alone is not
/// enough: a patch's build, sparse, kdoc and uapi results also depend on the tree it
/// applies to (earlier patches, the base, so the pin) and on the kernel config the
/// build uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    /// [`crate::common::git::patch_id`] of the commit.
    pub patch_id: String,
    /// Tree id of the commit's parent: the whole state the patch applies to.
    pub parent_tree: String,
    /// [`digest`] of the config fragments (ci/*.config, ci/debug/*.config, the
    /// selftests' `config` files).
    pub config: String,
    /// [`digest`] of kernel-src/kernel.toml.
    pub pin: String,
    /// `fast` or `full`.
    pub mode: String,
}

impl CacheKey {
    /// The cache file's name: readable patch id and mode, the check's version, and a
    /// digest of the rest.
    pub fn file_name(&self) -> String {
        let rest = digest(&[
            ("parent-tree", &self.parent_tree),
            ("config", &self.config),
            ("pin", &self.pin),
        ]);
        format!(
            "{}-{}-v{CACHE_VERSION}-{rest}.txt",
            self.patch_id, self.mode
        )
    }
}

/// A stable 128-bit FNV-1a digest (hex) of named parts (length-prefixed, so no two
/// different lists give the same input). Not cryptographic: it keys a local cache.
pub fn digest(parts: &[(&str, &str)]) -> String {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u128::from(*b);
            h = h.wrapping_mul(0x0000000001000000000000000000013B);
        }
    };
    for (name, value) in parts {
        for s in [name, value] {
            feed(&(s.len() as u64).to_le_bytes());
            feed(s.as_bytes());
        }
    }
    format!("{h:032x}")
}

/// The config fragments a check build reads, as (path, contents), sorted: ci/*.config,
/// ci/debug/*.config, and the `config` of every selftest directory the series adds
/// (read from the kernel tree, as the check build does).
pub fn config_inputs(sh: &Shell, project: &Project) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for dir in [project.ci_dir(), project.ci_dir().join("debug")] {
        let Ok(entries) = fs_err::read_dir(&dir) else {
            continue;
        };
        for e in entries.filter_map(|e| e.ok()) {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "config") {
                let text = fs_err::read_to_string(&p)
                    .with_context(|| format!("cannot read {}", p.display()))?;
                let rel = p.strip_prefix(&project.root).unwrap_or(&p);
                out.push((rel.display().to_string(), text));
            }
        }
    }
    let added = git::added_files(sh, project).unwrap_or_default();
    for t in crate::common::kbuild::selftest_targets(&added) {
        let rel = format!("tools/testing/selftests/{t}/config");
        if let Ok(text) = fs_err::read_to_string(project.tree.join(&rel)) {
            out.push((rel, text));
        }
    }
    out.sort();
    Ok(out)
}

/// Tree id of a commit.
pub fn tree_of(sh: &Shell, project: &Project, commit: &str) -> Result<String> {
    let _d = sh.push_dir(&project.tree);
    let spec = format!("{commit}^{{tree}}");
    cmd!(sh, "git rev-parse --verify {spec}")
        .quiet()
        .read()
        .with_context(|| format!("cannot read the tree of {commit}"))
}

/// Cache file: `check<TAB>status` lines, each followed by `<TAB>detail` lines;
/// `key<TAB>...` lines carry the build warning keys.
pub fn render_cache(outcomes: &[Outcome], keys: &[String]) -> String {
    let mut s = String::new();
    for o in outcomes {
        s.push_str(&format!("{}\t{}\n", o.check, o.status.word()));
        for d in &o.details {
            s.push('\t');
            s.push_str(&d.replace('\n', " "));
            s.push('\n');
        }
    }
    for k in keys {
        s.push_str("key\t");
        s.push_str(&k.replace('\n', " "));
        s.push('\n');
    }
    s
}

/// Reads a cache file back; None when it is not one.
pub fn parse_cache(text: &str) -> Option<(Vec<Outcome>, Vec<String>)> {
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut keys = Vec::new();
    for line in text.lines() {
        if let Some(d) = line.strip_prefix('\t') {
            outcomes.last_mut()?.details.push(d.to_string());
        } else if let Some(k) = line.strip_prefix("key\t") {
            keys.push(k.to_string());
        } else {
            let (check, status) = line.split_once('\t')?;
            outcomes.push(Outcome::new(Check::parse(check)?, Status::parse(status)?));
        }
    }
    (!outcomes.is_empty()).then_some((outcomes, keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_round_trip() {
        let mut a = Outcome::new(Check::Checkpatch, Status::Warn);
        a.details.push("x.c:3: WARNING: y".into());
        let b = Outcome::skip(Check::Sparse, "too old");
        let keys = vec!["a.c: warning: unused".to_string()];
        let text = render_cache(&[a.clone(), b.clone()], &keys);
        let (o, k) = parse_cache(&text).unwrap();
        assert_eq!(o, vec![a, b]);
        assert_eq!(k, keys);
        assert!(parse_cache("").is_none());
        assert!(parse_cache("x\tbogus\n").is_none());
    }

    #[test]
    fn cache_key_names_everything_the_result_depends_on() {
        let key = CacheKey {
            patch_id: "0123abcd-456789abcdef".into(),
            parent_tree: "1".repeat(40),
            config: digest(&[("ci/net.config", "CONFIG_NET=y\n")]),
            pin: digest(&[("kernel.toml", "version = \"7.3.4\"\n")]),
            mode: "fast".into(),
        };
        let name = key.file_name();
        assert!(name.starts_with("0123abcd-456789abcdef-fast-v"), "{name}");
        assert_eq!(name, key.clone().file_name(), "stable");
        // The same patch on another parent (an earlier patch changed): the old key
        // (patch id, mode, version) reused the result.
        let moved = CacheKey {
            parent_tree: "2".repeat(40),
            ..key.clone()
        };
        assert_ne!(name, moved.file_name());
        let config = CacheKey {
            config: digest(&[("ci/net.config", "CONFIG_NET=y\nCONFIG_X=y\n")]),
            ..key.clone()
        };
        assert_ne!(name, config.file_name());
        let pin = CacheKey {
            pin: digest(&[("kernel.toml", "version = \"7.3.5\"\n")]),
            ..key.clone()
        };
        assert_ne!(name, pin.file_name());
        let full = CacheKey {
            mode: "full".into(),
            ..key.clone()
        };
        assert_ne!(name, full.file_name());
        // Parts are length-prefixed: moving a byte between them changes the digest.
        assert_ne!(digest(&[("a", "bc")]), digest(&[("ab", "c")]));
        assert_ne!(digest(&[("a", "b"), ("c", "")]), digest(&[("a", "bc")]));
        assert_eq!(digest(&[]).len(), 32);
    }
}
