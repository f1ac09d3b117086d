//! `cargo xtask apply`: reset the work branch to the base and `git am` the series
//! (see [`crate::common::series::apply`]).

use anyhow::Result;
use xshell::Shell;

use crate::common::project::Project;
use crate::common::series::apply::apply;

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// Re-apply even when the branch already matches patches/.
    #[arg(long)]
    pub force: bool,
}

impl ApplyArgs {
    pub fn run(self, sh: &Shell, project: &Project) -> Result<()> {
        apply(sh, project, self.force).map(|_| ())
    }
}
