#!/usr/bin/python3
"""Large TCP segments with their virtio-net header, through an AF_PACKET socket with
PACKET_VNET_HDR, as the kernel hands them to a NIC with TSO: the test's way to put a
64 KB TSO frame into the switch, and to see what a kernel port hands on.

  vnet.py send IFACE DST_MAC PAYLOAD MSS   one TSO frame 10.7.0.1:40000 -> 10.7.0.2:5001,
                                           seq 4294967000 (wraps), payload bytes i % 251
  vnet.py hex DST_MAC PAYLOAD              prints that frame in hex, without its header
  vnet.py burst IFACE DST_MAC PAYLOAD MSS COUNT   that frame COUNT times
  vnet.py recv IFACE SECONDS               prints one JSON line per frame received:
                                           its header fields and length
  vnet.py check PCAP PAYLOAD MSS [OUTER]   checks the segments of that frame in PCAP (OUTER
                                           bytes of VXLAN in front, default 50), prints a summary
"""
import json, socket, struct, sys, time
from scapy.all import Ether, IP, TCP, UDP, Raw, rdpcap, raw

PACKET_VNET_HDR = 15
SOL_PACKET = 263
SEQ = 4294967000


def payload(n):
    return bytes(i % 251 for i in range(n))


def frame(dst, n):
    return Ether(src="02:00:00:07:00:01", dst=dst) / IP(src="10.7.0.1", dst="10.7.0.2", id=0x1234, flags="DF") / TCP(
        sport=40000, dport=5001, seq=SEQ, ack=1, flags="PA", window=512) / Raw(payload(n))


def ones(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def vnet_socket(iface):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    s.bind((iface, 0))
    return s


def tso_frame(dst, n):
    b = bytearray(raw(frame(dst, n)))
    # What the kernel leaves in a TSO frame's checksum: the pseudo-header sum.
    tcp_len = len(b) - 34
    pseudo = ones(bytes(b[26:34]) + struct.pack("!HH", 6, tcp_len))
    b[50:52] = struct.pack("!H", pseudo)
    return bytes(b)


def send(iface, dst, n, mss, count=1):
    hdr = struct.pack("=BBHHHH", 1, 1, 54, mss, 34, 16)
    s, f = vnet_socket(iface), hdr + tso_frame(dst, n)
    for i in range(count):
        s.send(f)
        if i % 32 == 31:
            time.sleep(0.001)  # paced: the switch's rx ring, not the sender, is tested


def recv(iface, seconds):
    s = vnet_socket(iface)
    s.settimeout(0.2)
    end = time.time() + seconds
    while time.time() < end:
        try:
            d = s.recv(1 << 17)
        except socket.timeout:
            continue
        flags, gso, hdr_len, gso_size, cs, co = struct.unpack("=BBHHHH", d[:10])
        f = d[10:]
        if len(f) < 34 or f[12:14] != b"\x08\x00" or f[23] != 6:
            continue
        print(json.dumps({"flags": flags, "gso_type": gso, "gso_size": gso_size, "csum_start": cs,
                          "csum_offset": co, "len": len(f), "payload_ok": f[54:] == payload(len(f) - 54)}), flush=True)


def check(path, n, mss, outer):
    want = payload(n)
    frames = [bytes(p) for p in rdpcap(path)]
    got, seqs, bad = b"", [], []
    for i, b in enumerate(frames):
        if outer:
            o = Ether(b)
            if ones(raw(o[IP])[:20]) != 0xFFFF:
                bad.append("outer ip checksum %d" % i)
            if o[IP].len != len(b) - 14 or o[UDP].len != len(b) - 34:
                bad.append("outer lengths %d" % i)
        inner = b[outer:]
        ip = inner[14:34]
        if ones(ip) != 0xFFFF:
            bad.append("inner ip checksum %d" % i)
        total = struct.unpack("!H", ip[2:4])[0]
        tcp = inner[34:14 + total]
        if ones(ip[12:20] + struct.pack("!HH", 6, len(tcp)) + tcp) != 0xFFFF:
            bad.append("tcp checksum %d" % i)
        seqs.append(struct.unpack("!I", tcp[4:8])[0])
        if len(tcp) - 20 > mss:
            bad.append("segment %d over mss" % i)
        got += tcp[20:]
    for i in range(1, len(seqs)):
        if seqs[i] != (seqs[i - 1] + mss) % (1 << 32):
            bad.append("seq %d" % i)
    if seqs and seqs[0] != SEQ:
        bad.append("first seq")
    if got != want:
        bad.append("payload differs (%d bytes of %d)" % (len(got), len(want)))
    print("segments %d sizes %s bad %s" % (len(frames), sorted({len(f) for f in frames}), bad or "none"))


cmd = sys.argv[1]
if cmd == "send":
    send(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
elif cmd == "burst":
    send(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
elif cmd == "hex":
    print(tso_frame(sys.argv[2], int(sys.argv[3])).hex())
elif cmd == "recv":
    recv(sys.argv[2], float(sys.argv[3]))
elif cmd == "check":
    check(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]) if len(sys.argv) > 5 else 50)
