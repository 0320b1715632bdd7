#!/usr/bin/python3
"""A client: opens COUNT TCP connections to IP:PORT one after the other (or sends COUNT
datagrams from fresh sockets with --udp), reads the name each answer carries, and
prints a JSON object: how many answers came from each name, and "failed".
Usage: tcp_names.py IP PORT COUNT [--udp]"""
import json, socket, sys

ip, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
udp = "--udp" in sys.argv
seen = {}
for _ in range(count):
    s = None
    try:
        if udp:
            s = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(1.0)
            s.sendto(b"who", (ip, port))
            data, peer = s.recvfrom(2048)
            # The answer must come from the address asked (the VIP), or the client would
            # not take it.
            assert peer[:2] == (ip, port), peer
        else:
            s = socket.create_connection((ip, port), timeout=2.0)
            data = b""
            while True:
                chunk = s.recv(256)
                if not chunk:
                    break
                data += chunk
        name = data.decode()
    except Exception:
        name = "failed"
    finally:
        if s:
            s.close()
    seen[name] = seen.get(name, 0) + 1
print(json.dumps(seen))
