//! rtnetlink messages: building dump requests and parsing links and addresses.
//! Pure functions over byte slices; the socket is in `rtnl.rs`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{bail, ensure, Context, Result};

use crate::uapi;

const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
const IFADDRMSG_LEN: usize = 8;
const NLA_TYPE_MASK: u16 = !(1 << 15 | 1 << 14);

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_ne_bytes([b[off], b[off + 1]])
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// One netlink message of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msg<'a> {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

/// Splits a datagram into its netlink messages.
pub fn messages(buf: &[u8]) -> Result<Vec<Msg<'_>>> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let len = u32_at(buf, off) as usize;
        ensure!(
            len >= NLMSG_HDRLEN && off + len <= buf.len(),
            "truncated netlink message ({len} bytes at offset {off} of {})",
            buf.len()
        );
        out.push(Msg {
            ty: u16_at(buf, off + 4),
            flags: u16_at(buf, off + 6),
            seq: u32_at(buf, off + 8),
            payload: &buf[off + NLMSG_HDRLEN..off + len],
        });
        off += align4(len);
    }
    Ok(out)
}

/// The errno of an NLMSG_ERROR payload (0 is an ack).
pub fn error_code(payload: &[u8]) -> Result<i32> {
    ensure!(payload.len() >= 4, "short NLMSG_ERROR");
    Ok(-(u32_at(payload, 0) as i32))
}

/// One attribute (`struct rtattr` / `struct nlattr`, same layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    pub kind: u16,
    pub data: &'a [u8],
}

impl Attr<'_> {
    pub fn u8(&self) -> Result<u8> {
        self.data.first().copied().context("empty u8 attribute")
    }

    pub fn u32(&self) -> Result<u32> {
        ensure!(self.data.len() >= 4, "short u32 attribute {}", self.kind);
        Ok(u32_at(self.data, 0))
    }

    pub fn string(&self) -> String {
        let end = self
            .data
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.data.len());
        String::from_utf8_lossy(&self.data[..end]).into_owned()
    }
}

/// The attributes in `buf`, nesting flags masked off the type.
pub fn attrs(buf: &[u8]) -> Result<Vec<Attr<'_>>> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 4 <= buf.len() {
        let len = u16_at(buf, off) as usize;
        ensure!(
            len >= 4 && off + len <= buf.len(),
            "truncated attribute at offset {off}"
        );
        out.push(Attr {
            kind: u16_at(buf, off + 2) & NLA_TYPE_MASK,
            data: &buf[off + 4..off + len],
        });
        off += align4(len);
    }
    Ok(out)
}

/// A dump request (`NLM_F_REQUEST | NLM_F_DUMP`) for RTM_GETLINK or RTM_GETADDR.
pub fn dump_request(ty: u16, seq: u32, family: u8) -> Vec<u8> {
    let body = if ty == uapi::RTM_GETLINK as u16 {
        IFINFOMSG_LEN
    } else {
        IFADDRMSG_LEN
    };
    let len = NLMSG_HDRLEN + body;
    let mut b = vec![0u8; len];
    b[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
    b[4..6].copy_from_slice(&ty.to_ne_bytes());
    let flags = (uapi::NLM_F_REQUEST | uapi::NLM_F_DUMP) as u16;
    b[6..8].copy_from_slice(&flags.to_ne_bytes());
    b[8..12].copy_from_slice(&seq.to_ne_bytes());
    b[NLMSG_HDRLEN] = family;
    b
}

pub fn put_attr(buf: &mut Vec<u8>, kind: u16, data: &[u8]) {
    buf.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(align4(buf.len()), 0);
}

/// RTM_NEWLINK creating rdmabond group `name` with the given failback delay.
pub fn new_group_request(name: &str, seq: u32, failback_delay_ms: Option<u32>) -> Vec<u8> {
    let mut data = Vec::new();
    if let Some(ms) = failback_delay_ms {
        put_attr(
            &mut data,
            uapi::IFLA_RDMABOND_FAILBACK_DELAY as u16,
            &ms.to_ne_bytes(),
        );
    }
    let mut info = Vec::new();
    put_attr(&mut info, uapi::IFLA_INFO_KIND as u16, b"rdmabond\0");
    put_attr(&mut info, uapi::IFLA_INFO_DATA as u16, &data);
    let mut body = vec![0u8; IFINFOMSG_LEN];
    let mut n = name.as_bytes().to_vec();
    n.push(0);
    put_attr(&mut body, uapi::IFLA_IFNAME as u16, &n);
    put_attr(&mut body, uapi::IFLA_LINKINFO as u16, &info);
    let len = NLMSG_HDRLEN + body.len();
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(&(len as u32).to_ne_bytes());
    b.extend_from_slice(&(uapi::RTM_NEWLINK as u16).to_ne_bytes());
    let flags = uapi::NLM_F_REQUEST | uapi::NLM_F_ACK | uapi::NLM_F_CREATE | uapi::NLM_F_EXCL;
    b.extend_from_slice(&(flags as u16).to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(&body);
    b
}

/// rdmabond port attributes (IFLA_INFO_SLAVE_DATA of a port).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PortAttrs {
    pub state: u8,
    pub home_addrs: u32,
    pub host_ifindex: u32,
    pub failovers: u32,
    pub failbacks: u32,
}

impl PortAttrs {
    pub fn state_name(&self) -> &'static str {
        match u32::from(self.state) {
            x if x == uapi::RDMABOND_PORT_STATE_UP => "up",
            x if x == uapi::RDMABOND_PORT_STATE_DOWN => "down",
            x if x == uapi::RDMABOND_PORT_STATE_FAILBACK_PENDING => "failback-pending",
            _ => "unknown",
        }
    }

    pub fn is_up(&self) -> bool {
        u32::from(self.state) == uapi::RDMABOND_PORT_STATE_UP
    }
}

/// A link (RTM_NEWLINK).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Link {
    pub ifindex: u32,
    pub name: String,
    pub flags: u32,
    pub master: Option<u32>,
    pub kind: Option<String>,
    pub slave_kind: Option<String>,
    pub port: Option<PortAttrs>,
}

impl Link {
    /// Administratively up with carrier (IFF_UP and IFF_LOWER_UP).
    pub fn running(&self) -> bool {
        let want = (libc::IFF_UP | libc::IFF_LOWER_UP) as u32;
        self.flags & want == want
    }
}

fn parse_port_attrs(buf: &[u8]) -> Result<PortAttrs> {
    let mut p = PortAttrs::default();
    for a in attrs(buf)? {
        match u32::from(a.kind) {
            k if k == uapi::IFLA_RDMABOND_PORT_STATE => p.state = a.u8()?,
            k if k == uapi::IFLA_RDMABOND_PORT_HOME_ADDRS => p.home_addrs = a.u32()?,
            k if k == uapi::IFLA_RDMABOND_PORT_HOST_IFINDEX => p.host_ifindex = a.u32()?,
            k if k == uapi::IFLA_RDMABOND_PORT_FAILOVERS => p.failovers = a.u32()?,
            k if k == uapi::IFLA_RDMABOND_PORT_FAILBACKS => p.failbacks = a.u32()?,
            _ => {}
        }
    }
    Ok(p)
}

/// Parses the payload of an RTM_NEWLINK message.
pub fn parse_link(payload: &[u8]) -> Result<Link> {
    ensure!(payload.len() >= IFINFOMSG_LEN, "short ifinfomsg");
    let mut l = Link {
        ifindex: u32_at(payload, 4),
        flags: u32_at(payload, 8),
        ..Link::default()
    };
    let mut slave_data = None;
    for a in attrs(&payload[IFINFOMSG_LEN..])? {
        match u32::from(a.kind) {
            k if k == uapi::IFLA_IFNAME => l.name = a.string(),
            k if k == uapi::IFLA_MASTER => l.master = Some(a.u32()?).filter(|&m| m != 0),
            k if k == uapi::IFLA_LINKINFO => {
                for i in attrs(a.data)? {
                    match u32::from(i.kind) {
                        k if k == uapi::IFLA_INFO_KIND => l.kind = Some(i.string()),
                        k if k == uapi::IFLA_INFO_SLAVE_KIND => l.slave_kind = Some(i.string()),
                        k if k == uapi::IFLA_INFO_SLAVE_DATA => slave_data = Some(i.data),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if l.slave_kind.as_deref() == Some("rdmabond") {
        if let Some(d) = slave_data {
            l.port = Some(parse_port_attrs(d).with_context(|| format!("port {}", l.name))?);
        }
    }
    Ok(l)
}

/// An address (RTM_NEWADDR / RTM_DELADDR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr {
    pub ifindex: u32,
    pub prefixlen: u8,
    pub addr: IpAddr,
}

/// Parses the payload of an RTM_NEWADDR / RTM_DELADDR message.
pub fn parse_addr(payload: &[u8]) -> Result<Addr> {
    ensure!(payload.len() >= IFADDRMSG_LEN, "short ifaddrmsg");
    let family = i32::from(payload[0]);
    let (mut local, mut address) = (None, None);
    for a in attrs(&payload[IFADDRMSG_LEN..])? {
        let ip = match (family, a.data.len()) {
            (libc::AF_INET, 4) => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(a.data).unwrap())),
            (libc::AF_INET6, 16) => {
                IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(a.data).unwrap()))
            }
            _ => continue,
        };
        match u32::from(a.kind) {
            k if k == uapi::IFA_LOCAL => local = Some(ip),
            k if k == uapi::IFA_ADDRESS => address = Some(ip),
            _ => {}
        }
    }
    let Some(addr) = local.or(address) else {
        bail!("address message of family {family} without an address");
    };
    Ok(Addr {
        ifindex: u32_at(payload, 4),
        prefixlen: payload[1],
        addr,
    })
}

#[cfg(test)]
pub mod tests {
    use super::*;

    use super::put_attr;

    /// Wraps a payload in a netlink header.
    pub fn wrap(ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes());
        b.extend_from_slice(&ty.to_ne_bytes());
        b.extend_from_slice(&[0, 0, 7, 0, 0, 0, 0, 0, 0, 0]);
        b.extend_from_slice(payload);
        b.resize(align4(b.len()), 0);
        b
    }

    pub fn link_payload(ifindex: u32, name: &str, master: u32, state: Option<u8>) -> Vec<u8> {
        let mut p = vec![0u8; IFINFOMSG_LEN];
        p[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        p[8..12].copy_from_slice(&((libc::IFF_UP | libc::IFF_LOWER_UP) as u32).to_ne_bytes());
        let mut n = name.as_bytes().to_vec();
        n.push(0);
        put_attr(&mut p, uapi::IFLA_IFNAME as u16, &n);
        put_attr(&mut p, uapi::IFLA_MASTER as u16, &master.to_ne_bytes());
        if let Some(s) = state {
            let mut data = Vec::new();
            put_attr(&mut data, uapi::IFLA_RDMABOND_PORT_STATE as u16, &[s]);
            put_attr(
                &mut data,
                uapi::IFLA_RDMABOND_PORT_HOST_IFINDEX as u16,
                &ifindex.to_ne_bytes(),
            );
            put_attr(
                &mut data,
                uapi::IFLA_RDMABOND_PORT_FAILOVERS as u16,
                &3u32.to_ne_bytes(),
            );
            let mut info = Vec::new();
            put_attr(&mut info, uapi::IFLA_INFO_SLAVE_KIND as u16, b"rdmabond\0");
            put_attr(
                &mut info,
                uapi::IFLA_INFO_SLAVE_DATA as u16 | 1 << 15,
                &data,
            );
            put_attr(&mut p, uapi::IFLA_LINKINFO as u16 | 1 << 15, &info);
        }
        p
    }

    pub fn addr_payload(ifindex: u32, ip: IpAddr, plen: u8) -> Vec<u8> {
        let (family, bytes) = match ip {
            IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec()),
            IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec()),
        };
        let mut p = vec![family, plen, 0, 0];
        p.extend_from_slice(&ifindex.to_ne_bytes());
        put_attr(&mut p, uapi::IFA_ADDRESS as u16, &bytes);
        p
    }

    #[test]
    fn parses_a_port_link() {
        let p = link_payload(5, "a0", 4, Some(uapi::RDMABOND_PORT_STATE_DOWN as u8));
        let l = parse_link(&p).unwrap();
        assert_eq!((l.ifindex, l.name.as_str(), l.master), (5, "a0", Some(4)));
        assert!(l.running());
        let port = l.port.unwrap();
        assert_eq!(port.state_name(), "down");
        assert_eq!((port.host_ifindex, port.failovers), (5, 3));
    }

    #[test]
    fn a_link_without_master_has_none() {
        let l = parse_link(&link_payload(1, "lo", 0, None)).unwrap();
        assert_eq!(l.master, None);
        assert_eq!(l.port, None);
    }

    #[test]
    fn parses_addresses() {
        let a = parse_addr(&addr_payload(5, "192.0.2.1".parse().unwrap(), 24)).unwrap();
        assert_eq!(a.addr, "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!((a.ifindex, a.prefixlen), (5, 24));
        let a = parse_addr(&addr_payload(6, "2001:db8::2".parse().unwrap(), 64)).unwrap();
        assert_eq!(a.addr, "2001:db8::2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn splits_messages_and_rejects_truncation() {
        let mut buf = wrap(uapi::RTM_NEWLINK as u16, &link_payload(2, "x", 0, None));
        buf.extend(wrap(uapi::NLMSG_DONE as u16, &[0, 0, 0, 0]));
        let m = messages(&buf).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].ty, uapi::NLMSG_DONE as u16);
        assert_eq!(m[0].seq, 7);
        assert!(messages(&buf[..buf.len() - 4]).is_err());
        assert!(attrs(&[8, 0, 1, 0, 0]).is_err());
    }

    #[test]
    fn dump_request_layout() {
        let r = dump_request(uapi::RTM_GETADDR as u16, 9, libc::AF_INET as u8);
        assert_eq!(r.len(), NLMSG_HDRLEN + IFADDRMSG_LEN);
        let m = messages(&r).unwrap();
        assert_eq!(m[0].ty, uapi::RTM_GETADDR as u16);
        assert_eq!(m[0].seq, 9);
        assert_eq!(m[0].payload[0], libc::AF_INET as u8);
    }

    #[test]
    fn new_group_request_nests_the_failback_delay() {
        let r = new_group_request("rb0", 3, Some(500));
        let m = messages(&r).unwrap();
        assert_eq!(m[0].ty, uapi::RTM_NEWLINK as u16);
        let top = attrs(&m[0].payload[IFINFOMSG_LEN..]).unwrap();
        assert_eq!(top[0].string(), "rb0");
        let info = attrs(top[1].data).unwrap();
        assert_eq!(info[0].string(), "rdmabond");
        let data = attrs(info[1].data).unwrap();
        assert_eq!(data[0].kind, uapi::IFLA_RDMABOND_FAILBACK_DELAY as u16);
        assert_eq!(data[0].u32().unwrap(), 500);
        let none = new_group_request("rb1", 4, None);
        let m = messages(&none).unwrap();
        let top = attrs(&m[0].payload[IFINFOMSG_LEN..]).unwrap();
        assert!(attrs(attrs(top[1].data).unwrap()[1].data)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn error_codes() {
        assert_eq!(error_code(&(-19i32).to_ne_bytes()).unwrap(), 19);
        assert!(error_code(&[0]).is_err());
    }
}
