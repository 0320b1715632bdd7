#!/usr/bin/python3
"""The benchmark traffic of shared/BENCHMARKS.md: vm.pcap (1,024 UDP flows of 64-byte
frames from a VM), vxlan.pcap (the same frames, reversed, inside VXLAN VNI 100 from
the remote VTEP), vm64k.pcap (65,536 flows). Usage: gen_pcaps.py DIR"""
import sys
from scapy.all import Ether, IP, UDP, Raw, wrpcap
from scapy.layers.vxlan import VXLAN

VM, DST = "02:00:00:00:01:01", "02:00:00:00:02:01"

def frames(n, src=VM, dst=DST):
    out = []
    for i in range(n):
        p = Ether(src=src, dst=dst) / IP(src="10.1.0.1", dst="10.1.%d.%d" % ((i + 2) // 256 % 256, (i + 2) % 256)) \
            / UDP(sport=1024 + i % 60000, dport=5001 + i // 60000)
        out.append(p / Raw(b"\x00" * max(0, 60 - len(p))))
    return out

d = sys.argv[1]
wrpcap(d + "/vm.pcap", frames(1024))
wrpcap(d + "/vm64k.pcap", frames(65536))
wrpcap(d + "/vxlan.pcap", [Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
                           / IP(src="10.0.0.2", dst="10.0.0.1", flags="DF", ttl=64)
                           / UDP(sport=49152 + i, dport=4789, chksum=0) / VXLAN(vni=100) / Raw(bytes(f))
                           for i, f in enumerate(frames(1024, src=DST, dst=VM))])
