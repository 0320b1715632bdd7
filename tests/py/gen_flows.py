#!/usr/bin/python3
"""FLOWS UDP flows of 60-byte frames, flow k sent (k+1)*UNIT times, in a shuffled order.
Writes the pcap directly (scapy would take minutes for a million frames) and prints
each flow's frame (hex) and count.
Usage: gen_flows.py OUT.pcap FLOWS UNIT"""
import random, struct, sys

out, flows, unit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def frame(k):
    eth = bytes.fromhex("020000000201" "020000000101" "0800")
    ip = bytearray(bytes.fromhex("4500002e00000000401100000a0100010a010002"))
    s = sum(struct.unpack("!10H", bytes(ip)))
    s = (s & 0xffff) + (s >> 16)
    ip[10:12] = struct.pack("!H", ~((s & 0xffff) + (s >> 16)) & 0xffff)
    udp = struct.pack("!HHHH", 1000 + k, 5001, 26, 0)
    return (eth + bytes(ip) + udp).ljust(60, b"\0")
frames = [frame(k) for k in range(flows)]
order = [k for k in range(flows) for _ in range((k + 1) * unit)]
random.Random(5).shuffle(order)
with open(out, "wb") as f:
    f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
    for i, k in enumerate(order):
        f.write(struct.pack("<IIII", i // 1000000, i % 1000000, 60, 60))
        f.write(frames[k])
for k in range(flows):
    print(frames[k].hex(), (k + 1) * unit)
