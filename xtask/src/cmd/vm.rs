//! `cargo xtask vm -- CMD...`: boot the last build and run one command in the guest,
//! like `vng -r target/kbuild-y -- CMD`.

use std::time::Duration;

use anyhow::{bail, Result};
use xshell::Shell;

use crate::common::kbuild::Variant;
use crate::common::project::Project;
use crate::common::util::sh_quote;
use crate::common::vm;

#[derive(Debug, clap::Args)]
pub struct VmArgs {
    /// Which build to boot.
    #[arg(long, value_enum, default_value = "y")]
    pub variant: Variant,
    /// Hard limit in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Command (and arguments) run as root in the guest, from /tmp.
    #[arg(trailing_var_arg = true, required = true)]
    pub command: Vec<String>,
}

impl VmArgs {
    pub fn run(self, sh: &Shell, project: &Project) -> Result<()> {
        let dir = project.build_dir(self.variant.name());
        let image = dir.join("arch/x86/boot/bzImage");
        if !image.is_file() {
            anyhow::bail!(
                "no kernel image {}: build one first with `cargo xtask build --variant {}`",
                image.display(),
                self.variant.name()
            );
        }
        crate::common::deps::ensure(sh, "the VM", crate::common::deps::QEMU)?;
        // The same choice as test-qemu: RDMABOND_ACCEL, else the (cached) KVM probe.
        let (accel, _) = vm::choose_accel(|| vm::probe::cached_probe(project, &image))?;
        let words: Vec<String> = self.command.iter().map(|w| sh_quote(w)).collect();
        let run = vm::Run {
            image,
            modroot: Some(dir.join("modroot")),
            root: project.root.clone(),
            dir: project.target_dir().join("vm/adhoc"),
            payload: format!("{}\n", words.join(" ")),
            timeout: Duration::from_secs(self.timeout),
            accel,
            cmdline: String::new(),
        };
        let out = vm::run(&run, |_, line| println!("{line}"))?;
        for p in &out.problems {
            for l in &p.lines {
                eprintln!("kernel ({}): {l}", p.section);
            }
        }
        match (out.exit, &out.fatal) {
            (_, Some(f)) => bail!(
                "the guest died: {f} (console: {})",
                out.console_log.display()
            ),
            (Some(0), None) => Ok(()),
            (Some(code), None) => bail!("the command exited with status {code}"),
            (None, None) => bail!(
                "the guest stopped before the command finished{} (console: {})",
                if out.timed_out { " (timeout)" } else { "" },
                out.console_log.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_for_sh() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
    }
}
