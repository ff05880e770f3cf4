"""An asyncio event loop with named tasks in every state: waiting on a sleep, on a queue, on
another task; finished, failed and cancelled ones kept alive; and a ticker for progress.

Usage: asyncio_tasks.py READY
Progress: "tick N". Errors: "ERROR ...".
"""
import asyncio
import sys

import fptarget

KEEP = []  # done tasks stay in asyncio's registry while they are referenced


async def sleepy():
    await asyncio.sleep(100000)


async def consume(queue):
    await queue.get()


async def wait_for_other(other):
    await other


async def succeed():
    return 42


async def fail():
    raise ValueError("expected failure")


async def ticker():
    n = 0
    while True:
        await asyncio.sleep(0.1)
        n += 1
        fptarget.report("tick %d" % n)


async def main():
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda loop, context: None)  # the failed task is on purpose
    queue = asyncio.Queue()
    other = asyncio.ensure_future(sleepy())
    other.set_name("sleeper")
    named = {
        "consumer": consume(queue),
        "waiter": wait_for_other(other),
        "finished": succeed(),
        "failed": fail(),
        "cancelled": sleepy(),
    }
    for name, coro in named.items():
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        KEEP.append(task)
    KEEP.append(other)
    ticks = asyncio.ensure_future(ticker())
    ticks.set_name("ticker")
    await asyncio.sleep(0.05)
    for task in KEEP:
        if task.get_name() == "cancelled":
            task.cancel()
    await asyncio.sleep(0.05)
    fptarget.announce(sys.argv[1])
    await ticks


if __name__ == "__main__":
    asyncio.run(main())
