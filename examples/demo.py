"""The main job, small: store a fan-out / fan-in workflow, run it step by step through atomic
store + queue transactions, and print what the database holds at the end.

    python examples/demo.py --url sqlite:///stabilize.db
"""

from __future__ import annotations

import argparse

from stabilize.models import StageExecution, SyntheticStageOwner, TaskExecution, Workflow, WorkflowStatus
from stabilize.models.ids import now_ms
from stabilize.persistence import StoreTransaction, create_queue, create_repository
from stabilize.persistence.sql.engine import mask
from stabilize.queue.messages import CompleteStage, StartStage


def build_workflow() -> Workflow:
    """fetch -> (resize, thumbnail) -> publish, with a synthetic 'validate' before fetch."""
    fetch = StageExecution.create("fetch", "Fetch images", "fetch")
    resize = StageExecution.create("resize", "Resize", "resize", requisite_stage_ref_ids={"fetch"})
    thumb = StageExecution.create("thumbnail", "Thumbnails", "thumbnail", requisite_stage_ref_ids={"fetch"})
    publish = StageExecution.create(
        "publish", "Publish", "publish", requisite_stage_ref_ids={"resize", "thumbnail"}
    )
    validate = StageExecution.create_synthetic(
        "validate", "Validate input", fetch, SyntheticStageOwner.STAGE_BEFORE
    )
    stages = [fetch, validate, resize, thumb, publish]
    for stage in stages:
        stage.add_task(TaskExecution.create(f"{stage.type}-task", f"demo.{stage.type}", True, True))
    return Workflow.create("demo", "image pipeline", stages)


OUTPUTS = {
    "validate": {"checked": True},
    "fetch": {"images": ["a.png", "b.png"], "source": "s3://bucket"},
    "resize": {"images": ["a@2x.png"], "size": 1024},
    "thumbnail": {"images": ["a-thumb.png"], "size": 128},
    "publish": {"url": "https://example.invalid/gallery"},
}


def run(url: str) -> None:
    store = create_repository(url, create_tables=True)
    queue = create_queue(url)
    workflow = build_workflow()
    store.store(workflow)
    print(f"stored workflow {workflow.id} with {len(workflow.stages)} stages in {mask(url)}")

    workflow.status, workflow.start_time = WorkflowStatus.RUNNING, now_ms()
    with store.transaction(queue) as txn:
        txn.update_workflow_status(workflow)
        for stage in workflow.initial_stages():
            txn.push_message(StartStage(execution_id=workflow.id, stage_id=stage.id))

    # Each step: claim a message, do the stage's work, and commit the stage, the next messages and
    # the processed mark together. A crash anywhere re-runs a step at most, never loses one.
    while (message := queue.poll_one()) is not None:
        if store.is_message_processed(message.message_id):
            queue.ack(message)
            continue
        assert isinstance(message, StartStage | CompleteStage)
        stage = store.retrieve_stage(message.stage_id)
        with store.transaction(queue) as txn:
            if isinstance(message, StartStage) and stage.status is WorkflowStatus.NOT_STARTED:
                for before in stage.before_stages():
                    _finish(txn, before)
                inputs = store.get_merged_ancestor_outputs(workflow.id, stage.ref_id)
                stage.outputs = {**OUTPUTS[stage.ref_id], "inputs": inputs}
                _finish(txn, stage)
                txn.push_message(CompleteStage(execution_id=workflow.id, stage_id=stage.id))
            elif isinstance(message, CompleteStage):
                current = store.retrieve(workflow.id)
                for downstream in current.stage_by_id(stage.id).downstream_stages():
                    if downstream.all_upstream_stages_complete():
                        txn.push_message(StartStage(execution_id=workflow.id, stage_id=downstream.id))
            txn.mark_message_processed(message.message_id, type(message).__name__, workflow.id)
        queue.ack(message)

    done = store.retrieve(workflow.id)
    done.status, done.end_time = WorkflowStatus.SUCCEEDED, now_ms()
    store.update_status(done)
    for stage in done.stages:
        waits = sorted(stage.requisite_stage_ref_ids)
        print(f"  {stage.ref_id:10} {stage.status.name:10} v{stage.version} waits for {waits}")
    print("merged outputs seen by 'publish':", store.get_merged_ancestor_outputs(workflow.id, "publish"))


def _finish(txn: StoreTransaction, stage: StageExecution) -> None:
    phase = stage.status.name
    stage.status = WorkflowStatus.SUCCEEDED
    for task in stage.tasks:
        task.status = WorkflowStatus.SUCCEEDED
    stage.start_time = stage.end_time = now_ms()
    txn.store_stage(stage, expected_phase=phase)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="sqlite:///stabilize.db")
    run(parser.parse_args().url)
