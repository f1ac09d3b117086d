//! Cases test-qemu adds to the tests' own: kmemleak after each test, and the
//! built-in KUnit suites that reported nothing.

use std::collections::BTreeMap;

use crate::common::kmemleak;
use crate::common::ktap::{Case, Outcome};
use crate::common::vm;

/// One case per selftest after which the payload scanned for leaks: no unreferenced
/// object. Leaks whose allocation backtrace has none of the series' code are failures
/// too, marked "not ours". What the scan before the first test finds, and objects
/// allocated at boot, were leaked by no test: [`boot_leaks`] prints them, no case
/// counts them.
pub fn kmemleak_cases(lines: &[(f64, String)]) -> Vec<Case> {
    kmemleak::blocks(lines.iter().map(|(_, l)| l.as_str()))
        .into_iter()
        .filter(|b| b.section != vm::BOOT_SECTION)
        .map(|mut b| {
            b.leaks.retain(|l| !l.at_boot());
            let ours = b.leaks.iter().filter(|l| l.ours()).count();
            let directive = b.leaks.first().map(|_| {
                let first = b.leaks.iter().find(|l| l.ours()).unwrap_or(&b.leaks[0]);
                format!(
                    "{} object(s), {ours} ours{}: {}{}",
                    b.leaks.len(),
                    if ours == 0 { " (not ours)" } else { "" },
                    first.summary(),
                    if first.comm.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", first.comm)
                    }
                )
            });
            Case {
                name: format!(
                    "kmemleak after {}: no unreferenced object",
                    b.section.rsplit(':').next().unwrap_or(&b.section)
                ),
                outcome: if b.leaks.is_empty() {
                    Outcome::Pass
                } else {
                    Outcome::Fail
                },
                directive,
                seconds: 0.0,
                subtests: Vec::new(),
            }
        })
        .collect()
}

/// One case per selftest: it left no process running once it ended (the payload
/// names and kills what it left, [`super::payload::LEFTOVERS`]). Such a process
/// held the output of the tests open, and the guest waited for it until its
/// timeout.
pub fn leftover_cases(lines: &[(f64, String)]) -> Vec<Case> {
    lines
        .iter()
        .filter_map(|(_, l)| l.trim_end().strip_prefix(super::payload::LEFTOVERS))
        .filter_map(|rest| {
            // "collection:test: N; PID CMD; ...": a test's name has no ": ".
            let (test, found) = rest.split_once(": ")?;
            let (n, what) = found.split_once("; ").unwrap_or((found, ""));
            let n: usize = n.trim().parse().ok()?;
            Some(Case {
                name: format!(
                    "{} left no process running",
                    test.rsplit(':').next().unwrap_or(test)
                ),
                outcome: if n == 0 { Outcome::Pass } else { Outcome::Fail },
                directive: (n > 0).then(|| format!("{n} killed: {what}")),
                seconds: 0.0,
                subtests: Vec::new(),
            })
        })
        .collect()
}

/// The leaks of the boot (found before the first test, or allocated at boot and
/// found later), one line each.
pub fn boot_leaks(lines: &[(f64, String)]) -> Vec<String> {
    kmemleak::blocks(lines.iter().map(|(_, l)| l.as_str()))
        .into_iter()
        .flat_map(|b| {
            let boot = b.section == vm::BOOT_SECTION;
            b.leaks.into_iter().filter(move |l| boot || l.at_boot())
        })
        .map(|l| l.summary())
        .collect()
}

/// The built-in KUnit suites of the series, with the options that build them in
/// and run them at boot: when all are `y`, the suite must report.
pub const KUNIT_SUITES: &[(&str, &[&str])] = &[(
    "rust_rdmabond",
    &[
        "CONFIG_KUNIT",
        "CONFIG_KUNIT_AUTORUN_ENABLED",
        "CONFIG_RUST",
        "CONFIG_INFINIBAND_RDMABOND",
    ],
)];

/// A failed case for each suite of [`KUNIT_SUITES`] that this .config builds in
/// and runs at boot but that reported nothing (no KTAP of it on the console).
pub fn missing_kunit_suites(dotconfig: &BTreeMap<String, String>, seen: &[Case]) -> Vec<Case> {
    KUNIT_SUITES
        .iter()
        .filter(|(_, options)| {
            options
                .iter()
                .all(|o| dotconfig.get(*o).is_some_and(|v| v == "y"))
        })
        .filter(|(suite, _)| !seen.iter().any(|c| c.name == format!("kunit: {suite}")))
        .map(|(suite, options)| Case {
            name: format!("kunit: {suite}"),
            outcome: Outcome::Fail,
            directive: Some(format!(
                "built in and run at boot ({}=y) but no KTAP of it on the console",
                options.join("=y, ")
            )),
            seconds: 0.0,
            subtests: Vec::new(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaks_make_cases_but_boot_leaks_do_not() {
        let block = |s: &str, body: &str| {
            let mut v = vec![(0.0, format!("{}{s}", kmemleak::BEGIN))];
            v.extend(body.lines().map(|l| (0.0, l.to_string())));
            v.push((0.0, kmemleak::END.to_string()));
            v
        };
        let leak = "unreferenced object 0xffff1 (size 8):\n  comm \"ip\", pid 7, jiffies 1\n  \
                    backtrace (crc 0):\n    kmemleak_alloc+0x1/0x2\n    rxe_foo+0x1/0x2 [rdma_rxe]\n";
        let boot = "unreferenced object 0xffff2 (size 8):\n  comm \"swapper/0\", pid 0, jiffies 1\n  \
                    backtrace (crc 0):\n    ramfs_init_fs_context+0x1/0x2\n    start_kernel+0x1/0x2\n";
        let mut lines = block("boot", leak);
        lines.extend(block("d:a.sh", boot));
        lines.extend(block("d:b.sh", leak));
        let cases = kmemleak_cases(&lines);
        assert_eq!(cases.len(), 2);
        assert_eq!(cases[0].outcome, Outcome::Pass);
        assert_eq!(cases[1].outcome, Outcome::Fail);
        let d = cases[1].directive.as_deref().unwrap();
        assert!(
            d.contains("(not ours)") && d.contains("rxe_foo [rdma_rxe]"),
            "{d}"
        );
        assert_eq!(cases[0].directive, None);
        assert_eq!(boot_leaks(&lines).len(), 2);
    }

    #[test]
    fn a_built_in_kunit_suite_that_reports_nothing_fails() {
        let config = |opts: &[&str]| -> std::collections::BTreeMap<String, String> {
            opts.iter()
                .map(|o| (o.to_string(), "y".to_string()))
                .collect()
        };
        let all = config(KUNIT_SUITES[0].1);
        let missing = missing_kunit_suites(&all, &[]);
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].name, "kunit: rust_rdmabond");
        assert_eq!(missing[0].outcome, Outcome::Fail);
        let seen = vec![Case {
            name: "kunit: rust_rdmabond".into(),
            ..missing[0].clone()
        }];
        assert!(missing_kunit_suites(&all, &seen).is_empty());
        // The debug kernel has KUnit but no Rust: no suite expected.
        let dbg = config(&["CONFIG_KUNIT", "CONFIG_KUNIT_AUTORUN_ENABLED"]);
        assert!(missing_kunit_suites(&dbg, &[]).is_empty());
    }

    #[test]
    fn a_test_that_leaves_a_process_running_fails_its_case() {
        let lines = vec![
            (1.0, "XTASK-LEFTOVERS d/x:a.sh: 0".to_string()),
            (
                2.0,
                "XTASK-LEFTOVERS d/x:b.sh: 1; 345 python3 ynl_server.py a: b ".to_string(),
            ),
            (3.0, "# XTASK-LEFTOVERS d/x:c.sh: 1".to_string()),
        ];
        let c = leftover_cases(&lines);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].name, "a.sh left no process running");
        assert_eq!(c[0].outcome, Outcome::Pass);
        assert_eq!(c[1].outcome, Outcome::Fail);
        assert_eq!(
            c[1].directive.as_deref(),
            Some("1 killed: 345 python3 ynl_server.py a: b")
        );
    }
}
