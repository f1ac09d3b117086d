//! `cargo xtask ci`: everything CI runs, with one summary line at the end.

use anyhow::{bail, Result};
use xshell::{cmd, Shell};

use crate::build::Variant;
use crate::ktap::{Counts, Outcome};
use crate::project::Project;
use crate::test_qemu::TestQemuArgs;

#[derive(Debug, clap::Args)]
pub struct CiArgs {
    /// Skip the QEMU tests (host checks and unit tests only).
    #[arg(long)]
    pub no_qemu: bool,
    /// Skip the upstream-readiness gate (`cargo xtask check`).
    #[arg(long)]
    pub no_check: bool,
    /// Run the gate with its per-patch W=1 builds. By default CI runs it with
    /// `--fast`: every patch still builds, built in and as a module, in test-qemu's
    /// builds, and a cold per-patch W=1 build would not fit CI's time budget.
    #[arg(long)]
    pub check_full: bool,
}

/// Parses `test result: ok. 12 passed; 0 failed; 1 ignored; ...` lines of cargo test.
pub fn cargo_test_counts(output: &str) -> Counts {
    let mut c = Counts::default();
    for line in output.lines() {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            continue;
        };
        for part in rest.split(';') {
            let words: Vec<&str> = part.split_whitespace().collect();
            let n = |w: &[&str]| {
                w.iter()
                    .rev()
                    .nth(1)
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(0)
            };
            match words.last() {
                Some(&"passed") => c.passed += n(&words),
                Some(&"failed") => c.failed += n(&words),
                Some(&"ignored") => c.skipped += n(&words),
                _ => {}
            }
        }
    }
    c
}

impl CiArgs {
    pub fn run(self, sh: &Shell, project: &Project) -> Result<()> {
        let _d = sh.push_dir(&project.root);
        let mut total = Counts::default();
        let step = |name: &str, ok: bool, total: &mut Counts| {
            println!("ci: {} {name}", if ok { "ok  " } else { "FAIL" });
            total.add(if ok { Outcome::Pass } else { Outcome::Fail });
        };
        // clippy and the unit tests build the Rust consumer, which needs rdma-core's
        // headers and libclang: install them first.
        crate::deps::ensure(sh, "the Rust consumer", crate::deps::BUILD)?;
        let fmt = cmd!(sh, "cargo fmt --all -- --check").run().is_ok();
        step("cargo fmt --check", fmt, &mut total);
        let clippy = cmd!(
            sh,
            "cargo clippy --quiet --workspace --all-targets -- -D warnings"
        )
        .run()
        .is_ok();
        step("cargo clippy -D warnings", clippy, &mut total);
        let out = cmd!(sh, "cargo test --quiet --workspace")
            .ignore_status()
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        print!("{text}");
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        let unit = cargo_test_counts(&text);
        println!("ci: unit tests: {}", unit.line());
        if !out.status.success() && unit.failed == 0 {
            step("cargo test (did not run)", false, &mut total);
        }
        total.merge(unit);
        if !self.no_qemu {
            let args = TestQemuArgs {
                filter: None,
                timeout: 3600,
                mirror: std::env::var("RDMABOND_DEBIAN_MIRROR").ok(),
                variants: vec![Variant::Y, Variant::Dbg],
                iproute2: crate::iproute2::Iproute2Arg::from_env(),
            };
            match args.run_counted(sh, project) {
                Ok(c) => {
                    println!("ci: qemu tests: {}", c.line());
                    total.merge(c);
                }
                Err(e) => {
                    eprintln!("ci: test-qemu could not run: {e:#}");
                    step("cargo xtask test-qemu", false, &mut total);
                }
            }
        }
        if !self.no_check {
            let gate = crate::check::CheckArgs {
                patch: None,
                fast: !self.check_full,
                range: None,
                no_cache: false,
                workdir: "check".into(),
                seeds: false,
                iproute2: crate::iproute2::Iproute2Arg::from_env(),
            };
            let ok = crate::kernel::fetch(sh, project, None)
                .and_then(|()| crate::apply::apply(sh, project, false))
                .and_then(|_| gate.gate(sh, project));
            let applied = ok.is_ok();
            match ok {
                Ok((failed, skipped)) => {
                    step("cargo xtask check", failed == 0, &mut total);
                    // Each skipped cell of the gate (printed with its reason) counts.
                    total.skipped += skipped;
                }
                Err(e) => {
                    eprintln!("ci: check could not run: {e:#}");
                    step("cargo xtask check", false, &mut total);
                }
            }
            // The gate must also catch what it claims to: each seeded defect is a test.
            let seeds = crate::check::CheckArgs {
                seeds: true,
                ..gate
            };
            match applied.then(|| seeds.run_seeds(sh, project)) {
                Some(Ok((caught, missed))) => {
                    println!("ci: seeded defects: {caught} caught, {missed} missed");
                    total.merge(crate::ktap::Counts {
                        passed: caught,
                        failed: missed,
                        skipped: 0,
                    });
                }
                Some(Err(e)) => {
                    eprintln!("ci: check --seeds could not run: {e:#}");
                    step("cargo xtask check --seeds", false, &mut total);
                }
                None => step("cargo xtask check --seeds", false, &mut total),
            }
        }
        println!("{}", total.line());
        if total.failed > 0 {
            bail!("ci failed");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_cargo_test_results() {
        let out = "running 3 tests\n...\ntest result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s\n\
                   test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out\n";
        let c = cargo_test_counts(out);
        assert_eq!((c.passed, c.failed, c.skipped), (5, 1, 1));
    }
}
