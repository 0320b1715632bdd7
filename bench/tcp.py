#!/usr/bin/python3
"""TCP benchmarks C1 and C2 (issue 14): one iperf3 stream, both ends pinned to CPU 0,
the switch's PMD core on CPU 1; each against the all-kernel path it replaces, measured
in the same run, alternating.

  C1   container -> container: ours (two kernel ports, tap) vs a Linux bridge with veths
  C1-4 C1 with four streams
  C1v  the same with veth containers attached by AF_PACKET (kernel:iface=<veth>)
  C2   container -> a kernel VXLAN host B (Flannel's data path): ours (kernel ports for
       the container and the uplink) vs bridge + kernel vxlan on host A
  C2r  C2 in reverse (host B -> container)
  C3   C1 with a NIC on the path: container 1 in network 100, container 2 in network 200,
       joined by a virtio NIC (net_virtio_user) whose other end is the switch's own
       vhost-user port; the NIC's TSO and checksum offloads on; vs the Linux bridge
  C3sw C3 with the NIC's TSO withheld (tso=0 at the vhost-user end): large frames are
       cut in software before the NIC, and coalesced again (GRO) toward container 2
  C3sw-nogro  C3sw with vswitchd --no-gro: container 2 gets the segments one by one

Prints a table and, with --docs, writes it into docs/benchmarks.md between its markers.
Run through bench/run.sh (which installs, reserves hugepages and builds)."""
import common
import argparse, datetime, json, os, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BIN = os.path.join(ROOT, "target", "release")
DEFAULT = ["C1", "C1-4", "C1v", "C2", "C2r", "C3", "C3sw", "C3sw-nogro"]
BEGIN, END = "<!-- tcp-bench:begin -->", "<!-- tcp-bench:end -->"


def sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True).stdout


def ns(name, *args, check=True):
    return sh("ip", "netns", "exec", name, *args, check=check)


def fresh_ns(*names):
    for n in names:
        sh("ip", "netns", "del", n, check=False)
        sh("ip", "netns", "add", n)
        ns(n, "ip", "link", "set", "lo", "up")


def addr(n, dev, cidr, mtu=None):
    ns(n, "sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1")
    ns(n, "ip", "addr", "add", cidr, "dev", dev)
    if mtu:
        ns(n, "ip", "link", "set", dev, "mtu", str(mtu))
    ns(n, "ip", "link", "set", dev, "up")


def iperf(server_ns, server_ip, client_ns, secs, reverse=False, streams=1):
    """Gbit/s the receiver got, both ends on CPU 0, the first 2 s omitted."""
    s = subprocess.Popen(["ip", "netns", "exec", server_ns, "taskset", "-c", "0", "iperf3", "-s", "-1", "-B", server_ip],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    args = ["taskset", "-c", "0", "iperf3", "-c", server_ip, "-t", str(secs), "-O", "2", "-J", "-P", str(streams)]
    if reverse:
        args.append("-R")
    out = json.loads(ns(client_ns, *args))
    s.wait(timeout=10)
    return out["end"]["sum_received"]["bits_per_second"] / 1e9


def Switch(work, eal=(), args=()):
    return common.Vswitchd(work, "vsbtcp", hugepages=True, eal=eal, args=args)


def ours_c1(work, secs, veth, streams, nic=None, gro=True):
    fresh_ns("bc1", "bc2")
    # A virtio-user port shares hugepages with its vhost-user end: a file per list.
    sw = Switch(work, ["--single-file-segments"] if nic is not None else [], [] if gro else ["--no-gro"])
    try:
        sw.ctl("network", "add", "100")
        vni = {1: "100", 2: "100"}
        if nic is not None:
            # The NIC joins network 100 to network 200, where container 2 is.
            vni[2] = "200"
            sw.ctl("network", "add", "200")
            sock = os.path.join(work, "cable.sock")
            sw.ctl("port", "add", "vm", f"net_vhost0,iface={sock}" + ("" if nic else ",tso=0"), "--role", "vm",
                   "--vni", "200")
            sw.ctl("port", "add", "nic", f"net_virtio_user0,path={sock}", "--role", "vm", "--vni", "100")
        for i in (1, 2):
            if veth:
                sh("ip", "link", "del", f"bcv{i}", check=False)
                sh("ip", "link", "add", f"bcv{i}", "type", "veth", "peer", "name", f"bcv{i}p")
                sh("ip", "link", "set", f"bcv{i}", "up")
                sw.ctl("port", "add", f"c{i}", f"kernel:iface=bcv{i}", "--role", "vm", "--vni", vni[i])
                sh("ip", "link", "set", f"bcv{i}p", "netns", f"bc{i}")
                addr(f"bc{i}", f"bcv{i}p", f"10.71.0.{i}/24")
            else:
                sw.ctl("port", "add", f"c{i}", f"kernel:iface=bct{i}", "--role", "vm", "--vni", vni[i])
                sh("ip", "link", "set", f"bct{i}", "netns", f"bc{i}")
                addr(f"bc{i}", f"bct{i}", f"10.71.0.{i}/24")
        # A NIC's link comes up once its vhost-user end has answered.
        ns("bc1", "ping", "-c", "2", "-i", "0.2", "-w", "10", "10.71.0.2")
        return iperf("bc2", "10.71.0.2", "bc1", secs, streams=streams)
    finally:
        sw.stop()
        fresh_ns("bc1", "bc2")


def bridge_c1(secs, streams):
    fresh_ns("bb1", "bb2")
    sh("ip", "link", "del", "bbr", check=False)
    sh("ip", "link", "add", "bbr", "type", "bridge")
    sh("ip", "link", "set", "bbr", "up")
    try:
        for i in (1, 2):
            sh("ip", "link", "add", f"bbv{i}", "type", "veth", "peer", "name", f"bbv{i}p")
            sh("ip", "link", "set", f"bbv{i}", "master", "bbr", "up")
            sh("ip", "link", "set", f"bbv{i}p", "netns", f"bb{i}")
            addr(f"bb{i}", f"bbv{i}p", f"10.72.0.{i}/24")
        ns("bb1", "ping", "-c", "2", "-i", "0.2", "10.72.0.2")
        return iperf("bb2", "10.72.0.2", "bb1", secs, streams=streams)
    finally:
        sh("ip", "link", "del", "bbr", check=False)
        fresh_ns("bb1", "bb2")


def host_b(name, dev, local, remote, vm_ip):
    ns(name, "ip", "link", "add", "vx100", "type", "vxlan", "id", "100", "local", local, "remote", remote,
       "dstport", "4789", "dev", dev)
    addr(name, "vx100", vm_ip, 1450)


def ours_c2(work, secs, reverse):
    fresh_ns("bc1", "bhb")
    sw = Switch(work)
    try:
        sw.ctl("network", "add", "100")
        sw.ctl("port", "add", "c1", "kernel:iface=bct1", "--role", "vm", "--vni", "100")
        sw.ctl("port", "add", "up", "kernel:iface=bcup", "--role", "uplink")
        sw.ctl("vtep", "set", "--ip", "192.168.73.1/24", "--uplink", "up", "--mac", "02:00:00:73:00:01")
        sw.ctl("network", "add-vtep", "100", "192.168.73.2")
        sh("ip", "link", "set", "bct1", "netns", "bc1")
        addr("bc1", "bct1", "10.73.0.1/24", 1450)
        sh("ip", "link", "set", "bcup", "netns", "bhb")
        addr("bhb", "bcup", "192.168.73.2/24")
        host_b("bhb", "bcup", "192.168.73.2", "192.168.73.1", "10.73.0.2/24")
        for _ in range(50):
            if subprocess.run(["ip", "netns", "exec", "bc1", "ping", "-c", "1", "-W", "1", "10.73.0.2"],
                              capture_output=True).returncode == 0:
                break
        return iperf("bhb", "10.73.0.2", "bc1", secs, reverse)
    finally:
        sw.stop()
        fresh_ns("bc1", "bhb")


def kernel_c2(secs, reverse):
    """Flannel's path: container veth -> bridge + vxlan on host A -> veth -> vxlan on host B."""
    fresh_ns("bk1", "bka", "bkb")
    try:
        ns("bka", "ip", "link", "add", "ua", "type", "veth", "peer", "name", "ub", "netns", "bkb")
        addr("bka", "ua", "192.168.74.1/24")
        addr("bkb", "ub", "192.168.74.2/24")
        ns("bka", "ip", "link", "add", "vx100", "type", "vxlan", "id", "100", "local", "192.168.74.1",
           "remote", "192.168.74.2", "dstport", "4789", "dev", "ua")
        ns("bka", "ip", "link", "add", "br0", "type", "bridge")
        ns("bka", "ip", "link", "set", "br0", "up")
        ns("bka", "ip", "link", "set", "vx100", "master", "br0", "mtu", "1450", "up")
        ns("bka", "ip", "link", "add", "ca", "type", "veth", "peer", "name", "cv", "netns", "bk1")
        ns("bka", "ip", "link", "set", "ca", "master", "br0", "up")
        addr("bk1", "cv", "10.74.0.1/24", 1450)
        host_b("bkb", "ub", "192.168.74.2", "192.168.74.1", "10.74.0.2/24")
        ns("bk1", "ping", "-c", "2", "-i", "0.2", "10.74.0.2")
        return iperf("bkb", "10.74.0.2", "bk1", secs, reverse)
    finally:
        fresh_ns("bk1", "bka", "bkb")


def run(w, work, secs):
    """(ours, the kernel's) Gbit/s of one run of workload w."""
    if w.startswith("C1"):
        streams = 4 if w == "C1-4" else 1
        return ours_c1(work, secs, w == "C1v", streams), bridge_c1(secs, streams)
    if w.startswith("C3"):
        return ours_c1(work, secs, False, 1, nic=(w == "C3"), gro=not w.endswith("nogro")), bridge_c1(secs, 1)
    return ours_c2(work, secs, w == "C2r"), kernel_c2(secs, w == "C2r")


WHAT = {
    "C1": "container -> container: kernel ports on taps, vs a Linux bridge + veths",
    "C1-4": "C1 with four streams",
    "C1v": "container -> container: kernel ports on veths (AF_PACKET), vs a Linux bridge + veths",
    "C2": "container -> kernel VXLAN host B: kernel ports, vs bridge + kernel vxlan",
    "C2r": "kernel VXLAN host B -> container: the same, reversed",
    "C3": "C1 across a virtio NIC (its TSO and checksums on) between two networks, vs a Linux bridge + veths",
    "C3sw": "C3 with the NIC's TSO withheld: segments cut in software, coalesced again toward container 2",
    "C3sw-nogro": "C3sw with vswitchd --no-gro",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10, help="iperf3 time per run, after a 2 s warm-up")
    ap.add_argument("--workloads", default=" ".join(DEFAULT))
    ap.add_argument("--docs", default="", help="write the table into this page between its tcp-bench markers")
    a = ap.parse_args()
    ws = a.workloads.split()
    res = {w: ([], []) for w in ws}
    with tempfile.TemporaryDirectory() as work:
        for r in range(a.runs):
            for w in ws:
                sys.stderr.write(f"\r\033[Krun {r + 1}/{a.runs} {w}")
                o, k = run(w, work, a.seconds)
                res[w][0].append(o)
                res[w][1].append(k)
    sys.stderr.write("\n")
    rows = ["| workload | what | ours Gbit/s, median (min-max) | kernel Gbit/s | ours / kernel |",
            "|---|---|---|---|---|"]
    for w in ws:
        o, k = res[w]
        mo, mk = statistics.median(o), statistics.median(k)
        rows.append(f"| {w} | {WHAT[w]} | {mo:.2f} ({min(o):.2f}-{max(o):.2f}) | {mk:.2f} ({min(k):.2f}-{max(k):.2f}) | {mo / mk:.2f} |")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commit = sh("git", "-C", ROOT, "rev-parse", "--short", "HEAD").strip()
    text = (f"{stamp}, code {commit}, {a.runs} runs of {a.seconds} s per workload, ours and the kernel's alternating; "
            f"iperf3 (one stream but for C1-4), both ends on CPU 0, the PMD core on CPU 1.\n\n" + "\n".join(rows) + "\n")
    print(text)
    if a.docs:
        page = open(a.docs).read()
        if BEGIN in page and END in page:
            head, rest = page.split(BEGIN, 1)
            page = head + BEGIN + "\n" + text + END + rest.split(END, 1)[1]
        else:
            page += f"\n## TCP through the switch (C1, C2)\n\n{BEGIN}\n{text}{END}\n"
        open(a.docs, "w").write(page)


if __name__ == "__main__":
    main()
