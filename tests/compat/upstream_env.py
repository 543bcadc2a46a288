"""The compatibility harness: upstream Stabilize 0.33.1's own engine, run on upstream's store and on ours.

    .venv/bin/python tests/compat/upstream_env.py                      # every workflow, every dialect
    .venv/bin/python tests/compat/upstream_env.py --dialects sqlite --workflows diamond
    .venv/bin/python tests/compat/upstream_env.py --json results.json  # also write the raw results
    .venv/bin/python tests/compat/upstream_env.py --overlay /tmp/ov    # only build the overlay there
    .venv/bin/python tests/compat/upstream_env.py --api-diff           # what upstream has that ours lacks

Three pieces, each here:

* **Upstream's interpreter.** ``stabilize==0.33.1`` is installed from the package registry into
  ``tests/compat/.venv-upstream`` (git-ignored), with the SQLAlchemy, Alembic, psycopg and PyMySQL
  versions of the interpreter running this file (so both sides run on the same drivers) and
  psycopg-pool for upstream's own PostgreSQL store. The venv is made once and reused while its
  recorded requirement list matches (``.requirements`` inside it); a file lock makes parallel test
  workers wait for one build instead of racing.
* **The overlay**: what an engine that adopted this store runs. Upstream's installed ``stabilize``
  tree is copied to a temporary directory, then every module of our ``stabilize/persistence`` and
  ``stabilize/queue`` packages is copied over it. Ours win wherever both have a module, including
  a module of ours whose name upstream uses for a package (upstream's ``persistence/sqlite/``
  package goes, our ``persistence/sqlite.py`` stays: Python would otherwise import the package).
  Upstream's modules we do not have (its queue processor, de-duplication helpers, transaction
  helper, task lease) and everything outside the two packages (its ``stabilize.models``,
  ``stabilize.errors``, handlers, tasks) stay upstream's. Our migration scripts go in as
  ``stabilize/_migrations``, where our wheel puts them. ``overlay-manifest.json`` in the overlay
  lists what came from where.
* **The driver** (``engine_driver.py``) runs in upstream's interpreter, once per side and dialect:
  side ``upstream`` imports the installed package (upstream's own store and queue), side ``ours``
  has the overlay first on ``PYTHONPATH``. It runs each workflow through upstream's
  ``Orchestrator``, ``QueueProcessor`` and ``TaskRegistry`` on a fresh database and writes what
  each ended as (status, stages, outputs, merged ancestor outputs, every engine error) as JSON.

Upstream has no MySQL/MariaDB store, so a MariaDB run of ours is compared with upstream's SQLite
result (``reference_dialect``).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COMPAT = Path(__file__).resolve().parent
ROOT = COMPAT.parents[1]
OUR_PACKAGE = ROOT / "stabilize"
UPSTREAM_VERSION = "0.33.1"
UPSTREAM_VENV = COMPAT / ".venv-upstream"
UPSTREAM_PY = UPSTREAM_VENV / "bin" / "python"
VENV_LOCK = COMPAT / ".venv-upstream.lock"
REQUIREMENTS_STAMP = UPSTREAM_VENV / ".requirements"
DRIVER = COMPAT / "engine_driver.py"
API_DUMP = COMPAT / "api_dump.py"
#: Our packages an adopting engine takes; everything else of the engine stays its own.
OUR_PACKAGES = ("persistence", "queue")
MANIFEST = "overlay-manifest.json"

#: Every workflow the driver knows, in the order it runs them.
WORKFLOWS = (
    "linear_chain",
    "diamond",
    "synthetic_before",
    "retry",
    "mutex",
    "pause_resume",
    "signal",
    "persistent_signal",
    "deferred_choice",
    "limit_concurrent",
)
DIALECTS = ("sqlite", "postgresql", "mariadb")
#: Upstream's stores: SQLite and PostgreSQL. A dialect it lacks is compared with its SQLite run.
UPSTREAM_DIALECTS = ("sqlite", "postgresql")
#: Processor iterations per workflow: a bound on work, not on time.
MAX_STEPS = 3000
#: Seconds a driver process may take for all its workflows before it is killed (a hang guard only;
#: no result depends on it).
DRIVER_TIMEOUT = 900

POSTGRES_ADMIN = os.environ.get("STABILIZE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_ADMIN = os.environ.get("STABILIZE_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")


def reference_dialect(dialect: str) -> str:
    """The dialect of upstream's run that ours on ``dialect`` is compared with."""
    return dialect if dialect in UPSTREAM_DIALECTS else "sqlite"


# -- upstream's virtual environment ----------------------------------------------------------------


def requirements() -> list[str]:
    """What upstream's venv holds: upstream itself, plus our drivers at the versions we run."""
    pins = [
        f"stabilize=={UPSTREAM_VERSION}",
        f"SQLAlchemy=={importlib.metadata.version('SQLAlchemy')}",
        f"alembic=={importlib.metadata.version('alembic')}",
        f"python-ulid=={importlib.metadata.version('python-ulid')}",
        f"psycopg[binary]=={importlib.metadata.version('psycopg')}",
        f"PyMySQL=={importlib.metadata.version('PyMySQL')}",
        # Upstream's PostgreSQL store and queue pool their connections with it.
        "psycopg-pool>=3.1",
    ]
    return pins


def ensure_venv(log: Any = sys.stderr) -> Path:
    """Upstream's interpreter, creating or refreshing ``.venv-upstream`` when its requirements moved.

    Returns:
        The venv's python.
    """
    wanted = "\n".join(requirements()) + "\n"
    VENV_LOCK.touch()
    with VENV_LOCK.open("r+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel workers wait for one build
        if UPSTREAM_PY.exists() and REQUIREMENTS_STAMP.exists() and REQUIREMENTS_STAMP.read_text() == wanted:
            return UPSTREAM_PY
        print(f"creating {UPSTREAM_VENV.relative_to(ROOT)} with {' '.join(requirements())}", file=log)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(UPSTREAM_VENV)], check=True)
        pip = [str(UPSTREAM_PY), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, *requirements()], check=True)
        REQUIREMENTS_STAMP.write_text(wanted)
    return UPSTREAM_PY


def engine_env(pythonpath: Path | None = None) -> dict[str, str]:
    """The environment of a process of upstream's interpreter: ours without our venv's and
    ``PYTHONPATH``'s packages, with ``pythonpath`` (the overlay, for side ``ours``) first."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def upstream_package_dir(python: Path) -> Path:
    """Where upstream's ``stabilize`` package is installed in its venv."""
    found = subprocess.run(
        [str(python), "-c", "import stabilize, sys; sys.stdout.write(stabilize.__path__[0])"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tempfile.gettempdir(),  # never our checkout, whose stabilize/ would shadow upstream's
        env=engine_env(),
    )
    return Path(found.stdout)


# -- the overlay -----------------------------------------------------------------------------------


@dataclass
class Manifest:
    """What the overlay holds, by dotted module name (``stabilize.queue.sql``)."""

    #: Our modules, copied over upstream's tree.
    ours: list[str] = field(default_factory=list)
    #: Upstream modules our modules replaced (same name, or a package where ours is a module).
    replaced: list[str] = field(default_factory=list)
    #: Upstream modules inside our two packages that we do not have, so they stay upstream's.
    kept: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, list[str]]:
        return {"ours": self.ours, "replaced": self.replaced, "kept": self.kept}


def _modules(package_dir: Path, prefix: str) -> list[str]:
    names = []
    for path in sorted(package_dir.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        rel = path.relative_to(package_dir).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join([prefix, *parts]))
    return names


def build_overlay(dest: Path, python: Path | None = None) -> Manifest:
    """Lay our ``persistence`` and ``queue`` packages over a copy of upstream's installed package.

    Args:
        dest: an empty (or missing) directory; ``dest/stabilize`` becomes the engine's package.
        python: upstream's interpreter (default: ``ensure_venv()``).

    Returns:
        The manifest, also written to ``dest/overlay-manifest.json``.
    """
    python = python or ensure_venv()
    target = dest / "stabilize"
    if target.exists():
        shutil.rmtree(target)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(upstream_package_dir(python), target, ignore=ignore)
    manifest = Manifest()
    for package in OUR_PACKAGES:
        upstream_modules = set(_modules(target / package, f"stabilize.{package}"))
        ours_dir = OUR_PACKAGE / package
        for path in sorted(ours_dir.rglob("*")):
            if "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            rel = path.relative_to(ours_dir)
            there = target / package / rel
            if path.is_dir():
                # A package of ours where upstream has a module of that name: the module goes.
                module_file = there.with_suffix(".py")
                if module_file.is_file():
                    module_file.unlink()
                there.mkdir(parents=True, exist_ok=True)
                continue
            if path.suffix == ".py" and path.name != "__init__.py":
                # A module of ours where upstream has a package of that name: the package goes
                # (Python prefers the package directory over the module file).
                package_dir = there.with_suffix("")
                if package_dir.is_dir():
                    shutil.rmtree(package_dir)
            there.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, there)
        our_modules = set(_modules(ours_dir, f"stabilize.{package}"))
        after = set(_modules(target / package, f"stabilize.{package}"))
        manifest.ours.extend(sorted(our_modules))
        manifest.replaced.extend(sorted((upstream_modules - after) | (upstream_modules & our_modules)))
        manifest.kept.extend(sorted(after - our_modules))
    # Our migration scripts, where the wheel ships them (persistence.sql.migrate looks there).
    shutil.copytree(OUR_PACKAGE / "_migrations", target / "_migrations", ignore=ignore, symlinks=False)
    (dest / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
    return manifest


# -- running the driver ----------------------------------------------------------------------------


def run_side(
    side: str,
    dialect: str,
    urls: Mapping[str, str],
    *,
    overlay: Path | None = None,
    python: Path | None = None,
    max_steps: int = MAX_STEPS,
) -> dict[str, dict[str, Any]]:
    """Run workflows through upstream's engine on one side and dialect, one fresh database each.

    Args:
        side: ``"upstream"`` (its own store and queue) or ``"ours"`` (the overlay).
        dialect: ``sqlite``, ``postgresql`` or ``mariadb``.
        urls: workflow name -> the empty database it runs on.
        overlay: the overlay directory (side ``ours`` only; built in a temporary one when None).
        python: upstream's interpreter (default: ``ensure_venv()``).
        max_steps: processor iterations allowed per workflow.

    Returns:
        Workflow name -> the driver's result (see ``engine_driver.py``); a driver process that died
        gives every workflow an ``error`` naming how, with the end of its stderr.
    """
    python = python or ensure_venv()
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="stab-compat-")))
        pythonpath = None
        if side == "ours":
            if overlay is None:
                overlay = work / "overlay"
                build_overlay(overlay, python)
            pythonpath = overlay
        spec = {
            "side": side,
            "dialect": dialect,
            "max_steps": max_steps,
            "runs": [{"workflow": name, "url": url} for name, url in urls.items()],
            "output": str(work / "results.json"),
            "overlay": str(overlay) if overlay else None,
        }
        spec_path = work / "spec.json"
        spec_path.write_text(json.dumps(spec))
        try:
            done = subprocess.run(
                [str(python), str(DRIVER), str(spec_path)],
                capture_output=True,
                text=True,
                cwd=work,
                env=engine_env(pythonpath),
                timeout=DRIVER_TIMEOUT,
            )
            how = f"driver exited with {done.returncode}"
            stderr = done.stderr
        except subprocess.TimeoutExpired as expired:
            how = f"driver killed after {DRIVER_TIMEOUT}s"
            stderr = expired.stderr.decode() if isinstance(expired.stderr, bytes) else (expired.stderr or "")
        output = Path(spec["output"])
        results: dict[str, dict[str, Any]] = json.loads(output.read_text()) if output.exists() else {}
        for name in urls:
            if name not in results:
                results[name] = {
                    "workflow": name,
                    "outcome": None,
                    "error": {
                        "where": "driver",
                        "type": "DriverDied",
                        "message": how,
                        "stderr": stderr[-6000:],
                    },
                    "engine_errors": [],
                }
        return results


def comparable(result: Mapping[str, Any]) -> dict[str, Any] | None:
    """The part of a result both sides must agree on: how the workflow ended (status, stages,
    outputs, merged ancestor outputs, what the driver observed on the way)."""
    outcome = result.get("outcome")
    return None if outcome is None else dict(outcome)


def differences(expected: Any, got: Any, path: str = "outcome") -> list[str]:
    """Where ``got`` differs from ``expected``, one line per differing leaf (at most 40)."""
    out: list[str] = []

    def walk(a: Any, b: Any, where: str) -> None:
        if len(out) >= 40:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b), key=str):
                if key not in b:
                    out.append(f"{where}.{key}: missing (upstream: {json.dumps(a[key], default=repr)[:160]})")
                elif key not in a:
                    out.append(f"{where}.{key}: unexpected {json.dumps(b[key], default=repr)[:160]}")
                else:
                    walk(a[key], b[key], f"{where}.{key}")
        elif a != b:
            theirs, ours = json.dumps(a, default=repr)[:160], json.dumps(b, default=repr)[:160]
            out.append(f"{where}: upstream {theirs}, ours {ours}")

    walk(expected, got, path)
    return out


def describe_failure(result: Mapping[str, Any]) -> str:
    """A readable account of what went wrong on a side: its fatal error and the engine's errors."""
    lines: list[str] = []
    error = result.get("error")
    if error:
        lines.append(f"fatal in {error.get('where')}: {error.get('type')}: {error.get('message')}")
        for frame in error.get("frames", [])[-6:]:
            lines.append(f"    {frame}")
        if error.get("stderr"):
            lines.append("    stderr: " + error["stderr"][-2000:])
    for engine_error in result.get("engine_errors", [])[:8]:
        lines.append(
            f"engine error x{engine_error.get('count', 1)} ({engine_error.get('where')}): "
            f"{engine_error.get('type')}: {engine_error.get('message')}"
        )
        for frame in engine_error.get("frames", [])[-6:]:
            lines.append(f"    {frame}")
    return "\n".join(lines)


# -- the API upstream's engine sees --------------------------------------------------------------------


def _dump_api(python: Path, overlay: Path | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="stab-compat-api-") as tmp:
        out = Path(tmp) / "api.json"
        argv = [str(python), str(API_DUMP), str(out)] + (["--ours"] if overlay else [])
        subprocess.run(argv, check=True, cwd=tmp, env=engine_env(overlay), capture_output=True)
        loaded: dict[str, Any] = json.loads(out.read_text())
        return loaded


def _call_sites(package: Path, skip: set[str], name: str) -> list[str]:
    """Where upstream's engine (its modules our overlay keeps) calls ``.name(``."""
    needle = f".{name}("
    sites = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent)
        module = str(rel.with_suffix("")).replace("/", ".").removesuffix(".__init__")
        if module in skip or ".examples" in module:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if needle in line and not line.lstrip().startswith(("def ", "#")):
                sites.append(f"{rel}:{number}")
    return sites


def api_diff(overlay: Path, python: Path | None = None) -> dict[str, Any]:
    """What upstream's persistence and queue API has that ours (laid over upstream in ``overlay``)
    lacks or declares differently, with the engine's call sites of each missing method.

    Returns:
        ``{"modules": {module: [missing names] | error}, "classes": {role: {"missing": {name:
        [upstream signature, call sites]}, "different": {name: [upstream, ours]}}}, "messages":
        {type: {"missing fields": [...], "different defaults": {...}}}}``.
    """
    python = python or ensure_venv()
    theirs, ours = _dump_api(python, None), _dump_api(python, overlay)
    manifest = json.loads((overlay / MANIFEST).read_text())
    package = upstream_package_dir(python)
    skip = set(manifest["replaced"])
    out: dict[str, Any] = {"modules": {}, "classes": {}, "messages": {}}
    for module, names in theirs["modules"].items():
        mine = ours["modules"].get(module)
        if isinstance(mine, dict):
            out["modules"][module] = mine
        elif isinstance(names, list):
            missing = sorted(set(names) - set(mine or []))
            if missing:
                out["modules"][module] = missing
    for role, api in theirs["classes"].items():
        mine = ours["classes"].get(role, {})
        if "error" in api:
            continue
        if "error" in mine:
            out["classes"][role] = mine
            continue
        missing = {
            name: [signature, _call_sites(package, skip, name)]
            for name, signature in api.items()
            if name not in mine
        }
        different = {
            name: [signature, mine[name]]
            for name, signature in api.items()
            if name in mine and mine[name] != signature
        }
        out["classes"][role] = {"missing": missing, "different": different}
    their_messages, my_messages = theirs["messages"], ours["messages"]
    if "error" in my_messages:
        out["messages"] = my_messages
    else:
        for name, fields in their_messages.items():
            mine = my_messages.get(name)
            if mine is None:
                out["messages"][name] = "missing"
                continue
            gaps = sorted(set(fields) - set(mine))
            defaults = {
                f: [fields[f]["default"], mine[f]["default"]]
                for f in fields
                if f in mine and fields[f] != mine[f]
            }
            if gaps or defaults:
                out["messages"][name] = {"missing fields": gaps, "different": defaults}
    return out


# -- throw-away databases (the command line; the tests use tests/conftest.py's) ---------------------


class Databases:
    """Empty databases for one harness run, dropped at its end (as tests/conftest.py makes them)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.created: list[tuple[str, str]] = []

    def new(self, dialect: str) -> str:
        """A fresh database's URL in the plain form an engine user passes (``postgresql://``,
        ``mysql://``, ``sqlite:///path``)."""
        name = f"stab_{uuid.uuid4().hex[:12]}"
        if dialect == "sqlite":
            return f"sqlite:///{self.tmp / (name + '.db')}"
        admin = POSTGRES_ADMIN if dialect == "postgresql" else MYSQL_ADMIN
        self._admin(admin, f"CREATE DATABASE {name}")
        self.created.append((admin, name))
        return plain_url(admin, name)

    @staticmethod
    def _admin(admin: str, statement: str) -> None:
        from sqlalchemy import create_engine, text

        engine = create_engine(driver_url(admin), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(text(statement))  # a generated identifier, never user input
        finally:
            engine.dispose()

    def drop_all(self) -> None:
        for admin, name in self.created:
            self._admin(admin, f"DROP DATABASE IF EXISTS {name}")


def driver_url(url: str) -> Any:
    """``url`` with the SQLAlchemy driver named (psycopg 3, PyMySQL)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    if backend in ("mysql", "mariadb"):
        return parsed.set(drivername="mysql+pymysql")
    return parsed


def plain_url(url: str, database: str | None = None) -> str:
    """``url`` (with ``database`` instead of its own, if given) as an engine user writes it:
    ``postgresql://`` or ``mysql://`` without a driver name (what upstream's stores take, and the
    libpq-style form our store accepts too); a SQLite URL is returned as it is."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return url
    scheme = "postgresql" if backend == "postgresql" else "mysql"
    parsed = parsed.set(drivername=scheme)
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


@contextlib.contextmanager
def throwaway_databases() -> Iterator[Databases]:
    with tempfile.TemporaryDirectory(prefix="stab-compat-db-") as tmp:
        databases = Databases(Path(tmp))
        try:
            yield databases
        finally:
            databases.drop_all()


def run_all(
    dialects: Sequence[str], workflows: Sequence[str], databases: Databases, python: Path
) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """Every workflow on upstream's stores (the references needed) and on ours (each dialect).

    Returns:
        ``{"upstream": {dialect: results}, "ours": {dialect: results}}``.
    """
    upstream_dialects = sorted({reference_dialect(d) for d in dialects})
    out: dict[str, dict[str, dict[str, dict[str, Any]]]] = {"upstream": {}, "ours": {}}
    with tempfile.TemporaryDirectory(prefix="stab-compat-overlay-") as tmp:
        overlay = Path(tmp)
        build_overlay(overlay, python)
        for dialect in upstream_dialects:
            urls = {name: databases.new(dialect) for name in workflows}
            out["upstream"][dialect] = run_side("upstream", dialect, urls, python=python)
        for dialect in dialects:
            urls = {name: databases.new(dialect) for name in workflows}
            out["ours"][dialect] = run_side("ours", dialect, urls, overlay=overlay, python=python)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dialects", nargs="+", default=list(DIALECTS), choices=DIALECTS)
    parser.add_argument("--workflows", nargs="+", default=list(WORKFLOWS), choices=WORKFLOWS)
    parser.add_argument("--json", type=Path, help="also write every raw result here")
    parser.add_argument("--overlay", type=Path, help="only build the overlay in this directory and exit")
    parser.add_argument(
        "--api-diff",
        nargs="?",
        const="",
        metavar="OVERLAY",
        help="print what upstream's API has that ours lacks (on OVERLAY if given, else a fresh one)",
    )
    args = parser.parse_args(argv)
    python = ensure_venv()
    if args.api_diff is not None:
        with tempfile.TemporaryDirectory(prefix="stab-compat-overlay-") as tmp:
            overlay = Path(args.api_diff) if args.api_diff else Path(tmp)
            if not args.api_diff:
                build_overlay(overlay, python)
            print(json.dumps(api_diff(overlay, python), indent=2))
        return 0
    if args.overlay:
        manifest = build_overlay(args.overlay, python)
        print(json.dumps(manifest.to_json(), indent=2))
        return 0
    with throwaway_databases() as databases:
        results = run_all(args.dialects, args.workflows, databases, python)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    failures = 0
    for dialect in args.dialects:
        reference = results["upstream"][reference_dialect(dialect)]
        for name in args.workflows:
            ours, theirs = results["ours"][dialect][name], reference[name]
            same = theirs.get("outcome") is not None and comparable(ours) == comparable(theirs)
            failures += not same
            theirs_status = (theirs.get("outcome") or {}).get("status")
            ours_status = (ours.get("outcome") or {}).get("status")
            print(
                f"{dialect:10} {name:18} {'same' if same else 'DIFFERENT':9} "
                f"upstream[{reference_dialect(dialect)}]={theirs_status} ours={ours_status}"
            )
            if not same:
                report = [describe_failure(ours), *differences(comparable(theirs), comparable(ours))]
                print("    " + "\n".join(report).replace("\n", "\n    "))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
