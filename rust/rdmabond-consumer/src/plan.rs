//! Spreads K connections evenly over the ports of a group.

use std::net::IpAddr;

use anyhow::{bail, Result};

use crate::discovery::Group;

/// One planned connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub stream: u32,
    /// The port whose home address is the source.
    pub port: String,
    pub src: IpAddr,
    pub dst: IpAddr,
}

/// Stream i goes from port i mod N (its first address of the servers' family) to
/// server i mod S: port loads differ by at most one.
pub fn plan(group: &Group, servers: &[IpAddr], k: u32) -> Result<Vec<Slot>> {
    let Some(first) = servers.first() else {
        bail!("no server address given");
    };
    let v4 = first.is_ipv4();
    if servers.iter().any(|s| s.is_ipv4() != v4) {
        bail!("server addresses must all be IPv4 or all IPv6");
    }
    let ports: Vec<(&str, IpAddr)> = group
        .ports
        .iter()
        .filter_map(|p| {
            p.addrs
                .iter()
                .find(|a| a.is_ipv4() == v4)
                .map(|a| (p.name.as_str(), *a))
        })
        .collect();
    if ports.is_empty() {
        bail!(
            "no port of {} has an {} address",
            group.name,
            if v4 { "IPv4" } else { "IPv6" }
        );
    }
    Ok((0..k)
        .map(|i| {
            let (port, src) = ports[i as usize % ports.len()];
            Slot {
                stream: i,
                port: port.to_string(),
                src,
                dst: servers[i as usize % servers.len()],
            }
        })
        .collect())
}

/// Without a group: stream i goes from source i mod N (those of the servers'
/// family) to server i mod S. `port` names the source address.
pub fn plan_sources(sources: &[IpAddr], servers: &[IpAddr], k: u32) -> Result<Vec<Slot>> {
    let Some(first) = servers.first() else {
        bail!("no server address given");
    };
    let v4 = first.is_ipv4();
    if servers.iter().any(|s| s.is_ipv4() != v4) {
        bail!("server addresses must all be IPv4 or all IPv6");
    }
    let srcs: Vec<IpAddr> = sources
        .iter()
        .copied()
        .filter(|a| a.is_ipv4() == v4)
        .collect();
    if srcs.is_empty() {
        bail!(
            "no --sources address is {}, like the servers",
            if v4 { "IPv4" } else { "IPv6" }
        );
    }
    Ok((0..k)
        .map(|i| {
            let src = srcs[i as usize % srcs.len()];
            Slot {
                stream: i,
                port: src.to_string(),
                src,
                dst: servers[i as usize % servers.len()],
            }
        })
        .collect())
}

/// The source after `cur` in `sources` (same family), for a stream that lost its
/// connection without a group to move its address: the no-group baseline.
pub fn next_source(sources: &[IpAddr], cur: IpAddr) -> IpAddr {
    let same: Vec<IpAddr> = sources
        .iter()
        .copied()
        .filter(|a| a.is_ipv4() == cur.is_ipv4())
        .collect();
    match same.iter().position(|a| *a == cur) {
        Some(i) => same[(i + 1) % same.len()],
        None => same.first().copied().unwrap_or(cur),
    }
}

/// Whether `counts` (connections per port: name, healthy, connections) is even
/// among the healthy ports: [`rdmabond_report::spread_problem`], the one check that
/// cargo xtask applies to the report too. Returns the reason when not.
pub fn check_spread(counts: &[(String, bool, u32)], total: u32) -> Result<(), String> {
    let ports = counts
        .iter()
        .map(|(name, healthy, connections)| {
            (
                name.clone(),
                rdmabond_report::PortCount {
                    healthy: *healthy,
                    connections: *connections,
                },
            )
        })
        .collect();
    match rdmabond_report::spread_problem(&ports, total) {
        Some(why) => Err(why),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::Port;
    use crate::netlink::PortAttrs;

    fn group(addrs: &[&[&str]]) -> Group {
        Group {
            ifindex: 1,
            name: "rb0".into(),
            ports: addrs
                .iter()
                .enumerate()
                .map(|(i, a)| Port {
                    ifindex: 2 + i as u32,
                    name: format!("a{i}"),
                    running: true,
                    state: "up",
                    attrs: PortAttrs::default(),
                    addrs: a.iter().map(|s| s.parse().unwrap()).collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn spreads_round_robin() {
        let g = group(&[&["192.0.2.1", "2001:db8::1"], &["2001:db8::2", "192.0.2.2"]]);
        let servers = ["192.0.2.11".parse().unwrap(), "192.0.2.12".parse().unwrap()];
        let p = plan(&g, &servers, 5).unwrap();
        let ports: Vec<&str> = p.iter().map(|s| s.port.as_str()).collect();
        assert_eq!(ports, ["a0", "a1", "a0", "a1", "a0"]);
        assert_eq!(p[1].src, "192.0.2.2".parse::<IpAddr>().unwrap());
        assert_eq!(p[3].dst, servers[1]);
        assert_eq!(p[4].stream, 4);
    }

    #[test]
    fn picks_the_servers_family_and_refuses_mixes() {
        let g = group(&[&["192.0.2.1", "2001:db8::1"], &["192.0.2.2"]]);
        let p = plan(&g, &["2001:db8::11".parse().unwrap()], 4).unwrap();
        assert!(p.iter().all(|s| s.port == "a0"));
        let mixed = [
            "2001:db8::11".parse().unwrap(),
            "192.0.2.11".parse().unwrap(),
        ];
        assert!(plan(&g, &mixed, 2).is_err());
        assert!(plan(
            &group(&[&["192.0.2.1"]]),
            &["2001:db8::11".parse().unwrap()],
            2
        )
        .is_err());
        assert!(plan(&g, &[], 2).is_err());
    }

    #[test]
    fn plans_over_sources_and_rotates() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let srcs = [ip("192.0.2.1"), ip("2001:db8::1"), ip("192.0.2.2")];
        let p = plan_sources(&srcs, &[ip("192.0.2.11")], 3).unwrap();
        let got: Vec<IpAddr> = p.iter().map(|s| s.src).collect();
        assert_eq!(got, [ip("192.0.2.1"), ip("192.0.2.2"), ip("192.0.2.1")]);
        assert_eq!(p[1].port, "192.0.2.2");
        assert!(plan_sources(&[ip("192.0.2.1")], &[ip("2001:db8::11")], 1).is_err());
        assert_eq!(next_source(&srcs, ip("192.0.2.1")), ip("192.0.2.2"));
        assert_eq!(next_source(&srcs, ip("192.0.2.2")), ip("192.0.2.1"));
        assert_eq!(next_source(&srcs, ip("2001:db8::1")), ip("2001:db8::1"));
    }

    #[test]
    fn spread_check() {
        let c = |v: &[(&str, bool, u32)]| -> Vec<(String, bool, u32)> {
            v.iter().map(|(n, h, k)| (n.to_string(), *h, *k)).collect()
        };
        assert!(check_spread(&c(&[("a0", true, 2), ("a1", true, 3)]), 5).is_ok());
        assert!(check_spread(&c(&[("a0", false, 0), ("a1", true, 4)]), 4).is_ok());
        assert!(check_spread(&c(&[("a0", true, 1), ("a1", true, 3)]), 4)
            .unwrap_err()
            .contains("uneven"));
        assert!(check_spread(&c(&[("a0", false, 1), ("a1", true, 3)]), 4)
            .unwrap_err()
            .contains("unhealthy"));
        assert!(check_spread(&c(&[("a0", true, 1), ("a1", true, 2)]), 4)
            .unwrap_err()
            .contains("3 of 4"));
    }
}
