//! The guest's test script: which tests run (kselftest-list.txt, a filter), the
//! script that runs them one by one, and the start line of each with its timeout.

use anyhow::{bail, Result};

use crate::common::kmemleak;
use crate::common::vm;

/// The line the payload prints after a test's run_kselftest.sh; the sed that
/// renumbers the test's TAP stops there.
pub const TEST_END: &str = "XTASK-TEST-END";

/// The start of the line that says, after each test, how many processes the test
/// left running (`XTASK-LEFTOVERS collection:test: N; PID CMD; ...`).
pub const LEFTOVERS: &str = "XTASK-LEFTOVERS ";

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
         # A process a test leaves running keeps the pipe to sed open, and sed\n\
         # would wait for it until the guest's timeout: sed stops at the line\n\
         # printed after the test, and what was left is named and killed.\n\
         # Only this script's session: what a test starts stays in it.\n\
         xtask_session() {{ local s; read -r s </proc/$$/stat; s=${{s##*) }}; set -- $s; echo \"$4\"; }}\n\
         xtask_sid=$(xtask_session)\n\
         xtask_pids() {{ local p s; for p in /proc/[0-9]*; do\n\
         \tread -r s 2>/dev/null <\"$p/stat\" || continue; s=${{s##*) }}; set -- $s\n\
         \t[ \"$4\" = \"$xtask_sid\" ] && printf '%s ' \"${{p#/proc/}}\"; done; }}\n\
         xtask_leftovers() {{ local pid c n=0 what=; for pid in $(xtask_pids); do\n\
         \tcase \" $2 \" in *\" $pid \"*) continue ;; esac\n\
         \t[ \"$pid\" = $$ ] && continue\n\
         \tc=$(tr '\\0' ' ' 2>/dev/null </proc/$pid/cmdline | cut -c1-160)\n\
         \t[ -n \"$c\" ] || continue\n\
         \tn=$((n + 1)); what=\"$what; $pid $c\"; kill -9 \"$pid\" 2>/dev/null\n\
         \tdone; echo \"{leftovers}$1: $n${{what}}\"; }}\n\
         echo 'TAP version 13'\n\
         echo '1..{n}'\n",
        leftovers = LEFTOVERS,
        begin = kmemleak::BEGIN,
        end = kmemleak::END,
        n = tests.len()
    );
    for (i, t) in tests.iter().enumerate() {
        let n = i + 1;
        s.push_str(&format!(
            "echo '{mark}{t}' >/dev/kmsg\n\
             before=$(xtask_pids)\n\
             {{ ./run_kselftest.sh -t '{t}' 2>&1; echo {end_mark}; }} | sed -u -e '/^{end_mark}$/Q' -e '/^TAP version 13$/d' -e '/^1\\.\\.1$/d' -e '/^# Totals: /d' \\\n\
             \t-e 's/^ok 1 /ok {n} /' -e 's/^not ok 1 /not ok {n} /'\n\
             xtask_leftovers '{t}' \"$before\"\n\
             if [ -w $kml ]; then\n\
             \tkml_scan; echo '{begin}{t}'; cat $kml; echo '{end}'; echo clear >$kml\n\
             fi\n",
            mark = vm::SECTION_MARK,
            end_mark = TEST_END,
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

    /// The payload on the host's bash with a fake runner whose test leaves a
    /// process behind that holds its output open: the script goes on to the
    /// next test and names the process. Before the sentinel, sed waited for
    /// it (the guest of 2026-12-04 sat idle after rds.sh until killed).
    #[test]
    fn a_process_left_running_neither_blocks_the_next_test_nor_goes_unseen() {
        let dir = std::env::temp_dir().join(format!("xtask-payload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let runner = dir.join("run_kselftest.sh");
        std::fs::write(
            &runner,
            "#!/bin/bash\n\
             echo 'TAP version 13'\necho '1..1'\n\
             [ \"$2\" = d:a.sh ] && { sleep 30 & }\n\
             echo \"ok 1 selftests: $2\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&runner, std::fs::Permissions::from_mode(0o755)).unwrap();
        let tests = vec!["d:a.sh".to_string(), "d:b.sh".to_string()];
        // A process of the session from before the tests is nobody's leftover
        // (in the guest: the init script that runs the payload).
        let script = format!(
            "sleep 20 & pre=$!\n{}kill $pre\n",
            selftest_payload(dir.to_str().unwrap(), &tests).replace("/dev/kmsg", "/dev/null")
        );
        // In its own session: the script kills what it finds in its session.
        // The guest runs it with sh (dash on Debian), not bash.
        let out = std::process::Command::new("setsid")
            .arg("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).ok();
        let out = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.contains(&"ok 2 selftests: d:b.sh"), "{out}");
        let left: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.starts_with(LEFTOVERS))
            .collect();
        assert_eq!(left.len(), 2, "{out}");
        assert!(left[0].starts_with("XTASK-LEFTOVERS d:a.sh: 1; "), "{out}");
        assert!(left[0].ends_with(" sleep 30 "), "{out}");
        assert_eq!(left[1], "XTASK-LEFTOVERS d:b.sh: 0", "{out}");
        assert!(!out.contains(TEST_END), "{out}");
    }
}
