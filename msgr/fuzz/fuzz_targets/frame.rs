//! The open-session stream decoder: arbitrary bytes through `peek` and `decode_msg`, with
//! both footer kinds. Under `cfg(fuzzing)` CRC checks pass so inputs reach deeper code.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use msgr::wire::frame::{decode_msg, peek, FrameConfig, Limits, Peek};
use msgr::wire::FooterKind;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else { return };
    let cfg = FrameConfig {
        footer: if sel & 1 == 0 { FooterKind::New } else { FooterKind::Old },
        crc_header: sel & 2 == 0,
        crc_data: sel & 4 == 0,
        limits: Limits { max_front: 1 << 16, max_middle: 1 << 16, max_data: 1 << 20, max_authorizer: 4096 },
    };
    let buf = Bytes::copy_from_slice(body);
    let mut at = 0;
    while at < buf.len() {
        match peek(&buf[at..], &cfg) {
            Ok(Some(p)) => {
                let len = p.frame_len();
                if at + len > buf.len() {
                    return;
                }
                if let Peek::Msg { header, frame_len } = p {
                    let _ = decode_msg(buf.slice(at..at + frame_len), &header, &cfg);
                }
                at += len;
            }
            Ok(None) | Err(_) => return,
        }
    }
});
