"""Upstream Stabilize's import path for the PostgreSQL queue (``from stabilize.queue.postgres import
PostgresQueue``): the dialect-neutral SQL queue, under the name engine code already uses."""

from stabilize.queue.sql import PostgresQueue

__all__ = ["PostgresQueue"]
