"""An asyncio event loop running a few named tasks that sleep and tick.

Usage: asyncio_ticks.py READY
Progress: "task NAME tick N". Errors: "ERROR ...".
"""
import asyncio
import sys

import fptarget

PERIODS = {"ticker-fast": 0.05, "ticker-mid": 0.1, "ticker-slow": 0.2}


async def ticker(name, period):
    loop = asyncio.get_running_loop()
    n = 0
    while True:
        t0 = loop.time()
        try:
            await asyncio.sleep(period)
        except BaseException as e:  # noqa: B902
            fptarget.error("exception in task %s: %r" % (name, e))
            raise
        n += 1
        # The loop's clock resolution is the most a timer may fire early.
        if loop.time() - t0 < period - loop._clock_resolution - fptarget.EARLY_TOLERANCE_S:
            fptarget.error("task %s woke early" % name)
        fptarget.report("task %s tick %d" % (name, n))


async def main():
    tasks = [asyncio.ensure_future(ticker(name, period)) for name, period in PERIODS.items()]
    for task, name in zip(tasks, PERIODS):
        task.set_name(name)
    fptarget.announce(sys.argv[1])
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    asyncio.run(main())
