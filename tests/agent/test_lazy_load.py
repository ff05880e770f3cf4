"""The agent imports a command family, and the standard-library modules it uses, only when that
family's first request comes: a first getglobal costs only what getglobal needs. Runs the same
driver as test_fp_agent.py (the package loaded as the native side does) under every CPython.
"""

import pytest

from test_fp_agent import _run, python  # noqa: F401  (python: the interpreter fixture)

# Modules of the agent that a getglobal needs: the dispatcher, its envelope and the value tree.
GETGLOBAL = {"fp_agent", "fp_agent.capture", "fp_agent.dispatch", "fp_agent.errors", "fp_agent.loading",
             "fp_agent.locate", "fp_agent.objects", "fp_agent.params", "fp_agent.registry", "fp_agent.render"}


def _steps():
    return [
        {"key": "loaded", "op": "probe"},
        {"key": "getglobal", "method": "getglobal", "params": {"module": "__main__", "field": "main"}},
        {"key": "after_getglobal", "op": "probe"},
        {"key": "missing", "method": "getglobal", "params": {"module": "__main__", "field": "mian"}},
        {"key": "watch", "method": "watch.start", "params": {"module": "__main__", "method": "main", "limit": 1}},
        {"key": "stop", "method": "watch.stop", "params": {}},
        {"key": "after_watch", "op": "probe"},
    ]


@pytest.fixture(scope="module")
def lazy(python, tmp_path_factory):  # noqa: F811
    run = _run(python, _steps(), "bare", tmp_path_factory, extra_args=["-S"])
    assert run.returncode == 0, run.stderr
    return run


def test_loading_imports_only_the_dispatcher(lazy):
    fp = set(lazy["loaded"]["probe"]["fp modules"])
    assert fp <= {"fp_agent", "fp_agent.capture", "fp_agent.dispatch", "fp_agent.errors", "fp_agent.loading",
                  "fp_agent.registry"}, sorted(fp)


def test_a_first_getglobal_imports_only_what_it_needs(lazy):
    assert lazy.result("getglobal")["value"]["type"] == "function"
    probe = lazy["after_getglobal"]["probe"]
    assert set(probe["fp modules"]) == GETGLOBAL, probe["fp modules"]
    # No family's standard-library modules either: watch's ast, the console's inspect...
    heavy = {"ast", "inspect", "traceback", "difflib", "copy", "codeop", "linecache", "tokenize"}
    assert not heavy & set(probe["imported"]), sorted(heavy & set(probe["imported"]))


def test_later_families_are_imported_when_used(lazy):
    assert lazy.error("missing")["data"]["suggestions"] == ["main"]  # difflib, imported then
    assert lazy.result("watch")["watch_id"] >= 1
    probe = lazy["after_watch"]["probe"]
    assert {"fp_agent.watch", "fp_agent.instrument"} <= set(probe["fp modules"]), probe["fp modules"]
    assert {"ast", "difflib"} <= set(probe["imported"]) | set(lazy["loaded"]["probe"]["imported"]), probe
    assert "fp_agent.console" not in probe["fp modules"] and "fp_agent.trace" not in probe["fp modules"]
    assert probe["changed"] == [], probe["changed"]
