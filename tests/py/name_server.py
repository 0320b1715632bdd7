#!/usr/bin/python3
"""A backend: answers every TCP connection on PORT with NAME and closes it; with
--udp, answers every datagram with NAME. With --peer, NAME is followed by a space and
the address the connection or datagram came from.
Usage: name_server.py PORT NAME [--udp] [--peer]"""
import socket, sys

port, name = int(sys.argv[1]), sys.argv[2].encode()
peer_too = "--peer" in sys.argv


def answer(peer):
    return name + (b" " + peer[0].encode() if peer_too else b"")


if "--udp" in sys.argv:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    while True:
        _, peer = s.recvfrom(2048)
        s.sendto(answer(peer), peer)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(1024)
while True:
    c, peer = s.accept()
    try:
        c.sendall(answer(peer))
    finally:
        c.close()
