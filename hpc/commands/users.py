"""``hpc user``: API users (admins only): add one and show its token once, list, remove;
one user's tokens listed and revoked one at a time."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from hpc.common import JsonOption, api_client, print_json, stderr_console, stdout_console
from hpc.render import cells, dash
from hpc.render_times import when
from hpc.text import safe

app = typer.Typer(help="API users and their tokens (admins only).", no_args_is_help=True)


@app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="The user's name (as its OS account's).")],
    admin: Annotated[bool, typer.Option("--admin", help="Give it the admin role.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Add a user, or another token for one: the token is shown this once (only its digest
    is stored). Its jobs are its own: only it or an admin may cancel or change them."""
    with api_client() as client:
        data = client.add_user(name, "admin" if admin else "user")
        if as_json:
            print_json(data)
            return
        as_agent = [] if admin else _shared_nodes(client.list_nodes().get("nodes", []))
    token = str(data.get("token", ""))
    stderr_console().print(
        f"user {dash(data.get('name'))} (role {dash(data.get('role'))}) has "
        f"{data.get('tokens')} token(s); the new one (id {dash(data.get('tokenId'))}, for "
        "`hpc user revoke`) is below, shown this once: keep it secret, the user sets it as "
        "HPC_TOKEN"
    )
    if as_agent:
        shown = ", ".join(as_agent[:SHOW_NODES]) + (
            f" and {len(as_agent) - SHOW_NODES} more" if len(as_agent) > SHOW_NODES else ""
        )
        stderr_console().print(
            f"note: node(s) {safe(shown)} run every task as their agent's own OS user, so a "
            f"task of {safe(name)} can do what that user can (under hpc up: read "
            "HPC_HOME/admin.token and act as an admin); for per-user execution run on-prem "
            "agents with --run-as-owner (README: Per-user execution)"
        )
    print(token)


SHOW_NODES = 5
"""Nodes named in the shared-account note before "and N more"."""


def _shared_nodes(nodes: list[dict[str, Any]]) -> list[str]:
    """The names of on-prem nodes whose agent runs tasks as itself, not as their owners."""
    return sorted(
        str(n.get("name"))
        for n in nodes
        if isinstance(n, dict) and n.get("provider") == "onprem" and not n.get("runsAsOwner")
    )


@app.command("list")
def user_list(as_json: JsonOption = False) -> None:
    """Users, their roles and how many tokens sign in as each."""
    with api_client() as client:
        data = client.list_users()
    if as_json:
        print_json(data)
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("Name", "Role", "Tokens"):
        table.add_column(column)
    for u in data.get("users", []):
        table.add_row(*cells(dash(u.get("name")), dash(u.get("role")), dash(u.get("tokens"))))
    stdout_console().print(table)


@app.command("remove")
def user_remove(name: Annotated[str, typer.Argument(help="The user.")]) -> None:
    """Revoke every token of the user: it can no longer sign in. Its jobs stay."""
    with api_client() as client:
        data = client.remove_user(name)
    stdout_console().print(
        f"user {dash(data.get('name'))}: {data.get('revokedTokens')} token(s) revoked"
    )


@app.command("tokens")
def user_tokens(
    name: Annotated[str, typer.Argument(help="The user.")], as_json: JsonOption = False
) -> None:
    """The user's tokens by id (never the tokens themselves), oldest first."""
    with api_client() as client:
        data = client.list_tokens(name)
    if as_json:
        print_json(data)
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("Token", "Created"):
        table.add_column(column)
    for t in data.get("tokens", []):
        table.add_row(*cells(dash(t.get("id")), when(t.get("created"))))
    stdout_console().print(table)


@app.command("revoke")
def user_revoke(
    name: Annotated[str, typer.Argument(help="The user.")],
    token: Annotated[str, typer.Argument(help="The token's id (hpc user tokens NAME).")],
    as_json: JsonOption = False,
) -> None:
    """Revoke one token of the user (a leaked one): its other tokens still sign in."""
    with api_client() as client:
        data = client.revoke_token(name, token)
    if as_json:
        print_json(data)
        return
    who = dash(data.get("name"))
    stdout_console().print(f"user {who}: token {dash(data.get('token'))} revoked")
    if data.get("tokensLeft") == 0:
        stderr_console().print(
            f"note: that was {who}'s last token: {who} can no longer sign in and is no longer "
            f"listed (its jobs stay); hpc user add {who} gives it a new one"
        )
