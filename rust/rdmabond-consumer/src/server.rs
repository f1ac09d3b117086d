//! `rbc server`: listens on the given addresses, delivers each stream's messages
//! once and in order, and acknowledges every message with its counters.
//!
//! A listening id stays bound to the RDMA device it listened on. When its
//! address moves (rdmabond failover or failback), it gets
//! `RDMA_CM_EVENT_ADDR_CHANGE`: the server then listens again on the same
//! address, which binds the new id to the device that now holds it, so new
//! clients keep being accepted. This is the re-listen pattern every RDMA CM
//! server needs on a moved address.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::ffi;
use crate::proto::{self, Msg, Stream};
use crate::rdma::{Channel, Completion, Conn};

pub struct Options {
    pub addrs: Vec<IpAddr>,
    pub port: u16,
    pub depth: u32,
    pub duration: Option<Duration>,
}

pub fn run(o: &Options) -> Result<()> {
    let ch = Channel::new()?;
    let mut listeners = Vec::new();
    for a in &o.addrs {
        listeners.push(listen(&ch, SocketAddr::new(*a, o.port))?);
    }
    eprintln!("rbc server: listening on {:?} port {}", o.addrs, o.port);
    let mut conns: HashMap<usize, Conn> = HashMap::new();
    let mut streams: HashMap<(u64, u32), Stream> = HashMap::new();
    let mut done = VecDeque::new();
    let start = Instant::now();
    loop {
        if o.duration.is_some_and(|d| start.elapsed() > d) {
            break;
        }
        let mut pfd = libc::pollfd {
            fd: ch.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 1) };
        while let Some(ev) = ch.next()? {
            let key = ev.id as usize;
            match ev.kind {
                ffi::RDMA_CM_EVENT_CONNECT_REQUEST => {
                    let mut c = Conn::from_id(ev.id);
                    let r = c
                        .setup_qp(o.depth * 4, o.depth * 2)
                        .and_then(|_| c.accept());
                    match r {
                        Ok(()) => {
                            conns.insert(key, c);
                        }
                        Err(e) => eprintln!("rbc server: cannot accept: {e:#}"),
                    }
                }
                ffi::RDMA_CM_EVENT_ESTABLISHED => {
                    if let Some(c) = conns.get(&key) {
                        eprintln!("rbc server: connection established on {}", c.device());
                    }
                }
                ffi::RDMA_CM_EVENT_ADDR_CHANGE
                    if let Some(i) = listeners.iter().position(|l| l.id() == ev.id) =>
                {
                    let addr = SocketAddr::new(o.addrs[i], o.port);
                    // The old id goes first: the new one binds the same port.
                    drop(listeners.remove(i));
                    let l = listen(&ch, addr)?;
                    eprintln!(
                        "rbc server: address moved, listening on {addr} again, on {}",
                        l.device()
                    );
                    listeners.insert(i, l);
                }
                _ => {
                    if conns.remove(&key).is_some() {
                        eprintln!("rbc server: connection closed ({})", ev.name());
                    }
                }
            }
        }
        let mut broken = Vec::new();
        for (key, c) in conns.iter_mut() {
            if let Err(e) = c.poll(&mut done) {
                eprintln!("rbc server: {e:#}");
                broken.push(*key);
                continue;
            }
            while let Some(comp) = done.pop_front() {
                match comp {
                    Completion::Received(m) if m.kind == proto::DATA => {
                        let s = streams.entry((m.run, m.stream)).or_default();
                        s.receive(m.seq, m.flags);
                        let ack = Msg {
                            kind: proto::ACK,
                            counters: s.counters,
                            ..m
                        };
                        if !c.can_send() || c.send(&ack).is_err() {
                            broken.push(*key);
                            break;
                        }
                    }
                    Completion::Error(..) => {
                        broken.push(*key);
                        break;
                    }
                    _ => {}
                }
            }
            done.clear();
        }
        for k in broken {
            if let Some(mut c) = conns.remove(&k) {
                c.disconnect();
            }
        }
    }
    Ok(())
}

/// A new id listening on `addr`.
fn listen(ch: &Channel, addr: SocketAddr) -> Result<Conn> {
    let mut l = ch.create_id()?;
    l.bind_listen(addr)
        .with_context(|| format!("cannot listen on {} port {}", addr.ip(), addr.port()))?;
    Ok(l)
}
