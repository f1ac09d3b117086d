//! A NETLINK_ROUTE socket over libc: dumps and event subscriptions.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use anyhow::{bail, Context, Result};

use crate::netlink::{self, Addr, Link};
use crate::uapi;

/// What an event socket reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    NewLink(Link),
    NewAddr(Addr),
    DelAddr(Addr),
}

pub struct Socket {
    fd: OwnedFd,
    seq: u32,
}

impl Socket {
    /// A socket subscribed to `groups` (RTMGRP_* bits; 0 for dumps only).
    pub fn open(groups: u32) -> Result<Socket> {
        // SAFETY: plain socket(2) call; the fd is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error()).context("socket(AF_NETLINK)");
        }
        // SAFETY: fd is a fresh, valid descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain data; zero is a valid value.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        sa.nl_groups = groups;
        // SAFETY: sa is a valid sockaddr_nl of the given size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sa as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error()).context("bind(AF_NETLINK)");
        }
        Ok(Socket { fd, seq: 1 })
    }

    /// A non-blocking socket for address and link events.
    pub fn monitor() -> Result<Socket> {
        let s =
            Socket::open(uapi::RTMGRP_LINK | uapi::RTMGRP_IPV4_IFADDR | uapi::RTMGRP_IPV6_IFADDR)?;
        // SAFETY: fcntl on our own valid fd.
        unsafe {
            let fl = libc::fcntl(s.fd.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(s.fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
        Ok(s)
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    fn dump(&mut self, ty: u32, family: i32) -> Result<Vec<Vec<u8>>> {
        self.seq += 1;
        let req = netlink::dump_request(ty as u16, self.seq, family as u8);
        // SAFETY: req is a valid buffer.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error()).context("netlink send");
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = self.recv(&mut buf).context("netlink recv")?;
            for m in netlink::messages(&buf[..n])? {
                if m.seq != self.seq {
                    continue;
                }
                match u32::from(m.ty) {
                    t if t == uapi::NLMSG_DONE => return Ok(out),
                    t if t == uapi::NLMSG_ERROR => {
                        let e = netlink::error_code(m.payload)?;
                        if e != 0 {
                            bail!("netlink dump {ty}: {}", io::Error::from_raw_os_error(e));
                        }
                    }
                    _ => out.push(m.payload.to_vec()),
                }
            }
        }
    }

    /// Creates rdmabond group `name`; waits for the kernel's answer.
    pub fn create_group(&mut self, name: &str, failback_delay_ms: Option<u32>) -> Result<()> {
        self.seq += 1;
        let req = netlink::new_group_request(name, self.seq, failback_delay_ms);
        // SAFETY: req is a valid buffer.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error()).context("netlink send");
        }
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = self.recv(&mut buf).context("netlink recv")?;
            for m in netlink::messages(&buf[..n])? {
                if m.seq == self.seq && u32::from(m.ty) == uapi::NLMSG_ERROR {
                    let e = netlink::error_code(m.payload)?;
                    if e != 0 {
                        bail!("creating {name}: {}", io::Error::from_raw_os_error(e));
                    }
                    return Ok(());
                }
            }
        }
    }

    /// Every link of this network namespace.
    pub fn links(&mut self) -> Result<Vec<Link>> {
        self.dump(uapi::RTM_GETLINK, libc::AF_UNSPEC)?
            .iter()
            .map(|p| netlink::parse_link(p))
            .collect()
    }

    /// Every IPv4 and IPv6 address of this network namespace.
    pub fn addrs(&mut self) -> Result<Vec<Addr>> {
        let mut out = Vec::new();
        for family in [libc::AF_INET, libc::AF_INET6] {
            for p in self.dump(uapi::RTM_GETADDR, family)? {
                out.push(netlink::parse_addr(&p)?);
            }
        }
        Ok(out)
    }

    /// The events queued on a monitor socket (never blocks).
    pub fn events(&self) -> Result<Vec<Event>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match self.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(out),
                Err(e) => return Err(e).context("netlink event recv"),
            };
            for m in netlink::messages(&buf[..n])? {
                let ev = match u32::from(m.ty) {
                    t if t == uapi::RTM_NEWLINK => Event::NewLink(netlink::parse_link(m.payload)?),
                    t if t == uapi::RTM_NEWADDR => Event::NewAddr(netlink::parse_addr(m.payload)?),
                    t if t == uapi::RTM_DELADDR => Event::DelAddr(netlink::parse_addr(m.payload)?),
                    _ => continue,
                };
                out.push(ev);
            }
        }
    }
}
