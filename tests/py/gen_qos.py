#!/usr/bin/python3
"""N UDP frames of SIZE bytes from vm1 (02:00:00:00:01:01) to DST, DSCP 0.
Usage: gen_qos.py OUT N SIZE DST"""
import sys
from scapy.all import Ether, IP, UDP, Raw, wrpcap

out, n, size, dst = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
base = Ether(src="02:00:00:00:01:01", dst=dst) / IP(src="10.1.0.1", dst="10.1.0.2", tos=0) / UDP(sport=1024, dport=5001)
wrpcap(out, [base / Raw(b"q" * (size - len(base))) for _ in range(n)])
