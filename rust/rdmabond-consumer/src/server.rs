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
    let mut owners = Owners::default();
    // The order in which connections were accepted (see Owners).
    let mut order: HashMap<usize, u64> = HashMap::new();
    let mut accepted = 0u64;
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
                            accepted += 1;
                            order.insert(key, accepted);
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
                        owners.forget(key);
                        order.remove(&key);
                        eprintln!("rbc server: connection closed ({})", ev.name());
                    }
                }
            }
        }
        let mut broken = Vec::new();
        let mut stale = Vec::new();
        for (key, c) in conns.iter_mut() {
            if let Err(e) = c.poll(&mut done) {
                eprintln!("rbc server: {e:#}");
                broken.push(*key);
                continue;
            }
            while let Some(comp) = done.pop_front() {
                match comp {
                    Completion::Received(m) if m.kind == proto::DATA => {
                        let nth = order.get(key).copied().unwrap_or(0);
                        if let Some(old) = owners.claim((m.run, m.stream), *key, nth) {
                            eprintln!(
                                "rbc server: stream {} of run {:#x} came back on another connection, closing the old one",
                                m.stream, m.run
                            );
                            stale.push(old);
                        }
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
        for k in broken.into_iter().chain(stale) {
            if let Some(mut c) = conns.remove(&k) {
                owners.forget(k);
                order.remove(&k);
                c.disconnect();
            }
        }
    }
    Ok(())
}

/// Which connection serves each stream (client run, stream number).
///
/// A client whose port failed connects again for the same stream, and the
/// old connection on this side may never hear of it: no DREQ comes when the
/// client's RDMA device went away, and an idle connection of this server
/// sends nothing that could time out. It would stay open for good, and its
/// peer's QP number with it: a client RDMA device created again (an rxe
/// device deleted and added back) numbers its QPs from the start, and the
/// RDMA CM rejects each new connection whose QP number an open one still
/// has (IB_CM_REJ_STALE_CONN), one per stale connection. So the first
/// message of a stream on a newer connection closes the old one, as a server
/// with keepalives would find it dead. A late message on the old connection
/// (sent before the client gave up on it) changes nothing.
#[derive(Debug, Default)]
struct Owners(HashMap<(u64, u32), (usize, u64)>);

impl Owners {
    /// `conn`, the `nth` connection accepted, delivered a message of
    /// `stream`: the connection that served the stream before, if `conn`
    /// takes over from an older one.
    fn claim(&mut self, stream: (u64, u32), conn: usize, nth: u64) -> Option<usize> {
        match self.0.get(&stream) {
            Some(&(old, old_nth)) if old == conn || old_nth > nth => None,
            owner => {
                let old = owner.map(|&(old, _)| old);
                self.0.insert(stream, (conn, nth));
                old
            }
        }
    }

    /// `conn` is closed: it serves nothing (its key may be reused).
    fn forget(&mut self, conn: usize) {
        self.0.retain(|_, (c, _)| *c != conn);
    }
}

/// A new id listening on `addr`.
fn listen(ch: &Channel, addr: SocketAddr) -> Result<Conn> {
    let mut l = ch.create_id()?;
    l.bind_listen(addr)
        .with_context(|| format!("cannot listen on {} port {}", addr.ip(), addr.port()))?;
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::Owners;

    #[test]
    fn a_stream_back_on_a_new_connection_names_the_old_one() {
        let mut o = Owners::default();
        assert_eq!(o.claim((1, 0), 10, 1), None, "first connection of stream 0");
        assert_eq!(o.claim((1, 0), 10, 1), None, "same connection again");
        assert_eq!(o.claim((1, 1), 11, 2), None, "stream 1 has its own");
        assert_eq!(o.claim((1, 0), 12, 3), Some(10), "stream 0 reconnected");
        assert_eq!(
            o.claim((1, 0), 10, 1),
            None,
            "a late message on the old one"
        );
        assert_eq!(o.claim((1, 0), 12, 3), None, "the new one still serves it");
        assert_eq!(o.claim((2, 0), 13, 4), None, "another run's stream 0");
        o.forget(12);
        assert_eq!(o.claim((1, 0), 14, 5), None, "the closed one is forgotten");
        assert_eq!(
            o.claim((1, 1), 14, 5),
            Some(11),
            "one connection, two streams"
        );
    }
}
