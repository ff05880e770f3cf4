"""A real pre-forking service: gunicorn's arbiter (this process) and its sync workers serving a
small Flask app, as a new user runs one. Needs flask and gunicorn (the test installs them in a
virtual environment of its own).

Usage: gunicorn_shop.py READY [WORKERS=1]
Ready facts: port=PORT (announced when the arbiter listens; its workers boot next). Requests:
GET /total?n=N prices a basket, spelling the call of Pricing.total one of five ways (N % 5, as
tests/targets/thread_server.py), and answers the total.
"""
import socket
import sys

import fptarget
from flask import Flask, request
from gunicorn.app.base import BaseApplication

app = Flask(__name__)


class Pricing(object):
    def total(self, prices, coupon=None):
        return sum(prices) / (2.0 if coupon == "HALF" else 1.0)


PRICING = Pricing()
SPELLINGS = (
    lambda p: PRICING.total(p, coupon="HALF"),
    lambda p: PRICING.total(p, "HALF"),
    lambda p: PRICING.total(p),
    lambda p: PRICING.total(p, coupon=None),
    lambda p: PRICING.total(prices=p, coupon="HALF"),
)


@app.route("/total")
def total():
    n = int(request.args.get("n", "0"))
    prices = [n % len(SPELLINGS), 10, 20]
    return "%s\n" % SPELLINGS[n % len(SPELLINGS)](prices)


class Shop(BaseApplication):
    def __init__(self, port, workers, when_ready):
        self.port = port
        self.workers = workers
        self.when_ready = when_ready
        BaseApplication.__init__(self)

    def load_config(self):
        self.cfg.set("bind", "127.0.0.1:%d" % self.port)
        self.cfg.set("workers", self.workers)
        self.cfg.set("accesslog", None)
        self.cfg.set("loglevel", "warning")
        self.cfg.set("when_ready", self.when_ready)

    def load(self):
        return app


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    workers = int(fptarget.arg(2, 1))
    port = free_port()

    def when_ready(server):
        # The arbiter listens; its workers come next (the test waits for them and an answer).
        fptarget.announce(sys.argv[1], port=port)

    Shop(port, workers, when_ready).run()


if __name__ == "__main__":
    main()
