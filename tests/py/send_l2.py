#!/usr/bin/python3
"""Sends COUNT broadcast frames out IFACE, from SRC_MAC, SRC_MAC+1, ... (COUNT distinct
sources when STEP is 1, the same source when STEP is 0).
Usage: send_l2.py IFACE SRC_MAC COUNT STEP"""
import sys
from scapy.all import Ether, Raw, sendp

iface, src, count, step = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
base = int(src.replace(":", ""), 16)
def mac(n):
    h = "%012x" % n
    return ":".join(h[i:i + 2] for i in range(0, 12, 2))
frames = [Ether(src=mac(base + i * step), dst="ff:ff:ff:ff:ff:ff", type=0x88b5) / Raw(b"vswitch-test" * 4) for i in range(count)]
sendp(frames, iface=iface, verbose=False)
