//! The wire format: fixed 64-byte little-endian messages.
//!
//! DATA carries (run, stream, seq); the RESEND flag marks a message sent again
//! after a reconnection. The server answers every DATA with an ACK of the same
//! seq that also carries its counters for the stream.

use anyhow::{bail, ensure, Result};

pub const LEN: usize = 64;
const MAGIC: u32 = 0x7262_636d; // "rbcm"
pub const DATA: u8 = 1;
pub const ACK: u8 = 2;
pub const RESEND: u8 = 1;

pub use rdmabond_report::Counters;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msg {
    pub kind: u8,
    pub flags: u8,
    pub run: u64,
    pub stream: u32,
    pub seq: u64,
    pub counters: Counters,
}

impl Msg {
    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4] = self.kind;
        b[5] = self.flags;
        b[8..12].copy_from_slice(&self.stream.to_le_bytes());
        let words = [
            self.run,
            self.seq,
            self.counters.delivered,
            self.counters.resent_dups,
            self.counters.duplicated,
            self.counters.gaps,
        ];
        for (i, w) in words.iter().enumerate() {
            b[16 + 8 * i..24 + 8 * i].copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    pub fn decode(b: &[u8]) -> Result<Msg> {
        ensure!(b.len() >= LEN, "short message ({} bytes)", b.len());
        let word = |i: usize| u64::from_le_bytes(b[16 + 8 * i..24 + 8 * i].try_into().unwrap());
        let magic = u32::from_le_bytes(b[0..4].try_into().unwrap());
        if magic != MAGIC {
            bail!("bad magic {magic:#x}");
        }
        let kind = b[4];
        ensure!(kind == DATA || kind == ACK, "bad message kind {kind}");
        Ok(Msg {
            kind,
            flags: b[5],
            stream: u32::from_le_bytes(b[8..12].try_into().unwrap()),
            run: word(0),
            seq: word(1),
            counters: Counters {
                delivered: word(2),
                resent_dups: word(3),
                duplicated: word(4),
                gaps: word(5),
            },
        })
    }
}

/// Server-side state of one stream: in-order delivery with deduplication.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stream {
    pub counters: Counters,
}

impl Stream {
    /// Accounts one DATA message; true when it was delivered.
    pub fn receive(&mut self, seq: u64, flags: u8) -> bool {
        let next = self.counters.delivered + 1;
        if seq == next {
            self.counters.delivered = seq;
            true
        } else if seq < next {
            if flags & RESEND != 0 {
                self.counters.resent_dups += 1;
            } else {
                self.counters.duplicated += 1;
            }
            false
        } else {
            // A gap: count the missing ones, deliver this one to resync.
            self.counters.gaps += seq - next;
            self.counters.delivered = seq;
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let m = Msg {
            kind: ACK,
            flags: RESEND,
            run: 0xdead_beef_0000_0001,
            stream: 7,
            seq: 123_456,
            counters: Counters {
                delivered: 5,
                resent_dups: 1,
                duplicated: 2,
                gaps: 3,
            },
        };
        assert_eq!(Msg::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn rejects_garbage() {
        assert!(Msg::decode(&[0u8; 10]).is_err());
        assert!(Msg::decode(&[0u8; LEN]).is_err());
        let mut b = Msg {
            kind: DATA,
            flags: 0,
            run: 1,
            stream: 0,
            seq: 1,
            counters: Counters::default(),
        }
        .encode();
        b[4] = 9;
        assert!(Msg::decode(&b).is_err());
    }

    #[test]
    fn stream_dedups_and_counts() {
        let mut s = Stream::default();
        assert!(s.receive(1, 0));
        assert!(s.receive(2, 0));
        assert!(!s.receive(2, RESEND));
        assert!(!s.receive(1, 0));
        assert!(s.receive(3, RESEND));
        assert!(s.receive(6, 0));
        assert_eq!(
            s.counters,
            Counters {
                delivered: 6,
                resent_dups: 1,
                duplicated: 1,
                gaps: 2
            }
        );
    }
}
