"""One side, one database, one round: run the workloads and print their results as JSON.

    <python> bench/driver.py --side ours|upstream|raw --dialect sqlite|postgresql|mysql --url URL
    <python> bench/driver.py --memory --url URL --stages 10000

``run.py`` starts this in the side's own interpreter (ours: .venv; upstream: bench/.venv-upstream)
on a fresh database and reads the last line of its output. ``--memory`` stores and retrieves one
large workflow with our store and reports the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import traceback

import workloads


def memory(url: str, stages: int) -> dict[str, object]:
    from stabilize.persistence.sql.store import SqlWorkflowStore

    store = SqlWorkflowStore(url, create_tables=True)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workflow = workloads.make_workflow("memory", 0, stages, 2)
    began = time.perf_counter()
    store.store(workflow)
    stored = time.perf_counter() - began
    expected = workloads.canonical(workflow)
    del workflow
    began = time.perf_counter()
    loaded = store.retrieve(expected[0])
    retrieved = time.perf_counter() - began
    workloads.check(workloads.canonical(loaded) == expected, "the large workflow did not round-trip")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "stages": stages,
        "baseline_mb": baseline,
        "peak_mb": peak,
        "store_s": stored,
        "retrieve_s": retrieved,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", choices=["ours", "upstream", "raw"], default="ours")
    parser.add_argument("--dialect", choices=["sqlite", "postgresql", "mysql"], default="sqlite")
    parser.add_argument("--url", required=True)
    parser.add_argument("--workloads", default=",".join(workloads.WORKLOADS))
    parser.add_argument("--small", action="store_true", help="smoke-test sizes")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--stages", type=int, default=10_000)
    args = parser.parse_args()
    try:
        if args.memory:
            out: dict[str, object] = {"memory": memory(args.url, args.stages)}
        else:
            from adapters import open_side

            side = open_side(args.side, args.dialect, args.url)
            sizes = workloads.Sizes.small() if args.small else workloads.Sizes()
            out = {"results": workloads.run(side, sizes, args.workloads.split(","))}
    except Exception as exc:
        traceback.print_exc()
        out = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.flush()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
