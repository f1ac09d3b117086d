//! The client's JSON report and the failover/failback timings.

use std::collections::BTreeMap;

pub use rdmabond_report::{Event, PortCount, Report, Snapshot, Timing};

fn ms(from: f64, to: f64) -> f64 {
    ((to - from) * 1e6).round() / 1e3
}

/// Timings per fault: each fault owns the events up to the next fault. Only
/// moves of addresses of the connections' family (`v4`) count.
pub fn timings(events: &[Event], v4: bool) -> Vec<Timing> {
    let faults: Vec<(f64, &str)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Fault { t, name, .. } => Some((*t, name.as_str())),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    for (i, (at, name)) in faults.iter().enumerate() {
        let end = faults.get(i + 1).map_or(f64::INFINITY, |f| f.0);
        let window = |t: f64| t >= *at && t < end;
        let addr_move = events.iter().find_map(|e| match e {
            Event::AddrMove { t, addr, .. } if window(*t) && addr.is_ipv4() == v4 => Some(*t),
            _ => None,
        });
        let addr_change = events.iter().find_map(|e| match e {
            Event::AddrChange { t, .. } if window(*t) => Some(*t),
            _ => None,
        });
        // Streams disrupted in the window, with their first disruption time.
        let mut disrupted: BTreeMap<u32, f64> = BTreeMap::new();
        for e in events {
            if let Event::AddrChange { t, stream, .. } | Event::ConnError { t, stream, .. } = e {
                if window(*t) {
                    disrupted.entry(*stream).or_insert(*t);
                }
            }
        }
        let mut traffic = Some(*at);
        for (stream, since) in &disrupted {
            let back = events.iter().find_map(|e| match e {
                Event::Flowing { t, stream: s } if s == stream && *t >= *since => Some(*t),
                _ => None,
            });
            traffic = match (traffic, back) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
        }
        if disrupted.is_empty() {
            traffic = None;
        }
        out.push(Timing {
            name: name.to_string(),
            at: *at,
            addr_move_ms: addr_move.map(|t| ms(*at, t)),
            addr_change_ms: addr_change.map(|t| ms(*at, t)),
            traffic_ms: traffic.map(|t| ms(*at, t)),
            disrupted: disrupted.keys().copied().collect(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(t: f64, name: &str) -> Event {
        Event::Fault {
            t,
            name: name.into(),
            cmd: "x".into(),
            status: Some(0),
            done: Some(t),
        }
    }

    #[test]
    fn timings_per_fault() {
        let ev = vec![
            Event::Flowing { t: 0.5, stream: 0 },
            fault(2.0, "failover"),
            Event::AddrMove {
                t: 2.005,
                addr: "2001:db8::1".parse().unwrap(),
                from: "a0".into(),
                to: "a1".into(),
            },
            Event::AddrMove {
                t: 2.010,
                addr: "192.0.2.1".parse().unwrap(),
                from: "a0".into(),
                to: "a1".into(),
            },
            Event::AddrChange {
                t: 2.020,
                stream: 0,
                retired: false,
            },
            Event::ConnError {
                t: 2.025,
                stream: 2,
                what: "x".into(),
            },
            Event::Flowing {
                t: 2.300,
                stream: 0,
            },
            Event::Flowing {
                t: 2.400,
                stream: 2,
            },
            fault(8.0, "failback"),
            Event::AddrMove {
                t: 8.5,
                addr: "192.0.2.1".parse().unwrap(),
                from: "a1".into(),
                to: "a0".into(),
            },
            Event::AddrChange {
                t: 8.51,
                stream: 0,
                retired: true,
            },
        ];
        let t = timings(&ev, true);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].addr_move_ms, Some(10.0));
        assert_eq!(t[0].addr_change_ms, Some(20.0));
        assert_eq!(t[0].traffic_ms, Some(400.0));
        assert_eq!(t[0].disrupted, vec![0, 2]);
        assert_eq!(t[1].addr_move_ms, Some(500.0));
        // stream 0 never flowed again after the failback
        assert_eq!(t[1].traffic_ms, None);
        // the IPv6 address moved first
        assert_eq!(timings(&ev, false)[0].addr_move_ms, Some(5.0));
    }

    #[test]
    fn no_disruption_means_no_traffic_time() {
        let t = timings(&[fault(1.0, "f")], true);
        assert_eq!(t[0].traffic_ms, None);
        assert_eq!(t[0].addr_move_ms, None);
    }
}
