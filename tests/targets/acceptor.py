"""Main thread blocked in socket.accept() on a loopback listening socket.

Usage: acceptor.py READY
Ready facts: port=PORT. Each connection: reads one line, answers "echo LINE", reports
"accepted N". Errors: "ERROR exception in accept ...".
"""
import socket
import sys

import fptarget


def serve_one(conn):
    conn.settimeout(10)
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(1024)
        if not chunk:
            break
        data += chunk
    conn.sendall(b"echo " + data)


def main():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    fptarget.announce(sys.argv[1], port=srv.getsockname()[1])
    n = 0
    while True:
        try:
            conn, _ = srv.accept()
        except BaseException as e:  # noqa: B902
            fptarget.error("exception in accept: %r" % (e,))
            continue
        n += 1
        try:
            with conn:
                serve_one(conn)
        except Exception as e:
            fptarget.error("exception serving connection %d: %r" % (n, e))
        fptarget.report("accepted %d" % n)


if __name__ == "__main__":
    main()
