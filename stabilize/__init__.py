"""stabilize: durable persistence for a message-driven DAG workflow engine.

The names users import most, re-exported; each also lives at its documented module path
(``stabilize.models.*``, ``stabilize.persistence.*``, ``stabilize.queue.*``, ``stabilize.errors``).
"""

from stabilize.errors import (
    ConcurrencyError,
    DatabaseUnavailableError,
    DuplicateError,
    SchemaError,
    StabilizeError,
    TransientError,
    ValidationError,
)
from stabilize.models import (
    PausedDetails,
    StageExecution,
    SyntheticStageOwner,
    TaskExecution,
    Trigger,
    Workflow,
    WorkflowStatus,
    WorkflowType,
)
from stabilize.persistence import (
    NoOpTransaction,
    SqlStoreTransaction,
    SqlWorkflowStore,
    StoreTransaction,
    WorkflowCriteria,
    WorkflowNotFoundError,
    WorkflowStore,
    create_queue,
    create_repository,
    detect_backend,
)
from stabilize.persistence.postgres import PostgresWorkflowStore
from stabilize.persistence.sqlite import SqliteWorkflowStore
from stabilize.queue import Message, PostgresQueue, Queue, SqliteQueue, SqlQueue

__all__ = [
    "ConcurrencyError",
    "DatabaseUnavailableError",
    "DuplicateError",
    "Message",
    "NoOpTransaction",
    "PausedDetails",
    "PostgresQueue",
    "PostgresWorkflowStore",
    "Queue",
    "SchemaError",
    "SqlQueue",
    "SqlStoreTransaction",
    "SqlWorkflowStore",
    "SqliteQueue",
    "SqliteWorkflowStore",
    "StabilizeError",
    "StageExecution",
    "StoreTransaction",
    "SyntheticStageOwner",
    "TaskExecution",
    "TransientError",
    "Trigger",
    "ValidationError",
    "Workflow",
    "WorkflowCriteria",
    "WorkflowNotFoundError",
    "WorkflowStatus",
    "WorkflowStore",
    "WorkflowType",
    "create_queue",
    "create_repository",
    "detect_backend",
]
