#!/usr/bin/python3
"""Writes COUNT varied Ethernet frames to a pcap: 60..1514 bytes on the wire without FCS
(64..1518 with it), IPv4/IPv6 UDP/TCP/ICMP, ARP, 802.1Q-tagged, and unknown EtherTypes,
random payloads. Seeded, so a failure can be reproduced.
Usage: gen_varied.py OUT.pcap COUNT SEED"""
import random, sys
from scapy.all import Ether, Dot1Q, ARP, IP, IPv6, UDP, TCP, ICMP, ICMPv6EchoRequest, Raw, wrpcap

out, count, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(seed)

def mac():
    return "02:%02x:%02x:%02x:%02x:%02x" % tuple(rnd.randrange(256) for _ in range(5))

def ip4():
    return "10.%d.%d.%d" % (rnd.randrange(256), rnd.randrange(256), rnd.randrange(1, 255))

def ip6():
    return "fd00::%x:%x" % (rnd.randrange(65536), rnd.randrange(1, 65536))

def frame(size):
    kind = rnd.choice(["udp4", "tcp4", "icmp4", "udp6", "tcp6", "icmp6", "arp", "vlan", "raw"])
    e = Ether(src=mac(), dst=rnd.choice([mac(), "ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01"]))
    if kind == "udp4":
        p = e / IP(src=ip4(), dst=ip4()) / UDP(sport=rnd.randrange(1, 65536), dport=rnd.randrange(1, 65536))
    elif kind == "tcp4":
        p = e / IP(src=ip4(), dst=ip4()) / TCP(sport=rnd.randrange(1, 65536), dport=rnd.randrange(1, 65536), flags="PA")
    elif kind == "icmp4":
        p = e / IP(src=ip4(), dst=ip4()) / ICMP(id=rnd.randrange(65536))
    elif kind == "udp6":
        p = e / IPv6(src=ip6(), dst=ip6()) / UDP(sport=rnd.randrange(1, 65536), dport=rnd.randrange(1, 65536))
    elif kind == "tcp6":
        p = e / IPv6(src=ip6(), dst=ip6()) / TCP(sport=rnd.randrange(1, 65536), dport=80)
    elif kind == "icmp6":
        p = e / IPv6(src=ip6(), dst=ip6()) / ICMPv6EchoRequest()
    elif kind == "arp":
        p = e / ARP(psrc=ip4(), pdst=ip4(), hwsrc=mac())
    elif kind == "vlan":
        p = e / Dot1Q(vlan=rnd.randrange(1, 4095)) / IP(src=ip4(), dst=ip4()) / UDP()
    else:
        p = Ether(src=mac(), dst=mac(), type=rnd.choice([0x88B5, 0x88B6, 0x9000]))
    raw = bytes(p)
    pad = max(0, size - len(raw))
    return raw + rnd.randbytes(pad) if size > len(raw) else raw[:max(size, 60)] if kind == "raw" else raw

sizes = [60, 1514] + [rnd.randint(60, 1514) for _ in range(count - 2)]
frames = [Ether(frame(s)) for s in sizes]
wrpcap(out, frames)
print(len(frames), min(len(bytes(f)) for f in frames), max(len(bytes(f)) for f in frames))
