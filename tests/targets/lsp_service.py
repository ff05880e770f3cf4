"""A small shop service for fp-lsp's tests: functions of every kind an editor shows lenses on
(module functions, methods, a property, a nested function, a generator, a coroutine), one that
raises, one only called in bursts of exactly 100 on SIGUSR1 (so a monitor's count can be
checked exactly), and one that is never loaded (defined under a condition that is false).

Usage: lsp_service.py READY
Progress: "tick N price=P" every 50 ms (P: price("apple", 2), which a reload changes),
"burst N" after each burst of rare(). Errors: "ERROR ...".
"""
import asyncio
import os
import signal
import sys
import time

import fptarget

BURST = 100
TICKS = 0
BURSTS = 0
_burst_wanted = [0]


class Cart:
    def __init__(self):
        self.items = []

    def add(self, sku, qty=1):
        self.items.append((sku, qty))
        return len(self.items)

    @property
    def total(self):
        return sum(price(sku, qty) for sku, qty in self.items)


def price(sku, qty=1, coupon=None):
    def discount(amount):
        return amount / 2 if coupon == "HALF" else amount

    base = {"apple": 3, "pear": 5}.get(sku, 1)
    return discount(base * qty)


def checkout(cart):
    if not cart.items:
        raise ValueError("empty cart")
    return cart.total


def numbers(n):
    for i in range(n):
        yield i


async def fetch(x):
    await asyncio.sleep(0)
    return x + 1


def rare(i):
    return i * i


if os.environ.get("FP_NEVER_SET_THIS"):

    def never_loaded():
        return 1


def _on_usr1(signum, frame):
    _burst_wanted[0] += 1


def main():
    global TICKS, BURSTS
    signal.signal(signal.SIGUSR1, _on_usr1)
    loop = asyncio.new_event_loop()
    fptarget.announce(sys.argv[1])
    while True:
        time.sleep(0.05)
        TICKS += 1
        cart = Cart()
        cart.add("apple", 2)
        p = price("apple", 2)
        if cart.total != p:
            fptarget.error("total %r != price %r" % (cart.total, p))
        if sum(numbers(3)) != 3 or loop.run_until_complete(fetch(1)) != 2:
            fptarget.error("numbers or fetch changed")
        if TICKS % 4 == 0:
            try:
                checkout(Cart())
                fptarget.error("checkout of an empty cart did not raise")
            except ValueError:
                pass
        fptarget.report("tick %d price=%s" % (TICKS, p))
        while _burst_wanted[0] > BURSTS:
            for i in range(BURST):
                rare(i)
            BURSTS += 1
            fptarget.report("burst %d" % BURSTS)


if __name__ == "__main__":
    main()
