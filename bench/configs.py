#!/usr/bin/python3
"""Desired-state files for the workloads of shared/BENCHMARKS.md.
Usage: configs.py DIR WORKLOAD   (prints the file name it wrote)
W4's VM port is a vhost-user socket DIR/vm1.sock that the guest (testpmd) connects to."""
import json, sys

VM, DST = "02:00:00:00:01:01", "02:00:00:00:02:01"
SINK = "net_null9,no-rx=1"
# BENCHMARKS.md's W2 and W3 sample 1 in 1,024; the collector is a closed local port, as
# in the OVS anchor script.
SFLOW = {"collectors": ["127.0.0.1:6343"], "sampling": 1024, "polling": 20}


def acl(n, port, direction):
    """n-1 denies (172.16.0.0/12 sources, UDP ports) and the allow the traffic hits, lowest."""
    rules = [{"id": i + 1, "priority": 20000 + i, "port": port, "dir": direction,
              "src": "172.%d.%d.0/24" % (16 + i // 250, i % 250), "proto": "udp",
              "dport": str(1000 + i % 60000), "action": "deny"} for i in range(n - 1)]
    rules.append({"id": n, "priority": 1000, "port": port, "dir": direction, "dst": "10.1.0.0/16",
                  "proto": "udp", "action": "allow"})
    return rules


def near_miss(n, port, seed=1):
    """W2-real's security group: the anchors' n-rule "near-miss" set (shared/anchors/
    gen_pcaps.py acl_rules, the same rules for the same seed, as our rules). The traffic
    (udp 10.1.0.1 -> 10.1.0.0/16, dport 5001) misses every rule but one allow 4 rules
    above the bottom, and each miss differs from it in one field of the 5-tuple only, so
    no field can be skipped; the port's default deny is the anchors' last rule."""
    import random
    r = random.Random(seed)
    rules = []
    for k in range(n - 1):
        rule = {"id": k + 1, "priority": 40000 - k, "port": port, "dir": "in",
                "action": "deny" if k % 2 == 0 else "allow"}
        kind = k % 4
        if k == n - 5:
            rule.update(proto="udp", src="10.1.0.0/16", dst="10.1.0.0/16", dport="5001", action="allow")
        elif kind == 0:
            proto = r.choice(["udp", "tcp"])
            src = "172.%d.%d.%d/32" % (16 + r.randrange(16), r.randrange(256), r.randrange(1, 255))
            dst = "192.168.%d.%d/32" % (r.randrange(256), r.randrange(1, 255))
            rule.update(proto=proto, src=src, dst=dst, sport=str(r.randrange(1024, 65536)),
                        dport=str(r.randrange(1, 65536)))
        elif kind == 1:
            rule.update(proto="tcp", src="10.1.0.0/16", dst="10.1.%d.0/24" % r.randrange(256),
                        dport=str(r.randrange(1, 65536)))
        elif kind == 2:
            port_ = r.randrange(1, 65536)
            while port_ == 5001:
                port_ = r.randrange(1, 65536)
            d = 2 + r.randrange(1024)
            rule.update(proto="udp", src="10.1.0.1/32", dst="10.1.%d.%d/32" % (d // 256, d % 256), dport=str(port_))
        else:
            blk = r.choice([b for b in range(0x10, 0x100)])
            rule.update(proto="udp", src="10.1.0.0/16", sport="%d-%d" % (blk << 8, (blk << 8) | 0xff), dport="5001")
        rules.append(rule)
    return rules


def reply_port(d, w):
    """W6: the port that answers every session once (added after the VM's first pass)."""
    f = {"W6": "vm_reply.pcap", "W6-real": "vm_reply.pcap", "W6-64k": "vm64k_reply.pcap",
         "W6-1M": "vm1m_reply.pcap"}.get(w)
    return f and ["vm2", "net_pcap1,rx_pcap=%s/%s" % (d, f), "--role", "vm", "--vni", "100"]


# vswitchd options per workload: W7-full's table holds a quarter of its flows, so every
# packet is a new connection that recycles a half-open session (and net_pcap keeps its
# 262,144 frames in mbufs of the switch's pool).
# W6-1M: a million sessions in a table of two million (the default million would be
# full), and a million frames held by net_pcap.
VSWITCHD_ARGS = {"W7-full": ["--conntrack-sessions", "65536"], "W6-1M": ["--conntrack-sessions", "2000000"]}
MBUFS = {"W7-full": 524288, "W6-1M": 1100000, "W5-1M": 1100000}


GATEWAY_NET = "10.1.255.254/16"
BACKENDS = ["10.1.1.%d" % (b + 1) for b in range(16)]


def backend_mac(i):
    return "02:00:00:00:03:%02x" % (i + 1)


def w8(d, pcap_file):
    """W8: a VM's UDP to the Service VIP 10.96.0.10:80 over 16 backends behind the remote
    VTEP (endpoints and FIB entries there), DNAT and encap; no security group, as the
    anchor's."""
    pcap = "net_pcap0,rx_pcap=%s/%s,infinite_rx=1" % (d, pcap_file)
    return {"format": 1, "networks": [{"vni": 100, "gateway": [GATEWAY_NET]}],
            "vtep": {"ip": "10.0.0.1/24", "uplink": "up", "mac": "02:00:00:00:00:01"},
            "neighbours": [{"ip": "10.0.0.2", "mac": "02:00:00:00:00:02"}],
            "ports": [{"name": "vm1", "devargs": pcap, "role": "vm", "vni": 100},
                      {"name": "up", "devargs": SINK, "role": "uplink"}],
            "fib": [{"vni": 100, "mac": backend_mac(i), "vtep": "10.0.0.2"} for i in range(16)]
                   + [{"vni": 100, "mac": VM, "port": "vm1"}],
            "endpoints": [{"vni": 100, "ip": ip, "mac": backend_mac(i), "vtep": "10.0.0.2"} for i, ip in enumerate(BACKENDS)]
                         + [{"vni": 100, "ip": "10.1.0.%d" % c, "mac": VM, "port": "vm1"} for c in range(1, 65)],
            "services": [{"name": "w8", "vni": 100, "vip": "10.96.0.10:80", "proto": "udp",
                          "backends": ["%s:8080" % ip for ip in BACKENDS]}]}


def w8_beside_w6(d, w, base):
    """W8 (or W8-64k) and its W6 base in one switch, for their gap paired: W6's network
    and ports as in its own runs, W8's as network 200 behind the same VTEP, its VM port
    vm3 (which the bench takes down and up in turn with W6's vm1)."""
    s = config(d, base)
    own = w8(d, "vip64k.pcap" if w == "W8-64k" else "vip.pcap")
    in200 = lambda items: [dict(x, vni=200, **({"port": "vm3"} if x.get("port") == "vm1" else {})) for x in items]
    s["networks"].append(dict(own["networks"][0], vni=200))
    s["ports"].append(dict(own["ports"][0], name="vm3", vni=200, devargs=own["ports"][0]["devargs"].replace("net_pcap0", "net_pcap2")))
    s["fib"] += in200(own["fib"])
    s["endpoints"] = in200(own["endpoints"])
    s["services"] = in200(own["services"])
    return s


def config(d, w):
    pcap = lambda f: "net_pcap0,rx_pcap=%s/%s,infinite_rx=1" % (d, f)
    base = {"format": 1, "networks": [{"vni": 100}]}
    overlay = {"vtep": {"ip": "10.0.0.1/24", "uplink": "up", "mac": "02:00:00:00:00:01"},
               "neighbours": [{"ip": "10.0.0.2", "mac": "02:00:00:00:00:02"}]}
    fib_out = [{"vni": 100, "mac": DST, "vtep": "10.0.0.2"}, {"vni": 100, "mac": VM, "port": "vm1"}]
    if w in ("W8", "W8-64k", "W9"):
        return w8(d, "vip64k.pcap" if w == "W8-64k" else "vip.pcap")
    if w == "W1x":
        return {"format": 1, "ports": [{"name": "a", "devargs": pcap("vm.pcap")}, {"name": "b", "devargs": SINK}],
                "xconnects": [{"a": "a", "b": "b"}]}
    if w == "W1":
        return dict(base, ports=[{"name": "vm1", "devargs": pcap("vm.pcap"), "role": "vm", "vni": 100},
                                 {"name": "vm2", "devargs": SINK, "role": "vm", "vni": 100}],
                    fib=[{"vni": 100, "mac": DST, "port": "vm2"}, {"vni": 100, "mac": VM, "port": "vm1"}])
    if w in ("W6", "W6-64k", "W6-1M", "W6-real", "W7-full"):
        # W2's path with the VM's security group stateful (its 1k rules decide new
        # connections); W6's replies come from REPLY_PORT once the sessions exist.
        s = config(d, {"W6": "W2", "W6-64k": "W5", "W6-1M": "W5", "W6-real": "W2-real", "W7-full": "W2"}[w])
        if w == "W7-full":
            s["ports"][0]["devargs"] = pcap("vm256k.pcap")
        if w == "W6-1M":
            s["ports"][0]["devargs"] = pcap("vm1m.pcap")
        s["stateful"] = [{"port": "vm1"}]
        return s
    if w in ("W2-real", "W2-real-10k"):
        s = config(d, "W2")
        s["acl"] = near_miss(10000 if w == "W2-real-10k" else 1000, "vm1")
        return s
    if w in ("W2", "W2-10k", "W5", "W5-1M", "W2-1", "W4"):
        src = {"W5": pcap("vm64k.pcap"), "W5-1M": pcap("vm1m.pcap"), "W4": "net_vhost0,iface=%s/vm1.sock,queues=1" % d}.get(w, pcap("vm.pcap"))
        n = {"W2-10k": 10000, "W2-1": 1}.get(w, 1000)
        s = dict(base, **overlay, ports=[{"name": "vm1", "devargs": src, "role": "vm", "vni": 100},
                                         {"name": "up", "devargs": SINK, "role": "uplink"}],
                 fib=fib_out, acl=acl(n, "vm1", "in"), acl_defaults={"vm1": "deny"},
                 qos=[{"port": "vm1", "ingress": {"rate": "400gbit"}}])
        if w != "W2-1":
            s["sflow"] = SFLOW
        return s
    if w == "W3":
        return dict(base, **overlay, ports=[{"name": "up", "devargs": pcap("vxlan.pcap"), "role": "uplink"},
                                            {"name": "vm1", "devargs": SINK, "role": "vm", "vni": 100}],
                    fib=[{"vni": 100, "mac": VM, "port": "vm1"}, {"vni": 100, "mac": DST, "vtep": "10.0.0.2"}],
                    acl=acl(1000, "vm1", "out"), acl_defaults={"vm1": "deny"}, sflow=SFLOW)
    raise SystemExit("unknown workload " + w)


if __name__ == "__main__":
    d, w = sys.argv[1], sys.argv[2]
    f = "%s/%s.json" % (d, w)
    json.dump(config(d, w), open(f, "w"))
    print(f)
