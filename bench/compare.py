"""How the ratios moved between two benchmark runs, per workload and dialect.

    .venv/bin/python bench/compare.py BEFORE.json AFTER.json            # every workload
    .venv/bin/python bench/compare.py BEFORE.json AFTER.json --only retrieve_stage,upstream_,is_processed

Both files come from ``bench/run.py --json PATH`` (an older run's plain list of raw results is read
too). For each workload and dialect it prints ours' median ops/s before and after, ours / upstream
before and after (upstream is run again in each run, so the ratio cancels most of the machine's
drift), and the change of the ratio (after / before; for MariaDB, ours alone, the change of ours'
ops/s). On a shared 2-core VM a ratio moves by up to a third between two runs of the same code:
``--threshold`` (default 0.33) marks only the changes beyond it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

Medians = dict[tuple[str, str, str], float]


def load(path: Path) -> tuple[dict[str, Any], Medians, list[tuple[str, str]]]:
    """A run's meta, the median ops/s per (side, dialect, workload), and its (dialect, workload)
    pairs in the order the run printed them."""
    document = json.loads(path.read_text())
    if isinstance(document, list):  # written before the file had a meta part
        document = {"meta": {}, "results": document}
    rates: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    order: list[tuple[str, str]] = []
    for result in document["results"]:
        seconds = result["seconds"]
        rates[(result["side"], result["dialect"], result["workload"])].append(
            result["ops"] / seconds if seconds else float("inf")
        )
        if result["side"] == "ours" and (result["dialect"], result["workload"]) not in order:
            order.append((result["dialect"], result["workload"]))
    medians = {key: statistics.median(values) for key, values in rates.items()}
    return document["meta"], medians, order


def describe(path: Path, meta: dict[str, Any]) -> str:
    if not meta:
        return f"{path}: (no meta)"
    dirty = " + uncommitted changes" if meta.get("library_dirty", meta.get("dirty")) else ""
    library = str(meta.get("library_commit") or meta.get("commit", "?"))[:10]
    return (
        f"{path}: library {library}{dirty} (bench {str(meta.get('commit', '?'))[:10]}),"
        f" {meta.get('started', '?')},"
        f" {meta.get('rounds', '?')} rounds{', small' if meta.get('small') else ''}"
    )


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--only", help="comma-separated workload name prefixes")
    parser.add_argument("--threshold", type=float, default=0.33, help="mark changes beyond this fraction")
    args = parser.parse_args(argv)
    meta_b, before, order_b = load(args.before)
    meta_a, after, order_a = load(args.after)
    prefixes = tuple(args.only.split(",")) if args.only else ()
    pairs = order_b + [p for p in order_a if p not in order_b]
    if prefixes:
        pairs = [p for p in pairs if p[1].startswith(prefixes)]
    print(f"before  {describe(args.before, meta_b)}")
    print(f"after   {describe(args.after, meta_a)}")
    header = (
        f"{'workload':<22}{'dialect':<11}{'ours before':>12}{'ours after':>12}{'ours chg':>10}"
        f"{'ratio before':>14}{'ratio after':>13}{'ratio chg':>11}"
    )
    print("\nops/s medians; ratio = ours / upstream of the same run; chg = after / before")
    print(header)
    print("-" * len(header))
    for dialect, name in pairs:
        ours_b, ours_a = before.get(("ours", dialect, name)), after.get(("ours", dialect, name))
        up_b, up_a = before.get(("upstream", dialect, name)), after.get(("upstream", dialect, name))
        ratio_b = ours_b / up_b if ours_b is not None and up_b else None
        ratio_a = ours_a / up_a if ours_a is not None and up_a else None
        ours_change = ours_a / ours_b if ours_a is not None and ours_b else None
        ratio_change = ratio_a / ratio_b if ratio_a is not None and ratio_b else None
        # Without upstream (MariaDB), ours' own ops/s is the only measure of a change.
        change = ratio_change if ratio_change is not None else ours_change
        mark = ""
        if change is not None and abs(change - 1) > args.threshold:
            mark = "  faster" if change > 1 else "  SLOWER"
        print(
            f"{name:<22}{dialect:<11}{fmt(ours_b):>12}{fmt(ours_a):>12}{times(ours_change):>10}"
            f"{times(ratio_b):>14}{times(ratio_a):>13}{times(ratio_change):>11}{mark}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
