"""The workloads of bench/trace_overhead.py, each a function of about 10 ms called back to back;
the loop times each call itself.

- service (serve): a request handler: an SQL query on an in-memory sqlite3 database (C),
  Python post-processing of its rows (helpers, a generator, a sort key), then json and hashlib
  (C) on the response. Python calls and C calls mixed as in a web service.
- dense (handle_request): pure Python business logic, a call every ~0.3 us: the worst case
  for any tracer that sees every call.

Usage: traced_bench.py READY [WINDOW_S] [SIZE] [WORKLOAD] [alternate]
Progress: every WINDOW_S seconds (default 0.5) one line
    "window calls=N med_us=M cpu_us=C" (median wall time and median thread CPU time of the
    calls of that window, microseconds, measured around the call, so whatever a tracer adds
    in the call's entry and exit counts).
With "alternate", every call gets a second argument, True and False in turn by blocks of
ALTERNATE_BLOCK calls (a tracer filtering on args[1] traces every other block), and each line
also has "on_cpu_us=A off_cpu_us=B": the median thread CPU time of the calls of each kind.
The module is also imported as traced_bench (its directory is sys.path[0]), and the loop calls
traced_bench.serve or traced_bench.handle_request: that is what the bench traces.
"""
import hashlib
import json
import re
import sqlite3
import sys
import time

import fptarget

EMAIL = re.compile(r"^([\w.]+)@([\w-]+)\.(\w+)$")
RECORDS = []


def make_records(n):
    out = []
    for i in range(n):
        out.append({
            "id": i,
            "name": "  User %d Name " % i,
            "email": "user.%d@example-%d.com" % (i, i % 7),
            "values": [((i * 7919 + k * 104729) % 1000) / 10.0 for k in range(12)],
            "tags": ["t%d" % (k % 5) for k in range(i % 4 + 1)],
        })
    return out


def clean_name(text):
    return " ".join(part.capitalize() for part in text.split())


def domain_of(email):
    match = EMAIL.match(email)
    return match.group(2) if match else None


def score(values):
    total = 0.0
    for v in values:
        total += v * v
    return round(total / len(values), 3)


def normalize(record):
    return {
        "id": record["id"],
        "name": clean_name(record["name"]),
        "domain": domain_of(record["email"]),
        "score": score(record["values"]),
        "tags": sorted(set(record["tags"])),
    }


def by_domain(rows):
    groups = {}
    for row in rows:
        groups.setdefault(row["domain"], []).append(row)
    return groups


def summarize(groups):
    for domain, rows in groups.items():
        rows.sort(key=lambda r: (-r["score"], r["id"]))
        yield {"domain": domain, "count": len(rows), "top": [r["id"] for r in rows[:3]],
               "mean": sum(r["score"] for r in rows) / len(rows)}


def handle_request(records, flag=None):
    rows = [normalize(r) for r in records]
    summary = list(summarize(by_domain(rows)))
    body = json.dumps({"rows": rows, "summary": summary}, sort_keys=True)
    etag = hashlib.sha256(body.encode("utf-8")).hexdigest()
    check = json.loads(body)
    return len(check["rows"]), etag


# --- service: sqlite3 + Python + json/hashlib

STATUSES = ("new", "paid", "shipped", "returned")
DB = []  # [connection], made by setup_db


def setup_db(orders):
    db = sqlite3.connect(":memory:", check_same_thread=False)
    db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, user INTEGER, amount REAL, status TEXT, "
               "created INTEGER, note TEXT)")
    db.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)",
                   [(i, i % 97, (i * 7919 % 10000) / 100.0, STATUSES[i % 4], i * 13 % 100000,
                     "order %d for user %d" % (i, i % 97)) for i in range(orders)])
    db.execute("CREATE INDEX by_user ON orders (user)")
    db.commit()
    DB[:] = [db]


def fetch_orders(users):
    marks = ",".join("?" * len(users))
    cur = DB[0].execute("SELECT id, user, amount, status, created, note FROM orders WHERE user IN (%s) "
                        "ORDER BY created" % marks, users)
    return cur.fetchall()


def money(value):
    return "%.2f" % value


def order_view(row):
    oid, user, amount, status, created, note = row
    return {"id": oid, "user": user, "amount": money(amount), "status": status.upper(),
            "note": note.title(), "late": created > 50000}


def totals(views):
    per_user = {}
    for v in views:
        t = per_user.setdefault(v["user"], [0, 0.0])
        t[0] += 1
        t[1] += float(v["amount"])
    return dict((user, {"orders": n, "total": money(amount)}) for user, (n, amount) in per_user.items())


def stats_by_status(since):
    cur = DB[0].execute("SELECT status, COUNT(*), SUM(amount), AVG(amount) FROM orders WHERE created > ? "
                        "AND note LIKE ? GROUP BY status", (since, "%user 1%"))
    return dict((status, {"orders": n, "sum": money(total), "mean": money(mean)}) for status, n, total, mean in cur)


def serve(users, flag=None):
    stats = stats_by_status(1000)
    rows = fetch_orders(users)
    views = [order_view(r) for r in rows if r[3] != "returned"]
    views.sort(key=lambda v: (v["user"], v["id"]))
    body = json.dumps({"orders": views, "totals": totals(views), "stats": stats}, sort_keys=True)
    return len(body), hashlib.sha256(body.encode("utf-8")).hexdigest()


def main():
    window = fptarget.arg(2, 0.5)
    size = int(fptarget.arg(3, 0))
    workload = sys.argv[4] if len(sys.argv) > 4 else "service"
    import traced_bench  # the module the bench traces (this file, imported under its name)

    if workload == "service":
        traced_bench.setup_db(60000)
        arg = list(range(size or 2))
        call = traced_bench.serve
    else:
        arg = traced_bench.make_records(size or 1500)
        call = traced_bench.handle_request
    alternate = len(sys.argv) > 5 and sys.argv[5] == "alternate"
    for _ in range(20):  # warm-up
        call(arg)
    fptarget.announce(sys.argv[1], workload=workload, size=len(arg))
    clock, cpu = time.perf_counter, time.thread_time
    n = 0
    while True:
        walls, cpus, by_flag = [], [], ([], [])
        end = clock() + window
        while True:
            flag = alternate and (n // ALTERNATE_BLOCK) % 2 == 0
            n += 1
            t0, c0 = clock(), cpu()
            if alternate:
                call(arg, flag)
            else:
                call(arg)
            t1, c1 = clock(), cpu()
            walls.append(t1 - t0)
            cpus.append(c1 - c0)
            by_flag[flag].append(c1 - c0)
            if t1 >= end:
                break
        line = "window calls=%d med_us=%.1f cpu_us=%.1f" % (len(walls), _median(walls) * 1e6, _median(cpus) * 1e6)
        if alternate and by_flag[0] and by_flag[1]:
            line += " on_cpu_us=%.1f off_cpu_us=%.1f" % (_median(by_flag[1]) * 1e6, _median(by_flag[0]) * 1e6)
        fptarget.report(line)


ALTERNATE_BLOCK = 5


def _median(values):
    values = sorted(values)
    return values[len(values) // 2]


if __name__ == "__main__":
    main()
