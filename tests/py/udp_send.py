#!/usr/bin/python3
"""Sends numbered UDP datagrams to DST:PORT at RATE per second until STOPFILE exists;
prints how many it sent. Usage: udp_send.py DST PORT RATE STOPFILE"""
import os, socket, sys, time

dst, port, rate, stopfile = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
n, t0 = 0, time.monotonic()
while not os.path.exists(stopfile):
    s.sendto(n.to_bytes(8, "big") + b"v" * 56, (dst, port))
    n += 1
    delay = t0 + n / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
print(n, flush=True)
