"""The CLI's text helpers, without a database: user text never becomes markup, control
sequences or another language's syntax; ref ids sort as people count."""

from __future__ import annotations

from rich.console import Console

from stabilize.cli.documents import iso
from stabilize.cli.graph import dot_text, mermaid_text
from stabilize.cli.output import plain_field
from stabilize.cli.render import cell, natural_key, when


def printed(text: str) -> str:
    console = Console(width=200, force_terminal=True, color_system=None)
    with console.capture() as captured:
        console.print(cell(text))
    return captured.get()


def test_markup_and_terminal_escapes_are_printed_as_text() -> None:
    assert printed("Fix [/] bracket [bold]x[/bold]") == "Fix [/] bracket [bold]x[/bold]\n"
    assert printed("\x1b[2Jred\x07") == "\\x1b[2Jred\\x07\n"  # would clear the screen and ring
    assert printed("two\nlines") == "two\nlines\n"


def test_each_language_gets_its_escapes() -> None:
    assert (
        mermaid_text('a "b" <i>#x;</i> & `c`\nd')
        == "a #34;b#34; #60;i#62;#35;x;#60;/i#62; #38; #96;c#96;<br/>d"
    )
    assert dot_text('a "b" \\l\nc') == 'a \\"b\\" \\\\l\\nc'
    assert plain_field("a\tb\nc\\d\re") == "a\\tb\\nc\\\\d\\re" and plain_field(None) == "-"


def test_ref_ids_sort_naturally_and_times_carry_date_and_zone() -> None:
    assert sorted(["work-10", "work-2", "work-1", "prepare"], key=natural_key) == [
        "prepare",
        "work-1",
        "work-2",
        "work-10",
    ]
    assert when(1_700_000_000_123) == "2023-11-14 22:13:20 UTC"
    assert iso(1_700_000_000_123) == "2023-11-14T22:13:20.123Z" and iso(None) is None
