#!/usr/bin/python3
"""The control socket under abuse (issue 19): what a well-behaved client waits while
others misbehave. One vswitchd (its PMD on CPU 1, the control plane on CPU 0 with the
abusers, as on a host), and a measured client that, in turn, sends a read (`show` on its
own connection), a change (`fib_add` then `fib_del` of one static entry, each waiting
for the journal) and a read on a fresh connection (connect, `show`, close). First alone,
then while, all at once, in other processes:

  idle      1,000 clients connected that never speak
  slow      50 clients writing a request one byte every 100 ms (never a whole line)
  garbage   8 clients sending lines of random bytes as fast as they are answered
  nested    2 clients sending JSON nested 100,000 deep, again and again
  bulk      4 clients uploading requests in 1 MB parts, never the last (refused past
            vswitchd's budget for parts; they reconnect and start again)
  busy      50 clients sending `show` as fast as they are answered

Prints per phase and request kind: requests, p50 / p99 / p99.9 / max in ms (the target:
each other client's p99 under 50 ms). The state file lives in /dev/shm by default: a
change waits for its journal sync, and a disk's fsync (seconds, on a bad day on these
machines) would measure the disk, not the socket; --db-dir puts it elsewhere.
With --docs, writes the table into docs/benchmarks.md between its markers.
Needs root and a built tree (cargo build --release --workspace)."""
from common import Vswitchd, pct, write_block
import argparse, datetime, json, multiprocessing as mp, os, random, resource, socket, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VNI = 100


def line(req):
    return (json.dumps({"version": 1, "request": req}) + "\n").encode()


class Client:
    """One connection that sends a line and reads the answer's line."""

    def __init__(self, path, timeout=30):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.buf = b""

    def ask(self, data):
        self.s.sendall(data)
        while b"\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("vswitchd closed the connection")
            self.buf += chunk
        answer, self.buf = self.buf.split(b"\n", 1)
        return answer

    def close(self):
        self.s.close()


# Abusers: each runs in its own process until `stop` is set, counting what it did.

def idle(path, stop, n, done):
    held = [Client(path) for _ in range(n)]
    done.value += len(held)
    stop.wait()
    for c in held:
        c.close()


def slow(path, stop, n, done):
    text = line({"cmd": "network_add", "vni": 4000})
    held = [Client(path) for _ in range(n)]
    at = 0
    while not stop.wait(0.1):
        for c in held:
            try:
                c.s.sendall(text[at % (len(text) - 1):][:1])
            except OSError:
                pass
        at += 1
        done.value += len(held)


def answered(path, stop, what, done):
    """Sends lines vswitchd must refuse (random bytes, or JSON nested 100,000 deep) as
    fast as it answers them."""
    rng = random.Random(os.getpid())
    deep = b"[" * 100_000 + b"\n"
    junk = lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(1, 2000))).replace(b"\n", b" ") + b"\n"
    make = (lambda: deep) if what == "nested" else junk
    c = Client(path)
    while not stop.is_set():
        try:
            c.ask(make())
        except OSError:
            c.close()
            c = Client(path)
        done.value += 1


def bulk(path, stop, done):
    part = (json.dumps({"version": 1, "part": "x" * 1_000_000, "last": False}) + "\n").encode()
    c = Client(path)
    while not stop.is_set():
        try:
            c.s.sendall(part)
            done.value += 1
        except OSError:
            c.close()
            c = Client(path)


def busy(path, stop, done):
    c = Client(path)
    show = line({"cmd": "show"})
    while not stop.is_set():
        c.ask(show)
        done.value += 1


KINDS = ("idle", "slow", "garbage", "nested", "bulk", "busy")


def abusers(path, stop, kinds):
    """Starts the abusers of those kinds; returns the processes and their counters."""
    plan = [("idle", idle, (1000,), 1), ("slow", slow, (50,), 1), ("garbage", answered, ("garbage",), 8),
            ("nested", answered, ("nested",), 2), ("bulk", bulk, (), 4), ("busy", busy, (), 50)]
    procs, counts = [], {k: [] for k in KINDS}
    for name, fn, extra, copies in (p for p in plan if p[0] in kinds):
        for _ in range(copies):
            done = mp.Value("q", 0, lock=False)
            p = mp.Process(target=fn, args=(path, stop, *extra, done), daemon=True)
            p.start()
            procs.append(p)
            counts[name].append(done)
    return procs, counts


def measure(path, secs):
    """The well-behaved client: a read, a change pair and a fresh-connection read, in turn."""
    lat = {"read": [], "change": [], "connect+read": []}
    c = Client(path)
    show = line({"cmd": "show"})
    add = line({"cmd": "fib_add", "vni": VNI, "mac": "02:00:00:00:aa:01", "port": "vm1"})
    delete = line({"cmd": "fib_del", "vni": VNI, "mac": "02:00:00:00:aa:01"})
    end = time.monotonic() + secs
    while time.monotonic() < end:
        t = time.perf_counter()
        assert b'"ok":true' in c.ask(show)
        lat["read"].append((time.perf_counter() - t) * 1000)
        for req in (add, delete):
            t = time.perf_counter()
            answer = c.ask(req)
            lat["change"].append((time.perf_counter() - t) * 1000)
            assert b'"ok":true' in answer, answer
        t = time.perf_counter()
        f = Client(path)
        assert b'"ok":true' in f.ask(show)
        f.close()
        lat["connect+read"].append((time.perf_counter() - t) * 1000)
        time.sleep(0.002)
    c.close()
    return lat


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--secs", type=int, default=30, help="seconds per phase (default 30)")
    ap.add_argument("--db-dir", default="/dev/shm", help="where the state file lives (default /dev/shm)")
    ap.add_argument("--only", default=",".join(KINDS), help="the abusers to run, comma-separated (default all)")
    ap.add_argument("--docs", help="write the table into this file (e.g. docs/benchmarks.md)")
    args = ap.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
    work = tempfile.mkdtemp(prefix="vsab", dir=args.db_dir)
    d = Vswitchd(work, "vsab")
    sock = d.sock
    out = {}
    try:
        d.ctl("network", "add", str(VNI))
        d.ctl("port", "add", "vm1", "net_null0,no-rx=1", "--role", "vm", "--vni", str(VNI))
        out["alone"] = measure(sock, args.secs)
        stop = mp.Event()
        procs, counts = abusers(sock, stop, args.only.split(","))
        time.sleep(2)
        out["abused"] = measure(sock, args.secs)
        stop.set()
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
        alive = d.p.poll() is None
        did = {k: sum(v.value for v in vs) for k, vs in counts.items()}
    finally:
        d.stop()
    rows = ["| Phase | Request | Requests | p50 | p99 | p99.9 | max (ms) |", "|---|---|---|---|---|---|---|"]
    for phase, lat in out.items():
        for kind, xs in lat.items():
            rows.append(f"| {phase} | {kind} | {len(xs)} | {pct(xs, 50):.2f} | {pct(xs, 99):.2f} | "
                        f"{pct(xs, 99.9):.2f} | {max(xs):.2f} |")
    text = "\n".join(rows) + (
        f"\n\nDuring the abused phase ({args.secs} s): {did['idle']} idle clients held, "
        f"{did['slow']:,} single bytes from 50 slow writers, {did['garbage']:,} garbage lines and "
        f"{did['nested']:,} JSON documents nested 100,000 deep answered, {did['bulk']:,} 1 MB parts "
        f"uploaded, {did['busy']:,} `show` requests from 50 busy clients. vswitchd "
        + ("ran throughout." if alive else "**died**."))
    print(text)
    if args.docs:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        stamp = f"Run {datetime.date.today()} (`bench/api.py`, {args.secs} s a phase, state file in {args.db_dir}), build {rev}:\n\n"
        write_block(os.path.join(ROOT, args.docs), "api-bench", stamp + text)
    if not alive:
        sys.exit(1)


if __name__ == "__main__":
    main()
