"""A fake agent, as a hostile user would run one: listens on a Unix socket at the path it is given
and answers fp's requests with whatever it likes, logging every connection and request.

Usage: fake_agent.py SOCKET LOG [--dir-mode OCTAL] [--symlink-dir LINK]
  SOCKET  where to listen; its directory is created (mode --dir-mode, default 0777) when missing
  LOG     one JSON line per event: {"event": "listening"|"connection"|"request", ...}
  --symlink-dir LINK   also make LINK a symlink to the socket's directory
  --status-pid-ns N / --status-start-time T   what `status` claims (forging the confirmation)
It never exits by itself; the test kills it by its pid.
"""

import json
import os
import socket
import sys
import threading


def log(path, **event):
    with open(path, "a") as f:
        f.write(json.dumps(event) + "\n")


def read_frame(conn, buf):
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            return None, buf
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None, rest
        rest += chunk
    return rest[:length], rest[length:]


def answer(conn, msg):
    body = json.dumps(msg).encode()
    conn.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)


def serve(conn, logpath, claims):
    buf = b""
    while True:
        body, buf = read_frame(conn, buf)
        if body is None:
            return
        req = json.loads(body)
        log(logpath, event="request", method=req.get("method"), params=req.get("params"))
        method = req.get("method")
        if method == "ping":
            result = {"pong": True}
        elif method == "status":
            result = {
                "pid": os.getpid(),
                "agent_version": "0.1.0",
                "python_version": "3.11.2",
                "clients": 1,
                "uptime_s": 1.0,
                "python_ready": True,
                "gil_wait_ms": 0,
                "pending": 0,
            }
            result.update(claims)
        elif method == "getglobal":
            result = {"value": {"type": "str", "repr": "'PWNED by a fake agent'"}}
        elif method == "console.open":
            result = {"session": 1, "banner": "fake console"}
        elif method == "console.eval":
            result = {"output": "", "more": False}
        else:
            result = {}
        if "id" in req:
            answer(conn, {"jsonrpc": "2.0", "id": req["id"], "result": result})


def main():
    path, logpath = sys.argv[1], sys.argv[2]
    opts = sys.argv[3:]
    dir_mode = 0o777
    link = None
    claims = {}
    while opts:
        name, value = opts.pop(0), opts.pop(0)
        if name == "--dir-mode":
            dir_mode = int(value, 8)
        elif name == "--symlink-dir":
            link = value
        elif name == "--status-pid-ns":
            claims["pid_ns"] = int(value)
        elif name == "--status-start-time":
            claims["start_time"] = int(value)
    d = os.path.dirname(path)
    if not os.path.isdir(d):
        os.mkdir(d)
        os.chmod(d, dir_mode)
    if link:
        os.symlink(d, link)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    os.chmod(path, 0o777)
    s.listen(16)
    log(logpath, event="listening", pid=os.getpid(), uid=os.geteuid())
    while True:
        conn, _ = s.accept()
        log(logpath, event="connection")
        threading.Thread(target=serve, args=(conn, logpath, claims), daemon=True).start()


if __name__ == "__main__":
    main()
