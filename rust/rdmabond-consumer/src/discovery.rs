//! Finds a group's ports, their rdmabond attributes and their addresses.

use std::net::IpAddr;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::netlink::{Addr, Link, PortAttrs};
use crate::rtnl::Socket;

/// One port of the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Port {
    pub ifindex: u32,
    pub name: String,
    /// Admin up with carrier.
    pub running: bool,
    pub state: &'static str,
    pub attrs: PortAttrs,
    /// The addresses the port carries now (global ones; link-local left out).
    pub addrs: Vec<IpAddr>,
}

impl Port {
    /// Healthy as far as user space can tell: rdmabond state UP and running.
    pub fn healthy(&self) -> bool {
        self.running && self.attrs.is_up()
    }
}

/// The group device and its ports, ordered by ifindex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    pub ifindex: u32,
    pub name: String,
    pub ports: Vec<Port>,
}

fn usable(a: &IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => !v4.is_link_local() && !v4.is_loopback(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80 && !v6.is_loopback(),
    }
}

/// Builds the group view from a link and an address dump.
pub fn group_from(name: &str, links: &[Link], addrs: &[Addr]) -> Result<Group> {
    let Some(dev) = links.iter().find(|l| l.name == name) else {
        bail!("no device {name} in this network namespace");
    };
    if dev.kind.as_deref() != Some("rdmabond") {
        bail!(
            "{name} is not an rdmabond group (kind {})",
            dev.kind.as_deref().unwrap_or("none")
        );
    }
    let mut ports: Vec<Port> = links
        .iter()
        .filter(|l| l.master == Some(dev.ifindex))
        .map(|l| {
            let attrs = l.port.unwrap_or_default();
            Port {
                ifindex: l.ifindex,
                name: l.name.clone(),
                running: l.running(),
                state: attrs.state_name(),
                attrs,
                addrs: addrs
                    .iter()
                    .filter(|a| a.ifindex == l.ifindex && usable(&a.addr))
                    .map(|a| a.addr)
                    .collect(),
            }
        })
        .collect();
    ports.sort_by_key(|p| p.ifindex);
    Ok(Group {
        ifindex: dev.ifindex,
        name: name.to_string(),
        ports,
    })
}

/// Dumps links and addresses and builds the group view of `name`.
pub fn discover(name: &str) -> Result<Group> {
    let mut s = Socket::open(0)?;
    let links = s.links()?;
    let addrs = s.addrs()?;
    group_from(name, &links, &addrs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::{parse_addr, parse_link, tests as nl};
    use crate::uapi;

    #[test]
    fn finds_ports_and_their_addresses() {
        let mut group = parse_link(&nl::link_payload(4, "rb0", 0, None)).unwrap();
        group.kind = Some("rdmabond".into());
        let links = vec![
            group,
            parse_link(&nl::link_payload(6, "a1", 4, Some(0))).unwrap(),
            parse_link(&nl::link_payload(5, "a0", 4, Some(0))).unwrap(),
            parse_link(&nl::link_payload(7, "b0", 0, None)).unwrap(),
        ];
        let addrs: Vec<Addr> = [
            (5, "192.0.2.1"),
            (5, "fe80::1"),
            (6, "192.0.2.2"),
            (6, "2001:db8::2"),
            (7, "192.0.2.11"),
        ]
        .iter()
        .map(|(i, a)| parse_addr(&nl::addr_payload(*i, a.parse().unwrap(), 24)).unwrap())
        .collect();
        let g = group_from("rb0", &links, &addrs).unwrap();
        let names: Vec<&str> = g.ports.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a0", "a1"]);
        assert_eq!(
            g.ports[0].addrs,
            vec!["192.0.2.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(g.ports[1].addrs.len(), 2);
        assert!(g.ports[0].healthy());
        let down = uapi::RDMABOND_PORT_STATE_DOWN as u8;
        let mut links2 = links.clone();
        links2[2] = parse_link(&nl::link_payload(5, "a0", 4, Some(down))).unwrap();
        assert!(!group_from("rb0", &links2, &addrs).unwrap().ports[0].healthy());
    }

    #[test]
    fn refuses_a_device_that_is_no_group() {
        let links = vec![parse_link(&nl::link_payload(7, "b0", 0, None)).unwrap()];
        let e = group_from("b0", &links, &[]).unwrap_err().to_string();
        assert!(e.contains("not an rdmabond group"), "{e}");
        assert!(group_from("zz", &links, &[]).is_err());
    }
}
