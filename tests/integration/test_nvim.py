"""The Neovim plugin (nvim/) in a real headless Neovim (Debian's, 0.7 here), driving the real
fp-lsp against a real target (tests/targets/lsp_service.py): the plugin's pure functions
(tests/nvim/unit.lua), then attach, open the target's source, monitor and watch the function
under the cursor (the diagnostic carries the real arguments and return value, the virtual text
the call count), reload an unsaved edit (the target's output changes), :checkhealth fp. The Lua
side (tests/nvim/e2e.lua) waits on conditions with bounds and reports in JSON.
The editor side runs under two interpreters (the oldest and newest here): the server itself
is tested under every one in test_lsp.py."""

import json
import os
import re
import shutil
import subprocess

import pytest
from test_lsp import LspService  # noqa: F401 - registers the lsp_service kind

from conftest import FP_BUILD, PYTHONS, REPO, TARGETS, wait_until

NVIM = os.environ.get("FP_NVIM") or shutil.which("nvim")  # FP_NVIM: another Neovim to test with
FP_LSP = os.path.join(FP_BUILD, "bin", "fp-lsp")
INIT = os.path.join(REPO, "tests", "nvim", "init.lua")
NVIM_TIMEOUT_S = 90


def _nvim_version():
    if not NVIM:
        return None
    out = subprocess.run([NVIM, "--version"], stdout=subprocess.PIPE, text=True, timeout=10).stdout
    m = re.search(r"NVIM v(\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else None


NVIM_VERSION = _nvim_version()
pytestmark = pytest.mark.skipif(
    NVIM_VERSION is None or NVIM_VERSION < (0, 7),
    reason="Neovim 0.7+ is not installed: make deps installs Debian's neovim package (apt-get install neovim)",
)

NVIM_PYTHONS = PYTHONS[:1] + PYTHONS[-1:] if len(PYTHONS) > 1 else list(PYTHONS)


@pytest.fixture(scope="module", params=NVIM_PYTHONS, ids=[p.id for p in NVIM_PYTHONS])
def python(request):
    return request.param


def _nvim(script, env_extra, cwd):
    env = dict(os.environ)
    env.update(env_extra)
    env["XDG_STATE_HOME"] = env["XDG_DATA_HOME"] = env["XDG_CONFIG_HOME"] = env["XDG_CACHE_HOME"] = cwd
    argv = [NVIM, "--headless", "-u", INIT, "-i", "NONE", "-n", "-c", "luafile " + script]
    try:
        return subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            timeout=NVIM_TIMEOUT_S,
            text=True,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail("nvim did not finish within %d s:\n%s" % (NVIM_TIMEOUT_S, e.stdout or ""))


def test_pure_functions(tmp_path):
    p = _nvim(os.path.join(REPO, "tests", "nvim", "unit.lua"), {}, str(tmp_path))
    assert p.returncode == 0, p.stdout
    assert re.search(r"\b\d+ passed, 0 failed\b", p.stdout), p.stdout


def test_without_the_server_says_what_to_do(tmp_path):
    p = _nvim(
        os.path.join(REPO, "tests", "nvim", "no_server.lua"),
        {"FP_TEST_MISSING": str(tmp_path / "no-fp-lsp")},
        str(tmp_path),
    )
    assert p.returncode == 0, p.stdout


def test_help_file_has_its_tags(tmp_path):
    doc = tmp_path / "doc"
    doc.mkdir()
    shutil.copy(os.path.join(REPO, "nvim", "doc", "fp.txt"), str(doc / "fp.txt"))
    p = subprocess.run(
        [NVIM, "--headless", "-u", "NONE", "-i", "NONE", "-n", "-c", "helptags " + str(doc), "-c", "qall!"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=30,
    )
    assert p.returncode == 0 and "E154" not in p.stdout, p.stdout  # E154: a duplicate tag
    tags = set(line.split("\t")[0] for line in (doc / "tags").read_text().splitlines())
    want = {
        "fp",
        "fp.setup()",
        "fp-options",
        "fp-health",
        ":FpAttach",
        ":FpDetach",
        ":FpWatch",
        ":FpTrace",
        ":FpMonitor",
        ":FpProfile",
        ":FpStop",
        ":FpReload",
        ":FpStack",
        "fp-statusline",
    }
    assert want <= tags, sorted(want - tags)


def test_attach_monitor_watch_reload_health(spawn, tmp_path):
    t = spawn("lsp_service")
    result = tmp_path / "result.json"
    stack = tmp_path / "stack.json"
    stack.write_text(json.dumps(t.json("stack")))
    p = _nvim(
        os.path.join(REPO, "tests", "nvim", "e2e.lua"),
        {
            "FP_LSP": FP_LSP,
            "FP_TEST_PID": str(t.pid),
            "FP_TEST_PY_MINOR": str(t.python.version[1]),
            "FP_TEST_SOURCE": os.path.join(TARGETS, "lsp_service.py"),
            "FP_TEST_OUT": t.out_path,
            "FP_TEST_RESULT": str(result),
            "FP_TEST_STACK": str(stack),
        },
        str(tmp_path),
    )
    assert result.exists(), "nvim wrote no report (exit %d):\n%s" % (p.returncode, p.stdout)
    report = json.loads(result.read_text())
    assert report.get("failure") is None and p.returncode == 0, "%s\nsteps: %s\nnvim output:\n%s" % (
        report.get("failure"),
        report.get("steps"),
        p.stdout[-3000:],
    )
    assert [s["name"] for s in report["steps"]] == [
        "attach",
        "open",
        "monitor_and_watch",
        "raising_and_file",
        "reload",
        "missing_commands",
        "health",
        "stack_buffer",
        "detach",
    ]
    # The reload stays; fp's probes do not (fp.stop, then the detach, removed them).
    assert t.progress()[-1].endswith("price=14"), t.progress()[-3:]
    wait_until(lambda: t.pristine() == 0, 10, "the target without fp's probes")
    t.assert_healthy()
