"""``hpc dashboard``: the web dashboard's address, with a link that signs in."""

from __future__ import annotations

import webbrowser
from typing import Annotated
from urllib.parse import quote

import typer

from hpc.client import ApiClient, ApiError
from hpc.common import api_client, stderr_console
from hpc.errors import CliError
from hpc.openlink import open_privately
from shared.settings import Settings


def dashboard(
    open_browser: Annotated[
        bool,
        typer.Option(
            "--open",
            help="Open it in the default web browser (through a page only you may read: "
            "a browser's command line is visible to every local user).",
        ),
    ] = False,
    with_token: Annotated[
        bool,
        typer.Option(
            "--token/--no-token",
            help="Put your token in the link's #fragment (never sent to a server; the page "
            "keeps it for the tab only). --no-token: the page asks for it.",
        ),
    ] = True,
) -> None:
    """Print the dashboard's link: jobs, tasks and their output, nodes, the autoscaler, live."""
    with api_client() as client:
        client.health()  # a clear error now if the control plane is not there
        url = f"{client.url}/api/dashboard"
        if with_token:
            _check_token(client)
            url += "#token=" + quote(client.token(), safe="")
    typer.echo(url)
    if with_token:
        stderr_console().print("This link signs in as you: do not share it.")
    if open_browser and not _opened(url, secret=with_token):
        # exit 0 all the same: the link is printed, and opening it by hand is all it takes
        stderr_console().print(
            "No web browser could be opened here: open the link above yourself.",
            soft_wrap=True,
        )


def _check_token(client: ApiClient) -> None:
    """One read the dashboard makes (its first), so a link whose token the control plane
    refuses is an error here, not a page that cannot sign in."""
    try:
        client.list_jobs(limit=1)
    except ApiError as e:
        if e.status != 401:
            raise
        raise CliError(
            f"the control plane at {client.url} refuses your token, so the link would not "
            f"sign in: {e.message} (or use --no-token and give the page a token)"
        ) from None


def _opened(url: str, *, secret: bool) -> bool:
    """Whether a browser took ``url``. ``webbrowser.open`` says False when it found none
    (or ``BROWSER`` names a command that failed), and may raise on a broken setup; either
    way the user must be told, or ``--open`` seems to do nothing. A link with the token
    goes through a private page (hpc/openlink.py): a browser's command line is public."""
    if secret:
        return open_privately(url, Settings().home_dir)
    try:
        return webbrowser.open(url)
    except webbrowser.Error:
        return False
