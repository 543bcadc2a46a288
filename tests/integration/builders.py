"""Sample workflows and database inspection helpers for the store integration tests."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event, func, select, update

from stabilize.models import (
    JoinType,
    MultiInstanceConfig,
    PausedDetails,
    SplitType,
    StageExecution,
    SyntheticStageOwner,
    TaskExecution,
    Trigger,
    Workflow,
    WorkflowStatus,
    WorkflowType,
)
from stabilize.models.ids import new_id
from stabilize.persistence.sql.rows import (
    Base,
    ProcessedMessageRow,
    StageEdgeRow,
    StageRow,
    TaskRow,
    WorkflowRow,
)

#: JSON with nesting, unicode (including 4-byte characters), odd keys and numbers that every
#: dialect must give back exactly.
RICH_JSON: dict[str, Any] = {
    "text": "plain",
    "unicode": "日本語 ünïcødé 🚀 \u2028 \t tab \n newline \"quoted\" 'single' \\ backslash",
    "🔑 emoji key": {"nested": {"deeper": [1, [2, [3, {"x": "y"}]], {"empty": {}}]}},
    "": "empty key",
    "a.b": "dotted key",
    "$where": "dollar key",
    "numbers": [0, -1, 2**31, 2**53 + 1, 2**63 - 1, -(2**63), 2**70, 0.1, -2.5, 1e-7, 123456.789],
    "bools": [True, False, None],
    "empty_list": [],
    "empty_dict": {},
    "list_of_dicts": [{"a": 1}, {"b": [True, None]}, {}],
}


def task(name: str, **fields: Any) -> TaskExecution:
    made = TaskExecution.create(name, f"tasks.{name.title()}Task")
    for key, value in fields.items():
        setattr(made, key, value)
    return made


def stage(ref_id: str, requisites: set[str] | None = None, tasks: int = 0, **fields: Any) -> StageExecution:
    made = StageExecution.create("test", f"Stage {ref_id}", ref_id, requisite_stage_ref_ids=requisites)
    for i in range(tasks):
        made.add_task(task(f"{ref_id}-t{i}", stage_start=i == 0, stage_end=i == tasks - 1))
    for key, value in fields.items():
        setattr(made, key, value)
    return made


def workflow(*stages: StageExecution, application: str = "app", **fields: Any) -> Workflow:
    made = Workflow.create(application, "workflow", list(stages))
    for key, value in fields.items():
        setattr(made, key, value)
    return made


def chain(n_stages: int, n_tasks: int, application: str = "app") -> Workflow:
    """A linear DAG s0 <- s1 <- ... with ``n_tasks`` tasks per stage."""
    stages = [
        stage(f"s{i}", {f"s{i - 1}"} if i else None, tasks=n_tasks, context={"i": i}) for i in range(n_stages)
    ]
    return workflow(*stages, application=application)


def full_workflow() -> Workflow:
    """A workflow with every field set to a non-default value, synthetic stages and a DAG.

    Stage and task ids are created in one order and added in another, so order by id and order
    of addition differ.
    """
    ids = sorted(new_id() for _ in range(20))
    stage_ids = list(reversed(ids[:6]))  # stages added in descending id order
    task_ids = list(reversed(ids[6:]))

    build = StageExecution(
        id=stage_ids[0],
        ref_id="build",
        type="bake",
        name="Build ⚙",
        status=WorkflowStatus.SUCCEEDED,
        context={"image": "app:1.2", "rich": RICH_JSON},
        outputs={"artifacts": ["a.tar", "b.tar"], "digest": "sha256:abc"},
        start_time=1_700_000_000_000,
        end_time=1_700_000_060_000,
        start_time_expiry=1_700_000_900_000,
        scheduled_time=1_699_999_999_000,
        version=4,
        split_type=SplitType.OR,
        split_conditions={"test": "ctx.get('run_tests')", "deploy": "True"},
        mi_config=MultiInstanceConfig(count=3, sync_on_complete=False, join_threshold=2, allow_dynamic=True),
        deferred_choice_group="choice-ä",
        milestone_ref_id="approval",
        milestone_status="SUCCEEDED",
        mutex_key="mutex:db",
        cancel_region="region-1",
    )
    build.add_task(
        TaskExecution(
            id=task_ids[0],
            name="prepare",
            implementing_class="tasks.Prepare",
            status=WorkflowStatus.SUCCEEDED,
            start_time=1_700_000_000_001,
            end_time=1_700_000_000_002,
            stage_start=True,
            version=2,
        )
    )
    build.add_task(
        TaskExecution(
            id=task_ids[1],
            name="loop",
            implementing_class="tasks.Loop",
            status=WorkflowStatus.FAILED_CONTINUE,
            loop_start=True,
            loop_end=True,
            task_exception_details={
                "exception": {
                    "message": "boom ✗",
                    "type": "RuntimeError",
                    "stack": ["frame 1", "frame 2"],
                    "details": {"retryable": False, "attempt": 3, "codes": [1, [2, 3]]},
                }
            },
            version=1,
        )
    )
    build.add_task(
        TaskExecution(
            id=task_ids[2],
            name="finish",
            implementing_class="tasks.Finish",
            status=WorkflowStatus.SKIPPED,
            stage_end=True,
        )
    )
    test = StageExecution(
        id=stage_ids[1],
        ref_id="test",
        type="run",
        name="Test",
        status=WorkflowStatus.RUNNING,
        requisite_stage_ref_ids={"build"},
        context={"suite": ["unit", "integration"]},
    )
    test.add_task(TaskExecution(id=task_ids[3], name="run", implementing_class="tasks.Run", stage_start=True))
    deploy = StageExecution(
        id=stage_ids[2],
        ref_id="deploy",
        type="deploy",
        name="Deploy",
        status=WorkflowStatus.NOT_STARTED,
        requisite_stage_ref_ids={"build", "test", "approval"},
        join_type=JoinType.N_OF_M,
        join_threshold=2,
    )
    before = StageExecution(
        id=stage_ids[3],
        ref_id="deploy-before",
        type="check",
        name="Pre-check",
        parent_stage_id=deploy.id,
        synthetic_stage_owner=SyntheticStageOwner.STAGE_BEFORE,
        status=WorkflowStatus.BUFFERED,
    )
    before.add_task(TaskExecution(id=task_ids[4], name="check", implementing_class="tasks.Check"))
    after = StageExecution(
        id=stage_ids[4],
        ref_id="deploy-after",
        type="notify",
        name="Notify",
        parent_stage_id=deploy.id,
        synthetic_stage_owner=SyntheticStageOwner.STAGE_AFTER,
        status=WorkflowStatus.SUSPENDED,
    )
    approval = StageExecution(
        id=stage_ids[5], ref_id="approval", type="manual", name="Approval", status=WorkflowStatus.TERMINAL
    )

    return Workflow(
        id=new_id(),
        type=WorkflowType.ORCHESTRATION,
        application="billing",
        name="Release ✓ 2024",
        status=WorkflowStatus.RUNNING,
        # added in this order; ref ids and ids sort differently
        stages=[test, build, deploy, before, after, approval],
        context={"env": "prod", "rich": RICH_JSON},
        trigger=Trigger(
            type="webhook",
            user="ada@example.com",
            parameters={"branch": "main", "dry_run": False, "matrix": [["py3.11", "py3.12"], {"os": "🐧"}]},
            artifacts=[{"name": "a.tar", "size": 10, "meta": {"sha": "x"}}, {}],
            payload={"héllo": "wörld", "n": None, "list": [1, "two", 3.5]},
        ),
        start_time=1_700_000_000_000,
        end_time=1_700_000_100_000,
        start_time_expiry=1_700_001_000_000,
        is_canceled=True,
        canceled_by="bob",
        cancellation_reason="because\nit is 'late' — très",
        paused=PausedDetails(
            paused_by="carol", pause_time=1_700_000_010_000, resume_time=1_700_000_020_000, paused_ms=10_000
        ),
        pipeline_config_id="config-42",
        is_limit_concurrent=True,
        max_concurrent_executions=3,
        keep_waiting_pipelines=True,
        origin="api",
        config_version="v7",
        queue_table="queue_messages",
    )


# -- database inspection ---------------------------------------------------------------------


def snapshot(engine: Engine) -> dict[str, list[str]]:
    """Every row of every table, as sorted reprs: equal snapshots mean an unchanged database."""
    with engine.connect() as connection:
        return {
            table.name: sorted(repr(tuple(row)) for row in connection.execute(select(table)))
            for table in Base.metadata.sorted_tables
        }


def total_rows(engine: Engine) -> int:
    return sum(len(rows) for rows in snapshot(engine).values())


def workflow_rows(engine: Engine, workflow_id: str) -> dict[str, int]:
    """How many rows of each table belong to one workflow."""
    stage_ids = select(StageRow.id).where(StageRow.workflow_id == workflow_id)
    queries = {
        "workflows": select(func.count()).select_from(WorkflowRow).where(WorkflowRow.id == workflow_id),
        "stages": select(func.count()).select_from(StageRow).where(StageRow.workflow_id == workflow_id),
        "stage_edges": select(func.count())
        .select_from(StageEdgeRow)
        .where(StageEdgeRow.workflow_id == workflow_id),
        "tasks": select(func.count()).select_from(TaskRow).where(TaskRow.stage_id.in_(stage_ids)),
    }
    with engine.connect() as connection:
        return {name: int(connection.execute(query).scalar_one()) for name, query in queries.items()}


def stage_row_version(engine: Engine, stage_id: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(StageRow.version).where(StageRow.id == stage_id)).scalar_one())


def task_row_versions(engine: Engine, stage_id: str) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(select(TaskRow.id, TaskRow.version).where(TaskRow.stage_id == stage_id))
        return {task_id: version for task_id, version in rows}


def set_processed_at(engine: Engine, message_id: str, processed_at: int) -> None:
    with engine.begin() as connection:
        connection.execute(
            update(ProcessedMessageRow)
            .where(ProcessedMessageRow.message_id == message_id)
            .values(processed_at=processed_at)
        )


def set_paused(engine: Engine, workflow_id: str, paused: Mapping[str, Any]) -> None:
    with engine.begin() as connection:
        connection.execute(
            update(WorkflowRow).where(WorkflowRow.id == workflow_id).values(paused=dict(paused))
        )


@contextmanager
def count_statements(engine: Engine) -> Iterator[list[str]]:
    """Collect the SQL of every statement the engine sends while the block runs."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def back_references_ok(workflow: Workflow) -> bool:
    """Every stage points at the workflow and every task at its stage."""
    return all(s.execution is workflow and all(t.stage is s for t in s.tasks) for s in workflow.stages)
