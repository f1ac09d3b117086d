//! Turns the bench's raw data (trace events and rbc reports) into the numbers of
//! its tables: latency per milestone, scaling, throughput, side by side.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde_json::Value;

use super::trace::{addr_of, Event};

/// What bench.sh wrote into meta.json.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    pub failback_ms: f64,
    pub port: String,
    pub addr4: String,
    pub addr6: String,
    pub tput_s: f64,
}

fn num(v: &Value, key: &str) -> Result<f64> {
    v.get(key)
        .and_then(Value::as_f64)
        .with_context(|| format!("no number `{key}` in the report"))
}

fn text<'a>(v: &'a Value, key: &str) -> Result<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .with_context(|| format!("no string `{key}` in the report"))
}

impl Meta {
    pub fn from_json(v: &Value) -> Result<Meta> {
        Ok(Meta {
            failback_ms: num(v, "failback_ms")?,
            port: text(v, "port")?.to_string(),
            addr4: text(v, "addr4")?.to_string(),
            addr6: text(v, "addr6")?.to_string(),
            tput_s: num(v, "tput_s")?,
        })
    }
}

/// Median and 99th percentile (nearest rank) of some samples, in ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    pub n: usize,
    pub median: f64,
    pub p99: f64,
}

pub fn stat(samples: &[f64]) -> Option<Stat> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    Some(Stat {
        n: v.len(),
        median: rank(0.5),
        p99: rank(0.99),
    })
}

/// The milestones of a failover or failback, from the kernel's fault event.
pub const MILESTONES: [&str; 5] = [
    "first move",
    "last move",
    "ADDR_CHANGE queued",
    "reconnected",
    "first ack",
];

/// One fault of a latency run: milliseconds from the fault event to each
/// milestone (None when it never came in the fault's window).
pub type Sample = [Option<f64>; 5];

struct RbcEvent<'a> {
    ts: f64,
    kind: &'a str,
    stream: Option<u64>,
    name: &'a str,
    /// A fault: when its command returned.
    done: Option<f64>,
}

fn rbc_events(report: &Value) -> Result<Vec<RbcEvent<'_>>> {
    let start = num(report, "clock_monotonic_start")?;
    let events = report
        .get("events")
        .and_then(Value::as_array)
        .context("no `events` in the rbc report")?;
    events
        .iter()
        .map(|e| {
            Ok(RbcEvent {
                ts: start + num(e, "t")?,
                kind: text(e, "event")?,
                stream: e.get("stream").and_then(Value::as_u64),
                name: e.get("name").and_then(Value::as_str).unwrap_or(""),
                done: e.get("done").and_then(Value::as_f64).map(|d| start + d),
            })
        })
        .collect()
}

fn ms(from: f64, to: f64) -> f64 {
    ((to - from) * 1e6).round() / 1e3
}

/// Splits a latency run into failover and failback samples.
pub fn latency(
    meta: &Meta,
    v4: bool,
    report: &Value,
    trace: &[Event],
) -> Result<(Vec<Sample>, Vec<Sample>)> {
    let ev = rbc_events(report)?;
    let addr = if v4 { &meta.addr4 } else { &meta.addr6 };
    let faults: Vec<&RbcEvent> = ev.iter().filter(|e| e.kind == "fault").collect();
    // The kernel event of a fault: the port's first event while its command
    // ran (under TCG a command takes up to a second to start).
    let kernel_event = |f: &RbcEvent| -> Option<f64> {
        let until = f.done.unwrap_or(f64::INFINITY) + 0.05;
        trace
            .iter()
            .find(|e| {
                e.name == "rdmabond_port_event"
                    && e.get("port") == meta.port
                    && e.ts >= f.ts
                    && e.ts <= until
            })
            .map(|e| e.ts)
    };
    let starts: Vec<Option<f64>> = faults.iter().map(|f| kernel_event(f)).collect();
    let (mut over, mut back) = (Vec::new(), Vec::new());
    for (i, f) in faults.iter().enumerate() {
        let Some(t0) = starts[i] else {
            continue;
        };
        // A fault's milestones come before the next fault's kernel event.
        let end = faults
            .get(i + 1)
            .map_or(f64::INFINITY, |n| starts[i + 1].unwrap_or(n.ts));
        let after = |ts: f64| ts >= t0 && ts < end;
        let moves: Vec<f64> = trace
            .iter()
            .filter(|e| e.name == "rdmabond_addr_move" && e.get("err") == "0" && after(e.ts))
            .map(|e| e.ts)
            .collect();
        let queued = trace
            .iter()
            .filter(|e| {
                e.name == "cm_notify_addr_change" && addr_of(e.get("addr")) == addr && after(e.ts)
            })
            .map(|e| e.ts)
            .next_back();
        // Streams disrupted from the fault's kernel event on, and when each
        // came back. Not from the command's start: `rdma link add` of a
        // failback can break a stream and see it connect again before the
        // port's event, and that reconnection is not the failback's (it
        // came out 100 ms before the failback delay ended).
        let mut disrupted: BTreeMap<u64, f64> = BTreeMap::new();
        for e in ev.iter().filter(|e| after(e.ts)) {
            if matches!(e.kind, "addr_change" | "conn_error") {
                if let Some(s) = e.stream {
                    disrupted.entry(s).or_insert(e.ts);
                }
            }
        }
        let back_at = |kind: &str| -> Option<f64> {
            if disrupted.is_empty() {
                return None;
            }
            let mut last: f64 = t0;
            for (s, since) in &disrupted {
                let t = ev
                    .iter()
                    .find(|e| e.kind == kind && e.stream == Some(*s) && e.ts >= *since)?
                    .ts;
                last = last.max(t);
            }
            Some(last)
        };
        let failback = f.name.starts_with("failback");
        let delay = if failback { meta.failback_ms } else { 0.0 };
        let at = |t: Option<f64>| t.map(|t| ms(t0, t) - delay);
        let sample = [
            at(moves.first().copied()),
            at(moves.last().copied()),
            at(queued),
            at(back_at("established")),
            at(back_at("flowing")),
        ];
        if failback {
            back.push(sample);
        } else {
            over.push(sample);
        }
    }
    Ok((over, back))
}

/// One point of a scaling curve.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub n: u32,
    pub time: Option<Stat>,
    /// Addresses moved, or ids told, per repetition (median).
    pub count: f64,
}

fn median(v: &[f64]) -> f64 {
    stat(v).map_or(0.0, |s| s.median)
}

/// Address scaling: from each NETDEV_GOING_DOWN of `port` to the last address
/// that left it, before the port's next event of another kind.
pub fn scale_addrs(port: &str, n: u32, trace: &[Event]) -> Point {
    let (mut times, mut counts) = (Vec::new(), Vec::new());
    let evs: Vec<&Event> = trace.iter().collect();
    for (i, e) in evs.iter().enumerate() {
        if !(e.name == "rdmabond_port_event"
            && e.get("port") == port
            && e.get("event") == "NETDEV_GOING_DOWN")
        {
            continue;
        }
        let end = evs[i + 1..]
            .iter()
            .find(|x| {
                x.name == "rdmabond_port_event"
                    && x.get("port") == port
                    && x.get("event") != "NETDEV_GOING_DOWN"
                    && x.get("event") != "NETDEV_DOWN"
            })
            .map_or(f64::INFINITY, |x| x.ts);
        let moves: Vec<f64> = evs[i + 1..]
            .iter()
            .filter(|x| {
                x.name == "rdmabond_addr_move"
                    && x.get("from") == port
                    && x.get("err") == "0"
                    && x.ts < end
            })
            .map(|x| x.ts)
            .collect();
        if let Some(last) = moves.last() {
            times.push(ms(e.ts, *last));
            counts.push(moves.len() as f64);
        }
    }
    Point {
        n,
        time: stat(&times),
        count: median(&counts),
    }
}

/// Fan-out: from rdmabond_addr_notify of `addr` to the RDMA CM's
/// cm_notify_addr_change for it (the ids queued), for every move.
pub fn scale_ids(addr: &str, n: u32, trace: &[Event]) -> Point {
    let (mut times, mut counts) = (Vec::new(), Vec::new());
    for (i, e) in trace.iter().enumerate() {
        if e.name != "rdmabond_addr_notify" || addr_of(e.get("addr")) != addr {
            continue;
        }
        if let Some(q) = trace[i + 1..]
            .iter()
            .find(|x| x.name == "cm_notify_addr_change" && addr_of(x.get("addr")) == addr)
        {
            times.push(ms(e.ts, q.ts));
            counts.push(q.get("ids").parse().unwrap_or(0.0));
        }
    }
    Point {
        n,
        time: stat(&times),
        count: median(&counts),
    }
}

/// Group scaling: from the first NETDEV_GOING_DOWN of a round (the first port
/// of every group goes down at once) to the last failover move of the round;
/// a round ends at the first NETDEV_UP.
pub fn scale_groups(n: u32, trace: &[Event]) -> Point {
    let (mut times, mut counts) = (Vec::new(), Vec::new());
    let mut start: Option<f64> = None;
    let mut moves: Vec<f64> = Vec::new();
    let mut close = |start: &mut Option<f64>, moves: &mut Vec<f64>| {
        if let (Some(s), Some(last)) = (*start, moves.last()) {
            times.push(ms(s, *last));
            counts.push(moves.len() as f64);
        }
        *start = None;
        moves.clear();
    };
    for e in trace {
        match (e.name.as_str(), e.get("event")) {
            ("rdmabond_port_event", "NETDEV_GOING_DOWN") if start.is_none() => start = Some(e.ts),
            ("rdmabond_port_event", "NETDEV_UP") => close(&mut start, &mut moves),
            ("rdmabond_addr_move", _) if start.is_some() && e.get("err") == "0" => moves.push(e.ts),
            _ => {}
        }
    }
    close(&mut start, &mut moves);
    Point {
        n,
        time: stat(&times),
        count: median(&counts),
    }
}

/// The growth a curve shows, from the slope of log(time) over log(n) between
/// its last two points: the fixed costs (the engine's start, a work item)
/// dominate the small counts, and a slope taken from the first point hides a
/// quadratic term behind them (1 -> 256 addresses gave 1.08 when 64 -> 256
/// gave 1.97).
pub fn complexity(points: &[Point]) -> String {
    let pts: Vec<(u32, f64)> = points
        .iter()
        .filter_map(|p| p.time.map(|t| (p.n, t.median.max(0.001))))
        .collect();
    let [.., a, b] = pts.as_slice() else {
        return if pts.is_empty() {
            "no data"
        } else {
            "one point"
        }
        .into();
    };
    if b.0 <= a.0 {
        return "one point".into();
    }
    let slope = (b.1 / a.1).ln() / (f64::from(b.0) / f64::from(a.0)).ln();
    let shape = match slope {
        s if s < 0.25 => "O(1)",
        s if s < 0.75 => "sublinear",
        s if s < 1.3 => "O(n)",
        s if s < 1.7 => "superlinear",
        _ => "O(n^2) or worse",
    };
    format!("{shape} (log-log slope {slope:.2} from {} to {})", a.0, b.0)
}

/// Messages acknowledged per second in a throughput run.
pub fn throughput(meta: &Meta, report: &Value) -> Result<f64> {
    Ok(num(report, "acked")? / meta.tput_s)
}

/// One configuration of the side-by-side runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Side {
    pub config: String,
    pub longest_stall_ms: f64,
    pub resent: f64,
    pub lost: f64,
    pub reconnects: f64,
}

pub fn side(config: &str, report: &Value) -> Result<Side> {
    Ok(Side {
        config: config.into(),
        longest_stall_ms: num(report, "longest_stall_ms")?,
        resent: num(report, "resent")?,
        lost: num(report, "lost")?,
        reconnects: num(report, "reconnects")?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::trace;
    use super::*;
    use serde_json::json;

    fn meta() -> Meta {
        Meta {
            failback_ms: 100.0,
            port: "a0".into(),
            addr4: "192.0.2.1".into(),
            addr6: "2001:db8::1".into(),
            tput_s: 3.0,
        }
    }

    fn line(ts: f64, ev: &str, rest: &str) -> String {
        format!("  kworker/0:1-12  [000] .....  {ts:.6}: {ev}: {rest}\n")
    }

    #[test]
    fn stats_use_nearest_rank() {
        let s = stat(&[5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!((s.n, s.median, s.p99), (5, 3.0, 5.0));
        assert!(stat(&[]).is_none());
    }

    #[test]
    fn latency_milestones_from_the_fault_event() {
        let mut t = String::new();
        t += &line(
            100.010,
            "rdmabond_port_event",
            "port=a0 event=NETDEV_GOING_DOWN",
        );
        t += &line(
            100.011,
            "rdmabond_addr_move",
            "group=rb0 addr=192.0.2.1/24 from=a0 to=a1 reason=failover err=0",
        );
        t += &line(
            100.012,
            "rdmabond_addr_move",
            "group=rb0 addr=2001:db8::1/64 from=a0 to=a1 reason=failover err=0",
        );
        t += &line(100.020, "cm_notify_addr_change", "addr=192.0.2.1 ids=1");
        t += &line(101.010, "rdmabond_port_event", "port=a0 event=NETDEV_UP");
        t += &line(
            101.111,
            "rdmabond_addr_move",
            "group=rb0 addr=192.0.2.1/24 from=a1 to=a0 reason=failback err=0",
        );
        t += &line(101.120, "cm_notify_addr_change", "addr=192.0.2.1 ids=1");
        let trace = trace::parse(&t);
        // rbc started at monotonic 99.0: its t are relative to that.
        let report = json!({
            "clock_monotonic_start": 99.0,
            "events": [
                {"event": "fault", "t": 1.0, "name": "failover-0", "done": 1.2},
                {"event": "addr_change", "t": 1.021, "stream": 0},
                {"event": "established", "t": 1.030, "stream": 0},
                {"event": "flowing", "t": 1.040, "stream": 0},
                {"event": "fault", "t": 2.0, "name": "failback-0", "done": 2.02},
                // broken and back while the command ran, before the port's event
                {"event": "conn_error", "t": 2.005, "stream": 0},
                {"event": "established", "t": 2.008, "stream": 0},
                {"event": "addr_change", "t": 2.121, "stream": 0},
                {"event": "established", "t": 2.130, "stream": 0},
            ]
        });
        let (over, back) = latency(&meta(), true, &report, &trace).unwrap();
        assert_eq!(over.len(), 1);
        assert_eq!(
            over[0],
            [Some(1.0), Some(2.0), Some(10.0), Some(20.0), Some(30.0)]
        );
        // failback: the 100 ms delay is taken off; no ack came
        assert_eq!(back[0][0], Some(1.0));
        assert_eq!(back[0][2], Some(10.0));
        assert_eq!(back[0][3], Some(20.0));
        assert_eq!(back[0][4], None);
        assert!(latency(&meta(), true, &json!({"events": []}), &trace).is_err());
    }

    #[test]
    fn scaling_windows() {
        let mut t = String::new();
        for (k, base) in [100.0, 200.0].iter().enumerate() {
            t += &line(
                *base,
                "rdmabond_port_event",
                "port=a0 event=NETDEV_GOING_DOWN",
            );
            for i in 0..4 {
                t += &line(
                    base + 0.001 * (i + 1) as f64,
                    "rdmabond_addr_move",
                    &format!("group=rb0 addr=198.18.0.{i}/15 from=a0 to=a1 reason=failover err=0"),
                );
            }
            t += &line(base + 1.0, "rdmabond_port_event", "port=a0 event=NETDEV_UP");
            t += &line(
                base + 1.1,
                "rdmabond_addr_move",
                "group=rb0 addr=198.18.0.1/15 from=a1 to=a0 reason=failback err=0",
            );
            t += &line(
                base + 1.2,
                "rdmabond_addr_notify",
                "group=rb0 addr=192.0.2.1 host=a0 waited_ms=1 forced=0",
            );
            t += &line(
                base + 1.2 + 0.001 * (k + 1) as f64,
                "cm_notify_addr_change",
                "addr=192.0.2.1 ids=100",
            );
        }
        let trace = trace::parse(&t);
        let a = scale_addrs("a0", 4, &trace);
        assert_eq!(a.count, 4.0);
        assert_eq!(a.time.unwrap().median, 4.0);
        let i = scale_ids("192.0.2.1", 100, &trace);
        assert_eq!(i.count, 100.0);
        assert_eq!(i.time.unwrap().p99, 2.0);
        let g = scale_groups(1, &trace);
        assert_eq!(g.time.unwrap().n, 2);
        assert_eq!(g.count, 4.0);
    }

    #[test]
    fn complexity_from_the_slope() {
        let p = |n, ms| Point {
            n,
            time: stat(&[ms]),
            count: 0.0,
        };
        assert!(complexity(&[p(1, 1.0), p(256, 256.0)]).starts_with("O(n)"));
        assert!(complexity(&[p(1, 2.0), p(256, 2.2)]).starts_with("O(1)"));
        assert_eq!(complexity(&[]), "no data");
        assert_eq!(complexity(&[p(1, 2.0)]), "one point");
        // The bench of 2026-12-04: a fixed cost at 1, quadratic above 16.
        let moved = [p(1, 2.0), p(16, 4.1), p(64, 51.8), p(256, 800.3)];
        assert_eq!(
            complexity(&moved),
            "O(n^2) or worse (log-log slope 1.97 from 64 to 256)"
        );
    }

    #[test]
    fn side_and_throughput_need_their_keys() {
        let r = json!({"longest_stall_ms": 12.5, "resent": 3, "lost": 0, "reconnects": 1, "acked": 300});
        assert_eq!(side("bond", &r).unwrap().longest_stall_ms, 12.5);
        assert_eq!(throughput(&meta(), &r).unwrap(), 100.0);
        assert!(side("x", &json!({})).is_err());
    }
}
