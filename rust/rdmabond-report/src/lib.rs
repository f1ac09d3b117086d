//! The JSON report of rbc, the load-balanced consumer (rust/rdmabond-consumer): the
//! one schema that rbc writes (`rbc-report: {...}` in the guest) and `cargo xtask
//! test-qemu` reads, and the one check that connections are spread evenly over a
//! group's ports. Reading a report with a missing or mistyped key is an error
//! naming it, not a default.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The server's view of one stream, sent back in every ACK.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Messages delivered (in order, each once).
    pub delivered: u64,
    /// Copies of delivered messages that came flagged RESEND (expected, dropped).
    pub resent_dups: u64,
    /// Copies of delivered messages that came NOT flagged RESEND: duplicates.
    pub duplicated: u64,
    /// Messages that skipped ahead of the next expected one: a loss.
    pub gaps: u64,
}

/// Something that happened during the run, at `t` seconds since the start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Fault {
        t: f64,
        name: String,
        cmd: String,
        status: Option<i32>,
        /// When the command returned.
        done: Option<f64>,
    },
    AddrMove {
        t: f64,
        addr: IpAddr,
        from: String,
        to: String,
    },
    AddrChange {
        t: f64,
        stream: u32,
        /// Delivered to the id of a connection already dropped after an error.
        retired: bool,
    },
    ConnError {
        t: f64,
        stream: u32,
        what: String,
    },
    Established {
        t: f64,
        stream: u32,
        port: String,
        device: String,
    },
    /// The first ACK after an establishment.
    Flowing {
        t: f64,
        stream: u32,
    },
    /// A step of a connection attempt: "addr resolved", "route resolved" (where a
    /// reconnection spends its time).
    Step {
        t: f64,
        stream: u32,
        step: String,
    },
}

/// Connections per port at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub label: String,
    pub t: f64,
    /// port -> (healthy, established connections)
    pub ports: BTreeMap<String, PortCount>,
    /// Connections established but on no port of the group.
    pub elsewhere: u32,
    /// [`spread_problem`]'s verdict: null when even.
    pub uneven: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortCount {
    pub healthy: bool,
    pub connections: u32,
}

/// Milliseconds from a fault to each milestone; null when it never came.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    pub name: String,
    pub at: f64,
    pub addr_move_ms: Option<f64>,
    pub addr_change_ms: Option<f64>,
    pub traffic_ms: Option<f64>,
    /// Streams whose connection broke or got ADDR_CHANGE after this fault.
    pub disrupted: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub group: String,
    /// "ipv4" or "ipv6": the family of the connections.
    pub family: String,
    pub connections: u32,
    pub messages: u64,
    pub sent: u64,
    pub resent: u64,
    pub acked: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub resent_dups_dropped: u64,
    pub reconnects: u64,
    /// The longest time between two acknowledgements of one stream, in ms.
    #[serde(default)]
    pub longest_stall_ms: f64,
    /// CLOCK_MONOTONIC at the start, in seconds: event times `t` are relative to
    /// it, so they line up with a trace taken with trace_clock "mono".
    #[serde(default)]
    pub clock_monotonic_start: f64,
    /// For each reconnection made because the live id got ADDR_CHANGE, the
    /// connection attempts it took (1: the first one worked).
    pub change_attempts: Vec<u32>,
    pub server: Counters,
    pub snapshots: Vec<Snapshot>,
    pub timings: Vec<Timing>,
    pub events: Vec<Event>,
    pub ok: bool,
    pub problems: Vec<String>,
}

/// Whether connections are spread evenly over a group's ports: none on an
/// unhealthy port, `total` on the group's ports in all, and the healthy ports
/// within one of each other. The reason when not.
pub fn spread_problem(ports: &BTreeMap<String, PortCount>, total: u32) -> Option<String> {
    if let Some((name, p)) = ports.iter().find(|(_, p)| !p.healthy && p.connections > 0) {
        return Some(format!(
            "{} connection(s) on unhealthy port {name}",
            p.connections
        ));
    }
    let sum: u32 = ports.values().map(|p| p.connections).sum();
    if sum != total {
        return Some(format!("{sum} of {total} connections on the group's ports"));
    }
    let healthy: Vec<(&String, u32)> = ports
        .iter()
        .filter(|(_, p)| p.healthy)
        .map(|(n, p)| (n, p.connections))
        .collect();
    let min = healthy.iter().map(|h| h.1).min();
    let max = healthy.iter().map(|h| h.1).max();
    match (min, max) {
        (None, _) => Some("no healthy port".into()),
        (Some(lo), Some(hi)) if hi - lo > 1 => Some(format!(
            "uneven: {} on the healthy ports",
            healthy
                .iter()
                .map(|(n, c)| format!("{n}={c}"))
                .collect::<Vec<_>>()
                .join(" ")
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(v: &[(&str, bool, u32)]) -> BTreeMap<String, PortCount> {
        v.iter()
            .map(|(n, healthy, connections)| {
                (
                    n.to_string(),
                    PortCount {
                        healthy: *healthy,
                        connections: *connections,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn spread() {
        assert_eq!(
            spread_problem(&ports(&[("a0", true, 2), ("a1", true, 3)]), 5),
            None
        );
        assert_eq!(
            spread_problem(&ports(&[("a0", false, 0), ("a1", true, 4)]), 4),
            None
        );
        let uneven = spread_problem(&ports(&[("a0", true, 1), ("a1", true, 3)]), 4).unwrap();
        assert_eq!(uneven, "uneven: a0=1 a1=3 on the healthy ports");
        let down = spread_problem(&ports(&[("a0", false, 1), ("a1", true, 3)]), 4).unwrap();
        assert_eq!(down, "1 connection(s) on unhealthy port a0");
        let short = spread_problem(&ports(&[("a0", true, 1), ("a1", true, 2)]), 4).unwrap();
        assert_eq!(short, "3 of 4 connections on the group's ports");
        assert_eq!(
            spread_problem(&ports(&[("a0", false, 0)]), 0).as_deref(),
            Some("no healthy port")
        );
    }

    #[test]
    fn a_missing_key_is_an_error_that_names_it() {
        let e = serde_json::from_str::<PortCount>(r#"{"healthy":true}"#).unwrap_err();
        assert!(e.to_string().contains("missing field `connections`"), "{e}");
        let p: PortCount = serde_json::from_str(r#"{"healthy":true,"connections":2}"#).unwrap();
        assert_eq!(p.connections, 2);
    }
}
