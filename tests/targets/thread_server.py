"""A thread-per-request server (socketserver.ThreadingTCPServer, as Django's runserver and many
small services are), fed by a client thread of its own over loopback: each request is handled
on a new, short-lived thread that ends with it.

Usage: thread_server.py READY [INTERVAL_S=0.01]
Each request prices a basket, spelling the call of Pricing.total in one of the ways a caller
may (SPELLINGS, in turn; the first price of the basket says which), and calls spread(1, 2, 3, 4).
Progress: "served N". Errors: "ERROR ..." when a result is not what the code computes.
"""
import socket
import socketserver
import sys
import threading
import time

import fptarget


class Pricing(object):
    def total(self, prices, coupon=None):
        return sum(prices) / (2.0 if coupon == "HALF" else 1.0)


def spread(a, b=0, *rest, c=None, **extra):
    return a + b + sum(rest) + (c or 0) + sum(extra.values())


PRICING = Pricing()
# How the n-th request calls total: the basket's first price names the spelling.
SPELLINGS = (
    ("keyword", lambda p: PRICING.total(p, coupon="HALF"), True),
    ("positional", lambda p: PRICING.total(p, "HALF"), True),
    ("default", lambda p: PRICING.total(p), False),
    ("default passed", lambda p: PRICING.total(p, coupon=None), False),
    ("all by keyword", lambda p: PRICING.total(prices=p, coupon="HALF"), True),
)


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        n = int(self.rfile.readline())
        kind, call, half = SPELLINGS[n % len(SPELLINGS)]
        prices = [n % len(SPELLINGS), 10, 20]
        got = call(prices)
        want = sum(prices) / (2.0 if half else 1.0)
        if got != want:
            fptarget.error("total %s gave %r, not %r" % (kind, got, want))
        if spread(1, 2, 3, 4) != 10:
            fptarget.error("spread gave a wrong sum")
        self.wfile.write(b"ok\n")


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def client(port, interval):
    n = 0
    while True:
        n += 1
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(b"%d\n" % n)
                if s.makefile("rb").readline() != b"ok\n":
                    fptarget.error("request %d: no answer" % n)
        except OSError as e:
            fptarget.error("request %d: %r" % (n, e))
        fptarget.report("served %d" % n)
        time.sleep(interval)


def main():
    interval = fptarget.arg(2, 0.01)
    server = Server(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    threading.Thread(target=client, args=(port, interval), name="client", daemon=True).start()
    fptarget.announce(sys.argv[1], port=port)
    server.serve_forever()


if __name__ == "__main__":
    main()
