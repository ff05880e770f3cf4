"""What the agent imports into a fresh target (under every CPython): at the first getglobal
only what getglobal needs; each command family at its first use."""

import ast

FAMILIES = {
    "fp_agent.watch",
    "fp_agent.trace",
    "fp_agent.tt",
    "fp_agent.console",
    "fp_agent.instrument",
    "fp_agent.tasks",
    "fp_agent.stack",
    "fp_agent.complete",
    "fp_agent.modules",
}
LISTING = "getglobal sys modules -r -e \"sorted(m for m in target if m.startswith('fp_agent'))\""


def loaded(t):
    return set(ast.literal_eval(t.json(LISTING)["value"]["repr"]))


def test_a_first_getglobal_loads_no_other_family(spawn):
    t = spawn("sleeper")
    first = loaded(t)  # the very first command that needs the agent's Python side
    assert "fp_agent.objects" in first and not first & FAMILIES, sorted(first)
    t.json("module %s" % t.script)
    assert "fp_agent.modules" in loaded(t)
    assert not loaded(t) & (FAMILIES - {"fp_agent.modules"}), sorted(loaded(t))
