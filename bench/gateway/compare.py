#!/usr/bin/env python3
"""Side-by-side table of two loadgen.py --json-out files (Cairn, then Swift), as markdown.

  python3 compare.py cairn.json swift.json

Prints, per (op, size, concurrency) cell: ops/s, MiB/s, p50, p99 for both systems and the
Cairn/Swift ratio of ops/s and MiB/s; then the CPU each side used (server process trees,
the load generator, the whole machine); then the issue's targets, cell by cell.
"""
import json
import math
import sys


def load(path):
    with open(path) as f:
        d = json.load(f)
    cells = {}
    put_conc = None
    for r in d["results"]:
        if r["op"] not in ("put", "get"):
            continue
        # loadgen runs a GET phase with min(concurrency, objects the PUT phase stored) workers;
        # file it under the PUT's concurrency and remember how many clients it really had.
        conc = r["concurrency"]
        if r["op"] == "put":
            put_conc = conc
        elif put_conc is not None:
            conc = put_conc
        r = dict(r, ran_at=r["concurrency"])
        cells[(r["op"], r["size"], conc)] = r
    return d["meta"], cells


def num(x, fmt="%.1f"):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return fmt % x


def ratio(a, b):
    if a is None or b is None or not b:
        return None
    return a / b


def cpu_ms_per_op(r, key):
    pct = r.get(key)
    if pct is None or not r.get("ok"):
        return None
    return pct / 100.0 * r["wall_s"] / r["ok"] * 1000.0


def human(n):
    for unit, div in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= div and n % div == 0:
            return "%d %s" % (n // div, unit)
    return "%d B" % n


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    cmeta, cairn = load(sys.argv[1])
    smeta, swift = load(sys.argv[2])
    order = {"put": 0, "get": 1}
    keys = sorted(set(cairn) | set(swift), key=lambda k: (k[1], k[2], order[k[0]]))

    print("| op | size | conc | Cairn ops/s | Swift ops/s | ops/s C/S | Cairn MiB/s | Swift MiB/s "
          "| MiB/s C/S | Cairn p50 ms | Swift p50 ms | Cairn p99 ms | Swift p99 ms | ok/req (err) Cairn | ok/req (err) Swift |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for k in keys:
        c, s = cairn.get(k, {}), swift.get(k, {})
        print("| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            k[0].upper(), human(k[1]), k[2],
            num(c.get("ops_per_s")), num(s.get("ops_per_s")),
            num(ratio(c.get("ops_per_s"), s.get("ops_per_s")), "%.2f×"),
            num(c.get("mib_per_s")), num(s.get("mib_per_s")),
            num(ratio(c.get("mib_per_s"), s.get("mib_per_s")), "%.2f×"),
            num(c.get("lat_ms_p50")), num(s.get("lat_ms_p50")),
            num(c.get("lat_ms_p99")), num(s.get("lat_ms_p99")),
            "%s/%s (%s)" % (c.get("ok", "—"), c.get("requested", "—"), c.get("errors", "—")),
            "%s/%s (%s)" % (s.get("ok", "—"), s.get("requested", "—"), s.get("errors", "—")),
        ))

    for name, cells in (("Cairn", cairn), ("Swift", swift)):
        for k in keys:
            r = cells.get(k)
            if r and r["ran_at"] != k[2]:
                print("\n%s %s %s c%d: ran with %d clients only (the PUT phase stored %d objects "
                      "before --max-seconds)." % (name, k[0].upper(), human(k[1]), k[2], r["ran_at"], r["requested"]))
            if r and (r.get("first_error") or r.get("timed_out")):
                print("\n%s %s %s c%d: %s%s" % (
                    name, k[0].upper(), human(k[1]), k[2],
                    "stopped at --max-seconds after %d of %d requests. " % (r["ok"] + r["errors"], r["requested"])
                    if r.get("timed_out") else "",
                    "first error: %s" % r["first_error"] if r.get("first_error") else ""))

    print()
    print("CPU during each phase (100%% = one core; the machine has %s): server = the system's process "
          "tree, client = the load generator (s3load's process, or loadgen.py's worker processes), "
          "machine = everything on the box." % cmeta.get("cpus"))
    print()
    print("| op | size | conc | Cairn server % | Cairn client % | machine % | Cairn server ms/op | client ms/op "
          "| Swift server % | Swift client % | machine % | Swift server ms/op | client ms/op |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for k in keys:
        c, s = cairn.get(k, {}), swift.get(k, {})
        print("| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            k[0].upper(), human(k[1]), k[2],
            num(c.get("server_cpu_pct"), "%.0f"), num(c.get("client_cpu_pct"), "%.0f"),
            num(c.get("machine_cpu_pct"), "%.0f"),
            num(cpu_ms_per_op(c, "server_cpu_pct"), "%.2f"), num(cpu_ms_per_op(c, "client_cpu_pct"), "%.2f"),
            num(s.get("server_cpu_pct"), "%.0f"), num(s.get("client_cpu_pct"), "%.0f"),
            num(s.get("machine_cpu_pct"), "%.0f"),
            num(cpu_ms_per_op(s, "server_cpu_pct"), "%.2f"), num(cpu_ms_per_op(s, "client_cpu_pct"), "%.2f"),
        ))

    print()
    print("Targets:")
    print()
    misses = []

    def check(label, ok, detail):
        print("- %s %s: %s" % ("MET " if ok else "MISS", label, detail))
        if not ok:
            misses.append(label)

    for k in keys:
        c, s = cairn.get(k), swift.get(k)
        if not c or not s:
            continue
        cell = "%s %s c%d" % (k[0].upper(), human(k[1]), k[2])
        if k[1] == 4096:
            r = ratio(c["ops_per_s"], s["ops_per_s"])
            check("%s ops/s ≥ 10× Swift" % cell, r is not None and r >= 10, num(r, "%.2f×"))
        else:
            r = ratio(c["mib_per_s"], s["mib_per_s"])
            check("%s MiB/s ≥ 3× Swift" % cell, r is not None and r >= 3, num(r, "%.2f×"))
        ok = c["lat_ms_p99"] < s["lat_ms_p99"] if c["ok"] and s["ok"] else False
        check("%s p99 below Swift" % cell, ok, "%s vs %s ms" % (num(c["lat_ms_p99"]), num(s["lat_ms_p99"])))
    g = cairn.get(("get", 64 * 2 ** 20, 16))
    if g:
        check("GET 64 MiB c16 ≥ 1 GiB/s", g["mib_per_s"] >= 1024, "%s MiB/s" % num(g["mib_per_s"]))
    errs = sum(r["errors"] for r in cairn.values())
    check("no failed requests (Cairn)", errs == 0, "%d errors" % errs)
    print()
    print("%d target(s) missed." % len(misses))


if __name__ == "__main__":
    main()
