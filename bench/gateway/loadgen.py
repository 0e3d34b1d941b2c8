#!/usr/bin/env python3
# Copied unchanged (apart from this comment) from /work/shared/peers/swift/loadgen.py, the
# shared peer tool that came with the OpenStack Swift peer; bench/gateway/run.sh drives both
# Cairn and Swift with this one copy so the two systems see the same client.
"""Small, bounded S3 load generator (boto3), usable against any S3 endpoint.

For every object size and every concurrency level it runs a PUT phase (N new
objects) then a GET phase (reads them all back, whole body), and reports
ops/s, MiB/s and latency percentiles.  Objects (and the bucket, if this run
created it) are deleted at the end.  Workers are separate processes (one boto3
client each), so the client is not capped by the GIL.

  python3 loadgen.py --endpoint http://127.0.0.1:8080 \
      --access-key test:tester --secret-key testing \
      --sizes 4KiB:2000,1MiB:500,64MiB:16 --concurrency 1,16 \
      --cpu-pids-dir "$SWIFT_ANCHOR_DIR/pids" --json-out results.json

Defaults come from env: S3_ENDPOINT (or S3_HOST/S3_PORT), S3_MAIN_ACCESS_KEY,
S3_MAIN_SECRET_KEY, S3_REGION.  Every phase is bounded by --max-seconds: once
it is over, workers stop issuing requests (the report says how many ran).
"""
import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
import uuid

UNITS = {"": 1, "b": 1, "kib": 1024, "k": 1024, "kb": 1000, "mib": 1024 ** 2, "m": 1024 ** 2,
         "mb": 1000 ** 2, "gib": 1024 ** 3, "g": 1024 ** 3, "gb": 1000 ** 3}


def parse_size(s):
    s = s.strip().lower()
    i = len(s)
    while i > 0 and not s[i - 1].isdigit():
        i -= 1
    return int(float(s[:i]) * UNITS[s[i:]])


def human(n):
    for unit, div in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= div and n % div == 0:
            return "%d%s" % (n // div, unit)
    return "%dB" % n


def make_client(args, pool=2):
    import boto3
    from botocore.config import Config
    kw = dict(s3={"addressing_style": "path"}, retries={"max_attempts": 1, "mode": "standard"},
              max_pool_connections=pool, connect_timeout=10, read_timeout=args.op_timeout,
              signature_version="s3v4")
    try:  # botocore >= 1.36: don't compute CRC32 on every PUT unless required
        cfg = Config(request_checksum_calculation="when_required",
                     response_checksum_validation="when_required", **kw)
    except TypeError:
        cfg = Config(**kw)
    return boto3.client("s3", endpoint_url=args.endpoint, region_name=args.region,
                        aws_access_key_id=args.access_key, aws_secret_access_key=args.secret_key,
                        config=cfg)


# ----------------------------------------------------------------- CPU sampling
def _stat(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(")") + 2:].split()
    # rest[0]=state, rest[1]=ppid, utime=rest[11], stime=rest[12] (fields 14,15)
    return int(rest[1]), int(rest[11]) + int(rest[12])


def tree_cpu_ticks(roots):
    """utime+stime ticks of the given PIDs and all their descendants."""
    if not roots:
        return 0
    table = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(int(d))
            if st:
                table[int(d)] = st
    kids = {}
    for pid, (ppid, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    seen, todo, total = set(), list(roots), 0
    while todo and len(seen) < 100000:
        p = todo.pop()
        if p in seen or p not in table:
            continue
        seen.add(p)
        total += table[p][1]
        todo.extend(kids.get(p, []))
    return total


def machine_cpu():
    """(busy, total) jiffies over all CPUs, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            vals = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0, 0
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return sum(vals) - idle, sum(vals)


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return "?"


def read_pids(spec):
    pids = []
    if not spec:
        return pids
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if os.path.isdir(part):
            for fn in sorted(os.listdir(part)):
                if fn.endswith(".pid"):
                    with open(os.path.join(part, fn)) as f:
                        pids.append(int(f.read().strip()))
        else:
            pids.append(int(part))
    return pids


# ----------------------------------------------------------------------- worker
def worker(args, op, bucket, keys, size, deadline_v, start_evt, q):
    import random
    client = make_client(args)
    payload = None
    if op == "put":
        rnd = random.Random(size)
        payload = rnd.randbytes(size) if hasattr(rnd, "randbytes") else os.urandom(size)
    lat, errs, nbytes, first_err, done = [], 0, 0, None, []
    start_evt.wait()
    deadline = deadline_v.value
    for key in keys:
        if time.monotonic() > deadline:
            break
        t0 = time.perf_counter()
        try:
            if op == "put":
                client.put_object(Bucket=bucket, Key=key, Body=payload)
                nbytes += size
            elif op == "get":
                body = client.get_object(Bucket=bucket, Key=key)["Body"]
                n = 0
                while True:
                    chunk = body.read(1 << 20)
                    if not chunk:
                        break
                    n += len(chunk)
                if n != size:
                    raise IOError("short read %d != %d" % (n, size))
                nbytes += n
            elif op == "delete":
                client.delete_object(Bucket=bucket, Key=key)
            lat.append(time.perf_counter() - t0)
            done.append(key)
        except Exception as e:  # noqa: BLE001 - count, keep going
            errs += 1
            if first_err is None:
                first_err = repr(e)[:300]
    q.put((lat, errs, nbytes, first_err, done if op == "put" else []))


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    k = (len(sorted_vals) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def run_phase(args, op, bucket, keys, size, conc, cpu_pids):
    ctx = mp.get_context("fork")
    conc = max(1, min(conc, len(keys)))
    shards = [keys[i::conc] for i in range(conc)]
    q = ctx.Queue()
    start_evt = ctx.Event()
    deadline_v = ctx.Value("d", 0.0)
    procs = [ctx.Process(target=worker, args=(args, op, bucket, s, size, deadline_v, start_evt, q))
             for s in shards]
    for p in procs:
        p.start()
    time.sleep(min(2.0, 0.2 + 0.05 * conc))  # let workers import boto3 and build clients
    srv0 = tree_cpu_ticks(cpu_pids)
    cli0 = sum(tree_cpu_ticks([p.pid]) for p in procs)
    m0 = machine_cpu()
    t0 = time.perf_counter()
    deadline_v.value = time.monotonic() + args.max_seconds
    start_evt.set()
    results = []
    hard_end = time.monotonic() + args.max_seconds + args.op_timeout + 60
    while len(results) < len(procs) and time.monotonic() < hard_end:
        try:
            results.append(q.get(timeout=1.0))
        except Exception:  # queue.Empty
            pass
    wall = time.perf_counter() - t0
    srv1 = tree_cpu_ticks(cpu_pids)
    cli1 = sum(tree_cpu_ticks([p.pid]) for p in procs)
    m1 = machine_cpu()
    for p in procs:
        p.join(timeout=5)
        if p.is_alive():
            p.terminate()
            p.join(timeout=5)
    lat = sorted(x for r in results for x in r[0])
    errs = sum(r[1] for r in results)
    nbytes = sum(r[2] for r in results)
    first_err = next((r[3] for r in results if r[3]), None)
    done_keys = [k for r in results for k in r[4]]
    hz = os.sysconf("SC_CLK_TCK")
    ok = len(lat)
    return {
        "op": op, "size": size, "size_h": human(size), "concurrency": conc,
        "requested": len(keys), "ok": ok, "errors": errs, "wall_s": round(wall, 3),
        "ops_per_s": round(ok / wall, 2) if wall else None,
        "mib_per_s": round(nbytes / wall / 2 ** 20, 2) if wall else None,
        "lat_ms_p50": round(pct(lat, 50) * 1000, 2), "lat_ms_p99": round(pct(lat, 99) * 1000, 2),
        "lat_ms_mean": round(statistics.fmean(lat) * 1000, 2) if lat else None,
        "lat_ms_max": round(lat[-1] * 1000, 2) if lat else None,
        "server_cpu_pct": round(100.0 * (srv1 - srv0) / hz / wall, 1) if cpu_pids and wall else None,
        "client_cpu_pct": round(100.0 * (cli1 - cli0) / hz / wall, 1) if wall else None,
        # whole machine, all CPUs: 100 % = one core busy (so 2 cores = 200 %)
        "machine_cpu_pct": round(100.0 * (os.cpu_count() or 1) * (m1[0] - m0[0]) / (m1[1] - m0[1]), 1)
        if m1[1] > m0[1] else None,
        "loadavg_1m_end": loadavg(),
        "first_error": first_err,
        "timed_out": ok + errs < len(keys),
    }, done_keys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    env = os.environ
    default_ep = env.get("S3_ENDPOINT") or "http://%s:%s" % (env.get("S3_HOST", "127.0.0.1"), env.get("S3_PORT", "8080"))
    ap.add_argument("--endpoint", default=default_ep)
    ap.add_argument("--access-key", default=env.get("S3_MAIN_ACCESS_KEY", "test:tester"))
    ap.add_argument("--secret-key", default=env.get("S3_MAIN_SECRET_KEY", "testing"))
    ap.add_argument("--region", default=env.get("S3_REGION", "us-east-1"))
    ap.add_argument("--bucket", default=None, help="existing or new bucket (default: loadgen-<random>, created and removed)")
    ap.add_argument("--sizes", default="4KiB:2000,1MiB:500,64MiB:16", help="SIZE:COUNT,...")
    ap.add_argument("--concurrency", default="1,16")
    ap.add_argument("--ops", default="put,get")
    ap.add_argument("--max-seconds", type=float, default=120.0, help="bound on each phase")
    ap.add_argument("--op-timeout", type=float, default=120.0, help="per-request read timeout")
    ap.add_argument("--cpu-pids", default="", help="PIDs (comma list) or dirs of *.pid files; their process trees' CPU is reported")
    ap.add_argument("--cpu-pids-dir", default="", help="alias of --cpu-pids for one dir")
    ap.add_argument("--json-out", default="")
    ap.add_argument("--keep", action="store_true", help="do not delete objects/bucket")
    ap.add_argument("--label", default="")
    args = ap.parse_args()

    sizes = []
    for part in args.sizes.split(","):
        s, n = part.split(":")
        sizes.append((parse_size(s), int(n)))
    concs = [int(c) for c in args.concurrency.split(",")]
    ops = [o.strip() for o in args.ops.split(",")]
    cpu_pids = read_pids(",".join(x for x in (args.cpu_pids, args.cpu_pids_dir) if x))

    client = make_client(args)
    bucket = args.bucket or "loadgen-" + uuid.uuid4().hex[:12]
    created = False
    try:
        client.head_bucket(Bucket=bucket)
    except Exception:
        client.create_bucket(Bucket=bucket)
        created = True

    import boto3
    import botocore
    meta = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "endpoint": args.endpoint,
            "bucket": bucket, "host": platform.node(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "boto3": boto3.__version__, "botocore": botocore.__version__,
            "label": args.label, "cpu_pids": cpu_pids, "max_seconds": args.max_seconds,
            "loadavg_start": loadavg()}
    print("# loadgen %s" % json.dumps(meta), flush=True)
    hdr = ("| op | size | conc | ok/req | err | wall s | ops/s | MiB/s | p50 ms | p99 ms "
           "| server CPU % | client CPU % | machine CPU % | load1 |")
    print(hdr)
    print("|" + "---|" * 14, flush=True)
    rows = []
    t_all = time.monotonic()
    for size, count in sizes:
        for conc in concs:
            keys = ["%s/c%d/obj-%06d" % (human(size), conc, i) for i in range(count)]
            written = []
            for op in ops:
                if op == "get" and "put" in ops:
                    keys_now = written  # read back only what the PUT phase stored
                else:
                    keys_now = keys
                if not keys_now:
                    continue
                r, done = run_phase(args, op, bucket, keys_now, size, conc, cpu_pids)
                rows.append(r)
                print("| %s | %s | %d | %d/%d | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %s | %s | %s | %s |" % (
                    r["op"].upper(), r["size_h"], r["concurrency"], r["ok"], r["requested"], r["errors"],
                    r["wall_s"], r["ops_per_s"], r["mib_per_s"], r["lat_ms_p50"], r["lat_ms_p99"],
                    r["server_cpu_pct"], r["client_cpu_pct"], r["machine_cpu_pct"], r["loadavg_1m_end"]),
                      flush=True)
                if r["first_error"]:
                    print("  first error: %s" % r["first_error"], file=sys.stderr, flush=True)
                if op == "put":
                    written = done
            if not args.keep and written:
                run_phase(args, "delete", bucket, written, 0, 16, [])
    if created and not args.keep:
        try:
            client.delete_bucket(Bucket=bucket)
        except Exception as e:  # noqa: BLE001
            print("could not delete bucket %s: %r" % (bucket, e), file=sys.stderr)
    meta["total_s"] = round(time.monotonic() - t_all, 1)
    meta["loadavg_end"] = loadavg()
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"meta": meta, "results": rows}, f, indent=1)
    errors = sum(r["errors"] for r in rows)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
