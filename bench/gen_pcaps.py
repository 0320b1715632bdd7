#!/usr/bin/python3
"""The benchmark traffic of shared/BENCHMARKS.md: vm.pcap (1,024 UDP flows of 64-byte
frames from a VM), vxlan.pcap (the same frames, reversed, inside VXLAN VNI 100 from
the remote VTEP), vm64k.pcap (65,536 flows); for conntrack, vm_reply.pcap and
vm64k_reply.pcap (one answer per flow, as a VM beside it would send it: W6 makes every
session established with them) and vm256k.pcap (262,144 flows: W7-full, where each
packet is a new connection). Usage: gen_pcaps.py DIR"""
import sys
from scapy.all import Ether, IP, UDP, Raw, wrpcap
from scapy.layers.vxlan import VXLAN

VM, DST = "02:00:00:00:01:01", "02:00:00:00:02:01"

def frames(n, src=VM, dst=DST, reply=False):
    out = []
    for i in range(n):
        a, b = "10.1.0.1", "10.1.%d.%d" % ((i + 2) // 256 % 256, (i + 2) % 256)
        sport, dport = 1024 + i % 60000, 5001 + i // 60000
        if reply:
            a, b, sport, dport = b, a, dport, sport
        p = Ether(src=src, dst=dst) / IP(src=a, dst=b) / UDP(sport=sport, dport=dport)
        out.append(p / Raw(b"\x00" * max(0, 60 - len(p))))
    return out


def many(n):
    """n flows, written without scapy per frame (262,144 of them take scapy minutes)."""
    import struct
    base = bytes(frames(1)[0])
    out = []
    for i in range(n):
        f = bytearray(base)
        f[26:30] = bytes([10, 2 + i // 65536 % 256, i // 256 % 256, i % 256])  # source IP
        f[34:36] = struct.pack("!H", 1024 + i % 50000)
        ip = f[14:34]
        ip[10:12] = b"\0\0"
        s = sum(struct.unpack("!10H", bytes(ip)))
        s = (s & 0xffff) + (s >> 16)
        s = (s & 0xffff) + (s >> 16)
        f[24:26] = struct.pack("!H", ~s & 0xffff)
        f[40:42] = b"\0\0"  # no UDP checksum
        out.append(Ether(bytes(f)))
    return out

d = sys.argv[1]
wrpcap(d + "/vm.pcap", frames(1024))
wrpcap(d + "/vm64k.pcap", frames(65536))
wrpcap(d + "/vm_reply.pcap", frames(1024, src=DST, dst=VM, reply=True))
wrpcap(d + "/vm64k_reply.pcap", frames(65536, src=DST, dst=VM, reply=True))
wrpcap(d + "/vm256k.pcap", many(262144))
wrpcap(d + "/vxlan.pcap", [Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
                           / IP(src="10.0.0.2", dst="10.0.0.1", flags="DF", ttl=64)
                           / UDP(sport=49152 + i, dport=4789, chksum=0) / VXLAN(vni=100) / Raw(bytes(f))
                           for i, f in enumerate(frames(1024, src=DST, dst=VM))])
