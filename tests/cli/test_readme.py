"""The README's command-line section keeps up with the command: every subcommand is listed with
each of its options and its exact ``--format`` choices, and every exit code has a row."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click

from stabilize.cli.errors import ExitCode
from stabilize.cli.main import cli

README = Path(__file__).resolve().parents[2] / "README.md"


def cli_section() -> str:
    """The README's "## The command line" section, up to the next section."""
    text = README.read_text(encoding="utf-8")
    start = text.index("## The command line\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def usage_lines() -> dict[str, str]:
    """Each command path the section's first ``sh`` block lists (``db current | check`` lists two
    commands of one group), mapped to the whole line it is listed on."""
    groups = {name for name, command in cli.commands.items() if isinstance(command, click.Group)}
    block = cli_section().split("```sh\n", 1)[1].split("```", 1)[0]
    listed: dict[str, str] = {}
    for line in block.splitlines():
        usage = line.split("#", 1)[0].strip()
        if not usage.startswith("stabilize "):
            continue
        first, *others = usage.removeprefix("stabilize ").split(" | ")
        words = first.split()
        if words[0] in groups:
            paths = [f"{words[0]} {words[1]}"] + [f"{words[0]} {other.split()[0]}" for other in others]
        else:
            paths = [words[0]]
        listed.update(dict.fromkeys(paths, usage))
    return listed


def commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    """Every runnable command under ``group``, by its path (``db upgrade``)."""
    for name, command in sorted(group.commands.items()):
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            yield from commands(command, path + " ")
        else:
            yield path, command


def test_every_command_is_listed_with_its_options_and_formats() -> None:
    listed = usage_lines()
    for path, command in commands(cli):
        assert path in listed, f"`stabilize {path}` is missing from the README's command line section"
        line = listed[path]
        for param in command.params:
            if not isinstance(param, click.Option) or param.name == "help":
                continue
            assert any(re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", line) for o in param.opts), (
                path,
                param.opts,
                line,
            )
            if isinstance(param.type, click.Choice) and "--format" in param.opts:
                formats = "--format " + "|".join(str(c) for c in param.type.choices)
                assert re.search(rf"{re.escape(formats)}(?![|\w])", line), (path, formats, line)


def test_every_exit_code_has_a_row() -> None:
    section = cli_section()
    for code in ExitCode:
        assert f"\n| {code.value} |" in section, f"exit code {code.value} is not in the README's table"
    assert "-V`/`--version" in section and "`-h`" in section
