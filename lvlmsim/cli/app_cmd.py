"""`lvlmsim app`: start the Streamlit explorer. The app folder is found through the registry, so the command works
from a checkout (app/ at the top level) and from an installed wheel (lvlmsim/_data/app)."""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from lvlmsim.errors import LvlmsimError

ENTRY = "Home.py"


def app_dir() -> Path:
    from lvlmsim.specs.registry import data_root

    return data_root() / "app"


def streamlit_command(port: int = 8501, address: str = "127.0.0.1", headless: bool = True,
                      extra: list[str] | None = None) -> list[str]:
    """The `streamlit run` command line; raises a one-line error when Streamlit or the app folder is missing."""
    if importlib.util.find_spec("streamlit") is None:
        # no brackets in the message: the CLI prints errors through rich, which would read "[app]" as markup
        raise LvlmsimError("the explorer needs Streamlit and Altair (the 'app' extra of lvlmsim): "
                           "pip install streamlit altair")
    entry = app_dir() / ENTRY
    if not entry.is_file():
        raise LvlmsimError(f"the explorer's entry script {entry} is missing from this installation")
    if not 1 <= port <= 65535:
        raise LvlmsimError(f"--port: must be in 1..65535, got {port}")
    if not _is_address(address):  # Streamlit took any text and failed to bind after starting
        raise LvlmsimError(f"--address: expected an IP address (127.0.0.1, 0.0.0.0, ::1) or a host name, got "
                           f"{address!r}")
    return [sys.executable, "-m", "streamlit", "run", str(entry),
            "--server.headless", "true" if headless else "false",
            "--server.port", str(port), "--server.address", address,
            "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal", *(extra or [])]


_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def _is_address(address: str) -> bool:
    """An IPv4/IPv6 address, or a host name of RFC 1123 labels (letters, digits, inner hyphens)."""
    try:
        ipaddress.ip_address(address)
        return True
    except ValueError:
        pass
    return 0 < len(address) <= 253 and all(_HOST_LABEL.match(x) for x in address.rstrip(".").split("."))


def register(app: typer.Typer) -> None:
    """Called by lvlmsim.cli: adds the `app` command."""
    from lvlmsim.cli import user_errors

    @app.command("app", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    @user_errors
    def app_cmd(
        ctx: typer.Context,
        port: Annotated[int, typer.Option(help="port to serve on")] = 8501,
        address: Annotated[str, typer.Option(help="address to listen on (0.0.0.0 for every interface)")] = "127.0.0.1",
        open_browser: Annotated[bool, typer.Option("--open/--no-open", help="open a browser tab")] = False,
        print_only: Annotated[bool, typer.Option("--print-command", help="print the command, do not run it")] = False,
    ) -> None:
        """Open the Streamlit explorer: roofline, request breakdown, serving simulation, technique comparison.

        Extra arguments go to `streamlit run` unchanged (e.g. `lvlmsim app -- --theme.base dark`).
        """
        cmd = streamlit_command(port, address, headless=not open_browser, extra=list(ctx.args))
        if print_only:
            typer.echo(" ".join(cmd))
            return
        typer.echo(f"lvlmsim explorer on http://{address}:{port} (Ctrl-C to stop)", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        if os.name == "posix":
            # become Streamlit: a signal sent to this process (Ctrl-C, a supervisor's SIGTERM) reaches the server,
            # and no orphaned server outlives its launcher
            os.execv(cmd[0], cmd)
        try:
            rc = subprocess.call(cmd)
        except KeyboardInterrupt:
            rc = 0
        raise typer.Exit(rc)
