"""``stabilize ui``: serve the read-only dashboard of the command line's database."""

from __future__ import annotations

import click

from stabilize.cli.app import Settings, cli, pass_settings
from stabilize.cli.errors import CliError, ExitCode
from stabilize.cli.output import note


@cli.command()
@click.option("--url", "url", default=None, help="Database URL (overrides the one before `ui`).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="0: any free port."
)
@click.option(
    "--refresh",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0.25),
    help="Seconds between refreshes of an unfinished run's page.",
)
@pass_settings
def ui(settings: Settings, url: str | None, host: str, port: int, refresh: float) -> None:
    """Serve a read-only web dashboard: runs, their DAGs, the queue and the dead letters.

    Binds to 127.0.0.1 unless --host says otherwise; nothing on it changes data. Needs
    pip install 'stabilize-store[ui]'. Ctrl-C stops it.
    """
    if url is not None:
        settings = Settings(url, "--url", settings.console)
    try:
        from stabilize.ui.app import create_app
        from stabilize.ui.server import allowed_hosts, listen, server
    except ImportError as exc:
        raise CliError(
            f"the dashboard needs its extra ({exc.name} is missing): pip install 'stabilize-store[ui]'",
            ExitCode.USAGE,
        ) from None
    app = create_app(
        settings.store, settings.queue, refresh_seconds=refresh, allowed_hosts=allowed_hosts(host)
    )
    try:
        sock = listen(host, port)
    except OSError as exc:
        raise CliError(f"--host/--port: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    note(f"dashboard of {settings.shown_url} at http://{shown}:{bound_port}/ (read-only; Ctrl-C stops it)")
    with sock:
        server(app).run(sockets=[sock])
