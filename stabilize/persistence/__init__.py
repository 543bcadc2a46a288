"""Persistence: the store contract and its SQL implementation."""

from stabilize.persistence.factory import create_queue, create_repository, detect_backend
from stabilize.persistence.sql.dialects import GenericProfile, register_profile
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.persistence.sql.transaction import SqlStoreTransaction
from stabilize.persistence.store import (
    NoOpTransaction,
    StoreTransaction,
    WorkflowCriteria,
    WorkflowNotFoundError,
    WorkflowStore,
)

__all__ = [
    "GenericProfile",
    "NoOpTransaction",
    "SqlStoreTransaction",
    "SqlWorkflowStore",
    "StoreTransaction",
    "WorkflowCriteria",
    "WorkflowNotFoundError",
    "WorkflowStore",
    "create_queue",
    "create_repository",
    "detect_backend",
    "register_profile",
]
