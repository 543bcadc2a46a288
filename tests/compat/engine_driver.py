"""Runs workflows through upstream Stabilize 0.33.1's own engine; executed by upstream's interpreter.

    tests/compat/.venv-upstream/bin/python tests/compat/engine_driver.py SPEC.json

``upstream_env.run_side`` writes the spec and reads the results; run this by hand only to debug.
Side ``upstream`` imports the installed package (upstream's store and queue); side ``ours`` runs
with the overlay first on ``PYTHONPATH``, so the same lines below open our store and queue (only
the schema step differs: upstream's SQL migrations or its queue's ``_create_table`` on its side,
our migrations through ``create_repository(url, create_tables=True)`` on ours). The workflows use
upstream's public engine API only: ``Orchestrator`` (``start``, ``unpause``),
``QueueProcessor.process_one``, ``TaskRegistry``, ``register_builder``, ``hitl.send_signal``, and
the store's ``pause``, ``retrieve``, ``retrieve_execution_summary`` and
``get_merged_ancestor_outputs`` to watch and read the outcome.

Each workflow gets its own empty database. The processor is stepped with ``process_one`` until
the workflow is complete, at most ``max_steps`` times: when nothing is due, the workflow's own
intervention runs (unpause a paused run, send the signal a waiting stage expects), and after
``IDLE_LIMIT`` idle polls with nothing left to do the run counts as stalled. Every delay of the
engine is configured to zero, so nothing waits for a clock. The result records how the workflow
ended (``outcome``, the part both sides must agree on) and, apart from it, every error the
engine raised or logged, with the frames that raised it, each marked ``ours`` or ``upstream``.

The spec: ``{"side", "dialect", "max_steps", "output", "overlay", "runs": [{"workflow", "url"}]}``.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

#: Consecutive polls that found nothing due, with no intervention left, before a run is stalled.
IDLE_LIMIT = 25
#: Distinct engine errors kept per workflow (each with a count).
ERRORS_KEPT = 30

OURS_MODULES: set[str] = set()
OVERLAY_ROOT: Path | None = None


# -- recording what went wrong ----------------------------------------------------------------------


def _origin(filename: str) -> str:
    """``[ours] stabilize/queue/sql.py`` / ``[upstream] stabilize/handlers/base.py`` / ``[lib] ...``."""
    path = Path(filename)
    parts = path.parts
    if path.name == Path(__file__).name:
        return "[driver] engine_driver.py"
    if "stabilize" not in parts:
        tail = "/".join(parts[-3:])
        return f"[lib] {tail}"
    index = len(parts) - 1 - parts[::-1].index("stabilize")
    rel = "/".join(parts[index:])
    module = rel.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
    inside_overlay = OVERLAY_ROOT is not None and str(path).startswith(str(OVERLAY_ROOT))
    who = "ours" if inside_overlay and module in OURS_MODULES else "upstream"
    return f"[{who}] {rel}"


def frames_of(exc: BaseException) -> list[str]:
    """The traceback of ``exc`` (and its cause), innermost last, one line per frame."""
    lines = []
    for frame in traceback.extract_tb(exc.__traceback__):
        lines.append(f"{_origin(frame.filename)}:{frame.lineno} in {frame.name}")
    return lines


def describe(exc: BaseException, where: str) -> dict[str, Any]:
    cause = exc.__cause__ or exc.__context__
    return {
        "where": where,
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": str(exc)[:800],
        "frames": frames_of(exc)[-14:],
        "cause": None if cause is None else f"{type(cause).__qualname__}: {str(cause)[:400]}",
    }


class ErrorLog(logging.Handler):
    """Errors the engine logs (handlers catch many and log them) plus those ``process_one`` raises,
    de-duplicated by type, message and raising frame."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.errors: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.warnings: dict[str, int] = {}
        #: Exceptions already counted (the processor logs one, then ``process_one`` re-raises it).
        self._seen: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.add(record.exc_info[1], f"logged by {record.name}")
        elif record.levelno >= logging.ERROR:
            key = ("log", record.getMessage()[:300], record.name)
            self._count(key, {"where": f"logged by {record.name}", "type": "log", "message": key[1]})
        else:
            text = f"{record.name}: {record.getMessage()[:300]}"
            self.warnings[text] = self.warnings.get(text, 0) + 1

    def add(self, exc: BaseException, where: str) -> None:
        if any(exc is seen for seen in self._seen):
            return
        self._seen.append(exc)
        described = describe(exc, where)
        top = described["frames"][-1] if described["frames"] else ""
        self._count((described["type"], described["message"][:300], top), described)

    def _count(self, key: tuple[str, str, str], described: dict[str, Any]) -> None:
        if key in self.errors:
            self.errors[key]["count"] += 1
        elif len(self.errors) < ERRORS_KEPT:
            self.errors[key] = {**described, "count": 1}

    def reset(self) -> None:
        self.errors = {}
        self.warnings = {}
        self._seen = []


# -- the engine, opened on one database ---------------------------------------------------------------


@dataclass
class Engine:
    """Upstream's engine on one side's store and queue."""

    store: Any
    queue: Any
    processor: Any
    orchestrator: Any


def apply_upstream_migrations(url: str) -> None:
    """Upstream's PostgreSQL schema as it ships it: its SQL migrations' "up" parts, in order."""
    import psycopg
    from stabilize.cli.migrations import extract_up_migration, get_migrations

    with psycopg.connect(url) as conn:
        for _name, content in get_migrations():
            conn.execute(extract_up_migration(content))
        conn.commit()


def create_schema(side: str, dialect: str, url: str) -> None:
    """The schema of an empty database, each side its own way (once per database: upstream's
    PostgreSQL migrations are not re-runnable)."""
    if side == "upstream" and dialect == "postgresql":
        apply_upstream_migrations(url)
    elif side == "ours" and dialect in ("postgresql", "mariadb"):
        from stabilize.persistence import create_repository

        # Ours: the schema is our migrations, applied by the dialect-neutral entry point.
        create_repository(url, create_tables=True).close()
    elif dialect == "sqlite":
        store, queue = open_store_and_queue(side, dialect, url, create=True)
        close_engine(Engine(store, queue, None, None))


def open_store_and_queue(side: str, dialect: str, url: str, *, create: bool = True) -> tuple[Any, Any]:
    """The store and queue opened as upstream's users do; with ``create``, on an empty database,
    the schema first (``create_schema``)."""
    if create and dialect != "sqlite":
        create_schema(side, dialect, url)
    if dialect == "sqlite":
        from stabilize.persistence.sqlite import SqliteWorkflowStore
        from stabilize.queue.sqlite import SqliteQueue

        store = SqliteWorkflowStore(connection_string=url, create_tables=create)
        queue = SqliteQueue(connection_string=url, table_name="queue_messages")
        if side == "upstream" and create:
            queue._create_table()  # upstream's SQLite queue makes its own table
        return store, queue
    if dialect == "postgresql":
        from stabilize.persistence.postgres import PostgresWorkflowStore
        from stabilize.queue.postgres import PostgresQueue

        return (
            PostgresWorkflowStore(connection_string=url),
            PostgresQueue(connection_string=url, table_name="queue_messages"),
        )
    if side != "ours":
        raise ValueError(f"upstream has no {dialect} store")
    from stabilize.persistence import create_queue, create_repository

    return create_repository(url), create_queue(url)


def open_engine(side: str, dialect: str, url: str, registry: Any, *, create: bool = True) -> Engine:
    """Upstream's processor and orchestrator on the side's store and queue, every engine delay
    zero; ``create`` as for ``open_store_and_queue``."""
    from stabilize.orchestrator import Orchestrator
    from stabilize.queue.processor import QueueProcessor, QueueProcessorConfig
    from stabilize.resilience.config import HandlerConfig

    store, queue = open_store_and_queue(side, dialect, url, create=create)
    # Every delay the engine would wait is zero: a run is a sequence of steps, not of seconds.
    handler_config = HandlerConfig(
        concurrency_min_delay_ms=0,
        concurrency_max_delay_ms=0,
        error_handling_min_delay_ms=0,
        error_handling_max_delay_ms=0,
        task_backoff_min_delay_ms=0,
        task_backoff_max_delay_ms=0,
        handler_retry_delay_seconds=0.0,
    )
    config = QueueProcessorConfig(retry_delay=timedelta(0), dlq_check_interval_seconds=0.0)
    processor = QueueProcessor(
        queue, config=config, store=store, handler_config=handler_config, task_registry=registry
    )
    return Engine(store, queue, processor, Orchestrator(queue, store=store))


def close_engine(engine: Engine) -> None:
    for thing in (engine.queue, engine.store):
        close = getattr(thing, "close", None)
        if close is not None:
            close()


# -- tasks and stage builders (registered in upstream's registries) ------------------------------------

STORE: dict[str, Any] = {}


def _visible(context: dict[str, Any]) -> dict[str, Any]:
    """The stage context a task saw, without the engine's own bookkeeping keys."""
    return {k: context[k] for k in sorted(context) if not k.startswith("_")}


def make_tasks() -> dict[str, Any]:
    from stabilize.tasks.interface import RetryableTask, Task
    from stabilize.tasks.result import TaskResult

    from stabilize.errors import TransientError
    from stabilize.models.status import WorkflowStatus

    class Step(Task):
        """Appends its stage's name to ``trail``, names itself the ``winner`` and records what
        its context held (ancestor outputs hydrated by the engine). Names, not ref ids: a
        synthetic stage's ref id is generated anew in every run."""

        def execute(self, stage: Any) -> TaskResult:
            trail = list(stage.context.get("trail") or [])
            return TaskResult.success(
                outputs={
                    "trail": [*trail, stage.name],
                    "winner": stage.name,
                    f"{stage.name}_saw": _visible(stage.context),
                }
            )

    class Flaky(RetryableTask):
        """Fails with a transient error twice (counting in the context the engine keeps across
        retries), then succeeds."""

        def get_timeout(self) -> timedelta:
            return timedelta(hours=1)

        def get_backoff_period(self, stage: Any, duration: timedelta) -> timedelta:
            return timedelta(0)

        def execute(self, stage: Any) -> TaskResult:
            failures = int(stage.context.get("failures", 0))
            if failures < 2:
                raise TransientError(
                    f"flaky failure {failures + 1}", context_update={"failures": failures + 1}
                )
            return TaskResult.success(outputs={"failures_before_success": failures})

    class Exclusive(Task):
        """Records whether the other stage holding the same mutex was RUNNING meanwhile."""

        def execute(self, stage: Any) -> TaskResult:
            other = "right" if stage.ref_id == "left" else "left"
            workflow = STORE["store"].retrieve(stage.execution.id)
            sibling = next(s for s in workflow.stages if s.ref_id == other)
            overlap = sibling.status == WorkflowStatus.RUNNING
            return TaskResult.success(outputs={f"{stage.ref_id}_overlapped": overlap})

    class AwaitSignal(Task):
        """Waits (SUSPENDED) for the ``approve`` signal, then passes its data on."""

        def execute(self, stage: Any) -> TaskResult:
            if stage.context.get("_signal_name") == "approve":
                data = dict(stage.context.get("_signal_data") or {})
                return TaskResult.success(outputs={"approved_by": data.get("user"), "signal": data})
            return TaskResult.suspend()

    return {
        "compat.step": Step,
        "compat.flaky": Flaky,
        "compat.exclusive": Exclusive,
        "compat.await": AwaitSignal,
    }


def register_builders() -> None:
    from stabilize.stages.builder import StageDefinitionBuilder, register_builder

    from stabilize.models.stage import StageExecution, SyntheticStageOwner
    from stabilize.models.task import TaskExecution

    class Guarded(StageDefinitionBuilder):
        """A stage type planned with a synthetic ``prepare`` stage before its own tasks."""

        @property
        def type(self) -> str:
            return "compat_guarded"

        def before_stages(self, stage: Any, graph: Any) -> None:
            prepare = StageExecution.create_synthetic(
                type="compat_prepare",
                name="prepare",
                parent=stage,
                owner=SyntheticStageOwner.STAGE_BEFORE,
                context={"prepared_for": stage.ref_id},
            )
            graph.add(prepare)

    class Prepare(StageDefinitionBuilder):
        """The synthetic stage's tasks, built by the engine when it plans it."""

        @property
        def type(self) -> str:
            return "compat_prepare"

        def build_tasks(self, stage: Any) -> list[Any]:
            return [TaskExecution.create("prepare", "compat.step", stage_start=True, stage_end=True)]

    register_builder(Guarded())
    register_builder(Prepare())


def build_registry(extra: dict[str, Any] | None = None) -> Any:
    """Upstream's ``TaskRegistry`` with the driver's tasks (and ``extra`` ones, by name), and the
    driver's stage builders registered."""
    from stabilize.tasks.registry import TaskRegistry

    registry = TaskRegistry()
    for task_name, task in {**make_tasks(), **(extra or {})}.items():
        registry.register(task_name, task)
    register_builders()
    return registry


# -- the workflows --------------------------------------------------------------------------------------


@dataclass
class Run:
    """One workflow run: the engine, the workflow and what the driver did or saw on the way."""

    engine: Engine
    workflow: Any
    companions: list[Any] = field(default_factory=list)
    observations: dict[str, Any] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)

    def stage(self, current: Any, ref_or_name: str) -> Any:
        return next(s for s in current.stages if ref_or_name in (s.ref_id, s.name))


@dataclass
class WorkflowSpec:
    """How to build a workflow, and the driver's part while it runs."""

    build: Callable[[], Any]
    #: Called after every processed message (True: it intervened).
    after_step: Callable[[Run], bool] | None = None
    #: Called when nothing is due and the workflow is not complete (True: it intervened).
    on_idle: Callable[[Run, Any], bool] | None = None
    #: Called once after ``Orchestrator.start``.
    on_start: Callable[[Run], None] | None = None
    #: Further workflows started right after the first one; the run ends when all are complete.
    companions: Callable[[], list[Any]] | None = None


def _stage(
    ref: str, requisites: set[str] | None = None, task: str = "compat.step", type_: str = "compat"
) -> Any:
    from stabilize.models.stage import StageExecution
    from stabilize.models.task import TaskExecution

    stage = StageExecution.create(
        type_, ref, ref, context={"input": ref}, requisite_stage_ref_ids=requisites or set()
    )
    stage.tasks.append(TaskExecution.create(f"{ref}-task", task, stage_start=True, stage_end=True))
    return stage


def _workflow(name: str, stages: list[Any]) -> Any:
    from stabilize.models.workflow import Workflow

    return Workflow.create("compat", name, stages)


def linear_chain() -> Any:
    return _workflow("linear_chain", [_stage("a"), _stage("b", {"a"}), _stage("c", {"b"})])


def diamond() -> Any:
    return _workflow(
        "diamond", [_stage("a"), _stage("b", {"a"}), _stage("c", {"a"}), _stage("d", {"b", "c"})]
    )


def synthetic_before() -> Any:
    from stabilize.models.stage import StageExecution
    from stabilize.models.task import TaskExecution

    guarded = StageExecution.create("compat_guarded", "deploy", "deploy", context={"input": "deploy"})
    guarded.tasks.append(TaskExecution.create("deploy-task", "compat.step", stage_start=True, stage_end=True))
    return _workflow(
        "synthetic_before",
        [_stage("build"), _with_requisites(guarded, {"build"}), _stage("verify", {"deploy"})],
    )


def _with_requisites(stage: Any, requisites: set[str]) -> Any:
    stage.requisite_stage_ref_ids = set(requisites)
    return stage


def retry() -> Any:
    return _workflow(
        "retry", [_stage("start"), _stage("flaky", {"start"}, task="compat.flaky"), _stage("end", {"flaky"})]
    )


def mutex() -> Any:
    left = _stage("left", task="compat.exclusive")
    right = _stage("right", task="compat.exclusive")
    left.mutex_key = "shared"
    right.mutex_key = "shared"
    return _workflow("mutex", [left, right, _stage("join", {"left", "right"})])


def pause_after_first(run: Run) -> bool:
    """Pause the run (the store's ``pause``, as an operator does) once stage ``a`` has succeeded."""
    if "paused" in run.done:
        return False
    from stabilize.models.status import WorkflowStatus

    current = run.engine.store.retrieve(run.workflow.id)
    if run.stage(current, "a").status != WorkflowStatus.SUCCEEDED:
        return False
    run.done.add("paused")
    run.engine.store.pause(run.workflow.id, "compat-operator")
    return True


def unpause_when_parked(run: Run, current: Any) -> bool:
    """Once the paused run has nothing left to do, note how it stands and unpause it."""
    from stabilize.models.status import WorkflowStatus

    if "paused" not in run.done or "unpaused" in run.done or current.status != WorkflowStatus.PAUSED:
        return False
    run.done.add("unpaused")
    run.observations["while_paused"] = {
        "workflow": current.status.name,
        "stages": {s.name: s.status.name for s in current.stages},
        "paused_by": current.paused.paused_by if current.paused else None,
    }
    run.engine.orchestrator.unpause(current)
    return True


def pause_resume() -> Any:
    return _workflow("pause_resume", [_stage("a"), _stage("b", {"a"}), _stage("c", {"b"})])


def signal_workflow(name: str) -> Callable[[], Any]:
    def build() -> Any:
        return _workflow(
            name,
            [
                _stage("request"),
                _stage("approval", {"request"}, task="compat.await"),
                _stage("after", {"approval"}),
            ],
        )

    return build


def _send_signal(run: Run, persistent: bool) -> None:
    from stabilize.hitl import send_signal

    approval = run.stage(run.workflow, "approval")
    send_signal(
        run.engine.queue,
        run.workflow.id,
        approval.id,
        "approve",
        {"user": "alice", "ticket": 7},
        persistent=persistent,
        store=run.engine.store,
        user="alice",
    )


def signal_when_waiting(run: Run, current: Any) -> bool:
    """A transient signal, sent once the approval stage is SUSPENDED waiting for it."""
    from stabilize.models.status import WorkflowStatus

    if "signalled" in run.done or run.stage(current, "approval").status != WorkflowStatus.SUSPENDED:
        return False
    run.done.add("signalled")
    run.observations["signalled_when"] = run.stage(current, "approval").status.name
    _send_signal(run, persistent=False)
    return True


def signal_early(run: Run) -> None:
    """A persistent signal, sent before the approval stage has even started (buffered by the store)."""
    run.observations["signalled_when"] = run.stage(run.workflow, "approval").status.name
    _send_signal(run, persistent=True)


def deferred_choice() -> Any:
    """Two branches of one deferred choice (WCP-16): the first to start takes the claim, the other
    is canceled."""
    accept, decline = _stage("accept", {"offer"}), _stage("decline", {"offer"})
    accept.deferred_choice_group = "answer"
    decline.deferred_choice_group = "answer"
    return _workflow("deferred_choice", [_stage("offer"), accept, decline])


ADMISSION_CONFIG = "compat-admission"


def _limited(name: str) -> Any:
    workflow = _workflow(name, [_stage("a"), _stage("b", {"a"})])
    workflow.pipeline_config_id = ADMISSION_CONFIG
    workflow.is_limit_concurrent = True
    workflow.max_concurrent_executions = 1
    return workflow


def watch_admission(run: Run) -> bool:
    """Record how the second workflow of a config limited to one running workflow stands while
    the first one runs."""
    from stabilize.models.status import WorkflowStatus

    first = run.engine.store.retrieve_execution_summary(run.workflow.id)
    second = run.engine.store.retrieve_execution_summary(run.companions[0].id)
    if first.status == WorkflowStatus.RUNNING:
        seen = run.observations.setdefault("second_while_first_runs", [])
        if second.status.name not in seen:
            seen.append(second.status.name)
    return False


WORKFLOWS: dict[str, WorkflowSpec] = {
    "linear_chain": WorkflowSpec(linear_chain),
    "diamond": WorkflowSpec(diamond),
    "synthetic_before": WorkflowSpec(synthetic_before),
    "retry": WorkflowSpec(retry),
    "mutex": WorkflowSpec(mutex),
    "pause_resume": WorkflowSpec(pause_resume, after_step=pause_after_first, on_idle=unpause_when_parked),
    "signal": WorkflowSpec(signal_workflow("signal"), on_idle=signal_when_waiting),
    "persistent_signal": WorkflowSpec(signal_workflow("persistent_signal"), on_start=signal_early),
    "deferred_choice": WorkflowSpec(deferred_choice),
    "limit_concurrent": WorkflowSpec(
        lambda: _limited("limit_concurrent"),
        after_step=watch_admission,
        companions=lambda: [_limited("limit_concurrent_second")],
    ),
}


# -- running one workflow -------------------------------------------------------------------------------


def outcome_of(engine: Engine, workflow_id: str, observations: dict[str, Any]) -> dict[str, Any]:
    """How the workflow ended, without ids or times: what both sides must agree on."""
    current = engine.store.retrieve(workflow_id)
    stages = {}
    merged = {}
    for stage in current.stages:
        stages[stage.name] = {
            "status": stage.status.name,
            "synthetic": stage.parent_stage_id is not None,
            "outputs": stage.outputs,
            "tasks": [[t.name, t.status.name] for t in stage.tasks],
        }
        if stage.parent_stage_id is None:  # synthetic ref ids are generated, so not comparable
            merged[stage.name] = engine.store.get_merged_ancestor_outputs(workflow_id, stage.ref_id)
    return {
        "status": current.status.name,
        "is_canceled": current.is_canceled,
        "stages": stages,
        "merged_ancestor_outputs": merged,
        "observations": observations,
    }


def details_of(engine: Engine, workflow_id: str) -> dict[str, Any]:
    """What the run left that the two sides may legitimately differ on, reported, not compared:
    upstream's ``update_workflow_status`` writes status and times only, so the resume time the
    engine sets on ``Workflow.resume()`` is lost on its stores."""
    current = engine.store.retrieve(workflow_id)
    paused = current.paused
    return {
        "paused": None
        if paused is None
        else {"paused_by": paused.paused_by, "resumed": paused.resume_time is not None},
    }


def run_workflow(
    side: str, dialect: str, url: str, name: str, max_steps: int, registry: Any, log: ErrorLog
) -> dict[str, Any]:
    log.reset()
    result: dict[str, Any] = {"workflow": name, "outcome": None, "error": None, "steps": 0, "stalled": False}
    where = "opening the store and queue"
    engine: Engine | None = None
    try:
        spec = WORKFLOWS[name]
        engine = open_engine(side, dialect, url, registry)
        STORE["store"] = engine.store
        workflow = spec.build()
        run = Run(engine, workflow, spec.companions() if spec.companions else [])
        where = "Orchestrator.start"
        for started in (workflow, *run.companions):
            engine.orchestrator.start(started)
        if spec.on_start:
            where = "the driver's start step"
            spec.on_start(run)
        idle = 0
        where = "running the workflow"
        for step in range(1, max_steps + 1):
            result["steps"] = step
            try:
                processed = engine.processor.process_one()
            except Exception as exc:  # the engine rescheduled the message; keep going (bounded)
                log.add(exc, "raised by QueueProcessor.process_one")
                processed = True
            if processed:
                idle = 0
                if spec.after_step:
                    spec.after_step(run)
                continue
            current = engine.store.retrieve(workflow.id)
            others = [engine.store.retrieve_execution_summary(w.id) for w in run.companions]
            if current.status.is_complete and all(o.status.is_complete for o in others):
                break
            if spec.on_idle and spec.on_idle(run, current):
                idle = 0
                continue
            idle += 1
            if idle >= IDLE_LIMIT:
                result["stalled"] = True
                break
        where = "reading the outcome"
        result["outcome"] = outcome_of(engine, workflow.id, run.observations)
        if run.companions:
            result["outcome"]["companions"] = [outcome_of(engine, w.id, {}) for w in run.companions]
        result["details"] = details_of(engine, workflow.id)
    except Exception as exc:
        result["error"] = describe(exc, where)
    finally:
        if engine is not None:
            try:
                close_engine(engine)
            except Exception as exc:
                log.add(exc, "closing the store and queue")
    result["engine_errors"] = sorted(log.errors.values(), key=lambda e: -e["count"])
    result["engine_warnings"] = dict(sorted(log.warnings.items(), key=lambda kv: -kv[1])[:20])
    return result


def main(spec_path: str) -> int:
    global OVERLAY_ROOT
    spec = json.loads(Path(spec_path).read_text())
    results: dict[str, Any] = {}
    if spec.get("overlay"):
        OVERLAY_ROOT = Path(spec["overlay"]).resolve()
        manifest = json.loads((OVERLAY_ROOT / "overlay-manifest.json").read_text())
        OURS_MODULES.update(manifest["ours"])
    log = ErrorLog()
    logging.getLogger("stabilize").addHandler(log)
    logging.getLogger("stabilize").setLevel(logging.WARNING)
    try:
        import stabilize

        registry = build_registry()
        imported = {"stabilize": str(Path(stabilize.__file__).parent)}
    except Exception as exc:
        error = describe(exc, "importing the engine")
        for run in spec["runs"]:
            results[run["workflow"]] = {
                "workflow": run["workflow"],
                "outcome": None,
                "error": error,
                "engine_errors": [],
            }
        Path(spec["output"]).write_text(json.dumps(results, default=repr))
        return 0
    for run in spec["runs"]:
        result = run_workflow(
            spec["side"], spec["dialect"], run["url"], run["workflow"], spec["max_steps"], registry, log
        )
        result["imported"] = imported
        results[run["workflow"]] = result
    # Which upstream modules inside persistence/ and queue/ the engine really used next to ours.
    if OVERLAY_ROOT is not None:
        used = sorted(
            name
            for name, module in sys.modules.items()
            if name.startswith(("stabilize.persistence", "stabilize.queue"))
            and name not in OURS_MODULES
            and getattr(module, "__file__", None)
        )
        for result in results.values():
            result["upstream_modules_used"] = used
    Path(spec["output"]).write_text(json.dumps(results, default=repr))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
