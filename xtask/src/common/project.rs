//! Where things live: the checkout, the kernel tree, build and cache directories.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::common::pin::Pin;

/// Name of the branch in the kernel tree that carries the series.
pub const WORK_BRANCH: &str = "rdmabond";

/// Environment variable naming a developer's own kernel checkout.
pub const TREE_ENV: &str = "RDMABOND_KERNEL_TREE";
/// Environment variable naming the base revision in such a checkout.
pub const BASE_ENV: &str = "RDMABOND_KERNEL_BASE";

/// Paths of one checkout of this project.
#[derive(Debug, Clone)]
pub struct Project {
    /// The checkout's top directory.
    pub root: PathBuf,
    /// The kernel tree the series is applied to.
    pub tree: PathBuf,
    /// The base revision in the kernel tree (a tag for the pinned tree).
    pub base: String,
    /// True when the tree is a developer's own checkout (`--tree`).
    pub external_tree: bool,
    /// The kernel pin.
    pub pin: Pin,
}

impl Project {
    /// Locates the checkout (from the xtask's manifest directory) and the kernel tree.
    /// The pin is validated unless `check_pin` is false (`kernel bump`, which repairs
    /// it, only needs it readable).
    pub fn locate(tree: Option<PathBuf>, base: Option<String>, check_pin: bool) -> Result<Project> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("xtask/ has no parent directory")?
            .to_path_buf();
        let pin_file = root.join(crate::common::pin::PIN_FILE);
        let pin = if check_pin {
            Pin::load(&pin_file)?
        } else {
            Pin::load_unchecked(&pin_file)?
        };
        let tree = tree.or_else(|| std::env::var_os(TREE_ENV).map(PathBuf::from));
        let external_tree = tree.is_some();
        let tree = match tree {
            Some(t) => {
                let t = if t.is_relative() {
                    std::env::current_dir()?.join(t)
                } else {
                    t
                };
                if !t.join("Makefile").is_file() || !t.join(".git").exists() {
                    bail!(
                        "{} is not a kernel git checkout (no Makefile or .git); \
                         pass the top of a linux clone to --tree / {TREE_ENV}",
                        t.display()
                    );
                }
                t
            }
            None => root.join("kernel-src/linux"),
        };
        let base = base
            .or_else(|| std::env::var(BASE_ENV).ok())
            .unwrap_or_else(|| pin.base_tag());
        Ok(Project {
            root,
            tree,
            base,
            external_tree,
            pin,
        })
    }

    /// patches/.
    pub fn patches_dir(&self) -> PathBuf {
        self.root.join("patches")
    }

    /// ci/ (kernel config fragments).
    pub fn ci_dir(&self) -> PathBuf {
        self.root.join("ci")
    }

    /// target/ of this checkout.
    pub fn target_dir(&self) -> PathBuf {
        self.root.join("target")
    }

    /// Out-of-tree kernel build directory for one build variant.
    pub fn build_dir(&self, variant: &str) -> PathBuf {
        self.target_dir().join(format!("kbuild-{variant}"))
    }

    /// Cache shared by all checkouts on this machine (downloads, ccache, tools).
    pub fn cache_dir(&self) -> Result<PathBuf> {
        cache_dir()
    }
}

/// `$RDMABOND_CACHE`, else `$XDG_CACHE_HOME/rdmabond`, else `~/.cache/rdmabond`.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("RDMABOND_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("rdmabond"));
    }
    let home = std::env::var_os("HOME").context("HOME is not set; set RDMABOND_CACHE")?;
    Ok(PathBuf::from(home).join(".cache/rdmabond"))
}
