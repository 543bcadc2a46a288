"""Processed marks that a store transaction committed, kept per thread for the engine's processor.

An engine step marks its message processed inside the step's own transaction
(``StoreTransaction.mark_message_processed`` or ``mark_processed_at_commit``). Once that
transaction has committed, the message id is recorded here, on the thread that ran it. The
Stabilize 0.33 queue processor clears the record before it hands a message to its handler and asks
``consume_committed(message_id)`` afterwards: True means the mark is durable already, so the
processor skips its own ``store.mark_message_processed`` call, one unit of work (on a server
database one round trip) less per step.

A transaction that rolls back records nothing, so the processor then marks the message itself,
as before. The record is a hint that only saves work: forgetting an id (at most ``KEPT`` are kept
per thread, the oldest go first) makes the processor write a mark that exists already, which is
harmless (the mark is idempotent).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

#: Ids kept per thread. The processor clears them around every message, so a thread whose
#: marks nobody consumes (a caller without that processor) keeps no more than this.
KEPT = 256

_local = threading.local()


def _committed() -> OrderedDict[str, None]:
    ids: OrderedDict[str, None] | None = getattr(_local, "ids", None)
    if ids is None:
        ids = _local.ids = OrderedDict()
    return ids


def record_committed(message_ids: Iterable[str]) -> None:
    """Record, on this thread, message ids whose processed mark has just committed."""
    ids = _committed()
    for message_id in message_ids:
        ids[message_id] = None
        ids.move_to_end(message_id)
    while len(ids) > KEPT:
        ids.popitem(last=False)


def consume_committed(message_id: str) -> bool:
    """Whether a committed transaction on this thread marked ``message_id`` processed since the
    last ``clear_committed``; the record is forgotten either way."""
    ids = _committed()
    if message_id in ids:
        del ids[message_id]
        return True
    return False


def clear_committed() -> None:
    """Forget every id recorded on this thread."""
    _committed().clear()
