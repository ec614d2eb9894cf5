//! A connection's receive buffer: socket reads land in it without zeroing or copying.
//!
//! The engine takes its input as a [`BytesMut`] and hands out each message's segments as
//! slices of it (no copy). Reading a socket into a `BytesMut` from safe Rust needs an
//! initialized buffer, though: either zero it before every `recv` or read into a scratch
//! buffer and copy — a second pass over every byte received, as costly as the kernel's own
//! copy (measured: ~15% of a receiving worker at 4 KiB messages).
//!
//! Instead reads go into a `Vec<u8>` through `Read::read_to_end`, which the standard library
//! implements for sockets with `recv` straight into the vector's spare capacity. Bytes move
//! to the engine's `BytesMut` (same allocation, no copy) once they complete what the engine
//! is waiting for; only the unconsumed tail of the last read — part of one frame — is ever
//! copied, into the next read's vector.
//!
//! The price is in syscalls: `read_to_end` starts each call with an 8 KiB `recv` and doubles
//! while reads come back full, and it reads until `WouldBlock`. For a busy stream that is a
//! few more `recv`s per wake-up, each far cheaper than copying what they carry.

use std::io::{self, Read};

use bytes::{Bytes, BytesMut};

/// A leftover up to this size goes through `Vec::from(BytesMut)`, which reuses a buffer no
/// message holds any more but copies twice (exact-size, then grown) when one does.
const REUSE_MAX: usize = 16 * 1024;

/// How a read ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadEnd {
    /// The socket had nothing more (`WouldBlock`).
    Drained,
    /// The read limit was reached: more may be waiting.
    Limit,
    /// The peer closed its side, after the bytes reported with it.
    Eof,
}

/// Unconsumed input of one connection.
///
/// At most one of the two parts holds bytes: `ready` while the engine works through a
/// read, `fill` while a read accumulates (the engine's leftover moved into it first).
#[derive(Debug, Default)]
pub(crate) struct RxBuf {
    /// Bytes handed to the engine and not yet consumed.
    ready: BytesMut,
    /// Bytes read and not yet handed over.
    fill: Vec<u8>,
}

impl RxBuf {
    /// Bytes held (read and not consumed).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.ready.len() + self.fill.len()
    }

    /// Whether nothing is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.ready.is_empty() && self.fill.is_empty()
    }

    /// Starts from bytes already read elsewhere (a socket handed over with its input).
    pub(crate) fn from_bytes(b: BytesMut) -> Self {
        Self {
            ready: b,
            fill: Vec::new(),
        }
    }

    /// Everything held, as one buffer (to hand the socket over with its input).
    pub(crate) fn take(&mut self) -> BytesMut {
        if self.fill.is_empty() {
            std::mem::take(&mut self.ready)
        } else {
            BytesMut::from(Bytes::from(std::mem::take(&mut self.fill)))
        }
    }

    /// Drops what is held, and the memory.
    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }

    /// Reads from `r` until it would block, ends, or `limit` bytes came (`limit` > 0),
    /// without zeroing or copying. Room is reserved for at least `need` bytes in all (the
    /// engine's `rx_hint`: a large message arrives in one allocation) and `min` more than
    /// what is held; the vector never grows inside the read (which would copy it). Returns
    /// the bytes read and how it ended; on an error, what was read before it is kept.
    pub(crate) fn read_from<R: Read>(
        &mut self,
        r: R,
        need: usize,
        min: usize,
        limit: usize,
    ) -> io::Result<(usize, ReadEnd)> {
        if self.fill.is_empty() {
            // The engine's leftover (part of a frame, often nothing) leads the next input.
            let left = std::mem::take(&mut self.ready);
            if left.len() <= REUSE_MAX {
                // When nothing else holds the buffer (the messages cut from it are gone)
                // its allocation comes back, the leftover moved to the front: a fresh one
                // per read would cost page faults (the kernel zeroing pages) instead.
                // Otherwise this copies the (short) leftover into a new vector.
                self.fill = Vec::from(left);
            } else {
                let mut v = Vec::with_capacity(need.max(left.len() + min));
                v.extend_from_slice(&left);
                self.fill = v;
            }
        }
        let have = self.fill.len();
        // Room for `need` in all, and for a worthwhile read (half of `min`) beyond what is
        // held; when growing, for `min` more.
        if self.fill.capacity() < need || self.fill.capacity() - have < (min / 2).max(1) {
            self.fill.reserve_exact(need.max(have + min) - have);
        }
        let room = self.fill.capacity() - have;
        let mut lim = r.take(limit.min(room) as u64);
        let res = lim.read_to_end(&mut self.fill);
        let got = self.fill.len() - have;
        match res {
            Ok(_) if lim.limit() == 0 => Ok((got, ReadEnd::Limit)),
            Ok(_) => Ok((got, ReadEnd::Eof)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok((got, ReadEnd::Drained)),
            Err(e) => Err(e),
        }
    }

    /// One `read` into `scratch`, appended (copied): the cheap way for small input, where
    /// the copy is short and a second `recv` to see `WouldBlock` would cost more. A short
    /// read reports `Drained`.
    pub(crate) fn read_once<R: Read>(
        &mut self,
        mut r: R,
        scratch: &mut [u8],
    ) -> io::Result<(usize, ReadEnd)> {
        let n = r.read(scratch)?;
        self.extend(&scratch[..n]);
        let end = match n {
            0 => ReadEnd::Eof,
            n if n == scratch.len() => ReadEnd::Limit,
            _ => ReadEnd::Drained,
        };
        Ok((n, end))
    }

    /// Appends bytes read some other way (copied).
    pub(crate) fn extend(&mut self, b: &[u8]) {
        if self.fill.is_empty() {
            self.ready.extend_from_slice(b);
        } else {
            self.fill.extend_from_slice(b);
        }
    }

    /// The engine's input, once it holds at least `need` bytes (and is not empty): what
    /// was read moves over without a copy. `None` while a read still accumulates.
    pub(crate) fn input(&mut self, need: usize) -> Option<&mut BytesMut> {
        if !self.fill.is_empty() && self.fill.len() >= need {
            self.ready = BytesMut::from(Bytes::from(std::mem::take(&mut self.fill)));
        }
        if self.ready.is_empty() {
            None
        } else {
            Some(&mut self.ready)
        }
    }

    /// Bytes held while a read accumulates (not offered to the engine yet), the engine's
    /// leftover included; 0 when the engine has been offered everything.
    pub(crate) fn gathering(&self) -> usize {
        self.fill.len()
    }

    /// Memory held beyond the bytes themselves.
    pub(crate) fn capacity(&self) -> usize {
        self.ready.capacity() + self.fill.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;

    /// A reader that yields fixed pieces, then `WouldBlock` (or EOF when `eof`).
    struct Pieces {
        pieces: Vec<Vec<u8>>,
        eof: bool,
    }

    impl Read for Pieces {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some(p) = self.pieces.first_mut() else {
                return if self.eof {
                    Ok(0)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                };
            };
            let n = p.len().min(buf.len());
            buf[..n].copy_from_slice(&p[..n]);
            p.drain(..n);
            if p.is_empty() {
                self.pieces.remove(0);
            }
            Ok(n)
        }
    }

    fn pieces(p: &[&[u8]], eof: bool) -> Pieces {
        Pieces {
            pieces: p.iter().map(|s| s.to_vec()).collect(),
            eof,
        }
    }

    #[test]
    fn reads_until_would_block_and_hands_over_without_copy() {
        let mut rx = RxBuf::default();
        let r = rx.read_from(pieces(&[b"hello ", b"world"], false), 0, 64, 1 << 16);
        assert_eq!(r.unwrap(), (11, ReadEnd::Drained));
        let fill_ptr = rx.fill.as_ptr();
        let input = rx.input(4).expect("enough");
        assert_eq!(&input[..], b"hello world");
        assert_eq!(input.as_ptr(), fill_ptr, "moved, not copied");
        // The engine consumes a frame; the rest stays for it.
        let frame = input.split_to(6).freeze();
        assert_eq!(&frame[..], b"hello ");
        assert_eq!(rx.len(), 5);
    }

    #[test]
    fn input_waits_for_what_the_engine_needs() {
        let mut rx = RxBuf::default();
        rx.read_from(pieces(&[b"abc"], false), 10, 64, 64).unwrap();
        assert!(rx.input(10).is_none(), "3 of 10 bytes");
        rx.read_from(pieces(&[b"defghij"], false), 10, 64, 64)
            .unwrap();
        let input = rx.input(10).expect("10 of 10");
        assert_eq!(&input[..], b"abcdefghij");
    }

    #[test]
    fn leftover_leads_the_next_read() {
        let mut rx = RxBuf::default();
        rx.read_from(pieces(&[b"0123456789"], false), 0, 64, 64)
            .unwrap();
        let input = rx.input(1).unwrap();
        let _frame = input.split_to(7); // "0123456" consumed, "789" left
        rx.read_from(pieces(&[b"ab"], false), 0, 64, 64).unwrap();
        assert_eq!(&rx.input(1).unwrap()[..], b"789ab");
    }

    #[test]
    fn a_buffer_no_message_holds_is_reused() {
        let mut rx = RxBuf::default();
        rx.read_from(pieces(&[b"0123456789"], false), 0, 64, 1 << 16)
            .unwrap();
        let first = rx.fill.as_ptr();
        let frame = rx.input(1).unwrap().split_to(7).freeze();
        drop(frame); // the message is gone: its buffer comes back
        rx.read_from(pieces(&[b"ab"], false), 0, 64, 1 << 16)
            .unwrap();
        assert_eq!(rx.fill.as_ptr(), first, "same allocation");
        assert_eq!(&rx.fill[..], b"789ab");
        // A message still held keeps its bytes: the next read goes elsewhere.
        let held = rx.input(1).unwrap().split_to(4).freeze();
        rx.read_from(pieces(&[b"cd"], false), 0, 64, 1 << 16)
            .unwrap();
        assert_ne!(rx.fill.as_ptr(), first);
        assert_eq!(&held[..], b"789a");
        assert_eq!(&rx.input(1).unwrap()[..], b"bcd");
    }

    #[test]
    fn limit_and_eof_are_told_apart() {
        let mut rx = RxBuf::default();
        let r = rx.read_from(pieces(&[b"abcdef"], false), 0, 64, 4).unwrap();
        assert_eq!(r, (4, ReadEnd::Limit));
        let r = rx.read_from(pieces(&[b"ef"], true), 0, 64, 4).unwrap();
        assert_eq!(r, (2, ReadEnd::Eof));
        let r = rx.read_from(pieces(&[], true), 0, 64, 4).unwrap();
        assert_eq!(r, (0, ReadEnd::Eof));
        assert_eq!(&rx.input(0).unwrap()[..], b"abcdef");
    }

    #[test]
    fn errors_keep_what_was_read() {
        struct Fails(bool);
        impl Read for Fails {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if std::mem::replace(&mut self.0, true) {
                    Err(io::ErrorKind::ConnectionReset.into())
                } else {
                    buf[..3].copy_from_slice(b"xyz");
                    Ok(3)
                }
            }
        }
        let mut rx = RxBuf::default();
        let e = rx.read_from(Fails(false), 0, 64, 64).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(rx.len(), 3);
    }

    #[test]
    fn a_large_frame_is_received_into_one_allocation() {
        let mut rx = RxBuf::default();
        let big = vec![7u8; 300_000];
        rx.read_from(pieces(&[&big[..1000]], false), 300_000, 64, 1024)
            .unwrap();
        let ptr = rx.fill.as_ptr();
        for chunk in big[1000..].chunks(1024) {
            rx.read_from(pieces(&[chunk], false), 300_000, 64, 1024)
                .unwrap();
        }
        assert_eq!(rx.fill.as_ptr(), ptr, "no reallocation while it arrived");
        let mut input = rx.input(300_000).unwrap().split().freeze();
        assert_eq!(input.remaining(), 300_000);
        input.advance(299_999);
        assert_eq!(input[..], [7]);
    }

    #[test]
    fn read_once_copies_one_read() {
        let mut rx = RxBuf::default();
        let mut scratch = [0u8; 4];
        let mut src = pieces(&[b"ab", b"cdefgh"], true);
        assert_eq!(
            rx.read_once(&mut src, &mut scratch).unwrap(),
            (2, ReadEnd::Drained)
        );
        assert_eq!(
            rx.read_once(&mut src, &mut scratch).unwrap(),
            (4, ReadEnd::Limit)
        );
        // Mixed with direct reads: the order of bytes is kept.
        rx.read_from(&mut src, 0, 64, 64).unwrap();
        assert_eq!(
            rx.read_once(&mut src, &mut scratch).unwrap(),
            (0, ReadEnd::Eof)
        );
        assert_eq!(&rx.input(1).unwrap()[..], b"abcdefgh");
    }

    #[test]
    fn take_and_from_bytes_keep_everything() {
        let mut rx = RxBuf::default();
        rx.read_from(pieces(&[b"abc"], false), 10, 64, 64).unwrap();
        let b = rx.take();
        assert!(rx.is_empty());
        let mut rx2 = RxBuf::from_bytes(b);
        rx2.extend(b"de");
        assert_eq!(&rx2.input(0).unwrap()[..], b"abcde");
    }

    #[test]
    fn real_socket_reads_without_copy() {
        use std::io::Write;
        use std::net::{TcpListener, TcpStream};
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        b.set_nonblocking(true).unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        a.write_all(&data).unwrap();
        let mut rx = RxBuf::default();
        let mut got = 0;
        for _ in 0..10_000 {
            let (n, end) = rx.read_from(&b, 0, 1 << 16, 1 << 20).unwrap();
            got += n;
            assert_ne!(end, ReadEnd::Eof);
            if got == data.len() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(&rx.input(1).unwrap()[..], &data[..]);
        drop(a);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(
            rx.read_from(&b, 0, 1 << 16, 1 << 20).unwrap(),
            (0, ReadEnd::Eof)
        );
    }
}
