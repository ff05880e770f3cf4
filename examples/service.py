#!/usr/bin/env python3
"""fp's demo service: a small JSON API over HTTP on 127.0.0.1 (standard library only), with a
background thread that keeps ordering from it so there is always something to look at.

    GET  /items             the inventory
    GET  /quote?sku=S&qty=N  a price quote
    POST /order  {"sku": S, "qty": N}

Port: $FP_DEMO_PORT or 8765 (0 picks a free one). Prints "pid=PID port=PORT" once it serves.
"""

import json
import os
import random
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from shop import inventory, pricing  # noqa: E402

STATS = {"requests": 0, "orders": 0, "errors": 0, "started": time.time()}


class Handler(BaseHTTPRequestHandler):
    server_version = "fp-demo-shop/1.0"

    def log_message(self, fmt, *args):  # keep the terminal quiet for the demo
        pass

    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        STATS["requests"] += 1
        url = urllib.parse.urlparse(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path == "/items":
            return self._send(200, inventory.snapshot())
        if url.path == "/quote":
            try:
                sku = query["sku"][0]
                qty = int(query.get("qty", ["1"])[0])
                return self._send(200, pricing.PriceBook.quote(sku, qty))
            except (KeyError, ValueError) as e:
                STATS["errors"] += 1
                return self._send(400, {"error": "bad quote request: %s" % e})
        self._send(404, {"error": "no such path: %s" % url.path})

    def do_POST(self):
        STATS["requests"] += 1
        if self.path != "/order":
            return self._send(404, {"error": "no such path: %s" % self.path})
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            left = inventory.Warehouse.reserve(body["sku"], int(body.get("qty", 1)))
            STATS["orders"] += 1
            self._send(
                200,
                {
                    "ok": True,
                    "stock_left": left,
                    "quote": pricing.PriceBook.quote(body["sku"], int(body.get("qty", 1))),
                },
            )
        except (KeyError, ValueError, inventory.OutOfStock) as e:
            STATS["errors"] += 1
            self._send(409, {"ok": False, "error": str(e)})


def traffic(base_url, stop):
    """Plays a customer: quotes and orders at random, a few times a second."""
    rng = random.Random(1234)
    skus = list(inventory.ITEMS) + ["unicorn"]
    while not stop.wait(rng.uniform(0.1, 0.4)):
        sku = rng.choice(skus)
        try:
            if rng.random() < 0.5:
                urllib.request.urlopen("%s/quote?sku=%s&qty=%d" % (base_url, sku, rng.randint(1, 5)), timeout=5).read()
            else:
                req = urllib.request.Request(
                    base_url + "/order",
                    method="POST",
                    data=json.dumps({"sku": sku, "qty": rng.randint(1, 3)}).encode(),
                    headers={"Content-Type": "application/json"},
                )
                urllib.request.urlopen(req, timeout=5).read()
        except urllib.error.HTTPError:
            pass  # 4xx answers are part of the traffic
        except OSError:
            pass


def main():
    port = int(os.environ.get("FP_DEMO_PORT", "8765"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    stop = threading.Event()
    threading.Thread(target=traffic, args=("http://127.0.0.1:%d" % port, stop), name="traffic", daemon=True).start()
    print("pid=%d port=%d" % (os.getpid(), port), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.server_close()


if __name__ == "__main__":
    main()
