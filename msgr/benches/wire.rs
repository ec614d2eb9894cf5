//! Micro-benchmarks of the v1 codec (STYLE.md R15, "micro"): header+footer encode/decode,
//! Ceph CRC32C over 4 KiB and 4 MiB, and a 4 KiB MOSDOp through encode and decode.
//!
//! Targets (issue 2, one core): CRC ≥ 10 GB/s on 4 MiB; 4 KiB MOSDOp encode+decode ≥ 1 M/s.
//! Run: `cargo bench -p msgr --bench wire`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use msgr::crc::ceph_crc32c;
use msgr::features;
use msgr::msg::osd_op::MOSDOp;
use msgr::msg::{MessageHeader, MsgType, TypedMessage};
use msgr::wire::frame::{decode_msg, encode_msg, peek, FrameConfig, Peek, TxQueue};
use msgr::wire::{FooterKind, FooterRepr, Header, HeaderRepr};

fn header_footer(c: &mut Criterion) {
    let mut h = MessageHeader::new(MsgType::OSD_OP, 8, 3);
    h.seq = 12345;
    h.priority = 127;
    let repr = HeaderRepr {
        header: h,
        front_len: 200,
        middle_len: 0,
        data_len: 4096,
    };
    let footer = FooterRepr {
        front_crc: 1,
        middle_crc: 0,
        data_crc: 3,
        sig: 0,
        flags: 1,
    };
    let mut g = c.benchmark_group("header_footer");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode", |b| {
        b.iter(|| {
            let head = black_box(&repr).emit(true);
            let mut f = [0u8; 21];
            black_box(&footer).emit(FooterKind::New, &mut f);
            black_box((head, f))
        })
    });
    let head = repr.emit(true);
    let mut f = [0u8; 21];
    footer.emit(FooterKind::New, &mut f);
    g.bench_function("decode", |b| {
        b.iter(|| {
            let h = HeaderRepr::parse(&Header::new_unchecked(black_box(&head[..])), true).unwrap();
            let f = FooterRepr::parse(black_box(&f[..]), FooterKind::New).unwrap();
            black_box((h, f))
        })
    });
    g.finish();
}

fn crc(c: &mut Criterion) {
    let mut g = c.benchmark_group("crc32c");
    for size in [4096usize, 4 << 20] {
        let data: Vec<u8> = (0..size).map(|i| (i * 131) as u8).collect();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("{size}"), |b| {
            b.iter(|| ceph_crc32c(0, black_box(&data)))
        });
    }
    g.finish();
}

fn mosdop(c: &mut Criterion) {
    let data = Bytes::from(vec![0x5au8; 4096]);
    let op = MOSDOp::write(1, "rbd_data.1234.0000000000000001", 0, data);
    let cfg = FrameConfig::default();
    let mut g = c.benchmark_group("mosdop_4k");
    g.throughput(Throughput::Elements(1));
    let mut out = TxQueue::default();
    // The receiver's buffer, as a driver keeps it: frames are split off the front and the
    // allocation is reused once the messages that point into it are dropped.
    let mut rx = bytes::BytesMut::with_capacity(64 * 1024);
    g.bench_function("encode_decode", |b| {
        b.iter(|| {
            // Encode: typed message → payload → frame (header, CRCs, footer).
            let mut m = black_box(&op).to_message(features::PACIFIC_ALL);
            m.header.seq = 1;
            encode_msg(&m, &cfg, &mut out);
            out.cut();
            // "Receive" the bytes (the copy a socket read makes).
            rx.reserve(8192);
            while let Some(c) = out.pop_chunk() {
                rx.extend_from_slice(&c);
            }
            // Decode: frame → message (CRCs checked) → typed MOSDOp.
            let Ok(Some(Peek::Msg { header, frame_len })) = peek(&rx, &cfg) else {
                panic!("frame")
            };
            let frame = rx.split_to(frame_len).freeze();
            let (m, _) = decode_msg(frame, &header, &cfg).unwrap();
            black_box(MOSDOp::decode(m).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, header_footer, crc, mosdop);
criterion_main!(benches);
