#!/usr/bin/python3
"""The benchmark traffic of shared/BENCHMARKS.md: vm.pcap (1,024 UDP flows of 64-byte
frames from a VM), vxlan.pcap (the same frames, reversed, inside VXLAN VNI 100 from
the remote VTEP), vm64k.pcap (65,536 flows) and vm1m.pcap (1,000,000); for conntrack,
vm_reply.pcap, vm64k_reply.pcap and vm1m_reply.pcap (one answer per flow, as a VM beside
it would send it: W6 makes every session established with them), vm256k.pcap (262,144
flows: W7-full, where each packet is a new connection) and vip.pcap / vip64k.pcap (W8:
1,024 / 65,536 client flows to a Service VIP). Frames are built from bytes
(scapy takes minutes for a million); the small files are checked against scapy's.
Usage: gen_pcaps.py DIR"""
import struct, sys
from scapy.all import Ether, IP, UDP, Raw, wrpcap
from scapy.layers.vxlan import VXLAN

VM, DST = "02:00:00:00:01:01", "02:00:00:00:02:01"


def checksum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def udp(src_mac, dst_mac, a, b, sport, dport):
    """Ethernet/IPv4/UDP padded to 60 bytes, as scapy builds it (IP id 1, TTL 64, UDP
    checksum over the zero padding)."""
    a, b = bytes(a), bytes(b)
    pad = bytes(18)
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 46, 1, 0, 64, 17, 0, a, b))
    ip[10:12] = struct.pack("!H", checksum(bytes(ip)))
    pseudo = a + b + struct.pack("!BBHHHHH", 0, 17, 26, sport, dport, 26, 0) + pad
    mac = lambda m: bytes.fromhex(m.replace(":", ""))
    return (mac(dst_mac) + mac(src_mac) + b"\x08\x00" + bytes(ip)
            + struct.pack("!HHHH", sport, dport, 26, checksum(pseudo) or 0xffff) + pad)


def frames(n, src=VM, dst=DST, reply=False):
    """n flows 10.1.0.1:1024+ -> 10.1.x.y:5001+ (the anchors' vm.pcap family)."""
    for i in range(n):
        a, b = (10, 1, 0, 1), (10, 1, (i + 2) // 256 % 256, (i + 2) % 256)
        sport, dport = 1024 + i % 60000, 5001 + i // 60000
        if reply:
            a, b, sport, dport = b, a, dport, sport
        yield udp(src, dst, a, b, sport, dport)


def many(n):
    """n flows from n sources 10.2+.x.y (W7-full: never a repeated 5-tuple)."""
    for i in range(n):
        yield udp(VM, DST, (10, 2 + i // 65536 % 256, i // 256 % 256, i % 256), (10, 1, 0, 2), 1024 + i % 50000, 5001)


GATEWAY = "02:76:73:67:77:01"


def vip(n):
    """W8: n client flows to the Service VIP 10.96.0.10:80, the anchors' vip.pcap family
    (sources 10.1.0.1+, ports 1024-2047), sent to the network's gateway as a VM routes
    off-subnet traffic (OVS's anchor needs no gateway: its frames go to DST)."""
    for i in range(n):
        yield udp(VM, GATEWAY, (10, 1, 0, 1 + i // 1024), (10, 96, 0, 10), 1024 + i % 1024, 80)


def write(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
        for i, b in enumerate(frames):
            f.write(struct.pack("<IIII", 1700000000 + i // 1000000, i % 1000000, len(b), len(b)) + b)


def scapy_frame(i, reply=False):
    a, b = "10.1.0.1", "10.1.%d.%d" % ((i + 2) // 256 % 256, (i + 2) % 256)
    sport, dport = 1024 + i % 60000, 5001 + i // 60000
    src, dst = (DST, VM) if reply else (VM, DST)
    if reply:
        a, b, sport, dport = b, a, dport, sport
    p = Ether(src=src, dst=dst) / IP(src=a, dst=b) / UDP(sport=sport, dport=dport)
    return bytes(p / Raw(b"\x00" * max(0, 60 - len(p))))


if __name__ == "__main__":
    d = sys.argv[1]
    for i in (0, 1, 255, 1023, 65535):
        assert list(frames(i + 1))[i] == scapy_frame(i), "frame %d differs from scapy's" % i
        assert list(frames(i + 1, src=DST, dst=VM, reply=True))[i] == scapy_frame(i, True)
    write(d + "/vm.pcap", frames(1024))
    write(d + "/vm64k.pcap", frames(65536))
    write(d + "/vm1m.pcap", frames(1000000))
    write(d + "/vm_reply.pcap", frames(1024, src=DST, dst=VM, reply=True))
    write(d + "/vm64k_reply.pcap", frames(65536, src=DST, dst=VM, reply=True))
    write(d + "/vm1m_reply.pcap", frames(1000000, src=DST, dst=VM, reply=True))
    write(d + "/vm256k.pcap", many(262144))
    write(d + "/vip.pcap", vip(1024))
    write(d + "/vip64k.pcap", vip(65536))
    wrpcap(d + "/vxlan.pcap", [Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
                               / IP(src="10.0.0.2", dst="10.0.0.1", flags="DF", ttl=64)
                               / UDP(sport=49152 + i, dport=4789, chksum=0) / VXLAN(vni=100) / Raw(f)
                               for i, f in enumerate(frames(1024, src=DST, dst=VM))])
