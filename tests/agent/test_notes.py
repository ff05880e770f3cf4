"""The notification names the agent sends are the ones the clients know (protocol/fp_notes.h):
one list of names, one convention (family/event)."""

import os
import re

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def _c_names():
    with open(os.path.join(ROOT, "protocol", "fp_notes.h")) as f:
        return dict(re.findall(r'#define FP_NOTE_(\w+) "([^"]+)"', f.read()))


def _agent_names(module):
    with open(os.path.join(ROOT, "agent", "fp_agent", module + ".py")) as f:
        return dict(re.findall(r'^([A-Z]+) = "(\w+/\w+)"', f.read(), re.M))


def test_agent_streams_use_the_shared_names():
    c = _c_names()
    for module, family in (("watch", "WATCH"), ("tt", "TT"), ("trace", "TRACE"), ("monitor", "MONITOR")):
        names = _agent_names(module)
        assert names, "no notification names found in %s.py" % module
        for const, name in names.items():
            assert c.get("%s_%s" % (family, const)) == name, (module, const, name, c)


def test_one_convention():
    names = [v for k, v in _c_names().items() if not k.endswith("_PREFIX")]
    assert names and all(re.fullmatch(r"[a-z]+/[a-z]+", n) for n in names), names
