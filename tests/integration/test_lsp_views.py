"""fp-lsp's profiling views end to end: the real server over pipes (lspclient.py), real targets
under every CPython. fp.profile's hot-line hints on the known hot line of a CPU-bound target
(tests/targets/hot.py) and none on a cold one, the lens totals, the flame graph written at the
stop and offered to the client, the figures kept until cleared; the same while a thread holds
the GIL forever (tests/targets/gil_hog.py, never attached: the sampler needs no agent)."""

import json
import os
import re
import time

import pytest
from lspclient import Lsp

from conftest import FP_BUILD, KINDS, TARGETS, Target, wait_until

FP_LSP = os.path.join(FP_BUILD, "bin", "fp-lsp")
HOT = os.path.join(TARGETS, "hot.py")
GIL_HOG = os.path.join(TARGETS, "gil_hog.py")

CAPS = {
    "general": {"positionEncodings": ["utf-16"]},
    "workspace": {"codeLens": {"refreshSupport": True}, "inlayHint": {"refreshSupport": True}},
    "window": {"workDoneProgress": True, "showDocument": {"support": True}},
}
# Refreshed often, so that the tests wait little; opened at once, so that the test sees it.
OPTIONS = {"fp": {"profile": {"refreshSeconds": 0.5, "open": "always"}}}


@pytest.fixture
def lsp():
    client = Lsp(FP_LSP)
    try:
        client.initialize(CAPS, OPTIONS)
        yield client
    finally:
        client.kill()


def _line_of(path, text, after=0):
    """The 0-based line of path holding text (the first at or after line `after`)."""
    with open(path) as f:
        for i, line in enumerate(f):
            if i >= after and text in line:
                return i
    raise AssertionError("%r not in %s" % (text, path))


def _hints(lsp, uri):
    return lsp.request(
        "textDocument/inlayHint",
        {
            "textDocument": {"uri": uri},
            "range": {"start": {"line": 0, "character": 0}, "end": {"line": 100000, "character": 0}},
        },
    )


def _hints_when(lsp, uri, predicate, timeout, what):
    """Asks for the hints until predicate(hints) holds (the server asks for a refresh when its
    figures change; the client asks again then)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = lsp.count("workspace/inlayHint/refresh")
        hints = _hints(lsp, uri)
        if predicate(hints):
            return hints
        if time.monotonic() > deadline:
            pytest.fail(
                "timed out after %ss waiting for %s; last hints: %s\n%s" % (timeout, what, hints, lsp.describe())
            )
        try:
            lsp.wait_for(
                lambda: lsp.count("workspace/inlayHint/refresh") > seen,
                min(2.0, max(0.1, deadline - time.monotonic())),
                "a hint refresh",
            )
        except pytest.fail.Exception:
            pass  # ask again anyway, as a client would


def _by_line(hints):
    return dict((h["position"]["line"], h) for h in hints)


HINT_RE = re.compile(r"^[\u2588\u258c]+ (\d+\.\d)% \(self (\d+\.\d)%\)$")


def _samples(hints):
    return sum(h["data"]["samples"] for h in hints)


def test_profile_hot_line_hints_lens_and_flame_graph(spawn, lsp):
    t = spawn("hot")
    # Attached: fp.profile without a pid samples every attached process.
    r = lsp.execute("fp.attach", {"pid": t.pid})
    assert [a["pid"] for a in r["attached"]] == [t.pid], r
    uri = lsp.open(HOT)
    r = lsp.execute("fp.profile", {})
    assert r["pids"] == [t.pid] and r["failed"] == [], r
    assert r["rate_hz"] == 100 and r["format"] == "svg", r
    lsp.wait_for(
        lambda: [p for m, p in lsp.notifications if m == "fp/status" and p["profiling"] is True],
        10,
        "fp/status saying a profile runs",
    )

    body = _line_of(HOT, "x = (x * 31 + i) % 1000003")  # hot_loop's
    cold_body = _line_of(HOT, "x = (x * 31 + i) % 1000003", body + 1)  # cold's
    once = _line_of(HOT, "window = fptarget.arg(2, 0.5)")  # ran once, before sampling

    def enough(hints):
        return _by_line(hints).get(body) and _samples(hints) > 0 and _by_line(hints)[body]["data"]["samples"] >= 100

    hints = _hints_when(lsp, uri, enough, 30, "100 samples on hot_loop's line")
    lines = _by_line(hints)
    for h in hints:
        m = HINT_RE.match(h["label"])
        assert m, h["label"]
        assert float(m.group(1)) >= 1.0, h  # the threshold: 1 % of the samples
        # At the end of its line.
        with open(HOT) as f:
            text = f.read().splitlines()[h["position"]["line"]]
        assert h["position"]["character"] == len(text), (h, text)
    # The hot line has the highest self share, well above cold's; a line that ran only before
    # sampling has none.
    top = max(hints, key=lambda h: h["data"]["self_pct"])
    assert top["position"]["line"] == body, hints
    assert lines[body]["data"]["self_pct"] > 40, hints  # the rest: its `for` line, cold, main
    if cold_body in lines:
        assert lines[cold_body]["data"]["self_pct"] < lines[body]["data"]["self_pct"] / 3, hints
    assert once not in lines, lines[once]
    assert lsp.count("workspace/inlayHint/refresh") > 0

    # The lens: hot_loop's totals.
    lenses = lsp.lenses_when(
        uri,
        lambda ls: any(l["data"].get("action") == "profile" and l["data"].get("function") == "hot_loop" for l in ls),
        15,
        "the profile lens on hot_loop",
    )
    title = [
        l["command"]["title"]
        for l in lenses
        if l["data"].get("action") == "profile" and l["data"]["function"] == "hot_loop"
    ][0]
    m = re.match(r"^fp profile: (\d+\.\d)% of samples \(self (\d+\.\d)%\)$", title)
    assert m and float(m.group(1)) > 60, title

    # Stopping: the flame graph is written and opened (open: always), the figures stay.
    r = lsp.execute("fp.profile.stop", {})
    assert r["pids"] == [t.pid], r
    (prof,) = r["profiles"]
    assert prof["pid"] == t.pid and prof["format"] == "svg" and prof["samples"] > 0, r
    with open(prof["file"]) as f:
        svg = f.read()
    assert "<svg" in svg and "hot_loop" in svg
    shown = lsp.wait_for(
        lambda: [p for m, p in lsp.server_requests if m == "window/showDocument"], 10, "window/showDocument"
    )
    assert shown[-1]["external"] is True and shown[-1]["uri"] == "file://" + prof["file"], shown
    after = _by_line(_hints(lsp, uri))
    assert body in after, after
    lenses = lsp.lenses(uri)
    assert any(
        l["command"]["title"].endswith("\u00b7 stopped") for l in lenses if l["data"].get("action") == "profile"
    ), lenses
    # Two lines typed above everything: the hot line's hint moves down with its function.
    lsp.change(
        uri,
        2,
        [
            {
                "range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}},
                "text": "# one\n# two\n",
            }
        ],
    )
    moved = _hints(lsp, uri)
    assert max(moved, key=lambda h: h["data"]["self_pct"])["position"]["line"] == body + 2, moved
    # Cleared: nothing left.
    r = lsp.execute("fp.profile.clear", {})
    assert r["cleared"] == 1 and r["running"] == 0, r
    assert _hints(lsp, uri) == []
    with pytest.raises(Exception) as e:
        lsp.execute("fp.profile.stop", {})
    assert "no profile is running" in str(e.value)
    os.unlink(prof["file"])
    t.assert_healthy()


def test_profile_while_a_thread_holds_the_gil(spawn, lsp):
    t = spawn("gil_hog")
    t.wait_settled()
    uri = lsp.open(GIL_HOG)
    # Not attached (the agent could not run: the GIL is never released); sampled from outside.
    r = lsp.execute("fp.profile", {"pid": t.pid, "format": "speedscope"})
    assert r["pids"] == [t.pid], r
    sleep_line = _line_of(GIL_HOG, "libc.sleep(100000)")
    hints = _hints_when(
        lsp,
        uri,
        lambda hs: sleep_line in _by_line(hs) and _by_line(hs)[sleep_line]["data"]["samples"] >= 20,
        30,
        "samples on the hog's C sleep line",
    )
    lines = _by_line(hints)
    # The hog holds the GIL: it is sampled. The main thread waits for the GIL (in t.start(), its
    # return needs it): idle, left out, but for the moments it is caught running, woken every
    # switch interval to ask for the GIL again (longer on a loaded machine, waiting for a CPU).
    assert lines[sleep_line]["data"]["self_pct"] > 50, hints
    assert max(hints, key=lambda h: h["data"]["total_pct"]) is lines[sleep_line], hints
    r = lsp.execute("fp.profile.stop", {"pid": t.pid})
    (prof,) = r["profiles"]
    assert prof["format"] == "speedscope" and prof["file"].endswith(".speedscope.json"), r
    with open(prof["file"]) as f:
        model = json.load(f)
    assert "speedscope" in model["$schema"]
    os.unlink(prof["file"])
    t.assert_healthy()


def test_profile_sliding_window(spawn, lsp):
    t = spawn("hot")
    lsp.notify(
        "workspace/didChangeConfiguration",
        {"settings": {"fp": {"profile": {"window": "sliding", "windowSeconds": 1, "refreshSeconds": 0.5}}}},
    )
    uri = lsp.open(HOT)
    lsp.execute("fp.profile", {"pid": t.pid, "rate": 100})
    body = _line_of(HOT, "x = (x * 31 + i) % 1000003")
    # Six refreshes (3 s) in, the figures hold the last second only: at 100 Hz, about 100 samples
    # of the one busy thread, never the whole run's 300.
    seen = lsp.count("workspace/inlayHint/refresh")
    lsp.wait_for(lambda: lsp.count("workspace/inlayHint/refresh") >= seen + 6, 30, "six hint refreshes")
    hints = _by_line(_hints(lsp, uri))
    assert body in hints and 20 <= hints[body]["data"]["samples"] <= 160, hints.get(body)
    r = lsp.execute("fp.profile.stop", {})
    assert r["profiles"][0]["samples"] > hints[body]["data"]["samples"], r  # the file has the whole run
    os.unlink(r["profiles"][0]["file"])
    t.assert_healthy()


def test_profile_bad_arguments(lsp):
    for arg, text in (
        ({"pid": "x"}, "pid is a process id"),
        ({"rate": 0}, "rate is 1 to 1000"),
        ({"format": "png"}, "format is"),
    ):
        with pytest.raises(Exception) as e:
            lsp.execute("fp.profile", arg)
        assert text in str(e.value), (arg, e.value)
    with pytest.raises(Exception) as e:
        lsp.execute("fp.profile", {})
    assert "attach" in str(e.value)
    with pytest.raises(Exception) as e:
        lsp.execute("fp.profile", {"pid": 1 << 29})
    assert "no process with PID %d" % (1 << 29) in str(e.value), e.value


# ---------------------------------------------------------------------------------------
# fp.stack
# ---------------------------------------------------------------------------------------

KNOWN = os.path.join(TARGETS, "known_stacks.py")


class KnownStacks(Target):
    kind = "known_stacks"
    line_re = re.compile(r"^tick \d+ slept=\d+\.\d+$")
    progress_re = line_re

    def expected(self):
        return json.loads(self.facts["expected"])


KINDS.setdefault(KnownStacks.kind, KnownStacks)


def _stack_diags(lsp, uri):
    return [d for d in lsp.diagnostics.get(uri, []) if d.get("source") == "fp stack"]


def test_stack_document_and_diagnostics(spawn, lsp):
    t = spawn("known_stacks")
    expected = t.expected()
    uri = lsp.open(KNOWN)
    r = lsp.execute("fp.stack", {"pid": t.pid})
    names = [th["name"] for th in r["threads"]]
    assert set(expected) <= set(names), (names, list(expected))
    for th in r["threads"]:
        if th["name"] in expected:
            got = [[f["file"], f["line"]] for f in th["frames"]]
            assert got == [e[:2] for e in expected[th["name"]]], (th["name"], got)
    # The document: every thread, its frames as file:line; the client is asked to show it.
    assert r["document"].startswith("file://"), r["document"]
    path = r["document"][len("file://") :]
    with open(path) as f:
        text = f.read()
    for name, frames in expected.items():
        assert "Thread %s (" % name in text, (name, text)
        for file, line, _ in frames:
            assert "%s:%d in " % (file, line) in text, (file, line, text)
    shown = lsp.wait_for(
        lambda: [p for m, p in lsp.server_requests if m == "window/showDocument"], 10, "window/showDocument"
    )
    assert shown[-1]["uri"] == r["document"] and not shown[-1].get("external"), shown
    # The diagnostics: each thread's innermost frame in this file, on its line, naming it.
    diags = lsp.wait_for(lambda: _stack_diags(lsp, uri), 10, "the stack's diagnostics")
    for name, frames in expected.items():
        file, line, _ = frames[-1]
        assert file == KNOWN
        here = [d for d in diags if d["data"]["thread"] == name and d["data"]["innermost"]]
        assert [d["range"]["start"]["line"] for d in here] == [line - 1], (name, diags)
        assert here[0]["severity"] == 3 and ("Thread %s (" % name) in here[0]["message"], here
    # Three lines typed above everything: read again, the diagnostics follow their lines.
    lsp.change(
        uri,
        2,
        [
            {
                "range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}},
                "text": "# one\n# two\n# three\n",
            }
        ],
    )
    lsp.execute("fp.stack", {"pid": t.pid})
    want = sorted(frames[-1][1] + 2 for frames in expected.values())  # 0-based, 3 lines down
    lsp.wait_for(
        lambda: (
            sorted(
                d["range"]["start"]["line"]
                for d in _stack_diags(lsp, uri)
                if d["data"]["innermost"] and d["data"]["thread"] in expected
            )
            == want
        ),
        10,
        "the diagnostics three lines down",
    )
    r = lsp.execute("fp.stack.clear", {})
    assert r["cleared"] == 1
    lsp.wait_for(lambda: not _stack_diags(lsp, uri), 10, "the stack's diagnostics cleared")
    os.unlink(path)
    t.assert_healthy()


def test_stack_while_a_thread_holds_the_gil(spawn, lsp):
    t = spawn("gil_hog")
    t.wait_settled()
    uri = lsp.open(GIL_HOG)
    r = lsp.execute("fp.stack", {"pid": t.pid})
    hog = [th for th in r["threads"] if th["native_id"] == int(t.facts["hog"])]
    assert len(hog) == 1 and hog[0]["holds_gil"], r["threads"]
    assert hog[0]["frames"][-1]["line"] == _line_of(GIL_HOG, "libc.sleep(100000)") + 1, hog
    diags = lsp.wait_for(lambda: _stack_diags(lsp, uri), 10, "the stack's diagnostics")
    sleep = [d for d in diags if d["range"]["start"]["line"] == _line_of(GIL_HOG, "libc.sleep(100000)")]
    assert sleep and "[holds the GIL]" in sleep[0]["message"], diags
    os.unlink(r["document"][len("file://") :])
    with pytest.raises(Exception) as e:
        lsp.execute("fp.stack", {})
    assert "fp.stack takes" in str(e.value)
    t.assert_healthy()


# ---------------------------------------------------------------------------------------
# fp.trace
# ---------------------------------------------------------------------------------------

VIEWS = os.path.join(TARGETS, "lsp_views.py")
RECORDERS = ["native", "python"]


class LspViews(Target):
    kind = "lsp_views"
    line_re = re.compile(r"^tick \d+ total=\d+$")
    progress_re = line_re

    def pristine(self):
        """What fp installed in the process (0: nothing)."""
        r = self.json('getglobal fp_agent.instrument _sites -e "len(target)"')
        return int(r["value"]["repr"])


KINDS.setdefault(LspViews.kind, LspViews)

# handle()'s calling lines (0-based) and what each calls.
CALLS = {
    "rows = load(n)": ("load", 1),
    "rows = transform(rows)": ("transform", 3),
    "time.sleep(0.004)": ("time.sleep", 1),
    "rows.sort()": ("list.sort", 1),
    "return summarize(rows)": ("summarize", 1),
}
CALL_LINES = dict((text, _line_of(VIEWS, text)) for text in CALLS)
TRACE_RE = re.compile(r"^(\d+\.\d)% \u00b7 (\d+) calls? \u00b7 (\d+(\.\d)?) (ms|\u00b5s)$")


def _trace_hints(hints):
    return [h for h in hints if h["data"]["source"] == "fp trace"]


@pytest.mark.parametrize("recorder", RECORDERS)
def test_trace_hints_on_the_calling_lines(spawn, lsp, recorder):
    t = spawn("lsp_views")
    lsp.execute("fp.attach", {"pid": t.pid})
    uri = lsp.open(VIEWS)
    r = lsp.execute("fp.trace", {"uri": uri, "function": "handle", "interval": 0, "limit": 3, "recorder": recorder})
    assert r["pids"] == [t.pid] and r["function"] == "handle", r
    hints = _trace_hints(
        _hints_when(
            lsp, uri, lambda hs: len(_trace_hints(hs)) >= len(CALLS), 20, "a hint on each calling line of handle"
        )
    )
    by_line = _by_line(hints)
    assert sorted(by_line) == sorted(CALL_LINES.values()), hints
    for text, (_callee, calls) in CALLS.items():
        h = by_line[CALL_LINES[text]]
        m = TRACE_RE.match(h["label"])
        assert m and int(m.group(2)) == calls == h["data"]["calls"], (text, h)
        with open(VIEWS) as f:
            assert h["position"]["character"] == len(f.read().splitlines()[CALL_LINES[text]]), h
    sleep = by_line[CALL_LINES["time.sleep(0.004)"]]
    assert sleep["data"]["cost_ms"] >= 3.5 and sleep["data"] == max((h["data"] for h in hints), key=lambda d: d["pct"])
    # The hover: the call tree as `fp trace` prints it, each of the root's calls with its line.
    def_line = _line_of(VIEWS, "def handle(n):")
    hover = lsp.request(
        "textDocument/hover", {"textDocument": {"uri": uri}, "position": {"line": def_line, "character": 4}}
    )
    text = hover["contents"]["value"]
    assert "**fp trace** handle" in text, text
    for line_text, (callee, calls) in CALLS.items():
        want = "%s%s" % (callee, " (%d calls)" % calls if calls > 1 else "")
        row = [l for l in text.splitlines() if ("] " + want) in l and "from line %d" % (CALL_LINES[line_text] + 1) in l]
        assert row, (want, text)
    # The shares add up: what the lines show is the calls' part of the invocation's cost.
    root_ms = float(re.search(r"\[100\.00%\s+(\d+\.\d+) ms\] handle", text).group(1))
    pct = sum(h["data"]["pct"] for h in hints)
    calls_ms = sum(h["data"]["cost_ms"] for h in hints)
    assert pct <= 100.05 and abs(pct - 100.0 * calls_ms / root_ms) < 0.05 * len(hints), (pct, root_ms, hints)
    # The lens: the invocation's total.
    lenses = lsp.lenses_when(uri, lambda ls: any(l["data"].get("action") == "traced" for l in ls), 15, "the trace lens")
    title = [l["command"]["title"] for l in lenses if l["data"].get("action") == "traced"][0]
    assert re.match(r"^fp trace: \d+(\.\d)? ms \u00b7 invocation [123] of 3", title), title
    # A line typed above everything: the hints move down with the function.
    lsp.change(
        uri,
        2,
        [
            {
                "range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}},
                "text": "# one more line\n",
            }
        ],
    )
    assert sorted(_by_line(_trace_hints(_hints(lsp, uri)))) == sorted(l + 1 for l in CALL_LINES.values())
    # Three invocations: the trace ends by itself and its probe goes; the figures stay.
    lsp.wait_for(
        lambda: [p for m, p in lsp.notifications if m == "fp/status" and p["tracing"] == 0 and p["processes"]],
        20,
        "the trace's end",
    )
    wait_until(lambda: t.pristine() == 0, 10, "the target without fp's probe")
    assert _trace_hints(_hints(lsp, uri))
    r = lsp.execute("fp.stop", {"uri": uri, "function": "handle"})
    assert r["traces"] == 1, r
    assert _trace_hints(_hints(lsp, uri)) == []
    t.assert_healthy()


def test_trace_stopped_by_detach_leaves_the_target_clean(spawn, lsp):
    t = spawn("lsp_views")
    lsp.execute("fp.attach", {"pid": t.pid})
    uri = lsp.open(VIEWS)
    # LSP's own shape of a place (what VS Code sends): the function under the cursor.
    inside = _line_of(VIEWS, "rows.sort()")
    r = lsp.execute(
        "fp.trace", {"textDocument": {"uri": uri}, "position": {"line": inside, "character": 4}, "limit": 1000000}
    )
    assert r["function"] == "handle", r
    _hints_when(lsp, uri, lambda hs: _trace_hints(hs), 20, "trace hints")
    assert t.pristine() > 0
    # fp.stack without a pid: every attached process (here, with the agent's thread left out).
    r = lsp.execute("fp.stack", {})
    assert [s["pid"] for s in r["stacks"]] == [t.pid] and r["failed"] == [], r
    assert [th["name"] for th in r["stacks"][0]["threads"]] == ["MainThread"], r
    os.unlink(r["stacks"][0]["document"][len("file://") :])
    lsp.execute("fp.detach", {"pid": t.pid})
    wait_until(lambda: t.pristine() == 0, 10, "the target without fp's probe")
    assert _trace_hints(_hints(lsp, uri)) == []
    with pytest.raises(Exception) as e:
        lsp.execute("fp.trace", {"uri": uri, "function": "handle", "limit": 0})
    assert "limit is 1 to 1000000" in str(e.value)
    t.assert_healthy()


@pytest.mark.parametrize("recorder", RECORDERS)
def test_fp_trace_model_and_output_name_the_calling_line(spawn, recorder):
    t = spawn("lsp_views")
    run = t.fp("--json", "--cmd", "trace __main__ handle -n 1 -i 0 --recorder %s" % recorder).ok()
    events = [
        r["notification"]["params"]
        for r in run.records()
        if "notification" in r and r["notification"]["method"] == "trace/event"
    ]
    assert len(events) == 1, run.describe()
    got = sorted((c["function"], c["call_line"], c["count"]) for c in events[0]["tree"]["children"])
    want = sorted((callee, CALL_LINES[text] + 1, calls) for text, (callee, calls) in CALLS.items())
    assert got == want, got
    # Deeper calls carry no line (only the root's calls do).
    for c in events[0]["tree"]["children"]:
        assert all("call_line" not in g for g in c["children"]), c
    run = t.fp("--cmd", "trace __main__ handle -n 1 -i 0 --recorder %s" % recorder).ok()
    for text, (callee, _) in CALLS.items():
        assert re.search(r"\] %s.*from line %d$" % (re.escape(callee), CALL_LINES[text] + 1), run.out, re.M), run.out
