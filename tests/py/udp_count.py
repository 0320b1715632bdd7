#!/usr/bin/python3
"""Counts distinct numbered UDP datagrams arriving on ADDR:PORT; stops IDLE seconds
after the last one (or 30 s if none comes) and prints the count.
Usage: udp_count.py ADDR PORT IDLE"""
import socket, sys

addr, port, idle = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind((addr, port))
s.settimeout(30)
seen = set()
while True:
    try:
        data = s.recv(2048)
    except socket.timeout:
        break
    seen.add(int.from_bytes(data[:8], "big"))
    s.settimeout(idle)
print(len(seen), flush=True)
