"""The service call of traced_bench.py, run N times in this process, each recorded by the agent
library's recorder when MODE is "rec" (start, the call, stop, tree: what a trace does around an
invocation, without its probe and its report), or plain when MODE is "base". For
bench/trace_instructions.py, which counts the instructions of such runs under callgrind.

Usage: trace_inprocess.py LIBFPAGENT MODE N

The library is loaded with ctypes, as an attach would (its constructor starts its I/O thread
and socket); one getglobal request on that socket makes it import its Python package, whose
`_native_trace` holds the recorder. On 3.12+ the recorder hears the calls through
sys.monitoring (tool 5, the events trace.py sets), before through a profile function.
"""
import ctypes
import json
import os
import socket
import sys
import time

import traced_bench


def load_recorder(library):
    ctypes.CDLL(library)
    path = "/tmp/fp-%d/agent-%d-%d.sock" % (os.geteuid(), os.stat("/proc/self/ns/pid").st_ino, os.getpid())
    deadline = time.monotonic() + 30
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            sys.exit("the agent's socket %s did not appear" % path)
        time.sleep(0.01)
    client = socket.socket(socket.AF_UNIX)
    client.connect(path)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "getglobal",
                       "params": {"module": "__main__", "field": "__name__"}}).encode()
    client.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    answer = b""
    while b'"result"' not in answer:  # the worker answers once the package is imported
        data = client.recv(65536)
        if not data:
            sys.exit("the agent closed the connection: %r" % answer)
        answer += data
    client.close()
    functions = getattr(sys.modules.get("fp_agent"), "_native_trace", None)
    if not isinstance(functions, dict):
        sys.exit("the agent library has no recorder for this Python")
    if sys.version_info >= (3, 12):
        mon = sys.monitoring
        callbacks = (("PY_START", "ev_start"), ("PY_RESUME", "ev_start"), ("PY_THROW", "ev_start"),
                     ("PY_RETURN", "ev_return"), ("PY_YIELD", "ev_return"), ("PY_UNWIND", "ev_return"),
                     ("CALL", "ev_call"), ("C_RETURN", "ev_c_return"), ("C_RAISE", "ev_c_return"))
        mask = 0
        mon.use_tool_id(5, "fp trace")
        for event, name in callbacks:
            mon.register_callback(5, getattr(mon.events, event), functions[name])
            mask |= getattr(mon.events, event)
        functions["monitor"](5, mask, mon.set_events)
    return functions


def main():
    library, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    traced_bench.setup_db(60000)
    arg = list(range(2))
    recorder = load_recorder(library)  # in both modes: only the recording differs
    code = traced_bench.serve.__code__
    for _ in range(3):  # warm-up, never recorded
        traced_bench.serve(arg)
    nodes = 0
    for _ in range(count):
        if mode != "rec":
            traced_bench.serve(arg)
            continue
        handle = recorder["start"](code, None, None, 401, 100000)
        traced_bench.serve(arg)
        recorder["stop"](handle, 1)
        nodes = len(recorder["tree"](handle)[5])
    print("%s calls=%d nodes=%d" % (mode, count, nodes))


if __name__ == "__main__":
    main()
