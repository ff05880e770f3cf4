"""tt (time tunnel) against a real target (tests/targets/observed.py) under every CPython:
recording with -n/-f/--copy, listing with -m, showing with -x/-r/-v, replaying, deleting, and
the recording probe removed at its limit, at Ctrl-C/--timeout and when its client goes.
"""

import json
import re
import signal

import pytest
from test_watch import Observed, _background, _finish  # noqa: F401  (registers the target kind)

from conftest import wait_until


@pytest.fixture(scope="module")
def target(module_spawn):
    return module_spawn("observed")


@pytest.fixture
def clean(target):
    target.json("tt -da")
    yield target
    assert target.pristine() == []


def run_json(t, *commands, **kw):
    args = ["--json"] + list(kw.pop("opts", ()))
    for c in commands:
        args += ["--cmd", c]
    run = t.fp(*args, **kw).ok()
    out = []
    for rec in run.records():
        assert "error" not in rec, run.describe()
        if "result" in rec:
            out.append((rec["result"], []))
        else:
            out[-1][1].append(rec["notification"])
    return out


def values(detail):
    return {v["expr"]: v["value"] for v in detail["values"]}


def test_record_list_show_replay_delete(clean):
    out = run_json(
        clean,
        "tt -t __main__ Shop buy -n 3",
        "tt -t __main__ add -n 2 -f 'args[0] % 2 == 0'",
        "tt -l",
        "tt -l -m __main__.Shop.buy",
        "tt -l -m __main__.None.add",
        "tt -l -m __main__.add",
    )
    start, notes = out[0]
    assert start["located"]["kind"] == "method" and start["limit"] == 3 and not start["copy"]
    recs = [n["params"] for n in notes if n["method"] == "tt/record"]
    assert [r["index"] for r in recs] == [1000, 1001, 1002], notes
    assert [n["params"]["reason"] for n in notes if n["method"] == "tt/end"] == ["limit"]
    assert all(r["method"] == "__main__.Shop.buy" and r["outcome"] == "returned" for r in recs)
    adds = [n["params"] for n in out[1][1] if n["method"] == "tt/record"]
    assert [r["index"] for r in adds] == [1003, 1004]
    listed = out[2][0]["records"]
    assert [r["index"] for r in listed] == [1000, 1001, 1002, 1003, 1004]
    assert [r["index"] for r in out[3][0]["records"]] == [1000, 1001, 1002]
    assert [r["index"] for r in out[4][0]["records"]] == [1003, 1004]
    # A module-level function is shown as module.function; -m takes that and the seed's spelling.
    assert [r["method"] for r in adds] == ["__main__.add"] * 2, adds
    assert [r["index"] for r in out[5][0]["records"]] == [1003, 1004]

    (shown, _), (raw, _), (verbose, _), (replayed, _), (shown_add, _) = run_json(
        clean, "tt -i 1001 -x 2", "tt -i 1001 -r", "tt -i 1001 -v", "tt -i 1003 -p", "tt -i 1003"
    )
    v = values(shown)
    assert v["target"]["type"] == "__main__.Shop" and "children" in v["target"]
    assert re.match(r"\('(item|cb)\d+', [12]\)", v["args"]["repr"]), v["args"]
    assert set(values(raw)["target"]) == {"type", "repr"}
    assert shown["located"]["qualname"] == "Shop.buy"
    # replay: same arguments, same result, a new index; the original is unchanged
    assert replayed["index"] == 1005 and replayed["replay_of"] == 1003
    assert values(replayed)["return_obj"]["repr"] == values(shown_add)["return_obj"]["repr"]
    assert replayed["thread"]["name"] == "fp-agent (replay)"

    (deleted, _), (listed, _), (all_deleted, _), (empty, _) = run_json(clean, "tt -d 1000", "tt -l", "tt -da", "tt -l")
    assert deleted["deleted"] == [1000] and 1000 not in [r["index"] for r in listed["records"]]
    assert sorted(all_deleted["deleted"]) == [1001, 1002, 1003, 1004, 1005] and empty["records"] == []


def test_filter_runs_once_per_call(clean):
    (start, notes), (listed, _) = run_json(
        clean, "tt -t __main__ add -n 2 -f 'fptarget.saw(args[0]) and args[0] % 2 == 0'", "tt -l"
    )
    assert [n["params"]["reason"] for n in notes if n["method"] == "tt/end"] == ["limit"]
    got = [int(r["summary"]) - 14 for r in listed["records"]]  # add(i, 2, 3, c=4, d=5) == i + 14
    assert len(got) == 2 and all(v % 2 == 0 for v in got), listed
    counts, repeated, _ = clean.filter_runs(got)
    assert counts == [1, 1] and repeated == 0, (counts, repeated)


def test_by_reference_and_copy(clean):
    # DATA-like mutation: Shop.items is mutated by the program after each buy (kept to 5)
    (_, notes), (by_ref, _) = run_json(clean, "tt -t __main__ Shop buy -n 1", "tt -i 1000 -x 2")
    (_, notes2), (copied, _) = run_json(clean, "tt -t __main__ Shop buy -n 1 --copy", "tt -i 1001 -x 2")
    assert [n["params"]["index"] for n in notes + notes2 if n["method"] == "tt/record"] == [1000, 1001]
    assert not by_ref["copied"] and copied["copied"]
    item = values(by_ref)["args"]["children"][0]["value"]["repr"]
    clean.wait_progress(more=2)  # the program goes on buying: the live list changes
    (later, _), (later_copy, _) = run_json(clean, "tt -i 1000 -x 2", "tt -i 1001 -x 2")
    live_items = [c["value"]["repr"] for c in values(later)["target"]["children"] if c["name"] == "items"]
    copy_items = [c["value"]["repr"] for c in values(later_copy)["target"]["children"] if c["name"] == "items"]
    assert live_items != [c["value"]["repr"] for c in values(by_ref)["target"]["children"] if c["name"] == "items"], (
        "a reference shows the object as it is now"
    )
    assert copy_items == [c["value"]["repr"] for c in values(copied)["target"]["children"] if c["name"] == "items"], (
        "a copy does not change"
    )
    assert item


def test_exceptions_async_and_refusals(clean):
    out = run_json(
        clean,
        "tt -t __main__ boom -n 2 -f 'exception is not None'",
        "tt -t __main__ fetch -n 1",
        "tt -t __main__ numbers -n 1",
        "tt -t __main__ outer -nm inner -n 1",
    )
    raised = [n["params"] for n in out[0][1] if n["method"] == "tt/record"]
    assert [r["outcome"] for r in raised] == ["raised", "raised"] and "ValueError" in raised[0]["summary"]
    first = raised[0]["index"]
    (detail, _), (replayed, _) = run_json(clean, "tt -i %d" % first, "tt -i %d -p" % first)
    assert detail["exception"]["type"] == "ValueError" and "Traceback" in detail["exception"]["traceback"]
    assert replayed["outcome"] == "raised" and replayed["exception"]["message"] == detail["exception"]["message"]
    # a coroutine is replayed on the event loop it was recorded on
    fetched = [n["params"] for n in out[1][1] if n["method"] == "tt/record"][0]
    ((replayed, _),) = run_json(clean, "tt -i %d -p" % fetched["index"])
    assert replayed["outcome"] == "returned" and values(replayed)["return_obj"]["repr"] == fetched["summary"]
    # ... and says so: it ran on the loop's thread, not the agent's
    assert replayed["thread"]["name"] == "loop" and replayed["thread"] == fetched["thread"], (replayed, fetched)
    # generators and nested functions are recorded, but not replayed
    for params in (out[2][1], out[3][1]):
        index = [n["params"] for n in params if n["method"] == "tt/record"][0]["index"]
        run = clean.cmd("tt -i %d -p" % index, "--json").failed()
        assert run.records()[-1]["error"]["rpc_code"] == -32004, run.describe()
    run = clean.cmd("tt -i 99999", "--json").failed()
    assert run.records()[-1]["error"]["data"]["missing"] == "record"
    for bad in ("tt", "tt -l -da", "tt -p", "tt -t __main__", "tt -l __main__ add"):
        run = clean.cmd(bad).failed()
        assert "usage" in run.err, run.describe()


def test_recording_removed_at_timeout_and_when_client_goes(clean):
    run = clean.cmd("tt -t __main__ add -f 'args[0] < 0'", "--timeout", "0.5").ok()
    assert "fp: tt stopped (--timeout) after 0 reports" in run.err, run.describe()
    assert clean.pristine() == []
    proc = _background(clean, "tt -t __main__ add -n 10000", "--json")
    got = 0
    while got < 2:
        rec = json.loads(proc.stdout.readline())
        got += rec.get("notification", {}).get("method") == "tt/record"
    _finish(proc, signal.SIGKILL)
    wait_until(lambda: clean.pristine() == [], 10, "the target to be restored")
    # the records stay (they belong to the agent), for another client
    listed = clean.json("tt -l")
    assert len(listed["records"]) >= 2


def test_human_output(clean):
    run = clean.fp("--cmd", "tt -t __main__ Shop buy -n 2", "--cmd", "tt -l", "--cmd", "tt -i 1000").ok()
    assert "recording calls of Shop.buy" in run.out and "kept by reference" in run.out, run.describe()
    assert re.search(r"^\s+1000  \d{4}-\d\d-\d\d .* __main__\.Shop\.buy  returned '", run.out, re.M), run.describe()
    assert "recording ended: 2 calls recorded" in run.out
    assert re.search(r"^record 1000: __main__\.Shop\.buy", run.out, re.M) and "  target: __main__.Shop" in run.out


def test_list_columns_line_up(clean):
    """tt -l: every column starts where its header does, however long a thread name or a
    method is (the calls of fetch run on the thread named "loop", the others on the worker)."""
    run = clean.fp(
        "--cmd",
        "tt -t __main__ Shop buy -n 2",
        "--cmd",
        "tt -t __main__ add -n 2",
        "--cmd",
        "tt -t __main__ fetch -n 1",
        "--cmd",
        "tt -l",
    ).ok()
    lines = run.out.splitlines()
    head = [i for i, l in enumerate(lines) if l.lstrip().startswith("INDEX")][-1]
    header = lines[head]
    rows = lines[head + 1 : head + 6]
    assert len(rows) == 5 and all(re.match(r"^\s+\d{4}  ", r) for r in rows), run.describe()
    starts = [header.index(name) for name in ("TIME", "THREAD", "METHOD", "RESULT")]
    cost_end = header.index("COST") + len("COST")
    for row in rows:
        for start in starts:  # a column's text starts right after two spaces, under its header
            assert row[start - 2 : start] == "  " and row[start] != " ", (start, header, row)
        assert row[cost_end - 3 : cost_end] == " ms" or row[cost_end - 2 : cost_end] == " s", (header, row)
    assert any("__main__.add " in r for r in rows) and not any(".None." in r for r in rows), rows
