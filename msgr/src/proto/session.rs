//! Session state that outlives sockets: sequence numbers, the outgoing queue by priority,
//! and the sent list kept for replay (docs §2.7).
//!
//! Lossless senders keep every written message on `sent` until the peer acks it. On a
//! fault, `requeue_sent` moves them back to the front of the highest-priority queue and
//! rewinds `out_seq`, so that after the reconnect's SEQ exchange
//! (`discard_requeued_up_to`) the ones the peer never got are sent again with their old
//! numbers. Nothing here knows about sockets or time.

use std::collections::{BTreeMap, VecDeque};

use crate::msg::{priority, Message};

#[derive(Debug, Default)]
pub(crate) struct Session {
    /// Outgoing messages by priority; the highest is drained first, FIFO within one.
    out_q: BTreeMap<u16, VecDeque<Message>>,
    queued: usize,
    /// Payload bytes of `out_q`.
    queued_bytes: usize,
    /// Written but not yet acked (lossless only).
    sent: VecDeque<Message>,
    /// Payload bytes of `sent`.
    sent_bytes: usize,
    /// Seq of the last message written.
    pub(crate) out_seq: u64,
    /// Seq of the last message received.
    pub(crate) in_seq: u64,
    /// Reconnect counter of this session.
    pub(crate) connect_seq: u32,
    /// The peer's global_seq of the current session.
    pub(crate) peer_global_seq: u32,
    /// Received messages not yet acked (Ceph's `ack_left`).
    pub(crate) ack_pending: bool,
    /// A keepalive was requested and not yet written.
    pub(crate) keepalive_pending: bool,
    /// The session has been open at least once since its last reset.
    pub(crate) once_ready: bool,
}

impl Session {
    /// Messages waiting to be written (requeued ones included).
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    /// Messages written and not yet acked.
    pub(crate) fn unacked(&self) -> usize {
        self.sent.len()
    }

    /// Payload bytes this session holds for the peer: queued, and written but not yet
    /// acked (what a stalled receiver makes grow).
    pub(crate) fn held_bytes(&self) -> usize {
        self.queued_bytes + self.sent_bytes
    }

    pub(crate) fn is_queued(&self) -> bool {
        self.queued > 0
    }

    pub(crate) fn enqueue(&mut self, m: Message) {
        self.queued_bytes += m.payload_len();
        self.out_q
            .entry(m.header.priority)
            .or_default()
            .push_back(m);
        self.queued += 1;
    }

    /// The next message to write: highest priority first.
    pub(crate) fn next_outgoing(&mut self) -> Option<Message> {
        let mut entry = self.out_q.last_entry()?;
        let m = entry.get_mut().pop_front();
        if entry.get().is_empty() {
            entry.remove();
        }
        if let Some(m) = &m {
            self.queued -= 1;
            self.queued_bytes -= m.payload_len();
        }
        m
    }

    pub(crate) fn record_sent(&mut self, m: Message) {
        self.sent_bytes += m.payload_len();
        self.sent.push_back(m);
    }

    /// The peer received everything up to `seq`: forget those.
    pub(crate) fn handle_ack(&mut self, seq: u64) -> usize {
        let mut n = 0;
        while self.sent.front().is_some_and(|m| m.header.seq <= seq) {
            if let Some(m) = self.sent.pop_front() {
                self.sent_bytes -= m.payload_len();
            }
            n += 1;
        }
        n
    }

    /// On a fault: put unacked messages back at the front of the highest-priority queue,
    /// in order, and rewind `out_seq` by their count.
    pub(crate) fn requeue_sent(&mut self) {
        if self.sent.is_empty() {
            return;
        }
        self.out_seq = self.out_seq.saturating_sub(self.sent.len() as u64);
        let q = self.out_q.entry(priority::HIGHEST).or_default();
        self.queued += self.sent.len();
        self.queued_bytes += std::mem::take(&mut self.sent_bytes);
        while let Some(m) = self.sent.pop_back() {
            q.push_front(m);
        }
    }

    /// After the SEQ exchange: drop requeued messages the peer already has (old seq
    /// `<= peer_in_seq`), advancing `out_seq` past each.
    pub(crate) fn discard_requeued_up_to(&mut self, peer_in_seq: u64) -> usize {
        let Some(q) = self.out_q.get_mut(&priority::HIGHEST) else {
            return 0;
        };
        let mut n = 0;
        while q
            .front()
            .is_some_and(|m| m.header.seq != 0 && m.header.seq <= peer_in_seq)
        {
            if let Some(m) = q.pop_front() {
                self.queued_bytes -= m.payload_len();
            }
            self.out_seq = self.out_seq.wrapping_add(1);
            n += 1;
        }
        if q.is_empty() {
            self.out_q.remove(&priority::HIGHEST);
        }
        self.queued -= n;
        n
    }

    /// Drops everything queued or unacked (mark_down, session reset). Returns the count.
    pub(crate) fn discard_all(&mut self) -> usize {
        let n = self.queued + self.sent.len();
        self.out_q.clear();
        self.sent.clear();
        self.queued = 0;
        self.queued_bytes = 0;
        self.sent_bytes = 0;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{MessageHeader, MsgType};
    use bytes::Bytes;

    fn m(prio: u16, tid: u64) -> Message {
        let mut h = MessageHeader::new(MsgType::PING, 1, 1);
        h.priority = prio;
        h.tid = tid;
        Message::new(h, Bytes::new(), Bytes::new(), Bytes::new())
    }

    /// Writes the next message the way the engine does: seq at write time, kept on `sent`.
    fn write(s: &mut Session) -> Option<u64> {
        let mut x = s.next_outgoing()?;
        s.out_seq += 1;
        x.header.seq = s.out_seq;
        let tid = x.header.tid;
        s.record_sent(x);
        Some(tid)
    }

    #[test]
    fn priority_then_fifo() {
        let mut s = Session::default();
        s.enqueue(m(127, 1));
        s.enqueue(m(196, 2));
        s.enqueue(m(127, 3));
        s.enqueue(m(64, 4));
        let order: Vec<u64> = std::iter::from_fn(|| write(&mut s)).collect();
        assert_eq!(order, vec![2, 1, 3, 4]);
        assert_eq!(s.queued(), 0);
    }

    #[test]
    fn ack_trims_sent() {
        let mut s = Session::default();
        for t in 0..5 {
            s.enqueue(m(127, t));
        }
        while write(&mut s).is_some() {}
        assert_eq!(s.handle_ack(3), 3);
        assert_eq!(s.unacked(), 2);
        assert_eq!(s.handle_ack(3), 0);
    }

    #[test]
    fn requeue_then_discard_replays_only_what_the_peer_lacks() {
        let mut s = Session::default();
        for t in 1..=5 {
            s.enqueue(m(127, t));
        }
        while write(&mut s).is_some() {}
        s.handle_ack(1);
        s.enqueue(m(127, 6));
        // Fault: seqs 2..=5 come back to the front; out_seq rewinds to 1.
        s.requeue_sent();
        assert_eq!((s.out_seq, s.queued(), s.unacked()), (1, 5, 0));
        // The peer says it got up to 3: 2 and 3 are dropped, out_seq moves to 3.
        assert_eq!(s.discard_requeued_up_to(3), 2);
        assert_eq!(s.out_seq, 3);
        let mut replay = Vec::new();
        while let Some(mut x) = s.next_outgoing() {
            s.out_seq += 1;
            x.header.seq = s.out_seq;
            replay.push((x.header.tid, x.header.seq));
        }
        assert_eq!(
            replay,
            vec![(4, 4), (5, 5), (6, 6)],
            "old numbers reused, new message after"
        );
    }

    fn sized(tid: u64, len: usize) -> Message {
        let mut x = m(127, tid);
        x.data = Bytes::from(vec![0; len]);
        x
    }

    #[test]
    fn held_bytes_follow_every_move() {
        let mut s = Session::default();
        for t in 1..=4 {
            s.enqueue(sized(t, 100 * t as usize));
        }
        assert_eq!(s.held_bytes(), 1000);
        write(&mut s);
        write(&mut s);
        assert_eq!(s.held_bytes(), 1000, "written, not acked: still held");
        s.handle_ack(1);
        assert_eq!(s.held_bytes(), 900);
        s.requeue_sent();
        assert_eq!(s.held_bytes(), 900);
        assert_eq!(s.discard_requeued_up_to(2), 1);
        assert_eq!(s.held_bytes(), 700);
        // A lossy write: taken and not kept.
        let _ = s.next_outgoing();
        assert_eq!(s.held_bytes(), 400);
        s.discard_all();
        assert_eq!(s.held_bytes(), 0);
    }

    #[test]
    fn discard_stops_at_fresh_messages() {
        let mut s = Session::default();
        s.enqueue(m(priority::HIGHEST, 9)); // fresh, seq 0
        assert_eq!(s.discard_requeued_up_to(100), 0);
        assert_eq!(s.queued(), 1);
        assert_eq!(s.discard_all(), 1);
    }
}
