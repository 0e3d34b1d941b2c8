#!/usr/bin/env python3
"""Side-by-side ring benchmark: Cairn's `ring-tool` against OpenStack Swift's `swift-ring-builder`.

Usage: python3 bench/ring/run.py [--quick] [--timeout SECONDS] [--output PATH]

For every scenario both tools get the very same `create` / `add` / `rebalance` /
`pretend_min_part_hours_passed` command lines, run one after the other in a scratch directory.
Times are wall-clock times of whole CLI invocations; quality figures (balance, dispersion,
partition-replicas moved) come from ring-tool's `--json` output and, for Swift, from Swift's own
Python API reading the builder files the CLI wrote. Markdown goes to stdout, progress to stderr,
and everything measured to bench/ring/results.json.

Needs only the Python 3 standard library plus Swift's `swift` package; if the running
interpreter cannot import `swift`, the script re-runs itself under the interpreter that
`swift-ring-builder` uses.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import operator
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKSPACE = HERE.parent.parent
REEXEC_FLAG = "CAIRN_RING_BENCH_REEXEC"

REPLICAS = 3
WEIGHT = 100
MIN_PART_HOURS = 1
PORT = 6200
GROW_PERCENT = 10.0
SEEDS = (1, 2)  # first rebalance, rebalance after growth: the same seeds for both tools

# name, regions, zones per region, nodes per zone, devices per node, part power, skipped by --quick
SCENARIOS = [
    ("A", 1, 4, 6, 4, 16, False),
    ("B", 3, 4, 20, 4, 18, False),
    ("C", 2, 4, 30, 4, 20, True),
]

# ring-tool alone, through `ring-tool simulate`: label, regions, zones, nodes, devices, part power, lookups
SIMULATIONS = [
    ("1k devices, part power 20", 2, 5, 25, 4, 20, 2_000_000),
    ("10k devices, part power 22", 5, 10, 50, 4, 22, 0),
]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------
# Setup: Swift installed and importable, ring-tool built.
# --------------------------------------------------------------------------------------------

def ensure_swift_cli(timeout: float) -> str:
    found = shutil.which("swift-ring-builder")
    if found:
        return found
    log("swift-ring-builder not found: installing the Debian package 'swift'")
    prefix: list[str] = []
    if os.geteuid() != 0:
        if not shutil.which("sudo"):
            raise BenchError("swift-ring-builder is missing and we are not root (no sudo either)")
        prefix = ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "swift"]):
        subprocess.run(prefix + cmd, check=True, env=env, timeout=timeout,
                       stdout=sys.stderr, stderr=sys.stderr)
    found = shutil.which("swift-ring-builder")
    if not found:
        raise BenchError("apt-get install swift did not provide swift-ring-builder")
    return found


def swift_interpreter(cli: str) -> str | None:
    """The interpreter named on swift-ring-builder's #! line."""
    try:
        with open(cli, "rb") as f:
            first = f.readline().decode(errors="replace").strip()
    except OSError:
        return None
    if not first.startswith("#!"):
        return None
    parts = first[2:].split()
    if not parts:
        return None
    if os.path.basename(parts[0]) == "env" and len(parts) > 1:
        return shutil.which(parts[1])
    return parts[0]


def import_swift(cli: str):
    """Imports Swift's RingBuilder, re-running this script under Swift's interpreter if needed."""
    try:
        from swift.common.ring import RingBuilder  # noqa: PLC0415
        from swift.common.ring.builder import NONE_DEV  # noqa: PLC0415
        return RingBuilder, NONE_DEV
    except ImportError as err:
        interp = swift_interpreter(cli)
        if os.environ.get(REEXEC_FLAG) or not interp or os.path.realpath(interp) == os.path.realpath(sys.executable):
            raise BenchError(f"cannot import Swift's python module ({err}); interpreter {sys.executable}") from err
        log(f"{sys.executable} cannot import swift; re-running under {interp}")
        sys.stdout.flush()
        sys.stderr.flush()
        env = dict(os.environ, **{REEXEC_FLAG: "1"})
        os.execve(interp, [interp, str(Path(__file__).resolve()), *sys.argv[1:]], env)
        raise  # not reached


def build_ring_tool(timeout: float) -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache" / "cairn-target")
    env = dict(os.environ, CARGO_TARGET_DIR=str(target))
    log(f"building ring-tool (CARGO_TARGET_DIR={target})")
    started = time.monotonic()
    result = subprocess.run(["cargo", "build", "--release", "-p", "ring-tool"], cwd=WORKSPACE, env=env,
                            timeout=timeout, stdout=sys.stderr, stderr=sys.stderr)
    if result.returncode != 0:
        raise BenchError(f"cargo build failed with exit code {result.returncode}")
    binary = target / "release" / "ring-tool"
    if not binary.is_file():
        raise BenchError(f"cargo build succeeded but {binary} does not exist")
    log(f"ring-tool ready in {time.monotonic() - started:.1f}s: {binary}")
    return binary


# --------------------------------------------------------------------------------------------
# Running commands.
# --------------------------------------------------------------------------------------------

class Run:
    """One finished subprocess: exit code, wall time, output and peak memory."""

    def __init__(self, argv, rc, wall, out, err, maxrss_kb, maxrss_exact):
        self.argv, self.rc, self.wall, self.out, self.err = argv, rc, wall, out, err
        self.maxrss_kb, self.maxrss_exact = maxrss_kb, maxrss_exact

    def json(self):
        try:
            return json.loads(self.out)
        except json.JSONDecodeError as e:
            raise BenchError(f"{short(self.argv)} printed no valid JSON ({e}): {self.out[:400]!r}") from e


def short(argv) -> str:
    text = " ".join(str(a) for a in argv)
    return text if len(text) < 160 else text[:150] + " ..."


def vm_hwm_kb(pid="self"):
    """Peak resident set of a live process's current address space (VmHWM), in KiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def run(argv, timeout: float, cwd: Path, ok=(0, 1)) -> Run:
    """Runs argv with a hard timeout; measures wall time and the child's peak RSS.

    The kernel's ru_maxrss for a child also counts the parent's address space the child was
    spawned from (this process, which can be large once it has loaded Swift builders). So when
    ru_maxrss does not exceed our own VmHWM at spawn time, fall back to the child's VmHWM
    sampled every few milliseconds while it ran (which can miss growth in the last interval).
    """
    argv = [str(a) for a in argv]
    parent_hwm = vm_hwm_kb() or 0
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out_f, stderr=err_f, stdin=subprocess.DEVNULL)
        timed_out, done = threading.Event(), threading.Event()
        sampled = [0]

        def kill():
            timed_out.set()
            proc.kill()

        def sample():
            while not done.wait(0.004):
                v = vm_hwm_kb(proc.pid)
                if v:
                    sampled[0] = max(sampled[0], v)

        timer = threading.Timer(timeout, kill)
        sampler = threading.Thread(target=sample, daemon=True)
        timer.start()
        sampler.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            done.set()
            timer.cancel()
        sampler.join()
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_f.seek(0)
        err_f.seek(0)
        out = out_f.read().decode(errors="replace")
        err = err_f.read().decode(errors="replace")
    if timed_out.is_set():
        raise BenchError(f"timed out after {timeout:.0f}s: {short(argv)}")
    if proc.returncode not in ok:
        raise BenchError(f"exit code {proc.returncode} from {short(argv)}\nstdout: {out[-1500:]}\nstderr: {err[-1500:]}")
    if usage.ru_maxrss > parent_hwm:
        maxrss, exact = usage.ru_maxrss, True
    else:
        maxrss, exact = (sampled[0] or None), False
    return Run(argv, proc.returncode, wall, out, err, maxrss, exact)


# --------------------------------------------------------------------------------------------
# Topology: identical `add` arguments for both tools.
# --------------------------------------------------------------------------------------------

def dev_args(nodes, devices_per_node: int) -> list[str]:
    args = []
    for region, zone, node in nodes:
        for d in range(devices_per_node):
            args += [f"r{region}z{zone}-10.{region}.{zone}.{node}:{PORT}/d{d}", str(WEIGHT)]
    return args


def initial_nodes(regions: int, zones: int, nodes: int):
    return [(r, z, n) for r in range(1, regions + 1) for z in range(1, zones + 1) for n in range(1, nodes + 1)]


def growth_nodes(regions: int, zones: int, nodes: int, devices_per_node: int):
    """GROW_PERCENT more devices, as whole new nodes dealt round-robin over all zones
    (the same rule as `ring-tool simulate --grow`)."""
    total = regions * zones * nodes * devices_per_node
    count = math.ceil(total * GROW_PERCENT / 100.0 / devices_per_node)
    all_zones = [(r, z) for r in range(1, regions + 1) for z in range(1, zones + 1)]
    next_node = {rz: nodes + 1 for rz in all_zones}
    new = []
    for i in range(count):
        r, z = all_zones[i % len(all_zones)]
        new.append((r, z, next_node[(r, z)]))
        next_node[(r, z)] += 1
    if max(n for _, _, n in new) > 255:
        raise BenchError("too many nodes per zone for 10.r.z.n addresses")
    return new


def balance_from_counts(parts_by_dev: dict, weight_by_dev: dict, slots: int) -> float:
    """Largest |parts / weight share - 1| in percent, computed here independently of either tool."""
    total_weight = sum(w for w in weight_by_dev.values() if w > 0)
    worst = 0.0
    for dev, weight in weight_by_dev.items():
        if weight <= 0:
            continue
        wanted = slots * weight / total_weight
        worst = max(worst, abs(100.0 * parts_by_dev.get(dev, 0) / wanted - 100.0))
    return worst


def moved_lower_bound(before: dict, after: dict) -> int:
    """Partition-replicas that must have changed device, judging by per-device counts alone."""
    return sum(max(0, n - before.get(dev, 0)) for dev, n in after.items())


# --------------------------------------------------------------------------------------------
# The two tools behind one interface.
# --------------------------------------------------------------------------------------------

class RingTool:
    name = "ring-tool"

    def __init__(self, binary: Path, workdir: Path, timeout: float):
        self.bin, self.dir, self.timeout = binary, workdir, timeout
        self.builder = workdir / "object.builder"

    def cmd(self, *args, ok=(0, 1)) -> Run:
        return run([self.bin, self.builder, *args, "--json"], self.timeout, self.dir, ok)

    def startup(self) -> Run:
        return run([self.bin, "--version"], self.timeout, self.dir, ok=(0,))

    def create(self, part_power: int) -> Run:
        return self.cmd("create", part_power, REPLICAS, MIN_PART_HOURS, ok=(0,))

    def add(self, args) -> Run:
        return self.cmd("add", *args, ok=(0,))

    def rebalance(self, seed: int) -> Run:
        return self.cmd("rebalance", "--seed", seed)

    def pretend(self) -> Run:
        return self.cmd("pretend_min_part_hours_passed", ok=(0,))

    def show(self) -> Run:
        return run([self.bin, self.builder], self.timeout, self.dir, ok=(0,))

    def state(self, slots: int, warnings: list, where: str) -> dict:
        show = self.cmd("show", ok=(0,)).json()
        summary, devices = show.get("summary", {}), show.get("devices", [])
        parts = {d["id"]: d["partitions"] for d in devices}
        weights = {d["id"]: d["weight"] for d in devices}
        dispersion_run = self.cmd("dispersion")
        dispersion = dispersion_run.json().get("dispersion")
        state = {
            "balance": summary.get("balance"),
            "dispersion": summary.get("dispersion"),
            "dispersion_command": dispersion,
            "dispersion_command_exit": dispersion_run.rc,
            "devices": len(devices),
            "unassigned": summary.get("unassigned"),
            "assigned": sum(parts.values()),
            "balance_recomputed": balance_from_counts(parts, weights, slots),
            "parts_by_device": parts,
        }
        check_state(self.name, where, state, slots, warnings)
        if dispersion is not None and state["dispersion"] is not None and abs(dispersion - state["dispersion"]) > 1e-9:
            warnings.append(f"{self.name} {where}: `dispersion --json` says {dispersion}, `show --json` says {state['dispersion']}")
        return state


class SwiftTool:
    name = "swift-ring-builder"

    def __init__(self, cli: str, workdir: Path, timeout: float, ring_builder_cls, none_dev: int):
        self.cli, self.dir, self.timeout = cli, workdir, timeout
        self.builder = workdir / "object.builder"
        self.RingBuilder, self.none_dev = ring_builder_cls, none_dev

    def cmd(self, *args, ok=(0, 1)) -> Run:
        return run([self.cli, self.builder, *args], self.timeout, self.dir, ok)

    def startup(self) -> Run:
        return run([self.cli], self.timeout, self.dir, ok=(0,))

    def create(self, part_power: int) -> Run:
        return self.cmd("create", part_power, REPLICAS, MIN_PART_HOURS, ok=(0,))

    def add(self, args) -> Run:
        return self.cmd("add", *args, ok=(0,))

    def rebalance(self, seed: int) -> Run:
        return self.cmd("rebalance", "--seed", seed)

    def pretend(self) -> Run:
        return self.cmd("pretend_min_part_hours_passed", ok=(0,))

    def show(self) -> Run:
        return run([self.cli, self.builder], self.timeout, self.dir, ok=(0, 1))

    def load(self):
        return self.RingBuilder.load(str(self.builder))

    def state(self, slots: int, warnings: list, where: str) -> dict:
        b = self.load()
        if b.dispersion is None:
            b._build_dispersion_graph()
        assignment = [row[:] for row in (b._replica2part2dev or [])]  # array('H') copies: compact
        parts = {d["id"]: d["parts"] for d in b.devs if d is not None}
        weights = {d["id"]: d["weight"] for d in b.devs if d is not None}
        assigned = sum(len(row) - row.count(self.none_dev) for row in assignment)
        state = {
            "balance": b.get_balance(),
            "dispersion": b.dispersion,
            "devices": len(parts),
            "unassigned": slots - assigned,
            "assigned": assigned,
            "balance_recomputed": balance_from_counts(parts, weights, slots),
            "parts_by_device": parts,
            "_assignment": assignment,
        }
        check_state(self.name, where, state, slots, warnings)
        return state


def check_state(tool: str, where: str, state: dict, slots: int, warnings: list) -> None:
    for key in ("balance", "dispersion"):
        if state.get(key) is None:
            warnings.append(f"{tool} {where}: {key} missing")
    if state["assigned"] != slots or (state.get("unassigned") not in (None, 0)):
        warnings.append(f"{tool} {where}: {state['assigned']} of {slots} partition-replicas assigned "
                        f"(unassigned reported: {state.get('unassigned')})")
    if state.get("balance") is not None and abs(state["balance"] - state["balance_recomputed"]) > 0.01:
        warnings.append(f"{tool} {where}: reported balance {state['balance']:.4f}% but per-device counts give "
                        f"{state['balance_recomputed']:.4f}%")


def count_moved(before, after) -> int:
    moved = 0
    for r in range(max(len(before), len(after))):
        old = before[r] if r < len(before) else []
        new = after[r] if r < len(after) else []
        common = min(len(old), len(new))
        moved += sum(map(operator.ne, old[:common], new[:common])) + abs(len(old) - len(new))
    return moved


SWIFT_REASSIGNED = re.compile(r"Reassigned (\d+) \(([\d.]+)%\) partitions")


# --------------------------------------------------------------------------------------------
# A scenario: same steps, both tools.
# --------------------------------------------------------------------------------------------

def run_tool(tool, sc: dict, initial_args, grow_args, warnings: list) -> dict:
    slots = sc["slots"]
    res: dict = {}
    log(f"  {tool.name}: start-up, create, add {sc['devices']} devices")
    res["startup_s"] = tool.startup().wall
    res["create_s"] = tool.create(sc["part_power"]).wall
    res["add_s"] = tool.add(initial_args).wall

    log(f"  {tool.name}: first rebalance (seed {SEEDS[0]})")
    r1 = tool.rebalance(SEEDS[0])
    first = {"wall_s": r1.wall, "exit": r1.rc, "maxrss_kb": r1.maxrss_kb, "maxrss_exact": r1.maxrss_exact}
    if isinstance(tool, RingTool):
        out = r1.json()
        first.update(internal_s=out.get("seconds"), reported=out)
    else:
        m = SWIFT_REASSIGNED.search(r1.out)
        first["reported_reassigned"] = int(m.group(1)) if m else None
        first["stdout"] = r1.out[-2000:]
    s1 = tool.state(slots, warnings, f"scenario {sc['name']} first rebalance")
    first.update(balance=s1["balance"], dispersion=s1["dispersion"], assigned=s1["assigned"],
                 balance_recomputed=s1["balance_recomputed"])
    if isinstance(tool, RingTool):
        for key in ("balance", "dispersion"):
            if first["reported"].get(key) is not None and abs(first["reported"][key] - s1[key]) > 1e-9:
                warnings.append(f"ring-tool scenario {sc['name']} first rebalance: rebalance --json {key} "
                                f"{first['reported'][key]} differs from show --json {s1[key]}")
    res["first"] = first

    # Overheads measured on the file the first rebalance wrote.
    res["show_s"] = tool.show().wall
    log(f"  {tool.name}: add {sc['grow_devices']} devices, pretend_min_part_hours_passed, rebalance (seed {SEEDS[1]})")
    res["add_grow_s"] = tool.add(grow_args).wall
    res["load_save_s"] = tool.pretend().wall
    before_parts = s1["parts_by_device"]
    before_assignment = None
    if isinstance(tool, SwiftTool):
        # The assignment as the rebalance will find it (after add and pretend_min_part_hours_passed).
        before_assignment = [row[:] for row in (tool.load()._replica2part2dev or [])]
        s1.pop("_assignment", None)

    r2 = tool.rebalance(SEEDS[1])
    second = {"wall_s": r2.wall, "exit": r2.rc, "maxrss_kb": r2.maxrss_kb, "maxrss_exact": r2.maxrss_exact}
    s2 = tool.state(slots, warnings, f"scenario {sc['name']} rebalance after growth")
    if isinstance(tool, RingTool):
        out = r2.json()
        second.update(internal_s=out.get("seconds"), reported=out, moved=out.get("moved"))
        if out.get("moved") is None:
            warnings.append(f"ring-tool scenario {sc['name']}: rebalance --json has no 'moved'")
        for key in ("balance", "dispersion"):
            if out.get(key) is not None and abs(out[key] - s2[key]) > 1e-9:
                warnings.append(f"ring-tool scenario {sc['name']} second rebalance: rebalance --json {key} "
                                f"{out[key]} differs from show --json {s2[key]}")
    else:
        m = SWIFT_REASSIGNED.search(r2.out)
        second["reported_reassigned"] = int(m.group(1)) if m else None
        second["stdout"] = r2.out[-2000:]
        second["moved"] = count_moved(before_assignment, s2["_assignment"])
        if second["reported_reassigned"] is not None and second["reported_reassigned"] != second["moved"]:
            warnings.append(f"swift scenario {sc['name']}: CLI says {second['reported_reassigned']} reassigned, "
                            f"array comparison says {second['moved']}")
    second.update(balance=s2["balance"], dispersion=s2["dispersion"], assigned=s2["assigned"],
                  balance_recomputed=s2["balance_recomputed"],
                  moved_lower_bound=moved_lower_bound(before_parts, s2["parts_by_device"]))
    if second.get("moved") is not None and second["moved"] < second["moved_lower_bound"]:
        warnings.append(f"{tool.name} scenario {sc['name']}: reports {second['moved']} moved, but per-device counts "
                        f"show at least {second['moved_lower_bound']} partition-replicas changed device")
    if s2["devices"] != sc["devices_after"]:
        warnings.append(f"{tool.name} scenario {sc['name']}: {s2['devices']} devices after growth, expected {sc['devices_after']}")
    res["second"] = second
    return res


def run_scenario(spec, ring_tool_bin, swift_cli, swift_api, root: Path, timeout: float, warnings: list) -> dict:
    name, regions, zones, nodes, dpn, part_power, _ = spec
    initial = initial_nodes(regions, zones, nodes)
    grown = growth_nodes(regions, zones, nodes, dpn)
    devices = len(initial) * dpn
    grow_devices = len(grown) * dpn
    slots = (1 << part_power) * REPLICAS
    total_after = (devices + grow_devices) * WEIGHT
    sc = {
        "name": name, "regions": regions, "zones_per_region": zones, "nodes_per_zone": nodes,
        "devices_per_node": dpn, "part_power": part_power, "partitions": 1 << part_power, "replicas": REPLICAS,
        "slots": slots, "devices": devices, "grow_devices": grow_devices, "devices_after": devices + grow_devices,
        "weight": WEIGHT, "min_part_hours": MIN_PART_HOURS, "seeds": list(SEEDS),
        "ideal_moved": round(slots * grow_devices * WEIGHT / total_after),
    }
    initial_args, grow_args = dev_args(initial, dpn), dev_args(grown, dpn)
    log(f"scenario {name}: {regions}x{zones}x{nodes}x{dpn} = {devices} devices, part power {part_power}, "
        f"then +{grow_devices} devices")
    rt_dir, sw_dir = root / name / "ring-tool", root / name / "swift"
    rt_dir.mkdir(parents=True)
    sw_dir.mkdir(parents=True)
    tools = [RingTool(ring_tool_bin, rt_dir, timeout), SwiftTool(swift_cli, sw_dir, timeout, *swift_api)]
    for tool in tools:
        key = "ring_tool" if isinstance(tool, RingTool) else "swift"
        try:
            sc[key] = run_tool(tool, sc, initial_args, grow_args, warnings)
        except (BenchError, OSError) as e:
            warnings.append(f"scenario {name}, {tool.name} failed: {e}")
            sc[key] = {"error": str(e)}
        shutil.rmtree(tool.dir, ignore_errors=True)  # keep the scratch space small between tools
    return sc


def run_simulation(spec, ring_tool_bin, root: Path, timeout: float, warnings: list) -> dict:
    label, regions, zones, nodes, dpn, part_power, lookups = spec
    argv = [ring_tool_bin, "simulate", "--regions", regions, "--zones", zones, "--nodes", nodes,
            "--devices", dpn, "--part-power", part_power, "--grow", GROW_PERCENT, "--json"]
    if lookups:
        argv += ["--lookups", lookups]
    log(f"simulate: {label}")
    entry = {"label": label, "argv": [str(a) for a in argv[1:]]}
    try:
        r = run(argv, timeout, root)
        out = r.json()
        entry.update(wall_s=r.wall, exit=r.rc, maxrss_kb=r.maxrss_kb, maxrss_exact=r.maxrss_exact, result=out)
        for phase in ("first", "grow"):
            if not isinstance(out.get(phase), dict):
                warnings.append(f"simulate {label}: '{phase}' missing from the JSON")
        if lookups and out.get("lookup_ns") is None:
            warnings.append(f"simulate {label}: lookup_ns missing although --lookups was given")
    except BenchError as e:
        warnings.append(f"simulate {label} failed: {e}")
        entry["error"] = str(e)
    return entry


# --------------------------------------------------------------------------------------------
# Reporting.
# --------------------------------------------------------------------------------------------

def fmt_s(v) -> str:
    if v is None:
        return "n/a"
    return f"{v:.3f}" if v < 100 else f"{v:.1f}"


def fmt_pct(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def fmt_n(v) -> str:
    return "n/a" if v is None else f"{v:,}"


def fmt_mb(kb, exact=True) -> str:
    return "n/a" if kb is None else f"{'' if exact else '~'}{kb / 1024:.0f}"


def mem_row(label, rt_phase, sw_phase):
    a, b = dig(rt_phase, "maxrss_kb"), dig(sw_phase, "maxrss_kb")
    return (label, fmt_mb(a, dig(rt_phase, "maxrss_exact") is not False),
            fmt_mb(b, dig(sw_phase, "maxrss_exact") is not False), ratio(b, a))


def ratio(a, b) -> str:
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.1f}×" if a / b >= 10 else f"{a / b:.2f}×"


def dig(d: dict, *path):
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def net(r: dict, phase: str):
    wall, overhead = dig(r, phase, "wall_s"), r.get("load_save_s")
    return None if wall is None or overhead is None else max(0.0, wall - overhead)


def scenario_markdown(sc: dict) -> str:
    rt, sw = sc.get("ring_tool", {}), sc.get("swift", {})
    rows = []

    def time_row(label, a, b):
        rows.append((label, fmt_s(a), fmt_s(b), ratio(b, a)))

    def plain_row(label, a, b, f):
        rows.append((label, f(a), f(b), "—"))

    time_row("CLI start-up, no builder (s)", rt.get("startup_s"), sw.get("startup_s"))
    time_row("`add` of all initial devices, one call (s)", rt.get("add_s"), sw.get("add_s"))
    time_row("1st rebalance, CLI wall (s)", dig(rt, "first", "wall_s"), dig(sw, "first", "wall_s"))
    rows.append(("1st rebalance, inside the tool (s)", fmt_s(dig(rt, "first", "internal_s")), "n/a", "—"))
    time_row("1st rebalance, wall − load/save (s)", net(rt, "first"), net(sw, "first"))
    rows.append(mem_row("1st rebalance peak RSS (MiB)", rt.get("first"), sw.get("first")))
    plain_row("1st balance (%)", dig(rt, "first", "balance"), dig(sw, "first", "balance"), fmt_pct)
    plain_row("1st dispersion (%)", dig(rt, "first", "dispersion"), dig(sw, "first", "dispersion"), fmt_pct)
    time_row("show (builder, no command) (s)", rt.get("show_s"), sw.get("show_s"))
    time_row("builder load+save: `pretend_min_part_hours_passed` (s)", rt.get("load_save_s"), sw.get("load_save_s"))
    time_row("2nd rebalance (after +10%), CLI wall (s)", dig(rt, "second", "wall_s"), dig(sw, "second", "wall_s"))
    rows.append(("2nd rebalance, inside the tool (s)", fmt_s(dig(rt, "second", "internal_s")), "n/a", "—"))
    time_row("2nd rebalance, wall − load/save (s)", net(rt, "second"), net(sw, "second"))
    rows.append(mem_row("2nd rebalance peak RSS (MiB)", rt.get("second"), sw.get("second")))
    plain_row("2nd balance (%)", dig(rt, "second", "balance"), dig(sw, "second", "balance"), fmt_pct)
    plain_row("2nd dispersion (%)", dig(rt, "second", "dispersion"), dig(sw, "second", "dispersion"), fmt_pct)
    m_rt, m_sw = dig(rt, "second", "moved"), dig(sw, "second", "moved")
    rows.append(("partition-replicas moved", fmt_n(m_rt), fmt_n(m_sw), ratio(m_rt, m_sw)))
    ideal = sc["ideal_moved"]
    rows.append(("ideal minimum moved", fmt_n(ideal), fmt_n(ideal), "—"))
    rows.append(("moved / ideal",
                 "n/a" if m_rt is None else f"{m_rt / ideal:.3f}",
                 "n/a" if m_sw is None else f"{m_sw / ideal:.3f}", "—"))

    head = (f"## Scenario {sc['name']}: {sc['regions']} region(s) × {sc['zones_per_region']} zones × "
            f"{sc['nodes_per_zone']} nodes × {sc['devices_per_node']} devices = {sc['devices']} devices, "
            f"part power {sc['part_power']}\n\n"
            f"{sc['partitions']:,} partitions × {sc['replicas']} replicas = {sc['slots']:,} partition-replicas; "
            f"then +{sc['grow_devices']} devices ({sc['grow_devices'] // sc['devices_per_node']} new nodes) "
            f"→ {sc['devices_after']} devices. Weight {sc['weight']} each, min_part_hours {sc['min_part_hours']}, "
            f"seeds {sc['seeds'][0]} and {sc['seeds'][1]}.\n")
    errors = [f"\n**{k} failed:** {v['error']}\n" for k, v in (("ring-tool", rt), ("swift-ring-builder", sw))
              if isinstance(v, dict) and v.get("error")]
    table = ["| metric | ring-tool | swift-ring-builder | ratio |", "|---|---:|---:|---:|"]
    table += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return head + "".join(errors) + "\n" + "\n".join(table) + "\n"


def simulate_markdown(sims: list) -> str:
    lines = ["## ring-tool alone (`ring-tool simulate --json`, in-process times)\n",
             "| run | devices | 1st rebalance (s) | balance (%) | dispersion (%) | devices after +10% "
             "| 2nd rebalance (s) | balance (%) | dispersion (%) | moved | ideal | moved / ideal "
             "| lookup (ns) | CLI wall (s) | peak RSS (MiB) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in sims:
        if s.get("error"):
            lines.append(f"| {s['label']} | failed: {s['error'].splitlines()[0]} |" + " |" * 13)
            continue
        r = s["result"]
        f, g = r.get("first") or {}, r.get("grow") or {}
        moved, ideal = g.get("moved"), g.get("ideal_moved")
        lines.append("| " + " | ".join([
            s["label"], fmt_n(f.get("devices")), fmt_s(f.get("seconds")), fmt_pct(f.get("balance")),
            fmt_pct(f.get("dispersion")), fmt_n(g.get("devices")), fmt_s(g.get("seconds")),
            fmt_pct(g.get("balance")), fmt_pct(g.get("dispersion")), fmt_n(moved), fmt_n(ideal),
            f"{moved / ideal:.3f}" if moved is not None and ideal else "n/a",
            "—" if r.get("lookup_ns") is None else f"{r['lookup_ns']:.1f}",
            fmt_s(s.get("wall_s")), fmt_mb(s.get("maxrss_kb"), s.get("maxrss_exact") is not False),
        ]) + " |")
    return "\n".join(lines) + "\n"


NOTES = """\
Notes:
- Times are wall-clock times of one CLI invocation each (process start, builder load, work, file
  writes), run one at a time; "inside the tool" is ring-tool's own `seconds` (the rebalance alone).
  "wall − load/save" subtracts the time of `pretend_min_part_hours_passed` (start-up + load + save
  of the same builder) as a rough estimate of the rebalance work itself.
- Peak RSS is the child's maximum resident set; "~" marks a value sampled every 4 ms from
  /proc (the kernel's figure for a child also counts this script's own memory when it is larger).
- Ratio: swift ÷ ring-tool for times and memory (above 1 means ring-tool is faster or smaller);
  ring-tool ÷ swift for partition-replicas moved (below 1 means ring-tool moved fewer).
- Balance: the largest deviation of any device from its weight share, in percent. Dispersion:
  percent of partition-replicas placed beyond what their failure domain should hold. Swift's
  figures come from its Python API on the builder the CLI saved; ring-tool's from `show --json`.
- Moved: partition-replicas whose device changed in the rebalance after growth (Swift: the
  builder's assignment arrays compared before and after). Ideal minimum = partition-replicas ×
  added weight ÷ total weight after growth.
"""


def machine_facts(ring_tool_bin: Path | None, swift_cli: str | None) -> dict:
    facts = {"nproc": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
             "python_executable": sys.executable}
    try:
        facts["nproc"] = int(subprocess.run(["nproc"], capture_output=True, text=True, timeout=30).stdout.strip())
    except (OSError, ValueError, subprocess.SubprocessError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    facts["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    facts["mem_total_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
                    break
    except OSError:
        pass
    try:
        out = subprocess.run(["dpkg-query", "-W", "swift"], capture_output=True, text=True, timeout=60).stdout
        facts["swift_version"] = out.split()[1] if len(out.split()) > 1 else out.strip() or None
    except (OSError, subprocess.SubprocessError):
        facts["swift_version"] = None
    facts["swift_ring_builder"] = swift_cli
    if ring_tool_bin:
        try:
            facts["ring_tool_version"] = subprocess.run([str(ring_tool_bin), "--version"], capture_output=True,
                                                        text=True, timeout=60).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            facts["ring_tool_version"] = None
        facts["ring_tool_binary"] = str(ring_tool_bin)
    return facts


def strip_private(obj):
    """Drops bulky per-partition data from what goes into results.json."""
    if isinstance(obj, dict):
        return {k: strip_private(v) for k, v in obj.items() if not k.startswith("_") and k != "parts_by_device"}
    if isinstance(obj, list):
        return [strip_private(v) for v in obj]
    return obj


def write_results(path: Path, results: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(strip_private(results), indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


def main() -> int:
    ap = argparse.ArgumentParser(description="ring-tool vs swift-ring-builder, side by side")
    ap.add_argument("--quick", action="store_true", help="skip scenario C (part power 20 in Swift: minutes)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="limit per subprocess, seconds (default 1800)")
    ap.add_argument("--output", type=Path, default=HERE / "results.json", help="JSON results file")
    args = ap.parse_args()

    swift_cli = ensure_swift_cli(args.timeout)
    swift_api = import_swift(swift_cli)  # may re-exec under Swift's interpreter
    ring_tool_bin = build_ring_tool(args.timeout)

    warnings: list[str] = []
    results = {
        "benchmark": "ring-tool vs swift-ring-builder",
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine_facts(ring_tool_bin, swift_cli),
        "scenarios": [],
        "simulations": [],
        "warnings": warnings,
    }
    scratch = Path(tempfile.mkdtemp(prefix="cairn-ring-bench-"))
    try:
        for spec in SCENARIOS:
            if spec[6] and args.quick:
                log(f"scenario {spec[0]} skipped (--quick)")
                continue
            results["scenarios"].append(
                run_scenario(spec, ring_tool_bin, swift_cli, swift_api, scratch, args.timeout, warnings))
            write_results(args.output, results)
        for spec in SIMULATIONS:
            results["simulations"].append(run_simulation(spec, ring_tool_bin, scratch, args.timeout, warnings))
            write_results(args.output, results)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    write_results(args.output, results)

    m = results["machine"]
    out = ["# Ring benchmark: ring-tool vs swift-ring-builder\n",
           f"Machine: {m.get('nproc')} CPUs ({m.get('cpu', 'unknown CPU')}), {m.get('mem_total_gib', '?')} GiB RAM, "
           f"{m.get('platform')}; swift {m.get('swift_version')}; {m.get('ring_tool_version')}; "
           f"Python {m.get('python')}. Run {results['started']}{' (--quick: scenario C skipped)' if args.quick else ''}.\n"]
    out += [scenario_markdown(sc) for sc in results["scenarios"]]
    out.append(simulate_markdown(results["simulations"]))
    out.append(NOTES)
    if warnings:
        out.append("**Warnings:**\n\n" + "\n".join(f"- {w}" for w in warnings) + "\n")
    out.append(f"Full results: {args.output}\n")
    print("\n".join(out))
    failed = any("error" in sc.get(k, {}) for sc in results["scenarios"] for k in ("ring_tool", "swift"))
    failed |= any("error" in s for s in results["simulations"])
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
