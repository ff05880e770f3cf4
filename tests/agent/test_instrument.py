"""In-process tests of the instrumentation engine (fp_agent.instrument), function location
(locate.locate_function), watch and tt, under every CPython on the machine.

Each interpreter runs tests/agent/instrument_check.py once (all checks in one process, about a
second); every check is then a test of its own here. FP_PYTHONS=py3.12,system-3.11 narrows.
"""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
AGENT_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "agent", "fp_agent"))
CHECK = os.path.join(HERE, "instrument_check.py")

sys.path.insert(0, HERE)
import instrument_check  # noqa: E402  (only for the list of checks; it loads nothing on import)

NAMES = [fn.__name__ for fn in instrument_check.CHECKS]


def _interpreters():
    """(id, path) of every interpreter tests/integration/pythons.py finds (FP_PYTHONS narrows)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
    import pythons

    return [(p.id, p.path) for p in pythons.select()]


PYTHONS = _interpreters()
_results = {}


def _run(name, path):
    if name not in _results:
        proc = subprocess.run(
            [path, CHECK, AGENT_DIR],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            universal_newlines=True,
            timeout=120,
        )
        records = {}
        for line in proc.stdout.splitlines():
            record = json.loads(line)
            records[record["name"]] = record
        _results[name] = (records, proc)
    return _results[name]


@pytest.fixture(scope="module", params=PYTHONS, ids=[name for name, _ in PYTHONS])
def results(request):
    name, path = request.param
    if path is None:
        pytest.skip("%s is not installed here" % name)
    return _run(name, path)


@pytest.mark.parametrize("check", NAMES)
def test_instrument(results, check):
    records, proc = results
    assert check in records, "the check did not report (exit %s):\n%s" % (proc.returncode, proc.stderr[-3000:])
    record = records[check]
    assert record["ok"], record["detail"]


def test_nothing_printed_to_stderr(results):
    records, proc = results
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-3000:]
