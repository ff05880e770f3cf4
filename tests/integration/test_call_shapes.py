"""What a new user meets on a thread-per-request service (tests/targets/thread_server.py, a
socketserver.ThreadingTCPServer fed over loopback), under every CPython:

- a seed-style filter on kwargs matches a call however the caller spelt it (by keyword, by
  position, everything by keyword), never a call that left the default, with watch, tt and trace;
- kwargs never shows a default nobody passed; params names every parameter;
- trace names the thread of every invocation, although each request's thread is gone by the
  time its tree is sent;
- a filter that raises shows nothing, uses up nothing of -n, and after three identical failures
  the watch ends with the error (exit 1).
"""

import ast
import re

import pytest

from conftest import KINDS, Target


class ThreadServer(Target):
    kind = "thread_server"
    line_re = re.compile(r"^served \d+$")
    progress_re = line_re
    settle_progress = 3


KINDS["thread_server"] = ThreadServer

SPELLINGS = ("keyword", "positional", "default", "default passed", "all by keyword")
HALF = 'kwargs.get("coupon") == "HALF"'


@pytest.fixture(scope="module")
def server(module_spawn):
    return module_spawn("thread_server")


def notes(run):
    """(result, [notification params]) of a one-command --json run."""
    recs = run.records()
    return recs[0].get("result"), [r["notification"] for r in recs[1:] if "notification" in r]


def spelling(prices_repr):
    return SPELLINGS[ast.literal_eval(prices_repr)[0]]


def test_kwargs_filter_matches_every_spelling(server):
    run = server.cmd("watch __main__ Pricing total -f '%s' -n 6 --expr 'args[0], kwargs, params'" % HALF, "--json").ok()
    _, got = notes(run)
    events = [n["params"] for n in got if n["method"] == "watch/event"]
    assert len(events) == 6, run.describe()
    seen = set()
    for e in events:
        v = {x["expr"]: x["value"]["repr"] for x in e["values"]}
        kind = spelling(v["args[0]"])
        seen.add(kind)
        assert ast.literal_eval(v["kwargs"]) == {"prices": ast.literal_eval(v["args[0]"]), "coupon": "HALF"}, v
        assert ast.literal_eval(v["params"]) == ast.literal_eval(v["kwargs"]), v
    assert seen == {"keyword", "positional", "all by keyword"}, seen


def test_tt_and_trace_filters_see_the_same(server):
    server.json("tt -da")
    run = server.cmd("tt -t __main__ Pricing total -f '%s' -n 4" % HALF, "--json").ok()
    records = [n["params"] for n in notes(run)[1] if n["method"] == "tt/record"]
    # halved: (0 + 30) / 2, (1 + 30) / 2, (4 + 30) / 2 for the three spellings that pass a coupon
    assert len(records) == 4 and all(float(r["summary"]) in (15.0, 15.5, 17.0) for r in records), run.describe()
    shown = server.json("tt -i %d" % records[0]["index"])
    values = {v["expr"]: v["value"]["repr"] for v in shown["values"]}
    assert ast.literal_eval(values["kwargs"])["coupon"] == "HALF", values
    server.json("tt -da")
    run = server.cmd("trace __main__ Pricing total -f '%s' -n 3" % HALF, "--json").ok()
    traced = [n["params"] for n in notes(run)[1] if n["method"] == "trace/event"]
    assert len(traced) == 3, run.describe()


def test_no_default_shown_as_passed(server):
    run = server.cmd("watch __main__ spread -n 2", "--json").ok()  # the default --expr: args,kwargs
    events = [n["params"] for n in notes(run)[1] if n["method"] == "watch/event"]
    assert len(events) == 2, run.describe()
    for e in events:
        v = {x["expr"]: x["value"]["repr"] for x in e["values"]}
        assert v == {"args": "(1, 2, 3, 4)", "kwargs": "{}"}, v  # spread(1, 2, 3, 4): c is its default
    run = server.cmd("watch __main__ Pricing total -f 'args[0][0] == 2' -n 1", "--json").ok()  # total(p)
    v = {x["expr"]: x["value"]["repr"] for x in [n["params"] for n in notes(run)[1]][0]["values"]}
    assert ast.literal_eval(v["kwargs"]) == {"prices": [2, 10, 20]}, v  # no coupon: nobody passed one


def test_trace_names_every_thread(server):
    run = server.cmd("trace __main__ Handler handle -n 6", "--json").ok()
    events = [n["params"] for n in notes(run)[1] if n["method"] == "trace/event"]
    assert len(events) == 6, run.describe()
    names = [e["thread"]["name"] for e in events]
    assert all(n and n.startswith("Thread-") for n in names), names


def test_a_filter_that_raises_stops_the_watch(server):
    run = server.cmd("watch __main__ Pricing total -f 'args[0].missing' -n 2", "--json").failed()
    _, got = notes(run)
    assert [n["method"] for n in got] == ["watch/end"], run.describe()
    end = got[0]["params"]
    assert end["reason"] == "filter_failed" and end["count"] == 0 and end["filter_errors"] == 3, end
    assert "AttributeError" in run.err and "args[0].missing" in run.err, run.describe()
    # human: the end line, then the error on stderr; no call is printed as a match
    run = server.cmd("watch __main__ Pricing total -f 'args[0].missing' -n 2").failed()
    assert "0 calls reported, the filter kept failing" in run.out and "[1]" not in run.out, run.describe()
    assert "fp: watch: the filter args[0].missing raised AttributeError" in run.err, run.describe()
    # a filter failing for some calls only: those are left out, the others count
    run = server.cmd(
        "watch __main__ Pricing total -f 'kwargs[\"coupon\"] == \"HALF\"' -n 4 --expr 'args[0]'", "--json"
    ).ok()
    _, got = notes(run)
    events = [n["params"] for n in got if n["method"] == "watch/event"]
    end = [n["params"] for n in got if n["method"] == "watch/end"][0]
    assert len(events) == 4 and end["reason"] == "limit", run.describe()
    assert all(spelling([x["value"]["repr"] for x in e["values"]][0]) != "default" for e in events), events
    assert end["filter_errors"] >= 1, end  # total(p): no coupon in kwargs, a KeyError
