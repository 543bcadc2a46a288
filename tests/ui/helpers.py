"""``stabilize ui`` as a user runs it: a subprocess whose first stderr line says where it listens."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.cli.helpers import SCRIPT, clean_env

#: How long a started command may take to say where it listens (a bound, not a pause).
START_SECONDS = 60


@dataclass
class Running:
    """A ``stabilize ui`` process and what it said."""

    base: str
    banner: str
    process: subprocess.Popen[str]
    stderr: queue.Queue[str]

    def stop(self) -> tuple[int, str]:
        """Ctrl-C it; its exit code and the rest of its stderr."""
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=60)
        rest: list[str] = []
        while (line := self.stderr.get(timeout=START_SECONDS)) != "":
            rest.append(line)
        return code, "".join(rest)


def _pump(process: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
    assert process.stderr is not None
    for line in process.stderr:
        lines.put(line)
    lines.put("")  # end of stream


@contextmanager
def stabilize_ui(
    *args: str, cwd: Path | None = None, program: Path = SCRIPT, env: dict[str, str] | None = None
) -> Iterator[Running]:
    """Start ``stabilize ARGS`` (ending in ``ui ...``) and wait, on its stderr, for its address."""
    process = subprocess.Popen(
        [str(program), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env or clean_env(),
        cwd=cwd,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pump, args=(process, lines), daemon=True).start()
    try:
        banner = lines.get(timeout=START_SECONDS)
        found = re.search(r" at (http://[^ ]+)/ \(read-only", banner)
        assert found, f"no address in {banner!r} (exit {process.poll()})"
        running = Running(found.group(1), banner, process, lines)
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=60)


def get(url: str, host: str | None = None) -> tuple[int, str]:
    """GET ``url``: its status and body (error statuses included)."""
    request = urllib.request.Request(url, headers={"host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
