#!/usr/bin/python3
"""Exit 0 if two pcaps hold the same frames, byte for byte, in the same order; else
say where they differ. With --strip N, the first N bytes of each frame of B are
ignored (compare inner frames after encapsulation).
Usage: same_frames.py A.pcap B.pcap [--strip N]"""
import sys
from scapy.all import rdpcap

a, b = rdpcap(sys.argv[1]), rdpcap(sys.argv[2])
strip = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--strip" else 0
if len(a) != len(b):
    sys.exit("frame counts differ: %d vs %d" % (len(a), len(b)))
for i, (x, y) in enumerate(zip(a, b)):
    if bytes(x) != bytes(y)[strip:]:
        sys.exit("frame %d differs: %d bytes vs %d bytes" % (i, len(bytes(x)), len(bytes(y)) - strip))
print("identical", len(a))
