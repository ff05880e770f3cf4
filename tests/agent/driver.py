"""A target process for the fp_agent tests: loads the agent the way the native side does
(spec_from_file_location, not sys.path), runs the steps of a JSON file on a thread that the
threading module does not know (like the native worker), and prints one JSON line per step.

usage: python driver.py AGENT_DIR STEPS.json app|bare
Nothing else may appear on stdout: the tests check that the agent never wrote to it.
"""

import _thread
import importlib.util
import json
import os
import sys

MAIN_IDENT = []  # the process's main thread


def main():
    MAIN_IDENT.append(_thread.get_ident())
    agent_dir, steps_file, mode = sys.argv[1:4]
    with open(steps_file) as f:
        steps = json.load(f)
    if mode == "app":
        import target_app

        alias_spec = importlib.util.spec_from_file_location("app_alias", target_app.__file__)
        alias = importlib.util.module_from_spec(alias_spec)
        sys.modules["app_alias"] = alias
        alias_spec.loader.exec_module(alias)
        gate, _ = target_app.start_worker()

    before = snapshot()
    BEFORE_MODULES.update(sys.modules)
    dispatch = load_agent(agent_dir)
    records = []
    done = _thread.allocate_lock()
    done.acquire()

    def work():
        try:
            run_steps(dispatch, steps, records, before)
        except BaseException as exc:
            records.append({"key": "<driver>", "raised": "%s: %s" % (type(exc).__name__, exc)})
        finally:
            done.release()

    _thread.start_new_thread(work, ())
    wait_for_worker(done)
    out = sys.__stdout__
    for record in records:
        out.write(json.dumps(record) + "\n")
    out.flush()
    if mode == "app":
        gate.release()


BEFORE_MODULES = set()  # sys.modules before the agent was loaded


def wait_for_worker(done):
    if not done.acquire(True, 50):
        sys.__stdout__.write(json.dumps({"key": "<driver>", "raised": "steps did not finish in 50 s"}) + "\n")
        sys.__stdout__.flush()
        os._exit(3)


def load_agent(agent_dir):
    init = os.path.join(agent_dir, "__init__.py")
    # As the native side does: the package from its __init__.py (the directory becomes its
    # __path__), registered in sys.modules before it runs so its relative imports resolve.
    spec = importlib.util.spec_from_file_location("fp_agent", init)
    package = importlib.util.module_from_spec(spec)
    sys.modules["fp_agent"] = package
    spec.loader.exec_module(package)
    return package.dispatch


def run_steps(dispatch, steps, records, before):
    by_key = {}
    modules = {}
    for index, step in enumerate(steps):
        key = step["key"]
        record = {"key": key, "raised": None}
        op = step.get("op", "request")
        try:
            if op == "request":
                if "body" in step:
                    body = step["body"]
                elif "body_py" in step:
                    body = eval(step["body_py"])
                else:
                    request = {"jsonrpc": "2.0", "id": index, "method": step["method"]}
                    if "params" in step:
                        request["params"] = resolve(step["params"], by_key)
                    body = json.dumps(request)
                text = dispatch.handle(step.get("client", 1), body)
                record["text"] = text
                try:
                    record["response"] = json.loads(text)
                except ValueError:
                    record["response"] = None
            elif op == "client_gone":
                record["returned"] = repr(dispatch.client_gone(step["client"]))
            elif op == "shutdown":
                record["returned"] = repr(dispatch.shutdown())
            elif op == "probe":
                for name in ("fp_agent.console", "fp_agent.registry"):
                    if name in sys.modules:
                        modules[name] = sys.modules[name]
                record["probe"] = probe(before, modules)
            elif op == "repr_check":
                record["mismatches"] = repr_check(sys.modules["fp_agent.render"])
            elif op == "registry_check":
                record["registry"] = registry_check(sys.modules["fp_agent.registry"])
            else:
                raise ValueError("unknown op %r" % op)
        except BaseException as exc:
            record["raised"] = "%s: %s" % (type(exc).__name__, exc)
        by_key[key] = record
        records.append(record)


def resolve(value, by_key):
    """{"$ref": KEY} -> the session id that step KEY's console.open returned."""
    if isinstance(value, dict):
        if set(value) == {"$ref"}:
            return by_key[value["$ref"]]["response"]["result"]["session"]
        return dict((k, resolve(v, by_key)) for k, v in value.items())
    return value


def snapshot():
    import builtins
    import warnings

    threading = sys.modules.get("threading")
    return {
        "displayhook": sys.displayhook,
        "excepthook": sys.excepthook,
        "trace": sys.gettrace(),
        "profile": sys.getprofile(),
        "recursionlimit": sys.getrecursionlimit(),
        "switchinterval": sys.getswitchinterval(),
        "path": list(sys.path),
        "builtins": dict(builtins.__dict__),
        "warnings.filters": warnings.filters,
        "warnings.filters items": list(warnings.filters),
        "warnings._showwarnmsg": getattr(warnings, "_showwarnmsg", None),
        "warnings.showwarning": warnings.showwarning,
        "threading loaded": threading is not None,
        "threading._active": sorted(threading._active) if threading else None,
        "threading trace": getattr(threading, "_trace_hook", None) if threading else None,
        "threading profile": getattr(threading, "_profile_hook", None) if threading else None,
        "stdout": sys.stdout,
        "stderr": sys.stderr,
        "cwd": os.getcwd(),
    }


def probe(before, modules):
    now = snapshot()
    changed = []
    for name, old in before.items():
        new = now[name]
        if name == "builtins":
            same = set(old) == set(new) and all(old[k] is new[k] for k in old)
        elif isinstance(old, (list, int, float, str, bool)) or old is None:
            same = old == new
        else:
            same = old is new
        if not same:
            changed.append(name)
    # The containers themselves are kept from the first probe that sees them: shutdown empties
    # the package's module dicts (so that nothing of it stays alive), but these must be empty.
    console = modules.get("fp_agent.console")
    registry = modules.get("fp_agent.registry")
    if console is not None and "_sessions" in vars(console):
        modules["sessions"] = console._sessions
    if registry is not None and "_installations" in vars(registry):
        modules["installations"] = registry._installations
    sessions = {}
    for session in list(modules.get("sessions", {}).values()):
        sessions[str(session.client_id)] = sessions.get(str(session.client_id), 0) + 1
    return {
        "changed": changed,
        "threading loaded before": before["threading loaded"],
        "threading loaded": "threading" in sys.modules,
        "threading main": sys.modules["threading"]._main_thread.ident if "threading" in sys.modules else None,
        "threading active": sorted(sys.modules["threading"]._active) if "threading" in sys.modules else None,
        "process main": MAIN_IDENT[0] if MAIN_IDENT else None,
        "sessions": sessions,
        "installations": len(modules["installations"]) if "installations" in modules else None,
        "fp modules": sorted(n for n in sys.modules if n == "fp_agent" or n.startswith("fp_agent.")),
        "imported": sorted(n for n in sys.modules if n not in BEFORE_MODULES),
        "worker ident": _thread.get_ident(),
        "pid": os.getpid(),
    }


def registry_check(registry):
    """Undo runs newest first, and one failing undo does not stop the others."""
    undone = []

    def fail():
        raise KeyError("boom")

    first = registry.add(77, "test", lambda: undone.append("first"), "first")
    registry.add(77, "test", fail, "failing")
    registry.add(77, "test", lambda: undone.append("third"), "third")
    registry.add(78, "test", lambda: undone.append("other client"), "other")
    kinds = [i.label for i in registry.of_client(77)]
    errors = registry.undo_client(77)
    again = registry.undo_client(77)
    removed_twice = registry.remove(first)
    other = registry.undo_client(78)
    return {
        "labels": kinds,
        "undone": undone,
        "errors": errors,
        "again": again,
        "removed_twice": removed_twice,
        "other": other,
    }


def repr_check(render):
    """The bounded repr must be exactly repr() cut at 256, on many shapes of builtin values."""
    import random

    rng = random.Random(1234)
    quotes = ["'", '"', "a", "\\", "\n", "é", "\x00"]

    def text(n):
        return "".join(rng.choice(quotes) for _ in range(n))

    def value(level):
        kind = rng.randrange(9 if level < 4 else 4)
        if kind == 0:
            return rng.randrange(-(10**6), 10**6)
        if kind == 1:
            return text(rng.randrange(0, 400))
        if kind == 2:
            return text(rng.randrange(0, 400)).encode("utf-8")
        if kind == 3:
            return rng.choice([None, True, 1.5, float("nan")])
        n = rng.choice([0, 1, 2, 5, 40, 300] if level == 0 else [0, 1, 2, 5])
        if kind == 4:
            return [value(level + 1) for _ in range(n)]
        if kind == 5:
            return tuple(value(level + 1) for _ in range(n))
        if kind == 6:
            return dict((rng.randrange(10**4), value(level + 1)) for _ in range(n))
        if kind == 7:
            return set(rng.randrange(10**6) for _ in range(n))
        return frozenset(text(rng.randrange(5)) for _ in range(n))

    samples = [value(0) for _ in range(400)]
    for head, tail in (("a" * 300, "'"), ("'" + "a" * 300, '"'), ("a" * 300, ""), ("'" * 300, '"')):
        samples += [head + tail, tail + head, (head + tail).encode(), (tail + head).encode()]
    cyclic_list = [1]
    cyclic_list.append(cyclic_list)
    cyclic_dict = {}
    cyclic_dict["me"] = cyclic_dict
    cyclic_tuple = ([],)
    cyclic_tuple[0].append(cyclic_tuple)
    deep = []
    for _ in range(500):
        deep = [deep]
    samples += [cyclic_list, cyclic_dict, cyclic_tuple, deep, [cyclic_list] * 100, (1,), frozenset(), set()]

    mismatches = []
    for sample in samples:
        full = repr(sample)
        expected = (full[:256], len(full) > 256)
        got = render.safe_repr(sample, 256)
        if tuple(got) != expected:
            mismatches.append({"expected": expected[0], "got": got[0]})
    return mismatches


if __name__ == "__main__":
    main()
