"""Entry point of the ``stabilize`` console script."""

from __future__ import annotations

from stabilize.cli import db, demo, health, queue, runs  # noqa: F401 - importing registers the subcommands
from stabilize.cli.app import cli
from stabilize.ui import command  # noqa: F401 - registers `stabilize ui` (web libraries load when it runs)


def main() -> None:
    """Run the ``stabilize`` command (the console script's entry point)."""
    cli(prog_name="stabilize")


if __name__ == "__main__":
    main()
