#!/usr/bin/python3
"""A backend: answers every TCP connection on PORT with NAME and closes it; with
--udp, answers every datagram with NAME. With --peer, NAME is followed by a space and
the address the connection or datagram came from. With --ipv6, it listens on IPv6.
Usage: name_server.py PORT NAME [--udp] [--peer] [--ipv6]"""
import socket, sys

port, name = int(sys.argv[1]), sys.argv[2].encode()
peer_too = "--peer" in sys.argv
family, anywhere = (socket.AF_INET6, "::") if "--ipv6" in sys.argv else (socket.AF_INET, "0.0.0.0")


def answer(peer):
    return name + (b" " + peer[0].encode() if peer_too else b"")


if "--udp" in sys.argv:
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((anywhere, port))
    while True:
        _, peer = s.recvfrom(2048)
        s.sendto(answer(peer), peer)
s = socket.socket(family)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((anywhere, port))
s.listen(1024)
while True:
    c, peer = s.accept()
    try:
        c.sendall(answer(peer))
    finally:
        c.close()
