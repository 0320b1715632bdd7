#!/usr/bin/python3
"""Whole-switch soak (issue 19): the switch under a steady counted stream, TCP load,
malformed frames on every kind of port and control-plane churn for --minutes, reporting
every --every seconds the mbufs in use and vswitchd's RSS, and at the end what the
steady stream lost.

Topology: VNI 100 (with a gateway) with two containers on kernel ports (c1 a tap, c2 a
veth), a kernel tap uplink to host B (the kernel's VXLAN), and malformed frames (the
parser's fuzz corpus, fuzz/corpus/parse) replayed forever into three ports, each policed
to 20 kpps: a net_pcap "VM" through a stateful security group, a kernel tap written to by
a raw socket in its namespace, and a vhost-user port whose guest (dpdk-testpmd, niced)
forwards them from a pcap. The steady stream is iperf3 UDP c1 -> host B at 20 Mbit/s
(counted by iperf3: lost datagrams), beside iperf3 TCP c2 -> c1. Churn, once a second in
turn: ACL load of 1,000 rules and back to none, static FIB adds and deletes, a net_null
port added and deleted, networks added and deleted, a 1 s capture, c2 made stateful
(picking up its TCP stream mid-way) or its sessions flushed and made stateless again, a
service added, its backends changed, and deleted, a container attached by the CNI plugin
or detached, and the vhost-user guest killed with SIGKILL and started again.
Run through scripts/soak.sh (installs and builds)."""
import argparse, glob, json, os, signal, struct, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")



def report(client):
    """An iperf3 client's JSON: it prints it once its test ends and the server has
    answered; a client still waiting after a minute (its control connection stalled) is
    interrupted, which makes iperf3 print what it has."""
    try:
        return client.communicate(timeout=60)[0]
    except subprocess.TimeoutExpired:
        client.send_signal(signal.SIGINT)
        return client.communicate(timeout=30)[0]

def sh(*a, check=True):
    return subprocess.run(a, check=check, capture_output=True, text=True).stdout


def ns(n, *a, check=True):
    return sh("ip", "netns", "exec", n, *a, check=check)


def malformed_pcap(path):
    """The parser's fuzz corpus as frames, in a pcap net_pcap replays."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for p in sorted(glob.glob(os.path.join(ROOT, "fuzz", "corpus", "parse", "*"))):
            b = open(p, "rb").read()[:1514] or b"\0"
            f.write(struct.pack("<IIII", 0, 0, len(b), len(b)) + b)


JUNK_SENDER = r"""
import socket, struct, sys, time
frames = []
with open(sys.argv[1], "rb") as f:
    f.read(24)
    while True:
        h = f.read(16)
        if len(h) < 16:
            break
        n = struct.unpack("<IIII", h)[2]
        frames.append(f.read(n))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[2], 0))
while True:
    for i, fr in enumerate(frames):
        try:
            s.send(fr)
        except OSError:
            pass  # shorter than an Ethernet header: the kernel will not send it
        if i % 20 == 0:
            time.sleep(0.002)
"""


def guest(work, sock, pcap):
    """dpdk-testpmd forwarding the malformed frames from a pcap into the vhost-user port,
    niced so that it takes only what the rest leaves of CPU 0."""
    g = subprocess.Popen(["nice", "-n", "19", "dpdk-testpmd", "--no-huge", "-m", "256", "--no-pci",
                          "--file-prefix", "vssoakg", "--lcores", "0@0,1@0",
                          "--vdev", f"net_pcap0,rx_pcap={pcap},infinite_rx=1",
                          "--vdev", f"net_virtio_user1,path={sock}",
                          "--", "-i", "--forward-mode=io", "--total-num-mbufs=8192"],
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    g.stdin.write(b"start\n")
    g.stdin.flush()
    return g


def cni(command, container, conf, netns):
    env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID=container, CNI_NETNS=netns,
               CNI_IFNAME="eth0", CNI_PATH="/usr/lib/cni:/opt/cni/bin")
    r = subprocess.run([BIN + "/vswitch-cni"], input=json.dumps(conf), env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise subprocess.CalledProcessError(r.returncode, "vswitch-cni " + command, r.stdout, r.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--every", type=int, default=30, help="seconds between report lines")
    a = ap.parse_args()
    secs = int(a.minutes * 60)
    work = tempfile.mkdtemp(prefix="vswitch-soak.")
    sock = os.path.join(work, "s.sock")
    ctl = lambda *x, check=True: sh(BIN + "/vswitchctl", "--socket", sock, *x, check=check)
    for n in ("sk1", "sk2", "skb", "skj"):
        sh("ip", "netns", "del", n, check=False)
        sh("ip", "netns", "add", n)
        ns(n, "ip", "link", "set", "lo", "up")
    log = open(os.path.join(work, "vswitchd.log"), "w")
    d = subprocess.Popen([BIN + "/vswitchd", "--socket", sock, "--db", os.path.join(work, "db.json"), "--",
                          "-l", "0-1", "--no-pci", "--file-prefix", "vssoak"], stdout=log, stderr=log)
    procs = []
    try:
        for _ in range(300):
            if os.path.exists(sock):
                break
            time.sleep(0.1)
        time.sleep(0.3)
        ctl("network", "add", "100", "--gateway", "10.90.0.254/24")
        ctl("port", "add", "c1", "kernel:iface=skt1", "--role", "vm", "--vni", "100")
        sh("ip", "link", "del", "skv2", check=False)
        sh("ip", "link", "add", "skv2", "type", "veth", "peer", "name", "skv2p")
        sh("ip", "link", "set", "skv2", "up")
        ctl("port", "add", "c2", "kernel:iface=skv2", "--role", "vm", "--vni", "100")
        ctl("port", "add", "up", "kernel:iface=skup", "--role", "uplink")
        ctl("vtep", "set", "--ip", "192.168.90.1/24", "--uplink", "up", "--mac", "02:00:00:90:00:01")
        ctl("network", "add-vtep", "100", "192.168.90.2")
        pcap = os.path.join(work, "malformed.pcap")
        malformed_pcap(pcap)
        ctl("port", "add", "junk", f"net_pcap0,rx_pcap={pcap},infinite_rx=1", "--role", "vm", "--vni", "100")
        ctl("qos", "set", "junk", "--ingress-rate", "20kpps", "--ingress-burst", "64pkt")
        # The malformed frames meet connection tracking too.
        ctl("acl", "stateful", "junk", "on")
        # Malformed frames from a kernel port and from a vhost-user guest.
        ctl("port", "add", "junkk", "kernel:iface=skjt", "--role", "vm", "--vni", "100")
        ctl("qos", "set", "junkk", "--ingress-rate", "20kpps", "--ingress-burst", "64pkt")
        sh("ip", "link", "set", "skjt", "netns", "skj")
        ns("skj", "ip", "link", "set", "skjt", "up")
        sender = subprocess.Popen(["ip", "netns", "exec", "skj", "/usr/bin/python3", "-c", JUNK_SENDER, pcap, "skjt"])
        vsock = os.path.join(work, "vm.sock")
        ctl("port", "add", "junkv", f"net_vhost0,iface={vsock}", "--role", "vm", "--vni", "100")
        ctl("qos", "set", "junkv", "--ingress-rate", "20kpps", "--ingress-burst", "64pkt")
        vm = guest(work, vsock, pcap)
        guests = 1
        conf = {"cniVersion": "1.0.0", "name": "soak", "type": "vswitch", "vni": 100, "socket": sock,
                "ipam": {"type": "vswitch", "subnet": "10.90.0.128/26", "hold": 0}}
        attached = False
        ctl("sflow", "set", "--collector", "127.0.0.1:6343", "--sampling", "1024", check=False)
        for dev, n, ip in (("skt1", "sk1", "10.90.0.1/24"), ("skv2p", "sk2", "10.90.0.2/24")):
            sh("ip", "link", "set", dev, "netns", n)
            ns(n, "ip", "addr", "add", ip, "dev", dev)
            ns(n, "ip", "link", "set", dev, "mtu", "1450", "up")
        sh("ip", "link", "set", "skup", "netns", "skb")
        ns("skb", "ip", "addr", "add", "192.168.90.2/24", "dev", "skup")
        ns("skb", "ip", "link", "set", "skup", "up")
        ns("skb", "ip", "link", "add", "vx100", "type", "vxlan", "id", "100", "local", "192.168.90.2",
           "remote", "192.168.90.1", "dstport", "4789", "dev", "skup")
        ns("skb", "ip", "addr", "add", "10.90.0.9/24", "dev", "vx100")
        ns("skb", "ip", "link", "set", "vx100", "mtu", "1450", "up")
        for _ in range(50):
            if subprocess.run(["ip", "netns", "exec", "sk1", "ping", "-c", "1", "-W", "1", "10.90.0.9"],
                              capture_output=True).returncode == 0:
                break
        # A client prints its JSON once, at the end; a server prints a line a second and
        # goes to a file: into a pipe nobody reads it would block after some 18 minutes
        # and stop reading its socket (the stream stalls, and the client's end report
        # lacks the server's count).
        spawn = lambda n, *x, out=subprocess.PIPE: procs.append(
            subprocess.Popen(["ip", "netns", "exec", n, *x], stdout=out, stderr=subprocess.DEVNULL))
        for n, ip, port in (("skb", "10.90.0.9", "5401"), ("sk1", "10.90.0.1", "5402")):
            spawn(n, "iperf3", "-s", "-1", "-B", ip, "-p", port, out=open(os.path.join(work, f"iperf3-server-{port}.txt"), "w"))
        time.sleep(0.5)
        spawn("sk1", "iperf3", "-c", "10.90.0.9", "-p", "5401", "-u", "-b", "20M", "-l", "1200", "-t", str(secs), "-J")
        spawn("sk2", "iperf3", "-c", "10.90.0.1", "-p", "5402", "-t", str(secs), "-J")
        udp_client, tcp_client = procs[2], procs[3]
        rules = os.path.join(work, "rules")
        with open(rules, "w") as f:
            for i in range(1000):
                f.write(f"--priority {10 + i} --port c2 --proto udp --dst 10.{i // 250}.{i % 250}.0/24 --dport {1000 + i} --action deny\n")
        empty = os.path.join(work, "empty")
        open(empty, "w").close()
        start, tick, lines = time.time(), 0, []
        print(f"{'t':>6} {'mbufs in use':>13} {'RSS MiB':>8}  churn errors", flush=True)
        errors = 0
        while time.time() - start < secs:
            step = tick % 9
            try:
                if step == 0:
                    ctl("acl", "load", rules if tick % 12 == 0 else empty)
                elif step == 1:
                    for i in range(50):
                        ctl("fib", "add", "100", f"02:00:00:55:{i // 256:02x}:{i % 256:02x}", "--port", "c1")
                    for i in range(50):
                        ctl("fib", "del", "100", f"02:00:00:55:{i // 256:02x}:{i % 256:02x}")
                elif step == 2:
                    ctl("port", "add", "hot", "net_null0")
                    ctl("port", "del", "hot")
                elif step == 3:
                    for v in range(200, 210):
                        ctl("network", "add", str(v))
                    for v in range(200, 210):
                        ctl("network", "del", str(v))
                elif step == 4:
                    ctl("capture", "c1", "--count", "100", "-w", os.path.join(work, "c.pcap"), "--timeout", "1", check=False)
                elif step == 5 and (tick // 9) % 2 == 0:
                    # c2's TCP stream goes stateful and back: picked up mid-stream, flushed.
                    ctl("acl", "stateful", "c2", "on", "--pickup")
                elif step == 5:
                    ctl("conntrack", "flush", "--port", "c2")
                    ctl("acl", "stateful", "c2", "off")
                elif step == 6:
                    # A service added, its backends changed, deleted, in turn.
                    k = (tick // 9) % 3
                    if k == 0:
                        ctl("service", "add", "web", "--vni", "100", "--vip", "10.96.0.10:80", "--proto", "tcp",
                            "--backend", "10.90.0.1:5402", "--backend", "10.90.0.2:5402")
                    elif k == 1:
                        ctl("service", "set-backends", "web", "--backend", "10.90.0.1:5402@3", "--backend", "10.90.0.9:80")
                    else:
                        ctl("service", "del", "web")
                elif step == 7:
                    # A container attached by the CNI plugin, or detached.
                    if not attached:
                        sh("ip", "netns", "add", "skc")
                        attached = True
                        cni("ADD", "soak-ctr", conf, "/var/run/netns/skc")
                    else:
                        attached = False
                        try:
                            cni("DEL", "soak-ctr", conf, "/var/run/netns/skc")
                        finally:
                            sh("ip", "netns", "del", "skc")
                elif step == 8:
                    # The vhost-user guest killed mid-traffic and started again.
                    # (Every thread's priority back first: a niced thread gets too little of
                    # the busy CPU 0 to exit.)
                    for t in os.listdir(f"/proc/{vm.pid}/task"):
                        os.setpriority(os.PRIO_PROCESS, int(t), 0)
                    vm.kill()
                    vm.wait()
                    vm = guest(work, vsock, pcap)
                    guests += 1
            except subprocess.CalledProcessError as e:
                errors += 1
                print(f"churn error (step {step}):", (e.stderr or e.output or str(e)).strip()[:300], flush=True)
            if d.poll() is not None:
                break
            tick += 1
            if tick % a.every == 0:
                s = json.loads(ctl("--json", "stats"))
                rss = int(next(l.split()[1] for l in open(f"/proc/{d.pid}/status") if l.startswith("VmRSS"))) >> 10
                lines.append((int(time.time() - start), s["mempool"]["in_use"], rss))
                print(f"{lines[-1][0]:>6} {lines[-1][1]:>13} {rss:>8}  {errors}", flush=True)
            time.sleep(max(0, start + tick - time.time()))
        alive = d.poll() is None
        out = report(udp_client)
        tcp_out = report(tcp_client)
        for name, text in (("udp", out), ("tcp", tcp_out)):
            with open(os.path.join(work, f"iperf3-{name}.json"), "wb") as f:
                f.write(text)
        tcp_json = json.loads(tcp_out)
        tcp = tcp_json["end"].get("sum_received", {"bytes": 0, "bits_per_second": 0})
        if tcp_json.get("error"):
            intervals = tcp_json.get("intervals", [])
            ended = intervals[-1]["sum"]["end"] if intervals else 0
            print(f"TCP stream ended at {ended:.0f} s: {tcp_json['error']}")
        stalled = [iv["sum"]["start"] for iv in tcp_json.get("intervals", []) if iv["sum"]["bytes"] == 0]
        if stalled:
            print(f"TCP carried nothing in {len(stalled)} of its 1 s intervals, the first from {stalled[0]:.0f} s")
        slow = [l.strip() for l in open(log.name, errors="replace") if "took" in l or "slower than" in l]
        print(f"vswitchd logged {len(slow)} slow steps (requests, batches, journal syncs, compactions, CNI plumbing)" + "".join(f"\n  {l[:300]}" for l in slow[:10]))
        udp_json = json.loads(out)
        u = udp_json["end"]["sum"]
        counted = not udp_json.get("error")
        if not counted:
            # Without the server's end report the client counts nothing lost.
            print(f"steady stream NOT COUNTED: {udp_json['error']}")
        junk = json.loads(ctl("--json", "port", "stats", "junk"))[0] if alive else {}
        print(f"\nvswitchd {'ran throughout' if alive else 'DIED: see ' + log.name}")
        print(f"steady stream: {u['packets']} datagrams, {u['lost_packets']} lost ({u['lost_percent']:.4f}%)")
        print(f"TCP beside it: {tcp['bytes'] / 1e9:.1f} GB at {tcp['bits_per_second'] / 1e9:.2f} Gbit/s")
        if junk:
            print(f"malformed frames (pcap port): {junk['rx_packets']} received, dropped by reason {junk['drops']}")
        for p, what in (("junkk", "kernel port"), ("junkv", f"vhost-user port, {guests} guests")):
            j = json.loads(ctl("--json", "port", "stats", p))[0] if alive else {}
            if j:
                print(f"malformed frames ({what}): {j['rx_packets']} received, dropped by reason {j['drops']}")
        if lines:
            m, r = [x[1] for x in lines], [x[2] for x in lines]
            print(f"mbufs in use: {min(m)}-{max(m)}; RSS {r[0]} MiB at {lines[0][0]} s, {r[-1]} MiB at the end")
        print(f"churn: {tick} steps, {errors} refused")
        return 0 if alive and errors == 0 and counted else 1
    finally:
        for p in procs:
            p.kill()
        for p in ("vm", "sender"):
            if p in locals():
                locals()[p].kill()
        d.send_signal(signal.SIGTERM)
        d.wait(timeout=30)
        for n in ("sk1", "sk2", "skb", "skj", "skc"):
            sh("ip", "netns", "del", n, check=False)


if __name__ == "__main__":
    sys.exit(main())
