"""The agent's bytecode cache (fp_agent/pycache.py) under every CPython: a second load of the
package uses the code compiled by the first, a changed source is compiled again (never a stale
cache), and a cache directory that is not private to the user is not used.
"""

import json
import os
import shutil
import subprocess

from test_fp_agent import python  # noqa: F401  (the interpreter fixture)

HERE = os.path.dirname(os.path.abspath(__file__))
AGENT_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "agent", "fp_agent"))

_LOAD = r"""
import json, os, sys
import _frozen_importlib as fb, _frozen_importlib_external as fe
directory = sys.argv[1]
spec = fe.spec_from_file_location("fp_agent", directory + "/__init__.py", submodule_search_locations=[directory])
package = fb.module_from_spec(spec)
sys.modules["fp_agent"] = package
spec.loader.exec_module(package)
answer = json.loads(package.dispatch.handle(1, '{"jsonrpc": "2.0", "id": 1, "method": "getglobal", '
                                              '"params": {"module": "fp_agent.render", "field": "MARK"}}'))
pycache = sys.modules["fp_agent.pycache"]
finder = sys.path_importer_cache.get(directory)
checks = {}
for name, mode in (("private", 0o700), ("group", 0o770), ("world", 0o777)):
    path = os.path.join(sys.argv[2], name)
    os.mkdir(path)
    os.chmod(path, mode)
    checks[name] = pycache._private(path, False)
link = os.path.join(sys.argv[2], "link")
os.symlink(os.path.join(sys.argv[2], "private"), link)
checks["symlink"] = pycache._private(link, False)
package.dispatch.shutdown()
print(json.dumps({"answer": answer, "cache": finder.cache, "checks": checks,
                  "finder left": directory in sys.path_importer_cache}))
"""


def _load(python, agent, scratch):  # noqa: F811
    os.makedirs(scratch)
    proc = subprocess.run(
        [python, "-c", _LOAD, agent, scratch],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
        timeout=60,
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return json.loads(proc.stdout)


def test_cache_is_used_and_never_stale(python, tmp_path):  # noqa: F811
    # The agent's I/O thread makes fp's directory before the package loads; here, the test.
    root = "/tmp/fp-%d" % os.geteuid()
    if not os.path.isdir(root):
        os.mkdir(root, 0o700)
    agent = str(tmp_path / "fp_agent")
    shutil.copytree(AGENT_DIR, agent, ignore=shutil.ignore_patterns("__pycache__"))
    with open(os.path.join(agent, "render.py"), "a") as f:
        f.write("\nMARK = 'first'\n")
    first = _load(python, agent, str(tmp_path / "a"))
    assert first["answer"]["result"]["value"]["repr"] == "'first'", first
    cache = first["cache"]
    assert cache and cache.startswith("/tmp/fp-%d/pycache/" % os.geteuid()), first
    assert not os.path.exists(os.path.join(agent, "__pycache__"))  # nothing written beside the sources
    cached = os.path.join(cache, "render.pyc")
    assert os.path.isfile(cached) and os.stat(cached).st_mode & 0o777 == 0o600
    stamp = os.stat(cached).st_mtime_ns
    again = _load(python, agent, str(tmp_path / "b"))
    assert again["answer"]["result"]["value"]["repr"] == "'first'"
    assert os.stat(cached).st_mtime_ns == stamp, "the second load compiled again instead of reading the cache"
    # A changed source (same size even) is compiled again: the cache checks mtime and size.
    source = os.path.join(agent, "render.py")
    with open(source) as f:
        text = f.read()
    with open(source, "w") as f:
        f.write(text.replace("MARK = 'first'", "MARK = 'other'"))
    os.utime(source, ns=(stamp + 10**9, stamp + 10**9))
    changed = _load(python, agent, str(tmp_path / "c"))
    assert changed["answer"]["result"]["value"]["repr"] == "'other'", changed
    assert changed["finder left"] is False  # shutdown takes the finder away with the package
    assert changed["checks"] == {"private": True, "group": False, "world": False, "symlink": False}
    shutil.rmtree(cache, ignore_errors=True)
