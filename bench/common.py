"""What the benchmark scripts share: a vswitchd of this tree, percentiles, and writing
a result table into a page of docs/ between its markers."""
import os, subprocess, time

BIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "target", "release")


class Vswitchd:
    """vswitchd on a fresh state file in `work` (the PMD on CPU 1), up and answering
    once built."""

    def __init__(self, work, prefix, hugepages=False, eal=(), args=()):
        self.work = work
        self.sock = os.path.join(work, "s.sock")
        for f in ("s.sock", "db.json", "db.json.journal"):
            if os.path.exists(os.path.join(work, f)):
                os.remove(os.path.join(work, f))
        self.log = open(os.path.join(work, "vswitchd.log"), "w")
        self.p = subprocess.Popen([BIN + "/vswitchd", "--socket", self.sock, "--db", os.path.join(work, "db.json"), *args, "--",
                                   "-l", "0-1", "--no-pci", "--file-prefix", prefix]
                                  + ([] if hugepages else ["--no-huge", "-m", "512"]) + list(eal),
                                  stdout=self.log, stderr=self.log)
        for _ in range(300):
            if os.path.exists(self.sock):
                break
            time.sleep(0.1)
        time.sleep(0.3)

    def ctl(self, *args):
        return subprocess.run([BIN + "/vswitchctl", "--socket", self.sock, *args], check=True, capture_output=True,
                              text=True).stdout

    def stop(self):
        self.p.terminate()
        self.p.wait(timeout=30)


def pct(xs, p):
    """The p-th percentile of xs (nearest rank)."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def write_block(path, name, text):
    """Puts text between `<!-- NAME:begin -->` and `<!-- NAME:end -->` in the file at
    path, in place of what was there, or at its end the first time."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    doc = open(path).read() if os.path.exists(path) else ""
    block = f"{begin}\n{text}\n{end}"
    if begin in doc and end in doc:
        doc = doc[:doc.index(begin)] + block + doc[doc.index(end) + len(end):]
    else:
        doc += "\n" + block + "\n"
    open(path, "w").write(doc)
