"""getglobal: module globals, class attributes, the value tree (-x, -v, -r), -e expressions,
and errors that name what was not found with near names. One inspectee per interpreter
serves these read-only tests; it is checked healthy at the end of the module."""

import pytest


@pytest.fixture(scope="module")
def t(module_spawn):
    return module_spawn("inspectee")


def value(t, command):
    return t.json(command)["value"]


def children(node):
    return {c["name"]: c["value"] for c in node.get("children", [])}


def test_module_global_dict(t):
    r = t.json("getglobal __main__ CONFIG")
    assert r["module"] == "__main__" and r["field"] == "CONFIG" and r["class"] in (None, "")
    v = r["value"]
    assert v["type"] == "dict" and v["len"] == 3
    kids = children(v)
    assert set(kids) == {"'name'", "'db'", "'features'"}, kids
    assert kids["'name'"]["type"] == "str" and kids["'name'"]["repr"] == "'inspectee'"
    # depth 1 (default): the nested dict is not expanded but says it could be
    assert kids["'db'"]["type"] == "dict" and kids["'db'"].get("expandable") is True
    assert "children" not in kids["'db'"]


def test_depth(t):
    v = value(t, "getglobal __main__ CONFIG -x 2")
    db = children(v)["'db'"]
    assert set(children(db)) == {"'host'", "'port'", "'options'"}
    assert children(db)["'options'"].get("expandable") is True
    v4 = value(t, "getglobal __main__ CONFIG -x 4")
    retries = children(children(children(v4)["'db'"])["'options'"])["'retries'"]
    assert [c["value"]["repr"] for c in retries["children"]] == ["1", "2", "4"]


def test_depth_out_of_range(t):
    t.cmd("getglobal __main__ CONFIG -x 9").failed()


def test_class_attribute(t):
    r = t.json("getglobal __main__ Registry counter")
    assert r["class"] == "Registry"
    assert r["value"]["type"] == "int" and r["value"]["repr"] == "42"
    names = value(t, "getglobal __main__ Registry names")
    assert [c["value"]["repr"] for c in names["children"]] == ["'alpha'", "'beta'", "'gamma'"]
    # private class attributes by their mangled name
    assert value(t, "getglobal __main__ Registry _Registry__secret")["repr"] == "'hidden'"


def test_other_module(t):
    v = value(t, "getglobal fpt_helper HELPER_VALUE")
    assert children(v)["'answer'"]["repr"] == "42"
    assert value(t, "getglobal fpt_helper Helper sizes")["repr"] == "(1, 2, 3)"


def test_verbose_lists_everything(t):
    v = value(t, "getglobal __main__ ITEMS")
    assert v["len"] == 100 and len(v["children"]) == 20 and v["omitted"] == 80
    assert [c["name"] for c in v["children"][:3]] == ["[0]", "[1]", "[2]"]
    vv = value(t, "getglobal __main__ ITEMS -v")
    assert len(vv["children"]) == 100 and vv.get("omitted", 0) == 0
    assert vv["children"][99]["name"] == "[99]" and vv["children"][99]["value"]["repr"] == "99"


def test_raw_and_truncation(t):
    v = value(t, "getglobal __main__ LONG_TEXT")
    assert v.get("repr_truncated") is True and len(v["repr"]) <= 256 + 3, len(v["repr"])
    raw = value(t, "getglobal __main__ LONG_TEXT -r")
    assert raw["repr"] == repr("x" * 1000)
    assert set(raw) == {"type", "repr"}, raw
    raw_dict = value(t, "getglobal __main__ CONFIG -r")
    assert set(raw_dict) == {"type", "repr"} and raw_dict["repr"].startswith("{'name': 'inspectee'")


def test_expression(t):
    r = t.json('getglobal __main__ ITEMS -e "len(target)"')
    assert r["expr"] == "len(target)" and r["value"]["repr"] == "100"
    v = value(t, "getglobal __main__ CONFIG -e \"target['db']['port'] + 1\"")
    assert v["repr"] == "5433"
    v = value(t, 'getglobal __main__ Registry limits -e "sorted(target)" -x 2')
    assert [c["value"]["repr"] for c in v["children"]] == ["'high'", "'low'"]


def test_self_reference_and_slots(t):
    v = value(t, "getglobal __main__ LOOP -x 4")  # must terminate
    assert v["len"] == 3 and "[...]" in v["repr"]
    slots = value(t, "getglobal __main__ ORIGIN")
    assert slots["type"] == "__main__.Point"
    assert {k: c["repr"] for k, c in children(slots).items()} == {"x": "3", "y": "4"}
    plain = value(t, "getglobal __main__ PLAIN -x 2")
    assert children(children(plain)["point"])["y"]["repr"] == "6"


def test_repr_that_raises(t):
    v = value(t, "getglobal __main__ BAD")
    assert v["repr"].startswith("<repr failed: ValueError"), v


def test_unknown_module_suggests(t):
    r = t.cmd("getglobal fpt_helpr HELPER_VALUE").failed()
    assert "fpt_helper" in r.err, r.describe()
    r = t.cmd("getglobal no_such_module_at_all X").failed()
    assert "no_such_module_at_all" in r.err, r.describe()


def test_unknown_class_suggests(t):
    r = t.cmd("getglobal __main__ Registy counter").failed()
    assert "Registry" in r.err, r.describe()


def test_unknown_field_suggests(t):
    r = t.cmd("getglobal __main__ Registry countr").failed()
    assert "counter" in r.err, r.describe()
    r = t.cmd("getglobal __main__ CONFIF").failed()
    assert "CONFIG" in r.err, r.describe()


def test_error_as_json(t):
    r = t.cmd("getglobal __main__ CONFIF", "--json")
    assert r.rc != 0
    recs = r.records()
    assert len(recs) == 1 and "error" in recs[0], r.describe()
    err = recs[0]["error"]
    assert err["rpc_code"] == -32001, err
    assert err["data"]["missing"] == "field" and "CONFIG" in err["data"]["suggestions"], err


def test_expression_syntax_error(t):
    r = t.cmd('getglobal __main__ ITEMS -e "target +"').failed()
    assert "SyntaxError" in r.err, r.describe()


def test_expression_raises(t):
    r = t.cmd('getglobal __main__ ITEMS -e "1 / 0"').failed()
    assert "ZeroDivisionError" in r.err, r.describe()
    r = t.cmd("getglobal __main__ CONFIG -e \"target['nope']\"").failed()
    assert "KeyError" in r.err, r.describe()


def test_target_unaffected(t):
    # The expressions above ran inside the target; its own state and work are intact.
    assert value(t, "getglobal __main__ Registry counter")["repr"] == "42"
    assert value(t, 'getglobal __main__ ITEMS -e "target == list(range(100))"')["repr"] == "True"
    t.assert_healthy()
