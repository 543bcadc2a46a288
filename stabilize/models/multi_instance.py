"""How a multi-instance stage runs its instances (the engine's WCP-12..15 patterns)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class MultiInstanceConfig:
    """Configuration of a stage that runs as several instances.

    Attributes:
        count: a fixed number of instances (0: take it from ``count_from_context``).
        count_from_context: the context key holding the number of instances at run time.
        sync_on_complete: whether the stage waits for every instance before it completes.
        allow_dynamic: whether instances may be added while the stage runs.
        collection_from_context: the context key of the items to run one instance each for.
        join_threshold: continue once this many instances completed (0: all of them).
        cancel_remaining: cancel the instances still running once the threshold is reached.
    """

    count: int = 0
    count_from_context: str = ""
    sync_on_complete: bool = True
    allow_dynamic: bool = False
    collection_from_context: str = ""
    join_threshold: int = 0
    cancel_remaining: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a JSON document (every field, by name)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MultiInstanceConfig:
        """The configuration of a document of ``to_dict``; missing fields take their defaults,
        unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})
