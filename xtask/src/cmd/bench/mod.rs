//! `cargo xtask bench`: failover timed inside the kernel (tracepoints), side by
//! side with bonding and with no group, its scaling and the data path cost, in
//! one guest. Prints the tables, writes target/bench/report.json and SVG plots
//! (copied to Documentation/img/ with --update-docs). Fails only when the bench
//! itself fails, never on a time.

mod analyze;
mod render;
mod trace;

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use xshell::Shell;

use crate::common::kbuild::{self, Variant};
use crate::common::project::Project;
use crate::common::{base, consumer, deps, series, util, vm};
use analyze::{Meta, Point, Side, Stat, MILESTONES};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Repetitions of each latency case (failover and failback).
    #[arg(long, default_value_t = 20)]
    pub reps: u32,
    /// Repetitions of each scaling point.
    #[arg(long, default_value_t = 5)]
    pub reps_scale: u32,
    /// Address counts of the address scaling.
    #[arg(long, default_value = "1 16 64 256")]
    pub addrs: String,
    /// Bound RDMA CM ids of the ADDR_CHANGE fan-out.
    #[arg(long, default_value = "1 100 1000")]
    pub ids: String,
    /// Group counts of the group scaling.
    #[arg(long, default_value = "1 8 32")]
    pub groups: String,
    /// A short run, as `cargo xtask ci` does: one failover and one failback
    /// per latency case, 2 repetitions per scaling point, smaller scaling
    /// points.
    #[arg(long)]
    pub quick: bool,
    /// Copy the plots to Documentation/img/.
    #[arg(long)]
    pub update_docs: bool,
    /// Analyse target/bench/raw again without running the guest.
    #[arg(long)]
    pub analyze_only: bool,
    /// Hard limit for the guest, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub timeout: u64,
    /// More kernel command line for the guest, after the bench's own (the last
    /// of a repeated parameter wins): e.g. "loglevel=4" to keep the kernel's
    /// log lines off the serial console.
    #[arg(long, default_value = "")]
    pub kernel_args: String,
    /// Record the RDMA CM's own trace events too (`ib_cma`, `rdma_cma`: REQ,
    /// REP, REJ, DREQ and every cm_id event, of both hosts) in the raw
    /// traces, to see why a connection was slow. They cost time under TCG.
    #[arg(long)]
    pub cm_trace: bool,
}

impl BenchArgs {
    /// What `cargo xtask ci` runs: `--quick` with the defaults.
    pub fn quick() -> BenchArgs {
        BenchArgs {
            reps: 20,
            reps_scale: 5,
            addrs: "1 16 64 256".into(),
            ids: "1 100 1000".into(),
            groups: "1 8 32".into(),
            quick: true,
            update_docs: false,
            analyze_only: false,
            timeout: 3600,
            kernel_args: String::new(),
            cm_trace: false,
        }
    }
}

fn parse_list(what: &str, s: &str) -> Result<Vec<u32>> {
    let v = s
        .split([' ', ','])
        .filter(|w| !w.is_empty())
        .map(|w| {
            w.parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .with_context(|| format!("--{what}: `{w}` is not a positive number"))
        })
        .collect::<Result<Vec<_>>>()?;
    if v.is_empty() {
        bail!("--{what} is empty: give counts like \"1 16 64\"");
    }
    Ok(v)
}

/// What the bench runs with.
struct Plan {
    reps: u32,
    reps_scale: u32,
    addrs: Vec<u32>,
    ids: Vec<u32>,
    groups: Vec<u32>,
    /// The RDMA CM's trace events in the raw traces too.
    cm_trace: bool,
}

impl BenchArgs {
    fn plan(&self) -> Result<Plan> {
        let mut p = Plan {
            reps: self.reps,
            reps_scale: self.reps_scale,
            addrs: parse_list("addrs", &self.addrs)?,
            ids: parse_list("ids", &self.ids)?,
            groups: parse_list("groups", &self.groups)?,
            cm_trace: self.cm_trace,
        };
        if self.quick {
            p.reps = p.reps.min(1);
            p.reps_scale = p.reps_scale.min(2);
            p.addrs.retain(|n| *n <= 16);
            p.ids.retain(|n| *n <= 100);
            p.groups.retain(|n| *n <= 8);
        }
        if p.reps == 0 || p.reps_scale == 0 {
            bail!("--reps and --reps-scale must be positive");
        }
        Ok(p)
    }

    pub fn run(self, sh: &Shell, project: &Project) -> Result<()> {
        let plan = self.plan()?;
        let out = project.target_dir().join("bench");
        let raw = out.join("raw");
        let mut errors = Vec::new();
        if !self.analyze_only {
            errors = run_guest(
                sh,
                project,
                &plan,
                &raw,
                Duration::from_secs(self.timeout),
                &self.kernel_args,
            )?;
        }
        let summary = summarise(&raw, &plan)?;
        for l in summary.lines() {
            println!("{l}");
        }
        std::fs::create_dir_all(&out)
            .with_context(|| format!("cannot create {}", out.display()))?;
        let report = out.join("report.json");
        util::write_atomic(
            &report,
            serde_json::to_string_pretty(&summary.json)?.as_bytes(),
        )?;
        let mut plots = Vec::new();
        for (name, svg) in summary.plots() {
            let p = out.join(name);
            util::write_atomic(&p, svg.as_bytes())?;
            plots.push(p);
        }
        println!("report: {}", report.display());
        if self.update_docs {
            let img = project.root.join("Documentation/img");
            std::fs::create_dir_all(&img)
                .with_context(|| format!("cannot create {}", img.display()))?;
            for p in &plots {
                let to = img.join(p.file_name().expect("a file"));
                std::fs::copy(p, &to)
                    .with_context(|| format!("cannot copy {} to {}", p.display(), to.display()))?;
                println!("plot: {}", to.display());
            }
        }
        if !errors.is_empty() {
            bail!(
                "the bench failed: {} (raw data in {})",
                errors.join("; "),
                raw.display()
            );
        }
        if summary.empty() {
            bail!("the bench measured nothing (raw data in {})", raw.display());
        }
        Ok(())
    }
}

/// `tsc=reliable tsc_early_khz=N` from the host's /proc/cpuinfo when its TSC is
/// constant (its "cpu MHz" is then the TSC's rate), else nothing.
fn tsc_cmdline(cpuinfo: &str) -> String {
    if !cpuinfo.contains("constant_tsc") {
        return String::new();
    }
    cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("cpu MHz")?
                .split(':')
                .nth(1)?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(String::new(), |mhz| {
            format!(
                "tsc=reliable tsc_early_khz={}",
                (mhz * 1000.0).round() as u64
            )
        })
}

/// Boots the =y kernel and runs rust/guest/bench.sh; returns its error lines.
fn run_guest(
    sh: &Shell,
    project: &Project,
    plan: &Plan,
    raw: &Path,
    timeout: Duration,
    kernel_args: &str,
) -> Result<Vec<String>> {
    deps::ensure(sh, "kernel fetch", deps::FETCH)?;
    deps::ensure(sh, "the kernel build", deps::BUILD)?;
    deps::ensure(sh, "the QEMU tests", deps::QEMU)?;
    base::fetch(sh, project, None)?;
    series::apply::apply(sh, project, false)?;
    let built = kbuild::build(sh, project, Variant::Y, false)?;
    let Some(ksft) = &built.kselftest else {
        bail!("the bench needs the installed rdmabond selftests (lib.sh): the series has none");
    };
    let rbc = consumer::build(project, &built)?;
    if raw.exists() {
        std::fs::remove_dir_all(raw).with_context(|| format!("cannot remove {}", raw.display()))?;
    }
    std::fs::create_dir_all(raw).with_context(|| format!("cannot create {}", raw.display()))?;
    let list = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(" ");
    let payload = format!(
        "REPS_SCALE={} BENCH_CM_TRACE={} bash '{}' '{}' '{}' '{}' {} '{}' '{}' '{}'\n",
        plan.reps_scale,
        u8::from(plan.cm_trace),
        vm::guest_path(&project.root, &project.root.join("rust/guest/bench.sh"))?,
        vm::guest_path(&project.root, &ksft.join("drivers/net/rdmabond"))?,
        vm::guest_path(&project.root, &rbc)?,
        vm::guest_path(&project.root, raw)?,
        plan.reps,
        list(&plan.addrs),
        list(&plan.ids),
        list(&plan.groups),
    );
    let (accel, why) = vm::choose_accel(|| vm::probe::cached_probe(project, &built.image))?;
    eprintln!("accelerator: {accel:?} ({why})");
    let run = vm::Run {
        image: built.image.clone(),
        modroot: Some(built.modroot.clone()),
        root: project.root.clone(),
        dir: project.target_dir().join("vm/bench"),
        payload,
        timeout,
        accel,
        // Without it the guest (no ACPI, HPET or PM timer: allnoconfig) cannot
        // calibrate its TSC and times with refined-jiffies: CLOCK_MONOTONIC and
        // the trace in 4 ms steps. TCG's TSC runs at the host's rate.
        cmdline: [
            tsc_cmdline(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default()),
            kernel_args.trim().to_string(),
        ]
        .iter()
        .filter(|a| !a.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join(" "),
    };
    let mut errors = Vec::new();
    let out = vm::run(&run, |t, line| {
        if let Some(e) = line.strip_prefix("bench-error: ") {
            errors.push(e.to_string());
        }
        if line.starts_with("bench") {
            eprintln!("[{t:6.1}s] {line}");
        }
    })?;
    for p in &out.problems {
        errors.push(format!(
            "kernel report during the bench: {}",
            p.lines.first().map_or("", String::as_str)
        ));
    }
    match (out.exit, &out.fatal) {
        (_, Some(f)) => errors.push(format!("the guest died: {f}")),
        (Some(0), None) => {}
        (Some(c), None) => errors.push(format!("bench.sh exited with status {c}")),
        (None, None) => errors.push(format!(
            "the guest stopped before the bench finished{} (console: {})",
            if out.timed_out { " (timeout)" } else { "" },
            out.console_log.display()
        )),
    }
    Ok(errors)
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

fn read_trace(path: &Path) -> Result<Vec<trace::Event>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(trace::parse(&text))
}

struct LatencyRow {
    case: String,
    stats: Vec<Option<Stat>>,
    missing: usize,
}

struct Summary {
    latency: Vec<LatencyRow>,
    scaling: Vec<(String, Vec<Point>)>,
    throughput: Option<(f64, f64)>,
    side: Vec<Side>,
    json: Value,
}

fn stat_json(s: Option<Stat>) -> Value {
    s.map_or(
        Value::Null,
        |s| json!({"n": s.n, "median_ms": s.median, "p99_ms": s.p99}),
    )
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// The families of bench.sh's latency cases, in the order of the table: its
/// lat-FAMILY-KIND files (ipv4-stock-arp has admin only).
const LATENCY_FAMILIES: [&str; 5] = [
    "ipv4",
    "ipv6",
    "ipv6-optimistic",
    "ipv6-fast-dad",
    "ipv4-stock-arp",
];

/// Reads everything bench.sh left in `raw`.
fn summarise(raw: &Path, plan: &Plan) -> Result<Summary> {
    let meta = read_json(&raw.join("meta.json"))
        .and_then(|v| Meta::from_json(&v))
        .context("no usable meta.json: bench.sh did not get as far as the topology (see the guest's output above)")?;
    let mut latency = Vec::new();
    for family in LATENCY_FAMILIES {
        for kind in ["admin", "carrier", "rdma"] {
            let base = raw.join(format!("lat-{family}-{kind}"));
            let (Ok(report), Ok(tr)) = (
                read_json(&base.with_extension("json")),
                read_trace(&base.with_extension("trace")),
            ) else {
                continue;
            };
            let (over, back) = analyze::latency(&meta, family.starts_with("ipv4"), &report, &tr)
                .with_context(|| format!("{}", base.display()))?;
            for (dir, samples) in [("failover", over), ("failback", back)] {
                let stats: Vec<Option<Stat>> = (0..MILESTONES.len())
                    .map(|m| {
                        let v: Vec<f64> = samples.iter().filter_map(|s| s[m]).collect();
                        analyze::stat(&v)
                    })
                    .collect();
                let missing = samples
                    .iter()
                    .filter(|s| s.iter().any(Option::is_none))
                    .count();
                latency.push(LatencyRow {
                    case: format!("{family} {kind} {dir}"),
                    stats,
                    missing,
                });
            }
        }
    }
    let mut scaling = Vec::new();
    let mut curve =
        |name: &str, ns: &[u32], f: &dyn Fn(u32, &[trace::Event]) -> Point, file: &str| {
            let pts: Vec<Point> = ns
                .iter()
                .filter_map(|n| {
                    read_trace(&raw.join(format!("{file}-{n}.trace")))
                        .ok()
                        .map(|t| f(*n, &t))
                })
                .collect();
            scaling.push((name.to_string(), pts));
        };
    curve(
        "addresses moved",
        &plan.addrs,
        &|n, t| analyze::scale_addrs(&meta.port, n, t),
        "addrs",
    );
    curve(
        "ADDR_CHANGE fan-out (cm ids)",
        &plan.ids,
        &|n, t| analyze::scale_ids(&meta.addr4, n, t),
        "ids",
    );
    curve(
        "groups failing at once",
        &plan.groups,
        &|n, t| analyze::scale_groups(n, t),
        "groups",
    );

    let rates = |mode: &str| -> Vec<f64> {
        (0..3)
            .filter_map(|i| read_json(&raw.join(format!("tput-{mode}-{i}.json"))).ok())
            .filter_map(|r| analyze::throughput(&meta, &r).ok())
            .collect()
    };
    let (grouped, plain) = (rates("grouped"), rates("plain"));
    let throughput = mean(&grouped).zip(mean(&plain));

    let mut side = Vec::new();
    for (config, file) in [
        ("rdmabond", "side-rdmabond"),
        ("active-backup bond, rxe on the bond", "side-bond"),
        ("no group, consumer reconnects", "side-nogroup"),
    ] {
        if let Ok(r) = read_json(&raw.join(format!("{file}.json"))) {
            side.push(analyze::side(config, &r).with_context(|| format!("{file}.json"))?);
        }
    }

    let json = json!({
        "plan": {"reps": plan.reps, "reps_scale": plan.reps_scale, "failback_delay_ms": meta.failback_ms},
        "latency": latency.iter().map(|r| json!({
            "case": r.case,
            "incomplete_samples": r.missing,
            "milestones": MILESTONES.iter().zip(&r.stats).map(|(m, s)| json!({"milestone": m, "stat": stat_json(*s)})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "scaling": scaling.iter().map(|(name, pts)| json!({
            "curve": name,
            "complexity": analyze::complexity(pts),
            "points": pts.iter().map(|p| json!({"n": p.n, "count": p.count, "time": stat_json(p.time)})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "throughput": {
            "grouped_msgs_per_s": grouped, "plain_msgs_per_s": plain,
            "ratio": throughput.map(|(g, p)| g / p),
        },
        "side_by_side": side.iter().map(|s| json!({
            "config": s.config, "longest_stall_ms": s.longest_stall_ms,
            "resent": s.resent, "lost": s.lost, "reconnects": s.reconnects,
        })).collect::<Vec<_>>(),
    });
    Ok(Summary {
        latency,
        scaling,
        throughput,
        side,
        json,
    })
}

impl Summary {
    fn empty(&self) -> bool {
        self.latency.is_empty()
            && self.side.is_empty()
            && self.scaling.iter().all(|c| c.1.is_empty())
    }

    fn lines(&self) -> Vec<String> {
        let mut out = vec![
            String::new(),
            "latency from the kernel's fault event, ms, median / p99 (failback: delay taken off)"
                .into(),
        ];
        let mut header = vec!["case"];
        header.extend(MILESTONES);
        header.push("incomplete");
        let rows: Vec<Vec<String>> = self
            .latency
            .iter()
            .map(|r| {
                let mut row = vec![r.case.clone()];
                row.extend(r.stats.iter().map(|s| render::cell(*s)));
                row.push(r.missing.to_string());
                row
            })
            .collect();
        out.extend(render::table(&header, &rows));

        out.push(String::new());
        out.push("side by side: the same rbc traffic (2 connections, 200 msg/s each) across a0 down and up".into());
        let rows: Vec<Vec<String>> = self
            .side
            .iter()
            .map(|s| {
                vec![
                    s.config.clone(),
                    format!("{:.1}", s.longest_stall_ms),
                    format!("{}", s.resent),
                    format!("{}", s.lost),
                    format!("{}", s.reconnects),
                ]
            })
            .collect();
        out.extend(render::table(
            &[
                "configuration",
                "longest stall ms",
                "resent",
                "lost",
                "reconnects",
            ],
            &rows,
        ));

        out.push(String::new());
        out.push("scaling, ms, median / p99".into());
        let mut rows = Vec::new();
        for (name, pts) in &self.scaling {
            for p in pts {
                rows.push(vec![
                    name.clone(),
                    p.n.to_string(),
                    format!("{}", p.count),
                    render::cell(p.time),
                ]);
            }
            rows.push(vec![
                name.clone(),
                "growth".into(),
                String::new(),
                analyze::complexity(pts),
            ]);
        }
        out.extend(render::table(&["curve", "n", "moved / ids", "time"], &rows));

        out.push(String::new());
        out.push("ratios".into());
        let stall = |c: &str| {
            self.side
                .iter()
                .find(|s| s.config.starts_with(c))
                .map(|s| s.longest_stall_ms)
        };
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.3}", a / b),
            _ => "-".into(),
        };
        let mut rows = vec![
            vec![
                "rdmabond / bond, longest stall".into(),
                ratio(stall("rdmabond"), stall("active-backup")),
            ],
            vec![
                "rdmabond / no group, longest stall".into(),
                ratio(stall("rdmabond"), stall("no group")),
            ],
        ];
        rows.push(match self.throughput {
            Some((g, p)) => vec![
                "grouped / plain port, throughput".into(),
                format!("{:.3} ({g:.0} / {p:.0} msg/s)", g / p),
            ],
            None => vec!["grouped / plain port, throughput".into(), "-".into()],
        });
        out.extend(render::table(&["ratio", "value"], &rows));
        out
    }

    fn plots(&self) -> Vec<(String, String)> {
        let labels: Vec<String> = self.latency.iter().map(|r| r.case.clone()).collect();
        let series = |m: usize, p99: bool| -> Vec<f64> {
            self.latency
                .iter()
                .map(|r| r.stats[m].map_or(f64::NAN, |s| if p99 { s.p99 } else { s.median }))
                .collect()
        };
        let lat = render::bars_svg(
            "rdmabond failover and failback, from the kernel's fault event",
            "ms (TCG guest; failback: delay taken off)",
            &labels,
            &[
                ("last move (median)", series(1, false)),
                ("first ack (median)", series(4, false)),
                ("first ack (p99)", series(4, true)),
            ],
        );
        let panels: Vec<(String, Vec<(f64, f64)>)> = self
            .scaling
            .iter()
            .map(|(n, pts)| {
                (
                    n.clone(),
                    pts.iter()
                        .filter_map(|p| p.time.map(|t| (f64::from(p.n), t.median)))
                        .collect(),
                )
            })
            .collect();
        let scale = render::lines_svg("rdmabond scaling (TCG guest)", &panels);
        vec![
            ("bench-latency.svg".into(), lat),
            ("bench-scaling.svg".into(), scale),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsc_rate_from_cpuinfo() {
        let c = "model name\t: X\ncpu MHz\t\t: 2299.998\nflags\t\t: fpu constant_tsc nonstop_tsc\n";
        assert_eq!(tsc_cmdline(c), "tsc=reliable tsc_early_khz=2299998");
        assert_eq!(tsc_cmdline("cpu MHz\t: 2299.998\nflags\t: fpu\n"), "");
    }

    #[test]
    fn lists_and_quick_plan() {
        assert_eq!(parse_list("ids", "1, 100 1000").unwrap(), [1, 100, 1000]);
        assert!(parse_list("ids", "1 x")
            .unwrap_err()
            .to_string()
            .contains("`x`"));
        assert!(parse_list("ids", "0").is_err());
        assert!(parse_list("ids", " ").is_err());
        let p = BenchArgs::quick().plan().unwrap();
        assert_eq!((p.reps, p.reps_scale), (1, 2));
        assert_eq!(p.addrs, [1, 16]);
        assert_eq!(p.ids, [1, 100]);
        assert_eq!(p.groups, [1, 8]);
    }
}
