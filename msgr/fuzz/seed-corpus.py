#!/usr/bin/env python3
"""Builds the fuzz seed corpora in msgr/fuzz/corpus/<target>/ from real Ceph traffic.

Sources (per-direction TCP byte streams of real Ceph Pacific 16.2.15 sessions, msgr v1):
  msgr/tests/data/v1-*-{c2s,s2c}.bin       ceph CLI <-> ceph-mon  (see extract-streams.sh)
  msgr/src/msg/testdata/v1-osd-*-{c2s,s2c}.bin  rados <-> ceph-osd (see its README.md)
and, for stack_input, the packets themselves: msgr/tests/data/*.pcap (ceph CLI <-> ceph-mon
on loopback: v1-ping, v1-status, and v2-status, msgr v2 in crc mode).

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

  stack_input       the TCP segments of every connection in msgr/tests/data/*.pcap (pcapng,
                    Ethernet), in the layout of fuzz_targets/stack_input.rs: setup,
                    knobs, then steps (ctl, app, le16 length, frame). The stack plays one end
                    of the captured connection, and the other end's segments are injected
                    with ctl mode 2 (the flow's ports, seq/ack relative to the handshake)
                    plus "make well-formed" (checksums): scenario 0 (listening) gets the
                    client's segments from its SYN on, 1 (handshake scripted) those after the
                    handshake, 2 (the stack dialed) the server's from its SYN/ACK on, 3
                    (connected) those after it. Segments above the stack's MTU (the captures
                    are from loopback, MTU 64 KiB) are cut to 1500-byte packets. Where the
                    captured end the stack plays sent bytes, the application writes as many
                    (the next write size up: 64 x (arg + 1)^2) and the injected segments'
                    acknowledgments of all of them are moved to cover what it wrote; it reads
                    after each data segment and closes when the captured end sent its FIN.
                    Time between steps follows the capture. A stream over 12 KiB is injected
                    only in scenario 3, and an end that sends one gets 128 KiB socket
                    buffers (knobs 0x30). A few inputs vary the setup and knob bits on the
                    v1-ping connection, and synthetic ones (synthetic_stack_seeds) cover
                    what the captures lack: ARP, ICMP echo, IPv4 options and fragments, TCP
                    options, RST, FIN/TIME-WAIT, a SYN flood, a connection to ourselves, a
                    refused dial, a stalled transmit side, frames not for us.

Files are named by the SHA-1 of their content, as libFuzzer names corpus entries, so
running this again is idempotent. --clean first empties the corpus directories
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
PCAPS = sorted((MSGR / "tests/data").glob("*.pcap"))
TARGETS = ("client_handshake", "server_handshake", "frame", "messages", "stack_input")

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


# --- stack_input: Ethernet frames of the captured TCP connections ---------------------------

STACK_MAC, PEER_MAC = bytes.fromhex("02000000000a"), bytes.fromhex("02000000000b")
STACK_IP, PEER_IP = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
STACK_PORT, PEER_PORT = 6789, 40000
MTU = 1500
BIG_STREAM = 12 * 1024
# stack_input.rs: setup byte (bits 0-1 scenario), ctl bits, app actions.
SCENARIO_LISTEN, SCENARIO_ACCEPTED, SCENARIO_DIALED, SCENARIO_CONNECTED = range(4)
CTL_ADDR, CTL_FLOW_RELATIVE, CTL_FLOW_PORTS, CTL_FIX, CTL_WORKER1 = 1, 2, 3, 4, 8
APP_READ, APP_WRITE, APP_CLOSE, APP_ABORT, APP_RELEASE, APP_DIAL, APP_CONTROL = range(1, 8)
STEPS_US = [0, 1, 100, 1_000, 5_000, 10_000, 50_000, 100_000, 200_000, 500_000, 1_000_000,
            2_000_000, 3_500_000, 10_500_000, 60_000_000]
STEP_NEXT_TIMER = 15
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def pcapng_packets(path):
    """(time in seconds, frame) of each packet of a pcapng capture of Ethernet frames."""
    b = path.read_bytes()
    p, endian, out, resol = 0, "<", [], []
    while p + 12 <= len(b):
        kind = struct.unpack_from(endian + "I", b, p)[0]
        if kind == 0x0A0D0D0A:  # section header: its byte-order magic sets the endianness
            endian = "<" if struct.unpack_from("<I", b, p + 8)[0] == 0x1A2B3C4D else ">"
        size = struct.unpack_from(endian + "I", b, p + 4)[0]
        body = b[p + 8 : p + size - 4]
        if kind == 1:  # interface description: link type, then options (if_tsresol: 9)
            if struct.unpack_from(endian + "H", body, 0)[0] != 1:
                sys.exit(f"{path.name}: not an Ethernet capture")
            units, o = 1e-6, 8
            while o + 4 <= len(body):
                code, olen = struct.unpack_from(endian + "HH", body, o)
                if code == 0:
                    break
                if code == 9:
                    v = body[o + 4]
                    units = 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0 ** -v
                o += 4 + (olen + 3) // 4 * 4
            resol.append(units)
        elif kind == 6:  # enhanced packet
            iface, hi, lo, caplen = struct.unpack_from(endian + "IIII", body, 0)
            out.append((((hi << 32) | lo) * resol[iface], body[20 : 20 + caplen]))
        p += size
    return out


class Segment:
    """One TCP/IPv4 segment of a capture, split into the parts a seed rewrites."""

    def __init__(self, ts, frame):
        self.ts = ts
        ip = frame[14:]
        ihl = (ip[0] & 15) * 4
        total = struct.unpack_from(">H", ip, 2)[0]
        tcp = ip[ihl:total]
        thl = (tcp[12] >> 4) * 4
        self.ip_head, self.tcp_head = bytearray(ip[:ihl]), bytearray(tcp[:thl])
        self.src = (bytes(ip[12:16]), struct.unpack_from(">H", tcp, 0)[0])
        self.dst = (bytes(ip[16:20]), struct.unpack_from(">H", tcp, 2)[0])
        self.seq, self.ack = struct.unpack_from(">II", tcp, 4)
        self.flags = tcp[13]
        self.payload = bytes(tcp[thl:])

    def frames(self, seq, ack):
        """Ethernet frames of this segment with these numbers, cut to the MTU."""
        room = MTU - len(self.ip_head) - len(self.tcp_head)
        pieces = [self.payload[i : i + room] for i in range(0, len(self.payload), room)] or [b""]
        out = []
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            t = bytearray(self.tcp_head)
            struct.pack_into(">II", t, 4, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF)
            t[13] = self.flags if last else self.flags & ~(FIN | PSH)
            ip = bytearray(self.ip_head)
            struct.pack_into(">H", ip, 2, len(ip) + len(t) + len(piece))
            # Checksums are left to the target (ctl "make well-formed").
            out.append(STACK_MAC + PEER_MAC + b"\x08\x00" + bytes(ip) + bytes(t) + piece)
            seq += len(piece)
        return out


def tcp_connections(path):
    """Each TCP connection of a capture as (client endpoint, its segments in order)."""
    conns = {}
    for ts, frame in pcapng_packets(path):
        if frame[12:14] != b"\x08\x00" or frame[14 + 9] != 6:
            continue
        seg = Segment(ts, frame)
        key = tuple(sorted([seg.src, seg.dst]))
        if seg.flags & (SYN | ACK) == SYN:
            conns[key] = (seg.src, [])
        if key in conns:
            conns[key][1].append(seg)
    return list(conns.values())


def time_class(dt):
    """ctl bits 4-7: the longest step not beyond `dt` seconds."""
    us = dt * 1e6
    return max(i for i, step in enumerate(STEPS_US) if step <= us)


def size_arg(n):
    """The smallest `app` argument whose size (64 x (arg + 1)^2) covers n bytes."""
    return next((a for a in range(32) if 64 * (a + 1) ** 2 >= n), 31)


def step(ctl, app=0, frame=b""):
    return bytes([ctl, app]) + struct.pack("<H", len(frame)) + frame


def stack_seed(client, segs, scenario, setup=0, knobs=0, worker1=False):
    """A stack_input seed: the stack plays one end of a captured connection."""
    stack_is_server = scenario in (SCENARIO_LISTEN, SCENARIO_ACCEPTED)
    isn = {}  # endpoint -> initial sequence number
    for s in segs:
        if s.flags & SYN:
            isn.setdefault(s.src, s.seq)
    if len(isn) != 2:
        return None
    out = [bytes([setup | scenario, knobs])]
    wrote = peer_sent = 0  # bytes the stack wrote, bytes its captured end sent
    closed = ends_fin = False  # the stack closed; its captured end sent a FIN
    handshake = 0
    last_ts = segs[0].ts
    for s in segs:
        from_stack_end = (s.src == client) != stack_is_server
        if from_stack_end:
            peer_sent += len(s.payload)
            ends_fin |= bool(s.flags & FIN)
            continue
        if s.flags & SYN or (handshake == 1 and not s.payload and s.flags == ACK):
            handshake += 1
            if scenario in (SCENARIO_ACCEPTED, SCENARIO_CONNECTED):
                continue  # the target scripts the handshake
        if peer_sent > wrote:
            arg = size_arg(peer_sent - wrote)
            out.append(step(0, APP_WRITE | arg << 3))
            wrote += 64 * (arg + 1) ** 2
        if ends_fin and not closed:
            out.append(step(0, APP_CLOSE))
            closed = True
        seq = s.seq - isn[s.src]
        ack = s.ack - isn[s.dst] if s.flags & ACK else 0
        # An acknowledgment of everything the captured end sent covers what the stack wrote.
        if s.flags & ACK and ack == 1 + peer_sent + ends_fin:
            ack = 1 + wrote + closed
        ctl = CTL_FLOW_RELATIVE | CTL_FIX | (CTL_WORKER1 if worker1 else 0)
        for i, f in enumerate(s.frames(seq, ack)):
            dt = s.ts - last_ts if i == 0 else 0
            app = APP_READ | 31 << 3 if s.payload else 0
            out.append(step(ctl | time_class(dt) << 4, app, f))
        last_ts = s.ts
    # Then let the timers run (retransmissions, FIN-WAIT, TIME-WAIT), within the target's
    # 256 steps.
    timers = [step(14 << 4), step(STEP_NEXT_TIMER << 4), step(STEP_NEXT_TIMER << 4)]
    return b"".join(out[:1] + out[1 : 257 - len(timers)] + timers)


def eth(payload, ethertype=b"\x08\x00", dst=STACK_MAC):
    return dst + PEER_MAC + ethertype + payload


def ipv4(proto, payload, options=b"", frag=0x4000, dst=STACK_IP):
    ihl = 20 + len(options)
    head = struct.pack(">BBHHHBBH4s4s", 0x40 | ihl // 4, 0, ihl + len(payload), 1, frag, 64,
                       proto, 0, PEER_IP, dst)
    return head + options + payload


def tcp(flags, seq=0, ack=0, payload=b"", options=b"", sport=PEER_PORT, dport=STACK_PORT):
    thl = 20 + len(options)
    head = struct.pack(">HHIIBBHHH", sport, dport, seq, ack, thl // 4 << 4, flags, 65535, 0, 0)
    return head + options + payload


def arp(op, target_ip=STACK_IP, target_mac=b"\x00" * 6):
    return struct.pack(">HHBBH", 1, 0x0800, 6, 4, op) + PEER_MAC + PEER_IP + target_mac + target_ip


def icmp_echo(ident, seq, data=b"ping"):
    return struct.pack(">BBHHH", 8, 0, 0, ident, seq) + data


def synthetic_stack_seeds():
    """Inputs for what the captures lack (checksums filled in by the target: CTL_FIX)."""
    fix, flow, addr = CTL_FIX, CTL_FLOW_RELATIVE | CTL_FIX, CTL_ADDR | CTL_FIX
    bcast, arp_type = b"\xff" * 6, b"\x08\x06"
    # MSS 1460, NOP, window scale 10, SACK permitted, timestamps.
    syn_opts = bytes.fromhex("020405b4" "0103030a" "0402" "080a00000001" "00000000")
    ms, minute, timeout = 3 << 4, 14 << 4, 12 << 4  # time steps: 1 ms, 60 s, 3.5 s
    next_timer = STEP_NEXT_TIMER << 4
    read, data = APP_READ | 31 << 3, bytes(range(256)) * 4

    def seg(flags, seq, ack, payload=b"", **kw):
        return eth(ipv4(6, tcp(flags, seq, ack, payload, **kw)))

    seeds = {
        # ARP who-has for us (answered), an echo request (answered), an unsolicited reply.
        "arp-icmp": [
            SCENARIO_LISTEN, 0,
            step(addr, 0, eth(arp(1), arp_type, bcast)),
            step(addr | ms, 0, eth(ipv4(1, icmp_echo(7, 1)))),
            step(addr | ms, 0, eth(arp(2, STACK_IP, STACK_MAC), arp_type)),
        ],
        # On an accepted connection: echo requests with IPv4 options (NOPs; record route)
        # and in two fragments, and a data segment in two fragments (this smoltcp build does
        # not reassemble: both are dropped).
        "ip-options-fragments": [
            SCENARIO_ACCEPTED, 0,
            step(addr, 0, eth(ipv4(1, icmp_echo(7, 2), b"\x01\x01\x01\x00"))),
            step(addr, 0, eth(ipv4(1, icmp_echo(7, 3), b"\x07\x07\x04" + bytes(5)))),
            step(addr, 0, eth(ipv4(1, icmp_echo(7, 4, data[:64]), frag=0x2000))),
            step(addr, 0, eth(ipv4(1, data[64:128], frag=8))),
            step(flow, 0, eth(ipv4(6, tcp(ACK | PSH, 1, 1, data[:32]), frag=0x2000))),
            step(addr, read, eth(ipv4(6, data[32:64], frag=4))),
        ],
        # A SYN with IPv4 options and the TCP options smoltcp knows, 128 KiB buffers (window
        # scaling), the handshake's ACK, data: a connection accepted and read.
        "tcp-options": [
            SCENARIO_LISTEN, 0x30,
            step(flow, 0, eth(ipv4(6, tcp(SYN, 0, 0, b"", syn_opts), b"\x01" * 4))),
            step(flow | ms, 0, seg(ACK, 1, 1)),
            step(flow, read, seg(ACK | PSH, 1, 1, data)),
        ],
        # Data, then a reset in the window.
        "rst": [
            SCENARIO_ACCEPTED, 0,
            step(flow, read, seg(ACK | PSH, 1, 1, data[:100])),
            step(flow | ms, 0, seg(RST | ACK, 101, 1)),
        ],
        # The peer's FIN, the stack's close, the peer's ACK of it (LAST-ACK); and the other
        # order: the stack closes first, the peer's FIN puts it in TIME-WAIT, a minute passes.
        "fin-last-ack": [
            SCENARIO_ACCEPTED, 0,
            step(flow, APP_CLOSE, seg(FIN | ACK, 1, 1)),
            step(flow | ms, 0, seg(ACK, 2, 2)),
        ],
        "fin-time-wait": [
            SCENARIO_ACCEPTED, 0,
            step(0, APP_CLOSE),
            step(flow | ms, 0, seg(ACK, 1, 2)),
            step(flow | ms, 0, seg(FIN | ACK, 1, 2)),
            step(minute),
        ],
        # SYNs from 8 source ports with max_half_open 1, then the handshake timeout.
        "syn-flood": [SCENARIO_LISTEN, 0x01]
        + [step(addr, 0, seg(SYN, 1000 * i, 0, b"", options=syn_opts[:4], sport=50000 + i))
           for i in range(8)]
        + [step(timeout), step(timeout)],
        # A connection to our own address (the loopback path), written to and read.
        "self-connect": [
            SCENARIO_LISTEN, 0,
            step(ms, APP_DIAL | 1 << 3),
            step(ms, APP_WRITE | 3 << 3),
            step(ms, read),
            step(ms, APP_CLOSE),
            step(minute),
        ],
        # The dialed peer refuses (RST to the SYN); a second dial is left to time out.
        "refused-timeout": [
            SCENARIO_DIALED, 0,
            step(flow, APP_DIAL, seg(RST | ACK, 0, 1)),
            step(timeout),
            step(next_timer),
        ],
        # The transmit side stalls while ARP requests and segments keep arriving.
        "stalled": [SCENARIO_ACCEPTED, 0, step(0, APP_CONTROL | 2 << 3)]
        + [step(addr, 0, eth(arp(1), arp_type, bcast)) for _ in range(6)]
        + [step(flow, 0, seg(ACK | PSH, 1 + 10 * i, 1, data[:10])) for i in range(6)]
        + [step(ms, APP_CONTROL | 2 << 3), step(next_timer)],
        # Two workers: segments of the flow (owned by worker 0) arrive at worker 1.
        "forwarded": [
            0x08 | SCENARIO_ACCEPTED, 0,
            step(flow | CTL_WORKER1, read, seg(ACK | PSH, 1, 1, data[:200])),
        ],
        # Not for us: another IP, another MAC, IPv6, UDP, a runt, a giant.
        "not-ours": [
            SCENARIO_LISTEN, 0,
            step(fix, 0, eth(ipv4(6, tcp(SYN), dst=bytes([10, 0, 0, 9])))),
            step(fix, 0, eth(ipv4(1, icmp_echo(1, 1)), dst=bytes.fromhex("020000000099"))),
            step(0, 0, eth(bytes(40), b"\x86\xdd")),
            step(fix, 0, eth(ipv4(17, bytes(16)))),
            step(0, 0, b"\x02\x00"),
            step(0, 0, eth(bytes(1600))),
        ],
    }
    return [bytes(v[:2]) + b"".join(v[2:]) for v in seeds.values()]


def stack_seeds():
    out = []
    conns = [(p.name, c) for p in PCAPS for c in tcp_connections(p)]
    for _, (client, segs) in conns:
        for sc in range(4):
            stack_is_server = sc in (SCENARIO_LISTEN, SCENARIO_ACCEPTED)
            sends = sum(len(s.payload) for s in segs if (s.src == client) != stack_is_server)
            gets = sum(len(s.payload) for s in segs if (s.src == client) == stack_is_server)
            # A long stream is seeded once, connected, and only into the dialing end (the
            # handshake segments are in the short connections' seeds).
            if gets > BIG_STREAM and sc != SCENARIO_CONNECTED:
                continue
            # 128 KiB socket buffers for an end that sends more than the default 16 KiB.
            knobs = 0x30 if sends > BIG_STREAM else 0
            out.append(stack_seed(client, segs, sc, knobs=knobs))
    # Setup and knob bits, one at a time, on the v1-ping connection (accepted).
    client, segs = next(c for name, c in conns if name == "v1-ping.pcap")
    for bit in (0x04, 0x08, 0x10, 0x20, 0x40, 0x80):
        out.append(stack_seed(client, segs, SCENARIO_ACCEPTED, setup=bit))
    out.append(stack_seed(client, segs, SCENARIO_ACCEPTED, setup=0x08, worker1=True))
    for knobs in (0x01, 0x10, 0x30, 0x40, 0x80):
        out.append(stack_seed(client, segs, SCENARIO_ACCEPTED, knobs=knobs))
    return [s for s in out if s] + synthetic_stack_seeds()


def main():
    clean = "--clean" in sys.argv[1:]
    streams = [Stream(p) for p in CAPTURES]
    if not streams:
        sys.exit("no captures found")
    corpora = seeds(streams)
    corpora["stack_input"] = stack_seeds()
    for target, items in corpora.items():
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
