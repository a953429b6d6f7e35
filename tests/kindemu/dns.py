"""A small DNS server standing in for CoreDNS (in the CoreDNS pods, behind kube-dns 10.96.0.10) and for
Docker's embedded DNS (in each node, on 127.0.0.11 at the ports Docker's DNAT rules name).

It answers A queries from a zone file the cluster daemon rewrites (Services as
``<svc>.<ns>.svc.cluster.local``, node containers by name), ``*.localtest.me`` with 127.0.0.1 (the public
record the course relies on), NOERROR without answers for other types of a known name, and NXDOMAIN for
everything else: the machine is offline, and an upstream resolver answers a name like ``curl`` with
NXDOMAIN. Run: ``python dns.py --zone FILE --listen ADDR:UDP_PORT[:TCP_PORT]`` (inside a namespace).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import threading


class Zone:
    def __init__(self, path: str):
        self.path = path
        self.mtime = None
        self.names: dict[str, list[str]] = {}

    def lookup(self, name: str) -> list[str] | None:
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except OSError:
            mtime = None
        if mtime != self.mtime:
            self.mtime = mtime
            try:
                with open(self.path) as f:
                    self.names = {k.lower(): v for k, v in json.load(f).items()}
            except (OSError, ValueError):
                self.names = {}
        n = name.lower().rstrip(".") + "."
        if n in self.names:
            return self.names[n]
        if n == "localtest.me." or n.endswith(".localtest.me."):
            return ["127.0.0.1"]
        return None


def answer(query: bytes, zone: Zone) -> bytes | None:
    if len(query) < 12:
        return None
    qid, flags, qd = struct.unpack("!HHH", query[:6])
    if qd != 1:
        return None
    labels, i = [], 12
    while i < len(query) and query[i] != 0:
        ln = query[i]
        labels.append(query[i + 1:i + 1 + ln].decode("ascii", "replace"))
        i += 1 + ln
    qtype, qclass = struct.unpack("!HH", query[i + 1:i + 5])
    question = query[12:i + 5]
    ips = zone.lookup(".".join(labels))
    rd = flags & 0x0100
    if ips is None:
        hdr = struct.pack("!HHHHHH", qid, 0x8000 | rd | 0x0080 | 0x0400 | 3, 1, 0, 0, 0)   # NXDOMAIN
        return hdr + question
    answers = b""
    count = 0
    if qtype == 1 and qclass == 1:
        for ip in ips:
            answers += struct.pack("!HHHIH", 0xC00C, 1, 1, 30, 4) + socket.inet_aton(ip)
            count += 1
    hdr = struct.pack("!HHHHHH", qid, 0x8000 | rd | 0x0080 | 0x0400, 1, count, 0, 0)
    return hdr + question + answers


def serve_udp(sock: socket.socket, zone: Zone) -> None:
    while True:
        data, addr = sock.recvfrom(4096)
        resp = answer(data, zone)
        if resp:
            sock.sendto(resp, addr)


def serve_tcp(sock: socket.socket, zone: Zone) -> None:
    def one(conn: socket.socket) -> None:
        with conn:
            try:
                while True:
                    head = conn.recv(2)
                    if len(head) < 2:
                        return
                    (ln,) = struct.unpack("!H", head)
                    data = b""
                    while len(data) < ln:
                        chunk = conn.recv(ln - len(data))
                        if not chunk:
                            return
                        data += chunk
                    resp = answer(data, zone)
                    if resp:
                        conn.sendall(struct.pack("!H", len(resp)) + resp)
            except OSError:
                return
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=one, args=(conn,), daemon=True).start()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--zone", required=True)
    p.add_argument("--listen", required=True, help="ADDR:UDP_PORT[:TCP_PORT]")
    args = p.parse_args()
    parts = args.listen.split(":")
    addr, udp_port = parts[0], int(parts[1])
    tcp_port = int(parts[2]) if len(parts) > 2 else udp_port
    zone = Zone(args.zone)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((addr, udp_port))
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind((addr, tcp_port))
    t.listen(64)
    threading.Thread(target=serve_tcp, args=(t, zone), daemon=True).start()
    serve_udp(u, zone)
    return 0


if __name__ == "__main__":
    sys.exit(main())
