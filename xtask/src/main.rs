//! cargo xtask: keeps the rdmabond kernel series in patches/, applies it to the pinned
//! kernel, builds it, and runs its selftests in QEMU.

mod cmd;
mod common;
#[cfg(test)]
mod tidy;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "rdmabond developer tasks", version)]
struct Cli {
    /// Use this linux git checkout instead of kernel-src/linux (e.g. a net-next clone).
    #[arg(long, global = true, env = common::project::TREE_ENV)]
    tree: Option<PathBuf>,
    /// Base revision of the series in --tree (default: the pinned base tag).
    #[arg(long, global = true, env = common::project::BASE_ENV)]
    base: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// The pinned base kernel.
    #[command(subcommand)]
    Kernel(cmd::kernel::KernelCmd),
    /// Reset the work branch to the base and apply patches/.
    Apply(cmd::apply::ApplyArgs),
    /// Write the work branch back into patches/ (or --check that they match).
    Export(cmd::export::ExportArgs),
    /// Configure and build the kernel.
    Build(cmd::build::BuildArgs),
    /// Fetch, apply, build, boot in QEMU and run the series' selftests.
    TestQemu(cmd::test_qemu::TestQemuArgs),
    /// Boot the last build in QEMU and run one command in the guest.
    Vm(cmd::vm::VmArgs),
    /// Time failover inside the kernel, beside bonding and no group; scaling.
    Bench(cmd::bench::BenchArgs),
    /// The upstream-readiness gate: checks every patch and the series (NIPA style).
    Check(cmd::check::CheckArgs),
    /// Write target/series/vN/ for git send-email (sends nothing unless --send).
    Send(cmd::send::SendArgs),
    /// Everything CI runs: fmt, clippy, unit tests, test-qemu.
    Ci(cmd::ci::CiArgs),
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The cause chain on one line, no backtrace: each step says what to do next.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let sh = xshell::Shell::new()?;
    // `kernel bump` repairs the pin: it needs it readable, not valid.
    let check_pin = !matches!(cli.cmd, Cmd::Kernel(cmd::kernel::KernelCmd::Bump(_)));
    let project = common::project::Project::locate(cli.tree, cli.base, check_pin)?;
    match cli.cmd {
        Cmd::Kernel(c) => c.run(&sh, &project),
        Cmd::Apply(a) => a.run(&sh, &project),
        Cmd::Export(a) => a.run(&sh, &project),
        Cmd::Build(a) => a.run(&sh, &project),
        Cmd::TestQemu(a) => a.run(&sh, &project),
        Cmd::Vm(a) => a.run(&sh, &project),
        Cmd::Bench(a) => a.run(&sh, &project),
        Cmd::Check(a) => a.run(&sh, &project),
        Cmd::Send(a) => a.run(&sh, &project),
        Cmd::Ci(a) => a.run(&sh, &project, &CiSteps),
    }
}

/// CI's steps that are other subcommands: wired here, so that `ci` imports none.
struct CiSteps;

impl cmd::ci::Steps for CiSteps {
    fn test_qemu(
        &self,
        sh: &xshell::Shell,
        project: &common::project::Project,
        variants: Vec<common::kbuild::Variant>,
        mirror: Option<String>,
        iproute2: common::iproute2::Iproute2Arg,
    ) -> Result<common::ktap::Counts> {
        let args = cmd::test_qemu::TestQemuArgs {
            filter: None,
            timeout: 3600,
            mirror,
            variants,
            iproute2,
            // As the netdev CI runs them; dbg keeps the xtask runner.
            runner: cmd::test_qemu::Runner::Vng,
        };
        args.run_counted(sh, project)
    }

    fn bench(&self, sh: &xshell::Shell, project: &common::project::Project) -> Result<()> {
        cmd::bench::BenchArgs::quick().run(sh, project)
    }

    fn gate(
        &self,
        sh: &xshell::Shell,
        project: &common::project::Project,
        fast: bool,
        iproute2: common::iproute2::Iproute2Arg,
    ) -> Result<(usize, usize)> {
        gate_args(fast, false, iproute2).gate(sh, project)
    }

    fn seeds(
        &self,
        sh: &xshell::Shell,
        project: &common::project::Project,
        fast: bool,
        iproute2: common::iproute2::Iproute2Arg,
    ) -> Result<(usize, usize)> {
        gate_args(fast, true, iproute2).run_seeds(sh, project)
    }
}

/// `cargo xtask check` as CI runs it.
fn gate_args(
    fast: bool,
    seeds: bool,
    iproute2: common::iproute2::Iproute2Arg,
) -> cmd::check::CheckArgs {
    cmd::check::CheckArgs {
        patch: None,
        fast,
        range: None,
        no_cache: false,
        workdir: "check".into(),
        seeds,
        iproute2,
    }
}
