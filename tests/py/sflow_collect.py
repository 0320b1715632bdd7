#!/usr/bin/python3
"""A minimal sFlow collector for tests: receives datagrams on 127.0.0.1:PORT and writes
each, in Ethernet/IPv4/UDP headers, to a pcap for tshark's sFlow dissector. Stops IDLE
seconds after the last datagram (or after 60 s), printing the count.
Usage: sflow_collect.py PORT OUT.pcap IDLE"""
import socket, sys
from scapy.all import Ether, IP, UDP, Raw, PcapWriter

port, out, idle = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE: root may exceed rmem_max
s.bind(("127.0.0.1", port))
s.settimeout(60)
w = PcapWriter(out, sync=True)
n = 0
while True:
    try:
        data, (addr, sport) = s.recvfrom(65535)
    except socket.timeout:
        break
    w.write(Ether() / IP(src=addr, dst="127.0.0.1") / UDP(sport=sport, dport=6343) / Raw(data))
    n += 1
    s.settimeout(idle)
w.close()
print(n, flush=True)
