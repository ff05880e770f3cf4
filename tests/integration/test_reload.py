"""reload against a real target (tests/targets/reloadable.py, calling every function of a copy of
tests/targets/reload_lib.py each tick) under every CPython: each kind of function reloaded from
its file and from a source text, --undo several steps back and exactly, each refusal changing
nothing, the warnings, and watch and trace reporting across a reload and an undo.

One target per interpreter serves the module: each test leaves the library's file and the
functions as it found them (the `clean` fixture checks the program's output is back to BASE).
"""

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import FP, KINDS, TARGETS, Target, agent_socket, wait_until

BASE = {
    "plain": "2",
    "defaults": "2",
    "method": "2",
    "klass": "3",
    "static": "0",
    "prop": "7",
    "coro": "11",
    "gen": "6",
    "decorated": "101",
    "outer": "6",
}

# (command names, the edit in reload_lib.py, the output key, its value after the reload)
KINDS_OF_FUNCTIONS = [
    ("reload_lib plain", ("    return x + 1\n", "    return x + 1001\n"), "plain", "1002"),
    ("reload_lib defaults", ("def defaults(x, step=1):", "def defaults(x, step=5):"), "defaults", "6"),
    ("reload_lib Shop method", ("        return x * 2\n", "        return x * 20\n"), "method", "20"),
    ("reload_lib Shop klass", ("        return x * cls.rate\n", "        return x * cls.rate * 10\n"), "klass", "30"),
    ("reload_lib Shop static", ("        return x - 1\n", "        return x - 100\n"), "static", "-99"),
    ("reload_lib Shop prop", ("        return 7\n", "        return 70\n"), "prop", "70"),
    ("reload_lib Shop coro", ("        return x + 10\n", "        return x + 20\n"), "coro", "21"),
    ("reload_lib Shop gen", ("            yield i\n", "            yield i * 10\n"), "gen", "60"),
    ("reload_lib decorated", ("    return x + 100\n", "    return x + 200\n"), "decorated", "201"),
    ("reload_lib outer -nm inner", ("        return v * k\n", "        return v * k + 1\n"), "outer", "7"),
]
KIND_NAMES = [
    "function",
    "function",
    "method",
    "classmethod",
    "staticmethod",
    "property",
    "method",
    "method",
    "function",
    "nested",
]


class Reloadable(Target):
    kind = "reloadable"
    line_re = re.compile(r"^tick \d+( \w+=-?\d+)+$")
    progress_re = line_re
    settle_progress = 2

    def latest(self):
        lines = self.progress()
        return dict(kv.split("=") for kv in lines[-1].split()[2:]) if lines else {}

    def wait_values(self, expected, timeout=15):
        """Waits for a tick, printed after now, whose values include `expected`."""
        base = len(self.progress())

        def seen():
            lines = self.progress()[base:]
            for line in lines:
                got = dict(kv.split("=") for kv in line.split()[2:])
                if all(got.get(k) == v for k, v in expected.items()):
                    return got
            return None

        return wait_until(seen, timeout, lambda: "ticks with %s; last %s" % (expected, self.latest()))

    def code_id(self, names):
        r = self.json('getglobal %s -e "id(target.__code__)"' % names)
        return int(r["value"]["repr"])


KINDS["reloadable"] = Reloadable


@pytest.fixture(scope="module")
def libdir(tmp_path_factory, python):
    d = tmp_path_factory.mktemp("lib-" + python.id)
    shutil.copy(os.path.join(TARGETS, "reload_lib.py"), str(d / "reload_lib.py"))
    return d


@pytest.fixture(scope="module")
def target(module_spawn, libdir):
    return module_spawn("reloadable", str(libdir))


@pytest.fixture
def clean(target, libdir):
    """Each test starts and ends with the original file and the original behaviour."""
    original = open(os.path.join(TARGETS, "reload_lib.py")).read()
    yield target
    with open(str(libdir / "reload_lib.py"), "w") as f:
        f.write(original)
    if target.latest() != BASE:
        # A test that failed half-way: undo what it left, so the next test starts clean (this
        # test has failed already).
        for names, _, _, _ in KINDS_OF_FUNCTIONS:
            while target.cmd("reload --undo %s" % names).rc == 0:
                pass
    assert target.latest() == BASE or target.wait_values(BASE, timeout=5) == BASE


def edited(replacements):
    text = open(os.path.join(TARGETS, "reload_lib.py")).read()
    for old, new in replacements:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def run_json(t, *commands, **kw):
    """[(result or None, error or None, [notifications])] per command of one `fp --json` run."""
    args = ["--json"]
    for c in commands:
        args += ["--cmd", c]
    run = t.fp(*args, **kw)
    out = []
    for rec in run.records():
        if "notification" in rec:
            out[-1][2].append(rec["notification"])
        else:
            out.append((rec.get("result"), rec.get("error"), []))
    return run, out


def reload_all(t, suffix=""):
    run, out = run_json(t, *["reload %s%s" % (names, suffix) for names, _, _, _ in KINDS_OF_FUNCTIONS])
    run.ok()
    assert len(out) == len(KINDS_OF_FUNCTIONS), run.describe()
    return [r for r, _, _ in out]


def undo_all(t):
    run, out = run_json(t, *["reload --undo %s" % names for names, _, _, _ in KINDS_OF_FUNCTIONS])
    run.ok()
    return [r for r, _, _ in out]


NEW = dict((key, value) for _, _, key, value in KINDS_OF_FUNCTIONS)


# ------------------------------------------------------------------------------------------
# Every kind of function, from the file and from a source text; undo


def test_every_kind_from_the_file(clean, libdir):
    with open(str(libdir / "reload_lib.py"), "w") as f:
        f.write(edited([edit for _, edit, _, _ in KINDS_OF_FUNCTIONS]))
    results = reload_all(clean)
    for r, kind in zip(results, KIND_NAMES):
        assert r["applied"] and r["source"]["from"] == "file" and r["located"]["kind"] == kind, r
        assert r["source"]["filename"] == str(libdir / "reload_lib.py") and r["versions"] == 1
        # The file changed since it was loaded and fp had not kept it: the running code's own text
        # is gone (unless Python's line cache holds it); the result says which.
        assert r["diff"] is None and r["diff_note"] or r["old_source"]["from"] == "line cache", r
    clean.wait_values(NEW)
    # The next reload of the same function has a diff: the text of the previous reload.
    with open(str(libdir / "reload_lib.py"), "w") as f:
        f.write(edited([("    return x + 1\n", "    return x + 2001\n")]))
    ((r, err, _),) = run_json(clean, "reload reload_lib plain")[1]
    assert err is None and r["old_source"]["from"] == "previous reload", (r, err)
    assert "-    return x + 1001\n+    return x + 2001\n" in r["diff"], r["diff"]
    clean.wait_values({"plain": "2002"})
    undo_all(clean)  # plain: back to 1001 only
    clean.wait_values(dict(BASE, plain="1002"))
    r = clean.json("reload --undo reload_lib plain")
    # The text of the version put back was not known when the first reload replaced it.
    assert r["versions"] == 0 and (r["diff"] is None) == bool(r["diff_note"]), r
    clean.wait_values(BASE)


def test_every_kind_from_a_source_text(clean, tmp_path):
    source = tmp_path / "edited.py"
    source.write_text(edited([edit for _, edit, _, _ in KINDS_OF_FUNCTIONS]))
    results = reload_all(clean, " --source %s" % source)
    for r, (_, (old, new), _, _), kind in zip(results, KINDS_OF_FUNCTIONS, KIND_NAMES):
        assert r["applied"] and r["source"]["from"] == "text" and r["source"]["filename"] == str(source), r
        # the file's text, or one fp kept of it (the same text, verified against the running code)
        assert r["old_source"]["from"] in ("file", "kept") and r["located"]["kind"] == kind, r
        removed = "".join("-" + line + "\n" for line in old.rstrip("\n").split("\n"))
        added = "".join("+" + line + "\n" for line in new.rstrip("\n").split("\n"))
        assert removed in r["diff"] and added in r["diff"], r["diff"]
        assert r["diff"].startswith("--- ") and "(running)" in r["diff"] and "(new)" in r["diff"]
    clean.wait_values(NEW)
    assert results[1]["changed"]["signature"] == {"old": "(x, step=1)", "new": "(x, step=5)"}
    assert results[1]["changed"]["defaults"] and not results[1]["changed"]["code"]
    undone = undo_all(clean)
    assert all(u["action"] == "undo" and u["versions"] == 0 for u in undone), undone
    clean.wait_values(BASE)


def test_a_watch_keeps_the_text_for_the_diff(clean, libdir):
    """The usual way: watch a function, edit its file, reload it. fp kept the file's text when the
    watch started, so the first reload from the edited file has its diff."""
    run_json(clean, "watch reload_lib Shop static -n 1")[0].ok()
    with open(str(libdir / "reload_lib.py"), "w") as f:
        f.write(edited([("        return x - 1\n", "        return x - 100\n")]))
    r = clean.json("reload reload_lib Shop static")
    assert r["old_source"]["from"] == "kept" and "-        return x - 1\n+        return x - 100\n" in r["diff"], r
    clean.wait_values({"static": "-99"})
    clean.json("reload --undo reload_lib Shop static")
    clean.wait_values(BASE)


def test_the_editor_way_a_source_param(clean):
    """What fp-lsp sends: the whole buffer as `source`, lines moved above the function, and
    --dry-run first (nothing changes), then the reload."""
    text = "# a comment the editor added\n\n\n" + edited([("    return x + 1\n", "    return x + 3001\n")])
    with open(os.path.join(str(clean.workdir), "buffer.py"), "w") as f:
        f.write(text)
    path = os.path.join(str(clean.workdir), "buffer.py")
    ((r, err, _),) = run_json(clean, "reload reload_lib plain --source %s --dry-run" % path)[1]
    assert err is None and r["dry_run"] and not r["applied"] and r["source"]["line"] == 13, (r, err)
    assert clean.wait_values(BASE)["plain"] == "2"
    ((r, err, _),) = run_json(clean, "reload reload_lib plain --source %s -v" % path)[1]
    assert err is None and r["applied"] and r["new_source"] == "def plain(x):\n    return x + 3001\n", (r, err)
    clean.wait_values({"plain": "3002"})
    clean.json("reload --undo reload_lib plain")
    clean.wait_values(BASE)


class AgentClient(object):
    """A client of the agent's socket speaking its JSON-RPC directly, as the editor backend does."""

    def __init__(self, t):
        t.json("status")  # the agent is up
        t.fp_runs += 1
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(agent_socket(t.pid))
        self.buf = b""
        self.next_id = 0

    def call(self, name, params):
        self.next_id += 1
        body = json.dumps({"jsonrpc": "2.0", "id": self.next_id, "method": name, "params": params}).encode()
        self.sock.sendall(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        while True:
            message = self._read()
            if message.get("id") == self.next_id:
                return message

    def _read(self):
        while b"\r\n\r\n" not in self.buf:
            self._recv()
        header, self.buf = self.buf.split(b"\r\n\r\n", 1)
        length = int(re.search(rb"Content-Length: *(\d+)", header).group(1))
        while len(self.buf) < length:
            self._recv()
        body, self.buf = self.buf[:length], self.buf[length:]
        return json.loads(body.decode())

    def _recv(self):
        chunk = self.sock.recv(65536)
        assert chunk, "the agent closed the connection"
        self.buf += chunk

    def close(self):
        self.sock.close()


def test_the_source_param_as_the_editor_sends_it(clean, libdir):
    """The buffer's whole text as `source`, no filename: the new code is compiled under the
    function's own file; a syntax error is placed in the text given."""
    client = AgentClient(clean)
    try:
        text = edited([("    return x + 1\n", "    return x + 4001\n")])
        r = client.call("reload", {"module": "reload_lib", "method": "plain", "source": text})["result"]
        assert r["applied"] and r["source"] == {
            "from": "text",
            "filename": str(libdir / "reload_lib.py"),
            "line": 10,
            "end_line": 11,
            "column": 0,
        }, r
        clean.wait_values({"plain": "4002"})
        bad = "\n\n" + edited([("    return x + 1\n", "    return (x +\n")])
        err = client.call("reload", {"module": "reload_lib", "method": "plain", "source": bad})["error"]
        assert err["code"] == -32002 and err["data"]["reason"] == "syntax" and err["data"]["line"] >= 13, err
        r = client.call("reload.undo", {"module": "reload_lib", "method": "plain"})["result"]
        assert r["versions"] == 0 and "-    return x + 4001\n+    return x + 1\n" in r["diff"], r
        clean.wait_values(BASE)
        err = client.call("reload", {"module": "reload_lib", "method": "plain", "source": text, "sourse": "x"})["error"]
        assert err["code"] == -32602 and "did you mean 'source'" in err["message"], err
    finally:
        client.close()


def test_undo_several_steps_back_exactly(clean, tmp_path):
    code_id = clean.code_id("reload_lib plain")
    defaults_id = clean.json('getglobal reload_lib defaults -e "id(target.__defaults__)"')["value"]["repr"]
    for n in (1, 2, 3):
        source = tmp_path / ("v%d.py" % n)
        source.write_text(
            edited(
                [
                    ("    return x + 1\n", "    return x + %d000\n" % n),
                    ("def defaults(x, step=1):", "def defaults(x, step=%d):" % (n + 10)),
                ]
            )
        )
        run_json(
            clean, "reload reload_lib plain --source %s" % source, "reload reload_lib defaults --source %s" % source
        )[0].ok()
    clean.wait_values({"plain": "3001", "defaults": "14"})
    for n, expected in ((2, "2001"), (1, "1001"), (0, "2")):
        r = clean.json("reload --undo reload_lib plain")
        assert r["versions"] == n, r
        clean.json("reload --undo reload_lib defaults")
        clean.wait_values({"plain": expected, "defaults": str(n + 11) if n else "2"})
    # The very objects the program had: the code object and the defaults tuple.
    assert clean.code_id("reload_lib plain") == code_id
    assert clean.json('getglobal reload_lib defaults -e "id(target.__defaults__)"')["value"]["repr"] == defaults_id
    run = clean.cmd("reload --undo reload_lib plain", "--json").failed()
    err = run.records()[-1]["error"]
    assert err["rpc_code"] == -32001 and err["data"]["missing"] == "version", run.describe()


# ------------------------------------------------------------------------------------------
# Refusals: nothing changes


REFUSALS = [
    # (command names, the edit, rpc code, data.reason or data.missing, what the message says)
    ("reload_lib plain", ("    return x + 1\n", "    return x +\n"), -32002, "syntax", "does not compile"),
    ("reload_lib outer -nm inner", ("def outer(k):\n", "def outer(k):\n    z = 2\n"), None, None, None),
    ("reload_lib plain", ("def plain(x):", "def plane(x):"), -32001, "function", "has no function plain"),
    ("reload_lib builtin_alias", ("builtin_alias = len", "builtin_alias = len"), -32004, None, "builtin"),
    ("reload_lib Shop gen", ("            yield i\n", "            return i\n"), -32004, "kind", "a generator"),
    (
        "reload_lib defaults",
        ("def defaults(x, step=1):", "def defaults(x, step=1 // 0):"),
        -32002,
        "default",
        "ZeroDivisionError",
    ),
]


def test_refusals_change_nothing(clean, tmp_path):
    ids = {
        names: clean.code_id(names.split(" -nm")[0])
        for names in ("reload_lib plain", "reload_lib Shop gen", "reload_lib defaults", "reload_lib outer")
    }
    closure = edited(
        [("def outer(k):\n", "def outer(k):\n    z = 2\n"), ("        return v * k\n", "        return v * k * z\n")]
    )
    for n, (names, edit, code, reason, words) in enumerate(REFUSALS):
        source = tmp_path / ("bad%d.py" % n)
        source.write_text(closure if code is None else edited([edit]))
        run = clean.cmd("reload %s --source %s" % (names, source), "--json").failed()
        err = run.records()[-1]["error"]
        if code is None:  # the closure case: inner would need a cell z its closure does not have
            assert err["rpc_code"] == -32004 and err["data"]["reason"] == "closure", run.describe()
            assert err["data"]["added"] == ["z"] and "closure mismatch" in err["message"], run.describe()
            line = closure.splitlines().index("    def inner(v):") + 1
            assert err["data"]["line"] == line and err["data"]["file"] == str(source), run.describe()
            continue
        assert err["rpc_code"] == code, run.describe()
        if reason == "function":
            assert err["data"]["missing"] == "function" and "plane" in err["data"]["suggestions"], run.describe()
        elif reason is not None:
            assert err["data"]["reason"] == reason, run.describe()
        assert words in err["message"], run.describe()
        if reason == "syntax":  # where the editor puts its diagnostic: the line of the error
            assert err["data"]["line"] == 11 and err["data"]["file"] == str(source), run.describe()
            assert err["data"]["text"].strip() == "return x +" and err["data"]["column"] >= 1, run.describe()
    for names, code_id in ids.items():
        assert clean.code_id(names) == code_id, names
    run = clean.cmd("reload reload_lib plain --source %s" % (tmp_path / "bad0.py")).failed()
    assert "line 11" in run.err and "nothing was changed" in run.err, run.describe()
    clean.wait_values(BASE)


def test_warnings_name_what_the_swap_does_not_reach(clean, tmp_path):
    source = tmp_path / "w.py"
    source.write_text(
        edited(
            [
                ("        time.sleep(0.01)\n", "        time.sleep(0.02)\n"),
                ("            yield i\n", "            yield i * 10\n"),
                ("    return x + 100\n", "    return x + 200\n"),
                ("def plain(x):\n    return x + 1\n", "def plain(x, y=0):\n    return x + y + json.x\n"),
            ]
        )
    )
    run, out = run_json(
        clean,
        *[
            "reload reload_lib %s --source %s --dry-run" % (names, source)
            for names in ("forever", "Shop gen", "decorated", "plain")
        ],
    )
    run.ok()
    kinds = [dict((w["kind"], w) for w in r["warnings"]) for r, _, _ in out]
    running = kinds[0]["running"]
    assert running["threads"][0]["name"] == "looper" and "thread looper" in running["message"], running
    assert kinds[1]["suspended"]["count"] >= 1, kinds[1]
    assert kinds[2]["decorators"]["decorators"] == ["logged"], kinds[2]
    assert "not applied again" in kinds[2]["decorators"]["message"]
    assert "signature" in kinds[3] and kinds[3]["undefined_names"]["names"] == ["json"], kinds[3]
    assert all(r["dry_run"] and not r["applied"] for r, _, _ in out)
    clean.wait_values(BASE)
    run = clean.cmd("reload reload_lib forever --source %s --dry-run" % source).ok()
    assert "would reload forever" in run.out and "warning: 1 call of forever is running now (thread looper)" in run.out


def test_human_output(clean, tmp_path):
    source = tmp_path / "h.py"
    source.write_text(edited([KINDS_OF_FUNCTIONS[0][1]]))
    run = clean.cmd("reload reload_lib plain --source %s" % source).ok()
    assert re.search(
        r"^reloaded plain \(function, .*reload_lib.py:10\) from .*h.py:10 \(the text given\); "
        r"1 earlier version kept \(reload --undo\)$",
        run.out,
        re.M,
    ), run.describe()
    assert "-    return x + 1\n+    return x + 1001\n" in run.out and "changed: code" in run.out
    run = clean.cmd("reload reload_lib plain --source %s" % source).ok()
    assert "compiles to the code running now; nothing was replaced" in run.out, run.describe()
    run = clean.cmd("reload --undo reload_lib plain").ok()
    assert run.out.startswith("undid the last reload of plain") and "no earlier version kept" in run.out
    clean.wait_values(BASE)
    run = clean.cmd("reload reload_lib").failed()
    assert "needs 2 or 3 names" in run.err
    run = clean.cmd("reload --undo reload_lib plain --source %s" % source).failed()
    assert "neither --source nor --dry-run" in run.err


# ------------------------------------------------------------------------------------------
# watch and trace across a reload and an undo


class Background(object):
    """fp --json running a streaming command; its stdout lines are read by a thread."""

    def __init__(self, t, command):
        t.fp_runs += 1
        self.proc = subprocess.Popen(
            [FP, str(t.pid), "--json", "--cmd", command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            universal_newlines=True,
        )
        self.lines = queue.Queue()
        self.records = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))
        self.lines.put(None)

    def wait(self, predicate, timeout=15, what="a record"):
        """Waits for a record for which predicate(record) is true; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail("timed out waiting for %s; got %r" % (what, self.records[-5:]))
            try:
                rec = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if rec is None:
                pytest.fail("fp ended while waiting for %s: %s" % (what, self.proc.stderr.read()))
            self.records.append(rec)
            if predicate(rec):
                return rec

    def stop(self):
        os.kill(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail("fp did not stop at SIGINT")
        self.reader.join(5)
        while True:
            rec = self.lines.get()
            if rec is None:
                break
            self.records.append(rec)
        return self.proc.returncode


def _event(method, check=lambda p: True):
    def predicate(rec):
        n = rec.get("notification") or {}
        return n.get("method") == method and check(n["params"])

    return predicate


def _returned(value):
    return _event("watch/event", lambda p: p["values"][0].get("value", {}).get("repr") == value)


@pytest.mark.parametrize("callbacks", ["native", "python"])
def test_watch_and_trace_follow_a_reload(clean, tmp_path, callbacks):
    if callbacks == "python":
        if clean.python.version < (3, 12):
            pytest.skip("the callbacks' pure-Python twin exists for sys.monitoring (3.12+)")
        clean.cmd("console", input="import fp_agent.instrument as i\ni.use_python_callbacks(True)\n").ok()
    source = tmp_path / "w.py"
    source.write_text(edited([("    return x + 1\n", "    return x + 1001\n")]))
    watch = Background(clean, "watch reload_lib plain -n 100000 --expr return_obj")
    trace = Background(clean, "trace reload_lib plain -n 100000")
    try:
        watch.wait(_returned("2"), what="a call before the reload")
        trace.wait(_event("trace/event"), what="a trace before the reload")
        clean.json("reload reload_lib plain --source %s" % source)
        watch.wait(_returned("1002"), what="the watch to report the new code's result")
        new_line = trace.wait(
            _event("trace/event", lambda p: p["tree"]["file"] == str(source)), what="a trace of the new code"
        )["notification"]["params"]["tree"]
        assert new_line["function"] == "plain" and new_line["line"] == 10, new_line
        clean.json("reload --undo reload_lib plain")
        watch.wait(_returned("2"), what="the watch to report the old code's result after the undo")
        trace.wait(
            _event("trace/event", lambda p: p["tree"]["file"].endswith("reload_lib.py")),
            what="a trace of the restored code",
        )
        clean.json("reload reload_lib plain --source %s" % source)
        watch.wait(_returned("1002"), what="the watch after a second reload")
    finally:
        assert watch.stop() == 0 and trace.stop() == 0
        if callbacks == "python":
            clean.cmd("console", input="import fp_agent.instrument as i\ni.use_python_callbacks(False)\n").ok()
    ends = [
        r["notification"]["params"]["reason"]
        for r in watch.records + trace.records
        if r.get("notification", {}).get("method") in ("watch/end", "trace/end")
    ]
    assert ends == ["stopped", "stopped"], ends
    # With the probes gone, the new code stays.
    clean.wait_values({"plain": "1002"})
    r = clean.json('getglobal reload_lib plain -e "target.__code__.co_filename"')
    assert r["value"]["repr"] == repr(str(source)), r
    clean.json("reload --undo reload_lib plain")
    clean.wait_values(BASE)


def test_watch_on_a_nested_function_follows_its_reload(clean, tmp_path):
    """-nm: the outer function's code is what changes (a copy with the new nested code); the
    watch on the nested function (3.8-3.11: a patched copy of the outer code) follows it."""
    source = tmp_path / "n.py"
    source.write_text(edited([("        return v * k\n", "        return v * k + 1\n")]))
    outer = tmp_path / "o.py"
    outer.write_text(edited([("    return inner(3)\n", "    return inner(4)\n")]))
    watch = Background(clean, "watch reload_lib outer -nm inner -n 100000 --expr return_obj")
    try:
        watch.wait(_returned("6"), what="a call of inner before the reload")
        clean.json("reload reload_lib outer -nm inner --source %s" % source)
        watch.wait(_returned("7"), what="the new inner's result")
        clean.json("reload reload_lib outer --source %s" % outer)  # the outer reloaded: inner(4)
        watch.wait(_returned("8"), what="inner called by the new outer")
        run = clean.cmd("reload --undo reload_lib outer -nm inner", "--json").failed()
        assert run.records()[-1]["error"]["data"]["reason"] == "order", run.describe()
        clean.json("reload --undo reload_lib outer")
        watch.wait(_returned("7"), what="inner after undoing the outer's reload")
        clean.json("reload --undo reload_lib outer -nm inner")
        watch.wait(_returned("6"), what="the first inner back")
    finally:
        assert watch.stop() == 0
    clean.wait_values(BASE)
