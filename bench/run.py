#!/usr/bin/python3
"""Whole-switch benchmark on the workloads of shared/BENCHMARKS.md, side by side with the
dpdk-testpmd ceiling (W0) and, with --with-ovs, Open vSwitch with DPDK.

One PMD core, hugepages; net_pcap replays from memory into the switch and net_null takes
what leaves (W4: testpmd as the guest on a vhost-user port). Per workload and run: start,
a warm-up, then a window over which it reads the packets that left, the PMD core's busy
cycles, and its latency histogram (rx burst to tx burst). Runs alternate: every workload
once, then again. Prints a table, writes docs/benchmarks.md (between its bench markers)
and a PNG plot. Run through bench/run.sh, which installs and builds what this needs."""
import argparse, contextlib, datetime, glob, json, os, platform, re, signal, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import configs  # noqa: E402
import gen_pcaps  # noqa: E402

BIN = os.path.join(ROOT, "target", "release")
METRICS = "127.0.0.1:19464"
WHAT = {
    "W0": "dpdk-testpmd io, vm.pcap -> null: the ceiling",
    "W0-64k": "dpdk-testpmd io, vm64k.pcap -> null: the generator alone at W5's flows",
    "W1x": "cross-connect: the runtime alone",
    "W1": "VM -> VM through the L2 pipeline",
    "W2-1": "VM -> VXLAN encap, 1 ACL rule, policer",
    "W2": "VM -> VXLAN encap, 1k ACL rules, policer, sFlow 1:1024",
    "W2-10k": "W2 with 10k ACL rules",
    "W3": "VXLAN decap -> VM, 1k egress ACL rules, sFlow",
    "W5": "W2 with 65,536 flows",
    "W4": "testpmd guest (virtio-user) -> vhost-user -> W2 pipeline",
    "W6": "W2 with the security group stateful, 1,024 established sessions",
    "W6-64k": "W6 with 65,536 established sessions",
    "W5-1M": "W2 with 1,000,000 flows (W6-1M's stateless base)",
    "W6-1M": "W6 with 1,000,000 established sessions",
    "W2-real": "W2 with the 1k near-miss security group of the anchors",
    "W2-real-10k": "W2-real with 10k rules",
    "W6-real": "W2-real with the security group stateful, 1,024 established sessions",
    "W7-full": "W2 stateful, every packet a new connection, table full (64k sessions, 256k flows)",
    "W8": "VM -> Service VIP, Maglev over 16 backends behind the remote VTEP, DNAT + encap, 1,024 established sessions",
    "W8-64k": "W8 with 65,536 client flows",
    "W9": "W8 while its backends are removed, re-added and reweighted 10 times a second",
}
DEFAULT = ["W0", "W0-64k", "W1x", "W1", "W2", "W2-10k", "W3", "W5", "W4"]
# OVS-DPDK's figures when it is not run alongside (shared/anchors/RESULTS.md, cycles/packet).
OVS_RESULTS_CPP = {"W1": 150, "W2": 220, "W2-10k": 225, "W3": 395, "W5": 405, "W6": 964, "W6-64k": 1898,
                   "W2-real": 384, "W2-real-10k": 507, "W8": 869, "W8-64k": 2478}
# The OVS workload ours is held against where the anchors have none of the same name:
# with ct(), established packets never reach OVS's rules, so its W6 stands for W6-real.
OVS_PEER = {"W6-real": "W6"}
WARMUP = 3


def progress(msg):
    sys.stderr.write("\r\033[K" + msg)
    sys.stderr.flush()


def ctl(sock, *args):
    return json.loads(subprocess.check_output([BIN + "/vswitchctl", "--socket", sock, "--json", *args]))


def snap(sock):
    s = ctl(sock, "stats")
    core = s["cores"][0]
    return time.time(), sum(p["tx_packets"] for p in s["ports"]), core["busy_cycles"], core["packets"]


def wait_for(path, secs=30):
    t = time.time() + secs
    while time.time() < t:
        if os.path.exists(path):
            return True
        time.sleep(0.1)
    return False


# The stateful workloads' gap to their stateless base, paired: the port's security group
# is switched stateless and back within one run, and each pair of short windows (the
# same traffic, tables and cache, seconds apart) gives one difference. Per workload, the
# pairs (stateful, stateless) of every run.
STATELESS_BASE = {"W6": "W2", "W6-64k": "W5", "W6-1M": "W5-1M", "W6-real": "W2-real"}
PAIRED = {}
PAIR_WINDOW, PAIR_SETTLE = 1.0, 0.3


# The services' gap to W6, paired: per workload, its W6 base.
SERVICE_BASE = {"W8": "W6", "W8-64k": "W6-64k"}


def measure_window(sock):
    """Cycles a packet over PAIR_WINDOW seconds, from PAIR_SETTLE after a change (once
    the PMD has the new tables)."""
    time.sleep(PAIR_SETTLE)
    _, _, c0, p0 = snap(sock)
    time.sleep(PAIR_WINDOW)
    _, _, c1, p1 = snap(sock)
    return (c1 - c0) / max(1, p1 - p0)


def in_turn(window, pairs):
    """`pairs` pairs (window(True), window(False)); which goes first alternates, so a
    drift within a pair cancels over the pairs."""
    seen = []
    for i in range(pairs):
        if i % 2 == 0:
            b = window(False)
            a = window(True)
        else:
            a = window(True)
            b = window(False)
        seen.append((a, b))
    return seen


def paired_gap(sock, w, pairs):
    """W's cycles a packet stateful and stateless, `pairs` times (see `in_turn`).
    Sessions are kept while the port is stateless (its rules unchanged, its policy epoch
    is the same once stateful again)."""
    def window(stateful):
        subprocess.check_call([BIN + "/vswitchctl", "--socket", sock, "acl", "stateful", "vm1",
                               "on" if stateful else "off"], stdout=subprocess.DEVNULL)
        return measure_window(sock)
    pairs_seen = in_turn(window, pairs)
    # The port is left as the workload has it.
    subprocess.check_call([BIN + "/vswitchctl", "--socket", sock, "acl", "stateful", "vm1", "on"],
                          stdout=subprocess.DEVNULL)
    PAIRED.setdefault(w, []).extend(pairs_seen)
    return pairs_seen


# W9: drops by reason over each run's window (what churn cost established connections),
# and the backend changes made.
W9_CHURN = []


def churn(sock, stop, made):
    """W9's churn: 10 backend changes a second, in turn removing one of the 16 backends
    (its connections move; the others must not notice), putting it back, and reweighting
    one."""
    addrs = ["%s:8080" % ip for ip in configs.BACKENDS]
    i = 0
    while not stop.is_set():
        t = time.time()
        k = i % len(addrs)
        if i % 3 == 0:
            backends = [a for j, a in enumerate(addrs) if j != k]
        elif i % 3 == 1:
            backends = list(addrs)
        else:
            backends = [a + ("@3" if j == k else "") for j, a in enumerate(addrs)]
        subprocess.check_call([BIN + "/vswitchctl", "--socket", sock, "service", "set-backends", "w8",
                               *sum([["--backend", b] for b in backends], [])], stdout=subprocess.DEVNULL)
        made[0] += 1
        i += 1
        stop.wait(max(0.0, 0.1 - (time.time() - t)))


def drops(sock):
    """Drops by reason over every port."""
    out = {}
    for p in ctl(sock, "stats")["ports"]:
        for reason, n in p.get("drops", {}).items():
            out[reason] = out.get(reason, 0) + n
    return out


def seed_w8(sock, work, vni=100, name="vm2", vdev="net_pcap1"):
    """W8's replies, one per session, from the backend each client flow got (read from
    the switch's sessions in network `vni`, as the anchor reads OVS's): a VM port
    replaying them, added as `name` on `vdev`."""
    sessions = ctl(sock, "conntrack", "list", "--vni", str(vni), "--limit", "100000")
    path = os.path.join(work, "vip_reply.pcap")
    macs = {ip: configs.backend_mac(i) for i, ip in enumerate(configs.BACKENDS)}
    ip4 = lambda s: tuple(int(x) for x in s.split("."))
    frames = [gen_pcaps.udp(macs[s["dst"]], configs.VM, ip4(s["dst"]), ip4(s["src"]), s["dport"], s["sport"])
              for s in sessions if s["dst"] in macs]
    gen_pcaps.write(path, frames)
    return [name, "%s,rx_pcap=%s" % (vdev, path), "--role", "vm", "--vni", str(vni)]


@contextlib.contextmanager
def switch(work, w, cfg):
    """A vswitchd on desired state `cfg` (with workload w's options), stopped on leaving:
    its API socket."""
    db = os.path.join(work, "db.json")
    # A journal left by the previous workload belongs to its state file, not this one.
    for stale in (db + ".journal", db + ".journal.next"):
        if os.path.exists(stale):
            os.remove(stale)
    json.dump(cfg, open(db, "w"))
    sock = os.path.join(work, "s.sock")
    log = open(os.path.join(work, "vswitchd.log"), "w")
    d = subprocess.Popen([BIN + "/vswitchd", "--socket", sock, "--db", db, "--mbufs", str(configs.MBUFS.get(w, 262144)), "--metrics", METRICS,
                          *configs.VSWITCHD_ARGS.get(w, []), "--",
                          "-l", "0-1", "--no-pci", "--file-prefix", "vsbench"], stdout=log, stderr=log)
    try:
        if not wait_for(sock):
            raise RuntimeError("vswitchd did not start; see " + log.name)
        time.sleep(0.5)
        yield sock
    finally:
        stop(d, signal.SIGTERM, 20)


def stop(p, sig, secs):
    """Signals process `p`, waits up to `secs` for it to exit, and kills it after that."""
    p.send_signal(sig)
    try:
        p.wait(secs)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def established(sock, w, flows):
    """Fails unless `flows` sessions are answered (every one, for the figures to mean
    established traffic)."""
    ct = ctl(sock, "conntrack", "stats")
    if ct["by_state"].get("udp/replied", 0) < flows:
        raise RuntimeError("%s: only %s of %d sessions established" % (w, ct["by_state"], flows))


def measure_ours(w, work, win, pairs=0):
    """(pps, cycles/packet, latency dict or None) of one run of workload w; for a stateful
    workload, also `pairs` paired differences to its stateless base (see `paired_gap`)."""
    with switch(work, w, configs.config(work, w)) as sock:
        guest = None
        try:
            if w == "W4":
                guest = start_guest(work)
            return measure_in(sock, w, work, win, pairs)
        finally:
            if guest:
                stop(guest, signal.SIGINT, 10)
                release_hugepages("vsguest")


def measure_in(sock, w, work, win, pairs):
    """`measure_ours` on the running switch at `sock`."""
    if w.startswith("W8") or w == "W9":
        # Every flow has passed once: each chosen backend answers its client once.
        time.sleep(1)
        reply = seed_w8(sock, work)
    else:
        reply = configs.reply_port(work, w)
    if reply:
        # Every flow has passed once (its session exists): answer each once.
        time.sleep(1)
        subprocess.check_call([BIN + "/vswitchctl", "--socket", sock, "port", "add", *reply])
    time.sleep(WARMUP)
    if w.startswith("W6") or w.startswith("W8") or w == "W9":
        established(sock, w, {"W6-64k": 65536, "W6-1M": 1000000, "W8-64k": 65536}.get(w, 1024))
    if w == "W9":
        import threading
        stop, made, d0 = threading.Event(), [0], drops(sock)
        changer = threading.Thread(target=churn, args=(sock, stop, made))
        changer.start()
    t0, tx0, c0, p0 = snap(sock)
    time.sleep(win)
    t1, tx1, c1, p1 = snap(sock)
    if w == "W9":
        stop.set()
        changer.join()
        d1 = drops(sock)
        lost = {r: n - d0.get(r, 0) for r, n in d1.items() if n != d0.get(r, 0)}
        W9_CHURN.append((made[0], lost))
    if w == "W7-full":
        ct = ctl(sock, "conntrack", "stats")
        print("\n%s: sessions %d of %d, created %d, recycled %d, refused %d" % (
            w, ct["sessions"], ct["capacity"], ct["created"], ct["recycled"], ct["full"]), file=sys.stderr)
    # (Over the window's seconds alone: over the last 10 s, a 5 s window's figure took in
    # the end of the set-up, W6-1M's million answers.)
    lat = ctl(sock, "cores", "--latency-seconds", str(min(max(1, round(win)), 10)))[0].get("latency")
    check_metrics(ctl(sock, "cores")[0].get("latency"))
    if pairs and w in STATELESS_BASE:
        seen = paired_gap(sock, w, pairs)
        progress("%s paired with stateless, cycles/packet: %s\n" % (
            w, ", ".join("%.0f - %.0f = %+.0f" % (on, off, on - off) for on, off in seen)))
    return (tx1 - tx0) / (t1 - t0), (c1 - c0) / max(1, p1 - p0), lat


def measure_w8_beside_w6(w, work, pairs):
    """W8's gap to W6, paired (see `paired_services`): one switch holds both workloads,
    W6's port in network 100 and W8's in network 200, and the two ports take turns,
    each up while the other is down (`port set --admin`). Both traffics' sessions are
    made and answered first, as in their own runs."""
    base = SERVICE_BASE[w]
    with switch(work, w, configs.w8_beside_w6(work, w, base)) as sock:
        time.sleep(1)
        for reply in (configs.reply_port(work, base), seed_w8(sock, work, vni=200, name="vm4", vdev="net_pcap3")):
            subprocess.check_call([BIN + "/vswitchctl", "--socket", sock, "port", "add", *reply])
        time.sleep(WARMUP)
        flows = 65536 if w == "W8-64k" else 1024
        established(sock, w, 2 * flows)

        def window(w8):
            for port, up in (("vm1", not w8), ("vm3", w8)):
                subprocess.check_call([BIN + "/vswitchctl", "--socket", sock, "port", "set", port, "--admin",
                                       "up" if up else "down"], stdout=subprocess.DEVNULL)
            return measure_window(sock)
        seen = in_turn(window, pairs)
    PAIRED.setdefault(w, []).extend(seen)
    progress("%s paired with %s, cycles/packet: %s\n" % (
        w, base, ", ".join("%.0f - %.0f = %+.0f" % (a, b, a - b) for a, b in seen)))


def check_metrics(lat):
    """The Prometheus endpoint serves what `cores` said (the same 10 s window; a second
    tick between the two reads may move it a little)."""
    import urllib.request
    text = urllib.request.urlopen("http://%s/metrics" % METRICS, timeout=5).read().decode()
    m = re.search(r'vswitch_core_latency_seconds\{core="0",lcore="\d+",quantile="0.99"\} (\S+)', text)
    if not lat or not m:
        raise RuntimeError("no latency from cores or metrics")
    prom = float(m.group(1)) * 1e9
    if abs(prom - lat["p99_ns"]) > 0.25 * lat["p99_ns"]:
        print("\nnote: metrics p99 %.0f ns, cores p99 %.0f ns" % (prom, lat["p99_ns"]), file=sys.stderr)


def release_hugepages(prefix):
    """DPDK keeps an exited process's hugepage files, and with them its pages, until the
    next start with the same prefix; testpmd's are given back here (vswitchd unlinks its
    own)."""
    for f in glob.glob("/dev/hugepages/%smap_*" % prefix):
        os.remove(f)


def start_guest(work):
    """W4's guest: testpmd txonly on a virtio-user port of our vhost-user socket, on the
    other core (shared with our control plane)."""
    sock = os.path.join(work, "vm1.sock")
    if not wait_for(sock, 10):
        raise RuntimeError("the vhost-user socket %s did not appear" % sock)
    # One file per memory segment list: vhost-user maps at most 8 regions.
    args = ["dpdk-testpmd", "--lcores", "0@0,1@0", "--no-pci", "--file-prefix", "vsguest", "-m", "512",
            "--single-file-segments",
            "--vdev", "net_virtio_user0,path=%s,queues=1,mac=%s" % (sock, configs.VM),
            "--", "--forward-mode=txonly", "--txpkts=60", "--tx-ip=10.1.0.1,10.1.0.2", "--tx-udp=1024,5001",
            "--eth-peer=0,%s" % configs.DST, "--nb-cores=1", "--auto-start", "--stats-period", "60"]
    return subprocess.Popen(args, stdout=open(os.path.join(work, "guest.log"), "w"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)


def measure_w0(work, win, pcap="vm.pcap"):
    """testpmd io forwarding from the pcap port to the null port: Tx-pps of the null port,
    the median of the per-second figures after the warm-up."""
    args = ["dpdk-testpmd", "-l", "0-1", "--no-pci", "--file-prefix", "vsbench-tpmd",
            "--vdev", "net_pcap0,rx_pcap=%s/%s,infinite_rx=1" % (work, pcap), "--vdev", "net_null0,no-rx=1",
            "--", "--forward-mode=io", "--nb-cores=1", "--stats-period", "1", "--auto-start"]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)
    time.sleep(WARMUP + win + 1)
    p.send_signal(signal.SIGINT)
    try:
        out, _ = p.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    release_hugepages("vsbench-tpmd")
    # Per period: one block per port; port 1 (the null port) transmits what was forwarded.
    tx = [int(x) for x in re.findall(r"NIC statistics for port 1.*?Tx-pps:\s+(\d+)", out, re.S)]
    tx = tx[WARMUP:WARMUP + win] or tx
    if not tx:
        raise RuntimeError("testpmd printed no statistics")
    return statistics.median(tx), None, None


def run_ovs(win, workloads):
    """One run of the shared anchors' OVS-DPDK script: {workload: (pps, cycles/packet)}."""
    script = os.path.join(ROOT, "..", "shared", "anchors", "ovs_dpdk.sh")
    want = sorted({OVS_PEER.get(w, w) for w in workloads} & set(OVS_RESULTS_CPP))
    env = dict(os.environ, WORKLOADS=" ".join(want))
    out = subprocess.run(["bash", script, str(win), "1"], env=env, capture_output=True, text=True, timeout=1800)
    res = {}
    for line in out.stdout.splitlines():
        m = re.match(r"(\S+)\s+(\d+)(?:\(([\d.]+)\))?\s", line)
        if m:
            res[m.group(1)] = (float(m.group(2)), float(m.group(3)) if m.group(3) else None)
    if not res:
        raise RuntimeError("the OVS script printed no figures:\n" + out.stdout[-2000:] + out.stderr[-2000:])
    return res


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    dpdk = subprocess.run(["pkg-config", "--modversion", "libdpdk"], capture_output=True, text=True).stdout.strip()
    mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "0")
    return "%s, %d cores, %d GiB, kernel %s, DPDK %s" % (cpu, os.cpu_count(), int(mem) // 2**20 + 1,
                                                        platform.release(), dpdk)


def fmt_lat(lats):
    lats = [l for l in lats if l]
    if not lats:
        return "-"
    med = lambda k: statistics.median(l[k] for l in lats) / 1e3
    return "%.2f / %.2f / %.2f" % (med("p50_ns"), med("p99_ns"), med("p999_ns"))


def summarize(workloads, ours, ovs):
    """Rows of the table and the target verdicts, from the runs."""
    med = {w: statistics.median(r[0] for r in ours[w]) for w in workloads if ours.get(w)}
    w0 = med.get("W0")
    rows = []
    for w in workloads:
        runs = ours.get(w) or []
        if not runs:
            continue
        pps = [r[0] for r in runs]
        cpp = [r[1] for r in runs if r[1] is not None]
        o = [r[0] for r in ovs.get(OVS_PEER.get(w, w), [])]
        rows.append({
            "w": w, "what": WHAT[w], "mpps": med[w] / 1e6, "min": min(pps) / 1e6, "max": max(pps) / 1e6,
            "cpp": statistics.median(cpp) if cpp else None, "lat": fmt_lat(r[2] for r in runs),
            "p99": statistics.median(r[2]["p99_ns"] for r in runs if r[2]) if any(r[2] for r in runs) else None,
            "x_w0": med[w] / w0 if w0 else None,
            "ovs": statistics.median(o) / 1e6 if o else None,
            "vs_ovs": med[w] / statistics.median(o) if o else None,
        })
    by = {r["w"]: r for r in rows}
    targets = []

    def target(name, ok, detail):
        targets.append((name, "met" if ok else "missed", detail))

    def gap(w, base):
        """W's cycles a packet over base's: the median of each round's difference (the two
        ran minutes apart in a round, so the machine's drift between rounds cancels), and
        the rounds' differences. None unless both have a figure in some round."""
        pairs = [(a[1], b[1]) for a, b in zip(ours.get(w) or [], ours.get(base) or [])
                 if a[1] is not None and b[1] is not None]
        if not pairs:
            return None
        diffs = [a - b for a, b in pairs]
        return statistics.median(diffs), "%+.0f (rounds: %s)" % (
            statistics.median(diffs), ", ".join("%+.0f" % d for d in diffs))

    if "W1x" in by and by["W1x"]["x_w0"]:
        target("W1x >= 0.9x W0", by["W1x"]["x_w0"] >= 0.9, "%.2fx" % by["W1x"]["x_w0"])
    for w in ("W1", "W2", "W3"):
        r = by.get(w)
        if not r:
            continue
        if r["vs_ovs"]:
            target("%s >= 2x OVS-DPDK (pps, same run)" % w, r["vs_ovs"] >= 2, "%.2fx" % r["vs_ovs"])
        elif r["cpp"]:
            ratio = OVS_RESULTS_CPP[w] / r["cpp"]
            target("%s >= 2x OVS-DPDK (cycles/packet vs RESULTS.md; OVS not run)" % w, ratio >= 2, "%.2fx" % ratio)
    def gap_target(w, base, limit):
        """W's gap to base judged paired where it was (the same switch and tables, seconds
        apart), by rounds otherwise; the rounds' figure (runs minutes apart) is kept beside
        a paired one."""
        g = gap(w, base)
        seen = PAIRED.get(w, [])
        diffs = sorted(a - b for a, b in seen)
        if diffs:
            q = statistics.quantiles(diffs, n=4) if len(diffs) > 1 else [diffs[0]] * 3
            target("%s <= %s + %d cycles/packet (paired)" % (w, base, limit), q[1] <= limit,
                   "%+.0f (%d pairs, quartiles %+.0f / %+.0f; windows %.0f vs %.0f)" % (
                       q[1], len(diffs), q[0], q[2], statistics.median(a for a, _ in seen),
                       statistics.median(b for _, b in seen)))
            if g:
                targets.append(("not a target: %s - %s by rounds" % (w, base), "info", g[1]))
        elif g:
            target("%s <= %s + %d cycles/packet" % (w, base, limit), g[0] <= limit, g[1])

    for w, base, limit in (("W6", "W2", 30), ("W6-64k", "W5", 30), ("W6-1M", "W5-1M", 80), ("W6-real", "W2-real", 30)):
        gap_target(w, base, limit)
        r = by.get(w)
        if r and r["vs_ovs"]:
            target("%s >= 3x OVS-DPDK with ct() (pps, same run)" % w, r["vs_ovs"] >= 3, "%.2fx" % r["vs_ovs"])
        elif r and r["cpp"] and OVS_PEER.get(w, w) in OVS_RESULTS_CPP:
            ratio = OVS_RESULTS_CPP[OVS_PEER.get(w, w)] / r["cpp"]
            target("%s >= 3x OVS-DPDK with ct() (cycles/packet vs RESULTS.md; OVS not run)" % w, ratio >= 3,
                   "%.2fx" % ratio)
    for w in ("W2-real", "W2-real-10k"):
        r = by.get(w)
        if r and r["vs_ovs"]:
            target("%s >= 3x OVS-DPDK (pps, same run)" % w, r["vs_ovs"] >= 3, "%.2fx" % r["vs_ovs"])
        elif r and r["cpp"]:
            ratio = OVS_RESULTS_CPP[w] / r["cpp"]
            target("%s >= 3x OVS-DPDK (cycles/packet vs RESULTS.md; OVS not run)" % w, ratio >= 3, "%.2fx" % ratio)
    for w, base in SERVICE_BASE.items():
        r = by.get(w)
        gap_target(w, base, 40)
        if r and r["vs_ovs"]:
            target("%s >= 3x OVS-DPDK select group + ct(nat) (pps, same run)" % w, r["vs_ovs"] >= 3, "%.2fx" % r["vs_ovs"])
        elif r and r["cpp"]:
            ratio = OVS_RESULTS_CPP[w] / r["cpp"]
            target("%s >= 3x OVS-DPDK (cycles/packet vs RESULTS.md; OVS not run)" % w, ratio >= 3, "%.2fx" % ratio)
    if W9_CHURN:
        lost = sum(sum(d.values()) for _, d in W9_CHURN)
        reasons = {}
        for _, d in W9_CHURN:
            for r, n in d.items():
                reasons[r] = reasons.get(r, 0) + n
        made = sum(m for m, _ in W9_CHURN)
        detail = "%d lost over %d backend changes%s" % (lost, made, " (%s)" % reasons if reasons else "")
        target("W9: no packet lost while backends change 10 times a second", lost == 0, detail)
        if "W8" in by and "W9" in by:
            targets.append(("not a target: W9 / W8 throughput, same run", "info",
                            "%.2fx" % (by["W9"]["mpps"] / by["W8"]["mpps"])))
    if by.get("W7-full") and by["W7-full"]["cpp"]:
        target("W7-full <= 1,300 cycles per new session", by["W7-full"]["cpp"] <= 1300, "%.0f" % by["W7-full"]["cpp"])
    for w in ("W2-10k", "W5"):
        if w in by and "W2" in by:
            ratio = by[w]["mpps"] / by["W2"]["mpps"]
            target("%s >= 0.85x W2" % w, ratio >= 0.85, "%.2fx" % ratio)
    if "W0-64k" in by and "W0" in by:
        # Not a target: what replaying 65,536 stored frames costs the generator itself,
        # with no switch in the way (W5's pcap is 64 times W2's).
        targets.append(("not a target: testpmd alone on W5's pcap, W0-64k / W0", "info",
                        "%.2fx" % (by["W0-64k"]["mpps"] / by["W0"]["mpps"])))
    p99 = [(r["w"], r["p99"]) for r in rows if r["p99"]]
    if p99:
        worst = max(p99, key=lambda x: x[1])
        target("p99 inside the switch < 10 us", worst[1] < 10000, "worst %.2f us (%s)" % (worst[1] / 1e3, worst[0]))
    return rows, targets


def table(rows, with_ovs):
    head = ["workload", "what", "Mpps median (min-max)", "cycles/pkt", "latency p50 / p99 / p99.9 us", "x W0"]
    if with_ovs:
        head += ["OVS Mpps", "ours/OVS"]
    out = [head]
    for r in rows:
        line = [r["w"], r["what"], "%.2f (%.2f-%.2f)" % (r["mpps"], r["min"], r["max"]),
                "%.0f" % r["cpp"] if r["cpp"] else "-", r["lat"], "%.2f" % r["x_w0"] if r["x_w0"] else "-"]
        if with_ovs:
            line += ["%.2f" % r["ovs"] if r["ovs"] else "-", "%.2f" % r["vs_ovs"] if r["vs_ovs"] else "-"]
        out.append(line)
    return out


def markdown(t):
    lines = ["| " + " | ".join(t[0]) + " |", "|" + "---|" * len(t[0])]
    lines += ["| " + " | ".join(r) + " |" for r in t[1:]]
    return "\n".join(lines)


def plain(t):
    widths = [max(len(r[i]) for r in t) for i in range(len(t[0]))]
    return "\n".join("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in t)


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ws = [r for r in rows if not r["w"].startswith("W0")]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    xs = range(len(ws))
    has_ovs = any(r["ovs"] for r in ws)
    width = 0.4 if has_ovs else 0.6
    ax.bar([x - (width / 2 if has_ovs else 0) for x in xs], [r["mpps"] for r in ws], width, label="vswitch",
           yerr=[[r["mpps"] - r["min"] for r in ws], [r["max"] - r["mpps"] for r in ws]], capsize=3)
    if has_ovs:
        ax.bar([x + width / 2 for x in xs], [r["ovs"] or 0 for r in ws], width, label="OVS-DPDK 3.1")
    w0 = next((r["mpps"] for r in rows if r["w"] == "W0"), None)
    if w0:
        ax.axhline(w0, color="grey", linestyle="--", label="W0 ceiling (testpmd io) %.1f Mpps" % w0)
    ax.set_xticks(list(xs))
    ax.set_xticklabels([r["w"] for r in ws])
    ax.set_ylabel("Mpps, one PMD core (median, min-max)")
    ax.set_title("Whole-switch throughput, 64-byte frames")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_docs(path, png, text, args, rows, targets, cmd):
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    old = open(path).read() if os.path.exists(path) else "# Benchmarks\n\n%s\n%s\n" % (begin, end)
    if begin not in old:
        old = old.replace("# Benchmarks\n", "# Benchmarks\n\n%s\n%s\n" % (begin, end), 1)
    verdicts = "\n".join("- %s: **%s** (%s)" % t for t in targets)
    body = """%s
## Whole switch (`bench/run.sh`)

Generated by `%s` on %s.
Machine: %s. One PMD core (lcore 1), control plane on lcore 0, 2 MiB hugepages,
%d s windows after a %d s warm-up, %d runs per workload, alternating. Latency is the time
inside the switch, from the rx burst that brought a packet to the tx burst that sent it
(the PMD core's HDR histogram over the last 10 s; the median over runs of each quantile).
W0 is `dpdk-testpmd --forward-mode=io` on the same ports.%s

%s

![Mpps per workload](%s)

Targets (issue 7):
%s
%s""" % (begin, cmd, datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), machine(),
         args.window, WARMUP, args.runs,
         " OVS-DPDK ran between our runs (`../shared/anchors/ovs_dpdk.sh WINDOW 1`)." if args.with_ovs else
         " OVS-DPDK was not run (`--with-ovs` runs it); targets against it use `shared/anchors/RESULTS.md`.",
         text, os.path.basename(png), verdicts, end)
    pre, rest = old.split(begin, 1)
    post = rest.split(end, 1)[1] if end in rest else rest
    open(path, "w").write(pre + body + post)


def measure_other(w, work, window, other, ab, at):
    """One run of workload `w` on the A/B's other build (`other`: `--ab`), noted in `ab`."""
    global BIN
    BIN, ours_bin = other, BIN
    try:
        r = measure_ours(w, work, window)
    finally:
        BIN = ours_bin
    ab.setdefault(w, []).append(r)
    progress("[%d/%d] run %d/%d %s on %s %.2f Mpps%s\n" % (at + (w, other, r[0] / 1e6,
                                                              " %.0f cycles/pkt" % r[1] if r[1] else "")))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--window", type=int, default=10, help="seconds measured per run (default 10)")
    ap.add_argument("--runs", type=int, default=3, help="runs per workload (default 3)")
    ap.add_argument("--workloads", default=" ".join(DEFAULT), help="default: %(default)s")
    ap.add_argument("--with-ovs", action="store_true", help="also run ../shared/anchors/ovs_dpdk.sh, between our runs")
    ap.add_argument("--docs", default=os.path.join(ROOT, "docs", "benchmarks.md"), help="the page to write ('' for none)")
    ap.add_argument("--pairs", type=int, default=6, help="per run of a stateful workload (W6...), pairs of "
                    "1 s windows with its port stateless and stateful, for the gap to its stateless base; "
                    "after each run of W8 or W8-64k, pairs of windows of it and its W6 base in one switch, "
                    "their ports taking turns (default 6; 0: none)")
    ap.add_argument("--ab", metavar="DIR", help="also run each workload on the vswitchd/vswitchctl in DIR, right after "
                    "ours (right before, every second run): an A/B of two builds in the same minutes; "
                    "reported apart, not in the docs")
    args = ap.parse_args()
    workloads = args.workloads.split()
    for w in workloads:
        if w not in WHAT:
            ap.error("unknown workload %s; known: %s" % (w, " ".join(WHAT)))
    if args.with_ovs and not os.path.exists(os.path.join(ROOT, "..", "shared", "anchors", "ovs_dpdk.sh")):
        print("--with-ovs: ../shared/anchors/ovs_dpdk.sh is not there; running without OVS", file=sys.stderr)
        args.with_ovs = False
    work = tempfile.mkdtemp(prefix="vswitch-bench.")
    subprocess.check_call(["/usr/bin/python3", os.path.join(HERE, "gen_pcaps.py"), work])
    ours, ovs, ab = {w: [] for w in workloads}, {}, {}
    steps = args.runs * (len(workloads) + (1 if args.with_ovs else 0))
    step = 0
    for run in range(1, args.runs + 1):
        for w in workloads:
            step += 1
            progress("[%d/%d] run %d/%d %s ..." % (step, steps, run, args.runs, w))
            # (An A/B measures the other build first in every second run: whichever
            # build runs second in a pair may gain from it, and then both do equally.)
            other_first = bool(args.ab) and not w.startswith("W0") and run % 2 == 0
            if other_first:
                measure_other(w, work, args.window, args.ab, ab, (step, steps, run, args.runs))
            if w == "W0":
                r = measure_w0(work, args.window)
            elif w == "W0-64k":
                r = measure_w0(work, args.window, "vm64k.pcap")
            else:
                r = measure_ours(w, work, args.window, args.pairs)
                if args.pairs and w in SERVICE_BASE:
                    measure_w8_beside_w6(w, work, args.pairs)
            ours[w].append(r)
            lat = " p99 %.2f us" % (r[2]["p99_ns"] / 1e3) if r[2] else ""
            progress("[%d/%d] run %d/%d %s %.2f Mpps%s%s\n" % (step, steps, run, args.runs, w, r[0] / 1e6,
                                                            " %.0f cycles/pkt" % r[1] if r[1] else "", lat))
            if args.ab and not w.startswith("W0") and not other_first:
                measure_other(w, work, args.window, args.ab, ab, (step, steps, run, args.runs))
        if args.with_ovs:
            step += 1
            progress("[%d/%d] run %d/%d OVS-DPDK (all its workloads) ..." % (step, steps, run, args.runs))
            got = run_ovs(args.window, workloads)
            for w, r in got.items():
                ovs.setdefault(w, []).append(r)
            figures = ", ".join("%s %.2f Mpps%s" % (w, r[0] / 1e6, " (%.0f cycles/pkt)" % r[1] if r[1] else "")
                                for w, r in got.items())
            progress("[%d/%d] run %d/%d OVS-DPDK: %s\n" % (step, steps, run, args.runs, figures))
    rows, targets = summarize(workloads, ours, ovs)
    t = table(rows, bool(ovs))
    print()
    print(plain(t))
    print()
    for name, verdict, detail in targets:
        print("%-62s %-7s %s" % (name, verdict, detail))
    if ab:
        print("\nA/B, cycles/packet medians, alternating runs: %s vs %s" % (BIN, args.ab))
        for w, rs in ab.items():
            a = statistics.median(r[1] for r in ours[w] if r[1])
            b = statistics.median(r[1] for r in rs if r[1])
            won = sum(1 for x, y in zip(ours[w], rs) if x[1] and y[1] and x[1] < y[1])
            print("%-10s %6.0f  vs %6.0f  (%+.0f, %+.1f%%)  fewer cycles in %d of %d pairs" %
                  (w, a, b, a - b, 100.0 * (a - b) / b, won, len(rs)))
    if args.docs:
        png = os.path.splitext(args.docs)[0] + ".png"
        plot(rows, png)
        cmd = "bench/run.sh " + " ".join(sys.argv[1:])
        write_docs(args.docs, png, markdown(t), args, rows, targets, cmd.strip())
        print("\nwrote %s and %s" % (args.docs, png))
    subprocess.call(["rm", "-rf", work])


if __name__ == "__main__":
    main()
