//! Parses the ftrace text of the rdmabond and rdma_cma events the bench enables
//! (`cat /sys/kernel/tracing/trace`, trace_clock "mono").

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

/// One trace event: `ts` in seconds of CLOCK_MONOTONIC.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub ts: f64,
    pub name: String,
    pub fields: BTreeMap<String, String>,
}

impl Event {
    pub fn get(&self, key: &str) -> &str {
        self.fields.get(key).map_or("", String::as_str)
    }
}

//  `  kworker/0:1-12  [000] b..1.  123.456789: rdmabond_addr_move: group=rb0 ...`
static LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*.+?-\d+\s+\[\d+\]\s+(?:\S+\s+)?(\d+\.\d+):\s+(\w+):\s?(.*)$")
        .expect("valid regex")
});
static KEY: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?:^|\s)(\w+)=").expect("valid regex"));

/// `k=v k2=v with spaces` -> map; a value runs to the next ` key=`.
pub fn fields(rest: &str) -> BTreeMap<String, String> {
    let keys: Vec<(usize, usize, &str)> = KEY
        .captures_iter(rest)
        .map(|c| {
            let whole = c.get(0).expect("match");
            let k = c.get(1).expect("group");
            (whole.start(), whole.end(), k.as_str())
        })
        .collect();
    let mut out = BTreeMap::new();
    for (i, (_, end, k)) in keys.iter().enumerate() {
        let stop = keys.get(i + 1).map_or(rest.len(), |n| n.0);
        out.insert(k.to_string(), rest[*end..stop].trim().to_string());
    }
    out
}

/// The events of a trace file, in time order; comment and unknown lines skipped.
pub fn parse(text: &str) -> Vec<Event> {
    let mut v: Vec<Event> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let c = LINE.captures(l)?;
            Some(Event {
                ts: c[1].parse().ok()?,
                name: c[2].to_string(),
                fields: fields(&c[3]),
            })
        })
        .collect();
    v.sort_by(|a, b| a.ts.total_cmp(&b.ts));
    v
}

/// The address of an `addr=` field without its prefix length.
pub fn addr_of(field: &str) -> &str {
    field.split('/').next().unwrap_or(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# tracer: nop
#
#                                _-----=> irqs-off/BH-disabled
   kworker/u8:2-41      [001] .....   812.000100: rdmabond_port_event: port=a0 event=NETDEV_GOING_DOWN
             ip-310     [000] ...1.   812.000050: rdmabond_engine_start: group=rb0 moves_only=1
             ip-310     [000] .....   812.000400: rdmabond_addr_move: group=rb0 addr=192.0.2.1/24 from=a0 to=a1 reason=port removed err=0
    kworker/0:2-33      [000] .....   812.090000: rdmabond_port_health: group=rb0 port=a0 healthy=0 cause=admin down
    kworker/0:2-33      [000] .....   812.100000: cm_notify_addr_change: addr=2001:db8::1 ids=3
garbage line
";

    #[test]
    fn parses_and_orders_events() {
        let ev = parse(SAMPLE);
        assert_eq!(ev.len(), 5);
        assert_eq!(ev[0].name, "rdmabond_engine_start");
        assert_eq!(ev[1].get("event"), "NETDEV_GOING_DOWN");
        assert!((ev[1].ts - 812.0001).abs() < 1e-9);
        let mv = &ev[2];
        assert_eq!(mv.get("reason"), "port removed");
        assert_eq!(addr_of(mv.get("addr")), "192.0.2.1");
        assert_eq!(mv.get("err"), "0");
        assert_eq!(ev[3].get("cause"), "admin down");
        assert_eq!(ev[4].get("addr"), "2001:db8::1");
        assert_eq!(ev[4].get("ids"), "3");
        assert_eq!(ev[4].get("missing"), "");
    }

    #[test]
    fn values_with_spaces_run_to_the_next_key() {
        let f = fields("port=a0 event=RDMA device removed");
        assert_eq!(f["event"], "RDMA device removed");
        assert_eq!(f["port"], "a0");
        assert!(fields("").is_empty());
    }
}
