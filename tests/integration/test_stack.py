"""stack: human output, --json model, and -f FILE."""

import re

import pytest

# The main loop's line where the sleeper spends its time, or (rarely) its progress report.
SLEEPER_LINE = r"time\.sleep\(interval\)|fptarget\.report\("


@pytest.fixture(scope="module")
def t(module_spawn):
    return module_spawn("sleeper")


def test_human_output(t):
    r = t.cmd("stack").ok()
    assert "sleeper.py" in r.out and str(t.pid) in r.out, r.describe()
    assert re.search(SLEEPER_LINE, r.out), r.describe()


def test_json_frames_order(t):
    st = t.json("stack")
    main = [th for th in st["threads"] if th["main"]][0]
    assert main["native_id"] in (None, t.pid)  # null allowed: no threading module to ask
    fns = [f["function"] for f in main["frames"]]
    assert fns[:2] == ["<module>", "main"], fns  # outermost first
    # Almost always in its sleep; for a few microseconds per tick it writes its progress line.
    assert fns[2:] in ([], ["report"], ["report", "write"], ["report", "flush"]), fns
    if fns[2:] == []:
        assert main["frames"][-1]["source"] == "time.sleep(interval)", main["frames"][-1]


def test_stack_to_file(t, tmp_path):
    path = tmp_path / "stack.txt"
    r = t.cmd("stack -f %s" % path).ok()
    assert path.exists(), r.describe()
    text = path.read_text()
    assert "sleeper.py" in text and re.search(SLEEPER_LINE, text), text


def test_stack_to_file_json(t, tmp_path):
    path = tmp_path / "stack.json"
    t.cmd("stack -f %s" % path, "--json").ok()
    assert path.exists()
    text = path.read_text()
    assert "sleeper.py" in text, text


def test_stack_to_unwritable_file(t):
    r = t.cmd("stack -f /no/such/dir/stack.txt").failed()
    assert "/no/such/dir" in r.err, r.describe()


def test_target_unaffected(t):
    t.assert_healthy()
