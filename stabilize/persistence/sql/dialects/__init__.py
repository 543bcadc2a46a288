"""Dialect profiles, found by ``engine.dialect.name``; users may register their own."""

from __future__ import annotations

import threading

from sqlalchemy import Dialect

from stabilize.persistence.sql.dialects.base import GenericProfile, Unit
from stabilize.persistence.sql.dialects.mysql import MysqlProfile
from stabilize.persistence.sql.dialects.postgresql import PostgresProfile
from stabilize.persistence.sql.dialects.sqlite import SqliteProfile

_lock = threading.Lock()
_profiles: dict[str, GenericProfile] = {
    "sqlite": SqliteProfile(),
    "postgresql": PostgresProfile(),
    "mysql": MysqlProfile(),
    "mariadb": MysqlProfile(),
}


def register_profile(dialect_name: str, profile: GenericProfile) -> None:
    """Use ``profile`` for every engine whose ``dialect.name`` is ``dialect_name`` from now on."""
    with _lock:
        _profiles[dialect_name] = profile


def profile_for(dialect: Dialect | str) -> GenericProfile:
    """The profile registered for ``dialect`` (a ``Dialect`` or its name), else a ``GenericProfile``."""
    name = dialect if isinstance(dialect, str) else dialect.name
    return _profiles.get(name) or GenericProfile()


__all__ = ["GenericProfile", "Unit", "profile_for", "register_profile"]
