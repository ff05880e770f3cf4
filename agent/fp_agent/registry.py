"""What each client has installed in the target, each with an undo callback, so a detach, a
dead client or a shutdown puts the target back exactly as it was.
"""

import _thread
import itertools

# _thread, not threading: importing threading from a foreign thread would make that thread the
# "main thread" of a process that never imported threading.
_lock = _thread.allocate_lock()
_ids = itertools.count(1)
_installations = {}  # id -> Installation, in installation order


class Installation(object):
    __slots__ = ("id", "client_id", "kind", "label", "undo")

    def __init__(self, id, client_id, kind, label, undo):
        self.id = id
        self.client_id = client_id
        self.kind = kind
        self.label = label
        self.undo = undo


def add(client_id, kind, undo, label=""):
    """Record that `client_id` installed something; `undo()` removes it. Returns its id."""
    with _lock:
        install_id = next(_ids)
        _installations[install_id] = Installation(install_id, client_id, kind, label, undo)
    return install_id


def get(install_id):
    return _installations.get(install_id)


def of_client(client_id, kind=None):
    with _lock:
        found = [i for i in _installations.values() if i.client_id == client_id]
    return [i for i in found if kind is None or i.kind == kind]


def remove(install_id):
    """Undo one installation; returns the undo error text, or None when it went well or was gone."""
    with _lock:
        installation = _installations.pop(install_id, None)
    if installation is None:
        return None
    return _run_undo(installation)


def undo_client(client_id):
    """Undo everything the client installed, newest first (a later patch may wrap an earlier one)."""
    with _lock:
        mine = [i for i in _installations.values() if i.client_id == client_id]
        for installation in mine:
            del _installations[installation.id]
    return _undo_many(mine)


def undo_all():
    with _lock:
        everything = list(_installations.values())
        _installations.clear()
    return _undo_many(everything)


def _undo_many(installations):
    errors = []
    for installation in reversed(installations):
        error = _run_undo(installation)
        if error is not None:
            errors.append(error)
    return errors


def _run_undo(installation):
    # Undo callbacks run outside the lock: they may touch user objects, which may run user code.
    try:
        installation.undo()
    except BaseException as exc:  # one failed undo must not keep the others from running
        from .errors import exception_text

        return "%s %s: %s" % (installation.kind, installation.label, exception_text(exc))
    return None
