//! `cargo xtask build`: configure (allnoconfig + fragments, verified) and build the
//! kernel out of tree with ccache and Debian's Rust toolchain; install the series'
//! selftests.

use anyhow::Result;
use xshell::Shell;

use crate::common::kbuild::{build, Variant};
use crate::common::project::Project;

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Build the series' drivers built in (y), as modules (m), or as modules on a
    /// debug kernel (dbg; kasan: dbg with KASAN).
    #[arg(long, value_enum, default_value = "y")]
    pub variant: Variant,
    /// Only write and verify the .config.
    #[arg(long)]
    pub config_only: bool,
}

impl BuildArgs {
    pub fn run(self, sh: &Shell, project: &Project) -> Result<()> {
        let out = build(sh, project, self.variant, self.config_only)?;
        eprintln!(
            "kernel: {} (build dir {})",
            out.image.display(),
            out.dir.display()
        );
        if !out.targets.is_empty() {
            eprintln!("selftests: {}", out.targets.join(" "));
        }
        Ok(())
    }
}
