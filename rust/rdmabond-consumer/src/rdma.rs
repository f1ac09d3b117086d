//! Thin safe wrappers over librdmacm and libibverbs: an event channel, and a
//! connection (cm id + PD + CQ + MR + RC QP) with inline sends and a receive ring.

use std::collections::VecDeque;
use std::ffi::CStr;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ptr;

use anyhow::{bail, Context, Result};

use crate::ffi;
use crate::proto;

/// Receive completions carry the slot index; sends carry this bit.
const SEND_BIT: u64 = 1 << 63;

fn check(rc: i32, what: &str) -> Result<()> {
    if rc != 0 {
        return Err(io::Error::last_os_error()).with_context(|| what.to_string());
    }
    Ok(())
}

/// A socket address in the C layout librdmacm wants.
pub struct CSockAddr {
    storage: libc::sockaddr_storage,
}

impl CSockAddr {
    pub fn new(addr: SocketAddr) -> CSockAddr {
        // SAFETY: sockaddr_storage is plain data, all-zero is valid.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        match addr.ip() {
            IpAddr::V4(v4) => {
                // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
                let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
                sin.sin_family = libc::AF_INET as u16;
                sin.sin_port = addr.port().to_be();
                sin.sin_addr.s_addr = u32::from_ne_bytes(v4.octets());
            }
            IpAddr::V6(v6) => {
                // SAFETY: as above, for sockaddr_in6.
                let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
                sin6.sin6_family = libc::AF_INET6 as u16;
                sin6.sin6_port = addr.port().to_be();
                sin6.sin6_addr.s6_addr = v6.octets();
            }
        }
        CSockAddr { storage }
    }

    fn as_ptr(&mut self) -> *mut ffi::sockaddr {
        &mut self.storage as *mut _ as *mut ffi::sockaddr
    }
}

/// An RDMA CM event, copied out and already acknowledged.
#[derive(Debug, Clone, Copy)]
pub struct CmEvent {
    pub id: *mut ffi::rdma_cm_id,
    pub kind: u32,
    pub status: i32,
}

impl CmEvent {
    pub fn name(&self) -> String {
        // SAFETY: rdma_event_str returns a static string.
        unsafe { CStr::from_ptr(ffi::rdma_event_str(self.kind)) }
            .to_string_lossy()
            .into_owned()
    }
}

/// A non-blocking RDMA CM event channel.
pub struct Channel {
    ch: *mut ffi::rdma_event_channel,
}

impl Channel {
    pub fn new() -> Result<Channel> {
        // SAFETY: plain constructor; checked for NULL.
        let ch = unsafe { ffi::rdma_create_event_channel() };
        if ch.is_null() {
            return Err(io::Error::last_os_error()).context(
                "rdma_create_event_channel (is rdma_ucm loaded, /dev/infiniband/rdma_cm there?)",
            );
        }
        // SAFETY: ch is valid; fcntl on its fd.
        unsafe {
            let fd = (*ch).fd;
            let fl = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
        Ok(Channel { ch })
    }

    pub fn fd(&self) -> i32 {
        // SAFETY: ch is valid for our lifetime.
        unsafe { (*self.ch).fd }
    }

    /// The next event, if one is queued.
    pub fn next(&self) -> Result<Option<CmEvent>> {
        let mut ev: *mut ffi::rdma_cm_event = ptr::null_mut();
        // SAFETY: ch is valid; ev receives an event we ack below.
        let rc = unsafe { ffi::rdma_get_cm_event(self.ch, &mut ev) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                return Ok(None);
            }
            return Err(e).context("rdma_get_cm_event");
        }
        // SAFETY: ev is a valid event until acked.
        let out = unsafe {
            CmEvent {
                id: (*ev).id,
                kind: (*ev).event,
                status: (*ev).status,
            }
        };
        // SAFETY: ev came from rdma_get_cm_event and is acked once.
        check(unsafe { ffi::rdma_ack_cm_event(ev) }, "rdma_ack_cm_event")?;
        Ok(Some(out))
    }

    /// A new cm id (RC, RDMA_PS_TCP) on this channel.
    pub fn create_id(&self) -> Result<Conn> {
        let mut id = ptr::null_mut();
        // SAFETY: ch valid; id receives the new id.
        check(
            unsafe { ffi::rdma_create_id(self.ch, &mut id, ptr::null_mut(), ffi::RDMA_PS_TCP) },
            "rdma_create_id",
        )?;
        Ok(Conn::from_id(id))
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        // SAFETY: every id of the channel is destroyed before (Conn borrows none,
        // but the caller drops connections first).
        unsafe { ffi::rdma_destroy_event_channel(self.ch) }
    }
}

/// A completion, decoded.
#[derive(Debug, Clone, Copy)]
pub enum Completion {
    Sent,
    Received(proto::Msg),
    Error(u32, bool),
}

/// One cm id and, once set up, its QP and buffers.
pub struct Conn {
    id: *mut ffi::rdma_cm_id,
    pd: *mut ffi::ibv_pd,
    cq: *mut ffi::ibv_cq,
    mr: *mut ffi::ibv_mr,
    recv: Vec<u8>,
    has_qp: bool,
    pub sends_in_flight: u32,
    pub send_depth: u32,
}

pub const TIMEOUT_MS: i32 = 2000;

impl Conn {
    pub fn from_id(id: *mut ffi::rdma_cm_id) -> Conn {
        Conn {
            id,
            pd: ptr::null_mut(),
            cq: ptr::null_mut(),
            mr: ptr::null_mut(),
            recv: Vec::new(),
            has_qp: false,
            sends_in_flight: 0,
            send_depth: 0,
        }
    }

    pub fn id(&self) -> *mut ffi::rdma_cm_id {
        self.id
    }

    pub fn resolve_addr(&mut self, src: IpAddr, dst: SocketAddr) -> Result<()> {
        let mut s = CSockAddr::new(SocketAddr::new(src, 0));
        let mut d = CSockAddr::new(dst);
        // SAFETY: id valid, addresses live across the call.
        check(
            unsafe { ffi::rdma_resolve_addr(self.id, s.as_ptr(), d.as_ptr(), TIMEOUT_MS) },
            &format!("rdma_resolve_addr {src} -> {dst}"),
        )
    }

    pub fn resolve_route(&mut self) -> Result<()> {
        // SAFETY: id valid.
        check(
            unsafe { ffi::rdma_resolve_route(self.id, TIMEOUT_MS) },
            "rdma_resolve_route",
        )
    }

    /// Binds the id to `addr` (port 0: any free port) without listening.
    pub fn bind(&mut self, addr: SocketAddr) -> Result<()> {
        let mut a = CSockAddr::new(addr);
        // SAFETY: id valid, address lives across the call.
        check(
            unsafe { ffi::rdma_bind_addr(self.id, a.as_ptr()) },
            &format!("rdma_bind_addr {addr}"),
        )
    }

    pub fn bind_listen(&mut self, addr: SocketAddr) -> Result<()> {
        let mut a = CSockAddr::new(addr);
        // SAFETY: id valid, address lives across the call.
        check(
            unsafe { ffi::rdma_bind_addr(self.id, a.as_ptr()) },
            &format!("rdma_bind_addr {addr}"),
        )?;
        // SAFETY: id valid and bound.
        check(
            unsafe { ffi::rdma_listen(self.id, 16) },
            &format!("rdma_listen {addr}"),
        )
    }

    /// The RDMA device the id is bound to, e.g. "rxe_a0_x".
    pub fn device(&self) -> String {
        // SAFETY: id valid; verbs and its device are valid while bound.
        unsafe {
            let verbs = (*self.id).verbs;
            if verbs.is_null() {
                return String::new();
            }
            CStr::from_ptr(ffi::ibv_get_device_name((*verbs).device))
                .to_string_lossy()
                .into_owned()
        }
    }

    pub fn port_num(&self) -> u8 {
        // SAFETY: id valid.
        unsafe { (*self.id).port_num }
    }

    /// PD, CQ, receive ring (`recv_depth` slots) and an RC QP; posts every receive.
    pub fn setup_qp(&mut self, send_depth: u32, recv_depth: u32) -> Result<()> {
        // SAFETY: the id is resolved (verbs set); each object is checked for NULL and
        // freed in Drop in reverse order.
        unsafe {
            let verbs = (*self.id).verbs;
            if verbs.is_null() {
                bail!("the cm id has no device yet");
            }
            self.pd = ffi::ibv_alloc_pd(verbs);
            if self.pd.is_null() {
                return Err(io::Error::last_os_error()).context("ibv_alloc_pd");
            }
            let cqe = (send_depth + recv_depth) as i32;
            self.cq = ffi::ibv_create_cq(verbs, cqe, ptr::null_mut(), ptr::null_mut(), 0);
            if self.cq.is_null() {
                return Err(io::Error::last_os_error()).context("ibv_create_cq");
            }
            self.recv = vec![0u8; recv_depth as usize * proto::LEN];
            self.mr = ffi::ibv_reg_mr(
                self.pd,
                self.recv.as_mut_ptr().cast(),
                self.recv.len(),
                ffi::IBV_ACCESS_LOCAL_WRITE as i32,
            );
            if self.mr.is_null() {
                return Err(io::Error::last_os_error()).context("ibv_reg_mr");
            }
            let mut attr = ffi::ibv_qp_init_attr {
                send_cq: self.cq,
                recv_cq: self.cq,
                qp_type: ffi::IBV_QPT_RC,
                cap: ffi::ibv_qp_cap {
                    max_send_wr: send_depth,
                    max_recv_wr: recv_depth,
                    max_send_sge: 1,
                    max_recv_sge: 1,
                    max_inline_data: proto::LEN as u32,
                },
                ..Default::default()
            };
            check(
                ffi::rdma_create_qp(self.id, self.pd, &mut attr),
                "rdma_create_qp",
            )?;
        }
        self.has_qp = true;
        self.send_depth = send_depth;
        for slot in 0..recv_depth {
            self.post_recv(slot)?;
        }
        Ok(())
    }

    fn post_recv(&mut self, slot: u32) -> Result<()> {
        let off = slot as usize * proto::LEN;
        // SAFETY: mr is registered; the slot lies inside the registered buffer.
        unsafe {
            let mut sge = ffi::ibv_sge {
                addr: self.recv.as_ptr().add(off) as u64,
                length: proto::LEN as u32,
                lkey: (*self.mr).lkey,
            };
            let mut wr = ffi::ibv_recv_wr {
                wr_id: u64::from(slot),
                next: ptr::null_mut(),
                sg_list: &mut sge,
                num_sge: 1,
            };
            let mut bad = ptr::null_mut();
            let qp = (*self.id).qp;
            let post = (*(*qp).context).ops.post_recv.context("no post_recv op")?;
            let rc = post(qp, &mut wr, &mut bad);
            if rc != 0 {
                bail!("ibv_post_recv: {}", io::Error::from_raw_os_error(rc));
            }
        }
        Ok(())
    }

    fn conn_param() -> ffi::rdma_conn_param {
        ffi::rdma_conn_param {
            responder_resources: 1,
            initiator_depth: 1,
            retry_count: 7,
            rnr_retry_count: 7,
            ..Default::default()
        }
    }

    pub fn connect(&mut self) -> Result<()> {
        let mut p = Self::conn_param();
        // SAFETY: id valid with a QP.
        check(
            unsafe { ffi::rdma_connect(self.id, &mut p) },
            "rdma_connect",
        )
    }

    pub fn accept(&mut self) -> Result<()> {
        let mut p = Self::conn_param();
        // SAFETY: id valid with a QP.
        check(unsafe { ffi::rdma_accept(self.id, &mut p) }, "rdma_accept")
    }

    pub fn disconnect(&mut self) {
        // SAFETY: id valid; failure (not connected) is harmless.
        unsafe { ffi::rdma_disconnect(self.id) };
    }

    /// Whether another send fits in the send queue.
    pub fn can_send(&self) -> bool {
        self.has_qp && self.sends_in_flight < self.send_depth
    }

    /// Posts one signaled inline SEND.
    pub fn send(&mut self, msg: &proto::Msg) -> Result<()> {
        let mut buf = msg.encode();
        // SAFETY: inline data is copied at post time; buf outlives the call.
        unsafe {
            let mut sge = ffi::ibv_sge {
                addr: buf.as_mut_ptr() as u64,
                length: proto::LEN as u32,
                lkey: 0,
            };
            let mut wr = ffi::ibv_send_wr {
                wr_id: SEND_BIT | msg.seq,
                sg_list: &mut sge,
                num_sge: 1,
                opcode: ffi::IBV_WR_SEND,
                send_flags: ffi::IBV_SEND_INLINE | ffi::IBV_SEND_SIGNALED,
                ..Default::default()
            };
            let mut bad = ptr::null_mut();
            let qp = (*self.id).qp;
            let post = (*(*qp).context).ops.post_send.context("no post_send op")?;
            let rc = post(qp, &mut wr, &mut bad);
            if rc != 0 {
                bail!("ibv_post_send: {}", io::Error::from_raw_os_error(rc));
            }
        }
        self.sends_in_flight += 1;
        Ok(())
    }

    /// Polls the CQ; received messages are decoded and their slot reposted.
    pub fn poll(&mut self, out: &mut VecDeque<Completion>) -> Result<()> {
        if !self.has_qp {
            return Ok(());
        }
        let mut wc: [ffi::ibv_wc; 16] = Default::default();
        loop {
            // SAFETY: cq valid; wc has room for 16 entries.
            let n = unsafe {
                let poll = (*(*self.cq).context).ops.poll_cq.context("no poll_cq op")?;
                poll(self.cq, wc.len() as i32, wc.as_mut_ptr())
            };
            if n < 0 {
                bail!("ibv_poll_cq failed");
            }
            for w in &wc[..n as usize] {
                let is_send = w.wr_id & SEND_BIT != 0;
                if is_send {
                    self.sends_in_flight = self.sends_in_flight.saturating_sub(1);
                }
                if w.status != ffi::IBV_WC_SUCCESS {
                    out.push_back(Completion::Error(w.status, is_send));
                    continue;
                }
                if is_send {
                    out.push_back(Completion::Sent);
                } else {
                    let off = w.wr_id as usize * proto::LEN;
                    let msg = proto::Msg::decode(&self.recv[off..off + proto::LEN]);
                    self.post_recv(w.wr_id as u32)?;
                    out.push_back(Completion::Received(msg?));
                }
            }
            if (n as usize) < wc.len() {
                return Ok(());
            }
        }
    }
}

/// The status text of a work completion.
pub fn wc_status_str(status: u32) -> String {
    // SAFETY: ibv_wc_status_str returns a static string.
    unsafe { CStr::from_ptr(ffi::ibv_wc_status_str(status)) }
        .to_string_lossy()
        .into_owned()
}

/// The netdev behind port `port` of RDMA device `dev` (from its default GID).
pub fn netdev_of(dev: &str, port: u8) -> Option<String> {
    let p = format!("/sys/class/infiniband/{dev}/ports/{port}/gid_attrs/ndevs/0");
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

impl Drop for Conn {
    fn drop(&mut self) {
        // SAFETY: each object was created by us and is destroyed once, QP first.
        unsafe {
            if self.has_qp {
                ffi::rdma_destroy_qp(self.id);
            }
            if !self.cq.is_null() {
                ffi::ibv_destroy_cq(self.cq);
            }
            if !self.mr.is_null() {
                ffi::ibv_dereg_mr(self.mr);
            }
            if !self.pd.is_null() {
                ffi::ibv_dealloc_pd(self.pd);
            }
            ffi::rdma_destroy_id(self.id);
        }
    }
}
