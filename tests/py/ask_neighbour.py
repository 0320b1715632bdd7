#!/usr/bin/python3
"""Asks who has TARGET out of IFACE, as a host would (ARP for IPv4, a neighbour
solicitation for IPv6), and prints the MAC of the first answer, or "none" after TIMEOUT
seconds. Scapy decodes the answer: an independent reading of what the switch wrote.
Usage: ask_neighbour.py IFACE SRC_IP TARGET [TIMEOUT]"""
import sys
from scapy.all import ARP, Ether, srp, conf, get_if_hwaddr
from scapy.layers.inet6 import IPv6, ICMPv6ND_NS, ICMPv6ND_NA, ICMPv6NDOptSrcLLAddr, ICMPv6NDOptDstLLAddr
from scapy.utils6 import in6_getnsma, in6_getnsmac
import socket

iface, src, target = sys.argv[1], sys.argv[2], sys.argv[3]
timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
conf.verb = 0
mac = get_if_hwaddr(iface)
if ":" in target:
    nsma = socket.inet_ntop(socket.AF_INET6, in6_getnsma(socket.inet_pton(socket.AF_INET6, target)))
    q = (Ether(src=mac, dst=in6_getnsmac(socket.inet_pton(socket.AF_INET6, nsma)))
         / IPv6(src=src, dst=nsma, hlim=255) / ICMPv6ND_NS(tgt=target) / ICMPv6NDOptSrcLLAddr(lladdr=mac))
    ans, _ = srp(q, iface=iface, timeout=timeout, filter="icmp6")
    for _, r in ans:
        if ICMPv6ND_NA in r and r[ICMPv6ND_NA].tgt == target:
            flags = "R" if r[ICMPv6ND_NA].R else "-"
            print(r[ICMPv6NDOptDstLLAddr].lladdr, flags, r[Ether].src)
            sys.exit(0)
else:
    q = Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=mac, psrc=src, pdst=target)
    ans, _ = srp(q, iface=iface, timeout=timeout, filter="arp")
    for _, r in ans:
        if r[ARP].op == 2 and r[ARP].psrc == target and r[ARP].pdst == src:
            print(r[ARP].hwsrc, "-", r[Ether].src)
            sys.exit(0)
print("none")
