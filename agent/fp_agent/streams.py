"""The life of a streaming command's probe (watch, tt, trace): stopped by its limit, by a stop
request or by its client going away, it leaves its table, its instrumentation and its registry
entry, and the client gets exactly one end notification."""

from . import events, instrument, registry
from .params import check_names, get_int


class Stream(object):
    """Mixin for a probe object. The subclass sets `end_method` (the end notification), `table`
    (id -> stream, the module's dict) and, in __init__: id, client_id, lock, done, install_id,
    cleanup_id; it defines summary(reason) and may override forget() for extra clean-up."""

    end_method = None
    table = None

    def stop(self, reason):
        """Remove the probe and tell the client why. False when it had already ended."""
        with self.lock:
            if self.done:
                return False
            self.done = True
            events.notify(self.client_id, self.end_method, self.summary(reason))
        self._remove()
        return True

    def install(self, located, kind):
        """Enter the module's table, put the probe on the located function and register the
        clean-up for when the client goes; on failure nothing stays."""
        self.table[self.id] = self
        try:
            self.install_id = instrument.install(self.client_id, located, self, kind)
        except BaseException:
            self.table.pop(self.id, None)
            raise
        self.cleanup_id = registry.add(self.client_id, kind, self._gone, located.label)
        self.remembered = located.code

    def started(self, id_key, stop_method, located, fields):
        """The start request's answer: the fields every stream has, then `fields`; the probe is
        armed once the client has it."""
        result = {
            id_key: self.id,
            "stream": events.stream(id_key, self.id, self.end_method, stop_method),
            "located": located.to_json(),
            "note": located.note,
            "engine": instrument.ENGINE,
        }
        result.update(fields)
        return events.Started(result, self._answered)

    def _answered(self):
        """Once the client has the answer: the probe is armed, and the file's text as it is now
        is kept for the diff of a reload after it is edited (reload's module is not imported
        before the first answer)."""
        self.arm()
        code = getattr(self, "remembered", None)
        if code is None:
            return
        try:
            from . import reload

            reload.remember(code)
        except Exception:
            pass

    def forget(self):
        """Leave the module's table (subclasses add what else must go with it)."""
        self.table.pop(self.id, None)

    def _remove(self):
        self.forget()
        if self.install_id is not None:
            instrument.uninstall(self.install_id)
        if self.cleanup_id is not None:
            registry.remove(self.cleanup_id)

    def _gone(self):
        """Registry undo: the client detached or died, or the agent shuts down (the registry
        removes the instrumentation itself)."""
        with self.lock:
            was_done = self.done
            self.done = True
            if not was_done:
                events.notify(self.client_id, self.end_method, self.summary("detached"))
        self.forget()


def stop_request(client_id, params, table, id_key):
    """A `*.stop` request: stop one stream of this client (params[id_key]), or all of them."""
    check_names(params, (id_key,))
    wanted = get_int(params, id_key)
    mine = [s for s in list(table.values()) if s.client_id == client_id]
    if wanted is not None:
        mine = [s for s in mine if s.id == wanted]
    return {"stopped": [s.summary("stopped") for s in mine if s.stop("stopped")]}
