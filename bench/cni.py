#!/usr/bin/python3
"""Container attach benchmarks (issue 17), each also run with the CNI reference
bridge plugin (containernetworking-plugins' bridge + host-local, a Linux bridge and
veths: what podman and containerd use by default) in the same run, driven the same way:
a runtime's environment and stdin, one network namespace per container.

  K1  sequential ADDs until 200 containers are attached: ADD latency p50/p99/max, then
      100 cycles at 200 attached (one DEL, one ADD): ADD p50/p99 there
  K2  100 ADDs at once (100 processes) on an empty host: time until the last is done;
      then 100 DELs at once
  K3  50 ADD+DEL per second for SECS (default 60) with 20 attached: ops late, and
      vswitchd's RSS, open fds and ports, host veths and namespaces over time

Prints a table and, with --docs, writes it into docs/benchmarks.md between its markers.
Needs root, a built tree (cargo build --release --workspace) and containernetworking-plugins."""
import common
from common import pct, write_block
import argparse, concurrent.futures as cf, datetime, json, os, subprocess, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BIN = os.path.join(ROOT, "target", "release")
NS = "vscb"


def sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True).stdout


class Plugin:
    """One CNI plugin binary and its network config."""

    def __init__(self, name, binary, conf, cni_path):
        self.name, self.binary, self.conf, self.cni_path = name, binary, json.dumps(conf).encode(), cni_path

    def call(self, cmd, cid, netns, pod=None):
        env = dict(os.environ, CNI_COMMAND=cmd, CNI_CONTAINERID=cid, CNI_NETNS=f"/var/run/netns/{netns}",
                   CNI_IFNAME="eth0", CNI_ARGS=f"IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME={pod or cid}",
                   CNI_PATH=self.cni_path)
        t = time.perf_counter()
        r = subprocess.run([self.binary], input=self.conf, env=env, capture_output=True)
        ms = (time.perf_counter() - t) * 1000
        if r.returncode != 0:
            raise RuntimeError(f"{self.name} {cmd} {cid}: {r.stdout.decode()} {r.stderr.decode()}")
        return ms


class Vswitchd(common.Vswitchd):
    def __init__(self, work):
        super().__init__(work, "vscb")
        self.ctl("network", "add", "100", "--gateway", "10.88.0.1/16")

    def plugin(self):
        conf = {"cniVersion": "1.0.0", "name": "bench", "type": "vswitch", "vni": 100, "socket": self.sock}
        return Plugin("vswitch", BIN + "/vswitch-cni", conf, "/usr/lib/cni")

    def sample(self):
        status = open(f"/proc/{self.p.pid}/status").read()
        rss = int([l for l in status.splitlines() if l.startswith("VmRSS")][0].split()[1]) // 1024
        fds = len(os.listdir(f"/proc/{self.p.pid}/fd"))
        ports = len(json.loads(self.ctl("--json", "port", "list")))
        return {"rss_mib": rss, "fds": fds, "ports": ports}


class Bridge:
    """The reference: bridge + host-local, state in a temporary directory."""

    def __init__(self, work):
        self.data = tempfile.mkdtemp(dir=work)
        sh("ip", "link", "del", "vscbr0", check=False)

    def plugin(self):
        conf = {"cniVersion": "1.0.0", "name": "bench", "type": "bridge", "bridge": "vscbr0", "isGateway": True,
                "ipam": {"type": "host-local", "subnet": "10.89.0.0/16", "dataDir": self.data}}
        return Plugin("bridge", "/usr/lib/cni/bridge", conf, "/usr/lib/cni")

    def sample(self):
        return {"rss_mib": 0, "fds": 0, "ports": host_links("vscbr0") and len(os.listdir("/sys/class/net/vscbr0/brif"))}

    def stop(self):
        sh("ip", "link", "del", "vscbr0", check=False)


def make_ns(n):
    have = set(l.split()[0] for l in sh("ip", "netns", "list").splitlines() if l.strip())
    for i in range(n):
        if f"{NS}{i}" not in have:
            sh("ip", "netns", "add", f"{NS}{i}")


def del_ns(n):
    for i in range(n):
        sh("ip", "netns", "del", f"{NS}{i}", check=False)


def host_links(prefix):
    return sum(1 for l in sh("ip", "-o", "link", "show").splitlines() if l.split(": ")[1].startswith(prefix))


def k1(plugin):
    adds = [plugin.call("ADD", f"k1-{i}", f"{NS}{i}") for i in range(200)]
    at200 = []
    for j in range(100):
        victim = j  # the oldest goes, a new one comes into its namespace
        plugin.call("DEL", f"k1-{victim}" if j < 200 else "", f"{NS}{victim}")
        # The namespace's eth0 may still be going; the new one uses a spare namespace.
        at200.append(plugin.call("ADD", f"k1b-{j}", f"{NS}{200 + j}"))
    for i in range(100, 200):
        plugin.call("DEL", f"k1-{i}", f"{NS}{i}")
    for j in range(100):
        plugin.call("DEL", f"k1b-{j}", f"{NS}{200 + j}")
    return {"add_p50": pct(adds, 50), "add_p99": pct(adds, 99), "add_max": max(adds),
            "at200_p50": pct(at200, 50), "at200_p99": pct(at200, 99)}


def k2(plugin, n=100):
    with cf.ThreadPoolExecutor(max_workers=n) as ex:
        t = time.perf_counter()
        list(ex.map(lambda i: plugin.call("ADD", f"k2-{i}", f"{NS}{i}"), range(n)))
        add_s = time.perf_counter() - t
        t = time.perf_counter()
        list(ex.map(lambda i: plugin.call("DEL", f"k2-{i}", f"{NS}{i}"), range(n)))
        del_s = time.perf_counter() - t
    return {"adds_s": add_s, "dels_s": del_s}


def k3(plugin, sw, secs, rate=50, base=20, pool=300, reuse=0):
    """Containers come and go at `rate` a second (each ADDed, then DELed), over `base`
    that stay; started on schedule by a pool of workers, as a busy node's runtime would."""
    before = sw.sample()
    for i in range(base):
        plugin.call("ADD", f"k3-base-{i}", f"{NS}{i}")
    lat, delays, samples = [], [], []

    def pair(k, due, start):
        delays.append(time.perf_counter() - start - due)
        ns = f"{NS}{base + k % (pool - base)}"
        # A new workload each time, or (reuse) one of `reuse` workloads coming back.
        cid = f"k3-{k % reuse}-{k}" if reuse else f"k3-{k}"
        lat.append(plugin.call("ADD", cid, ns, pod=f"k3-{k % reuse}" if reuse else None))
        lat.append(plugin.call("DEL", cid, ns))

    start = time.perf_counter()
    last_sample, k = -10.0, 0
    with cf.ThreadPoolExecutor(max_workers=16) as ex:
        futures = []
        while True:
            now = time.perf_counter() - start
            if now >= secs:
                break
            due = k / rate
            if now < due:
                time.sleep(due - now)
            futures.append(ex.submit(pair, k, due, start))
            k += 1
            if now - last_sample >= 10:
                s = sw.sample()
                s.update(t=round(now), veths=host_links("vsc") or host_links("veth"))
                samples.append(s)
                last_sample = now
        for f in futures:
            f.result()
    took = time.perf_counter() - start
    for i in range(base):
        plugin.call("DEL", f"k3-base-{i}", f"{NS}{i}")
    return {"pairs": k, "per_s": k / took, "start_p99_ms": pct(delays, 99) * 1000, "p99": pct(lat, 99),
            "before": before, "samples": samples}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--secs", type=int, default=60, help="length of K3 (default 60)")
    ap.add_argument("--docs", default="docs/benchmarks.md", help="file to write the table into ('' for none)")
    ap.add_argument("--k3-reuse", type=int, default=0, metavar="N",
                    help="only K3 on vswitch-cni, its containers N workloads that come back (their leases are "
                         "reused): what memory does without new reservations")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="vswitch-cni-bench-")
    make_ns(300)
    if args.k3_reuse:
        sw = Vswitchd(work)
        try:
            r = k3(sw.plugin(), sw, args.secs, reuse=args.k3_reuse)
            r["end"] = sw.sample()
            r["leases"] = len(json.loads(sw.ctl("--json", "ipam", "list")))
        finally:
            sw.stop()
            del_ns(300)
        print(json.dumps(r))
        return
    out = {}
    try:
        for name, mk in (("vswitch", lambda: Vswitchd(work)), ("bridge", lambda: Bridge(work))):
            for what in ("K1", "K2", "K3"):
                sw = mk()
                try:
                    if what == "K1":
                        r = k1(sw.plugin())
                    elif what == "K2":
                        r = k2(sw.plugin())
                    else:
                        r = k3(sw.plugin(), sw, args.secs)
                        r["end"] = sw.sample()
                finally:
                    sw.stop()
                out[(name, what)] = r
                print(name, what, json.dumps(r), flush=True)
                time.sleep(2)
    finally:
        del_ns(300)
    v, b = (lambda w: out[("vswitch", w)]), (lambda w: out[("bridge", w)])
    s = v("K3")["samples"]
    table = [
        "| Workload | vswitch-cni | bridge + host-local | Target |",
        "|---|---|---|---|",
        f"| K1: ADD p50 / p99 / max, 0 to 200 attached (ms) | {v('K1')['add_p50']:.1f} / {v('K1')['add_p99']:.1f} / {v('K1')['add_max']:.1f} "
        f"| {b('K1')['add_p50']:.1f} / {b('K1')['add_p99']:.1f} / {b('K1')['add_max']:.1f} | |",
        f"| K1: ADD p50 / p99 with 200 attached (ms) | {v('K1')['at200_p50']:.1f} / {v('K1')['at200_p99']:.1f} "
        f"| {b('K1')['at200_p50']:.1f} / {b('K1')['at200_p99']:.1f} | p99 < 50 |",
        f"| K2: 100 ADDs at once, all done (s) | {v('K2')['adds_s']:.2f} | {b('K2')['adds_s']:.2f} | < 2 |",
        f"| K2: 100 DELs at once, all done (s) | {v('K2')['dels_s']:.2f} | {b('K2')['dels_s']:.2f} | |",
        f"| K3: {args.secs} s of 50 ADD+DEL/s: pairs/s done, start delay p99 (ms), op p99 (ms) | {v('K3')['per_s']:.1f}, {v('K3')['start_p99_ms']:.0f}, {v('K3')['p99']:.1f} "
        f"| {b('K3')['per_s']:.1f}, {b('K3')['start_p99_ms']:.0f}, {b('K3')['p99']:.1f} | 50/s kept |",
        f"| K3: vswitchd RSS MiB / fds / ports: before, every 10 s, after | {v('K3')['before']['rss_mib']}/{v('K3')['before']['fds']}/{v('K3')['before']['ports']}; "
        + ", ".join(f"{x['rss_mib']}/{x['fds']}/{x['ports']}" for x in s)
        + f"; {v('K3')['end']['rss_mib']}/{v('K3')['end']['fds']}/{v('K3')['end']['ports']} | | flat |",
    ]
    text = "\n".join(table)
    print(text)
    if args.docs:
        stamp = f"Run {datetime.date.today()} (`bench/cni.py`, K3 {args.secs} s), build {sh('git', '-C', ROOT, 'rev-parse', '--short', 'HEAD').strip()}:\n\n"
        write_block(os.path.join(ROOT, args.docs), "cni-bench", stamp + text)

if __name__ == "__main__":
    main()
