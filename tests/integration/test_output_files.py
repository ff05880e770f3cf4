"""Files fp writes (stack -f, perf -f): only the path given, never through a link another user
planted, never a FIFO (which would block fp forever) or another non-regular file, and never a
partial file: the contents go to a new file beside the destination that replaces it once
complete, so a full disk leaves the old file (or nothing). perf checks its path before it
starts sampling, not after the whole run."""

import os
import shutil
import subprocess
import tempfile

import pytest
import users


@pytest.fixture(scope="module")
def t(module_spawn):
    return module_spawn("sleeper")


@pytest.fixture
def root_file():
    d = tempfile.mkdtemp(prefix="fp-rootfile-", dir="/tmp")
    path = os.path.join(d, "important.conf")
    with open(path, "w") as f:
        f.write("keep me\n")
    yield path
    shutil.rmtree(d, ignore_errors=True)


def leftovers(d):
    return sorted(n for n in os.listdir(d) if ".fp-" in n)


@pytest.mark.parametrize("command", ["stack -f {}", "perf -d 1 --format collapsed -f {}"])
def test_link_planted_by_another_user_is_not_followed(t, command, root_file):
    """uid A links a name in its own directory to a root-owned file; root writes there."""
    a = users.user(users.OWNER)
    d = users.user_dir(a, "fp-links-")
    try:
        link = os.path.join(d, "out.txt")
        subprocess.run(a.argv(["ln", "-s", root_file, link]), check=True, timeout=10)
        r = t.cmd(command.format(link))
        with open(root_file) as f:
            assert f.read() == "keep me\n", "root's file was overwritten through A's link:\n" + r.describe()
        r.failed()
        assert link in r.err and "link" in r.err, r.describe()
        assert os.path.islink(link) and leftovers(d) == []
    finally:
        shutil.rmtree(d, ignore_errors=True)
    t.assert_healthy()


def test_directory_reached_through_another_users_link(t, root_file):
    a = users.user(users.OWNER)
    d = users.user_dir(a, "fp-links-")
    try:
        subprocess.run(a.argv(["ln", "-s", os.path.dirname(root_file), os.path.join(d, "sub")]), check=True, timeout=10)
        target = os.path.join(d, "sub", os.path.basename(root_file))
        r = t.cmd("stack -f %s" % target)
        with open(root_file) as f:
            assert f.read() == "keep me\n", r.describe()
        r.failed()
        assert "link of uid %d" % a.uid in r.err, r.describe()
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("command", ["stack -f {}", "perf -d 30 --format collapsed -f {}"])
def test_fifo_is_refused_at_once(t, tmp_path, command):
    fifo = str(tmp_path / "out.fifo")
    os.mkfifo(fifo)
    r = t.cmd(command.format(fifo), "--timeout", "60", timeout=20).failed()
    assert fifo in r.err and "FIFO" in r.err, r.describe()
    assert r.elapsed < 10, "perf sampled before refusing:\n" + r.describe()


@pytest.mark.parametrize("kind", ["existing directory", "under a regular file", "missing directory"])
def test_perf_checks_its_path_before_sampling(t, tmp_path, kind):
    regular = tmp_path / "plain"
    regular.write_text("x")
    path = {
        "existing directory": str(tmp_path),
        "under a regular file": str(regular / "out.svg"),
        "missing directory": str(tmp_path / "no" / "such" / "out.svg"),
    }[kind]
    r = t.cmd("perf -d 30 -f %s" % path, "--timeout", "60", timeout=45).failed()
    assert path in r.err, r.describe()
    assert r.elapsed < 10, "perf sampled for the whole run before failing:\n" + r.describe()
    assert regular.read_text() == "x"


@pytest.fixture
def full_fs():
    """A tiny tmpfs filled up to the last byte."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    d = tempfile.mkdtemp(prefix="fp-fullfs-", dir="/tmp")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,nr_inodes=64", "tmpfs", d],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if r.returncode != 0:
        os.rmdir(d)
        pytest.skip("cannot mount a tmpfs: %s" % r.stdout.strip())
    try:
        with open(os.path.join(d, "old.txt"), "w") as f:
            f.write("the previous stack\n")
        fd = os.open(os.path.join(d, "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 512)
        except OSError:
            pass
        finally:
            os.close(fd)
        yield d
    finally:
        subprocess.run(["umount", d])
        os.rmdir(d)


@pytest.fixture(scope="module")
def many(module_spawn):
    return module_spawn("threads50")  # a stack of several pages


@pytest.mark.parametrize("name", ["old.txt", "new.txt"])
def test_full_disk_leaves_no_partial_file(many, full_fs, name):
    path = os.path.join(full_fs, name)
    r = many.cmd("stack -f %s" % path).failed()
    assert path in r.err, r.describe()
    if name == "old.txt":
        with open(path) as f:
            assert f.read() == "the previous stack\n", "the old file was damaged"
    else:
        assert not os.path.exists(path), "a partial %s was left (%d bytes)" % (path, os.path.getsize(path))
    assert leftovers(full_fs) == []


def test_replacing_a_file_keeps_its_mode(t, tmp_path):
    path = tmp_path / "stack.txt"
    path.write_text("old")
    os.chmod(path, 0o600)
    t.cmd("stack -f %s" % path).ok()
    assert "sleeper.py" in path.read_text()
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert leftovers(str(tmp_path)) == []


def test_target_unaffected(t):
    t.assert_healthy()
