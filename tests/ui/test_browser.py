"""The dashboard in Debian's Chromium (Playwright): follow a run from the runs page, see its DAG
drawn with one node per stage in the status colours, choose a stage, follow a dead letter to its
run, and watch a running run change without reloading. Waits are Playwright's own (auto-waiting
locators and ``expect``), never sleeps."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from stabilize.cli.render import COLOURS
from stabilize.models import WorkflowStatus
from stabilize.models.ids import now_ms
from tests.ui.builders import NASTY, dead_letter, finished_run, mixed_run, stored
from tests.ui.conftest import Served

S = WorkflowStatus


def drawn(page: Page) -> None:
    expect(page.locator("#dag")).to_have_attribute("data-drawn", "true")


def test_follow_a_run_and_see_its_dag_in_status_colours(
    served: Served, page: Page, artifacts: Path, dialect: str
) -> None:
    run, _ = stored(served.store, mixed_run(), finished_run("shop", now_ms() - 86_400_000))
    page.goto(served.base + "/runs")
    expect(page.locator("tr[data-run-id]")).to_have_count(2)
    page.locator(f'tr[data-run-id="{run.id}"] a.run-link').click()
    expect(page).to_have_url(f"{served.base}/runs/{run.id}")
    drawn(page)
    nodes = page.locator("#dag .dag-node")
    expect(nodes).to_have_count(len(run.stages))
    for stage in run.stages:
        node = page.locator(f'#dag .dag-node[data-stage-id="{stage.id}"]')
        expect(node).to_have_attribute("data-status", stage.status.name)
        expect(node.locator("rect")).to_have_attribute("fill", COLOURS[stage.status])
        assert node.locator("title").text_content().startswith(f"{stage.name} ({stage.ref_id})")
    expect(page.locator("#dag .dag-edge-dag")).to_have_count(4)
    expect(page.locator("#dag .dag-edge-synthetic")).to_have_count(1)
    # The synthetic 'before' stage is drawn beside its parent, on its left, with a dotted edge.
    check = next(s for s in run.stages if s.parent_stage_id)
    parent = page.locator('#dag .dag-node[data-ref-id="build"]').bounding_box()
    synthetic = page.locator(f'#dag .dag-synthetic[data-stage-id="{check.id}"]').bounding_box()
    assert synthetic is not None and parent is not None
    assert synthetic["x"] + synthetic["width"] < parent["x"]
    assert abs(synthetic["y"] - parent["y"]) < parent["height"]
    # The names are text: the run's <script> name is its heading, and no element came of it.
    expect(page.locator("#run-name")).to_have_text(NASTY)
    assert page.evaluate("document.querySelectorAll('img, script:not([src]):not([type])').length") == 0
    page.locator("#dag-fit").click()
    expect(page.locator("#dag-fit")).to_have_attribute("aria-pressed", "true")
    page.locator("#dag-fit").click()
    path = artifacts / f"run-page-{dialect}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000


def test_clicking_a_stage_shows_what_it_receives_from_its_ancestors(served: Served, page: Page) -> None:
    (run,) = stored(served.store, mixed_run())
    page.goto(f"{served.base}/runs/{run.id}")
    drawn(page)
    page.locator('#dag .dag-node[data-ref-id="deploy"]').click()
    expect(page).to_have_url(f"{served.base}/runs/{run.id}?stage=deploy#ancestors")
    expect(page.locator("#chosen-stage")).to_have_text("Deploy 'prod'")
    merged = page.locator("#ancestors pre.json")
    expect(merged).to_contain_text('"artifact": "app-1.0.tar"')
    expect(merged).to_contain_text('"lint": "failed"')
    expect(page.locator("#stage-choice")).to_have_value("deploy")


def test_follow_a_dead_letter_to_its_run(served: Served, page: Page) -> None:
    (run,) = stored(served.store, mixed_run())
    letter = dead_letter(served.queue, run, f"{NASTY}\nsecond line of the traceback")
    page.goto(served.base + "/queue")
    expect(page.locator('[data-field="dead_letters"]')).to_have_text("1")
    row = page.locator(f"#dead-letter-{letter}")
    row.locator("summary").click()
    expect(row.locator("pre.error-text")).to_have_text(f"{NASTY}\nsecond line of the traceback")
    row.locator("a.dead-letter-run").click()
    expect(page).to_have_url(f"{served.base}/runs/{run.id}")
    expect(page.locator("#run-name")).to_have_text(NASTY)
    drawn(page)


def test_a_running_run_refreshes_in_place_and_reloads_when_it_ends(served: Served, page: Page) -> None:
    (run,) = stored(served.store, mixed_run())
    page.goto(f"{served.base}/runs/{run.id}")
    drawn(page)
    page.evaluate("window.sameDocument = true")
    test = next(s for s in served.store.retrieve(run.id).stages if s.ref_id == "test")
    test.status, test.end_time = S.SUCCEEDED, now_ms()
    served.store.store_stage(test)
    node = page.locator(f'#dag .dag-node[data-stage-id="{test.id}"]')
    expect(node).to_have_attribute("data-status", "SUCCEEDED")
    expect(node.locator("rect")).to_have_attribute("fill", COLOURS[S.SUCCEEDED])
    expect(page.locator(f'#stage-{test.id} [data-field="status"] .status')).to_have_text("SUCCEEDED")
    assert page.evaluate("window.sameDocument") is True  # updated in place, not reloaded
    workflow = served.store.retrieve_execution_summary(run.id)
    workflow.status, workflow.end_time = S.TERMINAL, now_ms()
    served.store.update_status(workflow)
    expect(page.locator("#live")).to_have_count(0)  # the page reloaded once the run ended
    expect(page.locator('[data-field="run-status"] .status')).to_have_text("TERMINAL")
    assert page.evaluate("window.sameDocument === undefined")
    drawn(page)
