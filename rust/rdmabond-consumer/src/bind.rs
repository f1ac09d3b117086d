//! `rbc bind`: N RDMA CM ids bound to one address, counting the ADDR_CHANGE
//! events they get: the fan-out load of a failover.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::Serialize;

use crate::ffi;
use crate::rdma::Channel;

#[derive(Debug, Serialize)]
pub struct BindReport {
    pub addr: IpAddr,
    pub bound: u32,
    pub addr_change: u32,
    /// Seconds from the first to the last ADDR_CHANGE.
    pub spread_s: f64,
}

/// Binds `count` ids to `addr`, says so on stdout ("rbc-bind: bound N"), then
/// counts ADDR_CHANGE for `duration`.
pub fn run(addr: IpAddr, count: u32, duration: Duration) -> Result<BindReport> {
    if count == 0 {
        bail!("--count must be positive");
    }
    let ch = Channel::new()?;
    let mut ids = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let mut c = ch.create_id()?;
        c.bind(SocketAddr::new(addr, 0))?;
        ids.push(c);
    }
    println!("rbc-bind: bound {count} on {addr}");
    let end = Instant::now() + duration;
    let (mut n, mut first, mut last) = (0u32, None, None);
    while Instant::now() < end {
        let mut pfd = libc::pollfd {
            fd: ch.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 50) };
        while let Some(ev) = ch.next()? {
            if ev.kind == ffi::RDMA_CM_EVENT_ADDR_CHANGE {
                n += 1;
                let now = Instant::now();
                first.get_or_insert(now);
                last = Some(now);
            }
        }
    }
    let spread_s = match (first, last) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    drop(ids);
    Ok(BindReport {
        addr,
        bound: count,
        addr_change: n,
        spread_s,
    })
}
