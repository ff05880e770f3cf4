"""fp on a real pre-forking service, as a new user meets one: gunicorn's arbiter and a sync
worker serving a Flask app (tests/targets/gunicorn_shop.py), under load from the test, under
every CPython. flask and gunicorn are installed from PyPI into a virtual environment per
interpreter, cached in $FP_TEST_VENVS (default ~/.cache/fp-test-venvs); the tests are skipped,
saying why, when that cannot be done (no network, no venv module).

- the seed's filter kwargs.get("coupon") == "HALF" matches the worker's calls however spelt;
- perf on the worker under load paced at the sampling rate finds the request code, and every
  stack it draws starts at the thread's root;
- the arbiter and the worker are told apart by their stacks.
"""

import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request

import pytest

import pythons
from conftest import KINDS, Target, descendants, run_fp, wait_until

VENVS = os.environ.get("FP_TEST_VENVS") or os.path.join(os.path.expanduser("~"), ".cache", "fp-test-venvs")
PACKAGES = ("flask", "gunicorn")


@pytest.fixture(scope="module")
def venv_python(python):
    """The interpreter of a virtual environment holding flask and gunicorn, made once."""
    path = os.path.join(VENVS, "%s-%s" % (python.id, "-".join(PACKAGES)))
    exe = os.path.join(path, "bin", "python")
    done = os.path.join(path, ".installed")
    if not os.path.exists(done):
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(VENVS, exist_ok=True)
        for argv in ([python.path, "-m", "venv", path], [exe, "-m", "pip", "install", "-q"] + list(PACKAGES)):
            try:
                p = subprocess.run(
                    argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600, universal_newlines=True
                )
            except (OSError, subprocess.TimeoutExpired) as e:
                pytest.skip("cannot install %s for %s: %s" % (" and ".join(PACKAGES), python.id, e))
            if p.returncode != 0:
                shutil.rmtree(path, ignore_errors=True)
                pytest.skip(
                    "cannot install %s for %s (%s): %s"
                    % (" and ".join(PACKAGES), python.id, " ".join(argv[2:4]), p.stdout[-500:])
                )
        open(done, "w").close()
    return pythons.Python(python.id + "-venv", exe, python.version)


class GunicornShop(Target):
    kind = "gunicorn_shop"
    line_re = re.compile(r"^$")  # prints nothing
    progress_re = line_re

    def get(self, n):
        url = "http://127.0.0.1:%s/total?n=%d" % (self.facts["port"], n)
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.read().decode().strip()

    def wait_settled(self, timeout=60):
        wait_until(lambda: len(descendants(self.pid)) >= 1, timeout, "gunicorn's worker to start")
        wait_until(self._answers, timeout, "the worker to answer")

    def _answers(self):
        try:
            return self.get(0) == "15.0"
        except OSError:
            return False

    def prove_working(self):
        assert self.get(1) == "15.5" and self.get(2) == "32.0", "the shop answers wrong"

    def worker(self):
        kids = [pid for pid, _ in descendants(self.pid)]
        assert len(kids) == 1, kids
        return kids[0]


KINDS["gunicorn_shop"] = GunicornShop


@pytest.fixture(scope="module")
def shop(venv_python, tmp_path_factory):
    t = GunicornShop(venv_python, str(tmp_path_factory.mktemp("gunicorn")), ["1"])
    t.start()
    try:
        yield t
    finally:
        t.finish()


class Load:
    """Requests to the shop at a steady rate from a thread of the test, until stopped."""

    def __init__(self, shop, rate):
        self.shop, self.period, self.errors, self.sent = shop, 1.0 / rate, [], 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        deadline = time.monotonic()
        while not self.stop.is_set():
            try:
                self.shop.get(self.sent)
            except OSError as e:
                self.errors.append(repr(e))
            self.sent += 1
            deadline += self.period
            self.stop.wait(max(0.0, deadline - time.monotonic()))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)
        assert not self.errors, self.errors[:5]


def test_seed_filter_on_a_worker(shop):
    worker = shop.worker()
    with Load(shop, 50):
        run = run_fp(
            [
                worker,
                "--json",
                "--cmd",
                "watch __main__ Pricing total -f 'kwargs.get(\"coupon\") == \"HALF\"' -n 6 --expr 'args[0]'",
            ]
        )
    run.ok()
    events = [
        r["notification"]["params"] for r in run.records() if r.get("notification", {}).get("method") == "watch/event"
    ]
    assert len(events) == 6, run.describe()
    spellings = {int(e["values"][0]["value"]["repr"].strip("[]").split(",")[0]) for e in events}
    assert spellings <= {0, 1, 4} and len(spellings) >= 2, spellings  # keyword, positional, all-keyword


def test_perf_on_a_worker_under_paced_load(shop, tmp_path):
    worker = shop.worker()
    path = tmp_path / "worker.collapsed"
    with Load(shop, 100):
        run = run_fp([worker, "--json", "--cmd", "perf -r 100 -d 3 --format collapsed -f %s" % path])
    model = run.result()
    assert model["samples"] > 0 and model["ticks"] >= 200, model
    stacks = path.read_text().splitlines()
    assert any("total (" in s or "dispatch_request" in s or "handle_request" in s for s in stacks), stacks[:20]
    # Every stack starts at the module or a thread's bootstrap. The sampler reads a running
    # worker without stopping it: on a loaded machine a rare sample is torn (its outer frames
    # changed while it was read), at most a few of the hundreds.
    counts = {}
    for line in stacks:
        stack, _, n = line.rpartition(" ")
        root = stack.split(";")[0].split(" (")[0]
        counts[root] = counts.get(root, 0) + int(n)
    good = sum(n for r, n in counts.items() if r in ("<module>", "_bootstrap", "Thread._bootstrap"))
    assert good >= 0.98 * sum(counts.values()), counts


def test_arbiter_and_worker_are_told_apart(shop):
    arbiter = run_fp([shop.pid, "--json", "--cmd", "stack"]).result()
    worker = run_fp([shop.worker(), "--json", "--cmd", "stack"]).result()
    arbiter_funcs = {f["function"] for th in arbiter["threads"] for f in th["frames"]}
    worker_funcs = {f["function"] for th in worker["threads"] for f in th["frames"]}
    assert "run" in arbiter_funcs and ("sleep" in arbiter_funcs or "select" in arbiter_funcs), arbiter_funcs
    assert "run_for_one" in worker_funcs or "accept" in worker_funcs or "handle" in worker_funcs, worker_funcs
