"""console with stdin from a pipe: multi-line definitions, print, exceptions that do not end
the session, state kept across lines, and nothing written to the target's own stdout/stderr."""

import pytest


@pytest.fixture(scope="module")
def t(module_spawn):
    return module_spawn("inspectee")


SCRIPT = """\
def double(x):
    y = x * 2
    return y

print('double:', double(21))
1 / 0
counter = 10
counter += 5
print('counter:', counter)
import __main__
print('registry:', __main__.Registry.counter)
import os
print('pid:', os.getpid())
'expr-' + 'echo'
print('name:', __name__)
for i in range(3):
    print('loop', i)

undefined_name_here
print('still alive')
"""


def test_console_session(t):
    r = t.cmd("console", input=SCRIPT).ok()
    out = r.out
    assert "double: 42" in out, r.describe()
    assert "ZeroDivisionError" in out, r.describe()
    assert "counter: 15" in out, r.describe()
    assert "registry: 42" in out, r.describe()
    assert "pid: %d" % t.pid in out, r.describe()
    assert "'expr-echo'" in out, r.describe()
    assert "name: __console__" in out, r.describe()
    assert "loop 0" in out and "loop 2" in out, r.describe()
    assert "NameError" in out, r.describe()
    assert "still alive" in out, r.describe()
    # Output order follows input order.
    assert (
        out.index("double: 42") < out.index("ZeroDivisionError") < out.index("counter: 15") < out.index("still alive")
    ), r.describe()
    t.assert_healthy()  # includes: target stdout has only its own ticks, stderr empty


def test_console_sessions_are_separate(t):
    t.cmd("console", input="only_in_first = 1\n").ok()
    r = t.cmd("console", input="print('seen' if 'only_in_first' in dir() else 'fresh')\n").ok()
    assert "fresh" in r.out, r.describe()


def test_console_changes_target_state(t):
    # The console is inside the target: what it sets is visible to getglobal.
    t.cmd("console", input="import fpt_helper\nfpt_helper.SET_BY_CONSOLE = 'yes'\n").ok()
    assert t.json("getglobal fpt_helper SET_BY_CONSOLE")["value"]["repr"] == "'yes'"
    t.assert_healthy()
