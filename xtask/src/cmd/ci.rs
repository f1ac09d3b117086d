//! `cargo xtask ci`: everything CI runs, with one summary line at the end.

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::common::iproute2::Iproute2Arg;
use crate::common::kbuild::Variant;
use crate::common::ktap::{Counts, Outcome};
use crate::common::project::Project;

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

/// The rdmabond-consumer test that compares its hand-copied uapi constants (used on
/// a clean clone) with the header generated from the patched kernel. It is compiled
/// out (`cfg(rdmabond_uapi_fallback)`) when no patched header exists, as in the
/// workspace's `cargo test` of a clean clone, so ci runs it again after test-qemu
/// built the kernel.
pub const UAPI_TEST: &str = "uapi::tests::fallback_matches_the_generated_header";

/// Runs [`UAPI_TEST`] with `RDMABOND_UAPI_INCLUDE` at the `y` build's headers.
fn uapi_test(project: &Project) -> Result<Counts> {
    let include = project.build_dir(Variant::Y.name()).join("usr/include");
    if !include.join("linux/if_link.h").is_file() {
        bail!(
            "{UAPI_TEST} cannot run: no {} (the `y` kernel build of test-qemu writes it; \
             see test-qemu's error above)",
            include.join("linux/if_link.h").display()
        );
    }
    let sh = Shell::new()?;
    let _d = sh.push_dir(&project.root);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target = crate::common::consumer::target_dir(project);
    let out = cmd!(
        sh,
        "{cargo} test --quiet -p rdmabond-consumer --target-dir {target} -- --exact {UAPI_TEST}"
    )
    .env("RDMABOND_UAPI_INCLUDE", &include)
    .quiet()
    .ignore_status()
    .output()
    .with_context(|| format!("cannot run cargo test for {UAPI_TEST}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    uapi_verdict(&text, out.status.success())
}

/// Exactly one test ran and passed: [`UAPI_TEST`]; anything else is an error that
/// says why (failed, or compiled out).
pub fn uapi_verdict(output: &str, status_ok: bool) -> Result<Counts> {
    let c = cargo_test_counts(output);
    if c.failed > 0 || (!status_ok && c.passed == 0) {
        bail!("{UAPI_TEST} failed: the hand copies in rust/rdmabond-consumer/src/uapi_fallback.rs differ from the generated header; update them (the output is above)");
    }
    if c.passed != 1 {
        bail!(
            "{UAPI_TEST} did not run ({} passed): it is compiled out without a patched header; \
             rust/rdmabond-consumer/build.rs did not find RDMABOND_UAPI_INCLUDE's if_link.h",
            c.passed
        );
    }
    Ok(c)
}

/// The steps of CI that are other subcommands. A subcommand imports no other, so
/// main.rs, which knows them all, implements this.
pub trait Steps {
    /// `cargo xtask test-qemu` of `variants` (the whole suite, the CI timeout of an
    /// hour): the counts of its tests.
    fn test_qemu(
        &self,
        sh: &Shell,
        project: &Project,
        variants: Vec<Variant>,
        mirror: Option<String>,
        iproute2: Iproute2Arg,
    ) -> Result<Counts>;
    /// `cargo xtask bench --quick`: fails only when the bench itself fails.
    fn bench(&self, sh: &Shell, project: &Project) -> Result<()>;
    /// `cargo xtask check` (`--fast` when `fast`) on the applied series:
    /// (failed, skipped) cells.
    fn gate(
        &self,
        sh: &Shell,
        project: &Project,
        fast: bool,
        iproute2: Iproute2Arg,
    ) -> Result<(usize, usize)>;
    /// `cargo xtask check --seeds` with the same options: (caught, missed).
    fn seeds(
        &self,
        sh: &Shell,
        project: &Project,
        fast: bool,
        iproute2: Iproute2Arg,
    ) -> Result<(usize, usize)>;
}

/// The host dependencies of the steps ci runs.
pub fn ci_deps(no_qemu: bool, no_check: bool) -> Vec<crate::common::deps::Dep> {
    use crate::common::deps::{BUILD, CHECK, FETCH, QEMU};
    let mut deps = BUILD.to_vec();
    if !no_qemu {
        deps.extend_from_slice(FETCH);
        deps.extend_from_slice(QEMU);
    }
    if !no_check {
        deps.extend_from_slice(CHECK);
    }
    deps
}

impl CiArgs {
    pub fn run(self, sh: &Shell, project: &Project, steps: &dyn Steps) -> Result<()> {
        let _d = sh.push_dir(&project.root);
        let mut total = Counts::default();
        let step = |name: &str, ok: bool, total: &mut Counts| {
            println!("ci: {} {name}", if ok { "ok  " } else { "FAIL" });
            total.add(if ok { Outcome::Pass } else { Outcome::Fail });
        };
        // Every host package of every step, in one apt-get run before anything
        // else: a machine that cannot install them fails in its first minute, not
        // after the QEMU tests. (clippy and the unit tests build the Rust consumer,
        // which needs rdma-core's headers and libclang from BUILD.)
        crate::common::deps::ensure(sh, "ci", &ci_deps(self.no_qemu, self.no_check))?;
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
            let run = steps.test_qemu(
                sh,
                project,
                vec![Variant::Y, Variant::Dbg],
                std::env::var("RDMABOND_DEBIAN_MIRROR").ok(),
                Iproute2Arg::from_env(),
            );
            match run {
                Ok(c) => {
                    println!("ci: qemu tests: {}", c.line());
                    total.merge(c);
                }
                Err(e) => {
                    eprintln!("ci: test-qemu could not run: {e:#}");
                    step("cargo xtask test-qemu", false, &mut total);
                }
            }
            // A short bench: its tables in the log, and a failed case when the
            // bench cannot run or measures nothing; a time never fails it.
            match steps.bench(sh, project) {
                Ok(()) => step("cargo xtask bench --quick", true, &mut total),
                Err(e) => {
                    eprintln!("ci: bench: {e:#}");
                    step("cargo xtask bench --quick", false, &mut total);
                }
            }
            // The consumer's uapi test is compiled only against a patched header,
            // which exists now: the `y` build's `make headers` output.
            match uapi_test(project) {
                Ok(c) => {
                    println!("ci: uapi test against the built headers: {}", c.line());
                    total.merge(c);
                }
                Err(e) => {
                    eprintln!("ci: {e:#}");
                    step(UAPI_TEST, false, &mut total);
                }
            }
        }
        if !self.no_check {
            let ok = crate::common::base::fetch(sh, project, None)
                .and_then(|()| crate::common::series::apply::apply(sh, project, false))
                .and_then(|_| steps.gate(sh, project, !self.check_full, Iproute2Arg::from_env()));
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
            match applied
                .then(|| steps.seeds(sh, project, !self.check_full, Iproute2Arg::from_env()))
            {
                Some(Ok((caught, missed))) => {
                    println!("ci: seeded defects: {caught} caught, {missed} missed");
                    total.merge(crate::common::ktap::Counts {
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
    fn ci_installs_the_packages_of_the_steps_it_runs() {
        let packages = |no_qemu, no_check| -> Vec<&str> {
            ci_deps(no_qemu, no_check)
                .iter()
                .map(|d| d.package)
                .collect()
        };
        let all = packages(false, false);
        for p in ["librdmacm-dev", "qemu-system-x86", "dpkg", "shellcheck"] {
            assert!(all.contains(&p), "{p} missing from {all:?}");
        }
        let host = packages(true, true);
        assert!(host.contains(&"librdmacm-dev"));
        assert!(!host.contains(&"qemu-system-x86") && !host.contains(&"shellcheck"));
    }

    #[test]
    fn counts_cargo_test_results() {
        let out = "running 3 tests\n...\ntest result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s\n\
                   test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out\n";
        let c = cargo_test_counts(out);
        assert_eq!((c.passed, c.failed, c.skipped), (5, 1, 1));
    }

    #[test]
    fn the_uapi_test_must_have_run_and_passed() {
        let ran = "\nrunning 1 test\n.\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 41 filtered out; finished in 0.00s\n";
        assert_eq!(uapi_verdict(ran, true).unwrap().passed, 1);
        let compiled_out = "\nrunning 0 tests\n\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 40 filtered out\n";
        let e = format!("{:#}", uapi_verdict(compiled_out, true).unwrap_err());
        assert!(e.contains("did not run"), "{e}");
        let failed =
            "test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 41 filtered out\n";
        let e = format!("{:#}", uapi_verdict(failed, false).unwrap_err());
        assert!(e.contains("differ"), "{e}");
        assert!(uapi_verdict("error: could not compile\n", false).is_err());
    }
}
