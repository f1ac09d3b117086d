//! The guest's test script: which tests run (kselftest-list.txt, a filter), the
//! script that runs them one by one, and the start line of each with its timeout.

use anyhow::{bail, Result};

use crate::common::kmemleak;
use crate::common::vm;

/// kselftest's timeout of a test: the `timeout=` of its directory's `settings`
/// file, else the runner's default of 45 s; as words for the start line.
pub fn timeout_words(settings: Option<&str>) -> String {
    let set = settings.and_then(|s| {
        s.lines()
            .find_map(|l| l.trim().strip_prefix("timeout="))
            .and_then(|v| v.trim().parse::<u64>().ok())
    });
    match set {
        Some(0) => "none (settings: timeout=0)".into(),
        Some(n) => format!("{n} s, from settings"),
        None => "45 s, kselftest's default".into(),
    }
}

/// Which of `tests` (`collection:test`) a line of the guest starts: the runner
/// prints `# selftests: COLLECTION: TEST` as it starts one.
pub fn test_started(line: &str, tests: &[String]) -> Option<usize> {
    let rest = line.trim().strip_prefix("# selftests: ")?;
    let (collection, test) = rest.split_once(": ")?;
    let name = format!("{}:{}", collection.trim(), test.trim());
    tests.iter().position(|t| *t == name)
}

/// Every `collection:test` of kselftest-list.txt.
pub fn list_tests(list: &str) -> Vec<String> {
    list.lines()
        .map(str::trim)
        .filter(|l| l.contains(':'))
        .map(str::to_string)
        .collect()
}

/// The guest script that runs `tests` one by one with run_kselftest.sh as one TAP
/// stream (each run's `ok 1` renumbered), marks each test's start in the kernel log
/// (so a report names the test it appeared during), and, when the kernel has
/// kmemleak, scans after each test and prints what it found between
/// [`kmemleak::BEGIN`] and [`kmemleak::END`] (as the netdev CI's debug runners do).
pub fn selftest_payload(dir: &str, tests: &[String]) -> String {
    let mut s = format!(
        "# Written by cargo xtask test-qemu.\n\
         cd '{dir}' || exit 1\n\
         kml=/sys/kernel/debug/kmemleak\n\
         # kmemleak reports an object only once it is 5 s old and unchanged since the\n\
         # previous scan (a new object's first scan records its checksum): wait, then\n\
         # scan twice, so that a leak from the end of a test is that test's.\n\
         kml_scan() {{ sleep 5; echo scan >$kml; echo scan >$kml; }}\n\
         # Leaks from boot are not any test's: report them as the boot's.\n\
         if [ -w $kml ]; then\n\
         \tkml_scan; echo '{begin}boot'; cat $kml; echo '{end}'; echo clear >$kml\n\
         fi\n\
         echo 'TAP version 13'\n\
         echo '1..{n}'\n",
        begin = kmemleak::BEGIN,
        end = kmemleak::END,
        n = tests.len()
    );
    for (i, t) in tests.iter().enumerate() {
        let n = i + 1;
        s.push_str(&format!(
            "echo '{mark}{t}' >/dev/kmsg\n\
             ./run_kselftest.sh -t '{t}' 2>&1 | sed -u -e '/^TAP version 13$/d' -e '/^1\\.\\.1$/d' -e '/^# Totals: /d' \\\n\
             \t-e 's/^ok 1 /ok {n} /' -e 's/^not ok 1 /not ok {n} /'\n\
             if [ -w $kml ]; then\n\
             \tkml_scan; echo '{begin}{t}'; cat $kml; echo '{end}'; echo clear >$kml\n\
             fi\n",
            mark = vm::SECTION_MARK,
            begin = kmemleak::BEGIN,
            end = kmemleak::END,
        ));
    }
    s.push_str(&format!(
        "echo '{}(after the tests)' >/dev/kmsg\n",
        vm::SECTION_MARK
    ));
    s
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
    fn payload_runs_each_test_with_marks_and_scans() {
        let tests = vec!["d:a.sh".to_string(), "d:b.sh".to_string()];
        let p = selftest_payload("/mnt/k", &tests);
        assert!(p.contains("echo '1..2'"), "{p}");
        assert!(p.contains("echo 'xtask-section: d:b.sh' >/dev/kmsg"), "{p}");
        assert!(p.contains("./run_kselftest.sh -t 'd:b.sh'"), "{p}");
        assert!(p.contains("s/^not ok 1 /not ok 2 /"), "{p}");
        assert!(p.contains("XTASK-KMEMLEAK-BEGIN d:a.sh"), "{p}");
        // A new object is reported by its second scan, once 5 s old: each test's
        // report is printed after the wait and two scans.
        assert!(
            p.contains("kml_scan() { sleep 5; echo scan >$kml; echo scan >$kml; }"),
            "{p}"
        );
        assert!(
            p.contains("\tkml_scan; echo 'XTASK-KMEMLEAK-BEGIN d:b.sh'"),
            "{p}"
        );
    }

    #[test]
    fn start_lines_name_the_test_and_its_timeout() {
        let tests = vec![
            "drivers/net/rdmabond:topology.sh".to_string(),
            "drivers/net/rdmabond:basic.sh".to_string(),
        ];
        assert_eq!(
            test_started("# selftests: drivers/net/rdmabond: basic.sh", &tests),
            Some(1)
        );
        assert_eq!(test_started("# basic.sh: ok", &tests), None);
        assert_eq!(test_started("# selftests: net: x.sh", &tests), None);
        assert_eq!(timeout_words(Some("timeout=300\n")), "300 s, from settings");
        assert_eq!(timeout_words(None), "45 s, kselftest's default");
        assert!(timeout_words(Some("timeout=0\n")).starts_with("none"));
    }
}
