#!/usr/bin/python3
"""Exact TCP transfers: what was sent and what arrived, byte count and SHA-256.

  tcp_xfer.py serve IP PORT CONNS      accepts CONNS connections, reads each to EOF,
                                       prints the sorted [bytes, sha256] of each as JSON
  tcp_xfer.py send IP PORT BYTES CONNS opens CONNS connections at once, sends BYTES of
                                       pseudo-random data on each, prints the same
"""
import hashlib, json, os, socket, sys, threading

CHUNK = 1 << 16


def serve(ip, port, conns):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((ip, port))
    ls.listen(conns)
    print("ready", flush=True)
    out = []

    def one(c):
        h, n = hashlib.sha256(), 0
        while True:
            d = c.recv(1 << 20)
            if not d:
                break
            h.update(d)
            n += len(d)
        out.append([n, h.hexdigest()])

    ts = []
    for _ in range(conns):
        c, _ = ls.accept()
        t = threading.Thread(target=one, args=(c,))
        t.start()
        ts.append(t)
    for t in ts:
        t.join()
    print(json.dumps(sorted(out)), flush=True)


def send(ip, port, total, conns):
    out = []

    def one(i):
        s = socket.create_connection((ip, port))
        h, n = hashlib.sha256(), 0
        block = hashlib.sha256(b"%d" % i).digest() * (CHUNK // 32)
        block = bytes(b ^ (k * 7 % 256) for k, b in enumerate(block))
        while n < total:
            d = block[: min(CHUNK, total - n)]
            s.sendall(d)
            h.update(d)
            n += len(d)
        s.close()
        out.append([n, h.hexdigest()])

    ts = [threading.Thread(target=one, args=(i,)) for i in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(json.dumps(sorted(out)), flush=True)


if sys.argv[1] == "serve":
    serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
else:
    send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
