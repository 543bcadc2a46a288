"""The store contract: what every workflow store does, whatever keeps the data."""

from stabilize.persistence.store.interface import WorkflowCriteria, WorkflowNotFoundError, WorkflowStore
from stabilize.persistence.store.transaction import NoOpTransaction, StoreTransaction

__all__ = [
    "NoOpTransaction",
    "StoreTransaction",
    "WorkflowCriteria",
    "WorkflowNotFoundError",
    "WorkflowStore",
]
