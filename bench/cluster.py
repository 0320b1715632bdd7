#!/usr/bin/python3
"""Cluster benchmarks (issue 18): switches sharing endpoints through a real etcd
(Debian's etcd-server 3.4, three members on loopback), with simulated hosts written
into the store by a load generator (etcd's JSON gateway, transactions of 100 puts).

  C1  convergence with three hosts: an endpoint added on host A (`endpoint add --port`,
      published by A's agent) until it is a FIB entry on host B; and its removal.
      p50/p99/max over N probes (default 200), in a network of its own
  C2  the same with 100 simulated hosts x 1,000 endpoints in the store (100,000 keys)
      and 50 endpoint changes a second from the simulated hosts while it runs
  C4  the shared desired state: a network written once with `vswitchctl --cluster` on
      host A (a transaction in the store) until all three hosts have it, and its removal
  C3  scale: 1,000 simulated hosts x 100 endpoints (100,000 keys in 100 networks);
      B has ports in 10 of them: what it holds (only those networks' 10,000 entries),
      how long it took to read them, and its RSS per 10,000 remote endpoints

Prints a table and, with --docs, writes it into docs/benchmarks.md between its markers.
Needs root and a built tree (cargo build --release --workspace)."""
from common import pct, write_block
import argparse, base64, datetime, json, os, random, shutil, socket, statistics, subprocess, tempfile, threading, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BIN = os.path.join(ROOT, "target", "release")
PROBE_VNI = 999


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def b64(s):
    return base64.b64encode(s.encode()).decode()


class Etcd:
    def __init__(self, work):
        self.work = work
        self.members = [(f"e{i}", free_port(), free_port()) for i in range(3)]
        cluster = ",".join(f"{n}=http://127.0.0.1:{p}" for n, _, p in self.members)
        self.procs = []
        for n, c, p in self.members:
            log = open(os.path.join(work, f"{n}.log"), "w")
            self.procs.append(subprocess.Popen(
                ["etcd", "--name", n, "--data-dir", os.path.join(work, n),
                 "--listen-client-urls", f"http://127.0.0.1:{c}", "--advertise-client-urls", f"http://127.0.0.1:{c}",
                 "--listen-peer-urls", f"http://127.0.0.1:{p}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{p}",
                 "--initial-cluster", cluster, "--initial-cluster-state", "new",
                 "--heartbeat-interval", "50", "--election-timeout", "500", "--quota-backend-bytes", str(4 << 30)],
                stdout=log, stderr=log))
        self.url = "etcd://" + ",".join(f"127.0.0.1:{c}" for _, c, _ in self.members)
        self.http = f"http://127.0.0.1:{self.members[0][1]}"
        for _ in range(200):
            try:
                self.call("/v3/kv/range", {"key": b64("/")})
                return
            except Exception:
                time.sleep(0.1)
        raise RuntimeError("etcd did not start")

    def call(self, path, body):
        req = urllib.request.Request(self.http + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def put_many(self, kvs):
        for i in range(0, len(kvs), 100):
            ops = [{"requestPut": {"key": b64(k), "value": b64(v)}} for k, v in kvs[i:i + 100]]
            self.call("/v3/kv/txn", {"success": ops})

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()


class Switch:
    def __init__(self, work, name, n, etcd):
        self.name, self.work = name, os.path.join(work, name)
        os.makedirs(self.work)
        self.sock = os.path.join(self.work, "s.sock")
        self.log = open(os.path.join(self.work, "vswitchd.log"), "w")
        self.p = subprocess.Popen(
            [BIN + "/vswitchd", "--socket", self.sock, "--db", os.path.join(self.work, "db.json"),
             "--cluster", etcd.url, "--node", name, "--pmd-idle-sleep-us", "500", "--mbufs", "4096", "--",
             "-l", "0-1", "--no-pci", "--no-huge", "-m", "256", "--file-prefix", f"vscl{name}"],
            stdout=self.log, stderr=self.log)
        for _ in range(300):
            if os.path.exists(self.sock):
                break
            time.sleep(0.1)
        self.api = socket.socket(socket.AF_UNIX)
        for _ in range(50):
            try:
                self.api.connect(self.sock)
                break
            except OSError:
                time.sleep(0.1)
        self.f = self.api.makefile("rw")
        self.call({"cmd": "port_add", "name": "up0", "devargs": f"net_null{n}0", "role": "uplink"})
        self.call({"cmd": "vtep_set", "ip": f"192.168.70.{n + 1}/24", "uplink": "up0"})
        self.network(PROBE_VNI)

    def call(self, req):
        self.f.write(json.dumps({"version": 1, "request": req}) + "\n")
        self.f.flush()
        r = json.loads(self.f.readline())
        if not r["ok"]:
            raise RuntimeError(f"{self.name} {req}: {r['error']}")
        return r.get("result")

    def network(self, vni):
        self.call({"cmd": "network_add", "vni": vni})
        self.call({"cmd": "port_add", "name": f"p{vni}", "devargs": f"net_null_{self.name}{vni}", "role": "vm", "vni": vni})

    def has(self, vni, mac):
        return any(e["mac"] == mac and e["kind"] == "cluster" for e in self.call({"cmd": "fib_list", "vni": vni}))

    def status(self):
        return self.call({"cmd": "cluster_status"})

    def rss_kib(self):
        status = open(f"/proc/{self.p.pid}/status").read()
        return int([l for l in status.splitlines() if l.startswith("VmRSS")][0].split()[1])

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()


def probe(a, b, n):
    """n endpoint adds on a until b has them, and n deletes until b has lost them (ms)."""
    add, delete = [], []
    for i in range(n):
        mac = "0a:00:00:%02x:%02x:%02x" % (random.randrange(256), i >> 8, i & 255)
        ip = f"10.99.{i >> 8}.{(i & 255) or 1}"
        t = time.perf_counter()
        a.call({"cmd": "endpoint_add", "vni": PROBE_VNI, "ip": ip, "mac": mac, "port": f"p{PROBE_VNI}"})
        while not b.has(PROBE_VNI, mac):
            if time.perf_counter() - t > 10:
                raise RuntimeError(f"{mac} never reached {b.name}")
            time.sleep(0.0005)
        add.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        a.call({"cmd": "endpoint_del", "vni": PROBE_VNI, "ip": ip})
        while b.has(PROBE_VNI, mac):
            if time.perf_counter() - t > 10:
                raise RuntimeError(f"{mac} never left {b.name}")
            time.sleep(0.0005)
        delete.append((time.perf_counter() - t) * 1000)
    return add, delete


def shared_probe(switches, n):
    """n networks added to the shared state from the first switch until every switch has
    them, and removed until none has (ms)."""
    add, delete = [], []
    a = switches[0]
    has = lambda s, vni: any(x["vni"] == vni for x in s.call({"cmd": "network_list"}))
    for i in range(n):
        vni = 2000 + i
        for req, there, out in (({"cmd": "network_add", "vni": vni}, True, add), ({"cmd": "network_del", "vni": vni}, False, delete)):
            t = time.perf_counter()
            a.call({"cmd": "cluster_change", "request": req})
            while not all(has(s, vni) == there for s in switches):
                if time.perf_counter() - t > 10:
                    raise RuntimeError(f"shared network {vni} {'never reached' if there else 'never left'} every host")
                time.sleep(0.001)
            out.append((time.perf_counter() - t) * 1000)
    return add, delete


def simulated(etcd, hosts, per_host, vnis, first_vni=1):
    """Node and endpoint records of `hosts` simulated hosts, `per_host` endpoints each,
    spread over `vnis` networks."""
    kvs = []
    for h in range(hosts):
        node = f"sim{h}"
        vtep = f"10.{100 + (h >> 16)}.{(h >> 8) & 255}.{h & 255}"
        mine = sorted({first_vni + (h * per_host + e) % vnis for e in range(per_host)})
        kvs.append((f"/vswitch/nodes/{node}", json.dumps({"vtep": vtep, "udp_port": 4789, "boot": 1, "vnis": mine})))
        for e in range(per_host):
            n = h * per_host + e
            vni = first_vni + n % vnis
            mac = "06:%02x:%02x:%02x:%02x:%02x" % ((n >> 32) & 255, (n >> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255)
            ip = f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
            kvs.append((f"/vswitch/endpoints/{vni}/{node}/{mac}",
                        json.dumps({"mac": mac, "ips": [ip], "port": "p"})))
    t = time.perf_counter()
    etcd.put_many(kvs)
    return len(kvs), time.perf_counter() - t


def churn(etcd, hosts, per_host, vnis, rate, stop):
    """`rate` endpoint rewrites a second by the simulated hosts until `stop` is set."""
    while not stop.is_set():
        t = time.perf_counter()
        n = random.randrange(hosts * per_host)
        h = n // per_host
        mac = "06:%02x:%02x:%02x:%02x:%02x" % ((n >> 32) & 255, (n >> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255)
        rec = json.dumps({"mac": mac, "ips": [f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"], "port": f"p{random.randrange(9)}"})
        etcd.put_many([(f"/vswitch/endpoints/{1 + n % vnis}/sim{h}/{mac}", rec)])
        time.sleep(max(0, 1 / rate - (time.perf_counter() - t)))


def summary(xs):
    return f"{statistics.median(xs):.1f} / {pct(xs, 99):.1f} / {max(xs):.1f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--probes", type=int, default=200)
    ap.add_argument("--docs", action="store_true", help="write the table into docs/benchmarks.md")
    args = ap.parse_args()
    rows = []
    work = tempfile.mkdtemp(prefix="vscl-")
    os.makedirs(os.path.join(work, "etcd"))
    etcd = Etcd(os.path.join(work, "etcd"))
    switches = []
    try:
        a, b, c = (Switch(work, n, i, etcd) for i, n in enumerate(["a", "b", "c"]))
        switches = [a, b, c]
        time.sleep(2)
        add, dele = probe(a, b, args.probes)
        rows.append(("C1: 3 hosts, ADD on A -> FIB entry on B (ms p50 / p99 / max)", summary(add), "p99 <= 100"))
        rows.append(("C1: 3 hosts, DEL on A -> gone on B", summary(dele), ""))
        add, dele = shared_probe(switches, min(args.probes, 50))
        rows.append(("C4: shared network written on A (`--cluster network add`) -> on all 3 hosts", summary(add), ""))
        rows.append(("C4: shared network deleted -> gone from all 3 hosts", summary(dele), ""))

        keys, secs = simulated(etcd, 100, 1000, 100, first_vni=1)
        stop = threading.Event()
        loader = threading.Thread(target=churn, args=(etcd, 100, 1000, 100, 50, stop))
        loader.start()
        try:
            add, dele = probe(a, b, args.probes)
        finally:
            stop.set()
            loader.join()
        rows.append((f"C2: + 100 hosts x 1,000 endpoints ({keys} keys, written in {secs:.1f} s), 50 changes/s: ADD -> FIB",
                     summary(add), "p99 <= 250"))
        rows.append(("C2: DEL -> gone", summary(dele), ""))

        # C3: 1,000 hosts x 100 endpoints in networks 1001..1100; b has ports in 10 of
        # them (added first, so its RSS grows only by what it reads).
        for vni in range(1001, 1011):
            b.network(vni)
        time.sleep(2)
        before, held_before = b.rss_kib(), b.status()["remote_macs"]
        t = time.perf_counter()
        keys, secs = simulated(etcd, 1000, 100, 100, first_vni=1001)
        want = held_before + 10 * 1000
        while b.status()["remote_macs"] < want:
            if time.perf_counter() - t > 120:
                raise RuntimeError(f"b holds {b.status()['remote_macs']} of {want}")
            time.sleep(0.05)
        took = time.perf_counter() - t
        time.sleep(2)
        after = b.rss_kib()
        st = b.status()
        fib = sum(e["kind"] == "cluster" for v in range(1001, 1011) for e in b.call({"cmd": "fib_list", "vni": v}))
        rows.append((f"C3: 1,000 hosts x 100 endpoints ({keys} keys) in 100 networks; B in 10 of them",
                     f"B holds {st['remote_macs'] - held_before} remote MACs ({fib} cluster FIB entries), all in {took:.1f} s (store written in {secs:.1f} s)", "only its networks'"))
        rows.append(("C3: B's RSS per 10,000 remote endpoints", f"{(after - before) / 1024:.1f} MiB", "measured, bounded"))
        rows.append(("C3: nodes B knows", str(len(st["nodes"])), ""))
    finally:
        for s in switches:
            s.stop()
        etcd.stop()
    table = ["| Measure | vswitch | Target |", "|---|---|---|"] + [f"| {r[0]} | {r[1]} | {r[2]} |" for r in rows]
    print("\n".join(table))
    if args.docs:
        stamp = f"Measured {datetime.date.today()} by `bench/cluster.py` ({args.probes} probes)."
        write_block(os.path.join(ROOT, "docs", "benchmarks.md"), "cluster-bench", f"{stamp}\n\n" + "\n".join(table))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
