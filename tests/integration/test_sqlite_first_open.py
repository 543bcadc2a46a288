"""Several processes opening one new SQLite file at the same moment all get a WAL connection.

The switch to WAL needs a moment of exclusive access; SQLite answers the losers of that race with
SQLITE_BUSY at once, without waiting on busy_timeout (CI once failed a migration race on it). Each
worker opens ``FILES`` fresh files, meeting the others at a barrier before each one so that all of
them open it together.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from stabilize.persistence.sql.engine import install_profile
from tests.processes import run_together

WORKERS = 6
FILES = 40
BARRIER_TIMEOUT = 120.0


def open_worker(paths: list[str], barrier: Any, results: Any) -> None:
    for path in paths:
        try:
            barrier.wait(BARRIER_TIMEOUT)
            engine = create_engine(f"sqlite:///{path}", poolclass=NullPool)
            install_profile(engine)
            with engine.connect() as connection:
                mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
            engine.dispose()
            results.put((path, mode, None))
        except BaseException:
            results.put((path, None, traceback.format_exc()))


def test_processes_opening_a_new_file_together_all_get_wal(tmp_path: Path) -> None:
    paths = [str(tmp_path / f"first_open_{i}.db") for i in range(FILES)]
    outcomes = run_together(open_worker, [(paths,)] * WORKERS, results_each=FILES)

    errors = [f"{path}:\n{error}" for path, _, error in outcomes if error]
    assert not errors, "\n".join(errors)
    assert {mode for _, mode, _ in outcomes} == {"wal"}
