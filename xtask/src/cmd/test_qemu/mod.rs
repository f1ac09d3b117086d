//! `cargo xtask test-qemu`: fetch + apply + build + boot + run the series' kselftests.

mod cases;
mod payload;

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use xshell::Shell;

use crate::common::base;
use crate::common::consumer;
use crate::common::deps;
use crate::common::kbuild::{self, config, Built, Variant};
use crate::common::kmemleak;
use crate::common::ktap::{self, Case, Counts, Outcome};
use crate::common::project::Project;
use crate::common::series::apply;
use crate::common::util::{fmt_duration, Phases};
use crate::common::vm::{self, Accel};
use cases::{boot_leaks, kmemleak_cases, leftover_cases, missing_kunit_suites};
use payload::{list_tests, select_tests, selftest_payload, test_started, timeout_words};

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
    /// and runs every selftest (but `DBG_TESTS` when the run has `dbg` or `kasan`,
    /// which run them); `m` builds the driver as a module and runs the tests
    /// that load and unload it (see `MODULE_TESTS`); `dbg` is `m` on a debug kernel
    /// (lockdep, kmemleak, reference trackers, ...) and runs `DBG_TESTS`; `kasan`
    /// is `dbg` with KASAN (not run by default: about ten times slower under TCG).
    #[arg(long, value_delimiter = ',', default_value = "y,dbg")]
    pub variants: Vec<Variant>,
    #[command(flatten)]
    pub iproute2: crate::common::iproute2::Iproute2Arg,
    /// Who runs the selftests of the `y` build: `xtask` (this runner: one boot,
    /// a kernel-log case per test) or `vng`: virtme-ng runs `make -C
    /// tools/testing/selftests TARGETS=<dir> run_tests` in the kernel tree, as
    /// the netdev CI does (`[vng]` cases); the KUnit suites and the consumer then
    /// run in an xtask boot of their own. Other builds always use `xtask`.
    #[arg(long, value_enum, default_value = "xtask")]
    pub runner: Runner,
}

/// See [`TestQemuArgs::runner`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Runner {
    Xtask,
    Vng,
}

/// Selftests the module build runs (those that load, use and unload the driver);
/// when the series has none of them yet, the module build runs every test.
pub const MODULE_TESTS: &[&str] = &["teardown.sh"];

/// Selftests the debug kernel runs: teardown.sh takes every reference and lock path
/// of the driver (failover and failback, deleting the group, removing ports, moving
/// and deleting namespaces, unloading the module mid-failover, rdma link del/add
/// racing with master/nomaster), netlink.sh every error path of the netlink
/// parsing. A run that boots the debug kernel leaves them to it, and its `=y` stage
/// runs the others (see `Stage::leave`): each test runs once, on the kernel where
/// it tells the most.
/// Under TCG the debug kernel runs these tests five to eight times slower than
/// `=y` (each process start costs about a second there): basic.sh 403 s (98 s on
/// `=y`), storm.sh 494 s (173 s), teardown.sh 958 s (187 s) on 2026-12-07. basic.sh
/// and storm.sh, which went through the same paths, ran there too until then: with
/// them CI took 83 minutes, over its budget, and they are left to `=y`.
pub const DBG_TESTS: &[&str] = &["teardown.sh", "netlink.sh"];

/// Whether a run of `variants` leaves [`DBG_TESTS`] out of its `=y` stage: it boots
/// a debug kernel, which runs them, and no --filter chose the tests.
pub fn y_leaves_dbg_tests(variants: &[Variant], filter: Option<&str>) -> bool {
    filter.is_none()
        && variants
            .iter()
            .any(|v| matches!(v, Variant::Dbg | Variant::Kasan))
}

/// The tests of `list` (`collection:test` lines) whose file is not in `names`.
pub fn tests_without(list: &str, names: &[&str]) -> Vec<String> {
    list_tests(list)
        .into_iter()
        .filter(|t| !names.iter().any(|n| t.ends_with(&format!(":{n}"))))
        .collect()
}
/// One boot: a kernel variant and the tests it runs.
struct Stage<'a> {
    variant: Variant,
    filter: Option<&'a str>,
    /// The patched `ip` the selftests get as RB_IP (see iproute2.rs).
    rb_ip: Option<&'a Path>,
    /// The selftests ran elsewhere (vng): boot for KUnit and the consumer only.
    no_selftests: bool,
    /// Tests this stage leaves to another stage of the run (the `=y` stage, to
    /// the debug kernel: [`y_leaves_dbg_tests`]).
    leave: &'a [&'a str],
}

impl<'a> Stage<'a> {
    fn new(variant: Variant, filter: Option<&'a str>) -> Self {
        Stage {
            variant,
            filter,
            rb_ip: None,
            no_selftests: false,
            leave: &[],
        }
    }

    fn title(&self) -> &'static str {
        match self.variant {
            Variant::Y => "built-in driver (=y)",
            Variant::M => "driver as a module (=m)",
            Variant::Dbg => "debug kernel, driver as a module (dbg)",
            Variant::Kasan => "debug kernel with KASAN, driver as a module (kasan)",
        }
    }

    /// The prefix of this stage's case names.
    fn prefix(&self) -> &'static str {
        match self.variant {
            Variant::Y => "",
            Variant::M => "[=m] ",
            Variant::Dbg => "[dbg] ",
            Variant::Kasan => "[kasan] ",
        }
    }

    /// Whether the stage runs the Rust consumer (rust/) after the kselftests.
    fn consumer(&self) -> bool {
        self.variant == Variant::Y && consumer::wanted(self.filter)
    }

    /// The tests this stage runs, spelled out: [`Stage::select`], with "every test"
    /// as the list's tests.
    fn tests(&self, list: &str) -> Result<Vec<String>> {
        let picked = self.select(list)?;
        Ok(if picked.is_empty() {
            list_tests(list)
        } else {
            picked
        })
    }

    /// The tests this stage runs, as `collection:test` names, in list order.
    fn select(&self, list: &str) -> Result<Vec<String>> {
        if self.filter.is_none() && !self.leave.is_empty() {
            let picked = tests_without(list, self.leave);
            if !picked.is_empty() {
                return Ok(picked);
            }
        }
        if self.filter.is_some() || self.variant == Variant::Y {
            return select_tests(list, self.filter);
        }
        let wanted = match self.variant {
            Variant::Dbg | Variant::Kasan => DBG_TESTS,
            _ => MODULE_TESTS,
        };
        let picked: Vec<String> = list
            .lines()
            .map(str::trim)
            .filter(|t| wanted.iter().any(|m| t.ends_with(&format!(":{m}"))))
            .map(str::to_string)
            .collect();
        if picked.is_empty() {
            // The series has none of them yet: run everything.
            return select_tests(list, None);
        }
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
        let report = ktap::parse(kmemleak::filter_ktap(&outcome.vm.lines));
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
        // KUnit's KTAP from the console as it came (not re-read from console.log).
        let kunit = ktap::kunit_cases(&outcome.vm.console);
        let dotconfig = fs_err::read_to_string(built.dir.join(".config")).unwrap_or_default();
        cases.extend(missing_kunit_suites(
            &config::parse_dotconfig(&dotconfig),
            &kunit,
        ));
        cases.extend(kunit);
        cases.extend(outcome.kernel_log_cases());
        cases.extend(kmemleak_cases(&outcome.vm.lines));
        cases.extend(leftover_cases(&outcome.vm.lines));
        for c in &mut cases {
            c.name = format!("{}{}", self.prefix(), c.name);
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
        phases.run("fetch", || base::fetch(sh, project, self.mirror.as_deref()))?;
        phases.run("apply", || apply::apply(sh, project, false).map(|_| ()))?;
        let rb_ip = phases.run("iproute2", || {
            crate::common::iproute2::for_tests(sh, project, &self.iproute2)
        })?;
        let mut counts = Counts::default();
        let mut accel = None;
        for &variant in &self.variants {
            let built = phases.run(&format!("build-{}", variant.name()), || {
                kbuild::build(sh, project, variant, false)
            })?;
            let accel = match accel {
                Some(a) => a,
                None => {
                    let (a, why) = phases.run("accel", || {
                        vm::choose_accel(|| vm::probe::cached_probe(project, &built.image))
                    })?;
                    eprintln!("accelerator: {a:?} ({why})");
                    accel = Some(a);
                    a
                }
            };
            let vng = variant == Variant::Y && self.runner == Runner::Vng;
            let leave: &[&str] = if variant == Variant::Y
                && y_leaves_dbg_tests(&self.variants, self.filter.as_deref())
            {
                println!(
                    "=y leaves {} to the debug kernel, which runs them in this run",
                    DBG_TESTS.join(", ")
                );
                DBG_TESTS
            } else {
                &[]
            };
            let stage = Stage {
                rb_ip: rb_ip.as_deref(),
                no_selftests: vng,
                leave,
                ..Stage::new(variant, self.filter.as_deref())
            };
            if vng {
                let cases = phases.run("tests-vng", || {
                    run_vng(sh, project, &built, accel, &stage, self.timeout)
                })?;
                for c in &cases {
                    counts.add_case(c);
                }
                let mut lines = Vec::new();
                ktap::render(&cases, 0, &mut lines);
                println!();
                println!("test results, built-in driver (=y) under virtme-ng:");
                for l in &lines {
                    println!("  {l}");
                }
            }
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
                println!("kernel reports:");
                for p in outcome.vm.problems.iter().take(10) {
                    println!("  during {}:", p.section);
                    for l in &p.lines {
                        println!("  | {l}");
                    }
                }
            }
            for l in boot_leaks(&outcome.vm.lines) {
                println!("  kmemleak before the first test (leaked at boot, not counted): {l}");
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

/// The `y` build's selftests under virtme-ng; the case names get a `[vng] `
/// prefix.
fn run_vng(
    sh: &Shell,
    project: &Project,
    built: &Built,
    accel: Accel,
    stage: &Stage,
    timeout: u64,
) -> Result<Vec<Case>> {
    let rb_ip = stage.rb_ip;
    let Some(ksft) = &built.kselftest else {
        bail!("--runner vng: the series adds no selftests");
    };
    let Some(target) = built.targets.first() else {
        bail!("--runner vng: the series adds no selftest TARGETS");
    };
    crate::common::vng::ensure_installed()?;
    let list = std::fs::read_to_string(ksft.join("kselftest-list.txt"))
        .with_context(|| format!("no kselftest-list.txt in {}", ksft.display()))?;
    let picked = stage.tests(&list)?;
    let names: Vec<String> = picked
        .iter()
        .filter(|t| t.starts_with(&format!("{target}:")))
        .map(|t| t.rsplit(':').next().unwrap_or(t).to_string())
        .collect();
    let log_dir = project.target_dir().join("vm/vng");
    crate::common::vng::prebuild(sh, &project.tree, target, &log_dir.join("build.log"))?;
    // TEST_PROGS only when the run does not want the target's whole list.
    let subset = picked.len() != list_tests(&list).len();
    let inner = crate::common::vng::make_command(target, subset.then_some(names.as_slice()));
    // vng's guest sees the host's root: host paths are guest paths.
    let mut env: Vec<(String, String)> = vec![(
        "CLANG".to_string(),
        crate::common::deps::SELFTEST_CLANG.to_string(),
    )];
    env.extend(rb_ip.map(|p| ("RB_IP".to_string(), p.display().to_string())));
    let args = crate::common::vng::command_line(
        &built.image,
        &project.tree,
        accel == Accel::Kvm,
        &inner,
        &env,
    );
    println!(
        "vng: cd {} && {}",
        project.tree.display(),
        args.iter()
            .map(|a| crate::common::util::sh_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let log = log_dir.join("output.log");
    let out = crate::common::vng::run(&args, Duration::from_secs(timeout), &log)?;
    println!(
        "vng: exit {:?} after {:.0} s (output: {})",
        out.exit,
        out.seconds,
        log.display()
    );
    let mut cases = crate::common::vng::cases(&out, names.len());
    for c in &mut cases {
        c.name = format!("[vng] {}", c.name);
    }
    Ok(cases)
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

    /// One case per section of the kernel log (boot, then each selftest): no
    /// report appeared while it ran; then one for the run as a whole.
    fn kernel_log_cases(&self) -> Vec<Case> {
        let mut sections = vec![vm::BOOT_SECTION.to_string()];
        sections.extend(self.vm.sections.iter().cloned());
        let mut out: Vec<Case> = sections
            .iter()
            .map(|s| {
                let splats: Vec<&vm::Splat> =
                    self.vm.problems.iter().filter(|p| &p.section == s).collect();
                let directive = splats.first().map(|p| {
                    let more = splats.len() - 1;
                    let detail: Vec<&str> =
                        p.lines.iter().skip(1).take(3).map(|l| l.trim()).collect();
                    format!(
                        "{}{} | {}",
                        p.title(),
                        if more > 0 { format!(" (and {more} more)") } else { String::new() },
                        detail.join(" | ")
                    )
                });
                Case {
                    name: format!(
                        "kernel log during {}: no WARNING, BUG, lockdep, KASAN, RCU or refcount report",
                        s.rsplit(':').next().unwrap_or(s)
                    ),
                    outcome: if splats.is_empty() { Outcome::Pass } else { Outcome::Fail },
                    directive,
                    seconds: 0.0,
                    subtests: Vec::new(),
                }
            })
            .collect();
        out.push(self.kernel_log_case());
        out
    }

    fn kernel_log_case(&self) -> Case {
        let mut directive = None;
        let mut outcome = Outcome::Pass;
        if let Some(f) = &self.vm.fatal {
            outcome = Outcome::Fail;
            directive = Some(f.clone());
        } else if self.vm.timed_out {
            outcome = Outcome::Fail;
            directive = Some("the guest run hit its time limit".into());
        } else if self.vm.exit.is_none() {
            outcome = Outcome::Fail;
            directive = Some("the guest stopped before the payload finished".into());
        }
        Case {
            name: "guest run: no panic, finished within its time limit".into(),
            outcome,
            directive,
            seconds: 0.0,
            subtests: Vec::new(),
        }
    }
}

fn run_tests(
    project: &Project,
    built: &Built,
    accel: Accel,
    stage: &Stage,
    timeout: u64,
) -> Result<TestRun> {
    // The tests the guest runs, each with its timeout (for the start lines).
    let mut started: Vec<(String, String)> = Vec::new();
    let mut payload = match &built.kselftest {
        Some(_) if stage.no_selftests || (stage.filter.is_some() && stage.consumer()) => {
            String::new()
        }
        Some(dir) => {
            let list = fs_err::read_to_string(dir.join("kselftest-list.txt"))
                .with_context(|| format!("no kselftest-list.txt in {}", dir.display()))?;
            let picked = stage.tests(&list)?;
            for t in &picked {
                let collection = t.split_once(':').map_or(t.as_str(), |(c, _)| c);
                let settings = fs_err::read_to_string(dir.join(collection).join("settings")).ok();
                started.push((t.clone(), timeout_words(settings.as_deref())));
            }
            selftest_payload(&vm::guest_path(&project.root, dir)?, &picked)
        }
        None => {
            eprintln!("the series adds no selftest directory: only booting");
            "echo 'TAP version 13'\necho '1..0'\n".to_string()
        }
    };
    payload.insert_str(
        0,
        &crate::common::iproute2::payload_env(&project.root, stage.rb_ip)?,
    );
    if stage.consumer() {
        payload.push_str(&format!(
            "echo '{}rust consumer' >/dev/kmsg\n",
            vm::SECTION_MARK
        ));
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
    let tests: Vec<String> = started.iter().map(|(t, _)| t.clone()).collect();
    let out = vm::run(&run, |t, line| {
        if let Some(i) = test_started(line, &tests) {
            eprintln!(
                "test-qemu: test {}/{} started: {} (timeout {})",
                i + 1,
                tests.len(),
                started[i].0,
                started[i].1
            );
        }
        eprintln!("[{t:7.1}] {line}")
    })?;
    Ok(TestRun { vm: out })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_stage_runs_the_module_tests() {
        let list = "drivers/net/rdmabond:topology.sh\ndrivers/net/rdmabond:basic.sh\n\
                    drivers/net/rdmabond:teardown.sh\ndrivers/net/rdmabond:failover.sh\n";
        let m = Stage::new(Variant::M, None);
        assert_eq!(
            m.select(list).unwrap(),
            vec!["drivers/net/rdmabond:teardown.sh"]
        );
        // Without any module test the stage runs everything.
        assert!(m
            .select("drivers/net/rdmabond:topology.sh\n")
            .unwrap()
            .is_empty());
        // The debug stage runs its own list, in the list's order.
        let list_nl = format!("{list}drivers/net/rdmabond:netlink.sh\n");
        assert_eq!(
            Stage::new(Variant::Dbg, None).select(&list_nl).unwrap(),
            vec![
                "drivers/net/rdmabond:teardown.sh",
                "drivers/net/rdmabond:netlink.sh"
            ]
        );
        // A =y stage that leaves them to the debug kernel runs the others.
        let y = Stage {
            leave: DBG_TESTS,
            ..Stage::new(Variant::Y, None)
        };
        assert_eq!(
            y.select(&list_nl).unwrap(),
            vec![
                "drivers/net/rdmabond:topology.sh",
                "drivers/net/rdmabond:basic.sh",
                "drivers/net/rdmabond:failover.sh"
            ]
        );
        // ... and everything when nothing else is left.
        assert!(y
            .select("drivers/net/rdmabond:teardown.sh\n")
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

    #[test]
    fn y_leaves_the_debug_tests_only_to_a_debug_kernel_of_the_same_run() {
        assert!(y_leaves_dbg_tests(&[Variant::Y, Variant::Dbg], None));
        assert!(y_leaves_dbg_tests(&[Variant::Kasan, Variant::Y], None));
        assert!(!y_leaves_dbg_tests(&[Variant::Y], None));
        assert!(!y_leaves_dbg_tests(&[Variant::Y, Variant::M], None));
        // A filter picks the tests of every stage itself.
        assert!(!y_leaves_dbg_tests(
            &[Variant::Y, Variant::Dbg],
            Some("basic")
        ));
    }
}
