#!/usr/bin/python3
"""Traffic for the ACL golden test, from vm1 (VM_IN) and from the overlay (UP_IN), all
toward vm2's MAC. Usage: gen_acl.py VM_IN UP_IN"""
import sys
from scapy.all import Ether, IP, IPv6, TCP, UDP, ARP, ICMPv6EchoRequest, wrpcap
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

VM1, VM2 = "02:00:00:00:01:01", "02:00:00:00:02:01"
def v4(l4, n):
    return [Ether(src=VM1, dst=VM2) / IP(src="10.1.0.1", dst="10.1.0.2") / l4 for _ in range(n)]
def v6(src, n):
    return [Ether(src=VM1, dst=VM2) / IPv6(src=src, dst="fd00::2") / ICMPv6EchoRequest() for _ in range(n)]

vm_in = (
    v4(TCP(dport=22), 5)            # in: rule 1 allow; out: rule 5 allow     -> delivered
    + v4(TCP(dport=23), 4)          # in: rule 2 deny                          -> acl_deny_in
    + v4(UDP(dport=5001), 3)        # in: default allow; out: rule 3 allow     -> delivered
    + v4(UDP(dport=9999), 2)        # in: default allow; out: vm2 default deny -> acl_deny_out
    + [Ether(src=VM1, dst=VM2) / ARP(psrc="10.1.0.1", pdst="10.1.0.2")]  # ARP passes every group   -> delivered
    + [Ether(src=VM1, dst=VM2, type=0x88b5) / (b"x" * 46)]                 # other non-IP: default    -> acl_deny_out
    + v6("fd00::1", 2)              # out: rule 4 allow (IPv6)                 -> delivered
    + v6("fd01::1", 1)              # out: vm2 default deny                    -> acl_deny_out
)
def vx(inner):
    return Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / IP(src="10.0.0.2", dst="10.0.0.1", flags="DF") \
        / UDP(sport=50000, dport=4789, chksum=0) / VXLAN(vni=100) / Raw(bytes(inner))
up_in = [vx(Ether(src="02:00:00:00:09:09", dst=VM2) / IP(src="10.1.0.9", dst="10.1.0.2") / UDP(dport=5001)) for _ in range(3)] \
      + [vx(Ether(src="02:00:00:00:09:09", dst=VM2) / IP(src="10.1.0.9", dst="10.1.0.2") / UDP(dport=80)) for _ in range(2)]
wrpcap(sys.argv[1], vm_in)
wrpcap(sys.argv[2], up_in)
