#!/usr/bin/python3
"""Rewrites the Ethernet source and destination of every frame of a pcap (the rest of
each frame is kept). Usage: set_macs.py IN.pcap OUT.pcap SRC DST"""
import sys
from scapy.all import Ether, rdpcap, wrpcap

src, dst = sys.argv[3], sys.argv[4]
out = []
for p in rdpcap(sys.argv[1]):
    e = Ether(bytes(p))
    e.src, e.dst = src, dst
    out.append(e)
wrpcap(sys.argv[2], out)
print(len(out))
