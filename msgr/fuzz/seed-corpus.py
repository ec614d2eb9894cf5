#!/usr/bin/env python3
"""Builds the fuzz seed corpora in msgr/fuzz/corpus/<target>/ from real Ceph traffic.

Sources (per-direction TCP byte streams of real Ceph Pacific 16.2.15 sessions, msgr v1):
  msgr/tests/data/v1-*-{c2s,s2c}.bin       ceph CLI <-> ceph-mon  (see extract-streams.sh)
  msgr/src/msg/testdata/v1-osd-*-{c2s,s2c}.bin  rados <-> ceph-osd (see its README.md)

Stream layout (docs §2.2-2.6, the same walk as msgr/src/msg/golden.rs):
  c2s: banner 9, legacy addr 136, ceph_msg_connect 33 + authorizer_len, le64 in_seq
  s2c: banner 9, two legacy addrs 272, ceph_msg_connect_reply 26 + authorizer_len,
       le64 seq if the reply tag is SEQ (13)
  then items: tag 7 (MSG): 53-byte header, front, middle, data, 21-byte footer;
              tags 8/14/15: 8 bytes; tags 6/9: nothing.

What each target gets (the first byte is always the target's selector, see its source):
  client_handshake  selector + each s2c stream. Selector bit 0: lossy (0) / lossless (1)
                    client policy; bits 1-7: input chunk size (0 means 1 byte).
  server_handshake  selector + each c2s stream. Bit 0: stateless / stateful server policy;
                    bit 1: mon.0 / osd.0 (set for the rados<->OSD captures); bits 2-7: chunk
                    size.
  frame             selector + the post-handshake part of each stream (bit 0 = 0: the
                    21-byte footer the captures use; bit 0 = 1: the same items rewritten
                    with the 13-byte old footer), and each message frame cut out alone.
  messages          5 selector bytes + front [+ data] per real message (layout in
                    fuzz_targets/messages.rs): kind index, header version, header compat,
                    le16 data length. Also the monmaps, addresses, auth payloads and stat
                    results found inside them, and a few messages derived from real ones
                    (MCommand / MCommandReply from MMonCommand / MMonCommandAck minus the
                    paxos prefix). Three types never appear in the captures and are built
                    here the way Ceph builds them: MMonGetVersion, MMonGetVersionReply,
                    MMonSubscribeAck (marked "synthetic" below).

Files are named by the SHA-1 of their content, as libFuzzer names corpus entries, so
running this again is idempotent. --clean first empties the four corpus directories
(dropping any entries added by `cargo fuzz cmin` as well), except the `regression-*`
files: minimized inputs that once crashed a target, kept so every run replays them.

Usage: msgr/fuzz/seed-corpus.py [--clean]      (python3, standard library only)
"""

import hashlib
import struct
import sys
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
MSGR = FUZZ.parent
CAPTURES = sorted(
    p
    for d in ("tests/data", "src/msg/testdata")
    for pattern in ("v1-*-c2s.bin", "v1-*-s2c.bin")
    for p in (MSGR / d).glob(pattern)
)
TARGETS = ("client_handshake", "server_handshake", "frame", "messages")

# Streams above this size are not fed byte by byte (76 KB one byte per call is slow).
SMALL = 16 * 1024
# client_handshake: bit 0 policy, bits 1-7 chunk: 1-byte chunks (both policies), 13, 127.
CLIENT_SELECTORS_SMALL = (0x00, 0x01, 0x1A, 0xFF)
CLIENT_SELECTORS_BIG = (0xFE, 0xFF)  # 127-byte chunks, both policies
# server_handshake: bit 0 policy, bit 1 mon.0 / osd.0, bits 2-7 chunk: 1, 1, 13, 63 bytes.
SERVER_SELECTORS = (0x00, 0x01, 0x34, 0xFD)
SERVER_OSD = 0x02

# messages.rs `KINDS`, by index.
KINDS = [
    "Ping", "Auth", "AuthReply", "MonMapMsg", "MonSubscribe", "MonSubscribeAck",
    "MonGetVersion", "MonGetVersionReply", "OsdOp", "OsdOpReply", "Command", "CommandReply",
    "MonMapRaw", "Addr", "AddrVec", "AuthNegotiatePayload", "AuthNoneAuthorizerPayload",
    "StatResultPayload",
]
KIND_BY_TYPE = {
    2: "Ping", 17: "Auth", 18: "AuthReply", 4: "MonMapMsg", 15: "MonSubscribe",
    16: "MonSubscribeAck", 19: "MonGetVersion", 20: "MonGetVersionReply", 42: "OsdOp",
    43: "OsdOpReply", 97: "Command", 98: "CommandReply",
}
WITH_DATA = {"Ping", "OsdOp", "OsdOpReply", "Command", "CommandReply"}
MON_COMMAND, MON_COMMAND_ACK = 50, 51
OSD_OP_STAT = 0x1202
PAXOS_LEN = 18  # PaxosServiceMessage prefix: u64 version, s16 session mon, u64 tid
FOOTER_NEW, FOOTER_OLD = 21, 13
TAG_MSG, TAG_SEQ = 7, 13


def u16(b, at):
    return struct.unpack_from("<H", b, at)[0]


def u32(b, at):
    return struct.unpack_from("<I", b, at)[0]


class Stream:
    """One capture file split into hello, handshake and items."""

    def __init__(self, path):
        self.name = path.name
        self.raw = path.read_bytes()
        b = self.raw
        self.c2s = path.name.endswith("-c2s.bin")
        if self.c2s:
            self.addrs = [b[9:145]]
            connect = 145
            alen = u32(b, connect + 28)
            self.authorizer_protocol = u32(b, connect + 24)
            self.authorizer = b[connect + 33 : connect + 33 + alen]
            self.body_at = connect + 33 + alen + 8
        else:
            self.addrs = [b[9:145], b[145:281]]
            reply = 281
            alen = u32(b, reply + 21)
            self.authorizer_protocol = None
            self.authorizer = b[reply + 26 : reply + 26 + alen]
            self.body_at = reply + 26 + alen + (8 if b[reply] == TAG_SEQ else 0)
        self.items = []  # (bytes of the item, header dict or None)
        p = self.body_at
        while p < len(b):
            tag = b[p]
            if tag == TAG_MSG:
                h = b[p + 1 : p + 54]
                fl, ml, dl = u32(h, 22), u32(h, 26), u32(h, 30)
                end = p + 54 + fl + ml + dl + FOOTER_NEW
                f = p + 54
                msg = {
                    "type": u16(h, 16),
                    "version": u16(h, 20),
                    "compat": u16(h, 45),
                    "front": b[f : f + fl],
                    "middle": b[f + fl : f + fl + ml],
                    "data": b[f + fl + ml : f + fl + ml + dl],
                }
                self.items.append((b[p:end], msg))
                p = end
            elif tag in (8, 14, 15):
                self.items.append((b[p : p + 9], None))
                p += 9
            elif tag in (6, 9):
                self.items.append((b[p : p + 1], None))
                p += 1
            else:
                sys.exit(f"{self.name}: unexpected tag {tag} at offset {p}")
        if p != len(b):
            sys.exit(f"{self.name}: stream ends inside an item")

    @property
    def body(self):
        return self.raw[self.body_at :]

    def messages(self):
        return [m for _, m in self.items if m is not None]


def old_footer(item):
    """The same item with the 13-byte ceph_msg_footer_old (no signature)."""
    if item[0] != TAG_MSG:
        return item
    foot = item[-FOOTER_NEW:]
    return item[:-FOOTER_NEW] + foot[:12] + foot[20:21]


def message_seed(kind, version, compat, front, data=b""):
    if kind not in WITH_DATA:
        assert not data, kind
    if len(data) > 0xFFFF:
        return None
    head = bytes([KINDS.index(kind), version & 0xFF, compat & 0xFF])
    return head + struct.pack("<H", len(data)) + front + data


def raw_seed(kind, payload):
    return bytes([KINDS.index(kind), 0, 0, 0, 0]) + payload


def addrvecs_in(b):
    """entity_addrvec_t (marker 2, count, new-form addrs) and their addrs found in `b`."""
    vecs, addrs = [], []
    for i in range(len(b) - 8):
        if b[i] != 2 or b[i + 5 : i + 8] != b"\x01\x01\x01":
            continue
        n, p, ok = u32(b, i + 1), i + 5, True
        if not 1 <= n <= 8:
            continue
        for _ in range(n):
            if b[p : p + 3] != b"\x01\x01\x01" or p + 7 > len(b):
                ok = False
                break
            end = p + 7 + u32(b, p + 3)
            addrs.append(b[p:end])
            p = end
        if ok and p <= len(b):
            vecs.append(b[i:p])
    return vecs, addrs


def osd_reply_outdata(front, data):
    """(op code, outdata) for each op of an MOSDOpReply v8 front."""
    p = 4 + u32(front, 0)  # oid
    p += 17 + 8 + 4 + 12 + 4  # pg_t, flags, result, bad_replay_version, epoch
    n = u32(front, p)
    p += 4
    out, at = [], 0
    for _ in range(n):
        op, plen = u16(front, p), u32(front, p + 34)
        out.append((op, data[at : at + plen]))
        at += plen
        p += 38
    return out


def seeds(streams):
    out = {t: [] for t in TARGETS}
    for s in streams:
        if s.c2s:
            osd = SERVER_OSD if s.name.startswith("v1-osd-") else 0
            out["server_handshake"] += [bytes([sel | osd]) + s.raw for sel in SERVER_SELECTORS]
        else:
            small = len(s.raw) <= SMALL
            sels = CLIENT_SELECTORS_SMALL if small else CLIENT_SELECTORS_BIG
            out["client_handshake"] += [bytes([sel]) + s.raw for sel in sels]

        out["frame"].append(b"\x00" + s.body)
        if len(s.raw) <= SMALL:
            out["frame"].append(b"\x01" + b"".join(old_footer(i) for i, _ in s.items))
        out["frame"] += [b"\x00" + i for i, m in s.items if m is not None]

        for a in s.addrs:  # legacy 136-byte addresses: marker 0 is their first byte
            out["messages"] += [raw_seed("Addr", a), raw_seed("AddrVec", a)]
        if s.c2s and s.authorizer_protocol == 1 and s.authorizer:
            out["messages"].append(raw_seed("AuthNoneAuthorizerPayload", s.authorizer))

        for m in s.messages():
            kind = KIND_BY_TYPE.get(m["type"])
            front, data = m["front"], m["data"]
            if kind:
                out["messages"].append(
                    message_seed(kind, m["version"], m["compat"], front, data)
                )
            if kind == "MonMapMsg":
                monmap = front[4 : 4 + u32(front, 0)]
                out["messages"].append(raw_seed("MonMapRaw", monmap))
                vecs, addrs = addrvecs_in(monmap)
                out["messages"] += [raw_seed("AddrVec", v) for v in vecs]
                out["messages"] += [raw_seed("Addr", a) for a in addrs]
            elif kind == "Auth":
                protocol = u32(front, PAXOS_LEN)
                plen = u32(front, PAXOS_LEN + 4)
                if protocol == 0:
                    payload = front[PAXOS_LEN + 8 : PAXOS_LEN + 8 + plen]
                    out["messages"].append(raw_seed("AuthNegotiatePayload", payload))
            elif kind == "OsdOpReply":
                for op, outdata in osd_reply_outdata(front, data):
                    if op == OSD_OP_STAT and outdata:
                        out["messages"].append(raw_seed("StatResultPayload", outdata))
            elif m["type"] == MON_COMMAND:
                # MMonCommand = paxos prefix + MCommand's front (fsid, vector<string> cmd).
                out["messages"].append(message_seed("Command", 1, 1, front[PAXOS_LEN:], data))
            elif m["type"] == MON_COMMAND_ACK:
                # MMonCommandAck = paxos prefix + r, rs (MCommandReply's front) + cmd.
                rs_end = PAXOS_LEN + 8 + u32(front, PAXOS_LEN + 4)
                out["messages"].append(
                    message_seed("CommandReply", 1, 1, front[PAXOS_LEN:rs_end], data)
                )

    # Synthetic: types absent from the captures, encoded as Ceph would send them.
    fsid = next(
        m["front"][4 + 6 : 4 + 6 + 16]  # MonMap v9: ENCODE_START (6 bytes), then fsid
        for s in streams
        for m in s.messages()
        if m["type"] == 4
    )
    out["messages"] += [
        message_seed("MonGetVersion", 1, 1, struct.pack("<QI", 1, 6) + b"osdmap"),
        message_seed("MonGetVersionReply", 2, 2, struct.pack("<QQQ", 1, 10, 1)),
        message_seed("MonSubscribeAck", 1, 1, struct.pack("<I", 300) + fsid),
    ]
    return {t: [x for x in v if x is not None] for t, v in out.items()}


def main():
    clean = "--clean" in sys.argv[1:]
    streams = [Stream(p) for p in CAPTURES]
    if not streams:
        sys.exit("no captures found")
    for target, items in seeds(streams).items():
        d = FUZZ / "corpus" / target
        d.mkdir(parents=True, exist_ok=True)
        if clean:
            for f in d.iterdir():
                if not f.name.startswith("regression-"):
                    f.unlink()
        names = set()
        for item in items:
            name = hashlib.sha1(item).hexdigest()
            names.add(name)
            (d / name).write_bytes(item)
        size = sum(f.stat().st_size for f in d.iterdir())
        print(f"{target}: {len(names)} seeds written, {sum(1 for _ in d.iterdir())} files, {size} bytes")


if __name__ == "__main__":
    main()
