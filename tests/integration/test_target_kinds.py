"""Attach to each kind of target — blocked in a sleep, in accept, in a lock wait, running
Python code, in an event loop, with 50 threads — run status, stack and getglobal, and check
that the target's own work goes on exactly as before (no short sleeps, no EINTR, accept
still accepts, the lock wait lasts its full timeout, every task and thread keeps ticking)."""

import ast
import os

from conftest import agent_mappings


def main_thread(stack):
    mains = [t for t in stack["threads"] if t["main"]]
    assert len(mains) == 1, "expected exactly one main thread: %s" % [t["name"] for t in stack["threads"]]
    return mains[0]


def frame_sources(thread):
    return [
        "%s:%s %s | %s" % (os.path.basename(f["file"]), f["line"], f["function"], f["source"]) for f in thread["frames"]
    ]


def assert_frames_well_formed(stack):
    for t in stack["threads"]:
        assert t["frames"], "thread %r has no frames" % t["name"]
        for f in t["frames"]:
            assert isinstance(f["file"], str) and f["file"]
            assert isinstance(f["line"], int) and f["line"] >= 0
            assert isinstance(f["function"], str) and f["function"]
            assert isinstance(f["source"], str)


def in_script(thread, script, needle=None):
    """True when some frame of thread is in script (and its source line contains needle)."""
    return any(
        os.path.basename(f["file"]) == script and (needle is None or needle in f["source"]) for f in thread["frames"]
    )


def attach_and_inspect(t, python):
    """The common part: status, getglobal, status again, stack. Returns the stack."""
    status = t.json("status")
    assert status["pid"] == t.pid
    assert status["python_version"].startswith("%d.%d" % python.version), status
    assert status["clients"] >= 1
    assert len([m for m in agent_mappings(t.pid) if " r-xp " in m]) == 1, agent_mappings(t.pid)

    value = t.json("getglobal fptarget MARKER")["value"]
    assert value["type"] == "str" and value["repr"] == "'fp-integration-target'", value

    # The Python side is up now that a Python command has been answered.
    assert t.json("status")["python_ready"] is True

    stack = t.json("stack")
    assert stack["pid"] == t.pid
    assert_frames_well_formed(stack)
    main = main_thread(stack)
    assert main["frames"][0]["function"] == "<module>", frame_sources(main)
    assert_threading_intact(t, stack)
    return stack


THREADING_VIEW = (
    "(lambda th: th and (th.main_thread().ident, sorted(x.ident for x in th._active.values())))"
    "(target.get('threading'))"
)


def assert_threading_intact(t, stack):
    """The agent's threads run Python code; the program's threading module must not see them
    (no _DummyThread entries) and must still take the real main thread for its main thread."""
    view = t.json('getglobal sys modules -e "%s" -r' % THREADING_VIEW)["value"]["repr"]
    if view == "None":
        return  # threading not imported: nothing to disturb
    main_ident, active = ast.literal_eval(view)
    assert main_ident == main_thread(stack)["ident"], "threading.main_thread() is not the main thread"
    assert active == sorted(x["ident"] for x in stack["threads"]), (
        "threading._active lists other threads than the program's: %s vs %s" % (active, stack["threads"])
    )


def test_sleeper(spawn, python):
    t = spawn("sleeper")
    stack = attach_and_inspect(t, python)
    main = main_thread(stack)
    # In its sleep, or (for microseconds per tick) writing its progress line.
    assert in_script(main, "sleeper.py", "time.sleep(interval)") or in_script(main, "fptarget.py"), frame_sources(main)
    assert len(stack["threads"]) == 1, "agent threads must not be listed: %s" % stack["threads"]
    t.assert_healthy()


def test_acceptor(spawn, python):
    t = spawn("acceptor")
    stack = attach_and_inspect(t, python)
    main = main_thread(stack)
    assert in_script(main, "acceptor.py", "srv.accept()"), frame_sources(main)
    assert main["frames"][-1]["function"] == "accept", frame_sources(main)
    t.assert_healthy()  # connects, and the blocked accept must take the connection
    t.cmd("status").ok()
    t.assert_healthy()


def test_cpu(spawn, python):
    t = spawn("cpu")
    stack = attach_and_inspect(t, python)
    main = main_thread(stack)
    assert any(f["function"] in ("work", "main") and os.path.basename(f["file"]) == "cpu.py" for f in main["frames"]), (
        frame_sources(main)
    )
    t.assert_healthy()


def test_locker(spawn, python):
    t = spawn("locker")
    stack = attach_and_inspect(t, python)
    main = main_thread(stack)
    assert in_script(main, "locker.py", "lock.acquire(timeout=timeout)") or in_script(main, "fptarget.py"), (
        frame_sources(main)
    )
    assert main["name"] == "MainThread"  # the program uses threading, so threads have its names
    t.assert_healthy()
    waits = [float(l.split("waited=")[1]) for l in t.progress()]
    assert waits and min(waits) >= 0.3 - 0.001, waits  # locker.py also checks each wait itself


def test_asyncio(spawn, python):
    t = spawn("asyncio_ticks")
    stack = attach_and_inspect(t, python)
    main = main_thread(stack)
    assert in_script(main, "asyncio_ticks.py", "asyncio.run(main())"), frame_sources(main)
    assert any(f["function"] == "run_forever" for f in main["frames"]), frame_sources(main)
    t.assert_healthy()


def test_threads50(spawn, python):
    t = spawn("threads50")
    stack = attach_and_inspect(t, python)
    names = sorted(x["name"] for x in stack["threads"])
    expected = sorted(["MainThread"] + ["worker-%02d" % i for i in range(50)])
    assert names == expected, "threads listed: %s" % names
    for th in stack["threads"]:
        if th["name"].startswith("worker-"):
            assert not th["main"] and th["daemon"] is True, th["name"]
            assert in_script(th, "threads50.py"), (th["name"], frame_sources(th))
        assert isinstance(th["ident"], int)
    native = [th["native_id"] for th in stack["threads"]]
    tids = set(int(x) for x in os.listdir("/proc/%d/task" % t.pid))
    assert all(n in tids for n in native), "native ids %s not among the target's tasks" % native
    t.assert_healthy()


def test_inspectee(spawn, python):
    t = spawn("inspectee")
    attach_and_inspect(t, python)
    ticks = t.json("getglobal __main__ TICKS")["value"]
    assert ticks["type"] == "int" and int(ticks["repr"]) >= 0
    t.assert_healthy()
    later = int(t.json("getglobal __main__ TICKS")["value"]["repr"])
    assert later >= int(ticks["repr"]) + 3, "the target's own loop did not advance its global"
