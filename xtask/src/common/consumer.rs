//! The load-balanced consumer (rust/rdmabond-consumer, binary `rbc`) in the
//! test guest: built against the patched kernel's uapi headers, run by
//! rust/guest/consumer.sh after the kselftests across a scripted failover and
//! failback, its JSON report turned into test cases and a timing table.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use rdmabond_report::{spread_problem, Report};
use serde_json::Value;

use crate::common::kbuild::Built;
use crate::common::ktap::{Case, Outcome};
use crate::common::project::Project;
use crate::common::util::write_atomic;
use crate::common::vm;

/// The connections the guest client opens (K).
pub const CONNECTIONS: u32 = 4;
/// Prefix of the report line the guest script prints.
const REPORT: &str = "rbc-report: ";
const ERROR: &str = "rbc-error: ";
const RELISTEN: &str = "rbc-relisten: served host B ";
/// The stages of consumer.sh's re-listen check, in order.
const RELISTEN_STAGES: [&str; 3] = [
    "before the failover",
    "after the failover",
    "after the failback",
];

/// Whether a `--filter` asks for the consumer run.
pub fn wanted(filter: Option<&str>) -> bool {
    filter.map_or(true, |f| "consumer".contains(f))
}

/// The cargo target directory `rbc` is built in: the guest sees the checkout only,
/// so it is inside it.
pub fn target_dir(project: &Project) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(t) if t.starts_with(&project.root) => t,
        Some(_) => project.target_dir().join("rbc-target"),
        None => project.target_dir(),
    }
}

/// Builds `rbc` against `built`'s `make headers` output; returns the binary.
pub fn build(project: &Project, built: &Built) -> Result<PathBuf> {
    let include = built.dir.join("usr/include");
    if !include.join("linux/if_link.h").is_file() {
        bail!(
            "no uapi headers in {}: the kernel build runs `make headers`",
            include.display()
        );
    }
    let target = target_dir(project);
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(&project.root)
        .args([
            "build",
            "--quiet",
            "-p",
            "rdmabond-consumer",
            "--target-dir",
        ])
        .arg(&target)
        .env("RDMABOND_UAPI_INCLUDE", &include)
        .status()
        .context("cannot run cargo build for rdmabond-consumer")?;
    if !status.success() {
        bail!("cargo build -p rdmabond-consumer failed");
    }
    Ok(target.join("debug/rbc"))
}

/// Builds `rbc` and returns the payload lines that run the consumer script in
/// the guest.
pub fn payload(project: &Project, built: &Built) -> Result<String> {
    let Some(ksft) = &built.kselftest else {
        bail!("the consumer needs the installed rdmabond selftests (lib.sh)");
    };
    eprintln!(
        "building rbc against {}",
        built.dir.join("usr/include").display()
    );
    let rbc = build(project, built)?;
    let script = project.root.join("rust/guest/consumer.sh");
    Ok(format!(
        "echo '# consumer: rbc across failover and failback'\nbash '{}' '{}' '{}' {CONNECTIONS}\n",
        vm::guest_path(&project.root, &script)?,
        vm::guest_path(&project.root, &ksft.join("drivers/net/rdmabond"))?,
        vm::guest_path(&project.root, &rbc)?,
    ))
}

/// The cases and timing table from the guest output.
pub struct Results {
    pub cases: Vec<Case>,
    pub table: Vec<String>,
    pub report: Option<Value>,
}

fn case(name: &str, ok: bool, why: Option<String>) -> Case {
    Case {
        name: format!("consumer: {name}"),
        outcome: if ok { Outcome::Pass } else { Outcome::Fail },
        directive: if ok { None } else { why },
        seconds: 0.0,
        subtests: Vec::new(),
    }
}

/// A case that could not be judged, counted as skipped, with why.
fn skip_case(name: &str, why: &str) -> Case {
    Case {
        outcome: Outcome::Skip,
        directive: Some(format!("SKIP {why}")),
        ..case(name, true, None)
    }
}

/// The kernel tells consumers only once a moved address is usable: every
/// reconnection on ADDR_CHANGE must connect at its first attempt.
fn first_attempts_ok(attempts: &[u32]) -> bool {
    attempts.iter().all(|&n| n == 1)
}

/// A milestone's milliseconds, or `never`.
fn ms(v: Option<f64>) -> String {
    v.map_or("never".into(), |m| format!("{m:.1}"))
}

/// Parses the guest output into cases and the timing table, and saves the
/// report (see [`save`]).
pub fn results(project: &Project, lines: &[(f64, String)]) -> Results {
    let mut r = parse(lines);
    if let Some(report) = &r.report {
        match save(project, report) {
            Ok(path) => r.table.push(format!("report: {}", path.display())),
            Err(e) => r
                .cases
                .push(case("report saved", false, Some(format!("{e:#}")))),
        }
    }
    r
}

impl Results {
    /// Prints the failover/failback timing table.
    pub fn print(&self) {
        if self.table.is_empty() {
            return;
        }
        println!("consumer (rbc, {CONNECTIONS} connections) failover/failback timings:");
        for l in &self.table {
            println!("  {l}");
        }
    }
}

/// The families the guest script runs, in order.
pub const FAMILIES: &[&str] = &["ipv4", "ipv6"];

fn table_header() -> String {
    format!(
        "{:<15} {:>8} {:>14} {:>16} {:>12}  {}",
        "event", "at (s)", "addr move ms", "ADDR_CHANGE ms", "traffic ms", "streams"
    )
}

/// Cases and table rows of one report.
fn report_cases(
    r: &Report,
    cases: &mut Vec<Case>,
    table: &mut Vec<String>,
    summary: &mut Vec<String>,
) {
    let family = r.family.as_str();
    let name = |what: &str| format!("({family}) {what}");
    let (messages, lost, dup) = (r.messages, r.lost, r.duplicated);
    cases.push(case(
        &name("messages delivered"),
        messages > 0 && r.delivered == messages,
        Some(format!("{} of {messages} delivered", r.delivered)),
    ));
    cases.push(case(
        &name("no message lost"),
        lost == 0,
        Some(format!("{lost} lost")),
    ));
    cases.push(case(
        &name("no duplicate"),
        dup == 0,
        Some(format!("{dup} duplicated")),
    ));
    let attempts = &r.change_attempts;
    let first = name("reconnects on ADDR_CHANGE work at the first attempt");
    cases.push(if attempts.is_empty() {
        // A connection that fails first reconnects on the error, before
        // ADDR_CHANGE (IPv6: the moved address runs DAD on its new port).
        skip_case(
            &first,
            "no reconnection waited for ADDR_CHANGE: every connection failed first",
        )
    } else {
        case(
            &first,
            first_attempts_ok(attempts),
            Some(format!("attempts per reconnection: {attempts:?}")),
        )
    });
    for s in &r.snapshots {
        // The one spread check, rbc's own (its verdict is also in `s.uneven`).
        let p = spread_problem(&s.ports, r.connections);
        cases.push(case(
            &name(&format!(
                "connections even among healthy ports ({})",
                s.label
            )),
            p.is_none(),
            p,
        ));
    }
    if r.timings.is_empty() {
        cases.push(case(
            &name("faults timed"),
            false,
            Some("no fault in the report".into()),
        ));
    }
    for t in &r.timings {
        let event = t.name.as_str();
        let missing: Vec<&str> = [
            ("addr_move_ms", t.addr_move_ms),
            ("addr_change_ms", t.addr_change_ms),
            ("traffic_ms", t.traffic_ms),
        ]
        .into_iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| k)
        .collect();
        cases.push(case(
            &name(&format!(
                "{event}: address moved, ADDR_CHANGE, traffic again"
            )),
            missing.is_empty(),
            Some(format!("never saw {}", missing.join(", "))),
        ));
        let disrupted: Vec<String> = t.disrupted.iter().map(u32::to_string).collect();
        table.push(format!(
            "{:<15} {:>8.3} {:>14} {:>16} {:>12}  [{}]",
            format!("{family} {event}"),
            t.at,
            ms(t.addr_move_ms),
            ms(t.addr_change_ms),
            ms(t.traffic_ms),
            disrupted.join(",")
        ));
    }
    summary.push(format!(
        "{family}: messages {messages}, delivered {}, lost {lost}, duplicated {dup}, resent {} (dropped as resent {}), reconnects {}",
        r.delivered,
        r.resent,
        r.resent_dups_dropped,
        r.reconnects
    ));
    summary.push(format!(
        "{family}: reconnects on ADDR_CHANGE {}, at the first attempt {}",
        attempts.len(),
        attempts.iter().filter(|&&n| n == 1).count()
    ));
    for s in &r.snapshots {
        let ports: Vec<String> = s
            .ports
            .iter()
            .map(|(n, p)| {
                let h = if p.healthy { "" } else { " (down)" };
                format!("{n}={}{h}", p.connections)
            })
            .collect();
        summary.push(format!(
            "{family}: connections {:<16} {}",
            s.label,
            ports.join(" ")
        ));
    }
}

/// Parses the guest output (one report per family) into cases and the table.
pub fn parse(lines: &[(f64, String)]) -> Results {
    let mut cases = Vec::new();
    let mut reports = Vec::new();
    let mut relistened = Vec::new();
    let mut relisten_errors = Vec::new();
    for (_, l) in lines {
        if let Some(e) = l.strip_prefix(ERROR) {
            match e.strip_prefix("relisten: ") {
                Some(why) => relisten_errors.push(why.to_string()),
                None => cases.push(case("run", false, Some(e.to_string()))),
            }
        } else if let Some(stage) = l.strip_prefix(RELISTEN) {
            relistened.push(stage.trim().to_string());
        } else if let Some(json) = l.strip_prefix(REPORT) {
            // Typed: a missing or mistyped key is an error naming it. The text is
            // kept as rbc wrote it, for the saved report.
            let typed = serde_json::from_str::<Value>(json).and_then(|v| {
                let r = serde_json::from_value::<Report>(v.clone())?;
                Ok((r, v))
            });
            match typed {
                Ok(r) => reports.push(r),
                Err(e) => cases.push(case("report", false, Some(format!("bad report JSON: {e}")))),
            }
        }
    }
    for f in FAMILIES {
        let seen = reports.iter().any(|(r, _)| r.family == *f);
        cases.push(case(
            &format!("({f}) report"),
            seen,
            Some("the guest printed no report".into()),
        ));
    }
    for stage in RELISTEN_STAGES {
        let why = if relisten_errors.is_empty() {
            "the guest printed no result".to_string()
        } else {
            relisten_errors.join("; ")
        };
        cases.push(case(
            &format!("server re-listening on a moved address serves a client {stage}"),
            relistened.iter().any(|s| s == stage),
            Some(why),
        ));
    }
    let mut table = vec![table_header()];
    let mut summary = Vec::new();
    for (r, _) in &reports {
        report_cases(r, &mut cases, &mut table, &mut summary);
    }
    if reports.is_empty() {
        table.clear();
    }
    table.extend(summary);
    let report = (!reports.is_empty())
        .then(|| Value::Object(reports.into_iter().map(|(r, v)| (r.family, v)).collect()));
    Results {
        cases,
        table,
        report,
    }
}

/// Saves the reports, keyed by family, as target/consumer-report.json (for the
/// documentation's plots).
pub fn save(project: &Project, report: &Value) -> Result<PathBuf> {
    let path = project.target_dir().join("consumer-report.json");
    let text = serde_json::to_string_pretty(report)?;
    write_atomic(&path, text.as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdmabond_report::PortCount;
    use std::collections::BTreeMap;

    // Every key of the schema (rdmabond_report::Report): a missing one is an error.
    const REPORT_JSON: &str = r#"{"group":"rb0","family":"ipv4","connections":4,"messages":100,"sent":103,
        "resent":3,"acked":100,"delivered":100,"lost":0,
        "duplicated":0,"resent_dups_dropped":1,"reconnects":4,"change_attempts":[1,1,2],
        "server":{"delivered":100,"resent_dups":1,"duplicated":0,"gaps":0},
        "snapshots":[
          {"label":"before failover","t":1.0,"elsewhere":0,"uneven":null,"ports":{"a0":{"healthy":true,"connections":2},"a1":{"healthy":true,"connections":2}}},
          {"label":"before failback","t":5.0,"elsewhere":0,"uneven":null,"ports":{"a0":{"healthy":false,"connections":0},"a1":{"healthy":true,"connections":4}}},
          {"label":"end","t":9.0,"elsewhere":0,"uneven":"uneven","ports":{"a0":{"healthy":true,"connections":1},"a1":{"healthy":true,"connections":3}}}],
        "timings":[{"name":"failover","at":3.0,"addr_move_ms":1.5,"addr_change_ms":2.5,"traffic_ms":80.0,"disrupted":[0,2]},
                   {"name":"failback","at":8.0,"addr_move_ms":510.0,"addr_change_ms":null,"traffic_ms":null,"disrupted":[]}],
        "events":[],"ok":false,"problems":[]}"#;

    fn lines(text: &str) -> Vec<(f64, String)> {
        text.lines().map(|l| (0.0, l.to_string())).collect()
    }

    fn failed(r: &Results) -> Vec<&str> {
        r.cases
            .iter()
            .filter(|c| c.outcome == Outcome::Fail)
            .map(|c| c.name.as_str())
            .collect()
    }

    #[test]
    fn report_becomes_cases() {
        let one_line: String = REPORT_JSON.split_whitespace().collect();
        let r = parse(&lines(&format!(
            "rbc-client: x\n{REPORT}{one_line}\nrbc-error: ipv6: the client printed no report\n"
        )));
        assert_eq!(
            failed(&r),
            [
                "consumer: run",
                "consumer: (ipv6) report",
                "consumer: server re-listening on a moved address serves a client before the failover",
                "consumer: server re-listening on a moved address serves a client after the failover",
                "consumer: server re-listening on a moved address serves a client after the failback",
                "consumer: (ipv4) reconnects on ADDR_CHANGE work at the first attempt",
                "consumer: (ipv4) connections even among healthy ports (end)",
                "consumer: (ipv4) failback: address moved, ADDR_CHANGE, traffic again"
            ]
        );
        assert_eq!(r.cases.len(), 15);
        assert!(r.table[1].contains("ipv4 failover"), "{:?}", r.table);
        assert!(r.table[2].contains("never"));
        assert!(r.table.iter().any(|l| l.contains("a0=0 (down) a1=4")));
        assert!(r.report.as_ref().unwrap()["ipv4"]["messages"] == 100);
    }

    #[test]
    fn first_attempts() {
        assert!(first_attempts_ok(&[1, 1, 1]));
        assert!(!first_attempts_ok(&[1, 2]));
        // (The report is typed: `change_attempts` is a field, and a report without
        // it is a bad report; see report_must_be_complete.)
        // No reconnection waited for ADDR_CHANGE: counted as a skip, with why.
        let json: String = REPORT_JSON
            .replace("[1,1,2]", "[]")
            .split_whitespace()
            .collect();
        let r = parse(&lines(&format!("{REPORT}{json}\n")));
        let c = r
            .cases
            .iter()
            .find(|c| c.name.contains("first attempt"))
            .unwrap();
        assert_eq!(c.outcome, Outcome::Skip);
        assert!(c.directive.as_deref().unwrap().starts_with("SKIP"));
    }

    #[test]
    fn relisten_stages_become_cases() {
        let r = parse(&lines(
            "rbc-relisten: served host B before the failover\n\
             rbc-error: relisten: no listener on rxe_a1 after the failover\n\
             rbc-relisten: served host B after the failback\n",
        ));
        let relisten: Vec<_> = r
            .cases
            .iter()
            .filter(|c| c.name.contains("re-listening"))
            .collect();
        assert_eq!(relisten.len(), 3);
        assert_eq!(relisten[0].outcome, Outcome::Pass);
        assert_eq!(relisten[1].outcome, Outcome::Fail);
        assert_eq!(
            relisten[1].directive.as_deref(),
            Some("no listener on rxe_a1 after the failover")
        );
        assert_eq!(relisten[2].outcome, Outcome::Pass);
        // A relisten error is not a failure of the whole run.
        assert!(!failed(&r).contains(&"consumer: run"));
    }

    #[test]
    fn missing_report_fails_with_the_reason() {
        let r = parse(&lines("rbc-error: cannot create rb0\n"));
        assert_eq!(
            failed(&r),
            [
                "consumer: run",
                "consumer: (ipv4) report",
                "consumer: (ipv6) report",
                "consumer: server re-listening on a moved address serves a client before the failover",
                "consumer: server re-listening on a moved address serves a client after the failover",
                "consumer: server re-listening on a moved address serves a client after the failback"
            ]
        );
        assert_eq!(r.cases[0].directive.as_deref(), Some("cannot create rb0"));
        assert!(r.table.is_empty() && r.report.is_none());
        let r = parse(&lines("rbc-report: {nope\n"));
        assert!(r.cases[0]
            .directive
            .as_deref()
            .unwrap()
            .contains("bad report JSON"));
    }

    #[test]
    fn spread_rules() {
        let v: BTreeMap<String, PortCount> = serde_json::from_str(
            r#"{"a0":{"healthy":false,"connections":1},"a1":{"healthy":true,"connections":3}}"#,
        )
        .unwrap();
        assert!(spread_problem(&v, 4).unwrap().contains("unhealthy"));
        let v: BTreeMap<String, PortCount> = serde_json::from_str(
            r#"{"a0":{"healthy":true,"connections":2},"a1":{"healthy":true,"connections":1}}"#,
        )
        .unwrap();
        assert_eq!(spread_problem(&v, 3), None);
        assert!(spread_problem(&v, 4).unwrap().contains("3 of 4"));
    }

    #[test]
    fn report_must_be_complete() {
        // A key missing is a bad report that names it, not a u64::MAX.
        let json: String = REPORT_JSON
            .replace(r#""lost":0,"#, "")
            .split_whitespace()
            .collect();
        let r = parse(&lines(&format!("{REPORT}{json}\n")));
        let bad = r
            .cases
            .iter()
            .find(|c| c.name == "consumer: report")
            .unwrap();
        assert_eq!(bad.outcome, Outcome::Fail);
        assert!(bad
            .directive
            .as_deref()
            .unwrap()
            .contains("missing field `lost`"));
    }

    #[test]
    fn filter_selects_the_consumer() {
        assert!(wanted(None));
        assert!(wanted(Some("consum")));
        assert!(!wanted(Some("failover.sh")));
    }
}
