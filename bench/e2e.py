"""The bench's end-to-end section: upstream's engine on upstream's own stores and on ours.

    .venv/bin/python bench/run.py --only e2e                     # 3 rounds, SQLite + PostgreSQL + MariaDB
    .venv/bin/python bench/run.py --only e2e --small --rounds 1  # smoke test
    .venv/bin/python bench/run.py --only e2e --e2e-profile DIR   # also count statements, cProfile a worker

Upstream Stabilize 0.33.1's own engine (``Orchestrator``, ``QueueProcessor``, task registry, from
the compatibility test's venv ``tests/compat/.venv-upstream``, built by ``upstream_env.ensure_venv``
with the same SQLAlchemy and drivers as ours) runs the compatibility test's kinds of workflows,
with 1 and with 4 worker processes, once on upstream's stores (``SqliteWorkflowStore`` /
``SqliteQueue``, ``PostgresWorkflowStore`` / ``PostgresQueue``) and once on ours (the compatibility
test's overlay: our ``persistence`` and ``queue`` over upstream's package). Upstream has no MySQL
store, so MariaDB runs ours only. Each run is one ``bench/e2e_driver.py`` process on a fresh
database; the two sides of a cell (workload, dialect, workers) run one after the other, in an
order rotated every round, so drift of the machine hits both alike.

The table gives wall seconds (median and min over rounds) and the speed ratio upstream's wall /
ours (the store bench's ours / upstream in ops/s: above 1 ours is faster), from the medians and
from the minimums. Targets (issue 12): at least 1.0x on SQLite, 1.5x on PostgreSQL.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from databases import Database

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DRIVER = BENCH / "e2e_driver.py"
#: Seconds an e2e driver process may take (its own run deadline is shorter; a hang guard only).
RUN_TIMEOUT = 900
WORKERS = (1, 4)
#: The engine's de-duplication filter's capacity in every worker (``e2e_driver``): above any run's
#: message count; the engine's default, 100,000, costs ~60 ms of pure Python per message on both sides.
BLOOM_ITEMS = 2048
#: Speed ratio (upstream wall / ours) each dialect must reach; MariaDB has no upstream to compare.
TARGETS = {"sqlite": 1.0, "postgresql": 1.5}

sys.path.insert(0, str(ROOT))
from tests.compat import upstream_env as harness  # noqa: E402


@dataclass(frozen=True)
class Workload:
    """``count`` workflows of one shape (``e2e_driver.build``) of ``width``."""

    name: str
    shape: str
    count: int
    width: int


def workloads(small: bool) -> list[Workload]:
    """Many 10-stage chains, wide diamonds (root, branches, join), a 100-stage fan-out."""
    if small:
        return [
            Workload("e2e_chains", "chain", 4, 10),
            Workload("e2e_diamonds", "diamond", 2, 8),
            Workload("e2e_fanout", "fanout", 1, 20),
        ]
    return [
        Workload("e2e_chains", "chain", 20, 10),
        Workload("e2e_diamonds", "diamond", 6, 30),
        Workload("e2e_fanout", "fanout", 2, 100),
    ]


def run_one(
    side: str,
    dialect: str,
    url: str,
    workload: Workload,
    workers: int,
    python: Path,
    overlay: Path,
    profile: Path | None,
) -> dict[str, Any]:
    """One driver process: the workload on ``url`` with ``workers`` workers; its result."""
    with tempfile.TemporaryDirectory(prefix="stab-e2e-") as tmp:
        work = Path(tmp)
        prof_dir = None
        if profile is not None:
            prof_dir = profile / f"{side}-{dialect}-{workload.name}-w{workers}"
            prof_dir.mkdir(parents=True, exist_ok=True)
        spec = {
            "side": side,
            "dialect": dialect,
            "url": url,
            "workload": workload.shape,
            "count": workload.count,
            "width": workload.width,
            "workers": workers,
            "output": str(work / "result.json"),
            "profile": str(prof_dir) if prof_dir else None,
            "bloom_items": BLOOM_ITEMS,
        }
        (work / "spec.json").write_text(json.dumps(spec))
        env = harness.engine_env(overlay if side == "ours" else None)
        # Both sides' SQLite in WAL (upstream's is opt-in; ours always), hash order fixed.
        env.update({"STABILIZE_SQLITE_JOURNAL_MODE": "WAL", "PYTHONHASHSEED": "0"})
        done = subprocess.run(
            [str(python), str(DRIVER), str(work / "spec.json")],
            capture_output=True,
            text=True,
            cwd=work,  # never our checkout, whose stabilize/ would shadow upstream's
            env=env,
            timeout=RUN_TIMEOUT,
        )
        output = work / "result.json"
        out = json.loads(output.read_text()) if output.exists() else {}
        if "result" not in out:
            sys.stderr.write(out.get("trace", "") + done.stderr[-4000:])
            raise SystemExit(
                f"e2e {workload.name} w{workers} {side} on {dialect} failed: "
                f"{out.get('error', f'driver exited with {done.returncode}')}"
            )
        result: dict[str, Any] = out["result"]
        return result


def run(
    dialects: list[str], rounds: int, small: bool, tmp: Path, profile: Path | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every cell, ``rounds`` times, interleaved; prints the table.

    Returns:
        The raw results (one per run, with ``round``, ``side``, ``dialect``; ``ops`` = stages, so
        ``compare.py`` reads them like the store workloads) and the cells below target.
    """
    python = harness.ensure_venv()
    overlay = tmp / "e2e-overlay"
    harness.build_overlay(overlay, python)
    # Compiled once here: the runs' processes do not write bytecode (``engine_env``), and each of
    # them (a driver and its workers, per run) would compile our modules again.
    compile_all = [str(python), "-m", "compileall", "-q", str(overlay)]
    subprocess.run(compile_all, check=True, env=harness.engine_env())
    cells = [(w, n) for w in workloads(small) for n in WORKERS]
    raw: list[dict[str, Any]] = []
    print(
        f"\nend to end: upstream's engine, {len(cells)} cells x {len(dialects)} dialects x {rounds} rounds",
        flush=True,
    )
    for round_no in range(1, rounds + 1):
        for dialect in dialects:
            sides = ["ours", "upstream"] if dialect in TARGETS else ["ours"]
            for index, (workload, workers) in enumerate(cells):
                shift = (round_no - 1 + index) % len(sides)
                for side in sides[shift:] + sides[:shift]:
                    with Database(dialect, tmp) as url:
                        result = run_one(side, dialect, url, workload, workers, python, overlay, profile)
                    name = f"{workload.name}_w{workers}"
                    raw.append(
                        {
                            "round": round_no,
                            "side": side,
                            "dialect": dialect,
                            **result,
                            "workload": name,
                            "ops": result["stages"],
                        }
                    )
                    print(
                        f"round {round_no} {dialect:<10} {name:<18} {side:<8} {result['seconds']:7.2f} s"
                        f"  {result['steps']:6d} steps"
                        + (f"  {result['raised']} raised" if result["raised"] else ""),
                        flush=True,
                    )
    return raw, print_table(raw, dialects, profile is not None)


def summary(raw: list[dict[str, Any]], dialects: list[str]) -> list[dict[str, Any]]:
    """Per cell: wall seconds (median, min) per side, steps, the workers' CPU milliseconds per
    step (median), the speed ratios and the target."""
    walls: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    steps: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    cpu: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    names: list[str] = []
    for r in raw:
        key = (r["side"], r["dialect"], r["workload"])
        walls[key].append(r["seconds"])
        steps[key].append(r["steps"])
        cpu[key].append(1000 * r["cpu_seconds"] / r["steps"])
        if r["workload"] not in names:
            names.append(r["workload"])
    rows = []
    for dialect in dialects:
        for name in names:
            ours = walls.get(("ours", dialect, name))
            if not ours:
                continue
            up = walls.get(("upstream", dialect, name))
            row: dict[str, Any] = {"workload": name, "dialect": dialect}
            for side, values in (("ours", ours), ("upstream", up)):
                row[f"{side}_median_s"] = statistics.median(values) if values else None
                row[f"{side}_min_s"] = min(values) if values else None
                counted = steps.get((side, dialect, name))
                row[f"{side}_steps"] = statistics.median(counted) if counted else None
                used = cpu.get((side, dialect, name))
                row[f"{side}_cpu_ms_per_step"] = statistics.median(used) if used else None
            row["ratio"] = row["upstream_median_s"] / row["ours_median_s"] if up else None
            row["ratio_min"] = row["upstream_min_s"] / row["ours_min_s"] if up else None
            row["target"] = TARGETS.get(dialect) if up else None
            rows.append(row)
    return rows


def _per_step(raw: list[dict[str, Any]], side: str, dialect: str, name: str) -> str:
    """Statements / COMMITs / round trips per engine step of a profile run (``Counts``)."""
    runs = [r for r in raw if (r["side"], r["dialect"], r["workload"]) == (side, dialect, name)]
    if not runs or "counts" not in runs[0]:
        return ""
    steps = sum(r["steps"] for r in runs)
    per = {key: sum(r["counts"][key] for r in runs) / steps for key in runs[0]["counts"]}
    return f"{per['statements']:.1f}/{per['commits']:.1f}/{per['round_trips']:.1f}"


def num(value: float | None, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.2f}{suffix}"


def print_table(raw: list[dict[str, Any]], dialects: list[str], counted: bool) -> list[str]:
    """The end-to-end table, and the cells that missed their target."""
    missed: list[str] = []
    header = (
        f"{'workload':<18}{'dialect':<11}{'steps':>7}{'ours med':>10}{'ours min':>10}{'upstr med':>10}"
        f"{'upstr min':>10}{'speed':>8}{'(min)':>8}{'target':>10}{'cpu/step':>10}{'upstr':>7}"
    )
    if counted:
        header += f"{'ours st/co/rt':>16}{'upstr st/co/rt':>16}"
    print(
        "\nend to end: wall seconds, median and min over rounds; speed = upstream wall / ours"
        " (>1: ours faster); cpu/step: the workers' CPU ms per engine step, ours and upstream (median)"
    )
    print(header)
    print("-" * len(header))
    for row in summary(raw, dialects):
        up, target = row["upstream_median_s"], row["target"]
        verdict = ""
        if target is not None and row["ratio"] is not None:
            verdict = "ok" if row["ratio"] >= target else "MISS"
            if verdict == "MISS":
                missed.append(
                    f"{row['workload']} on {row['dialect']}: {row['ratio']:.2f}x (target {target:.1f}x)"
                )
        line = (
            f"{row['workload']:<18}{row['dialect']:<11}{row['ours_steps']:>7.0f}"
            f"{num(row['ours_median_s']):>10}{num(row['ours_min_s']):>10}"
            f"{num(up):>10}{num(row['upstream_min_s']):>10}"
            f"{num(row['ratio'], 'x'):>8}{num(row['ratio_min'], 'x'):>8}"
            f"{(f'{target:.1f}x {verdict}' if target else ''):>10}"
            f"{num(row['ours_cpu_ms_per_step']):>10}{num(row['upstream_cpu_ms_per_step']):>7}"
        )
        if counted:
            line += f"{_per_step(raw, 'ours', row['dialect'], row['workload']):>16}"
            line += f"{_per_step(raw, 'upstream', row['dialect'], row['workload']):>16}"
        print(line)
    if counted:
        print(
            "st/co/rt per engine step (a process_one that handled a message), counted at the driver:"
            " statements, COMMITs, and round trips (PostgreSQL: statements + BEGINs + COMMITs/ROLLBACKs"
            " sent; SQLite: every statement, BEGIN and COMMIT run); the profile slows the runs"
        )
    errors: dict[tuple[str, str, str, str], int] = defaultdict(int)
    for r in raw:
        for e in r["engine_errors"]:
            errors[(r["side"], r["dialect"], e["type"], str(e["message"])[:120])] += e["count"]
    if errors:
        print("\nengine errors the runs logged or raised (rescheduled by the engine, not failed):")
        for (side, dialect, kind, message), count in errors.items():
            print(f"  {side} on {dialect}: {kind} x{count}: {message}")
    return missed
