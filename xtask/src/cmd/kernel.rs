//! `cargo xtask kernel fetch|bump`: the pinned base kernel as a git tree.

use anyhow::Result;
use xshell::Shell;

use crate::common::base::{apt_download, fetch, sha256};
use crate::common::deps;
use crate::common::project::Project;
use crate::common::util::write_atomic;

#[derive(Debug, clap::Subcommand)]
pub enum KernelCmd {
    /// Download, verify and import the pinned kernel into kernel-src/linux (cached).
    Fetch(FetchArgs),
    /// Move the pin to another Debian package version and record its checksum.
    Bump(BumpArgs),
}

#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// Debian archive URI to download from (default: the one in the machine's apt sources).
    #[arg(long, env = "RDMABOND_DEBIAN_MIRROR")]
    pub mirror: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct BumpArgs {
    /// New Debian package version, e.g. 7.3.5-1~bpo13+1.
    #[arg(long)]
    pub deb_version: String,
    /// New package name (default: keep), e.g. linux-source-7.4.
    #[arg(long)]
    pub package: Option<String>,
    /// New suite (default: keep).
    #[arg(long)]
    pub suite: Option<String>,
    /// Debian archive URI to download from (default: the one in the machine's apt sources).
    #[arg(long, env = "RDMABOND_DEBIAN_MIRROR")]
    pub mirror: Option<String>,
}

impl KernelCmd {
    pub fn run(self, sh: &Shell, project: &Project) -> Result<()> {
        match self {
            KernelCmd::Fetch(args) => fetch(sh, project, args.mirror.as_deref()),
            KernelCmd::Bump(args) => bump(sh, project, args),
        }
    }
}

/// Downloads another package version, computes its checksum and rewrites the pin.
fn bump(sh: &Shell, project: &Project, args: BumpArgs) -> Result<()> {
    deps::ensure(sh, "kernel bump", deps::FETCH)?;
    let mut pin = project.pin.clone();
    if let Some(p) = args.package {
        pin.package = p;
    }
    if let Some(s) = args.suite {
        pin.suite = s;
    }
    pin.deb_version = args.deb_version;
    pin.version = pin
        .deb_version
        .split(['-', '~', '+'])
        .next()
        .unwrap_or_default()
        .to_string();
    let cache = project.cache_dir()?;
    let deb = apt_download(sh, &cache, &pin, args.mirror.as_deref())?;
    pin.sha256 = sha256(sh, &deb)?;
    let dest = cache.join("dl").join(pin.deb_file_name());
    fs_err::rename(&deb, &dest)?;
    let path = project.root.join("kernel-src/kernel.toml");
    let old = fs_err::read_to_string(&path)?;
    let new = pin.render();
    crate::common::pin::Pin::parse(&new)?;
    print!(
        "{}",
        similar::TextDiff::from_lines(&old, &new)
            .unified_diff()
            .header("kernel.toml (old)", "kernel.toml (new)")
    );
    write_atomic(&path, new.as_bytes())?;
    eprintln!(
        "pin moved to {}; now rebase the series onto it (move kernel-src/linux away, \
         `cargo xtask kernel fetch`, `cargo xtask apply`, fix, `cargo xtask export`)",
        pin.apt_spec()
    );
    Ok(())
}
