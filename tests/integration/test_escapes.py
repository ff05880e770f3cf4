"""Text from the target is made safe before it reaches a terminal: reprs, type names, exception
messages and console output with ESC, BEL, CR, BS or C1 controls are shown escaped (\\x1b) in
human output, on stdout and stderr alike, and kept exactly in --json."""

import re
import subprocess

import pytest

from conftest import FP, KINDS, Target

RAW = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")


class Escapes(Target):
    kind = "escapes"
    line_re = re.compile(r"^tick \d+$")
    progress_re = line_re
    settle_progress = 1


KINDS.setdefault(Escapes.kind, Escapes)


@pytest.fixture(scope="module")
def t(module_spawn):
    return module_spawn("escapes")


def raw_controls(text):
    return sorted(set(RAW.findall(text)))


def assert_safe(r, *shown):
    for name, text in (("stdout", r.out), ("stderr", r.err)):
        assert raw_controls(text) == [], "raw control characters %s reached %s:\n%r" % (raw_controls(text), name, text)
    for s in shown:
        assert s in r.out + r.err, "%r not shown:\n%s" % (s, r.describe())


def test_getglobal_repr_and_type_name(t):
    r = t.cmd("getglobal __main__ VALUE").ok()
    assert_safe(r, r"evil\x1b[2J\x1b[H\x1b]0;pwned\x07", r"\x1b")
    r = t.cmd("getglobal __main__ TEXT -r").ok()
    assert_safe(r, r"plain\x1b[2J")


def test_json_keeps_the_exact_text(t):
    v = t.json("getglobal __main__ VALUE -r")["value"]
    assert "\x1b[2J\x1b[H\x1b]0;pwned\x07" in v["repr"]
    assert v["type"].endswith("Evil\x1b]0;pwned\x07"), v


def test_watch_events(t):
    r = t.cmd("watch __main__ work -n 2 -x 2", "--timeout", "20").ok()
    assert_safe(r, r"\x1b]0;pwned\x07")


def test_error_messages_on_stderr(t):
    r = t.cmd('getglobal __main__ VALUE -e "target.boom()"').failed()
    assert_safe(r, r"message\x1b[2J")


def test_console_output(t):
    t.fp_runs += 1
    p = subprocess.run(
        [FP, str(t.pid), "--cmd", "console"],
        input="import __main__\nprint(__main__.TEXT)\n__main__.VALUE\n",
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=30,
    )
    assert p.returncode == 0, p.stderr
    r = type("R", (), {"out": p.stdout, "err": p.stderr, "describe": lambda self: p.stdout + p.stderr})()
    assert_safe(r, r"plain\x1b[2J", r"evil\x1b[2J")


def test_files_written_for_humans(t, tmp_path):
    assert_safe(t.cmd("stack -a").ok(), r"task\x1b]0;pwned\x07")
    path = tmp_path / "tasks.txt"
    t.cmd("stack -a -f %s" % path).ok()
    text = path.read_text()
    assert raw_controls(text) == [] and r"task\x1b]0;pwned\x07" in text, repr(text)


def test_target_unaffected(t):
    t.assert_healthy()
