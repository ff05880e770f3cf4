"""module FILEPATH: which module name a source file is loaded as in the target."""

import os

import pytest

from conftest import TARGETS


@pytest.fixture(scope="module")
def t(module_spawn):
    # Started in tests/targets so relative paths resolve against the target's working directory.
    return module_spawn("inspectee", cwd=TARGETS)


def test_main_script(t):
    r = t.json("module %s" % os.path.join(TARGETS, "inspectee.py"))
    assert r["module"] == "__main__", r
    assert r["path"] == os.path.realpath(os.path.join(TARGETS, "inspectee.py"))
    assert r["others"] == [], r


def test_helper_module(t):
    r = t.json("module %s" % os.path.join(TARGETS, "fpt_helper.py"))
    assert r["module"] == "fpt_helper", r


def test_relative_path(t):
    r = t.json("module fpt_helper.py")
    assert r["module"] == "fpt_helper"
    assert r["path"] == os.path.realpath(os.path.join(TARGETS, "fpt_helper.py"))


def test_stdlib_module(t, python):
    r = t.json("getglobal os __file__")
    path = r["value"]["repr"].strip("'")
    assert t.json("module %s" % path)["module"] == "os"


def test_not_loaded(t):
    path = os.path.join(TARGETS, "not_loaded.py")
    r = t.cmd("module %s" % path).failed()
    assert "not_loaded.py" in r.err, r.describe()


def test_not_loaded_suggests_same_base_name(t):
    r = t.cmd("module %s" % os.path.join(TARGETS, "elsewhere", "fpt_helper.py"), "--json")
    assert r.rc != 0
    err = r.records()[0]["error"]
    assert err["rpc_code"] == -32001 and err["data"]["missing"] == "file", err
    assert "fpt_helper" in err["data"]["suggestions"], err


def test_missing_file(t):
    r = t.cmd("module /no/such/dir/nothing.py").failed()
    assert "nothing.py" in r.err, r.describe()


def test_target_unaffected(t):
    t.assert_healthy()
