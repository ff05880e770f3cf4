"""`stack` read from outside the process (server/remote/): no agent is loaded for it, it works
while a thread holds the GIL forever and while threads are deadlocked, and what it reads
matches what the interpreter says about itself. `stack -a` (asyncio tasks) goes through the
agent. Every target must be unharmed afterwards (the fixtures check it at teardown)."""

import json
import os
import re

import pytest

from conftest import KINDS, Target, agent_mappings, proc_state

# ---------------------------------------------------------------------------------------
# Targets of this module
# ---------------------------------------------------------------------------------------


class KnownStacks(Target):
    kind = "known_stacks"
    line_re = re.compile(r"^tick \d+ slept=\d+\.\d+$")
    progress_re = line_re

    def expected(self):
        return json.loads(self.facts["expected"])


class Deadlock(Target):
    kind = "deadlock"
    line_re = re.compile(r"^tick \d+$")
    progress_re = line_re


class AsyncTasks(Target):
    kind = "asyncio_tasks"
    line_re = re.compile(r"^tick \d+$")
    progress_re = line_re


for _cls in (KnownStacks, Deadlock, AsyncTasks):
    KINDS.setdefault(_cls.kind, _cls)


@pytest.fixture(scope="module")
def known(module_spawn):
    return module_spawn("known_stacks")


@pytest.fixture(scope="module")
def hog(module_spawn):
    return module_spawn("gil_hog")


@pytest.fixture(scope="module")
def deadlock(module_spawn):
    return module_spawn("deadlock")


@pytest.fixture(scope="module")
def many(module_spawn):
    return module_spawn("threads50")


@pytest.fixture(scope="module")
def tasks(module_spawn):
    return module_spawn("asyncio_tasks")


def threads_by_name(stack):
    return {t["name"]: t for t in stack["threads"]}


def describe(thread):
    return "\n".join(
        "%s:%s %s | %s" % (os.path.basename(f["file"]), f["line"], f["function"], f["source"]) for f in thread["frames"]
    )


def assert_no_agent(t):
    assert agent_mappings(t.pid) == [], "fp loaded its agent for an outside command:\n%s" % agent_mappings(t.pid)


# ---------------------------------------------------------------------------------------
# Reading from outside: what the target says about itself
# ---------------------------------------------------------------------------------------


def test_matches_the_targets_own_stacks(known):
    stack = known.json("stack")
    assert stack["source"] == "outside" and stack["pid"] == known.pid
    threads = threads_by_name(stack)
    for name, expected in known.expected().items():
        assert name in threads, "thread %r missing: %s" % (name, sorted(threads))
        got = [[f["file"], f["line"], f["function"]] for f in threads[name]["frames"]]
        assert got == expected, "thread %r:\nfp read:\n%s\nthe target says:\n%s" % (
            name,
            "\n".join(map(str, got)),
            "\n".join(map(str, expected)),
        )
    assert_no_agent(known)


def test_threads_ids_and_flags(known, python):
    stack = known.json("stack")
    threads = threads_by_name(stack)
    assert stack["threads"][0]["name"] == "MainThread" and stack["threads"][0]["main"], stack["threads"][0]
    assert stack["threads"][0]["native_id"] == known.pid
    assert [t["name"] for t in stack["threads"] if t["main"]] == ["MainThread"]
    for name, native in json.loads(known.facts["native"]).items():
        assert threads[name]["native_id"] == native, (name, threads[name]["native_id"], native)
        assert threads[name]["daemon"] is True and threads[name]["state"] == "S", threads[name]
        assert threads[name]["holds_gil"] is False
    assert "unicode-\U0001f40d" in threads  # a 4-byte str read and converted to UTF-8
    leaf = threads["unicode-\U0001f40d"]["frames"][-1]
    assert leaf["function"] == "unicode_\u00fcn\u00efc\u00f8d\u00e9_\u03bb", leaf  # a 2-byte str
    method = threads["method"]["frames"][-1]
    assert method["function"] == "run" and "lock.acquire()" in method["source"], method
    expected_qualname = "Worker.run" if python.version >= (3, 11) else "run"
    assert method["qualname"] == expected_qualname, method


def test_json_schema(known):
    stack = known.json("stack")
    assert isinstance(stack["pause_ms"], float) and 0 < stack["pause_ms"] < 1000, stack["pause_ms"]
    assert re.match(r"^3\.\d+", stack["python_version"]), stack["python_version"]
    kinds = {
        "ident": int,
        "name": str,
        "main": bool,
        "holds_gil": bool,
        "python": bool,
        "state": str,
        "state_name": str,
        "frames": list,
    }
    for t in stack["threads"]:
        for key, kind in kinds.items():
            assert isinstance(t[key], kind), (key, t)
        assert t["native_id"] is None or isinstance(t["native_id"], int)
        assert t["daemon"] in (None, True, False)
        for f in t["frames"]:
            assert f["kind"] == "python"
            assert isinstance(f["file"], str) and f["file"]
            assert isinstance(f["line"], int) and f["line"] >= 0
            assert isinstance(f["function"], str) and f["function"]
            assert isinstance(f["qualname"], str) and isinstance(f["source"], str)


def test_human_traceback(known):
    r = known.cmd("stack").ok()
    assert "read from outside" in r.out, r.describe()
    assert re.search(
        r"^Thread deep \(native \d+, ident \d+, daemon\) sleeping, most recent call last:$", r.out, re.M
    ), r.describe()
    assert "in leaf_sleep\n    record(name); time.sleep(100000)" in r.out, r.describe()
    # most recent call last: the thread's own functions come after threading's bootstrap
    deep = r.out.split("Thread deep")[1].split("\nThread ")[0]
    assert deep.index("_bootstrap") < deep.index("in middle") < deep.index("in leaf_sleep"), deep


def test_file_output(known, tmp_path):
    path = tmp_path / "stacks.txt"
    r = known.cmd("stack -f %s" % path).ok()
    assert "stack written to %s" % path in r.out, r.describe()
    text = path.read_text(encoding="utf-8")
    assert "Thread deep" in text and "in leaf_sleep" in text, text
    path2 = tmp_path / "stacks2.txt"
    r = known.cmd("stack -f %s" % path2, "--json").ok()
    assert json.loads(r.out)["result"]["threads"], r.describe()  # stdout: only the JSON line
    assert "written to" in r.err and "Thread deep" in path2.read_text(encoding="utf-8")
    known.cmd("stack -f /no/such/dir/x.txt").failed()


def test_stack_of_another_pid(known, deadlock):
    """stack PID reads that process, not the one given to fp; neither gets an agent."""
    r = known.cmd("stack %d" % deadlock.pid, "--json").ok()
    stack = json.loads(r.out)["result"]
    assert stack["pid"] == deadlock.pid and "first" in threads_by_name(stack)
    assert_no_agent(known)
    assert_no_agent(deadlock)


def test_native_frames(known):
    r = known.cmd("stack --native", "--json")
    if r.rc != 0:  # native unwinding not in this build
        assert "native" in r.err.lower(), r.describe()
        return
    stack = json.loads(r.out.splitlines()[-1])["result"]
    deep = threads_by_name(stack)["deep"]
    kinds = [f["kind"] for f in deep["frames"]]
    assert "native" in kinds and "python" in kinds, describe(deep)
    python = [f["function"] for f in deep["frames"] if f["kind"] == "python"]
    assert python[-2:] == ["middle", "leaf_sleep"], python
    assert deep["frames"][-1]["kind"] == "native", describe(deep)  # the C sleep, innermost


# ---------------------------------------------------------------------------------------
# Stuck processes
# ---------------------------------------------------------------------------------------


def test_gil_held_forever(hog):
    r = hog.cmd("stack", "--json", timeout=20).ok()
    assert r.elapsed < 10, r.describe()
    stack = json.loads(r.out)["result"]
    holders = [t for t in stack["threads"] if t["holds_gil"]]
    assert len(holders) == 1, [(t["name"], t["holds_gil"]) for t in stack["threads"]]
    holder = holders[0]
    assert holder["native_id"] == int(hog.facts["hog"]) and holder["name"] == "gil-hog", holder
    assert holder["frames"][-1]["function"] == "hog", describe(holder)
    assert "libc.sleep(100000)" in holder["frames"][-1]["source"], describe(holder)
    main = threads_by_name(stack)["MainThread"]
    # the hog holds the GIL from before start() returns: main is in t.start() or t.join()
    assert any(f["function"] == "main" for f in main["frames"]), describe(main)
    human = hog.cmd("stack").ok().out
    assert re.search(r"^Thread gil-hog .*\[holds the GIL\]", human, re.M), human
    assert_no_agent(hog)


def test_deadlocked_threads(deadlock):
    stack = deadlock.json("stack")
    threads = threads_by_name(stack)
    for name, fn, lock in (("first", "take_a_then_b", "lock_b"), ("second", "take_b_then_a", "lock_a")):
        t = threads[name]
        assert t["native_id"] == int(deadlock.facts[name]), t
        leaf = t["frames"][-1]
        assert leaf["function"] == fn and "%s.acquire()" % lock in leaf["source"], describe(t)
        assert [f["function"] for f in t["frames"]][-2] == "run", describe(t)  # called by Thread.run
        assert not t["holds_gil"]
    assert_no_agent(deadlock)


def test_fifty_threads(many):
    stack = many.json("stack")
    names = sorted(t["name"] for t in stack["threads"])
    assert names == sorted(["MainThread"] + ["worker-%02d" % i for i in range(50)]), names
    tids = set(int(x) for x in os.listdir("/proc/%d/task" % many.pid))
    native = [t["native_id"] for t in stack["threads"]]
    assert len(set(native)) == 51 and set(native) <= tids, native
    for t in stack["threads"]:
        if t["name"] != "MainThread":
            assert any(f["function"] == "worker" for f in t["frames"]), (t["name"], describe(t))
    assert stack["pause_ms"] < 500, stack["pause_ms"]
    assert_no_agent(many)


def test_with_the_agent_attached(spawn):
    """With an agent loaded, stack still reads from outside and leaves the agent's threads out."""
    t = spawn("sleeper")
    t.cmd("status").ok()
    assert agent_mappings(t.pid)
    stack = t.json("stack")
    assert [th["name"] for th in stack["threads"]] == [stack["threads"][0]["name"]], stack["threads"]
    main = stack["threads"][0]
    assert main["main"] and main["frames"][0]["function"] == "<module>", describe(main)
    assert "time.sleep(interval)" in main["frames"][-1]["source"], describe(main)


def test_stopped_process(spawn):
    """A process stopped by job control is read as it is (nothing to stop) and left stopped."""
    import signal
    import time

    t = spawn("sleeper")
    os.kill(t.pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 5
        while proc_state(t.pid) != "T" and time.monotonic() < deadline:
            time.sleep(0.01)
        stack = t.json("stack")
        main = stack["threads"][0]
        assert main["state"] == "T" and main["state_name"] == "stopped", main
        assert "time.sleep(interval)" in main["frames"][-1]["source"], describe(main)
        assert proc_state(t.pid) == "T", "fp resumed a process that job control stopped"
    finally:
        os.kill(t.pid, signal.SIGCONT)


def test_not_python(fp, tmp_path):
    import subprocess

    sleep = subprocess.Popen(["sleep", "30"])
    try:
        r = fp([sleep.pid, "--cmd", "stack"]).failed()
        assert "not a CPython" in r.err, r.describe()
    finally:
        sleep.kill()
        sleep.wait()


# ---------------------------------------------------------------------------------------
# stack -a: asyncio tasks (through the agent)
# ---------------------------------------------------------------------------------------


def test_async_tasks(tasks):
    r = tasks.cmd("stack -a", "--json").ok()
    model = json.loads(r.out)["result"]
    assert model["asyncio"] is True and len(model["loops"]) == 1, model
    loop = model["loops"][0]
    assert loop["running"] is True and loop["thread"] == "MainThread", loop
    by_name = {t["name"]: t for t in loop["tasks"]}
    states = {name: t["state"] for name, t in by_name.items()}
    # Done tasks run nothing and are left out (counted), but for a failure nobody retrieved.
    want = {"sleeper": "WAITING", "consumer": "WAITING", "waiter": "WAITING", "ticker": "WAITING", "failed": "FAILED"}
    assert {k: states.get(k) for k in want} == want, states
    assert "finished" not in states and "cancelled" not in states, states
    # asyncio.run's main task (Task-1) waits too: six listed
    assert loop["done"] == 2 and model["done"] == 2 and model["tasks"] == len(states) == 6, model
    assert "ValueError: expected failure" in by_name["failed"]["exception"], by_name["failed"]
    consumer = by_name["consumer"]
    assert consumer["coroutine"] == "consume", consumer
    chain = [(f["function"], os.path.basename(f["file"])) for f in consumer["awaits"]]
    assert chain[0] == ("consume", "asyncio_tasks.py") and chain[1][0].endswith("get"), chain
    assert consumer["awaits"][0]["source"] == "await queue.get()", consumer["awaits"][0]
    ticker = by_name["ticker"]["awaits"][0]
    assert ticker["source"] == "await asyncio.sleep(0.1)" and ticker["line"] > 0, ticker
    assert by_name["waiter"]["waiting_on"].startswith("Task sleeper") or "sleeper" in by_name["waiter"]["waiting_on"]
    human = tasks.cmd("stack -a").ok().out
    assert "Task consumer WAITING coroutine consume" in human, human
    assert "Task failed FAILED" in human and "await queue.get()" in human, human
    assert "6 tasks (and 2 done, not shown)" in human and "Task finished" not in human, human


def test_async_with_the_gil_held_forever(spawn):
    """-a needs the GIL: it gives up at --timeout and says that stack without -a works."""
    t = spawn("gil_hog")
    r = t.cmd("stack -a", "--timeout", "1").failed()
    assert "GIL" in r.err and "without -a" in r.err, r.describe()
    stack = t.json("stack")  # from outside, with the stuck agent inside: its threads left out
    assert sorted(th["name"] for th in stack["threads"]) == ["MainThread", "gil-hog"], stack["threads"]
