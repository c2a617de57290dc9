"""Runs a command inside the current (fresh) network namespace and forwards a Unix socket to a
TCP port on its loopback.

Why: PrusaLink announces itself by mDNS, so the test runs it under `unshare -n`, where only a
loopback exists and nothing reaches the machine's network. A Unix socket lives in the file
system, not in the network namespace, so the test (outside) reaches PrusaLink's HTTP server
(inside) through it.

Usage: unshare -n python3 netns_forward.py SOCKET PORT -- COMMAND...
Brings the loopback up, starts COMMAND, forwards every connection on SOCKET to
127.0.0.1:PORT, and ends COMMAND when it gets SIGTERM or its standard input closes.
"""

import fcntl
import os
import signal
import socket
import struct
import subprocess
import sys
import threading

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def loopback_up():
    """The loopback of a new network namespace starts down."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(s, SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags | IFF_UP, b""))


def pipe(src, dst):
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(path, port):
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    while True:
        client, _ = server.accept()
        try:
            upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()
            continue
        threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()


def main():
    sep = sys.argv.index("--")
    path, port = sys.argv[1], int(sys.argv[2])
    command = sys.argv[sep + 1:]
    loopback_up()
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL)

    def stop(*_):
        child.terminate()
        try:
            child.wait(timeout=3)
        except subprocess.TimeoutExpired:
            child.kill()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    threading.Thread(target=serve, args=(path, port), daemon=True).start()
    # The test holds our standard input: its end (the test process gone) ends everything.
    threading.Thread(target=lambda: (sys.stdin.read(), stop()), daemon=True).start()
    child.wait()
    os._exit(child.returncode or 1)


if __name__ == "__main__":
    main()
