"""fp-lsp end to end: the real server over pipes, spoken to as an editor does (lspclient.py),
attached to real targets under every CPython (tests/targets/lsp_service.py). Lenses on exactly
the functions the process runs, by name (they stay on their function after an edit above it),
live monitor figures that match the calls the target made (summed over processes), watch
diagnostics with the real values and the raising line, the LSP lifecycle and every kind of
malformed input answered with the server alive, a target killed mid-watch, and an editor that
dies mid-watch leaving the target clean."""

import os
import re
import signal
import subprocess

import pytest
from lspclient import Lsp, LspError

from conftest import FP_BUILD, KINDS, TARGETS, Target, wait_until

FP_LSP = os.path.join(FP_BUILD, "bin", "fp-lsp")
SERVICE = os.path.join(TARGETS, "lsp_service.py")
SERVICE_URI = "file://" + SERVICE


class LspService(Target):
    kind = "lsp_service"
    line_re = re.compile(r"^(tick \d+ price=\S+|burst \d+)$")
    progress_re = re.compile(r"^tick ")

    def bursts(self):
        return [l for l in self.stdout_lines() if l.startswith("burst ")]

    def prices(self):
        return [l.split("price=")[1] for l in self.progress()]

    def pristine(self):
        """What fp installed in the process (empty: nothing)."""
        r = self.json('getglobal fp_agent.instrument _sites -e "len(target)"')
        return int(r["value"]["repr"])


KINDS["lsp_service"] = LspService


@pytest.fixture
def lsp():
    client = Lsp(FP_LSP)
    try:
        yield client
    finally:
        client.kill()


def _attached(lsp, *targets):
    lsp.initialize()
    for t in targets:
        r = lsp.execute("fp.attach", {"pid": t.pid})
        assert [a["pid"] for a in r["attached"]] == [t.pid], r
    return lsp.open(SERVICE)


def _titles(lenses, function=None):
    return [l["command"]["title"] for l in lenses if function is None or l.get("data", {}).get("function") == function]


def _lens_lines(lenses):
    """{function: its lens line}."""
    return dict((l["data"]["function"], l["range"]["start"]["line"]) for l in lenses if l["data"].get("function"))


def _def_lines():
    lines = {}
    stack = []
    with open(SERVICE) as f:
        for i, line in enumerate(f):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            indent = len(line) - len(line.lstrip())
            while stack and stack[-1][0] >= indent:  # any statement there closes them
                stack.pop()
            m = re.match(r"^(\s*)(?:async\s+)?(def|class)\s+(\w+)", line)
            if not m:
                continue
            parent = stack[-1] if stack else None
            name = m.group(3)
            if parent is None:
                qual = name
            elif parent[2] == "class":
                qual = parent[1] + "." + name
            else:
                qual = parent[1] + ".<locals>." + name
            stack.append((indent, qual, m.group(2)))
            if m.group(2) == "def":
                lines[qual] = i
    return lines


DEFS = _def_lines()


def test_lenses_on_exactly_the_loaded_functions(spawn, lsp):
    t = spawn("lsp_service")
    uri = _attached(lsp, t)
    lenses = lsp.lenses_when(uri, lambda ls: any(l["data"].get("function") for l in ls), 15, "function lenses")
    lines = _lens_lines(lenses)
    want = set(DEFS) - {"never_loaded"}  # defined under a false condition: never loaded
    assert set(lines) == want, sorted(set(lines) ^ want)
    for fn, line in lines.items():
        assert line == DEFS[fn], (fn, line, DEFS[fn])
    # Each has its actions.
    assert _titles(lenses, "price") == ["watch", "trace", "monitor", "reload"]
    assert "never_loaded" not in lines and "price.<locals>.discount" in lines and "Cart.total" in lines
    t.assert_healthy()


def test_lenses_follow_their_function_when_lines_move(spawn, lsp):
    t = spawn("lsp_service")
    uri = _attached(lsp, t)
    before = _lens_lines(lsp.lenses_when(uri, lambda ls: any(l["data"].get("function") for l in ls), 15, "lenses"))
    # Five lines typed above everything: every lens moves down with its function.
    lsp.change(
        uri,
        2,
        [
            {
                "range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}},
                "text": "# one\n# two\n# three\n# four\n# five\n",
            }
        ],
    )
    after = _lens_lines(lsp.lenses(uri))
    assert after == dict((f, l + 5) for f, l in before.items()), (before, after)
    # An edit inside price: it is marked changed since loaded (its text differs from what runs).
    with open(SERVICE) as f:
        text = f.read().splitlines()
    body_line = [i for i, l in enumerate(text) if "base = {" in l][0] + 5
    lsp.change(
        uri,
        3,
        [
            {
                "range": {"start": {"line": body_line, "character": 0}, "end": {"line": body_line, "character": 0}},
                "text": "    x = 1\n",
            }
        ],
    )
    lenses = lsp.lenses_when(
        uri, lambda ls: "changed since loaded" in _titles(ls, "price"), 15, "price marked changed since loaded"
    )
    assert "changed since loaded" not in _titles(lenses, "Cart.add")
    t.assert_healthy()


def test_a_file_the_process_never_imported(spawn, lsp, tmp_path):
    t = spawn("lsp_service")
    lsp.initialize()
    lsp.execute("fp.attach", {"pid": t.pid})
    other = tmp_path / "elsewhere.py"
    other.write_text("def f():\n    return 1\n")
    uri = lsp.open(str(other))
    lenses = lsp.lenses_when(uri, lambda ls: len(ls) > 0, 15, "the not-loaded lens")
    assert len(lenses) == 1 and lenses[0]["range"]["start"]["line"] == 0
    assert lenses[0]["command"]["title"] == "fp: not loaded in process %d" % t.pid
    # Its lens resolved after the document closed: a title, nothing to run.
    unresolved = dict(lenses[0])
    del unresolved["command"]
    lsp.close(uri)
    late = lsp.request("codeLens/resolve", unresolved)
    assert late["command"]["title"] == "fp: the document was closed" and not late["command"]["command"], late


def test_watch_diagnostics_carry_real_values_and_the_raising_line(spawn, lsp):
    t = spawn("lsp_service")
    uri = _attached(lsp, t)
    r = lsp.execute("fp.watch", {"uri": uri, "function": "price", "limit": 4})
    assert r["pids"] == [t.pid] and r["function"] == "price", r
    diags = lsp.wait_for(
        lambda: len(lsp.diagnostics.get(uri, [])) >= 3 and lsp.diagnostics[uri], 15, "price's watch diagnostics"
    )
    d = diags[0]
    assert d["severity"] == 3 and d["range"]["start"]["line"] == DEFS["price"], d
    # The values the target really passed and got back.
    assert "args=('apple', 2" in d["message"] and "return_obj=6" in d["message"], d
    hover = lsp.request(
        "textDocument/hover", {"textDocument": {"uri": uri}, "position": {"line": DEFS["price"], "character": 4}}
    )
    assert "args: tuple = ('apple', 2" in hover["contents"]["value"], hover
    # A call that raises: a Warning on the line of this file where the exception passed.
    lsp.execute("fp.watch", {"uri": uri, "function": "checkout", "limit": 1})
    raising = [i for i, l in enumerate(open(SERVICE).read().splitlines()) if 'raise ValueError("empty cart")' in l][0]
    warn = lsp.wait_for(
        lambda: [x for x in lsp.diagnostics.get(uri, []) if x["severity"] == 2], 15, "the warning of a call that raised"
    )
    assert warn[0]["range"]["start"]["line"] == raising, warn
    assert "raised ValueError: empty cart" in warn[0]["message"], warn
    # fp.stop clears them, and nothing stays in the process.
    lsp.execute("fp.stop", {"uri": uri, "function": "price"})
    lsp.execute("fp.stop", {"uri": uri, "function": "checkout"})
    lsp.wait_for(lambda: lsp.diagnostics.get(uri) == [], 10, "diagnostics cleared")
    wait_until(lambda: t.pristine() == 0, 10, "the target without fp's probes")
    t.assert_healthy()


def test_monitor_counts_every_call_summed_over_processes(spawn, lsp):
    a, b = spawn("lsp_service"), spawn("lsp_service")
    uri = _attached(lsp, a, b)
    r = lsp.execute("fp.monitor", {"uri": uri, "function": "rare"})
    assert sorted(r["pids"]) == sorted([a.pid, b.pid]), r
    os.kill(a.pid, signal.SIGUSR1)
    os.kill(b.pid, signal.SIGUSR1)
    wait_until(lambda: len(a.bursts()) == 1 and len(b.bursts()) == 1, 15, "the first bursts")
    os.kill(b.pid, signal.SIGUSR1)  # signals coalesce: the second only once the first is served
    wait_until(lambda: len(b.bursts()) == 2, 15, "b's second burst")
    # 100 calls in a, 200 in b: the lens sums them exactly.
    lenses = lsp.lenses_when(
        uri, lambda ls: any(x.startswith("300 calls") for x in _titles(ls, "rare")), 15, "rare's lens with 300 calls"
    )
    title = [x for x in _titles(lenses, "rare") if "calls" in x][0]
    assert re.match(r"^300 calls \u00b7 \d+/s \u00b7 p50 .+ \u00b7 p95 .+ \u00b7 max .+$", title), title
    hover = lsp.request(
        "textDocument/hover", {"textDocument": {"uri": uri}, "position": {"line": DEFS["rare"], "character": 4}}
    )
    text = hover["contents"]["value"]
    assert "| %d | 100 |" % a.pid in text and "| %d | 200 |" % b.pid in text, text
    # Off: the lens goes back to its actions, and the processes are as they were.
    lsp.execute("fp.monitor", {"uri": uri, "function": "rare", "scope": "off"})
    assert not [x for x in _titles(lsp.lenses(uri), "rare") if "calls" in x]
    wait_until(lambda: a.pristine() == 0 and b.pristine() == 0, 10, "both targets without probes")


def test_lifecycle_and_malformed_input(spawn, lsp):
    # Before initialize: -32002, and the server goes on.
    with pytest.raises(LspError) as e:
        lsp.request("textDocument/codeLens", {"textDocument": {"uri": SERVICE_URI}})
    assert e.value.code == -32002
    caps = lsp.initialize()
    assert caps["serverInfo"]["name"] == "fp-lsp" and caps["serverInfo"]["version"]
    c = caps["capabilities"]
    assert c["codeLensProvider"]["resolveProvider"] is True and c["hoverProvider"] is True
    assert c["textDocumentSync"]["change"] == 2 and "fp.attach" in c["executeCommandProvider"]["commands"]
    # A bad header's body, bad JSON, an unknown method, bad params: each answered.
    lsp.send_raw(b"Content-Length: 9\r\n\r\n{not json")
    bad = lsp.wait_for(lambda: [r for r in lsp.responses.values() if r.get("id") is None], 10, "the -32700")
    assert bad[0]["error"]["code"] == -32700, bad
    lsp.responses.clear()
    # A broken header: answered, and the server reads on from the next message.
    lsp.send_raw(b"Content-Lenght: 5\r\n\r\nhello")
    bad = lsp.wait_for(lambda: [r for r in lsp.responses.values() if r.get("id") is None], 10, "the framing -32700")
    assert bad[0]["error"]["code"] == -32700 and "next message" in bad[0]["error"]["message"], bad
    lsp.responses.clear()
    assert isinstance(lsp.execute("fp.status"), dict)
    # Not UTF-8: -32700; an id with a fraction: -32600, not run.
    lsp.send_raw(b'Content-Length: 38\r\n\r\n{"jsonrpc":"2.0","id":7,"method":"\xff\xfe"}')
    bad = lsp.wait_for(lambda: [r for r in lsp.responses.values() if r.get("id") is None], 10, "the UTF-8 -32700")
    assert bad[0]["error"]["code"] == -32700 and "UTF-8" in bad[0]["error"]["message"], bad
    lsp.responses.clear()
    lsp.send({"jsonrpc": "2.0", "id": 1.5, "method": "shutdown"})
    bad = lsp.wait_for(lambda: [r for r in lsp.responses.values() if r.get("id") is None], 10, "the -32600")
    assert bad[0]["error"]["code"] == -32600, bad
    lsp.responses.clear()
    with pytest.raises(LspError) as e:
        lsp.request("textDocument/nothing", {})
    assert e.value.code == -32601
    with pytest.raises(LspError) as e:
        lsp.request("workspace/executeCommand", {"command": "fp.attach", "arguments": ["no pid"]})
    assert e.value.code == -32602 and "fp.attach takes" in e.value.error["message"]
    with pytest.raises(LspError) as e:
        lsp.request("workspace/executeCommand", {"command": "fp.watch", "arguments": [{"uri": SERVICE_URI}]})
    assert e.value.code == -32602
    with pytest.raises(LspError) as e:
        lsp.request("workspace/executeCommand", {"command": "fp.nothing"})
    assert e.value.code == -32602 and "no command" in e.value.error["message"]
    with pytest.raises(LspError) as e:
        lsp.request("textDocument/hover", "a string")
    assert e.value.code == -32602
    for data in (None, {"action": "watch"}, {"doc": 1, "action": "dance"}):
        with pytest.raises(LspError) as e:
            lsp.request("codeLens/resolve", {"range": {}, "data": data})
        assert e.value.code == -32602, data
    # Attaching to what cannot be attached to: a clear error with what to do.
    with pytest.raises(LspError) as e:
        lsp.execute("fp.attach", {"pid": 1})
    assert e.value.error["data"]["code"] in ("not_python", "permission", "exiting"), e.value.error
    # Still alive: a listing, then shutdown (later requests -32600) and exit 0.
    assert isinstance(lsp.execute("fp.listProcesses"), list)
    lsp.request("shutdown")
    with pytest.raises(LspError) as e:
        lsp.request("textDocument/codeLens", {"textDocument": {"uri": SERVICE_URI}})
    assert e.value.code == -32600
    lsp.notify("exit")
    assert lsp.wait_exit() == 0


def test_exit_without_shutdown_is_1(lsp):
    lsp.initialize()
    lsp.notify("exit")
    assert lsp.wait_exit() == 1


def test_stdin_that_is_not_a_pipe_is_refused_with_the_reason():
    # A file or a device as stdin cannot be polled: a clear refusal, not an abort.
    with open(os.devnull, "rb") as null:
        p = subprocess.run([FP_LSP], stdin=null, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=15)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert b"start it from an editor" in p.stderr, p.stderr


def test_target_killed_mid_watch(spawn, lsp):
    t = spawn("lsp_service")
    uri = _attached(lsp, t)
    lsp.execute("fp.watch", {"uri": uri, "function": "Cart.add", "limit": 100000})
    lsp.wait_for(lambda: lsp.diagnostics.get(uri), 15, "Cart.add's diagnostics")
    os.kill(t.pid, signal.SIGKILL)
    t.proc.wait()
    t.checked_after = t.fp_runs  # killed on purpose
    # Its diagnostics and lenses go, and the user is told.
    lsp.wait_for(lambda: lsp.diagnostics.get(uri) == [], 15, "diagnostics cleared")
    msg = lsp.wait_for(
        lambda: [p for m, p in lsp.notifications if m == "window/showMessage" and str(t.pid) in p["message"]],
        15,
        "the message that the process exited",
    )
    assert "exited" in msg[0]["message"], msg
    assert lsp.lenses(uri) == []
    status = lsp.execute("fp.status")
    assert status["processes"] == [], status


def test_editor_dies_mid_watch_and_the_target_is_clean(spawn):
    t = spawn("lsp_service")
    client = Lsp(FP_LSP)
    try:
        uri = _attached(client, t)
        client.execute("fp.watch", {"uri": uri, "function": "price", "limit": 100000})
        client.execute("fp.monitor", {"uri": uri, "scope": "file"})
        client.wait_for(lambda: client.diagnostics.get(uri), 15, "diagnostics")
        assert t.pristine() > 0
        client.proc.stdin.close()  # the editor is gone
        assert client.wait_exit() == 1, client.describe()
    finally:
        client.kill()
    wait_until(lambda: t.pristine() == 0, 10, "the target without fp's probes")
    t.assert_healthy()


def test_attach_with_children_and_detach(spawn, lsp):
    t = spawn("prefork")
    lsp.initialize()
    r = lsp.execute("fp.attach", {"pid": t.pid, "children": True})
    pids = sorted(a["pid"] for a in r["attached"])
    assert pids == sorted([t.pid] + t.workers()), r
    status = lsp.execute("fp.status")
    assert sorted(p["pid"] for p in status["processes"]) == pids
    listing = dict((p["pid"], p) for p in lsp.execute("fp.listProcesses"))
    assert all(listing[p]["attached"] for p in pids)
    r = lsp.execute("fp.detach", {"pid": t.pid})
    assert sorted(r["detached"]) == pids, r
    last_status = lambda: [p for m, p in lsp.notifications if m == "fp/status"][-1]
    lsp.wait_for(lambda: last_status()["processes"] == [], 10, "fp/status without processes")
