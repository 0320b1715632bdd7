#!/usr/bin/python3
"""A raw virtio-net guest for a vhost-user socket that lies in its descriptors.

testpmd's virtio-user driver only ever writes honest rings. This guest speaks the
vhost-user protocol itself (a memfd for guest memory, split rings, eventfds), so it
can post what a buggy or hostile guest posts: buffers outside its memory, lengths past
the end of it, chains that loop or name descriptors past the ring, indirect tables of
the wrong size, frames shorter than the virtio-net header, and headers whose offload
offsets point outside the frame.

usage: lying_guest.py SOCKET

Each case runs on a connection of its own (a stalled ring is that guest's only), and
posts, on the transmit ring (guest to switch), the lie followed by an honest frame; on
the receive ring (switch to guest), lying buffers followed by honest ones. A last
connection, "honest", posts only honest frames. Prints one JSON line per case: how
many transmit heads the switch took back, how many receive buffers it filled, and the
UDP destination ports of the honest frames posted (each frame carries its own), so the
caller can check what came out of the switch against them.
"""
import array
import json
import mmap
import os
import socket
import struct
import sys
import time

GET_FEATURES, SET_FEATURES, SET_OWNER, SET_MEM_TABLE = 1, 2, 3, 5
SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE = 8, 9, 10
SET_VRING_KICK, SET_VRING_CALL = 12, 13

F_CSUM, F_GUEST_CSUM, F_HOST_TSO4, F_HOST_TSO6, F_VERSION_1 = 0, 1, 11, 12, 32
NEXT, WRITE, INDIRECT = 1, 2, 4
HDR = 12  # struct virtio_net_hdr_mrg_rxbuf (VERSION_1)
NEEDS_CSUM, GSO_TCPV4 = 1, 1

QSIZE = 256
MEM = 1 << 20
UVA = 0x100000000  # the address this "guest's" memory has in its own (made-up) space
RX, TX = 0, 1
RING = {RX: 0x0000, TX: 0x4000}  # desc at +0, avail at +0x1000, used at +0x2000
BUFS = 0x10000
MAC_SWITCH = bytes.fromhex("020000000001")
MAC_GUEST = bytes.fromhex("0200000000aa")


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def udp_frame(dport, payload=b"honest guest frame"):
    """An Ethernet/IPv4/UDP frame with every checksum right."""
    udp_len = 8 + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 1, 0, 64, 17, 0,
                     bytes([10, 9, 0, 2]), bytes([10, 9, 0, 1]))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 17, udp_len)
    udp = struct.pack("!HHHH", 40000, dport, udp_len, 0) + payload
    c = csum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", c) + udp[8:]
    return MAC_SWITCH + MAC_GUEST + b"\x08\x00" + ip + udp


def tcp_frame(payload_len=100):
    tcp_len = 20 + payload_len
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + tcp_len, 1, 0, 64, 6, 0,
                     bytes([10, 9, 0, 2]), bytes([10, 9, 0, 1]))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    tcp = struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, 5 << 4, 0x18, 65535, 0, 0) + b"x" * payload_len
    return MAC_SWITCH + MAC_GUEST + b"\x08\x00" + ip + tcp


def net_hdr(flags=0, gso_type=0, hdr_len=0, gso_size=0, csum_start=0, csum_offset=0):
    return struct.pack("<BBHHHHH", flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, 0)


class Guest:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.memfd = os.memfd_create("lying-guest", 0)
        os.ftruncate(self.memfd, MEM)
        self.mem = mmap.mmap(self.memfd, MEM)
        self.next_desc = {RX: 0, TX: 0}
        self.lens = {RX: {}, TX: {}}
        self.avail_idx = {RX: 0, TX: 0}
        self.buf = BUFS
        self.kick = {q: os.eventfd(0, os.EFD_NONBLOCK) for q in (RX, TX)}
        self.call = {q: os.eventfd(0, os.EFD_NONBLOCK) for q in (RX, TX)}
        self.setup()

    def send(self, req, payload=b"", fds=()):
        msg = struct.pack("<III", req, 1, len(payload)) + payload
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        self.sock.sendmsg([msg], anc)

    def reply(self):
        hdr = self.sock.recv(12, socket.MSG_WAITALL)
        _, _, size = struct.unpack("<III", hdr)
        return self.sock.recv(size, socket.MSG_WAITALL)

    def setup(self):
        self.send(GET_FEATURES)
        offered = struct.unpack("<Q", self.reply())[0]
        want = 0
        for bit in (F_VERSION_1, F_CSUM, F_GUEST_CSUM, F_HOST_TSO4, F_HOST_TSO6):
            if offered >> bit & 1:
                want |= 1 << bit
        assert want >> F_VERSION_1 & 1, f"VERSION_1 not offered: {offered:#x}"
        self.send(SET_OWNER)
        self.send(SET_FEATURES, struct.pack("<Q", want))
        region = struct.pack("<QQQQ", 0, MEM, UVA, 0)
        self.send(SET_MEM_TABLE, struct.pack("<II", 1, 0) + region + b"\0" * 32 * 7, [self.memfd])
        for q in (RX, TX):
            base = RING[q]
            self.send(SET_VRING_NUM, struct.pack("<II", q, QSIZE))
            self.send(SET_VRING_BASE, struct.pack("<II", q, 0))
            addr = struct.pack("<IIQQQQ", q, 0, UVA + base, UVA + base + 0x2000, UVA + base + 0x1000, 0)
            self.send(SET_VRING_ADDR, addr)
            self.send(SET_VRING_CALL, struct.pack("<Q", q), [self.call[q]])
            self.send(SET_VRING_KICK, struct.pack("<Q", q), [self.kick[q]])

    def close(self):
        self.sock.close()
        self.mem.close()
        os.close(self.memfd)
        for fd in list(self.kick.values()) + list(self.call.values()):
            os.close(fd)

    # Memory and rings.
    def put(self, data):
        """Copies `data` into guest memory; returns its guest address."""
        addr = self.buf
        self.mem[addr:addr + len(data)] = data
        self.buf += (len(data) + 63) & ~63
        return addr

    def desc(self, q, addr, length, flags=0, next_=0, at=None):
        i = self.next_desc[q] if at is None else at
        if at is None:
            self.next_desc[q] += 1
        off = RING[q] + 16 * i
        self.lens[q][i] = length & 0xFFFFFFFF
        self.mem[off:off + 16] = struct.pack("<QIHH", addr & (2**64 - 1), length & 0xFFFFFFFF, flags, next_ & 0xFFFF)
        return i

    def offer(self, q, head):
        avail = RING[q] + 0x1000
        slot = self.avail_idx[q] % QSIZE
        self.mem[avail + 4 + 2 * slot:avail + 6 + 2 * slot] = struct.pack("<H", head & 0xFFFF)
        self.avail_idx[q] = (self.avail_idx[q] + 1) & 0xFFFF
        self.mem[avail + 2:avail + 4] = struct.pack("<H", self.avail_idx[q])
        os.eventfd_write(self.kick[q], 1)

    def used_idx(self, q):
        used = RING[q] + 0x2000
        return struct.unpack("<H", self.mem[used + 2:used + 4])[0]

    def used(self, q, n):
        used = RING[q] + 0x2000
        return [struct.unpack("<II", self.mem[used + 4 + 8 * i:used + 12 + 8 * i]) for i in range(n)]

    def tx(self, frame, hdr=None):
        """An honest frame: header and frame in one buffer."""
        data = (hdr or net_hdr()) + frame
        return self.desc(TX, self.put(data), len(data))

    def rx_buffer(self, size=2048):
        addr = self.put(b"\0" * size)
        return self.desc(RX, addr, size, WRITE)


def tx_lies(g):
    """Each lie: (name, a function posting its head on the transmit ring)."""
    f = udp_frame(1)

    def far_address():
        return g.desc(TX, 1 << 40, len(f) + HDR)

    def past_memory():
        return g.desc(TX, MEM - 64, 4096)

    def huge_length():
        return g.desc(TX, g.put(net_hdr() + f), 0xFFFFFFFF)

    def chain_loop():
        i = g.next_desc[TX]
        return g.desc(TX, g.put(net_hdr() + f), HDR + len(f), NEXT, i)

    def next_past_ring():
        return g.desc(TX, g.put(net_hdr()), HDR, NEXT, 0xFFFF)

    def indirect_odd():
        table = g.put(struct.pack("<QIHH", g.put(net_hdr() + f), HDR + len(f), 0, 0))
        return g.desc(TX, table, 15, INDIRECT)

    def indirect_far():
        return g.desc(TX, 1 << 40, 64, INDIRECT)

    def indirect_nested():
        inner = g.put(struct.pack("<QIHH", g.put(net_hdr() + f), HDR + len(f), 0, 0))
        outer = g.put(struct.pack("<QIHH", inner, 16, INDIRECT, 0))
        return g.desc(TX, outer, 16, INDIRECT)

    def long_chain():
        # More links than the ring has descriptors: each names the next, all 300 of them.
        first = g.next_desc[TX]
        piece = g.put(b"\0" * 16)
        for k in range(QSIZE - first - 1):
            g.desc(TX, piece, 1, NEXT, first + k + 1)
        g.desc(TX, piece, 1, NEXT, first)
        return first

    def empty():
        return g.desc(TX, g.put(b""), 0)

    def header_only():
        return g.desc(TX, g.put(net_hdr()), HDR)

    def shorter_than_header():
        return g.desc(TX, g.put(b"\0" * 4), 4)

    def runt():
        return g.desc(TX, g.put(net_hdr() + f[:10]), HDR + 10)

    def csum_start_outside():
        return g.tx(f, net_hdr(NEEDS_CSUM, 0, 0, 0, 5000, 6))

    def csum_offset_outside():
        return g.tx(f, net_hdr(NEEDS_CSUM, 0, 0, 0, 34, 60000))

    def tso_without_size():
        return g.tx(tcp_frame(), net_hdr(NEEDS_CSUM, GSO_TCPV4, 54, 0, 34, 16))

    def tso_header_past_frame():
        return g.tx(tcp_frame(), net_hdr(NEEDS_CSUM, GSO_TCPV4, 4000, 1448, 34, 16))

    def tso_on_udp():
        return g.tx(f, net_hdr(NEEDS_CSUM, GSO_TCPV4, 42, 8, 34, 6))

    def gso_type_unknown():
        return g.tx(f, net_hdr(0, 0x7F, 42, 8, 0, 0))

    return [(n.__name__, n) for n in (
        far_address, past_memory, huge_length, chain_loop, next_past_ring, indirect_odd,
        indirect_far, indirect_nested, long_chain, empty, header_only, shorter_than_header,
        runt, csum_start_outside, csum_offset_outside, tso_without_size,
        tso_header_past_frame, tso_on_udp, gso_type_unknown)]


def rx_lies(g):
    """Receive buffers that lie: outside memory, too small for the header, looping."""
    g.desc(RX, 1 << 40, 2048, WRITE)
    g.desc(RX, MEM - 16, 4096, WRITE)
    g.desc(RX, g.put(b"\0" * 4), 4, WRITE)
    i = g.next_desc[RX]
    g.desc(RX, g.put(b"\0" * 64), 64, WRITE | NEXT, i)
    g.desc(RX, g.put(b"\0" * 64), 64, 0)  # read-only: the switch may not write it
    return list(range(g.next_desc[RX]))


TX_LIES = [
    "far_address", "past_memory", "huge_length", "chain_loop", "next_past_ring", "indirect_odd",
    "indirect_far", "indirect_nested", "long_chain", "empty", "header_only", "shorter_than_header",
    "runt", "csum_start_outside", "csum_offset_outside", "tso_without_size",
    "tso_header_past_frame", "tso_on_udp", "gso_type_unknown",
]


def run_case(path, name, port):
    g = Guest(path)
    time.sleep(0.3)  # the switch brings the port up
    out = {"case": name}
    lies = dict(tx_lies(g))
    if name in lies:
        g.offer(TX, lies[name]())
    honest = []
    for k in range(4 if name == "honest" else 1):
        p = port + k
        if name == "honest" and k == 0:
            # One frame in 20 pieces of one chain, the rest whole.
            data = net_hdr() + udp_frame(p)
            first = g.next_desc[TX]
            step = (len(data) + 19) // 20
            for j in range(20):
                piece = data[j * step:(j + 1) * step]
                g.desc(TX, g.put(piece), len(piece), NEXT if j < 19 else 0, first + j + 1)
            g.offer(TX, first)
        else:
            g.offer(TX, g.tx(udp_frame(p)))
        honest.append(p)
    if name == "rx_lies":
        for head in rx_lies(g):
            g.offer(RX, head)
    if name in ("rx_lies", "honest"):
        for _ in range(8):
            g.offer(RX, g.rx_buffer())
    time.sleep(0.5)
    out["tx_posted"] = g.avail_idx[TX]
    out["tx_taken"] = g.used_idx(TX)
    out["rx_posted"] = g.avail_idx[RX]
    out["rx_filled"] = g.used_idx(RX)
    # A filled receive buffer is one the guest gave, filled no further than its length.
    for (head, length) in g.used(RX, out["rx_filled"]):
        if head >= QSIZE or length > g.lens[RX].get(head, 0):
            out.setdefault("rx_bad_used", []).append([head, length])
    out["honest_ports"] = honest
    g.close()
    time.sleep(0.3)  # the switch takes the port down before the next guest comes
    return out


def main():
    path = sys.argv[1]
    for n, name in enumerate(TX_LIES + ["rx_lies", "honest"]):
        print(json.dumps(run_case(path, name, 1000 + 10 * n)), flush=True)


if __name__ == "__main__":
    main()
