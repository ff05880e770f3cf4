"""vmtool against a real target (tests/targets/memtarget.py) under every CPython: getInstances counts
exactly, with and without subclasses, with -n, -e, -x and -r, and refuses precisely; forceGc
collects a known set of reference cycles (automatic collection is off in the target) and says
what each generation collected.
"""

import re

import pytest
from test_mem import MemTarget  # noqa: F401  (registers the target kind)


@pytest.fixture(scope="module")
def target(module_spawn, tmp_path_factory, python):
    return module_spawn("memtarget", str(tmp_path_factory.mktemp("cmd-" + python.id)))


def test_instances_exact_and_with_subclasses(target):
    r = target.json("vmtool -a getInstances -c __main__ Base")
    assert r["total"] == 7 and r["shown"] == 7 and not r["subclasses"], r
    assert r["by_class"] == [{"class": "__main__.Base", "count": 7}]
    assert all(i["class"] == "__main__.Base" and i["value"]["type"] == "__main__.Base" for i in r["instances"])
    assert sorted(
        int([c for c in i["value"]["children"] if c["name"] == "n"][0]["value"]["repr"]) for i in r["instances"]
    ) == list(range(7))
    r = target.json("vmtool -a getInstances -c __main__ Base --subclasses -n -1")
    assert r["total"] == 15 and r["shown"] == 15 and r["subclasses"], r
    assert r["by_class"] == [
        {"class": "__main__.Base", "count": 7},
        {"class": "__main__.Sub", "count": 5},
        {"class": "__main__.SubSub", "count": 3},
    ], r["by_class"]
    assert r["classes"] == ["__main__.Base", "__main__.Sub", "__main__.SubSub"]
    assert sorted(i["class"] for i in r["instances"]).count("__main__.SubSub") == 3
    r = target.json("vmtool -a getInstances -c __main__ Sub --subclasses -n 2")
    assert r["total"] == 8 and r["shown"] == 2 and len(r["instances"]) == 2, r
    r = target.json("vmtool -a getInstances -c __main__ Blob")
    assert r["total"] == 0 and r["instances"] == []


def test_instances_expression_depth_raw(target):
    r = target.json('vmtool -a getInstances -c __main__ Base --subclasses -e "len(instances)"')
    assert r["total"] == 15 and r["value"]["repr"] == "10", r  # -n 10 by default: the list bound
    r = target.json('vmtool -a getInstances -c __main__ Base --subclasses -n -1 -e "sorted(i.n for i in instances)"')
    assert r["value"]["repr"] == repr(sorted(list(range(7)) + list(range(5)) + list(range(3)))), r
    r = target.json("vmtool -a getInstances -c __main__ Base -n 1 -r")
    assert set(r["instances"][0]["value"]) == {"type", "repr"}, r
    r = target.json("vmtool -a getInstances -c __main__ Base -n 1 -x 2")
    assert "children" in r["instances"][0]["value"], r


def test_instances_refusals(target):
    cases = [
        ("vmtool -a getInstances -c __main__ Bsae", -32001, "class"),
        ("vmtool -a getInstances -c __mian__ Base", -32001, "module"),
        ('vmtool -a getInstances -c __main__ Base -e "instances["', -32002, None),
        ('vmtool -a getInstances -c __main__ Base -e "1/0"', -32002, None),
    ]
    for command, code, missing in cases:
        run = target.cmd(command, "--json").failed()
        err = run.records()[-1]["error"]
        assert err["rpc_code"] == code, run.describe()
        if missing:
            assert err["data"]["missing"] == missing and err["data"]["suggestions"], run.describe()
    for command, words in [
        ("vmtool", "needs an action"),
        ("vmtool -a getInstances __main__ Base", "-c is missing"),
        ("vmtool -a forceGc -c __main__ Base", "takes no class"),
        ("vmtool -a getInstances -c __main__ Base -n 0", "-1 for all"),
        ("vmtool -a dump", "unknown vmtool action 'dump'"),
    ]:
        run = target.cmd(command).failed()
        assert words in run.err and run.rc == 2, run.describe()


def test_instances_human(target):
    run = target.cmd("vmtool -a getInstances -c __main__ Base --subclasses -n 2").ok()
    assert run.out.startswith(
        "15 live instances of __main__.Base and its subclasses: __main__.Base 7, "
        "__main__.Sub 5, __main__.SubSub 3; 2 shown (-n N shows more, -n -1 all)\n"
    ), run.out
    assert re.search(r"^\[0\]: __main__\.\w+ = <__main__\.\w+ object at 0x[0-9a-f]+>$", run.out, re.M), run.out
    assert re.search(r"^  n: int = \d$", run.out, re.M), run.out


def test_force_gc_collects_known_cycles(target):
    target.request("cycles 50")
    assert target.json('getglobal __main__ WEAK -e "len(target)"')["value"]["repr"] == "100"
    r = target.json("vmtool -a forceGc")
    assert [g["generation"] for g in r["generations"]] == [0, 1, 2], r
    assert r["collected"] >= 100 and r["unreachable"] >= 100 and r["uncollectable"] == 0, r
    assert r["collected"] == sum(g["collected"] for g in r["generations"]) and r["ms"] > 0
    assert not r["enabled"] and r["tracked_after"] < r["tracked_before"], r
    assert target.json('getglobal __main__ WEAK -e "len(target)"')["value"]["repr"] == "0"
    target.request("cycles 5")
    run = target.cmd("vmtool -a forceGc").ok()
    assert re.search(
        r"^full collection in \d+\.\d\d ms: \d+ unreachable objects found, \d+ collected, "
        r"0 uncollectable \(automatic collection is disabled in this process\)$",
        run.out,
        re.M,
    ), run.out
    assert re.search(r"^  generation 2: \d+ collected, 0 uncollectable, \d+\.\d\d ms$", run.out, re.M), run.out
    assert target.json('getglobal __main__ WEAK -e "len(target)"')["value"]["repr"] == "0"
