#!/usr/bin/python3
"""Exit 0 if two pcaps hold the same frames, byte for byte, in the same order; else
say where they differ. Usage: same_frames.py A.pcap B.pcap"""
import sys
from scapy.all import rdpcap

a, b = rdpcap(sys.argv[1]), rdpcap(sys.argv[2])
if len(a) != len(b):
    sys.exit("frame counts differ: %d vs %d" % (len(a), len(b)))
for i, (x, y) in enumerate(zip(a, b)):
    if bytes(x) != bytes(y):
        sys.exit("frame %d differs: %d bytes vs %d bytes" % (i, len(bytes(x)), len(bytes(y))))
print("identical", len(a))
