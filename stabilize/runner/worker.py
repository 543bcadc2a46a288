"""The worker loop and one handler per message: each step reads, then writes one atomic transaction.

Every handler is idempotent and race-free without locks: a stage starts only from NOT_STARTED
(compare-and-set on version and status), and readiness is checked by the handler of the message the
*last* finishing requisite pushed, which runs after that requisite's commit and so sees it done.
A message whose step committed is marked processed in the same transaction, so a redelivery after
a crash is recognised and skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from traceback import format_exception_only

from stabilize.models.stage import StageExecution
from stabilize.models.status import WorkflowStatus
from stabilize.models.workflow import Workflow
from stabilize.persistence.errors import ConcurrencyError, TransientError
from stabilize.persistence.ids import now_ms
from stabilize.persistence.store import StoreTransaction, WorkflowStore
from stabilize.queue.interface import Queue
from stabilize.queue.messages import (
    CompleteStage,
    CompleteWorkflow,
    ContinueParentStage,
    Message,
    RunTask,
    StartStage,
    StartWorkflow,
)
from stabilize.runner.tasks import TaskContext, task_function

logger = logging.getLogger(__name__)

Step = Callable[[StoreTransaction], None]

#: How long a worker goes on polling a database that fails every call before it gives up.
OUTAGE_SECONDS = 30.0
#: The pause between calls while the database fails them.
OUTAGE_PAUSE = 0.25


def submit(store: WorkflowStore, queue: Queue, workflow: Workflow) -> None:
    """Store a new workflow and the message that starts it, atomically."""
    with store.transaction(queue) as txn:
        txn.store_workflow(workflow)
        txn.push_message(StartWorkflow(execution_id=workflow.id))


class Worker:
    """Polls the queue and runs one step per message."""

    def __init__(self, store: WorkflowStore, queue: Queue) -> None:
        """A worker of ``store`` and ``queue``, with a handler for each message type the runner knows."""
        self.store = store
        self.queue = queue
        self._handlers: dict[type[Message], Callable[[Message], Step | None]] = {
            StartWorkflow: self._start_workflow,  # type: ignore[dict-item]
            StartStage: self._start_stage,  # type: ignore[dict-item]
            ContinueParentStage: self._continue_parent,  # type: ignore[dict-item]
            RunTask: self._run_task,  # type: ignore[dict-item]
            CompleteStage: self._complete_stage,  # type: ignore[dict-item]
            CompleteWorkflow: self._complete_workflow,  # type: ignore[dict-item]
        }

    def run(
        self,
        done: Callable[[], bool],
        idle_seconds: float = 0.02,
        outage_seconds: float = OUTAGE_SECONDS,
    ) -> int:
        """Process messages until the queue is idle and ``done()``; return how many were handled.

        A database that fails a call (unreachable, failing over, a commit whose outcome is
        unknown: a ``TransientError``) does not end the worker: the message in hand is left to
        its lock, so it comes back once the lock lapses and its processed mark tells whether its
        step committed, and the worker polls again after a pause. Only when every call has failed
        for ``outage_seconds`` is the last error raised (a worker whose node is gone fails).
        """
        handled = 0
        failing_since: float | None = None
        while True:
            try:
                message = self.queue.poll_one()
                if message is None:
                    if done():
                        return handled
                    time.sleep(idle_seconds)  # production idle back-off, not synchronisation
                else:
                    self.process(message)
                    handled += 1
                failing_since = None
            except TransientError as error:
                now = time.monotonic()
                failing_since = now if failing_since is None else failing_since
                if now - failing_since >= outage_seconds:
                    raise
                logger.warning("worker: %s; polling again", error)
                time.sleep(OUTAGE_PAUSE)  # production back-off while the database recovers

    def process(self, message: Message) -> None:
        """Handle one delivered message and ack it.

        A message whose step already committed is only acked, and one without a handler is
        dead-lettered. Otherwise the handler reads, and its step runs in one store transaction that
        also marks the message processed; a step that lost a compare-and-set (``ConcurrencyError``)
        is rescheduled at once, to run again on fresh state, instead of acked.
        """
        if self.store.is_message_processed(message.message_id):
            self.queue.ack(message)  # its step committed before a crash; only the ack was lost
            return
        handler = self._handlers.get(type(message))
        if handler is None:
            self.queue.move_to_dlq(
                message, f"the reference runner has no handler for {type(message).__name__}"
            )
            return
        try:
            step = handler(message)  # reads happen here, before the write transaction opens
            with self.store.transaction(self.queue) as txn:
                if step is not None:
                    step(txn)
                txn.mark_processed_at_commit(
                    message.message_id, type(message).__name__, _execution_of(message)
                )
        except ConcurrencyError:
            # Another worker moved the stage first; handle the message again on fresh state.
            self.queue.reschedule(message, 0)
            return
        self.queue.ack(message)

    # -- handlers: read, decide, and return the writes of the step --------------------------

    def _start_workflow(self, message: StartWorkflow) -> Step | None:
        workflow = self.store.retrieve(message.execution_id)
        if workflow.status is not WorkflowStatus.NOT_STARTED:
            return None
        workflow.status, workflow.start_time = WorkflowStatus.RUNNING, now_ms()

        def step(txn: StoreTransaction) -> None:
            txn.update_workflow_status(workflow)
            for stage in workflow.initial_stages():
                txn.push_message(StartStage(execution_id=workflow.id, stage_id=stage.id))

        return step

    def _start_stage(self, message: StartStage) -> Step | None:
        stage = self.store.retrieve_stage(message.stage_id)
        if stage.status is not WorkflowStatus.NOT_STARTED or not stage.all_upstream_stages_complete():
            return None  # already started, or a requisite's own message will start it
        stage.status, stage.start_time = WorkflowStatus.RUNNING, now_ms()
        pending_before = [s for s in stage.before_stages() if s.status is WorkflowStatus.NOT_STARTED]

        def step(txn: StoreTransaction) -> None:
            txn.store_stage(stage, expected_phase=WorkflowStatus.NOT_STARTED.name)
            if pending_before:
                for before in pending_before:
                    txn.push_message(StartStage(execution_id=message.execution_id, stage_id=before.id))
            else:
                txn.push_message(_first_step(stage, message.execution_id))

        return step

    def _continue_parent(self, message: ContinueParentStage) -> Step | None:
        parent = self.store.retrieve_stage(message.stage_id)
        first = parent.first_task()
        if parent.status is not WorkflowStatus.RUNNING or not all(
            s.status.is_complete for s in parent.before_stages()
        ):
            return None
        if first is not None and first.status is not WorkflowStatus.NOT_STARTED:
            return None
        return lambda txn: txn.push_message(_first_step(parent, message.execution_id))

    def _run_task(self, message: RunTask) -> Step | None:
        stage = self.store.retrieve_stage(message.stage_id)
        task = next((t for t in stage.tasks if t.id == message.task_id), None)
        if task is None or task.status is not WorkflowStatus.NOT_STARTED:
            return None
        inputs = self.store.get_merged_ancestor_outputs(message.execution_id, stage.ref_id)
        function = task_function(task.implementing_class)

        def step(txn: StoreTransaction) -> None:
            task.start_time = now_ms()
            context = TaskContext(message.execution_id, stage, task, {**stage.context, **inputs}, txn.execute)
            try:
                outputs = function(context) or {}
                stage.outputs.update(outputs)
                task.status = WorkflowStatus.SUCCEEDED
            except Exception as exc:
                logger.warning("task %s of stage %s failed: %s", task.name, stage.ref_id, exc)
                task.status = WorkflowStatus.TERMINAL
                task.task_exception_details = {"error": "".join(format_exception_only(exc)).strip()}
            task.end_time = now_ms()
            txn.store_stage(stage, expected_phase=WorkflowStatus.RUNNING.name)
            following = stage.next_task(task)
            if following is not None and task.status is WorkflowStatus.SUCCEEDED:
                txn.push_message(_run(stage, following.id, message.execution_id))
            else:
                txn.push_message(CompleteStage(execution_id=message.execution_id, stage_id=stage.id))

        return step

    def _complete_stage(self, message: CompleteStage) -> Step | None:
        stage = self.store.retrieve_stage(message.stage_id)
        if stage.status is not WorkflowStatus.RUNNING:
            return None
        failed = any(t.status.is_halt for t in stage.tasks) or any(
            s.status.is_halt for s in stage.before_stages()
        )
        stage.status = WorkflowStatus.TERMINAL if failed else WorkflowStatus.SUCCEEDED
        stage.end_time = now_ms()
        downstream = (
            []
            if stage.parent_stage_id
            else self.store.get_downstream_stages(message.execution_id, stage.ref_id)
        )

        def step(txn: StoreTransaction) -> None:
            txn.store_stage(stage, expected_phase=WorkflowStatus.RUNNING.name)
            if stage.parent_stage_id is not None:
                txn.push_message(
                    ContinueParentStage(execution_id=message.execution_id, stage_id=stage.parent_stage_id)
                )
            elif downstream and not failed:
                for next_stage in downstream:
                    txn.push_message(StartStage(execution_id=message.execution_id, stage_id=next_stage.id))
            else:
                txn.push_message(CompleteWorkflow(execution_id=message.execution_id))

        return step

    def _complete_workflow(self, message: CompleteWorkflow) -> Step | None:
        workflow = self.store.retrieve(message.execution_id)
        if workflow.status.is_complete:
            return None
        top = workflow.top_level_stages()
        halted = any(s.status.is_halt for s in top)
        if any(s.status is WorkflowStatus.RUNNING for s in top) or not (
            halted or all(s.status.is_complete for s in top)
        ):
            return None  # the last stage to finish sends another CompleteWorkflow
        workflow.status = WorkflowStatus.TERMINAL if halted else WorkflowStatus.SUCCEEDED
        workflow.end_time = now_ms()
        return lambda txn: txn.update_workflow_status(workflow)


def _first_step(stage: StageExecution, execution_id: str) -> Message:
    first = stage.first_task()
    if first is None:
        return CompleteStage(execution_id=execution_id, stage_id=stage.id)
    return _run(stage, first.id, execution_id)


def _run(stage: StageExecution, task_id: str, execution_id: str) -> RunTask:
    return RunTask(execution_id=execution_id, stage_id=stage.id, task_id=task_id)


def _execution_of(message: Message) -> str | None:
    return getattr(message, "execution_id", None) or None
