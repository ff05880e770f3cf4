"""The injected library under AddressSanitizer and UndefinedBehaviorSanitizer, where ASan cannot
otherwise go (it must be in a process from the start): the target is the Python command built
with the sanitizers (tests/sanitize/agent_host.c over this interpreter's libpython), and fp
injects the agent library built with them too (`make sanitize-agent` builds it and sets
FP_SANITIZED_AGENT). Every command family runs against it, clients come, go and are killed, the
agent shuts down and restarts, then the target exits normally: the sanitizers must have nothing
to say about the agent's code (leaks included).

Skipped unless FP_SANITIZED_AGENT names that build's libfpagent.so."""

import glob
import os
import re
import shutil
import signal
import subprocess

import pytest
from rawclient import RawClient

import pythons
from conftest import FP, REPO, Target

AGENT = os.environ.get("FP_SANITIZED_AGENT")
HOST_SRC = os.path.join(REPO, "tests", "sanitize", "agent_host.c")

pytestmark = pytest.mark.skipif(not AGENT, reason="the sanitized agent is checked by `make sanitize-agent`")


class Workload(Target):
    kind = "asan_workload"
    line_re = re.compile(r"^(tick \d+|bye)$")
    progress_re = re.compile(r"^tick \d+$")
    settle_progress = 1

    def __init__(self, python, workdir, home, sanitizer_env):
        super().__init__(python, workdir)
        self.home = home
        self.sanitizer_env = sanitizer_env

    def _env(self):
        env = Target._env()
        env["PYTHONHOME"] = self.home  # the host is not where its libpython's stdlib is
        env.update(self.sanitizer_env)
        return env


def _config(python):
    cfg = python.path + "-config"
    if not os.access(cfg, os.X_OK):
        cfg = os.path.join(os.path.dirname(python.path), "python%d.%d-config" % python.version)
    return cfg if os.access(cfg, os.X_OK) else None


@pytest.fixture(scope="module")
def host(python, tmp_path_factory):
    """The sanitized python command for this interpreter's libpython: (path, PYTHONHOME)."""
    cfg = _config(python)
    if not cfg:
        pytest.skip("%s has no python-config to embed its libpython" % python.id)

    def ask(*args):
        return subprocess.run([cfg] + list(args), stdout=subprocess.PIPE, text=True, check=True).stdout.split()

    prefix = ask("--prefix")[0]
    libdir = os.path.join(prefix, "lib")
    if not glob.glob(os.path.join(libdir, "libpython3*.so*")) and not glob.glob(
        os.path.join(prefix, "lib", "*-linux-gnu", "libpython3*.so*")
    ):
        pytest.skip("%s has no shared libpython to embed" % python.id)
    out = str(tmp_path_factory.mktemp("host-" + python.id) / "python-asan")
    cc = shutil.which("gcc") or shutil.which("cc")
    argv = (
        [cc, "-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g", "-O1", HOST_SRC, "-o", out]
        + ask("--cflags")
        + ask("--ldflags", "--embed")
        + ["-Wl,-rpath," + libdir]
    )
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert r.returncode == 0, "building the sanitized host failed:\n%s\n%s" % (" ".join(argv), r.stdout)
    return out, prefix


def sanitizer_reports(logdir):
    text = ""
    for path in sorted(glob.glob(os.path.join(logdir, "*"))):
        with open(path, errors="replace") as f:
            text += f.read()
    return text


def agent_problems(text):
    """What the sanitizers say about the agent: every error report (only the agent and the host's
    main are instrumented), every undefined behaviour, and the leaks with one of the agent's
    frames (the interpreter's own allocations still alive at exit are not the agent's)."""
    problems = []
    for block in re.split(r"\n(?=\S)", text):
        if re.search(r"ERROR: AddressSanitizer|runtime error:", block):
            problems.append(block.strip())
        elif re.search(r"(Direct|Indirect) leak", block) and re.search(r"libfpagent\.so|agent/native/", block):
            problems.append(block.strip())
    return problems


def test_agent_under_sanitizers(python, host, tmp_path):
    exe, prefix = host
    logdir = tmp_path / "sanitizers"
    logdir.mkdir()
    env = {
        "ASAN_OPTIONS": "detect_leaks=1:halt_on_error=0:allocator_may_return_null=1:log_path=%s/asan" % logdir,
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=0:log_path=%s/ubsan" % logdir,
        "LSAN_OPTIONS": "report_objects=0",
    }
    hostpy = pythons.Python(python.id + "-asan", exe, python.version)
    t = Workload(hostpy, str(tmp_path), prefix, env).start()
    agent = {"FP_AGENT_LIB": AGENT}

    def fp(*args, **kw):
        t.fp_runs += 1
        from conftest import run_fp

        return run_fp([t.pid] + list(args), env_extra=agent, timeout=120, **kw)

    try:
        assert fp("--json", "--cmd", "status").result()["python_version"].startswith("%d.%d" % python.version)
        with open("/proc/%d/maps" % t.pid) as f:
            maps = f.read()
        # The checked library is the one running, in a process the sanitizers watch.
        assert os.path.realpath(AGENT) in maps and "libasan" in maps, maps
        fp("--cmd", "getglobal __main__ DATA -x 4").ok()
        fp("--cmd", "getglobal __main__ DATA -e \"len(target['items'])\"").ok()
        fp("--cmd", "getglobal __main__ NOPE").failed()
        fp("--cmd", "module %s" % t.script).ok()
        fp("--cmd", "watch __main__ work -n 5 -x 2 --expr 'args, return_obj'").ok()
        fp("--cmd", "watch __main__ Cart add -n 3 -f 'args[0] == \"sku-1\"'").ok()
        fp("--cmd", "trace __main__ work -n 3").ok()
        fp("--cmd", "trace __main__ work -n 2 --recorder python").ok()
        fp("--cmd", "tt -t __main__ Cart add -n 5").ok()
        fp("--cmd", "tt -l", "--cmd", "tt -i 1000 -x 2", "--cmd", "tt -i 1000 -p", "--cmd", "tt -da").ok()
        fp("--cmd", "stack", "--cmd", "stack -a").ok()
        fp("--cmd", "console", input="x = [i * i for i in range(10)]\nprint(sum(x))\n1/0\n").ok()
        # A client killed in the middle of a stream; another that sends what fp never would.
        p = subprocess.Popen(
            [FP, str(t.pid), "--cmd", "watch __main__ work -n 100000"],
            env=dict(os.environ, **agent),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        p.stdout.readline()
        p.kill()
        p.wait()
        sock = "/tmp/fp-%d/agent-%d-%d.sock" % (os.geteuid(), t.pid_ns, t.pid)
        c = RawClient(sock)
        c.send_body(b'{"jsonrpc":"2.0","id":1,"method":"\xff"}')
        assert c.read()["error"]["code"] == -32700
        c.send_body(b"[1,2")
        assert c.read()["error"]["code"] == -32700
        c.close()
        fp("--cmd", "shutdown").ok()
        fp("--cmd", "status", "--cmd", "watch __main__ work -n 2").ok()  # restarted in place
        fp("--cmd", "shutdown").ok()
        t.assert_healthy()
    except AssertionError as e:  # the target may have died of a sanitizer report: show it
        raise AssertionError("%s\n\nsanitizer reports:\n%s" % (e, sanitizer_reports(str(logdir))[-20000:]))
    finally:
        if t.proc.poll() is None:
            os.kill(t.pid, signal.SIGINT)  # KeyboardInterrupt: a normal exit, leak check included
            try:
                t.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                t.stop()
    assert t.proc.returncode == 0, "the sanitized host exited with %s\n%s" % (t.proc.returncode, t.stderr_text())
    reports = sanitizer_reports(str(logdir))
    problems = agent_problems(reports)
    assert not problems, "the sanitizers found problems in the agent:\n\n" + "\n\n".join(problems)
    print("%s: sanitizer reports %d bytes, none about the agent" % (python.id, len(reports)))
