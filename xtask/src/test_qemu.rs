//! `cargo xtask test-qemu`: fetch + apply + build + boot + run the series' kselftests.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use xshell::Shell;

use crate::apply;
use crate::build::{self, Built, Variant};
use crate::deps;
use crate::kernel;
use crate::ktap::{self, Case, Counts, Outcome};
use crate::project::Project;
use crate::util::{fmt_duration, Phases};
use crate::vm::{self, Accel};

#[path = "consumer.rs"]
mod consumer;

#[derive(Debug, clap::Args)]
pub struct TestQemuArgs {
    /// Run only the tests whose `collection:test` name contains this text.
    #[arg(long)]
    pub filter: Option<String>,
    /// Hard limit for the guest run, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub timeout: u64,
    /// Debian archive URI for the kernel download.
    #[arg(long, env = "RDMABOND_DEBIAN_MIRROR")]
    pub mirror: Option<String>,
    /// Which builds of the series to test, in order: `y` boots the built-in driver
    /// and runs every selftest; `m` builds the driver as a module and runs the tests
    /// that load and unload it (see `MODULE_TESTS`).
    #[arg(long, value_delimiter = ',', default_value = "y,m")]
    pub variants: Vec<Variant>,
}

/// Selftests the module build runs (those that load, use and unload the driver);
/// when the series has none of them yet, the module build runs every test.
pub const MODULE_TESTS: &[&str] = &["teardown.sh"];

/// One boot: a kernel variant and the tests it runs.
struct Stage<'a> {
    variant: Variant,
    filter: Option<&'a str>,
}

impl<'a> Stage<'a> {
    fn new(variant: Variant, filter: Option<&'a str>) -> Self {
        Stage { variant, filter }
    }

    fn title(&self) -> &'static str {
        match self.variant {
            Variant::Y => "built-in driver (=y)",
            Variant::M => "driver as a module (=m)",
        }
    }

    /// Whether the stage runs the Rust consumer (rust/) after the kselftests.
    fn consumer(&self) -> bool {
        self.variant == Variant::Y && consumer::wanted(self.filter)
    }

    /// The tests this stage runs, as `-t` selections (empty: all).
    fn select(&self, list: &str) -> Result<Vec<String>> {
        if self.filter.is_some() || self.variant == Variant::Y {
            return select_tests(list, self.filter);
        }
        let picked: Vec<String> = list
            .lines()
            .map(str::trim)
            .filter(|t| MODULE_TESTS.iter().any(|m| t.ends_with(&format!(":{m}"))))
            .map(str::to_string)
            .collect();
        Ok(picked)
    }

    /// Boots the kernel, runs the tests and turns the output into cases; the names
    /// of the module stage's cases carry a `[=m]` prefix.
    fn run(
        &self,
        project: &Project,
        built: &Built,
        accel: Accel,
        timeout: u64,
    ) -> Result<(Vec<Case>, TestRun)> {
        let outcome = run_tests(project, built, accel, self, timeout)?;
        let report = ktap::parse(outcome.vm.lines.iter().map(|(t, l)| (*t, l.as_str())));
        let mut cases: Vec<Case> = built
            .checks
            .iter()
            .map(|name| Case {
                name: format!("build: {name}"),
                outcome: Outcome::Pass,
                directive: None,
                seconds: 0.0,
                subtests: Vec::new(),
            })
            .collect();
        cases.push(outcome.boot_case());
        cases.extend(report.cases.iter().cloned());
        for _ in 0..report.missing() {
            cases.push(Case {
                name: "(a planned test never reported: crash or timeout)".into(),
                outcome: Outcome::Fail,
                directive: None,
                seconds: 0.0,
                subtests: Vec::new(),
            });
        }
        if let Some(reason) = &report.bail_out {
            eprintln!("the guest bailed out: {reason}");
        }
        let console = std::fs::read_to_string(&outcome.vm.console_log).unwrap_or_default();
        cases.extend(kunit_cases(&console));
        cases.push(outcome.kernel_log_case());
        if self.variant == Variant::M {
            for c in &mut cases {
                c.name = format!("[=m] {}", c.name);
            }
        }
        Ok((cases, outcome))
    }
}

impl TestQemuArgs {
    pub fn run(self, sh: &Shell, project: &Project) -> Result<()> {
        let counts = self.run_counted(sh, project)?;
        println!("{}", counts.line());
        if counts.failed > 0 {
            bail!("{} test(s) failed", counts.failed);
        }
        Ok(())
    }

    /// Runs everything and returns the counts (printed lines included).
    pub fn run_counted(&self, sh: &Shell, project: &Project) -> Result<Counts> {
        let mut phases = Phases::default();
        phases.run("deps", || {
            deps::ensure(sh, "kernel fetch", deps::FETCH)?;
            deps::ensure(sh, "the kernel build", deps::BUILD)?;
            deps::ensure(sh, "the QEMU tests", deps::QEMU)
        })?;
        phases.run("fetch", || {
            kernel::fetch(sh, project, self.mirror.as_deref())
        })?;
        phases.run("apply", || apply::apply(sh, project, false).map(|_| ()))?;
        let mut counts = Counts::default();
        let mut accel = None;
        for &variant in &self.variants {
            let built = phases.run(&format!("build-{}", variant.name()), || {
                build::build(sh, project, variant, false)
            })?;
            let accel = match accel {
                Some(a) => a,
                None => {
                    let (a, why) = phases.run("accel", || {
                        vm::choose_accel(|| cached_probe(project, &built.image))
                    })?;
                    eprintln!("accelerator: {a:?} ({why})");
                    accel = Some(a);
                    a
                }
            };
            let stage = Stage::new(variant, self.filter.as_deref());
            let (mut cases, outcome) = phases.run(&format!("tests-{}", variant.name()), || {
                stage.run(project, &built, accel, self.timeout)
            })?;
            let rbc = stage
                .consumer()
                .then(|| consumer::results(project, &outcome.vm.lines));
            cases.extend(rbc.iter().flat_map(|r| r.cases.clone()));
            for c in &cases {
                counts.add_case(c);
            }
            let mut lines = Vec::new();
            ktap::render(&cases, 0, &mut lines);
            println!();
            println!(
                "test results, {} ({}):",
                stage.title(),
                outcome.vm.console_log.display()
            );
            for l in &lines {
                println!("  {l}");
            }
            if !outcome.vm.problems.is_empty() {
                println!("kernel log problems:");
                for p in outcome.vm.problems.iter().take(40) {
                    println!("  | {p}");
                }
            }
            println!(
                "  boot {}, tests {}",
                fmt_duration(Duration::from_secs_f64(outcome.vm.boot_seconds)),
                fmt_duration(Duration::from_secs_f64(outcome.vm.payload_seconds))
            );
            rbc.iter().for_each(consumer::Results::print);
        }
        println!("{}", phases.summary());
        Ok(counts)
    }
}

/// The KVM probe's verdict, remembered per host kernel (a broken nested KVM stays
/// broken until the host changes); delete the cache file to probe again.
pub fn cached_probe(project: &Project, image: &Path) -> Result<bool> {
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let key = format!("host {}", host.trim());
    let file = project.cache_dir()?.join("kvm-probe");
    if let Ok(text) = std::fs::read_to_string(&file) {
        if let Some(verdict) = text.strip_prefix(&format!("{key}: ")) {
            eprintln!("KVM probe result cached in {}", file.display());
            return Ok(verdict.trim() == "works");
        }
    }
    let works = probe_kvm(project, image)?;
    let verdict = if works { "works" } else { "fails" };
    crate::util::write_atomic(&file, format!("{key}: {verdict}\n").as_bytes())?;
    Ok(works)
}

/// Boots the kernel once with KVM and a trivial payload.
fn probe_kvm(project: &Project, image: &Path) -> Result<bool> {
    let run = vm::Run {
        image: image.to_path_buf(),
        modroot: None,
        root: project.root.clone(),
        dir: project.target_dir().join("vm/kvm-probe"),
        payload: "echo probe-ok\n".into(),
        timeout: Duration::from_secs(20),
        accel: Accel::Kvm,
        cmdline: String::new(),
    };
    let out = vm::run(&run, |_, _| {})?;
    Ok(out.exit == Some(0) && out.fatal.is_none())
}

struct TestRun {
    vm: vm::Outcome,
}

impl TestRun {
    fn boot_case(&self) -> Case {
        let ok = self.vm.boot_seconds > 0.0 && self.vm.fatal.is_none() || self.vm.exit.is_some();
        let directive = if ok {
            None
        } else if let Some(f) = &self.vm.fatal {
            Some(f.clone())
        } else if self.vm.timed_out {
            Some("timed out before init ran the tests".into())
        } else {
            Some("the guest never reached the test payload".into())
        };
        Case {
            name: "guest boots and runs the tests".into(),
            outcome: if ok { Outcome::Pass } else { Outcome::Fail },
            directive,
            seconds: self.vm.boot_seconds,
            subtests: Vec::new(),
        }
    }

    fn kernel_log_case(&self) -> Case {
        let mut directive = None;
        let mut outcome = Outcome::Pass;
        if let Some(f) = &self.vm.fatal {
            outcome = Outcome::Fail;
            directive = Some(f.clone());
        } else if let Some(first) = self.vm.problems.first() {
            outcome = Outcome::Fail;
            directive = Some(first.trim().to_string());
        } else if self.vm.timed_out {
            outcome = Outcome::Fail;
            directive = Some("the guest run hit its time limit".into());
        } else if self.vm.exit.is_none() {
            outcome = Outcome::Fail;
            directive = Some("the guest stopped before the payload finished".into());
        }
        Case {
            name: "kernel log: no panic, oops, BUG or WARNING".into(),
            outcome,
            directive,
            seconds: 0.0,
            subtests: Vec::new(),
        }
    }
}

/// The built-in KUnit suites, which run at boot and print KTAP to the kernel console:
/// their results as cases named `kunit: SUITE`, timed by the printk timestamps.
pub fn kunit_cases(console: &str) -> Vec<Case> {
    let mut lines = Vec::new();
    let mut started = false;
    for raw in console.lines() {
        let raw = raw.trim_end_matches('\r');
        let (t, text) = match raw.strip_prefix('[').and_then(|r| r.split_once("] ")) {
            Some((ts, rest)) => match ts.trim().parse::<f64>() {
                Ok(t) => (t, rest),
                Err(_) => continue,
            },
            None => continue,
        };
        if !started {
            // KUnit's stream starts with its own version line and plan.
            if text.trim() != "KTAP version 1" {
                continue;
            }
            started = true;
        }
        let trimmed = text.trim_start();
        let ktap = trimmed.starts_with("KTAP version")
            || trimmed.starts_with("ok ")
            || trimmed.starts_with("not ok ")
            || trimmed.starts_with("# ")
            || trimmed.split_once("..").is_some_and(|(a, b)| {
                a.chars().all(|c| c.is_ascii_digit()) && b.chars().all(|c| c.is_ascii_digit())
            });
        if ktap {
            lines.push((t, text.to_string()));
        }
    }
    let report = ktap::parse(lines.iter().map(|(t, l)| (*t, l.as_str())));
    report
        .cases
        .into_iter()
        .map(|mut c| {
            c.name = format!("kunit: {}", c.name);
            c
        })
        .collect()
}

/// The `-t collection:test` arguments for a filter, from kselftest-list.txt.
pub fn select_tests(list: &str, filter: Option<&str>) -> Result<Vec<String>> {
    let all: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|l| l.contains(':'))
        .collect();
    let Some(f) = filter else {
        return Ok(Vec::new());
    };
    let picked: Vec<String> = all
        .iter()
        .filter(|t| t.contains(f))
        .map(|t| t.to_string())
        .collect();
    if picked.is_empty() {
        bail!(
            "no test matches --filter {f}; the series has: {}",
            all.join(", ")
        );
    }
    Ok(picked)
}

fn run_tests(
    project: &Project,
    built: &Built,
    accel: Accel,
    stage: &Stage,
    timeout: u64,
) -> Result<TestRun> {
    let mut payload = match &built.kselftest {
        Some(_) if stage.filter.is_some() && stage.consumer() => String::new(),
        Some(dir) => {
            let list = std::fs::read_to_string(dir.join("kselftest-list.txt"))
                .with_context(|| format!("no kselftest-list.txt in {}", dir.display()))?;
            let picked = stage.select(&list)?;
            let args: String = picked.iter().map(|t| format!(" -t '{t}'")).collect();
            format!(
                "# Written by cargo xtask test-qemu.\ncd '{}' || exit 1\n./run_kselftest.sh{args}\n",
                vm::guest_path(&project.root, dir)?
            )
        }
        None => {
            eprintln!("the series adds no selftest directory: only booting");
            "echo 'TAP version 13'\necho '1..0'\n".to_string()
        }
    };
    if stage.consumer() {
        payload.push_str(&consumer::payload(project, built)?);
    }
    let run = vm::Run {
        image: built.image.clone(),
        modroot: Some(built.modroot.clone()),
        root: project.root.clone(),
        dir: project
            .target_dir()
            .join(format!("vm/test-qemu-{}", stage.variant.name())),
        payload,
        timeout: Duration::from_secs(timeout),
        accel,
        cmdline: String::new(),
    };
    eprintln!(
        "booting {} ({accel:?}); console: {}",
        built.image.display(),
        run.dir.join("console.log").display()
    );
    let out = vm::run(&run, |t, line| eprintln!("[{t:7.1}] {line}"))?;
    Ok(TestRun { vm: out })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_selects_by_substring() {
        let list = "drivers/net/rdmabond:topology.sh\ndrivers/net/rdmabond:failover.sh\n";
        assert!(select_tests(list, None).unwrap().is_empty());
        assert_eq!(
            select_tests(list, Some("fail")).unwrap(),
            vec!["drivers/net/rdmabond:failover.sh"]
        );
        let err = select_tests(list, Some("nope")).unwrap_err().to_string();
        assert!(err.contains("topology.sh"), "{err}");
    }

    #[test]
    fn kunit_results_come_from_the_console() {
        let console = "[    0.500000] Run /init as init process\n\
            [    1.000000] KTAP version 1\n\
            [    1.000001] 1..1\n\
            [    1.000002]     KTAP version 1\n\
            [    1.000003]     # Subtest: rust_rdmabond\n\
            [    1.000004]     # speed: normal\n\
            [    1.000005]     1..2\n\
            [    1.100000] virtio_net virtio0: something else\n\
            [    1.200000]     ok 1 rust_rdmabond_event_kind\n\
            [    1.300000]     not ok 2 rust_rdmabond_address_format\n\
            [    1.400000] # rust_rdmabond: pass:1 fail:1 skip:0 total:2\n\
            [    1.400001] not ok 1 rust_rdmabond\n";
        let cases = kunit_cases(console);
        assert_eq!(cases.len(), 1);
        assert_eq!(cases[0].name, "kunit: rust_rdmabond");
        assert_eq!(cases[0].outcome, Outcome::Fail);
        assert_eq!(cases[0].subtests.len(), 2);
        assert_eq!(cases[0].subtests[1].outcome, Outcome::Fail);
        let mut counts = Counts::default();
        counts.add_case(&cases[0]);
        assert_eq!((counts.passed, counts.failed), (1, 1));
        // No KUnit output: no cases.
        assert!(kunit_cases("[    0.1] Linux version 7.3.4\n").is_empty());
    }

    #[test]
    fn module_stage_runs_the_module_tests() {
        let list = "drivers/net/rdmabond:topology.sh\ndrivers/net/rdmabond:basic.sh\n\
                    drivers/net/rdmabond:teardown.sh\ndrivers/net/rdmabond:failover.sh\n";
        let m = Stage::new(Variant::M, None);
        assert_eq!(
            m.select(list).unwrap(),
            vec!["drivers/net/rdmabond:teardown.sh"]
        );
        // Without any module test the stage runs everything (no -t arguments).
        assert!(m
            .select("drivers/net/rdmabond:topology.sh\n")
            .unwrap()
            .is_empty());
        // The built-in stage runs everything; a filter applies to both.
        assert!(Stage::new(Variant::Y, None)
            .select(list)
            .unwrap()
            .is_empty());
        assert_eq!(
            Stage::new(Variant::M, Some("fail")).select(list).unwrap(),
            vec!["drivers/net/rdmabond:failover.sh"]
        );
    }
}
