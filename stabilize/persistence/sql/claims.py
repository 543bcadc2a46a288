"""The engine's concurrency primitives on rows: stage claims and admission locks.

Both run inside a store transaction that is open while the engine's block runs
(``SqlStoreTransaction``), and both serialise through row locks the database already has, one
path on every dialect: SQLite's write lock, taken when the transaction begins, serialises
everything; on PostgreSQL and MariaDB a claimant waits on the row another transaction inserted or
locked, and decides on what that transaction committed.
"""

from __future__ import annotations

from sqlalchemy import Connection, and_, exists, select, update

from stabilize.models.status import WorkflowStatus
from stabilize.persistence.ids import now_ms
from stabilize.persistence.sql.dialects import GenericProfile
from stabilize.persistence.sql.dialects.base import rowcount
from stabilize.persistence.sql.rows import AdmissionLockRow, StageClaimRow, StageRow, table_of
from stabilize.persistence.sql.types import checker

CLAIMS = table_of(StageClaimRow)
ADMISSION_LOCKS = table_of(AdmissionLockRow)
#: Statuses of a stage that has finished (``WorkflowStatus.is_complete``), by name.
COMPLETE = tuple(sorted(status.name for status in WorkflowStatus if status.is_complete))
_KEYS = ("workflow_id", "claim_key")


def claim_values(workflow_id: str, claim_key: str, stage_id: str) -> dict[str, object]:
    """A claim row, each value checked by its column (``ValidationError`` names it)."""
    given = {"workflow_id": workflow_id, "claim_key": claim_key, "stage_id": stage_id}
    values = {key: checker(CLAIMS.c[key])(value, f"claim.{key}") for key, value in given.items()}
    return {**values, "claimed_at": now_ms()}


def acquire(connection: Connection, profile: GenericProfile, claim: dict[str, object], steal: bool) -> bool:
    """Whether ``claim["stage_id"]`` holds the claim once this returns (upstream Stabilize's
    meaning): the first claimant inserts the row and wins; the holder asking again wins again;
    with ``steal``, a claim whose holder stage is gone or complete passes to the claimant by an
    update conditional on that holder, so of two stealers one wins.

    Three statements at most: the insert, a locking read of the holder, the conditional steal.
    """
    if profile.insert_ignore(connection, CLAIMS, [claim], _KEYS) == 1:
        return True
    key = and_(CLAIMS.c.workflow_id == claim["workflow_id"], CLAIMS.c.claim_key == claim["claim_key"])
    holder = connection.execute(select(CLAIMS.c.stage_id).where(key).with_for_update()).scalar()
    if holder is None:  # released (its workflow deleted) since the insert: claim it afresh
        return profile.insert_ignore(connection, CLAIMS, [claim], _KEYS) == 1
    if holder == claim["stage_id"]:
        return True
    if not steal:
        return False
    holder_running = exists().where(StageRow.id == holder, StageRow.status.not_in(COMPLETE))
    taken = connection.execute(
        update(CLAIMS)
        .where(key, CLAIMS.c.stage_id == holder, ~holder_running)
        .values(stage_id=claim["stage_id"], claimed_at=claim["claimed_at"])
    )
    return rowcount(taken) == 1


def lock_admission(connection: Connection, profile: GenericProfile, key: str) -> None:
    """Hold the admission lock of ``key`` until the transaction ends: write its row (inserted
    the first time), which locks it against every other writer of the same key."""
    row = {
        "lock_key": checker(ADMISSION_LOCKS.c.lock_key)(key, "admission.key"),
        "locked_at": now_ms(),
    }
    profile.upsert(connection, ADMISSION_LOCKS, [row], ("lock_key",), ("locked_at",))
