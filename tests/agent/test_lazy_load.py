"""The agent imports a command family, and the standard-library modules it uses, only when that
family's first request comes: a first getglobal costs only what getglobal needs. Runs the same
driver as test_fp_agent.py (the package loaded as the native side does) under every CPython.
"""

import pytest
from test_fp_agent import _run, python  # noqa: F401  (python: the interpreter fixture)

# Modules of the agent that a getglobal needs: the dispatcher, its envelope and the value tree.
LOADED = {
    "fp_agent",
    "fp_agent.capture",
    "fp_agent.dispatch",
    "fp_agent.errors",
    "fp_agent.jsontext",
    "fp_agent.loading",
    "fp_agent.pycache",
    "fp_agent.registry",
}
GETGLOBAL = LOADED | {"fp_agent.locate", "fp_agent.objects", "fp_agent.params", "fp_agent.render"}


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
    assert fp <= LOADED, sorted(fp)


def test_a_first_getglobal_imports_only_what_it_needs(lazy):
    assert lazy.result("getglobal")["value"]["type"] == "function"
    probe = lazy["after_getglobal"]["probe"]
    assert set(probe["fp modules"]) == GETGLOBAL, probe["fp modules"]
    # No family's standard-library modules either (the console's inspect...), nor json's re.
    heavy = {"ast", "inspect", "traceback", "difflib", "copy", "codeop", "linecache", "tokenize", "re", "enum"}
    assert not heavy & set(probe["imported"]), sorted(heavy & set(probe["imported"]))


def test_later_families_are_imported_when_used(lazy):
    assert lazy.error("missing")["data"]["suggestions"] == ["main"]  # difflib, imported then
    assert lazy.result("watch")["watch_id"] >= 1
    probe = lazy["after_watch"]["probe"]
    assert {"fp_agent.watch", "fp_agent.instrument"} <= set(probe["fp modules"]), probe["fp modules"]
    assert {"traceback", "difflib"} <= set(probe["imported"]), probe  # watch's, when it was armed
    assert "fp_agent.console" not in probe["fp modules"] and "fp_agent.trace" not in probe["fp modules"]
    # The bare process never imported threading: imported for it before the probe was armed
    # (the program's threads run the probe's code), the process's main thread its main thread.
    assert lazy["after_getglobal"]["probe"]["threading loaded"] is False
    assert set(probe["changed"]) <= {"threading loaded", "threading._active"}, probe["changed"]
    assert probe["threading main"] == probe["process main"] and probe["threading active"] == [probe["process main"]]


# In a process that never imported json, the agent reads and writes its messages with json's C
# accelerator, without importing json (and re): same text as json.dumps, same values as
# json.loads, json's messages for malformed text.
_BARE_JSON = r"""
import sys
import _frozen_importlib as fb, _frozen_importlib_external as fe
directory = sys.argv[1]
spec = fe.spec_from_file_location("fp_agent", directory + "/__init__.py", submodule_search_locations=[directory])
package = fb.module_from_spec(spec)
sys.modules["fp_agent"] = package
spec.loader.exec_module(package)
handle = package.dispatch.handle
jsontext = sys.modules["fp_agent.jsontext"]
values = [None, True, 1, -2.5, 1e300, "é\u2028\x00\"\\", [1, [2, {}]], {"a": {"b": [None]}, "1": 2}, {1: "int key"}]
texts = [jsontext.dumps(v) for v in values]
decoded = [jsontext.loads(t) for t in texts]
answers = [handle(1, '{"jsonrpc": "2.0", "id": 7, "method": "getglobal", "params": {"module": "sys", "field": "flags"}}')]
loaded = [m for m in ("json", "re", "enum") if m in sys.modules]
errors = []  # (json's C scanner imports json.decoder to raise its error: that is the exception)
for bad in ("", "{", "[1,]", "1 2", '{"a" 1}', "nul", "  [1] x"):
    try:
        jsontext.loads(bad)
        errors.append(None)
    except ValueError as exc:
        errors.append(str(exc))
for bad in (float("nan"), object()):
    try:
        jsontext.dumps(bad)
        errors.append(None)
    except (TypeError, ValueError) as exc:
        errors.append(type(exc).__name__)
answers.append(handle(1, '{"jsonrpc": "2.0", "id": 8, "method"'))
import json
expected = []
for bad in ("", "{", "[1,]", "1 2", '{"a" 1}', "nul", "  [1] x"):
    try:
        json.loads(bad)
        expected.append(None)
    except ValueError as exc:
        expected.append(str(exc))
print(json.dumps({
    "expected": expected,
    "loaded": loaded,
    "same_text": [t == json.dumps(v, ensure_ascii=False, separators=(",", ":")) for v, t in zip(values, texts)],
    "same_value": [d == json.loads(t) for d, t in zip(decoded, texts)],
    "errors": errors,
    "answers": [json.loads(a) for a in answers],
}))
"""


def test_messages_without_json(python, tmp_path):  # noqa: F811
    import json
    import os
    import subprocess

    here = os.path.dirname(os.path.abspath(__file__))
    agent = os.path.normpath(os.path.join(here, "..", "..", "agent", "fp_agent"))
    proc = subprocess.run(
        [python, "-S", "-c", _BARE_JSON, agent],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
        timeout=60,
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    out = json.loads(proc.stdout)
    assert out["loaded"] == [], out["loaded"]  # the agent answered without importing json or re
    assert all(out["same_text"]) and all(out["same_value"]), out
    assert out["errors"] == out["expected"] + ["ValueError", "TypeError"], out["errors"]
    ok, bad = out["answers"]
    assert ok["id"] == 7 and ok["result"]["value"]["type"] == "sys.flags", ok
    assert bad["error"]["code"] == -32700 and "request is not valid JSON" in bad["error"]["message"], bad
