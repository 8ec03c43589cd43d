#!/usr/bin/env python3
"""Small peers for the hostfw real-peer tests (no third-party modules).

  peers.py serve ADDR             TCP echo :7777, UDP echo :7778, a TCP
                                  listener :8080 that accepts and closes
                                  (so a refused connection there is the
                                  firewall's doing), until killed
  peers.py tcp-echo ADDR PORT     send 256 KiB, expect it back
  peers.py udp-echo ADDR PORT     send 20 datagrams, expect them back
  peers.py tcp-connect ADDR PORT  connect only; prints the errno name on failure
  peers.py dns SERVER NAME        one A query over UDP; prints the addresses

Every client prints one line and exits 0 on success, 1 on failure.
"""
import errno
import os
import socket
import struct
import sys
import threading


def serve(addr):
    def tcp_echo():
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, 7777))
        s.listen(16)
        while True:
            c, _ = s.accept()
            threading.Thread(target=echo_conn, args=(c,), daemon=True).start()

    def echo_conn(c):
        with c:
            while True:
                b = c.recv(65536)
                if not b:
                    return
                c.sendall(b)

    def udp_echo():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((addr, 7778))
        while True:
            b, peer = s.recvfrom(65536)
            s.sendto(b, peer)

    def closer():
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, 8080))
        s.listen(16)
        while True:
            c, _ = s.accept()
            c.close()

    for f in (tcp_echo, udp_echo, closer):
        threading.Thread(target=f, daemon=True).start()
    print("serving on", addr, flush=True)
    threading.Event().wait()


def fail(msg):
    print("FAIL", msg, flush=True)
    sys.exit(1)


def err_name(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if e.errno else type(e).__name__


def tcp_connect(addr, port, data=None):
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((addr, port))
    except OSError as e:
        fail(f"connect {addr}:{port}: {err_name(e)} ({e})")
    return s


def tcp_echo(addr, port):
    data = os.urandom(256 * 1024)
    s = tcp_connect(addr, port)
    s.settimeout(5)
    got = bytearray()

    def reader():
        try:
            while len(got) < len(data):
                b = s.recv(65536)
                if not b:
                    return
                got.extend(b)
        except OSError:
            return

    t = threading.Thread(target=reader)
    t.start()
    try:
        s.sendall(data)
    except OSError as e:
        fail(f"send: {err_name(e)}")
    t.join(10)
    if bytes(got) != data:
        fail(f"echo: sent {len(data)} bytes, got {len(got)} back{' (different)' if len(got) == len(data) else ''}")
    print(f"OK tcp echo {len(data)} bytes via {addr}:{port}, local {s.getsockname()[0]}")


def udp_echo(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1)
    ok = 0
    for i in range(20):
        msg = os.urandom(100 + i * 50)
        s.sendto(msg, (addr, port))
        try:
            b, _ = s.recvfrom(65536)
            ok += b == msg
        except OSError:
            pass
    if ok < 18:
        fail(f"udp echo: {ok}/20 datagrams came back")
    print(f"OK udp echo {ok}/20")


def dns(server, name):
    qid = int.from_bytes(os.urandom(2), "big")
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.strip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    try:
        s.sendto(q, (server, 53))
        r, _ = s.recvfrom(4096)
    except OSError as e:
        fail(f"dns {name} @{server}: {err_name(e)} ({e})")
    rid, flags, qd, an = struct.unpack(">HHHH", r[:8])
    if rid != qid or flags & 0xF != 0:
        fail(f"dns: bad answer id={rid:#x} rcode={flags & 0xF}")
    off = len(q)
    addrs = []
    for _ in range(an):
        if r[off] & 0xC0 == 0xC0:
            off += 2
        else:
            while r[off]:
                off += r[off] + 1
            off += 1
        typ, cls, ttl, rdlen = struct.unpack(">HHIH", r[off:off + 10])
        off += 10
        if typ == 1 and rdlen == 4:
            addrs.append(socket.inet_ntoa(r[off:off + 4]))
        off += rdlen
    if not addrs:
        fail(f"dns {name}: no A record")
    print("OK dns", name, " ".join(addrs))


def main():
    a = sys.argv[1:]
    if a[:1] == ["serve"]:
        serve(a[1])
    elif a[:1] == ["tcp-echo"]:
        tcp_echo(a[1], int(a[2]))
    elif a[:1] == ["udp-echo"]:
        udp_echo(a[1], int(a[2]))
    elif a[:1] == ["tcp-connect"]:
        s = tcp_connect(a[1], int(a[2]))
        print("OK connected", s.getsockname()[0])
    elif a[:1] == ["dns"]:
        dns(a[1], a[2])
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
