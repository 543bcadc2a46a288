"""A small reference runner: workers that execute a workflow's DAG through the SQL queue.

It exists to show and test the persistence layer end to end (atomic steps, CAS, de-duplication,
crash recovery), not to be an engine: no retries, pauses, restarts or after-stages.
"""

from stabilize.runner.tasks import TaskContext, TaskFunction, register_task, registered_task
from stabilize.runner.worker import Worker, submit

__all__ = ["TaskContext", "TaskFunction", "Worker", "register_task", "registered_task", "submit"]
