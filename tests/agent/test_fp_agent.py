"""Tests of the agent's Python package (agent/fp_agent) inside every CPython on the machine.

Each interpreter runs tests/agent/driver.py once per scenario: the driver loads the package as the
native agent does and calls dispatch.handle from a foreign thread; the tests read its JSON lines.
FP_PYTHONS=py3.12,system-3.11 narrows the interpreters.
"""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
AGENT_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "agent", "fp_agent"))
DRIVER = os.path.join(HERE, "driver.py")
APP = os.path.join(HERE, "target_app.py")


def _interpreters():
    """(id, path) of every interpreter tests/integration/pythons.py finds (FP_PYTHONS narrows)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
    import pythons

    return [(p.id, p.path) for p in pythons.select()]


PYTHONS = _interpreters()


@pytest.fixture(scope="module", params=PYTHONS, ids=[name for name, _ in PYTHONS])
def python(request):
    name, path = request.param
    if path is None:
        pytest.skip("%s is not installed here" % name)
    return path


class Run(object):
    """The driver's output for one scenario: records by step key, plus stdout and stderr."""

    def __init__(self, steps, proc):
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.returncode = proc.returncode
        self.lines = proc.stdout.splitlines()
        self.records = [json.loads(line) for line in self.lines]
        self.by_key = dict((r["key"], r) for r in self.records)
        self.steps = steps

    def __getitem__(self, key):
        record = self.by_key[key]
        assert record["raised"] is None, "step %s raised %s" % (key, record["raised"])
        return record

    def result(self, key):
        response = self[key]["response"]
        assert "error" not in response, "step %s failed: %s" % (key, response["error"])
        return response["result"]

    def error(self, key):
        response = self[key]["response"]
        assert "error" in response, "step %s succeeded: %s" % (key, response.get("result"))
        return response["error"]


def _run(python, steps, mode, tmp_path_factory, extra_args=()):
    directory = tmp_path_factory.mktemp("steps")
    steps_file = str(directory / "steps.json")
    with open(steps_file, "w") as f:
        json.dump(steps, f)
    proc = subprocess.run(
        [python] + list(extra_args) + [DRIVER, AGENT_DIR, steps_file, mode],
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
        timeout=60,
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONWARNINGS=""),
    )
    return Run(steps, proc)


# ---------------------------------------------------------------------------------------------
# The main scenario: a target with threads, modules and values


def _main_steps(symlink):
    steps = []

    def add(key, method=None, params=None, client=1, **extra):
        step = {"key": key, "client": client}
        if method is not None:
            step["method"] = method
        if params is not None:
            step["params"] = params
        step.update(extra)
        steps.append(step)

    def gg(key, field, **params):
        params.setdefault("module", "target_app")
        params["field"] = field
        add(key, "getglobal", params)

    def console(key, source, session="open", client=1):
        add(key, "console.eval", {"session": {"$ref": session}, "source": source}, client=client)

    add("probe_start", op="probe")

    # --- envelope and dispatch errors
    add("unknown_method", "stak")
    add("unknown_console_method", "console.evl", {"session": 1})
    add("native_method", "ping")
    for i, body in enumerate(
        [
            "",
            "{",
            "[]",
            "null",
            "123",
            '"text"',
            '{"jsonrpc": "2.0"}',
            '{"jsonrpc": "2.0", "id": 3}',
            '{"jsonrpc": "2.0", "id": [1], "method": "stack"}',
            '{"jsonrpc": "2.0", "id": 1.5, "method": "stack"}',
            '{"id": 4, "method": "stack"}',
            '{"jsonrpc": "2.0", "id": 5, "method": 7}',
            '{"jsonrpc": "2.0", "id": 6, "method": "stack", "params": [1]}',
            '{"jsonrpc": "2.0", "id": 7, "method": "getglobal", "params": {"module": 5, "field": "x"}}',
            "\udcff",
        ]
    ):
        add("garbage_%d" % i, body=body)
    for i, body_py in enumerate(["None", "42", "b'\\xff\\xfe'", "'[' * 100000 + ']' * 100000", "object()", "['a']"]):
        add("garbage_py_%d" % i, body_py=body_py)
    add("garbage_client", body="{", client=None)
    add("bytes_body", body_py='b\'{"jsonrpc": "2.0", "id": 9, "method": "stack"}\'')
    add("string_id", body='{"jsonrpc": "2.0", "id": "abc", "method": "stack"}')
    add("notification", body='{"jsonrpc": "2.0", "method": "stack"}')
    add("notification_unknown", body='{"jsonrpc": "2.0", "method": "nope"}')

    # --- module
    add("module_abs", "module", {"path": APP})
    add("module_rel", "module", {"path": "target_app.py"})
    add("module_symlink", "module", {"path": symlink})
    add("module_main", "module", {"path": DRIVER})
    # The interpreter's own json package, whichever interpreter runs the driver.
    add(
        "module_stdlib",
        body_py="json.dumps({'jsonrpc': '2.0', 'id': 1, 'method': 'module', 'params': {'path': json.__file__}})",
    )
    add("module_missing", "module", {"path": "/nonexistent/dir/target_app.py"})
    add("module_unloaded", "module", {"path": os.path.join(HERE, "test_fp_agent.py")})
    add("module_surrogate", "module", {"path": "/nonexistent/\udcff.py"})
    add("module_empty", "module", {"path": ""})
    add("module_no_params", "module")
    add("module_typo_param", "module", {"pth": APP})

    # --- getglobal and the VALUE tree
    gg("gg_config", "CONFIG")
    gg("gg_config_depth2", "CONFIG", depth=2)
    add("gg_missing_module", "getglobal", {"module": "target_ap", "field": "CONFIG"})
    add("gg_missing_module_tail", "getglobal", {"module": "path", "field": "join"})
    gg("gg_missing_field", "CONFIGG")
    gg("gg_missing_class", "kind", **{"class": "Usr"})
    gg("gg_missing_class_field", "kindd", **{"class": "User"})
    gg("gg_class_field", "kind", **{"class": "User"})
    gg("gg_nested_class", "value", **{"class": "Outer.Inner"})
    gg("gg_missing_nested_class", "value", **{"class": "Outer.Inne"})
    gg("gg_not_a_class", "a", **{"class": "CONFIG"})
    gg("gg_lazy", "LAZY")
    gg("gg_expr", "ADMIN", expr="target.name.upper()")
    gg("gg_expr_comprehension", "NUMBERS", expr="[target[i] for i in range(3)]")
    gg("gg_expr_warning", "ADMIN", expr="target is 1")
    gg("gg_expr_compile", "ADMIN", expr="target +")
    gg("gg_expr_eval", "ADMIN", expr="1/0")
    gg("gg_expr_exit", "ADMIN", expr="__import__('sys').exit(3)")
    gg("gg_depth0", "CONFIG", depth=0)
    gg("gg_depth5", "CONFIG", depth=5)
    gg("gg_depth_bool", "CONFIG", depth=True)
    gg("gg_depth_str", "CONFIG", depth="2")
    gg("gg_verbose_str", "CONFIG", verbose="yes")
    gg("gg_typo_param", "CONFIG", dept=2)
    add("gg_no_field", "getglobal", {"module": "target_app"})
    gg("gg_admin_depth2", "ADMIN", depth=2)
    gg("gg_nested_depth4", "NESTED", depth=4)
    gg("gg_numbers", "NUMBERS")
    gg("gg_numbers_verbose", "NUMBERS", verbose=True)
    gg("gg_numbers_raw", "NUMBERS", raw=True)
    gg("gg_long_text", "LONG_TEXT")
    gg("gg_long_text_raw", "LONG_TEXT", raw=True)
    gg("gg_big_list", "BIG_LIST")
    gg("gg_cycle", "CYCLE", depth=3)
    gg("gg_point", "POINT")
    gg("gg_broken", "BROKEN")
    gg("gg_inner", "INNER")
    gg("gg_class", "User")
    gg("gg_odd_keys", "ODD_KEYS")
    gg("gg_ordered", "ORDERED")
    gg("gg_module_value", "collections")
    add("repr_check", op="repr_check")
    add("registry_check", op="registry_check")

    # --- stack
    add("stack", "stack")
    add("stack_params", "stack", {"all": True})

    # --- console
    add("open", "console.open")
    console("c_assign", "x = 6 * 7")
    console("c_echo", "x")
    console("c_underscore", "_ + 1")
    console("c_none", "None")
    console("c_def1", "def f(n):")
    console("c_def2", "    total = 0")
    console("c_def3", "    for i in range(n):")
    console("c_def4", "        total += i")
    console("c_def5", "    return total")
    console("c_def6", "")
    console("c_call", "f(4)")
    console("c_for1", "for i in range(3):")
    console("c_for2", "    print(i, end=';')")
    console("c_for3", "")
    console("c_print_sep", "print('to', 'out', sep='-')")
    console("c_print_stderr", "import sys; print('err', file=sys.stderr)")
    console("c_print_stdout_write", "print('x', file=sys.stdout, flush=True)")
    console("c_raise", "1/0")
    console("c_chained", "try:\n    {}['k']\nexcept KeyError as e:\n    raise ValueError('v') from e\n")
    console("c_after_raise", "x")
    console("c_syntax", "def broken(:")
    console("c_syntax_compile", "return 5")
    console("c_after_syntax", "x + 1")
    console("c_multi", "a = 1\nb = 2\na + b")
    console("c_class1", "class K:")
    console("c_class2", "    v = 3")
    console("c_class3", "")
    console("c_class_use", "K.v, K.__module__")
    console("c_name", "__name__")
    console("c_help", "help(len)")
    console("c_input", "input()")
    console("c_exit_repr", "exit")
    console("c_breakpoint", "breakpoint()")
    console("c_future", "from __future__ import annotations")
    console("c_future_use", "def g(a: undefined_name): pass")
    console("c_future_use_end", "")
    console("c_syntax_warning", "x is 1")
    console("c_warn", "import warnings; warnings.warn('careful')")
    console("c_record1", "with warnings.catch_warnings(record=True) as caught:")
    console("c_record2", "    warnings.simplefilter('always')")
    console("c_record3", "    warnings.warn('recorded')")
    console("c_record4", "")
    console("c_record5", "[str(w.message) for w in caught]")
    console("c_big_output", "print('y' * (2 * 1024 * 1024))")
    console("c_import_app", "import target_app")
    add("cc_builtin", "console.complete", {"session": {"$ref": "open"}, "text": "pri"})
    add("cc_namespace", "console.complete", {"session": {"$ref": "open"}, "text": "y = tar"})
    add("cc_module_attr", "console.complete", {"session": {"$ref": "open"}, "text": "target_app.ADM"})
    add("cc_instance_attr", "console.complete", {"session": {"$ref": "open"}, "text": "target_app.ADMIN.na"})
    add("cc_property", "console.complete", {"session": {"$ref": "open"}, "text": "target_app.ADMIN.shout."})
    add("cc_call", "console.complete", {"session": {"$ref": "open"}, "text": "f(1)."})
    add("cc_private", "console.complete", {"session": {"$ref": "open"}, "text": "target_app._"})
    add("cc_slot", "console.complete", {"session": {"$ref": "open"}, "text": "target_app.POINT.x.re"})
    gg("gg_shouts_after_completion", "SHOUTS")
    console("c_license", "license()")
    add("openB", "console.open")
    console("cB_def", "def speak(): print('from B')", session="openB")
    console("cB_def_end", "", session="openB")
    console("cB_share", "import target_app; target_app.speak = speak", session="openB")
    console("c_call_B", "target_app.speak()")
    add("closeB", "console.close", {"session": {"$ref": "openB"}})
    console("c_exit_caught", "try:\n    exit()\nexcept BaseException:\n    print('caught')\n")
    console("c_sys_exit", "import sys; sys.exit(2)")
    console("c_after_sys_exit", "x")
    console("c_exit", "exit()")
    console("c_exit_then", "x")
    console("c_missing_source", None)
    add("c_no_source", "console.eval", {"session": {"$ref": "open"}})
    add("c_unknown_session", "console.eval", {"session": 99999, "source": "1"})
    add("c_session_str", "console.eval", {"session": "1", "source": "1"})
    add("cc_unknown_session", "console.complete", {"session": 99999, "text": "x"})

    # Sessions belong to their client.
    add("open2", "console.open", client=2)
    console("c2_other_client", "1", session="open2", client=1)
    console("c2_own", "y = 2", session="open2", client=2)
    add("probe_two_clients", op="probe")
    add("gone2", op="client_gone", client=2)
    console("c2_after_gone", "y", session="open2", client=2)
    add("probe_after_gone", op="probe")

    # Closing, and the per-client limit.
    add("open_close", "console.open")
    add("close", "console.close", {"session": {"$ref": "open_close"}})
    console("c_after_close", "1", session="open_close")
    add("close_again", "console.close", {"session": {"$ref": "open_close"}})
    for i in range(16):
        add("limit_%d" % i, "console.open", client=3)
    add("limit_over", "console.open", client=3)
    add("gone3", op="client_gone", client=3)
    add("gone_unknown", op="client_gone", client=12345)
    add("limit_after_gone", "console.open", client=3)

    add("probe_end", op="probe")
    add("shutdown", op="shutdown")
    add("probe_after_shutdown", op="probe")
    return steps


@pytest.fixture(scope="module")
def app(python, tmp_path_factory):
    link = str(tmp_path_factory.mktemp("link") / "linked_app.py")
    os.symlink(APP, link)
    run = _run(python, _main_steps(link), "app", tmp_path_factory)
    assert run.returncode == 0, run.stderr
    return run


# --- the target is left alone


def test_stdout_has_only_the_drivers_lines_and_stderr_is_empty(app):
    assert app.stderr == ""
    assert [r["key"] for r in app.records] == [s["key"] for s in app.steps]


def test_no_step_raised(app):
    assert [r["key"] for r in app.records if r["raised"]] == []


def test_target_state_is_untouched(app):
    for key in ("probe_two_clients", "probe_end", "probe_after_shutdown"):
        assert app[key]["probe"]["changed"] == [], key


def test_loading_the_agent_changes_nothing(app):
    assert app["probe_start"]["probe"]["changed"] == []


def test_shutdown_removes_the_package_and_everything_installed(app):
    assert "fp_agent.dispatch" in app["probe_end"]["probe"]["fp modules"]
    after = app["probe_after_shutdown"]["probe"]
    assert after["fp modules"] == []
    assert after["sessions"] == {}
    assert after["installations"] == 0


# --- envelope


def test_unknown_method_suggests_near_names(app):
    error = app.error("unknown_method")
    assert error["code"] == -32601
    assert "stack" in error["data"]["suggestions"]
    assert "stak" in error["message"]
    assert app.error("unknown_console_method")["data"]["suggestions"][0] == "console.eval"
    error = app.error("native_method")
    assert error["code"] == -32601 and "native agent" in error["message"]


def test_handle_never_raises_and_always_answers_json_rpc(app):
    keys = [s["key"] for s in app.steps if s["key"].startswith("garbage")]
    assert len(keys) == 22
    for key in keys:
        response = app[key]["response"]
        assert response is not None, app[key]["text"]
        assert response["jsonrpc"] == "2.0"
        assert response["error"]["code"] in (-32700, -32600, -32602), (key, response)
        assert isinstance(response["error"]["message"], str)


def test_envelope_error_codes(app):
    assert app.error("garbage_0")["code"] == -32700
    assert app.error("garbage_1")["code"] == -32700
    assert app["garbage_1"]["response"]["id"] is None
    assert app.error("garbage_2")["code"] == -32600  # batches
    assert app.error("garbage_6")["code"] == -32600  # no method, no id: still answered
    assert app.error("garbage_7")["code"] == -32600
    assert app["garbage_7"]["response"]["id"] == 3
    assert app.error("garbage_10")["code"] == -32600  # no "jsonrpc"
    assert app.error("garbage_12") == {
        "code": -32602,
        "message": "params must be an object with named parameters",
        "data": {"param": "params"},
    }
    assert app["garbage_12"]["response"]["id"] == 6
    assert app.error("garbage_13")["data"]["param"] == "module"
    assert app.error("garbage_py_3")["code"] == -32700  # nested too deeply
    assert app.error("garbage_py_2")["code"] == -32700  # not UTF-8


def test_bytes_body_and_string_id(app):
    assert app["bytes_body"]["response"]["id"] == 9
    assert "threads" in app.result("bytes_body")
    assert app["string_id"]["response"]["id"] == "abc"


def test_notifications_get_no_response(app):
    assert app["notification"]["text"] == ""
    assert app["notification_unknown"]["text"] == ""


# --- module


def test_module_by_absolute_relative_and_symlinked_path(app):
    for key in ("module_abs", "module_rel", "module_symlink"):
        assert app.result(key) == {"path": APP, "module": "target_app", "others": ["app_alias"]}, key


def test_module_script_is_main(app):
    assert app.result("module_main") == {"path": DRIVER, "module": "__main__", "others": []}


def test_module_of_a_stdlib_file(app):
    assert app.result("module_stdlib")["module"] == "json"


def test_module_not_loaded_suggests_same_basename(app):
    error = app.error("module_missing")
    assert error["code"] == -32001
    assert error["data"]["missing"] == "file"
    assert error["data"]["suggestions"] == ["app_alias", "target_app"]
    assert "no such file" in error["message"]
    error = app.error("module_unloaded")
    assert error["data"]["missing"] == "file"
    assert error["data"]["suggestions"] == []


def test_responses_are_valid_utf8_even_for_undecodable_file_names(app):
    text = app["module_surrogate"]["text"]
    text.encode("utf-8")
    assert app.error("module_surrogate")["data"]["missing"] == "file"


def test_module_bad_params(app):
    assert app.error("module_empty")["data"]["param"] == "path"
    assert app.error("module_no_params")["data"]["param"] == "path"
    error = app.error("module_typo_param")
    assert error["data"]["param"] == "pth"
    assert "'path'" in error["message"]


# --- getglobal


def test_getglobal_renders_the_methods_md_example(app):
    assert app.result("gg_config") == {
        "module": "target_app",
        "class": None,
        "field": "CONFIG",
        "expr": None,
        "value": {
            "type": "dict",
            "repr": "{'a': 1, 'b': [1, 2]}",
            "len": 2,
            "children": [
                {"name": "'a'", "value": {"type": "int", "repr": "1"}},
                {"name": "'b'", "value": {"type": "list", "repr": "[1, 2]", "len": 2, "expandable": True}},
            ],
            "omitted": 0,
        },
    }
    b = app.result("gg_config_depth2")["value"]["children"][1]["value"]
    assert [c["name"] for c in b["children"]] == ["[0]", "[1]"]
    assert "expandable" not in b


def test_getglobal_not_found_names_the_missing_part(app):
    error = app.error("gg_missing_module")
    assert error["code"] == -32001
    assert error["data"]["missing"] == "module"
    assert error["data"]["name"] == "target_ap"
    assert "target_app" in error["data"]["suggestions"]
    assert "os.path" in app.error("gg_missing_module_tail")["data"]["suggestions"]
    assert app.error("gg_missing_field")["data"] == {
        "missing": "field",
        "name": "CONFIGG",
        "suggestions": ["CONFIG"],
    }
    error = app.error("gg_missing_class")["data"]
    assert (error["missing"], error["name"], error["suggestions"]) == ("class", "Usr", ["User"])
    error = app.error("gg_missing_class_field")["data"]
    assert (error["missing"], error["suggestions"][0]) == ("field", "kind")
    assert app.error("gg_missing_nested_class")["data"]["suggestions"] == ["Outer.Inner"]
    error = app.error("gg_not_a_class")
    assert error["data"]["missing"] == "class"
    assert "not a class" in error["message"]


def test_getglobal_class_attributes_and_lazy_globals(app):
    assert app.result("gg_class_field")["value"]["repr"] == "'member'"
    assert app.result("gg_class_field")["class"] == "User"
    assert app.result("gg_nested_class")["value"]["repr"] == "42"
    assert app.result("gg_lazy")["value"]["repr"] == "'lazy value'"


def test_getglobal_expression(app):
    result = app.result("gg_expr")
    assert result["expr"] == "target.name.upper()"
    assert result["value"]["repr"] == "'ROOT'"
    assert app.result("gg_expr_comprehension")["value"]["repr"] == "[0, 1, 2]"


def test_getglobal_expression_errors(app):
    error = app.error("gg_expr_compile")
    assert error["code"] == -32002
    assert error["data"]["stage"] == "compile"
    assert error["data"]["exception"].startswith("SyntaxError")
    error = app.error("gg_expr_eval")
    assert error["code"] == -32002
    assert error["data"]["stage"] == "eval"
    assert error["data"]["exception"] == "ZeroDivisionError: division by zero"
    assert error["data"]["traceback"].startswith("Traceback (most recent call last):")
    assert '"<expr>"' in error["data"]["traceback"]
    assert "fp_agent" not in error["data"]["traceback"]
    error = app.error("gg_expr_exit")  # SystemExit is reported; the target lives on
    assert (error["code"], error["data"]["exception"]) == (-32002, "SystemExit: 3")


def test_getglobal_bad_params(app):
    for key, param in (
        ("gg_depth0", "depth"),
        ("gg_depth5", "depth"),
        ("gg_depth_bool", "depth"),
        ("gg_depth_str", "depth"),
        ("gg_verbose_str", "verbose"),
        ("gg_typo_param", "dept"),
        ("gg_no_field", "field"),
    ):
        error = app.error(key)
        assert (error["code"], error["data"]["param"]) == (-32602, param), key
    assert "depth" in app.error("gg_typo_param")["message"]


def test_value_depth_expands_levels(app):
    admin = app.result("gg_admin_depth2")["value"]
    assert admin["type"] == "target_app.User"
    assert [c["name"] for c in admin["children"]] == ["name", "tags"]
    tags = admin["children"][1]["value"]
    assert [c["value"]["repr"] for c in tags["children"]] == ["'a'", "'b'"]

    node = app.result("gg_nested_depth4")["value"]
    for name in ("'l1'", "'l2'", "'l3'"):
        (child,) = node["children"]
        assert child["name"] == name
        node = child["value"]
    (l4,) = node["children"]
    assert l4["name"] == "'l4'"
    assert l4["value"]["expandable"] is True
    assert "children" not in l4["value"]


def test_value_child_limit_verbose_and_raw(app):
    value = app.result("gg_numbers")["value"]
    assert value["len"] == 30
    assert len(value["children"]) == 20
    assert value["omitted"] == 10
    value = app.result("gg_numbers_verbose")["value"]
    assert len(value["children"]) == 30
    assert value["omitted"] == 0
    assert app.result("gg_numbers_raw")["value"] == {"type": "list", "repr": repr(list(range(30)))}


def test_value_repr_is_cut_at_256(app):
    value = app.result("gg_long_text")["value"]
    assert value["repr"] == repr("x" * 1000)[:256]
    assert value["repr_truncated"] is True
    assert value["len"] == 1000
    assert app.result("gg_long_text_raw")["value"] == {"type": "str", "repr": repr("x" * 1000)}
    big = app.result("gg_big_list")["value"]
    assert big["repr"] == repr(list(range(100000)))[:256]
    assert (big["len"], big["omitted"], len(big["children"])) == (100000, 99980, 20)


def test_bounded_repr_matches_repr(app):
    assert app["repr_check"]["mismatches"] == []


def test_registry_undoes_newest_first_and_survives_a_failing_undo(app):
    result = app["registry_check"]["registry"]
    assert result["labels"] == ["first", "failing", "third"]
    assert result["undone"] == ["third", "first", "other client"]
    assert result["errors"] == ["test failing: KeyError: 'boom'"]
    assert (result["again"], result["removed_twice"], result["other"]) == ([], None, [])


def test_value_cyclic_list(app):
    value = app.result("gg_cycle")["value"]
    assert value["repr"] == "[1, 2, [...]]"
    inner = value["children"][2]
    assert inner["name"] == "[2]"
    assert inner["value"]["cycle"] is True
    assert "children" not in inner["value"]


def test_value_slots_failing_repr_and_qualified_types(app):
    point = app.result("gg_point")["value"]
    assert point["type"] == "target_app.Point"
    assert [(c["name"], c["value"]["repr"]) for c in point["children"]] == [("x", "1"), ("__secret", "'s'")]
    broken = app.result("gg_broken")["value"]
    assert broken["repr"] == "<repr failed: ValueError: nope>"
    assert broken["type"] == "target_app.Broken"
    assert app.result("gg_inner")["value"]["type"] == "target_app.Outer.Inner"
    assert app.result("gg_ordered")["value"]["type"] == "collections.OrderedDict"


def test_value_of_a_class_and_odd_keys(app):
    cls = app.result("gg_class")["value"]
    assert cls["type"] == "type"
    names = [c["name"] for c in cls["children"]]
    assert "kind" in names and "shout" in names
    assert not [n for n in names if n.startswith("__")]
    assert [c["name"] for c in app.result("gg_odd_keys")["value"]["children"]] == ["1", "(2, 3)"]
    assert [c["name"] for c in app.result("gg_ordered")["value"]["children"]] == ["'a'", "'b'"]
    module = app.result("gg_module_value")["value"]
    assert module["type"] == "module"
    assert module["children"] and not [c for c in module["children"] if c["name"].startswith("__")]


# --- stack


def test_stack_lists_the_programs_threads_outermost_first(app):
    result = app.result("stack")
    assert result["pid"] == app["probe_end"]["probe"]["pid"]
    by_name = dict((t["name"], t) for t in result["threads"])
    worker = by_name["app-worker"]
    assert worker["daemon"] is True and worker["main"] is False
    assert isinstance(worker["native_id"], int)
    functions = [f["function"] for f in worker["frames"]]
    assert functions[0] == "_bootstrap"
    assert "wait_here" in functions
    frame = worker["frames"][functions.index("wait_here")]
    assert frame["file"] == APP
    assert frame["source"] in ("ready.set()", "gate.acquire()")
    main = by_name["MainThread"]
    assert main["main"] is True and main["daemon"] is False
    assert result["threads"][0]["main"] is True  # the main thread comes first
    assert [f["function"] for f in main["frames"]][-2:] == ["main", "wait_for_worker"]
    assert main["frames"][-1]["source"] == "if not done.acquire(True, 50):"


def test_stack_leaves_out_the_agents_thread(app):
    threads = app.result("stack")["threads"]
    worker_ident = app["probe_end"]["probe"]["worker ident"]
    assert worker_ident not in [t["ident"] for t in threads]
    assert not [f for t in threads for f in t["frames"] if "fp_agent" in f["file"]]
    assert app.error("stack_params")["data"]["param"] == "all"


# --- console


def output(app, key):
    result = app.result(key)
    return result["output"]


def test_console_open_banner(app):
    result = app.result("open")
    assert isinstance(result["session"], int)
    pid = app["probe_end"]["probe"]["pid"]
    assert result["banner"].startswith("Python 3.")
    assert "console inside process %d (fp)" % pid in result["banner"]
    assert "Ctrl-D or exit() to leave" in result["banner"]


def test_console_statements_and_echo(app):
    assert app.result("c_assign") == {"more": False, "output": "", "exit": False}
    assert output(app, "c_echo") == "42\n"
    assert output(app, "c_underscore") == "43\n"
    assert output(app, "c_none") == ""
    assert output(app, "c_multi") == "3\n"
    assert output(app, "c_name") == "'__console__'\n"


def test_console_multiline_blocks(app):
    for key in ("c_def1", "c_def2", "c_def3", "c_def4", "c_def5"):
        assert app.result(key) == {"more": True, "output": "", "exit": False}, key
    assert app.result("c_def6")["more"] is False
    assert output(app, "c_call") == "6\n"
    assert app.result("c_for1")["more"] and app.result("c_for2")["more"]
    assert app.result("c_for3") == {"more": False, "output": "0;1;2;", "exit": False}
    assert app.result("c_class1")["more"] and app.result("c_class2")["more"]
    assert output(app, "c_class_use") == "(3, '__console__')\n"


def test_console_print_is_captured(app):
    assert output(app, "c_print_sep") == "to-out\n"
    assert output(app, "c_print_stderr") == "err\n"
    assert output(app, "c_print_stdout_write") == "x\n"


def test_console_exceptions_are_output_not_fatal(app):
    text = output(app, "c_raise")
    assert text.startswith("Traceback (most recent call last):\n")
    assert '"<console>"' in text
    assert text.endswith("ZeroDivisionError: division by zero\n")
    assert "fp_agent" not in text
    assert output(app, "c_after_raise") == "42\n"
    chained = output(app, "c_chained")
    assert "KeyError: 'k'" in chained and chained.endswith("ValueError: v\n")
    assert "direct cause" in chained and "fp_agent" not in chained
    result = app.result("c_syntax")
    assert result["more"] is False and "SyntaxError" in result["output"]
    assert "SyntaxError" in output(app, "c_syntax_compile")
    assert "outside function" in output(app, "c_syntax_compile")
    assert output(app, "c_after_syntax") == "43\n"


def test_console_builtins_that_reach_the_terminal_are_redirected(app):
    assert "len" in output(app, "c_help")
    text = output(app, "c_input")
    assert "RuntimeError: input() cannot read in the fp console" in text
    assert "fp_agent" not in text  # our stand-in's own frame is hidden
    assert output(app, "c_exit_repr") == "Use exit() or Ctrl-D to leave the fp console.\n"
    assert "RuntimeError: breakpoint() is not available" in output(app, "c_breakpoint")


def test_console_future_imports_apply_to_later_lines(app):
    assert output(app, "c_future") == ""
    assert app.result("c_future_use")["more"] is True  # a one-line def still waits for a blank line
    # with annotations postponed, the name is never looked up
    assert app.result("c_future_use_end") == {"more": False, "output": "", "exit": False}


def test_console_warnings_go_to_the_session(app):
    text = output(app, "c_syntax_warning")
    assert "SyntaxWarning" in text and text.endswith("False\n")
    assert "UserWarning: careful" in output(app, "c_warn")
    # warnings recorded by the user's own catch_warnings stay recorded
    assert output(app, "c_record4") == ""
    assert output(app, "c_record5") == "['recorded']\n"
    # and a warning from an expression never reaches the target's stderr (checked for all steps)
    assert app.result("gg_expr_warning")["value"]["repr"] == "False"


def test_console_output_is_limited(app):
    text = output(app, "c_big_output")
    assert text.startswith("yyyy")
    assert len(text) < (1 << 20) + 200
    assert text.rstrip("\n").endswith("[fp: output cut at 1048576 characters]")


def test_console_completion(app):
    assert "print" in app.result("cc_builtin")["matches"]
    assert app.result("cc_namespace")["matches"] == ["target_app"]
    assert app.result("cc_module_attr")["matches"] == ["target_app.ADMIN"]
    assert app.result("cc_instance_attr")["matches"] == ["target_app.ADMIN.name"]
    assert app.result("cc_property")["matches"] == []
    assert app.result("cc_call")["matches"] == []
    private = app.result("cc_private")["matches"]
    assert "target_app.__getattr__" in private
    assert "target_app.real" not in app.result("cc_slot")["matches"]
    assert app.result("cc_slot")["matches"] == ["target_app.POINT.x.real"]
    # completing through a property never ran it
    assert app.result("gg_shouts_after_completion")["value"]["repr"] == "[]"


def test_console_license_and_print_of_another_sessions_function(app):
    assert len(output(app, "c_license")) > 100
    # print() writes to the console running on this thread, whichever session defined the function
    assert output(app, "c_call_B") == "from B\n"


def test_console_exit_never_exits_the_target(app):
    assert app.result("c_exit_caught") == {"more": False, "output": "caught\n", "exit": True}
    assert app.result("c_sys_exit") == {"more": False, "output": "", "exit": True}
    assert output(app, "c_after_sys_exit") == "42\n"
    assert app.result("c_exit") == {"more": False, "output": "", "exit": True}
    assert output(app, "c_exit_then") == "42\n"


def test_console_bad_params_and_unknown_sessions(app):
    assert app.error("c_missing_source")["data"]["param"] == "source"
    assert app.error("c_no_source")["data"]["param"] == "source"
    error = app.error("c_unknown_session")
    assert (error["code"], error["data"]["missing"], error["data"]["name"]) == (-32001, "session", "99999")
    assert app.error("c_session_str")["data"]["param"] == "session"
    assert app.error("cc_unknown_session")["data"]["missing"] == "session"


def test_console_sessions_belong_to_their_client(app):
    assert app.error("c2_other_client")["data"]["missing"] == "session"
    assert output(app, "c2_own") == ""
    assert app["probe_two_clients"]["probe"]["sessions"] == {"1": 1, "2": 1}
    assert app["gone2"]["returned"] == "None"
    assert app.error("c2_after_gone")["data"]["missing"] == "session"
    assert app["probe_after_gone"]["probe"]["sessions"] == {"1": 1}


def test_console_close_and_limit(app):
    assert app.result("close") == {}
    assert app.error("c_after_close")["data"]["missing"] == "session"
    assert app.error("close_again")["data"]["missing"] == "session"
    assert all(isinstance(app.result("limit_%d" % i)["session"], int) for i in range(16))
    assert app.error("limit_over")["code"] == -32005
    assert app["gone_unknown"]["returned"] == "None"
    assert isinstance(app.result("limit_after_gone")["session"], int)


# ---------------------------------------------------------------------------------------------
# A bare target that never imported threading: the agent imports it only before code that is not
# its own runs (console input here), and then with the process's main thread as its main thread


def _bare_steps():
    return [
        {"key": "stack", "method": "stack"},
        {"key": "module", "method": "module", "params": {"path": DRIVER}},
        {"key": "getglobal", "method": "getglobal", "params": {"module": "__main__", "field": "main", "depth": 2}},
        {"key": "missing", "method": "getglobal", "params": {"module": "__main__", "field": "mian"}},
        {"key": "garbage", "body": "{"},
        {"key": "quiet", "op": "probe"},
        {"key": "open", "method": "console.open"},
        {"key": "print", "method": "console.eval", "params": {"session": {"$ref": "open"}, "source": "print(1)"}},
        {"key": "help", "method": "console.eval", "params": {"session": {"$ref": "open"}, "source": "help(len)"}},
        {"key": "error", "method": "console.eval", "params": {"session": {"$ref": "open"}, "source": "1/0"}},
        {"key": "complete", "method": "console.complete", "params": {"session": {"$ref": "open"}, "text": "sys.pa"}},
        {"key": "probe", "op": "probe"},
    ]


@pytest.fixture(scope="module")
def bare(python, tmp_path_factory):
    run = _run(python, _bare_steps(), "bare", tmp_path_factory, extra_args=["-S"])
    assert run.returncode == 0, run.stderr
    return run


def test_bare_target_gains_threading_only_for_code_not_the_agents(bare):
    assert bare.stderr == ""
    quiet, probe = bare["quiet"]["probe"], bare["probe"]["probe"]
    assert quiet["changed"] == []
    if probe["threading loaded before"]:
        assert probe["changed"] == []
        return
    assert quiet["threading loaded"] is False  # stack, module, getglobal: the agent's own code
    assert probe["threading loaded"] is True  # console input may use it: imported for the program
    assert set(probe["changed"]) <= {"threading loaded", "threading._active"}, probe["changed"]
    assert probe["threading main"] == probe["process main"] != probe["worker ident"], probe
    assert probe["threading active"] == [probe["process main"]], probe


def test_bare_target_commands_work(bare):
    threads = bare.result("stack")["threads"]
    assert len(threads) == 1
    assert threads[0]["main"] is True
    assert threads[0]["native_id"] is None
    assert bare.result("print")["output"] == "1\n"
    assert "len" in bare.result("help")["output"]
    assert bare.result("error")["output"].endswith("ZeroDivisionError: division by zero\n")
    assert bare.result("module")["module"] == "__main__"
    assert bare.result("getglobal")["value"]["type"] == "function"
    assert bare.error("missing")["data"]["suggestions"] == ["main"]
    assert bare.error("garbage")["code"] == -32700
