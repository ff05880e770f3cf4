"""An LSP client for the tests: starts the real fp-lsp and speaks LSP 3.17 to it over pipes, the
way an editor does. A reader thread takes every message off its stdout: responses go to the
request that waits for them, the server's own requests are answered (codeLens/refresh,
workDoneProgress/create) and kept, notifications are kept in order (publishDiagnostics is also
kept per document). Every wait is bounded and fails with what was received so far.
"""

import json
import os
import subprocess
import threading
import time

import pytest


class LspError(Exception):
    def __init__(self, error):
        Exception.__init__(self, "%s (%s)" % (error.get("message"), error.get("code")))
        self.error = error
        self.code = error.get("code")


class Lsp:
    def __init__(self, exe, args=(), env=None):
        self.proc = subprocess.Popen(
            [exe] + list(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        self.next_id = 0
        self.lock = threading.Condition()
        self.responses = {}
        self.notifications = []  # (method, params), in order
        self.server_requests = []  # (method, params)
        self.diagnostics = {}  # uri -> latest list
        self.stderr = []
        self.closed = False
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    # -- the wire -------------------------------------------------------------------------
    def send_raw(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, msg):
        body = json.dumps(msg).encode()
        self.send_raw(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def _read_stderr(self):
        for line in iter(self.proc.stderr.readline, b""):
            self.stderr.append(line.decode(errors="replace"))

    def _read(self):
        out = self.proc.stdout
        try:
            while True:
                length = None
                while True:
                    line = out.readline()
                    if not line:
                        return
                    line = line.strip()
                    if not line:
                        break
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                body = out.read(length)
                self._on_message(json.loads(body))
        finally:
            with self.lock:
                self.closed = True
                self.lock.notify_all()

    def _on_message(self, msg):
        with self.lock:
            if "method" in msg and "id" in msg:
                self.server_requests.append((msg["method"], msg.get("params")))
                try:
                    self.send({"jsonrpc": "2.0", "id": msg["id"], "result": None})
                except (BrokenPipeError, ValueError):
                    pass  # the server was stopped meanwhile (the test's end)
            elif "method" in msg:
                self.notifications.append((msg["method"], msg.get("params")))
                if msg["method"] == "textDocument/publishDiagnostics":
                    self.diagnostics[msg["params"]["uri"]] = msg["params"]["diagnostics"]
            else:
                self.responses[msg.get("id")] = msg
            self.lock.notify_all()

    def describe(self):
        return "notifications: %s\nserver requests: %s\nstderr: %s" % (
            json.dumps(self.notifications[-20:])[-4000:],
            self.server_requests[-10:],
            "".join(self.stderr)[-12000:],
        )

    # -- requests -------------------------------------------------------------------------
    def request_async(self, method, params=None):
        with self.lock:
            self.next_id += 1
            rid = self.next_id
        msg = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        return rid

    def wait_response(self, rid, timeout=30):
        deadline = time.monotonic() + timeout
        with self.lock:
            while rid not in self.responses:
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    pytest.fail(
                        "no answer to request %s within %ss (closed: %s)\n%s"
                        % (rid, timeout, self.closed, self.describe())
                    )
                self.lock.wait(min(left, 0.5))
            return self.responses.pop(rid)

    def request(self, method, params=None, timeout=30):
        msg = self.wait_response(self.request_async(method, params), timeout)
        if "error" in msg:
            raise LspError(msg["error"])
        return msg.get("result")

    def notify(self, method, params=None):
        msg = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)

    def execute(self, command, arg=None, timeout=30):
        return self.request(
            "workspace/executeCommand", {"command": command, "arguments": [] if arg is None else [arg]}, timeout
        )

    # -- waiting for what the server pushes --------------------------------------------------
    def wait_for(self, predicate, timeout, what):
        """Polls predicate() (under the lock) until it returns something true."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail("timed out after %ss waiting for %s\n%s" % (timeout, what, self.describe()))
                self.lock.wait(min(left, 0.2))

    def count(self, method):
        with self.lock:
            return sum(1 for m, _ in self.notifications if m == method) + sum(
                1 for m, _ in self.server_requests if m == method
            )

    # -- an editor's moves --------------------------------------------------------------------
    def initialize(self, capabilities=None, options=None):
        caps = (
            capabilities
            if capabilities is not None
            else {
                "general": {"positionEncodings": ["utf-16"]},
                "workspace": {"codeLens": {"refreshSupport": True}},
                "window": {"workDoneProgress": True, "showDocument": {"support": True}},
            }
        )
        params = {"processId": os.getpid(), "rootUri": None, "capabilities": caps}
        if options is not None:
            params["initializationOptions"] = options
        result = self.request("initialize", params)
        self.notify("initialized", {})
        return result

    def open(self, path, text=None, version=1):
        uri = "file://" + path
        if text is None:
            with open(path) as f:
                text = f.read()
        self.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": "python", "version": version, "text": text}},
        )
        return uri

    def close(self, uri):
        self.notify("textDocument/didClose", {"textDocument": {"uri": uri}})

    def change(self, uri, version, changes):
        self.notify(
            "textDocument/didChange", {"textDocument": {"uri": uri, "version": version}, "contentChanges": changes}
        )

    def lenses(self, uri, resolve=True):
        lenses = self.request("textDocument/codeLens", {"textDocument": {"uri": uri}})
        if resolve:
            lenses = [self.request("codeLens/resolve", l) for l in lenses]
        return lenses

    def lenses_when(self, uri, predicate, timeout, what):
        """Asks for the lenses until predicate(lenses) holds (they fill in as the server learns
        what the process runs; it asks the client to refresh then)."""
        deadline = time.monotonic() + timeout
        while True:
            lenses = self.lenses(uri)
            if predicate(lenses):
                return lenses
            if time.monotonic() > deadline:
                pytest.fail(
                    "timed out after %ss waiting for %s; last lenses: %s\n%s"
                    % (timeout, what, json.dumps(lenses)[-3000:], self.describe())
                )
            refreshes = self.count("workspace/codeLens/refresh")
            try:
                self.wait_for(
                    lambda: self.count("workspace/codeLens/refresh") > refreshes,
                    min(2.0, max(0.1, deadline - time.monotonic())),
                    "a lens refresh",
                )
            except pytest.fail.Exception:
                pass  # ask again anyway: the client would, on its own schedule

    def shutdown(self, timeout=15):
        self.request("shutdown", timeout=timeout)
        self.notify("exit")
        return self.wait_exit(timeout)

    def wait_exit(self, timeout=15):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail("fp-lsp did not exit within %ss\n%s" % (timeout, self.describe()))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
