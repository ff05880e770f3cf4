"""In-process tests of the instrumentation engine (fp_agent.instrument), function location
(locate.locate_function), watch and tt, under every CPython on the machine.

Each interpreter runs tests/agent/instrument_check.py once (all checks in one process, about a
second); every check is then a test of its own here. FP_PYTHONS=py3.12,system-3.11 narrows.
"""

import glob
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
    found = []
    for minor in range(8, 14):
        paths = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.%d.*/bin/python3" % minor)))
        found.append(("py3.%d" % minor, paths[-1] if paths else None))
    found.append(("system-3.11", "/usr/bin/python3.11" if os.path.exists("/usr/bin/python3.11") else None))
    wanted = os.environ.get("FP_PYTHONS")
    if wanted:
        names = set(n.strip() for n in wanted.split(",") if n.strip())
        found = [f for f in found if f[0] in names]
    return found


PYTHONS = _interpreters()
_results = {}


def _run(name, path):
    if name not in _results:
        proc = subprocess.run([path, CHECK, AGENT_DIR], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=120)
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
