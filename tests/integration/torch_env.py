#!/usr/bin/env python3
"""Virtual environments with PyTorch for the `torch` integration tests, made once and cached.

PyPI's torch wheels for Linux x86-64 are CUDA builds: importing torch needs the NVIDIA libraries
it links (cuBLAS, cuDNN, NCCL...), about 2.3 GB to download and 3 GB on disk per torch release,
even to run a model on the CPU. So the libraries are installed once per torch version into a
directory of their own that every environment of that version reads (a .pth file; torch finds
them on sys.path), and each interpreter's environment gets only torch itself (a 540-800 MB
wheel), its pure-Python dependencies and numpy. triton (torch.compile's GPU compiler, 286 MB) and
the CUDA Python bindings are left out: importing torch and running a model do not use them.

Which interpreters: FP_TORCH_PYTHONS ("py3.8,py3.12", "all", or "none"), by default py3.13
(torch 2.15.0, sys.monitoring) and Debian's system-3.11 (the same torch, a static interpreter,
fp's code-swap engine of the versions before 3.12): one set of CUDA libraries for both, about
3.5 GB of downloads, 4.5 GB of disk and 3-4 minutes on a quiet machine. py3.11 and py3.12 share
those libraries (about 570 MB and a minute more each); py3.8 (torch 2.4.1, the last for 3.8,
torch's older profiler code), py3.9 (2.8.0) and py3.10 (2.14.1) each bring a library set of
their own (2.3 GB). Any interpreter that has an environment is tested, whether or not it is in
the list. FP_PYTHONS narrows as for the tests.

Where: FP_TORCH_CACHE (default ~/.cache/fp/torch). An environment is reused while its marker
says it was completed and torch still imports. A failure is written to ID.error there, which the
tests show as their skip reason; this script then exits 0 (the tests, not the install, report).

Usage: python3 tests/integration/torch_env.py [--list]   (--list: what is installed, installs nothing)
`make test` runs it before the tests; test_torch.py asks it for each interpreter's environment.
"""

import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import pythons  # noqa: E402

# The torch release each interpreter gets: the newest PyPI has for it, pinned so that a test run
# is reproducible and interpreters of one release share their CUDA libraries.
TORCH_FOR = {
    (3, 8): "2.4.1",
    (3, 9): "2.8.0",
    (3, 10): "2.14.1",
    (3, 11): "2.15.0",
    (3, 12): "2.15.0",
    (3, 13): "2.15.0",
}
DEFAULT = ("py3.13", "system-3.11")
# Not needed to import torch and run a model on the CPU (see the docstring).
LEFT_OUT = ("triton", "cuda-bindings", "cuda-pathfinder", "cuda-toolkit")
MARKER = ".fp-torch-ok"
CHECK = (
    "import torch, sys; m = torch.nn.Linear(8, 4); y = m(torch.randn(2, 8)).sum(); y.backward(); "
    "sys.stdout.write(torch.__version__)"
)


def cache_dir():
    return os.environ.get("FP_TORCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fp", "torch"
    )


def venv_path(python):
    return os.path.join(cache_dir(), "%s-torch%s" % (python.id, TORCH_FOR[python.version]))


def error_path(python):
    return os.path.join(cache_dir(), python.id + ".error")


def wanted():
    """The interpreters to install for, from FP_PYTHONS and FP_TORCH_PYTHONS."""
    found = pythons.select()
    spec = os.environ.get("FP_TORCH_PYTHONS", "").strip()
    if spec == "none":
        return []
    if spec == "all":
        names = [p.id for p in found]
    elif spec:
        names = [n.strip() for n in spec.split(",") if n.strip()]
    else:
        names = list(DEFAULT)
    return [p for p in found if p.id in names and p.version in TORCH_FOR]


def ready(python):
    """The environment's python when it is complete and torch imports there, else None."""
    venv = venv_path(python)
    exe = os.path.join(venv, "bin", "python")
    try:
        with open(os.path.join(venv, MARKER)) as f:
            if f.read().strip() != TORCH_FOR[python.version]:
                return None
        subprocess.run(
            [exe, "-c", "import torch"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return exe


def _run(argv, what):
    t0 = time.monotonic()
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if p.returncode != 0:
        raise RuntimeError("%s failed (exit %d): %s\n%s" % (what, p.returncode, " ".join(argv), p.stdout[-4000:]))
    return time.monotonic() - t0, p.stdout


def _pip(exe):
    # pip runs under the driver's interpreter and installs into the environment's (pip --python),
    # so the environments need no pip of their own (Debian's python3 may lack ensurepip).
    return [sys.executable, "-m", "pip", "--python", exe, "--disable-pip-version-check", "--no-input"]


def _wheel_name(filename):
    """(normalised name, version) of a wheel file: name-version-tags.whl."""
    parts = filename[: -len(".whl")].split("-")
    return parts[0].lower().replace("_", "-"), parts[1]


def _download(exe, version):
    """Downloads torch==version and every dependency for this interpreter into a directory, once
    per torch version (the first interpreter of that version): pip cannot resolve torch's
    dependencies without fetching their wheels anyway. Returns (directory, [(name, version)])."""
    wheels = os.path.join(cache_dir(), "wheels-torch%s-first" % version)
    shutil.rmtree(wheels, ignore_errors=True)
    _run(
        _pip(exe) + ["download", "--quiet", "--no-cache-dir", "--dest", wheels, "torch==" + version],
        "downloading torch %s and its dependencies" % version,
    )
    resolved = sorted(_wheel_name(f) for f in os.listdir(wheels) if f.endswith(".whl"))
    return wheels, resolved


def _pins_path(version):
    return os.path.join(cache_dir(), "resolved-torch%s.json" % version)


def _saved_pins(version):
    try:
        with open(_pins_path(version)) as f:
            return [tuple(nv) for nv in json.load(f)]
    except (OSError, ValueError):
        return None


def _save_pins(version, resolved):
    with open(_pins_path(version) + ".tmp", "w") as f:
        json.dump(resolved, f)
    os.replace(_pins_path(version) + ".tmp", _pins_path(version))


def _split(resolved):
    nvidia = [nv for nv in resolved if nv[0].startswith("nvidia-")]
    rest = [nv for nv in resolved if not nv[0].startswith("nvidia-") and nv[0] not in LEFT_OUT]
    return nvidia, rest


def _wants(python, resolved):
    """What a further interpreter of a torch version installs beside the shared libraries: that
    torch, and its pure-Python dependencies by name, each at the newest release this interpreter
    supports (the first interpreter's pins may need a newer Python: networkx 3.7 needs 3.12)."""
    version = TORCH_FOR[python.version]
    return ["torch==" + version] + [name for name, _ in _split(resolved)[1] if name != "torch"]


def install(python):
    """The interpreter's environment: the version's NVIDIA libraries (shared, installed by the
    first interpreter of that version from the wheels it downloads), then torch, its pure-Python
    dependencies (pinned as resolved for that first interpreter) and numpy. Everything is
    downloaded into a scratch directory first (so what it cost can be told), then installed
    from there, and the scratch directory removed."""
    version = TORCH_FOR[python.version]
    venv = venv_path(python)
    shutil.rmtree(venv, ignore_errors=True)
    t0 = time.monotonic()
    _run([python.path, "-m", "venv", "--without-pip", venv], "creating the environment")
    exe = os.path.join(venv, "bin", "python")
    libs = os.path.join(cache_dir(), "cuda-for-torch" + version)
    resolved = _saved_pins(version)
    first = resolved is None or not os.path.exists(os.path.join(libs, MARKER))
    info = {}
    wheels = os.path.join(cache_dir(), "wheels-torch%s-%s" % (version, python.id))
    try:
        t = time.monotonic()
        if first:
            wheels, resolved = _download(exe, version)
        else:
            shutil.rmtree(wheels, ignore_errors=True)
            _run(
                _pip(exe)
                + ["download", "--quiet", "--no-cache-dir", "--no-deps", "--dest", wheels]
                + _wants(python, resolved),
                "downloading torch %s" % version,
            )
        _run(_pip(exe) + ["download", "--quiet", "--no-cache-dir", "--dest", wheels, "numpy"], "downloading numpy")
        info["download_s"] = round(time.monotonic() - t, 1)
        info["downloaded_mb"] = _size_mb(wheels)
        nvidia, rest = _split(resolved)
        local = ["install", "--quiet", "--no-index", "--find-links", wheels, "--no-deps"]
        if first:
            shutil.rmtree(libs, ignore_errors=True)
            spent, _ = _run(
                _pip(exe) + local + ["--target", libs] + ["%s==%s" % nv for nv in nvidia],
                "installing the CUDA libraries for torch %s" % version,
            )
            info["cuda_libs_s"] = round(spent, 1)
            with open(os.path.join(libs, MARKER), "w") as f:
                f.write(version + "\n")
            _save_pins(version, resolved)
        spent, _ = _run(
            _pip(exe) + local + (["%s==%s" % nv for nv in rest] if first else _wants(python, resolved)),
            "installing torch %s" % version,
        )
        info["torch_s"] = round(spent, 1)
        _run(_pip(exe) + ["install", "--quiet", "--no-index", "--find-links", wheels, "numpy"], "installing numpy")
    finally:
        shutil.rmtree(wheels, ignore_errors=True)
    site = subprocess.run(
        [exe, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        stdout=subprocess.PIPE,
        universal_newlines=True,
        check=True,
    ).stdout.strip()
    with open(os.path.join(site, "fp-cuda-libraries.pth"), "w") as f:
        f.write(libs + "\n")
    _, out = _run([exe, "-c", CHECK], "importing torch and running a model")
    with open(os.path.join(venv, MARKER), "w") as f:
        f.write(version + "\n")
    info.update({"torch": out.strip(), "seconds": round(time.monotonic() - t0, 1), "venv_mb": _size_mb(venv)})
    return info


def _size_mb(path):
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return round(total / 1e6)


def for_tests(python):
    """(the environment's python, None) for a test of this interpreter, or (None, why not)."""
    if python.version not in TORCH_FOR:
        return None, "PyPI has no torch for Python %d.%d" % python.version
    exe = ready(python)
    if exe:
        return exe, None
    try:
        with open(error_path(python)) as f:
            return None, f.read().strip()
    except OSError:
        pass
    if python.id not in [p.id for p in wanted()]:
        return None, (
            "torch is not installed for %s: make test installs it for %s only (each torch release "
            "brings 2.3 GB of CUDA libraries); FP_TORCH_PYTHONS=%s or =all adds it"
            % (python.id, ",".join(DEFAULT), python.id)
        )
    return None, "torch is not installed for %s: run `python3 tests/integration/torch_env.py` (make test does)" % (
        python.id
    )


def main():
    listing = "--list" in sys.argv[1:]
    os.makedirs(cache_dir(), exist_ok=True)
    for python in wanted():
        exe = ready(python)
        if exe or listing:
            print("torch for %s: %s" % (python.id, exe or "not installed"))
            continue
        print(
            "torch for %s: installing torch %s into %s ..." % (python.id, TORCH_FOR[python.version], venv_path(python)),
            flush=True,
        )
        try:
            info = install(python)
        except (OSError, RuntimeError, subprocess.SubprocessError, ValueError, KeyError) as exc:
            shutil.rmtree(venv_path(python), ignore_errors=True)
            with open(error_path(python), "w") as f:
                f.write("installing torch %s for %s failed: %s\n" % (TORCH_FOR[python.version], python.id, exc))
            print(
                "torch for %s: FAILED (the torch tests of %s will be skipped): %s"
                % (python.id, python.id, str(exc).splitlines()[0]),
                flush=True,
            )
            continue
        try:
            os.unlink(error_path(python))
        except OSError:
            pass
        print("torch for %s: %s" % (python.id, json.dumps(info)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
