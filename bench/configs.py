#!/usr/bin/python3
"""Desired-state files for the workloads of shared/BENCHMARKS.md.
Usage: configs.py DIR WORKLOAD   (prints the file name it wrote)"""
import json, sys

d, w = sys.argv[1], sys.argv[2]
VM, DST = "02:00:00:00:01:01", "02:00:00:00:02:01"
sink = "net_null9,no-rx=1"
pcap = {"W5": "vm64k.pcap"}.get(w, "vm.pcap")
src = "net_pcap0,rx_pcap=%s/%s,infinite_rx=1" % (d, pcap)

def acl(n, port, direction):
    """n-1 denies (172.16.0.0/12 sources, UDP ports) and the allow the traffic hits, lowest."""
    rules = [{"id": i + 1, "priority": 20000 + i, "port": port, "dir": direction,
              "src": "172.%d.%d.0/24" % (16 + i // 250, i % 250), "proto": "udp",
              "dport": str(1000 + i % 60000), "action": "deny"} for i in range(n - 1)]
    rules.append({"id": n, "priority": 1000, "port": port, "dir": direction, "dst": "10.1.0.0/16" if direction == "in" else "10.1.0.0/16",
                  "proto": "udp", "action": "allow"})
    return rules

base = {"format": 1, "networks": [{"vni": 100}]}
overlay = {"vtep": {"ip": "10.0.0.1/24", "uplink": "up", "mac": "02:00:00:00:00:01"},
           "neighbours": [{"ip": "10.0.0.2", "mac": "02:00:00:00:00:02"}]}
if w == "W1x":
    s = {"format": 1, "ports": [{"name": "a", "devargs": src}, {"name": "b", "devargs": sink}], "xconnects": [{"a": "a", "b": "b"}]}
elif w == "W1":
    s = dict(base, ports=[{"name": "vm1", "devargs": src, "role": "vm", "vni": 100},
                          {"name": "vm2", "devargs": sink, "role": "vm", "vni": 100}],
             fib=[{"vni": 100, "mac": DST, "port": "vm2"}, {"vni": 100, "mac": VM, "port": "vm1"}])
elif w in ("W2", "W2-10k", "W5", "W2-sflow"):
    n = 10000 if w == "W2-10k" else 1000
    s = dict(base, **overlay, ports=[{"name": "vm1", "devargs": src, "role": "vm", "vni": 100},
                                     {"name": "up", "devargs": sink, "role": "uplink"}],
             fib=[{"vni": 100, "mac": DST, "vtep": "10.0.0.2"}, {"vni": 100, "mac": VM, "port": "vm1"}],
             acl=acl(n, "vm1", "in"), acl_defaults={"vm1": "deny"},
             qos=[{"port": "vm1", "ingress": {"rate": "400gbit"}}])
    if w == "W2-sflow":
        # BENCHMARKS.md's W2 samples 1 in 1,024; the collector is a closed local port.
        s["sflow"] = {"collectors": ["127.0.0.1:6343"], "sampling": 1024, "polling": 20}
elif w == "W2-1":
    s = dict(base, **overlay, ports=[{"name": "vm1", "devargs": src, "role": "vm", "vni": 100},
                                     {"name": "up", "devargs": sink, "role": "uplink"}],
             fib=[{"vni": 100, "mac": DST, "vtep": "10.0.0.2"}, {"vni": 100, "mac": VM, "port": "vm1"}],
             acl=acl(1, "vm1", "in"), acl_defaults={"vm1": "deny"},
             qos=[{"port": "vm1", "ingress": {"rate": "400gbit"}}])
elif w == "W3":
    s = dict(base, **overlay, ports=[{"name": "up", "devargs": "net_pcap0,rx_pcap=%s/vxlan.pcap,infinite_rx=1" % d, "role": "uplink"},
                                     {"name": "vm1", "devargs": sink, "role": "vm", "vni": 100}],
             fib=[{"vni": 100, "mac": VM, "port": "vm1"}, {"vni": 100, "mac": DST, "vtep": "10.0.0.2"}],
             acl=acl(1000, "vm1", "out"), acl_defaults={"vm1": "deny"})
else:
    sys.exit("unknown workload " + w)
f = "%s/%s.json" % (d, w)
json.dump(s, open(f, "w"))
print(f)
