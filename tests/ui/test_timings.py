"""A run of 150 stages in Chromium: every stage drawn, and the page's timings measured into
``build/ui-artifacts/timings-<dialect>.json`` (reported, never asserted: a shared 2-core machine's
timings are no test). Two shapes: 15 layers of 10 stages (plus a synthetic stage per layer), and
the demo's fan-out / fan-in, where 148 stages share one layer."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from stabilize.models import WorkflowStatus
from stabilize.runner.demo import demo_workflow
from tests.ui.builders import layered_run, stored
from tests.ui.conftest import Served

LOADS = 5

MEASURE = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const dag = document.getElementById("dag");
  return {
    server_ms: nav.serverTiming.find((t) => t.name === "app").duration,
    response_end_ms: nav.responseEnd,
    dom_content_loaded_ms: nav.domContentLoadedEventEnd,
    dag_drawn_ms: performance.getEntriesByName("dag-drawn")[0].startTime,
    layout_ms: Number(dag.dataset.layoutMs),
    draw_ms: Number(dag.dataset.drawMs),
    html_bytes: nav.encodedBodySize,
  };
}"""


def measure(page: Page, url: str, stages: int, edges: int) -> list[dict[str, Any]]:
    loads = []
    for _ in range(LOADS):
        page.goto(url)
        expect(page.locator("#dag")).to_have_attribute("data-drawn", "true")
        expect(page.locator("#dag .dag-node")).to_have_count(stages)
        expect(page.locator("#dag .dag-edge")).to_have_count(edges)
        loads.append(page.evaluate(MEASURE))
    return loads


def summary(loads: list[dict[str, Any]]) -> dict[str, float]:
    return {key: round(statistics.median(load[key] for load in loads), 1) for key in loads[0]}


def test_a_run_of_150_stages_is_drawn_and_its_timings_recorded(
    served: Served, page: Page, artifacts: Path, dialect: str
) -> None:
    layered = layered_run(150)
    fan = demo_workflow(150)
    fan.status = WorkflowStatus.SUCCEEDED
    stored(served.store, layered, fan)
    report: dict[str, Any] = {"dialect": dialect, "loads": LOADS}
    for label, run in (("layered", layered), ("fan_out", fan)):
        edges = sum(len(s.requisite_stage_ref_ids) for s in run.stages) + sum(
            1 for s in run.stages if s.parent_stage_id
        )
        loads = measure(page, f"{served.base}/runs/{run.id}", len(run.stages), edges)
        report[label] = {"stages": len(run.stages), "edges": edges, "median": summary(loads), "each": loads}
    page.screenshot(path=str(artifacts / f"run-150-{dialect}.png"))
    (artifacts / f"timings-{dialect}.json").write_text(json.dumps(report, indent=2))
    assert report["layered"]["stages"] == 165 and report["fan_out"]["stages"] == 151
