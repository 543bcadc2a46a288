"""`make bench`: our store against upstream stabilize 0.33.1, side by side, plus the raw ceiling,
then upstream's engine end to end on its stores and on ours (``e2e.py``).

    .venv/bin/python bench/run.py                      # 3 rounds, SQLite (WAL) + PostgreSQL + MariaDB
    .venv/bin/python bench/run.py --rounds 5 --dialects sqlite
    .venv/bin/python bench/run.py --small --rounds 1   # smoke test: every workload and check, fast
    .venv/bin/python bench/run.py --only store         # the store section only (--only e2e: the engine)

Upstream runs in its own virtual environment (bench/.venv-upstream, created here on first use
with ``pip install stabilize==0.33.1`` and psycopg), each side in a subprocess of its own
interpreter, on a fresh database per side and round (a SQLite file with WAL, or a throw-away
PostgreSQL / MariaDB database, dropped afterwards). Rounds interleave the sides, rotating their
order each round. The table gives ops/s (median and min over rounds), the ratio ours / upstream
and, where measured, ours / the raw-driver ceiling. A workload whose answer is wrong fails the run.

``--json PATH`` also writes the run (its commit, settings, the table's rows and every raw result)
for ``bench/compare.py``, which prints how the ratios moved between two such files.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OURS_PY = Path(sys.executable)
UPSTREAM_VENV = BENCH / ".venv-upstream"
UPSTREAM_PY = UPSTREAM_VENV / "bin" / "python"
UPSTREAM_REQUIREMENTS = ["stabilize==0.33.1", "psycopg[binary]", "psycopg_pool"]
SIDE_TIMEOUT = 600
#: The bench's sections: the store and queue calls side by side, then upstream's engine end to end.
SECTIONS = ("store", "e2e")

sys.path.insert(0, str(BENCH))
import e2e  # noqa: E402
from databases import MYSQL_ADMIN, POSTGRES_ADMIN, Database, server_up  # noqa: E402
from workloads import CEILING_WORKLOADS, WORKLOADS  # noqa: E402

#: Targets from issue #5: ours / upstream at least this, per workload (default 1.0).
TARGETS = {
    "retrieve": 3.0,
    "page": 3.0,
    "page_status_filter": 3.0,
    "merge_chain_1000": 2.0,
    "merge_diamond_1000": 2.0,
    "merge_fanin_1000": 2.0,
}


def ensure_upstream_venv() -> None:
    check = [
        str(UPSTREAM_PY),
        "-c",
        "import importlib.metadata as m; assert m.version('stabilize') == '0.33.1'",
    ]
    if (
        UPSTREAM_PY.exists()
        and subprocess.run(check, capture_output=True, cwd=tempfile.gettempdir()).returncode == 0
    ):
        return
    print(
        f"creating {UPSTREAM_VENV.relative_to(ROOT)} with {' '.join(UPSTREAM_REQUIREMENTS)} ...", flush=True
    )
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(UPSTREAM_VENV)], check=True)
    pip = [str(UPSTREAM_PY), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *UPSTREAM_REQUIREMENTS], check=True)


# -- running sides ---------------------------------------------------------------------------------


def run_side(side: str, dialect: str, url: str, workloads: list[str], small: bool) -> list[dict[str, Any]]:
    python = UPSTREAM_PY if side == "upstream" else OURS_PY
    command = [str(python), str(BENCH / "driver.py"), "--side", side, "--dialect", dialect, "--url", url]
    command += ["--workloads", ",".join(workloads)] + (["--small"] if small else [])
    env = {**os.environ, "STABILIZE_SQLITE_JOURNAL_MODE": "WAL", "PYTHONHASHSEED": "0"}
    if side == "upstream":  # a PYTHONPATH naming this checkout would shadow upstream's package
        env.pop("PYTHONPATH", None)
    # cwd outside the repository: upstream's interpreter must import its own ``stabilize``.
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir(), timeout=SIDE_TIMEOUT
    )
    lines = done.stdout.strip().splitlines()
    out = json.loads(lines[-1]) if lines else {"error": f"no output, exit code {done.returncode}"}
    if "error" in out:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"{side} on {dialect} failed: {out['error']}")
    results: list[dict[str, Any]] = out["results"]
    return results


def memory_check(dialect: str, tmp: Path, stages: int) -> dict[str, Any] | None:
    with Database(dialect, tmp) as url:
        command = [str(OURS_PY), str(BENCH / "driver.py"), "--memory", "--url", url, "--stages", str(stages)]
        done = subprocess.run(
            command, capture_output=True, text=True, cwd=tempfile.gettempdir(), timeout=SIDE_TIMEOUT
        )
    lines = done.stdout.strip().splitlines()
    out = json.loads(lines[-1]) if lines else {"error": done.stderr[-2000:]}
    if "error" in out:
        raise SystemExit(f"memory check on {dialect} failed: {out['error']}")
    memory: dict[str, Any] = out["memory"]
    return memory


# -- table ------------------------------------------------------------------------------------------


def rate(result: dict[str, Any]) -> float:
    return float(result["ops"] / result["seconds"]) if result["seconds"] else float("inf")


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def summary(
    rates: dict[tuple[str, str, str], list[float]], dialects: list[str], names: list[str]
) -> list[dict[str, Any]]:
    """The table's rows, machine-readable: medians and minimums per side, ours / upstream."""
    rows = []
    for dialect in dialects:
        for name in names:
            if not rates.get(("ours", dialect, name)):
                continue
            row: dict[str, Any] = {"workload": name, "dialect": dialect}
            for side in ("ours", "upstream", "raw"):
                values = rates.get((side, dialect, name))
                row[f"{side}_median"] = statistics.median(values) if values else None
                row[f"{side}_min"] = min(values) if values else None
            up = row["upstream_median"]
            row["ratio"] = row["ours_median"] / up if up else None
            row["target"] = TARGETS.get(name, 1.0) if up else None
            rows.append(row)
    return rows


def print_queue_scaling(rates: dict[tuple[str, str, str], list[float]], dialects: list[str]) -> None:
    """Messages/s draining the queue with one consumer process, then with four."""
    lines = []
    for dialect in dialects:
        for side in ("ours", "upstream"):
            one = rates.get((side, dialect, "queue_drain_1"))
            four = rates.get((side, dialect, "queue_drain_4"))
            if one and four:
                m1, m4 = statistics.median(one), statistics.median(four)
                lines.append(
                    f"  {dialect:<11}{side:<9}1 consumer {fmt(m1):>8} msg/s   4 consumers {fmt(m4):>8} msg/s"
                    f"   ({m4 / m1:.2f}x)"
                )
    if lines:
        print("\nqueue drain (poll_one + ack), median over rounds: 1 vs 4 consumer processes")
        print("\n".join(lines))


def print_notes(notes: dict[tuple[str, str, str], str]) -> None:
    """What a side does differently from the contract but is not failed for (its own design)."""
    if notes:
        print("\nnotes (checked, not failed):")
        for (side, dialect, name), note in notes.items():
            print(f"  {name} on {dialect}, {side}: {note}")


def run_meta(args: argparse.Namespace) -> dict[str, Any]:
    """Where and how a run was made, to tell two JSON results apart."""

    def git(*command: str) -> str:
        done = subprocess.run(["git", "-C", str(ROOT), *command], capture_output=True, text=True)
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        # The last commit that changed the code measured (the bench itself may be newer).
        "library_commit": git("log", "-1", "--format=%H", "--", "stabilize", "migrations", "pyproject.toml"),
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "library_dirty": bool(git("status", "--porcelain", "--", "stabilize", "migrations")),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "rounds": args.rounds,
        "dialects": args.dialects.split(","),
        "small": args.small,
        "ceiling": not args.no_ceiling,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
    }


def print_table(
    rates: dict[tuple[str, str, str], list[float]], dialects: list[str], names: list[str]
) -> list[str]:
    """The table, and the workloads that missed a target."""
    missed: list[str] = []
    header = (
        f"{'workload':<22}{'dialect':<11}{'ours med':>10}{'ours min':>10}{'upstr med':>10}{'upstr min':>10}"
        f"{'ours/up':>9}{'(min)':>8}{'target':>8}{'ceil med':>10}{'ours/ceil':>10}"
    )
    print("\nops/s, median and min over rounds (higher is better)")
    print(header)
    print("-" * len(header))
    for dialect in dialects:
        for name in names:
            ours = rates.get(("ours", dialect, name))
            if not ours:
                continue
            up = rates.get(("upstream", dialect, name))
            ceil = rates.get(("raw", dialect, name))
            o_med, o_min = statistics.median(ours), min(ours)
            u_med, u_min = (statistics.median(up), min(up)) if up else (None, None)
            c_med = statistics.median(ceil) if ceil else None
            target = TARGETS.get(name, 1.0) if up else None
            verdict = ""
            if target is not None and u_med:
                met = o_med / u_med >= target
                verdict = "ok" if met else "MISS"
                if not met:
                    missed.append(f"{name} on {dialect}: {o_med / u_med:.2f}x (target {target:.1f}x)")
            print(
                f"{name:<22}{dialect:<11}{fmt(o_med):>10}{fmt(o_min):>10}{fmt(u_med):>10}{fmt(u_min):>10}"
                f"{ratio(o_med, u_med):>9}{ratio(o_min, u_min):>8}"
                f"{(f'{target:.0f}x ' + verdict) if target else '':>8}"
                f"{fmt(c_med):>10}{ratio(o_med, c_med):>10}"
            )
        sparse = [n for n in names if n.startswith("merge_sparse10_")]
        for name in sparse:
            size = name.rsplit("_", 1)[1]
            s, c = rates.get(("ours", dialect, name)), rates.get(("ours", dialect, f"merge_chain_{size}"))
            if s and c:
                factor = statistics.median(s) / statistics.median(c)
                verdict = "ok" if factor >= 10 else "MISS"
                if factor < 10:
                    missed.append(f"{name} vs merge_chain_{size} on {dialect}: {factor:.1f}x (target 10x)")
                print(
                    f"{'  10 ancestors vs chain':<33}ours: {factor:.1f}x faster than the"
                    f" {size}-ancestor chain"
                    f" (target 10x) {verdict}"
                )
    return missed


@dataclass
class StoreSection:
    """What the store section measured: raw results, the table's rows, notes, memory, misses."""

    results: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: dict[tuple[str, str, str], str] = field(default_factory=dict)
    memory: dict[str, Any] | None = None
    missed: list[str] = field(default_factory=list)


def run_store_section(args: argparse.Namespace, dialects: list[str], tmp: Path) -> StoreSection:
    """The store and queue workloads side by side, the raw ceiling and the memory check."""
    ensure_upstream_venv()
    wanted = args.workloads.split(",")
    out = StoreSection()
    rates: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    names: list[str] = []
    for round_no in range(1, args.rounds + 1):
        for dialect in dialects:
            sides = ["ours"]
            if dialect in ("sqlite", "postgresql"):
                sides.append("upstream")
                if not args.no_ceiling:
                    sides.append("raw")
            shift = (round_no - 1) % len(sides)
            for side in sides[shift:] + sides[:shift]:
                chosen = [w for w in wanted if side != "raw" or w in CEILING_WORKLOADS]
                if not chosen:
                    continue
                t0 = time.monotonic()
                with Database(dialect, tmp) as url:
                    results = run_side(side, dialect, url, chosen, args.small)
                print(f"round {round_no} {dialect:<10} {side:<8} {time.monotonic() - t0:6.1f} s", flush=True)
                for result in results:
                    rates[(side, dialect, result["workload"])].append(rate(result))
                    out.results.append({"round": round_no, "side": side, "dialect": dialect, **result})
                    if "note" in result:
                        out.notes[(side, dialect, result["workload"])] = result["note"]
                    if result["workload"] not in names:
                        names.append(result["workload"])
    out.missed = print_table(rates, dialects, names)
    out.rows = summary(rates, dialects, names)
    print_queue_scaling(rates, dialects)
    print_notes(out.notes)
    if not args.no_memory:
        stages = 1000 if args.small else 10_000
        out.memory = memory = memory_check("sqlite", tmp, stages)
        if memory is not None:
            verdict = "ok" if memory["peak_mb"] < 200 else "MISS"
            if verdict == "MISS":
                out.missed.append(f"memory: {memory['peak_mb']:.0f} MB peak RSS (target < 200 MB)")
            print(
                f"\nmemory (ours, SQLite): store + retrieve one {stages:,}-stage workflow: peak RSS "
                f"{memory['peak_mb']:.0f} MB (after start-up {memory['baseline_mb']:.0f} MB;"
                f" target < 200 MB) "
                f"{verdict}; store {memory['store_s']:.2f} s, retrieve {memory['retrieve_s']:.2f} s"
            )
    print(
        "\nall answers checked: round trips, merged outputs, pages, queue (no duplicate, no loss),"
        " retrieve_stage's partial workflow, lineage, processed marks"
    )
    return out


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dialects", default="sqlite,postgresql,mysql")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument(
        "--only", choices=SECTIONS, help="run one section: store (store and queue calls) or e2e (the engine)"
    )
    parser.add_argument("--no-ceiling", action="store_true", help="skip the raw-driver ceiling")
    parser.add_argument("--no-memory", action="store_true", help="skip the 10,000-stage memory check")
    parser.add_argument("--small", action="store_true", help="smoke-test sizes")
    parser.add_argument(
        "--e2e-profile",
        type=Path,
        metavar="DIR",
        help="e2e: count SQL statements and commits per engine step, cProfile worker 0 into DIR"
        " (slows the runs: for diagnosis, not for ratios)",
    )
    parser.add_argument(
        "--json", type=Path, help="also write the run here (meta, table rows, raw results), for compare.py"
    )
    args = parser.parse_args()
    began = time.monotonic()
    meta = run_meta(args)
    sections = [args.only] if args.only else list(SECTIONS)
    dialects = [
        d
        for d in args.dialects.split(",")
        if d == "sqlite" or server_up(POSTGRES_ADMIN if d == "postgresql" else MYSQL_ADMIN)
    ]
    store = StoreSection()
    e2e_results: list[dict[str, Any]] = []
    missed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="stabilize-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if "store" in sections:
            store = run_store_section(args, dialects, tmp)
            missed += store.missed
        if "e2e" in sections:
            e2e_results, e2e_missed = e2e.run(dialects, args.rounds, args.small, tmp, args.e2e_profile)
            missed += e2e_missed
            print("\nend-to-end answers checked: every stage SUCCEEDED with the trail its data flow gives")
    print("below target: " + ("; ".join(missed) if missed else "none"))
    print(f"total time {time.monotonic() - began:.0f} s")
    if args.json:
        meta["seconds"] = round(time.monotonic() - began, 1)
        meta["loadavg_end"] = os.getloadavg()
        document = {
            "meta": meta,
            "summary": store.rows,
            "e2e_summary": e2e.summary(e2e_results, dialects),
            "memory": store.memory,
            "below_target": missed,
            "notes": [
                {"side": k[0], "dialect": k[1], "workload": k[2], "note": v} for k, v in store.notes.items()
            ],
            "results": store.results + e2e_results,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=1) + "\n")
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
