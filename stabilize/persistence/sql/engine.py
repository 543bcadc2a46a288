"""Connection strings in, one configured Engine per database per process out."""

from __future__ import annotations

import os
import re
import threading
import weakref
from typing import Any

from sqlalchemy import URL, Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from stabilize.persistence.sql.dialects import GenericProfile, hooks, profile_for
from stabilize.persistence.sql.dialects.base import Bounds
from stabilize.persistence.sql.values import dump_document, load_document

_DRIVER_FOR_SCHEME = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}

#: libpq's multi-host form, ``user@h1:p1,h2:p2/db?...``, which SQLAlchemy's URL parser refuses.
_MULTI_HOST = re.compile(
    r"^(?P<user>[^@/?]*@)?(?P<hosts>[^/?@]*,[^/?@]*)(?P<path>/[^?]*)?(?:\?(?P<query>.*))?$"
)

_engines: dict[tuple[int, str, float], Engine] = {}
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
        rest = _hosts_as_query(rest) if scheme.lower().startswith("postgres") else rest
        try:
            url = make_url(_DRIVER_FOR_SCHEME.get(scheme.lower(), scheme) + "://" + rest)
        except ArgumentError as exc:
            raise ValueError(f"connection_string: not a database URL: {mask(text)}") from exc
    return profile_for(url.get_backend_name()).prepare_url(url)


def _hosts_as_query(rest: str) -> str:
    """libpq's ``h1:p1,h2:p2`` host list as the ``?host=h1:p1&host=h2:p2`` parameters SQLAlchemy's
    PostgreSQL dialects pass on to libpq, which then tries the hosts in order (with
    ``target_session_attrs=read-write``, until it finds the primary)."""
    found = _MULTI_HOST.match(rest)
    if found is None:
        return rest
    hosts = "&".join(f"host={host.strip()}" for host in found["hosts"].split(",") if host.strip())
    query = "&".join(part for part in (hosts, found["query"]) if part)
    return f"{found['user'] or ''}{found['path'] or '/'}?{query}"


def mask(url: str | URL) -> str:
    """The URL as it may be shown: the password replaced by ``***``."""
    try:
        return (url if isinstance(url, URL) else make_url(url)).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def get_engine(
    connection: str | URL | Engine, *, operation_timeout: float | None = None, **engine_options: Any
) -> Engine:
    """The process's engine for this database, configured by its dialect profile.

    Stores and queues built from one URL (and one ``operation_timeout``) share an engine, so
    ``sqlite:///:memory:`` is one database per process and one pool serves both. The cache key
    includes the process id: a forked child must never reuse its parent's pooled connections.

    Args:
        connection: a URL (see ``normalize_url``) or an engine of the caller's, used as it is.
        operation_timeout: the deadline of a public call, in seconds (``Bounds``); the driver's
            connect, read and lock-wait timeouts are derived from it. Default 10 s.
        engine_options: more ``create_engine`` arguments; a ``connect_args`` dict is merged into
            the profile's, the caller's keys winning.
    """
    bounds = Bounds() if operation_timeout is None else Bounds(operation_timeout)
    if isinstance(connection, Engine):
        install_profile(connection, bounds)
        return connection
    url = normalize_url(connection)
    key = (os.getpid(), url.render_as_string(hide_password=False), bounds.operation)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            profile = profile_for(url.get_backend_name())
            options = profile.engine_options(url, bounds)
            given = dict(engine_options)
            connect_args = {**options.pop("connect_args", {}), **given.pop("connect_args", {})}
            options = {
                "json_serializer": dump_document,
                "json_deserializer": load_document,
                **options,
                **given,
                "connect_args": connect_args,
            }
            engine = create_engine(url, **options)
            install_profile(engine, bounds)
            _engines[key] = engine
        return engine


def dispose_engines() -> None:
    """Close every cached engine's pool (tests, and processes about to exit)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def engine_profile(engine: Engine) -> GenericProfile:
    """The dialect profile of ``engine`` (``dialects.profile_for``)."""
    return profile_for(engine.dialect)


#: Engines whose hooks are attached, with their bounds and what their connections learned of the
#: server. Weak, not ``id()``s: a collected engine's id is reused by a new engine, which would
#: then silently go without its hooks (WAL, BEGIN IMMEDIATE, strict mode).
_installed: weakref.WeakKeyDictionary[Engine, hooks.EngineState] = weakref.WeakKeyDictionary()
_installed_lock = threading.Lock()


def install_profile(engine: Engine, bounds: Bounds | None = None) -> None:
    """Attach the profile's connection hooks to ``engine``, once (``dialects.hooks``)."""
    with _installed_lock:
        if engine in _installed:
            return
        _installed[engine] = hooks.install(engine, engine_profile(engine), bounds or Bounds())


def same_database(one: Engine, other: Engine) -> bool:
    """Whether two engines write one database: the same engine, or two whose profile says their
    servers are one (two nodes of one Galera cluster, on one database name). An engine that has
    not connected yet connects once to tell."""
    if one is other:
        return True
    profile = engine_profile(one)
    if type(profile) is not type(engine_profile(other)):
        return False
    identities = [profile.database_identity(_connected_facts(engine)) for engine in (one, other)]
    return identities[0] is not None and identities[0] == identities[1]


def _connected_facts(engine: Engine) -> dict[str, Any]:
    state = engine_state(engine)
    if not state.facts:
        with engine.connect():  # the connect hook records the facts
            pass
    return state.facts


def engine_state(engine: Engine) -> hooks.EngineState:
    """The engine's bounds and server facts (its hooks are attached first if they were not)."""
    install_profile(engine)
    return _installed[engine]
