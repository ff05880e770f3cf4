"""A bare client of the agent's socket for tests that must send what fp never would (huge or
malformed requests, connections abandoned mid-request): framing and JSON by hand."""

import json
import select
import socket
import time

import pytest


class RawClient:
    def __init__(self, path, timeout=10):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.next_id = 1

    def send_body(self, body):
        if isinstance(body, str):
            body = body.encode()
        self.sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def request(self, method, params=None):
        """Sends a request; returns its id."""
        rid = self.next_id
        self.next_id += 1
        msg = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        self.send_body(json.dumps(msg))
        return rid

    def read(self, timeout=10):
        """The next message, or None at end of file."""
        deadline = time.monotonic() + timeout
        while True:
            head, sep, rest = self.buf.partition(b"\r\n\r\n")
            if sep:
                length = int(head.split(b":")[1])
                if len(rest) >= length:
                    self.buf = rest[length:]
                    return json.loads(rest[:length])
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail("no message from the agent within %ss (have %r)" % (timeout, self.buf[:200]))
            r, _, _ = select.select([self.sock], [], [], left)
            if r:
                try:
                    chunk = self.sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    return None
                self.buf += chunk

    def call(self, method, params=None, timeout=10):
        rid = self.request(method, params)
        while True:
            msg = self.read(timeout)
            assert msg is not None, "the agent closed the connection instead of answering %s" % method
            if msg.get("id") == rid:
                return msg

    def close(self):
        self.sock.close()
