#!/usr/bin/python3
"""A backend: answers every TCP connection on PORT with NAME and closes it; with
--udp, answers every datagram with NAME.
Usage: name_server.py PORT NAME [--udp]"""
import socket, sys

port, name = int(sys.argv[1]), sys.argv[2].encode()
if "--udp" in sys.argv:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    while True:
        _, peer = s.recvfrom(2048)
        s.sendto(name, peer)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(1024)
while True:
    c, _ = s.accept()
    try:
        c.sendall(name)
    finally:
        c.close()
