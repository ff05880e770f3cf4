"""A daemon thread that holds the GIL forever (a C sleep called through ctypes.PyDLL, which
does not release the GIL); the main thread then waits for the GIL forever.

Usage: gil_hog.py READY
Ready facts: hog=THREAD_NATIVE_ID (announced just before the hog's call). Progress: none.
"""
import ctypes
import sys
import threading

import fptarget


def hog():
    libc = ctypes.PyDLL(None)
    fptarget.announce(sys.argv[1], hog=threading.get_native_id())
    libc.sleep(100000)


def main():
    t = threading.Thread(target=hog, name="gil-hog", daemon=True)
    t.start()
    t.join()


if __name__ == "__main__":
    main()
