"""A sample value for every message field, different from its default, so a dropped field shows.

Shared by the message round-trip tests and the queue tests.
"""

from __future__ import annotations

import types
from enum import Enum
from typing import Any, Union, get_args, get_origin

from stabilize.models.stage import SyntheticStageOwner
from stabilize.models.status import WorkflowStatus

NESTED = {"outer": {"list": [1, 2.5, "three", None, True, {"deep": []}]}, "empty": {}, "ünï": "🚀"}


def non_default(name: str, hint: Any, index: int) -> Any:
    """A value of the field's type (``hint``) that differs from the field's default."""
    if get_origin(hint) in (Union, types.UnionType):
        (hint,) = (a for a in get_args(hint) if a is not type(None))
    if isinstance(hint, type) and issubclass(hint, Enum):
        return {
            WorkflowStatus: WorkflowStatus.TERMINAL,
            SyntheticStageOwner: SyntheticStageOwner.STAGE_BEFORE,
        }[hint]
    base = get_origin(hint) or hint
    if base is bool:
        return True
    if base is int:
        return 1_000 + index
    if base is str:
        return f"{name[:10]}-{index}"  # short enough for the id columns
    if base is dict:
        return {"field": name, **NESTED}
    raise AssertionError(f"no sample value for {name}: {hint!r}; extend non_default")
