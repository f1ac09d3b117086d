//! KTAP / TAP 13 parser for kselftest runner and KUnit output.
//!
//! kselftest's runner nests a test's own output under `# ` prefixes; KUnit nests
//! with four spaces. Both count as one level of nesting here.

/// Outcome of one test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    Skip,
}

/// One test result, with its nested subtests.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// Test name as printed after the number (runner prefix `selftests: ` removed).
    pub name: String,
    pub outcome: Outcome,
    /// Text after `# SKIP` / `# TIMEOUT` etc.
    pub directive: Option<String>,
    /// Seconds from the end of the previous sibling (or the first line) to this result.
    pub seconds: f64,
    pub subtests: Vec<Case>,
}

/// Everything parsed from one stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Top-level results.
    pub cases: Vec<Case>,
    /// The top-level plan (`1..N`), if any.
    pub plan: Option<usize>,
    /// `Bail out!` text, if the stream bailed.
    pub bail_out: Option<String>,
}

impl Report {
    /// Results that the plan announced but that never came (crash, timeout).
    pub fn missing(&self) -> usize {
        self.plan.map_or(0, |p| p.saturating_sub(self.cases.len()))
    }
}

/// Splits a line into its nesting depth and its content.
fn depth_and_content(line: &str) -> (usize, &str) {
    let mut depth = 0;
    let mut rest = line;
    loop {
        if let Some(r) = rest.strip_prefix("# ") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix("    ") {
            rest = r;
        } else if rest == "#" {
            rest = "";
        } else {
            break;
        }
        depth += 1;
    }
    (depth, rest)
}

/// A parsed result line: ok?, number, name, directive.
fn parse_result(content: &str) -> Option<(bool, String, Option<String>)> {
    let (ok, rest) = if let Some(r) = content.strip_prefix("ok ") {
        (true, r)
    } else if let Some(r) = content.strip_prefix("not ok ") {
        (false, r)
    } else {
        return None;
    };
    let mut parts = rest.splitn(2, ' ');
    let num = parts.next()?;
    if num.parse::<usize>().is_err() {
        return None;
    }
    let rest = parts.next().unwrap_or("").trim();
    let rest = rest.strip_prefix("- ").unwrap_or(rest);
    let (name, directive) = match rest.find(" # ") {
        Some(i) => (&rest[..i], Some(rest[i + 3..].trim().to_string())),
        None => match rest.strip_prefix("# ") {
            Some(d) => ("", Some(d.trim().to_string())),
            None => (rest, None),
        },
    };
    let name = name.trim().trim_start_matches("selftests: ").to_string();
    Some((ok, name, directive))
}

fn outcome(ok: bool, directive: Option<&str>) -> Outcome {
    let d = directive.unwrap_or("").to_ascii_uppercase();
    if d.starts_with("SKIP") || d.starts_with("TODO") {
        Outcome::Skip
    } else if ok || d.starts_with("XFAIL") {
        Outcome::Pass
    } else {
        Outcome::Fail
    }
}

/// Parses timestamped lines (seconds, text).
pub fn parse<'a>(lines: impl IntoIterator<Item = (f64, &'a str)>) -> Report {
    let mut report = Report::default();
    // pending[d]: results seen at depth d that wait for their parent at depth d-1.
    let mut pending: Vec<Vec<Case>> = vec![Vec::new()];
    // start[d]: when the current test at depth d started.
    let mut start: Vec<Option<f64>> = vec![None];
    // note[d]: the last diagnostic line at depth d (explains a bare `# SKIP`).
    let mut note: Vec<Option<String>> = vec![None];
    for (t, raw) in lines {
        let line = raw.trim_end_matches(['\r', '\n']);
        let (depth, content) = depth_and_content(line);
        let content = content.trim_end();
        while pending.len() <= depth + 1 {
            pending.push(Vec::new());
            start.push(None);
            note.push(None);
        }
        for s in start.iter_mut().take(depth + 1) {
            s.get_or_insert(t);
        }
        // The kselftest runner announces each test: its time starts here.
        if depth == 1 && content.starts_with("selftests: ") {
            start[0] = Some(t);
            continue;
        }
        if let Some(reason) = content.strip_prefix("Bail out!") {
            if depth == 0 {
                report.bail_out = Some(reason.trim().to_string());
            }
            continue;
        }
        if depth == 0 {
            if let Some(n) = content.strip_prefix("1..") {
                if let Ok(n) = n.split_whitespace().next().unwrap_or("").parse() {
                    report.plan = Some(n);
                }
                continue;
            }
        }
        let Some((ok, name, mut directive)) = parse_result(content) else {
            if !content.is_empty()
                && !content.starts_with("TAP version")
                && !content.starts_with("KTAP version")
            {
                note[depth] = Some(content.to_string());
            }
            continue;
        };
        let why = note[depth + 1].take();
        if directive
            .as_deref()
            .is_some_and(|d| d.eq_ignore_ascii_case("skip"))
        {
            if let Some(why) = why {
                directive = Some(format!("SKIP ({why})"));
            }
        }
        let subtests = std::mem::take(&mut pending[depth + 1]);
        for s in start.iter_mut().skip(depth + 1) {
            *s = None;
        }
        let began = start[depth].unwrap_or(t);
        // The next sibling starts where this one ended.
        start[depth] = Some(t);
        pending[depth].push(Case {
            name,
            outcome: outcome(ok, directive.as_deref()),
            directive,
            seconds: (t - began).max(0.0),
            subtests,
        });
    }
    report.cases = std::mem::take(&mut pending[0]);
    report
}

/// Pass/fail/skip counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl Counts {
    /// Adds one outcome.
    pub fn add(&mut self, o: Outcome) {
        match o {
            Outcome::Pass => self.passed += 1,
            Outcome::Fail => self.failed += 1,
            Outcome::Skip => self.skipped += 1,
        }
    }

    /// Counts a case by its leaves: every subtest counts, and a failed test whose
    /// subtests all passed (a crash, a bad exit status) counts as one failure more.
    pub fn add_case(&mut self, case: &Case) {
        if case.subtests.is_empty() {
            self.add(case.outcome);
            return;
        }
        let before = self.failed;
        for sub in &case.subtests {
            self.add_case(sub);
        }
        if case.outcome == Outcome::Fail && self.failed == before {
            self.failed += 1;
        }
    }

    /// Adds another set of counts.
    pub fn merge(&mut self, other: Counts) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
    }

    /// `N passed, N failed, N skipped`.
    pub fn line(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }
}

/// Renders one line per case (subtests indented), with times.
pub fn render(cases: &[Case], indent: usize, out: &mut Vec<String>) {
    for c in cases {
        let tag = match c.outcome {
            Outcome::Pass => "ok  ",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "skip",
        };
        let directive = c
            .directive
            .as_deref()
            .map(|d| format!("  # {d}"))
            .unwrap_or_default();
        out.push(format!(
            "{:indent$}{tag} {} ({:.1}s){directive}",
            "",
            c.name,
            c.seconds,
            indent = indent
        ));
        render(&c.subtests, indent + 4, out);
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
    let report = parse(lines.iter().map(|(t, l)| (*t, l.as_str())));
    report
        .cases
        .into_iter()
        .map(|mut c| {
            c.name = format!("kunit: {}", c.name);
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<(f64, &str)> {
        text.lines()
            .enumerate()
            .map(|(i, l)| (i as f64, l))
            .collect()
    }

    const RUNNER: &str = "TAP version 13
1..2
# timeout set to 300
# selftests: drivers/net/rdmabond: topology.sh
# TAP version 13
# 1..3
# ok 1 rping a0 -> b0
# not ok 2 rping a1 -> b1
# ok 3 rds transport # SKIP no RDS
# # Totals: pass:1 fail:1 xfail:0 xpass:0 skip:1 error:0
not ok 1 selftests: drivers/net/rdmabond: topology.sh # exit=1
# selftests: drivers/net/rdmabond: failover.sh
# SKIP rdmabond module missing
ok 2 selftests: drivers/net/rdmabond: failover.sh # SKIP
";

    #[test]
    fn parses_kselftest_runner_output() {
        let r = parse(lines(RUNNER));
        assert_eq!(r.plan, Some(2));
        assert_eq!(r.cases.len(), 2);
        let t = &r.cases[0];
        assert_eq!(t.name, "drivers/net/rdmabond: topology.sh");
        assert_eq!(t.outcome, Outcome::Fail);
        assert_eq!(t.directive.as_deref(), Some("exit=1"));
        let subs: Vec<(&str, Outcome)> = t
            .subtests
            .iter()
            .map(|c| (c.name.as_str(), c.outcome))
            .collect();
        assert_eq!(
            subs,
            vec![
                ("rping a0 -> b0", Outcome::Pass),
                ("rping a1 -> b1", Outcome::Fail),
                ("rds transport", Outcome::Skip)
            ]
        );
        assert_eq!(t.seconds, 7.0);
        assert_eq!(r.cases[1].outcome, Outcome::Skip);
        assert_eq!(
            r.cases[1].directive.as_deref(),
            Some("SKIP (SKIP rdmabond module missing)")
        );
        assert_eq!(r.cases[1].subtests.len(), 0);
        assert_eq!(r.cases[1].seconds, 2.0);
        assert_eq!(r.missing(), 0);
    }

    #[test]
    fn a_bare_skip_takes_its_reason_from_the_diagnostic_before_it() {
        let text = "TAP version 13\n1..1\n# selftests: d: t.sh\n# 1..1\n\
                    # # RDS/IB is restricted to the initial network namespace\n\
                    # ok 1 rds transport # SKIP\nok 1 selftests: d: t.sh\n";
        let r = parse(lines(text));
        assert_eq!(
            r.cases[0].subtests[0].directive.as_deref(),
            Some("SKIP (RDS/IB is restricted to the initial network namespace)")
        );
        assert_eq!(r.cases[0].directive, None);
    }

    #[test]
    fn parses_kunit_nesting_and_bail_out() {
        let text = "KTAP version 1
1..1
    KTAP version 1
    # Subtest: rdmabond
    1..2
    ok 1 parse_mode
    not ok 2 parse_state
not ok 1 rdmabond
";
        let r = parse(lines(text));
        assert_eq!(r.cases[0].name, "rdmabond");
        assert_eq!(r.cases[0].subtests[1].outcome, Outcome::Fail);
        let r = parse(lines(
            "TAP version 13\n1..3\nok 1 a\nBail out! kernel crashed\n",
        ));
        assert_eq!(r.bail_out.as_deref(), Some("kernel crashed"));
        assert_eq!(r.missing(), 2);
    }

    #[test]
    fn directives_and_odd_lines() {
        assert_eq!(
            parse_result("ok 1 - x # XFAIL known"),
            Some((true, "x".into(), Some("XFAIL known".into())))
        );
        assert_eq!(outcome(false, Some("XFAIL")), Outcome::Pass);
        assert_eq!(outcome(false, Some("TIMEOUT 300 seconds")), Outcome::Fail);
        assert_eq!(parse_result("ok x y"), None);
        assert_eq!(parse_result("okay 1"), None);
        let r = parse(lines("random noise\nok 1 a\r\n"));
        assert_eq!(r.cases[0].name, "a");
    }

    #[test]
    fn counts_and_render() {
        let r = parse(lines(RUNNER));
        let mut c = Counts::default();
        for case in &r.cases {
            c.add(case.outcome);
        }
        assert_eq!(c.line(), "0 passed, 1 failed, 1 skipped");
        let mut leaves = Counts::default();
        for case in &r.cases {
            leaves.add_case(case);
        }
        assert_eq!(leaves.line(), "1 passed, 1 failed, 2 skipped");
        let crashed = Case {
            name: "t".into(),
            outcome: Outcome::Fail,
            directive: None,
            seconds: 0.0,
            subtests: vec![r.cases[0].subtests[0].clone()],
        };
        let mut c2 = Counts::default();
        c2.add_case(&crashed);
        assert_eq!(c2.line(), "1 passed, 1 failed, 0 skipped");
        let mut out = Vec::new();
        render(&r.cases, 0, &mut out);
        assert_eq!(
            out[0],
            "FAIL drivers/net/rdmabond: topology.sh (7.0s)  # exit=1"
        );
        assert_eq!(out[1], "    ok   rping a0 -> b0 (4.0s)");
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
}
