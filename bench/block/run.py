#!/usr/bin/env python3
"""Block benchmark, side by side in one run: Cairn's NBD export on the 3-node all-in-one cluster
(`cairn up`, 3 replicas) against the single-machine peers serving a raw file on the same disk:
`qemu-nbd --cache=none --aio=native -e 16` and `nbdkit file` (../shared/peers/nbd/serve.sh).

    python3 bench/block/run.py                 # build, run all three, print a markdown report

Per system, in this order, with fio's nbd engine (one job, one connection):
  seq write 1 MiB QD4 over the whole region (fills it, so every read below hits data),
  4 KiB random read QD1 and QD32, 1 MiB sequential read QD4,
  4 KiB random write QD1 and QD32 (time-based, RUNTIME s each after a 2 s ramp),
then nbdcopy of COPY_GIB GiB of random bytes from a local file into a fresh export and back
out to `null:`. Every step starts after `sync` (no step pays for an earlier one's writeback).
Ratios are Cairn / peer (higher is better for IOPS and MiB/s, lower for latency).

Environment: RUNTIME (default 15), REGION_GIB (1), COPY_GIB (2), BENCH_DIR (default /tmp),
CARGO_TARGET_DIR (default ~/.cache/cairn-target-bench), KEEP=1 keeps the work directory.
Everything started here is stopped by PID on exit; every step is bounded by a timeout.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PEERS = (ROOT / ".." / "shared" / "peers" / "nbd" / "serve.sh").resolve()
RUNTIME = int(os.environ.get("RUNTIME", "15"))
REGION_GIB = int(os.environ.get("REGION_GIB", "1"))
COPY_GIB = int(os.environ.get("COPY_GIB", "2"))
STEP_TIMEOUT = 600


def log(msg):
    print(f"[block-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, limit=60):
    deadline = time.time() + limit
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{what} not listening on {port} within {limit} s")


def stop(proc):
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def fio(uri, rw, bs, depth, timed, size_gib):
    args = [
        "fio", "--name=bench", "--ioengine=nbd", f"--uri={uri}", f"--rw={rw}", f"--bs={bs}",
        f"--iodepth={depth}", f"--size={size_gib}g", "--output-format=json",
        "--verify_state_save=0", "--randrepeat=0",
    ]
    if timed:
        args += ["--time_based", f"--runtime={RUNTIME}", "--ramp_time=2"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=STEP_TIMEOUT)
    if out.returncode != 0:
        raise SystemExit(f"fio {rw} {bs} QD{depth} on {uri} failed:\n{out.stdout}\n{out.stderr}")
    # fio may print engine notices before its JSON.
    job = json.loads(out.stdout[out.stdout.index("{"):])["jobs"][0]
    side = job["read"] if "read" in rw else job["write"]
    pct = side["clat_ns"].get("percentile", {})
    return {
        "iops": side["iops"],
        "mib_s": side["bw"] / 1024,
        "lat_mean_us": side["lat_ns"]["mean"] / 1000,
        "clat_p50_us": pct.get("50.000000", 0) / 1000,
        "clat_p99_us": pct.get("99.000000", 0) / 1000,
    }


def nbdcopy(src, dst):
    t = time.monotonic()
    out = subprocess.run(["nbdcopy", src, dst], capture_output=True, text=True,
                         timeout=STEP_TIMEOUT)
    if out.returncode != 0:
        raise SystemExit(f"nbdcopy {src} {dst} failed:\n{out.stderr}")
    return COPY_GIB * 1024 / (time.monotonic() - t)


def settle():
    """Writes back every dirty page before a step, so no step pays for an earlier one's
    writeback: a server that writes through the page cache (Cairn's read replica) would
    otherwise start its next step with the disk busy, and one using O_DIRECT (qemu-nbd) never
    does."""
    os.sync()


def measure(name, fio_uri, copy_uri, source):
    log(f"{name}: sequential 1 MiB write over {REGION_GIB} GiB")
    settle()
    r = {"seq_write": fio(fio_uri, "write", "1m", 4, False, REGION_GIB)}
    for key, rw, bs, depth in [
        ("rand_read_qd1", "randread", "4k", 1),
        ("rand_read_qd32", "randread", "4k", 32),
        ("seq_read", "read", "1m", 4),
        ("rand_write_qd1", "randwrite", "4k", 1),
        ("rand_write_qd32", "randwrite", "4k", 32),
    ]:
        log(f"{name}: {key}")
        settle()
        r[key] = fio(fio_uri, rw, bs, depth, True, REGION_GIB)
    log(f"{name}: nbdcopy {COPY_GIB} GiB in and out")
    settle()
    r["copy_in_mib_s"] = nbdcopy(source, copy_uri)
    settle()
    r["copy_out_mib_s"] = nbdcopy(copy_uri, "null:")
    return r


def run_cairn(work, source):
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/cairn-target-bench"))
    log(f"building cairn (release) into {target}")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "cairn-gateway"], cwd=ROOT,
                   check=True, env={**os.environ, "CARGO_TARGET_DIR": str(target)},
                   timeout=3600)
    cairn = target / "release" / "cairn"
    data = work / "cairn-data"
    nbd_port = free_port()
    logf = open(work / "cairn.log", "w")
    proc = subprocess.Popen([cairn, "up", "--data-dir", data, "--s3-port", "0",
                             "--nbd-port", str(nbd_port)],
                            stdout=subprocess.DEVNULL, stderr=logf)
    try:
        wait_port(nbd_port, proc, "cairn up", 120)
        endpoints = data / "endpoints.json"
        for image, gib in [("fio", REGION_GIB), ("copy", COPY_GIB)]:
            subprocess.run([cairn, "image", "--endpoints", endpoints, "create", image,
                            "--size", f"{gib}G"], check=True, stdout=subprocess.DEVNULL,
                           timeout=60)
        base = f"nbd://127.0.0.1:{nbd_port}"
        version = subprocess.run([cairn, "--version"], capture_output=True, text=True).stdout
        return version.strip(), measure("cairn", f"{base}/fio", f"{base}/copy", source)
    finally:
        stop(proc)


def run_peer(kind, work, source):
    files = {}
    for image, gib in [("fio", REGION_GIB), ("copy", COPY_GIB)]:
        f = work / f"{kind}-{image}.raw"
        with open(f, "wb") as fh:
            fh.truncate(gib << 30)
        files[image] = f
    procs, uris = [], {}
    try:
        for image, f in files.items():
            port = free_port()
            p = subprocess.Popen(["bash", str(PEERS), kind, str(f), str(port)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(p)
            wait_port(port, p, kind)
            uris[image] = f"nbd://127.0.0.1:{port}"
        return measure(kind, uris["fio"], uris["copy"], source)
    finally:
        for p in procs:
            stop(p)
        for f in files.values():
            f.unlink(missing_ok=True)


def version_of(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (out.stdout or out.stderr).splitlines()[0].strip()
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


ROWS = [
    ("4 KiB random read QD1, IOPS", "rand_read_qd1", "iops", "≥ 0.8× qemu-nbd, ≥ 0.5× nbdkit"),
    ("4 KiB random read QD1, mean latency µs", "rand_read_qd1", "lat_mean_us",
     "≤ 2× qemu-nbd"),
    ("4 KiB random read QD1, p50 / p99 completion µs", "rand_read_qd1", "p50p99", ""),
    ("4 KiB random read QD32, IOPS", "rand_read_qd32", "iops", "≥ 0.8× qemu-nbd, ≥ 0.5× nbdkit"),
    ("1 MiB sequential read QD4, MiB/s", "seq_read", "mib_s", "≥ 0.8× qemu-nbd, ≥ 0.5× nbdkit"),
    ("4 KiB random write QD1, IOPS", "rand_write_qd1", "iops", "≥ 0.5× qemu-nbd"),
    ("4 KiB random write QD32, IOPS", "rand_write_qd32", "iops", "≥ 0.5× qemu-nbd"),
    ("1 MiB sequential write QD4, MiB/s", "seq_write", "mib_s", "≥ 0.5× qemu-nbd"),
    ("nbdcopy in (file → export), MiB/s", "copy_in_mib_s", None, "≥ 0.5× qemu-nbd"),
    ("nbdcopy out (export → null:), MiB/s", "copy_out_mib_s", None,
     "≥ 0.8× qemu-nbd, ≥ 0.5× nbdkit"),
]


def cell(r, key, field):
    v = r[key]
    if field is None:
        return v
    if field == "p50p99":
        return None
    return v[field]


def fmt(v):
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


def report(results, versions):
    c, q, n = results["cairn"], results["qemu-nbd"], results["nbdkit"]
    lines = [
        f"Run {time.strftime('%Y-%m-%dT%H:%M:%S%z')}; fio runtime {RUNTIME} s per timed job, "
        f"region {REGION_GIB} GiB, nbdcopy {COPY_GIB} GiB; {os.cpu_count()} CPUs.",
        "Versions: " + "; ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        "",
        "| metric | Cairn (3 replicas) | qemu-nbd | nbdkit file | Cairn/qemu-nbd | "
        "Cairn/nbdkit | target |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for label, key, field, target in ROWS:
        if field == "p50p99":
            vals = [f"{fmt(r[key]['clat_p50_us'])} / {fmt(r[key]['clat_p99_us'])}"
                    for r in (c, q, n)]
            lines.append(f"| {label} | {vals[0]} | {vals[1]} | {vals[2]} | | | {target} |")
            continue
        cv, qv, nv = (cell(r, key, field) for r in (c, q, n))
        lines.append(f"| {label} | {fmt(cv)} | {fmt(qv)} | {fmt(nv)} | "
                     f"{cv / qv:.2f}× | {cv / nv:.2f}× | {target} |")
    return "\n".join(lines)


def main():
    for tool in ["fio", "nbdcopy", "qemu-nbd", "nbdkit"]:
        if not shutil.which(tool):
            raise SystemExit(f"{tool} missing: scripts/packages.sh installs it")
    base = Path(os.environ.get("BENCH_DIR", tempfile.gettempdir()))
    work = Path(tempfile.mkdtemp(prefix="cairn-bench-block.", dir=base))
    log(f"work directory {work}")
    try:
        source = work / "source.raw"
        subprocess.run(["dd", "if=/dev/urandom", f"of={source}", "bs=1M",
                        f"count={COPY_GIB * 1024}", "status=none"], check=True,
                       timeout=STEP_TIMEOUT)
        results = {}
        cairn_version, results["cairn"] = run_cairn(work, str(source))
        for kind in ["qemu-nbd", "nbdkit"]:
            results[kind] = run_peer(kind, work, str(source))
        versions = {
            "cairn": cairn_version,
            "qemu-nbd": version_of(["qemu-nbd", "--version"]),
            "nbdkit": version_of(["nbdkit", "--version"]),
            "fio": version_of(["fio", "--version"]),
        }
        (work / "results.json").write_text(json.dumps(results, indent=2))
        print(report(results, versions))
        print("\n```json\n" + json.dumps(results, indent=1) + "\n```")
    except BaseException:
        # A failed run's server logs are what explains it: keep them (not the data) and show
        # the last lines of Cairn's.
        for f in work.glob("*.log"):
            kept = base / f"{work.name}-{f.name}"
            shutil.copyfile(f, kept)
            log(f"kept {kept}")
            if f.name == "cairn.log":
                sys.stderr.write("".join(f.read_text(errors="replace").splitlines(True)[-30:]))
        raise
    finally:
        if os.environ.get("KEEP") == "1":
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
