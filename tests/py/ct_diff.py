#!/usr/bin/python3
"""Differential connection tracking: the same scripted packets through two rigs, each
between a side A and a side B whose policy is "B may open connections, A may not"
(nftables: ct state established,related accept; ct state new iifname B accept; drop).
Every packet carries a tag (IPv4 id, IPv6 flow label); a packet passed if a frame with
its tag arrived on the other side. Prints one JSON object: scenario -> list of
[description, sender side, {rig: packets of it that arrived}].

Usage: ct_diff.py CONFIG_JSON
CONFIG: {"rigs": {NAME: {"a": IFACE, "b": IFACE, "to_b": MAC, "to_a": MAC}}}
  a/b: where side A's and side B's frames leave and arrive; to_b: the destination MAC of
  frames A sends (toward B), to_a: of frames B sends."""
import json
import sys
import time

from scapy.all import (AsyncSniffer, Ether, ICMP, IP, IPv6, IPv6ExtHdrFragment, ICMPv6EchoReply, ICMPv6EchoRequest, Raw,
                       TCP, UDP, conf, fragment, fragment6, sendp)

conf.verb = 0
cfg = json.loads(sys.argv[1])
rigs = cfg["rigs"]
A4, B4 = "10.64.1.1", "10.64.2.1"
A6, B6 = "fd64:1::1", "fd64:2::1"
GAP = 0.02

own = {}
for rig in rigs.values():
    for side in ("a", "b"):
        with open(f"/sys/class/net/{rig[side]}/address") as f:
            own[rig[side]] = f.read().strip()

tag = [0]


def next_tag():
    tag[0] += 1
    return tag[0]


def ip(side, v6=False, t=None):
    """An IP header from `side` to the other, tagged."""
    src, dst = (A6, B6) if side == "A" else (B6, A6)
    if v6:
        return IPv6(src=src, dst=dst, fl=t, hlim=64)
    src, dst = (A4, B4) if side == "A" else (B4, A4)
    return IP(src=src, dst=dst, id=t, ttl=64)


class Scenario:
    def __init__(self, name):
        self.name = name
        self.steps = []

    def add(self, desc, side, build):
        """`build(tag)` makes the L3 packet (or a list of fragments) `side` sends."""
        self.steps.append((desc, side, build))

    def wait(self, seconds):
        """Nothing is sent for `seconds` (both rigs time a closed connection out in 1 s)."""
        self.steps.append(("", None, seconds))


def tcp(side, sport, dport, flags, seq, ack=0, data=b"", win=65535, opts=None, v6=False):
    def build(t):
        return ip(side, v6, t) / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, window=win,
                                     options=opts or []) / Raw(data)
    return build


def udp(side, sport, dport, data=b"x" * 20, v6=False):
    return lambda t: ip(side, v6, t) / UDP(sport=sport, dport=dport) / Raw(data)


def handshake(s, bport, aport, b_isn=1000, a_isn=5000, v6=False, opts_b=None, opts_a=None, win_a=65535):
    s.add("SYN (B opens)", "B", tcp("B", bport, aport, "S", b_isn, opts=opts_b, v6=v6))
    s.add("SYN+ACK", "A", tcp("A", aport, bport, "SA", a_isn, b_isn + 1, opts=opts_a, win=win_a, v6=v6))
    s.add("ACK", "B", tcp("B", bport, aport, "A", b_isn + 1, a_isn + 1, v6=v6))


scenarios = []

s = Scenario("handshake_data_close")
handshake(s, 40001, 80)
s.add("data from B", "B", tcp("B", 40001, 80, "PA", 1001, 5001, b"q" * 100))
s.add("ACK from A", "A", tcp("A", 80, 40001, "A", 5001, 1101))
s.add("data from A", "A", tcp("A", 80, 40001, "PA", 5001, 1101, b"r" * 50))
s.add("ACK from B", "B", tcp("B", 40001, 80, "A", 1101, 5051))
s.add("FIN from B", "B", tcp("B", 40001, 80, "FA", 1101, 5051))
s.add("FIN from A", "A", tcp("A", 80, 40001, "FA", 5051, 1102))
s.add("last ACK", "B", tcp("B", 40001, 80, "A", 1102, 5052))
s.add("SYN again on the same ports (reopen)", "B", tcp("B", 40001, 80, "S", 90000))
s.add("its SYN+ACK", "A", tcp("A", 80, 40001, "SA", 70000, 90001))
scenarios.append(s)

s = Scenario("inbound_refused")
s.add("SYN from A (A may not open)", "A", tcp("A", 50001, 22, "S", 1))
s.add("a SYN+ACK nobody asked for", "B", tcp("B", 22, 50001, "SA", 9, 2))
s.add("ACK with no connection", "A", tcp("A", 50002, 22, "A", 1, 1))
s.add("SYN+ACK with no connection", "A", tcp("A", 50003, 22, "SA", 1, 1))
s.add("RST with no connection", "A", tcp("A", 50004, 22, "R", 1))
s.add("FIN+SYN", "B", tcp("B", 50005, 80, "FS", 1))
scenarios.append(s)

s = Scenario("windows")
handshake(s, 40002, 80)
s.add("data far beyond the window", "A", tcp("A", 80, 40002, "PA", 5001 + 10_000_000, 1001, b"z" * 10))
s.add("data in the window", "A", tcp("A", 80, 40002, "PA", 5001, 1001, b"z" * 10))
s.add("ACK of data A never sent", "B", tcp("B", 40002, 80, "A", 1001, 5011 + 500_000))
s.add("ACK of what A sent", "B", tcp("B", 40002, 80, "A", 1001, 5011))
s.add("an old retransmission", "A", tcp("A", 80, 40002, "PA", 5001, 1001, b"z" * 10))
scenarios.append(s)

s = Scenario("window_scaling")
handshake(s, 40003, 80, opts_b=[("WScale", 7)], opts_a=[("WScale", 7)], win_a=1000)
s.add("A's first scaled window: 1000 << 7", "A", tcp("A", 80, 40003, "A", 5001, 1001, win=1000))
s.add("B sends 100 KB ahead (A opened 1000 << 7)", "B", tcp("B", 40003, 80, "PA", 1001 + 100_000, 5001, b"w" * 100))
s.add("B sends 200 KB ahead (beyond)", "B", tcp("B", 40003, 80, "PA", 1001 + 200_000, 5001, b"w" * 100))
scenarios.append(s)

s = Scenario("rst_attacks")
handshake(s, 40004, 80)
s.add("data from B", "B", tcp("B", 40004, 80, "PA", 1001, 5001, b"d" * 1000))
s.add("ACK from A", "A", tcp("A", 80, 40004, "A", 5001, 2001))
s.add("RST far outside the window", "A", tcp("A", 80, 40004, "R", 5001 + 5_000_000))
s.add("RST behind what B acknowledged... from B, stale", "B", tcp("B", 40004, 80, "R", 500))
s.add("data still flows", "B", tcp("B", 40004, 80, "PA", 2001, 5001, b"d" * 10))
s.add("RST in the window", "A", tcp("A", 80, 40004, "R", 5001))
s.add("a SYN from A after the reset (A may not open)", "A", tcp("A", 80, 40004, "S", 777))
scenarios.append(s)

s = Scenario("fin_rst_race")
handshake(s, 40005, 80)
s.add("FIN from B", "B", tcp("B", 40005, 80, "FA", 1001, 5001))
s.add("RST from A in the window", "A", tcp("A", 80, 40005, "RA", 5001, 1002))
s.add("B's retransmitted FIN", "B", tcp("B", 40005, 80, "FA", 1001, 5001))
scenarios.append(s)

s = Scenario("resets_after_close")
handshake(s, 40009, 80)
s.add("data from B", "B", tcp("B", 40009, 80, "PA", 1001, 5001, b"d" * 100))
s.add("FIN from A (its server closes)", "A", tcp("A", 80, 40009, "FA", 5001, 1101))
s.add("B acknowledges the FIN", "B", tcp("B", 40009, 80, "A", 1101, 5002))
s.add("B's data sent before it saw the FIN", "B", tcp("B", 40009, 80, "PA", 1101, 5001, b"d" * 100))
s.add("A resets it at the ack it carried, behind the FIN B acknowledged", "A", tcp("A", 80, 40009, "R", 5001))
s.add("and the next segment in flight the same way", "A", tcp("A", 80, 40009, "R", 5001))
scenarios.append(s)

s = Scenario("rst_off_the_edge")
handshake(s, 40010, 80)
s.add("data from B", "B", tcp("B", 40010, 80, "PA", 1001, 5001, b"d" * 100))
s.add("ACK from A", "A", tcp("A", 80, 40010, "A", 5001, 1101))
s.add("RST from A in the window, not where B acknowledged", "A", tcp("A", 80, 40010, "R", 6001))
s.add("B's challenge ACK", "B", tcp("B", 40010, 80, "A", 1101, 5001))
s.wait(2)
s.add("B's data later: the connection stands", "B", tcp("B", 40010, 80, "PA", 1101, 5001, b"d" * 10))
s.add("another RST from A off the edge, and no challenge ACK", "A", tcp("A", 80, 40010, "R", 7001))
s.wait(2)
s.add("B's data later: that RST timed the connection out", "B", tcp("B", 40010, 80, "PA", 1111, 5001, b"d" * 10))
scenarios.append(s)

s = Scenario("rst_at_the_edge")
handshake(s, 40011, 80)
s.add("RST from A where B acknowledged", "A", tcp("A", 80, 40011, "R", 5001))
s.add("B's data at once: the closed connection still passes it", "B", tcp("B", 40011, 80, "PA", 1001, 5001, b"d" * 10))
s.wait(2)
s.add("B's data later: the connection is gone", "B", tcp("B", 40011, 80, "PA", 1011, 5001, b"d" * 10))
scenarios.append(s)

s = Scenario("syn_retries")
s.add("SYN", "B", tcp("B", 40006, 80, "S", 3000))
s.add("SYN again", "B", tcp("B", 40006, 80, "S", 3000))
s.add("SYN+ACK", "A", tcp("A", 80, 40006, "SA", 8000, 3001))
s.add("SYN+ACK again", "A", tcp("A", 80, 40006, "SA", 8000, 3001))
s.add("ACK", "B", tcp("B", 40006, 80, "A", 3001, 8001))
s.add("SYN+ACK late", "A", tcp("A", 80, 40006, "SA", 8000, 3001))
scenarios.append(s)

s = Scenario("udp")
s.add("request from B", "B", udp("B", 5353, 53))
s.add("response", "A", udp("A", 53, 5353))
s.add("from A's other port (new, refused)", "A", udp("A", 54, 5353))
s.add("B again", "B", udp("B", 5353, 53))
s.add("A opening its own flow", "A", udp("A", 9999, 7777))
scenarios.append(s)

s = Scenario("udp_timeout")
s.add("request from B", "B", udp("B", 5400, 53))
s.add("response", "A", udp("A", 53, 5400))
s.wait(1.5)
s.add("A's late answer, past the flow's timeout (new, refused)", "A", udp("A", 53, 5400))
s.add("B again: a new flow", "B", udp("B", 5400, 53))
s.add("its answer", "A", udp("A", 53, 5400))
scenarios.append(s)

s = Scenario("icmp")
s.add("echo request from B", "B", lambda t: ip("B", False, t) / ICMP(type=8, id=77, seq=1))
s.add("its reply", "A", lambda t: ip("A", False, t) / ICMP(type=0, id=77, seq=1))
s.add("a reply to no request", "A", lambda t: ip("A", False, t) / ICMP(type=0, id=78, seq=1))
s.add("echo request from A (refused)", "A", lambda t: ip("A", False, t) / ICMP(type=8, id=79, seq=1))
s.add("UDP from B", "B", udp("B", 6000, 7000))
quoted = bytes(IP(src=B4, dst=A4, id=1, ttl=64) / UDP(sport=6000, dport=7000) / Raw(b"x" * 20))[:28]
s.add("port unreachable about it (related)", "A", lambda t: ip("A", False, t) / ICMP(type=3, code=3) / Raw(quoted))
other = bytes(IP(src=B4, dst=A4, id=1, ttl=64) / UDP(sport=6001, dport=7000) / Raw(b"x" * 20))[:28]
s.add("unreachable about no flow", "A", lambda t: ip("A", False, t) / ICMP(type=3, code=3) / Raw(other))
scenarios.append(s)

s = Scenario("ipv6")
handshake(s, 40007, 443, v6=True)
s.add("data from B", "B", tcp("B", 40007, 443, "PA", 1001, 5001, b"six" * 10, v6=True))
s.add("data from A", "A", tcp("A", 443, 40007, "PA", 5001, 1031, b"six" * 10, v6=True))
s.add("SYN from A (refused)", "A", tcp("A", 443, 40008, "S", 1, v6=True))
s.add("echo request from B", "B", lambda t: ip("B", True, t) / ICMPv6EchoRequest(id=5, seq=1))
s.add("its reply", "A", lambda t: ip("A", True, t) / ICMPv6EchoReply(id=5, seq=1))
s.add("a reply to no request", "A", lambda t: ip("A", True, t) / ICMPv6EchoReply(id=6, seq=1))
s.add("UDP from B", "B", udp("B", 5000, 5001, v6=True))
s.add("UDP back", "A", udp("A", 5001, 5000, v6=True))
scenarios.append(s)

s = Scenario("fragments")
s.add("UDP from B in 3 fragments", "B", lambda t: fragment(ip("B", False, t) / UDP(sport=7001, dport=7002) / Raw(b"f" * 2500), fragsize=1000))
s.add("the answer in 3 fragments", "A", lambda t: fragment(ip("A", False, t) / UDP(sport=7002, dport=7001) / Raw(b"g" * 2500), fragsize=1000))
s.add("A's unsolicited UDP in 3 fragments", "A", lambda t: fragment(ip("A", False, t) / UDP(sport=7100, dport=7101) / Raw(b"h" * 2500), fragsize=1000))
frag6 = lambda side, sport, dport, fill: lambda t: fragment6(
    ip(side, True, t) / IPv6ExtHdrFragment(id=0x5000 + t) / UDP(sport=sport, dport=dport) / Raw(fill * 2500), 1000)
s.add("IPv6 UDP from B in 3 fragments", "B", frag6("B", 7201, 7202, b"i"))
s.add("the answer in 3 IPv6 fragments", "A", frag6("A", 7202, 7201, b"j"))
s.add("A's unsolicited IPv6 UDP in 3 fragments", "A", frag6("A", 7300, 7301, b"k"))
scenarios.append(s)

ifaces = sorted(own)
sniffer = AsyncSniffer(iface=ifaces, store=True, filter="ip or ip6")
sniffer.start()
time.sleep(1.0)

sent = []  # (scenario, desc, side, tag)
for sc in scenarios:
    for desc, side, build in sc.steps:
        if side is None:
            time.sleep(build)
            continue
        t = next_tag()
        pkt = build(t)
        frags = pkt if isinstance(pkt, list) else [pkt]
        for name, rig in rigs.items():
            out = rig["b"] if side == "B" else rig["a"]
            dst = rig["to_a"] if side == "B" else rig["to_b"]
            sendp([Ether(src=own[out], dst=dst) / f for f in frags], iface=out)
        sent.append((sc.name, desc, side, t))
        time.sleep(GAP)
    time.sleep(0.2)

time.sleep(0.5)
got = sniffer.stop()
arrived = {}  # (iface, tag) -> frames
for p in got:
    iface = p.sniffed_on
    if p.src == own.get(iface):
        continue  # what we sent
    if IP in p:
        t = p[IP].id
    elif IPv6 in p:
        t = p[IPv6].fl
    else:
        continue
    arrived[(iface, t)] = arrived.get((iface, t), 0) + 1

result = {}
for name, desc, side, t in sent:
    row = {}
    for rig_name, rig in rigs.items():
        to = rig["a"] if side == "B" else rig["b"]
        row[rig_name] = arrived.get((to, t), 0)
    result.setdefault(name, []).append([desc, side, row])
print(json.dumps(result))
