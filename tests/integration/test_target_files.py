"""Files the target names are read with the target's rights. A stack read from outside shows the
source line of each frame, read from the file named in the frame's code object; that name is
the target's to choose, so root attaching to uid A's process must read it as A would: a file A
cannot read shows no line (in the terminal, in --json, in stack -f), a FIFO or device is never
opened for reading (nothing blocks), and a file A can read still shows its line."""

import os
import re
import shutil
import stat
import tempfile

import pytest
import users
from users import user_spawn  # noqa: F401 - the fixture

from conftest import Target

SECRET = "SECRET-7f3a9c-only-root-may-read-this"
LINE = 5


class NamesFile(Target):
    kind = "names_file"
    line_re = re.compile(r"^tick \d+$")
    progress_re = line_re
    settle_progress = 1


UserNamesFile = users.user_kind(NamesFile)


@pytest.fixture
def owner():
    return users.user(users.OWNER)


@pytest.fixture
def secret_file():
    """A file only root may read (0600 in a 0700 directory), SECRET on every line."""
    d = tempfile.mkdtemp(prefix="fp-secret-", dir="/tmp")
    path = os.path.join(d, "secret.txt")
    with open(path, "w") as f:
        f.write("".join("%s line %d\n" % (SECRET, i) for i in range(1, 20)))
    os.chmod(path, 0o600)
    yield path
    shutil.rmtree(d, ignore_errors=True)


def main_frame(model):
    main = [th for th in model["threads"] if th["main"]][0]
    return main["frames"][-1]


def stack_everywhere(t, tmpdir):
    """(terminal text, --json model, stack -f file text) of one target."""
    human = t.cmd("stack").ok().out
    model = t.json("stack")
    out = os.path.join(tmpdir, "stack.txt")
    t.cmd("stack -f %s" % out).ok()
    with open(out) as f:
        written = f.read()
    return human, model, written


def test_root_does_not_read_a_file_the_owner_cannot(python, owner, secret_file, user_spawn, tmp_path):
    t = user_spawn(owner, (secret_file, LINE), cls=UserNamesFile)
    human, model, written = stack_everywhere(t, str(tmp_path))
    frame = main_frame(model)
    assert frame["file"] == secret_file and frame["line"] == LINE, frame
    assert frame["source"] == "", "root read the target-named file with its own rights: %r" % frame["source"]
    for text in (human, written):
        assert SECRET not in text, text
        assert secret_file in text  # the frame itself is still shown
    t.assert_healthy()


def test_link_to_a_file_the_owner_cannot_read(python, owner, secret_file, user_spawn, tmp_path):
    d = users.user_dir(owner, "fp-link-")
    try:
        link = os.path.join(d, "innocent.py")
        os.symlink(secret_file, link)
        t = user_spawn(owner, (link, LINE), cls=UserNamesFile)
        human, model, written = stack_everywhere(t, str(tmp_path))
        assert main_frame(model)["source"] == ""
        assert SECRET not in human + written
        t.assert_healthy()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_file_the_owner_can_read_shows_its_line(python, owner, user_spawn):
    d = users.user_dir(owner, "fp-src-")
    try:
        path = os.path.join(d, "mine.py")
        with open(path, "w") as f:
            f.write("".join("visible_line_%d = %d\n" % (i, i) for i in range(1, 20)))
        os.chown(path, owner.uid, owner.gid)
        os.chmod(path, 0o600)  # only the owner (and root) may read it
        t = user_spawn(owner, (path, LINE), cls=UserNamesFile)
        assert main_frame(t.json("stack"))["source"] == "visible_line_%d = %d" % (LINE, LINE)
        t.assert_healthy()
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_special_files_are_not_opened(python, spawn, kind, tmp_path):
    """A FIFO named by the target would block a reader forever; a device may act when opened."""
    if kind == "fifo":
        path = os.path.join(str(tmp_path), "named.py")
        os.mkfifo(path)
    else:
        path = "/dev/zero"
    t = spawn_names_file(spawn, path)
    r = t.cmd("stack", "--json", timeout=20).ok()
    assert main_frame(r.result())["source"] == ""
    if kind == "fifo":
        assert stat.S_ISFIFO(os.stat(path).st_mode)
    t.assert_healthy()


def spawn_names_file(spawn, path):
    from conftest import KINDS

    KINDS.setdefault(NamesFile.kind, NamesFile)
    return spawn(NamesFile.kind, path, LINE)
