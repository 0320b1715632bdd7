#!/usr/bin/python3
"""Overlay test traffic, built by scapy.

  gen_overlay.py encap OUT N            VM-side frames to DST_MAC, 60..1464 bytes (fits MTU 1500 after encap)
  gen_overlay.py decap OUT INNER N      N good VXLAN frames from REMOTE to LOCAL (inner written to INNER),
                                        then 5 of each malformed kind, in the order of KINDS (printed)
  gen_overlay.py bum-vm OUT NB NU       NB broadcast + NU unknown-unicast frames from a VM
  gen_overlay.py bum-up OUT N           N broadcast frames inside VXLAN from REMOTE
  gen_overlay.py jumbo VM_OUT UP_OUT    VM frames of 1400, 4000, 8964, 8965 bytes; VXLAN from REMOTE with
                                        inner frames of 1400, 8000, 9014, 9015 bytes
"""
import random, sys
from scapy.all import Ether, IP, UDP, ARP, Raw, wrpcap
from scapy.layers.vxlan import VXLAN

LOCAL_MAC, REMOTE_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
LOCAL_IP, REMOTE_IP = "10.0.0.1", "10.0.0.2"
VM_MAC, DST_MAC = "02:00:00:00:01:01", "02:00:00:00:02:01"
rnd = random.Random(7)

def inner(i, src=VM_MAC, dst=DST_MAC, size=None):
    p = Ether(src=src, dst=dst) / IP(src="10.1.0.1", dst="10.1.%d.%d" % (i // 250, 2 + i % 250), tos=rnd.choice([0, 0x28, 0xb8])) \
        / UDP(sport=1024 + i % 1000, dport=5001)
    size = size or rnd.randint(60, 1464)
    return Ether(bytes(p) + rnd.randbytes(max(0, size - len(p))))

def vx(frame, vni=100, dport=4789, flags=0x08, dst_ip=LOCAL_IP, dst_mac=LOCAL_MAC, sport=None, chksum=None):
    ip = IP(src=REMOTE_IP, dst=dst_ip, flags="DF", ttl=64)
    if chksum is not None:
        ip.chksum = chksum
    return Ether(src=REMOTE_MAC, dst=dst_mac) / ip / UDP(sport=sport or rnd.randint(49152, 65535), dport=dport, chksum=0) \
        / VXLAN(vni=vni, flags=flags) / Raw(bytes(frame))  # raw: scapy would leave inner padding out of the lengths

KINDS = [
    ("vxlan_bad_ip", lambda f: vx(f, chksum=0x1234)),
    ("vxlan_bad_flags", lambda f: vx(f, flags=0x00)),
    ("vxlan_wrong_port", lambda f: vx(f, dport=4790)),
    ("vxlan_unknown_vni", lambda f: vx(f, vni=999)),
    ("vxlan_inner_truncated", lambda f: vx(Raw(b"\xaa" * 10))),
    ("not_our_vtep_ip", lambda f: vx(f, dst_ip="10.0.0.99")),
    ("not_our_mac", lambda f: vx(f, dst_mac="02:00:00:00:00:99")),
    # UDP says 12 bytes: only 4 of the 8 VXLAN header bytes.
    ("vxlan_truncated", lambda f: Ether(src=REMOTE_MAC, dst=LOCAL_MAC) / IP(src=REMOTE_IP, dst=LOCAL_IP) / UDP(sport=50000, dport=4789, chksum=0) / Raw(b"\x08\x00\x00\x00")),
    # Cut short on the wire: the IP header claims more than arrived.
    ("vxlan_bad_ip", lambda f: Ether(bytes(vx(f))[:46])),
]

mode = sys.argv[1]
if mode == "encap":
    out, n = sys.argv[2], int(sys.argv[3])
    wrpcap(out, [inner(i) for i in range(n)])
elif mode == "decap":
    out, inner_out, n = sys.argv[2], sys.argv[3], int(sys.argv[4])
    good = [inner(i, src=DST_MAC, dst=VM_MAC) for i in range(n)]
    frames = [vx(f) for f in good]
    for _, make in KINDS:
        frames += [make(inner(999, src=DST_MAC, dst=VM_MAC, size=100)) for _ in range(5)]
    wrpcap(out, frames)
    wrpcap(inner_out, good)
    print(" ".join(k for k, _ in KINDS))
elif mode == "bum-vm":
    out, nb, nu = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    frames = [Ether(src=VM_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="10.1.0.1", pdst="10.1.0.%d" % (2 + i)) for i in range(nb)]
    frames += [inner(i, dst="02:00:00:00:09:09", size=100) for i in range(nu)]
    wrpcap(out, frames)
elif mode == "bum-up":
    out, n = sys.argv[2], int(sys.argv[3])
    wrpcap(out, [vx(Ether(src=DST_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="10.1.0.9", pdst="10.1.0.%d" % (2 + i))) for i in range(n)])
elif mode == "jumbo":
    vm_out, up_out = sys.argv[2], sys.argv[3]
    wrpcap(vm_out, [inner(i, size=n) for i, n in enumerate((1400, 4000, 8964, 8965))])
    wrpcap(up_out, [vx(inner(i, src=DST_MAC, dst=VM_MAC, size=n)) for i, n in enumerate((1400, 8000, 9014, 9015))])
else:
    sys.exit("unknown mode " + mode)
