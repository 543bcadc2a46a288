"""Connection strings in, one configured Engine per database per process out."""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

from sqlalchemy import URL, Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from stabilize.persistence.sql.dialects import GenericProfile, hooks, profile_for
from stabilize.persistence.sql.values import compact_json, load_document

_DRIVER_FOR_SCHEME = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}

_engines: dict[tuple[int, str], Engine] = {}
_engines_lock = threading.Lock()


def normalize_url(connection_string: str | URL) -> URL:
    """Accept any SQLAlchemy URL plus the forms Stabilize users already pass.

    A bare path means a SQLite file; ``postgres://`` / ``postgresql://`` mean psycopg 3 and
    ``mysql://`` means PyMySQL, the drivers of this package's extras.
    """
    if isinstance(connection_string, URL):
        url = connection_string
    else:
        text = connection_string.strip()
        if not text:
            raise ValueError("connection_string: is empty; pass a database URL or a SQLite file path")
        if "://" not in text:
            return make_url("sqlite:///" + text)
        scheme, rest = text.split("://", 1)
        try:
            url = make_url(_DRIVER_FOR_SCHEME.get(scheme.lower(), scheme) + "://" + rest)
        except ArgumentError as exc:
            raise ValueError(f"connection_string: not a database URL: {mask(text)}") from exc
    return profile_for(url.get_backend_name()).prepare_url(url)


def mask(url: str | URL) -> str:
    """The URL as it may be shown: the password replaced by ``***``."""
    try:
        return (url if isinstance(url, URL) else make_url(url)).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def get_engine(connection: str | URL | Engine, **engine_options: Any) -> Engine:
    """The process's engine for this database, configured by its dialect profile.

    Stores and queues built from one URL share an engine, so ``sqlite:///:memory:`` is one
    database per process and one pool serves both. The cache key includes the process id: a
    forked child must never reuse its parent's pooled connections.
    """
    if isinstance(connection, Engine):
        install_profile(connection)
        return connection
    url = normalize_url(connection)
    key = (os.getpid(), url.render_as_string(hide_password=False))
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            profile = profile_for(url.get_backend_name())
            options = {
                "json_serializer": compact_json,
                "json_deserializer": load_document,
                **profile.engine_options(url),
                **engine_options,
            }
            engine = create_engine(url, **options)
            install_profile(engine)
            _engines[key] = engine
        return engine


def dispose_engines() -> None:
    """Close every cached engine's pool (tests, and processes about to exit)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def engine_profile(engine: Engine) -> GenericProfile:
    return profile_for(engine.dialect)


#: Engines whose hooks are attached. Weak, not ``id()``s: a collected engine's id is reused by
#: a new engine, which would then silently go without its hooks (WAL, BEGIN IMMEDIATE, strict mode).
_installed: weakref.WeakSet[Engine] = weakref.WeakSet()


def install_profile(engine: Engine) -> None:
    """Attach the profile's connection hooks to ``engine``, once (``dialects.hooks``)."""
    if engine in _installed:
        return
    _installed.add(engine)
    hooks.install(engine, engine_profile(engine))
