"""Dumps the persistence and queue API a side offers; executed by upstream's interpreter.

    tests/compat/.venv-upstream/bin/python tests/compat/api_dump.py OUT.json          # upstream's own
    PYTHONPATH=OVERLAY tests/compat/.venv-upstream/bin/python tests/compat/api_dump.py OUT.json  # ours

``upstream_env.py --api-diff`` runs both and prints what upstream has that ours lacks or spells
differently: the names each module exports, the public methods and their signatures of the store,
transaction and queue classes an engine uses, and the fields of every message type. A module or
class that fails to import is recorded with the error, not raised.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import sys
from pathlib import Path
from typing import Any

#: Modules whose exported names the engine imports.
MODULES = (
    "stabilize.persistence",
    "stabilize.persistence.store",
    "stabilize.persistence.sqlite",
    "stabilize.persistence.postgres",
    "stabilize.queue",
    "stabilize.queue.sqlite",
    "stabilize.queue.postgres",
    "stabilize.queue.messages",
    "stabilize.queue.interface",
)
#: Role -> (upstream's class, our class): the classes an engine holds, compared method by method.
CLASSES = {
    "WorkflowStore (interface)": (
        "stabilize.persistence.store:WorkflowStore",
        "stabilize.persistence.store:WorkflowStore",
    ),
    "StoreTransaction (interface)": (
        "stabilize.persistence.store:StoreTransaction",
        "stabilize.persistence.store:StoreTransaction",
    ),
    "SqliteWorkflowStore": (
        "stabilize.persistence.sqlite:SqliteWorkflowStore",
        "stabilize.persistence.sqlite:SqliteWorkflowStore",
    ),
    "PostgresWorkflowStore": (
        "stabilize.persistence.postgres:PostgresWorkflowStore",
        "stabilize.persistence.postgres:PostgresWorkflowStore",
    ),
    "the transaction store.transaction() yields": (
        "stabilize.persistence.sqlite.transaction:AtomicTransaction",
        "stabilize.persistence.sql.transaction:SqlStoreTransaction",
    ),
    "PostgreSQL transaction": (
        "stabilize.persistence.postgres.transaction:PostgresTransaction",
        "stabilize.persistence.sql.transaction:SqlStoreTransaction",
    ),
    "Queue (interface)": ("stabilize.queue.interface:Queue", "stabilize.queue.interface:Queue"),
    "SqliteQueue": ("stabilize.queue.sqlite:SqliteQueue", "stabilize.queue.sqlite:SqliteQueue"),
    "PostgresQueue": ("stabilize.queue.postgres:PostgresQueue", "stabilize.queue.postgres:PostgresQueue"),
}


def _load(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _signature(member: Any) -> str:
    try:
        return str(inspect.signature(member))
    except (TypeError, ValueError):
        return "(?)"


def class_api(cls: type) -> dict[str, str]:
    """Public members (and ``__init__``, ``__enter__``, ``__exit__``) with their signatures."""
    api = {}
    for name in dir(cls):
        if name.startswith("_") and name not in ("__init__", "__enter__", "__exit__"):
            continue
        member = inspect.getattr_static(cls, name)
        if isinstance(member, property):
            api[name] = "property"
        elif isinstance(member, (staticmethod, classmethod)) or inspect.isfunction(member):
            api[name] = _signature(getattr(cls, name))
        elif not callable(member):
            api[name] = f"attribute {type(member).__name__}"
    return api


def message_fields() -> dict[str, Any]:
    """Every message class of ``stabilize.queue.messages`` with its fields and defaults."""
    module = importlib.import_module("stabilize.queue.messages")
    out: dict[str, Any] = {}
    for name, cls in vars(module).items():
        if not (inspect.isclass(cls) and dataclasses.is_dataclass(cls) and cls.__module__ == module.__name__):
            continue
        fields = {}
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                default = repr(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                default = f"factory {getattr(f.default_factory, '__name__', repr(f.default_factory))}"
            else:
                default = "required"
            fields[f.name] = {"init": f.init, "default": default}
        out[name] = fields
    return out


def main(out: str) -> int:
    result: dict[str, Any] = {"modules": {}, "classes": {}, "messages": {}}
    for module in MODULES:
        try:
            result["modules"][module] = sorted(
                n for n in dir(importlib.import_module(module)) if not n.startswith("_")
            )
        except Exception as exc:
            result["modules"][module] = {"error": f"{type(exc).__name__}: {exc}"}
    side = 0 if "--ours" not in sys.argv else 1
    for role, targets in CLASSES.items():
        try:
            result["classes"][role] = class_api(_load(targets[side]))
        except Exception as exc:
            result["classes"][role] = {"error": f"{type(exc).__name__}: {exc}"}
    try:
        result["messages"] = message_fields()
    except Exception as exc:
        result["messages"] = {"error": f"{type(exc).__name__}: {exc}"}
    Path(out).write_text(json.dumps(result, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
