//! The patch x check table and the details of every finding.

use super::{Check, Outcome, PatchReport, Status};

/// Renders the table, the series line, and the details of warnings, failures and skips.
pub fn render(reports: &[PatchReport], series: &[Outcome]) -> String {
    // The columns: the checks the reports have, in the one order of the checks.
    let cols: Vec<Check> = Check::ORDER
        .into_iter()
        .filter(|c| *c != Check::All)
        .filter(|c| {
            reports
                .iter()
                .flat_map(|r| &r.outcomes)
                .any(|o| o.check == *c)
        })
        .collect();
    let mut s = String::new();
    let subject_w = 34;
    s.push_str(&format!(
        "{:>3}  {:<10} {:<subject_w$}",
        "#", "commit", "patch"
    ));
    for c in &cols {
        s.push_str(&format!(" {:>w$}", c.name(), w = c.name().len().max(4)));
    }
    s.push('\n');
    for r in reports {
        let mut subject: String = r.subject.chars().take(subject_w).collect();
        if r.subject.chars().count() > subject_w {
            subject.pop();
            subject.push('~');
        }
        let mark = if r.cached { "*" } else { " " };
        let short: String = r.commit.chars().take(10).collect();
        s.push_str(&format!(
            "{:>2}{mark}  {short:<10} {:<subject_w$}",
            r.index, subject
        ));
        for c in &cols {
            let cell = r
                .outcomes
                .iter()
                .find(|o| o.check == *c)
                .or_else(|| r.outcomes.iter().find(|o| o.check == Check::All))
                .map_or("?", |o| o.status.word());
            s.push_str(&format!(" {:>w$}", cell, w = c.name().len().max(4)));
        }
        s.push('\n');
    }
    if !series.is_empty() {
        // The series line, in the same order (a stable sort: the gate runs them so).
        let mut line: Vec<&Outcome> = series.iter().collect();
        line.sort_by_key(|o| o.check.position());
        let cells: Vec<String> = line
            .iter()
            .map(|o| format!("{} {}", o.check, o.status.word()))
            .collect();
        s.push_str(&format!("series: {}\n", cells.join(", ")));
    }
    if reports.iter().any(|r| r.cached) {
        s.push_str("(* = result from target/check-cache: the patch, its parent tree, the config fragments, the pin and the check version did not change)\n");
    }
    let mut details = Vec::new();
    for o in reports.iter().flat_map(|r| &r.outcomes).chain(series) {
        if matches!(o.status, Status::Fail | Status::Warn | Status::Skip) || !o.details.is_empty() {
            for d in &o.details {
                // A failing checkpatch run also lists its warnings: tag them so.
                let tag = if o.status == Status::Fail
                    && (d.contains(" WARNING:") || d.contains(" CHECK:"))
                {
                    Status::Warn.word()
                } else {
                    o.status.word()
                };
                let line = format!("  [{tag}] {}: {d}", o.check);
                if !details.contains(&line) {
                    details.push(line);
                }
            }
        }
    }
    if !details.is_empty() {
        s.push_str("details:\n");
        s.push_str(&details.join("\n"));
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_rows_columns_and_details() {
        let mut bad = Outcome::new(Check::Build, Status::Fail);
        bad.details.push("patch 2: a.c:3: error: x".into());
        let reports = vec![
            PatchReport {
                index: 1,
                commit: "a".into(),
                subject: "net: a very long subject that will be cut somewhere".into(),
                cached: true,
                outcomes: vec![
                    Outcome::new(Check::Checkpatch, Status::Pass),
                    Outcome::new(Check::Build, Status::Pass),
                ],
                build_keys: vec![],
            },
            PatchReport {
                index: 2,
                commit: "b".into(),
                subject: "net: b".into(),
                cached: false,
                outcomes: vec![Outcome::new(Check::Checkpatch, Status::Warn), bad],
                build_keys: vec![],
            },
        ];
        let t = render(&reports, &[Outcome::new(Check::Count, Status::Pass)]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].contains("checkpatch") && lines[0].contains("build"));
        assert!(lines[1].starts_with(" 1*"));
        assert!(lines[1].contains('~'));
        assert!(lines[2].contains("WARN") && lines[2].contains("FAIL"));
        assert!(t.contains("series: count ok"));
        assert!(t.contains("  [FAIL] build: patch 2: a.c:3: error: x"));
    }
}
