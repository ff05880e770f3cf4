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


CHECKED = "getglobal fp_agent.loading _checked"  # [None] until threading was seen in the process
MAIN_VIEW = (
    "getglobal sys modules -r -e \"(target['threading'].main_thread().ident, __import__('_thread').get_ident())\""
)


def test_threading_is_imported_for_the_program_only_before_its_code_runs(spawn, python):
    """The sleeper imports no threading (its interpreter's site may: then there is nothing to
    see but the main thread). The agent imports it for the program (its main thread pointed
    back at the program's) before a probe is armed or an expression runs, and from 3.9 on not
    before: a first getglobal does not pay for it."""
    t = spawn("sleeper")
    t.json("getglobal fptarget EARLY_TOLERANCE_S")
    seen = t.json(CHECKED)["value"]["repr"]
    if t.facts.get("threading") == "1":
        assert "threading" in seen, seen  # the program's own, checked after the first request
    elif python.version >= (3, 9):
        assert seen == "[None]", seen
    else:
        assert "threading" in seen, seen  # 3.8: with the package (its finalization needs it whole)
    t.cmd("watch fptarget report -n 1").ok()
    assert "threading" in t.json(CHECKED)["value"]["repr"]
    stack = t.json("stack")
    main = [th for th in stack["threads"] if th["main"]][0]
    ident, agent_thread = ast.literal_eval(t.json(MAIN_VIEW)["value"]["repr"])
    assert ident == main["ident"] != agent_thread, (ident, main["ident"], agent_thread)
    t.assert_healthy()
