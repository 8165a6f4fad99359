"""``hpc template``: list, show, set and delete job templates (admins set and delete).

A template holds defaults (used where a job gives no value) and limits (a job
beyond them is refused); ``hpc job submit --template NAME`` picks one, and a
template named Default applies to jobs that pick none.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from hpc.client import ApiError
from hpc.common import (
    JsonOption,
    api_client,
    checked_by,
    group_names,
    print_json,
    stderr_console,
    stdout_console,
)
from hpc.errors import CliError
from hpc.render import cells, dash, memory, priority
from hpc.spec import parse_memory, parse_priority
from shared.domain.access import unknown_allowed_users
from shared.domain.durations import FORMS, format_duration, parse_duration

app = typer.Typer(help="List, show, set and delete job templates.", no_args_is_help=True)

Name = Annotated[str, typer.Argument(metavar="NAME", help="The template (any case).")]


def _duration_option(help: str) -> Any:
    return typer.Option(
        metavar="[[D:]H:]M:S",
        help=f"{help.rstrip('.')} ({FORMS}).",
        callback=checked_by(parse_duration),
    )


def _duration(value: Any) -> str:
    return format_duration(value) if isinstance(value, int) else dash(value)


def _groups(value: Any, empty: str) -> str:
    return dash(value) if value else empty


def _users(value: Any) -> str:
    """Who may submit with the template: its allowedUsers, else everyone (admins always)."""
    return ", ".join(str(v) for v in value) if isinstance(value, list) and value else "everyone"


def _user_names(values: list[str] | None, all_users: bool) -> list[str] | None:
    """``--allowed-user`` values (repeated or comma-separated, as --nodegroup) as the
    template's ``allowedUsers``; ``--all-users`` is ``[]``, which the server stores as none
    (everyone). None: not changed. An empty name is refused rather than dropped: dropping
    every name would silently mean everyone."""
    if all_users and values:
        raise typer.BadParameter(
            "give either --allowed-user (who may use it) or --all-users (everyone), not both",
            param_hint="'--all-users'",
        )
    if all_users:
        return []
    if not values:
        return None
    names = [part.strip() for value in values for part in value.split(",")]
    if any(not name for name in names):
        raise typer.BadParameter(
            "an empty user name: give names, comma-separated or repeated (to let every user "
            "submit with it, use --all-users)",
            param_hint="'--allowed-user'",
        )
    return names


@app.command("list")
def template_list(as_json: JsonOption = False) -> None:
    """List job templates: their defaults, then their limits."""
    with api_client() as client:
        data = client.list_templates()
    if as_json:
        print_json(data)
        return
    if not data.get("templates"):  # not a bare header (a probe)
        stderr_console().print("no templates: an admin makes one with hpc template set NAME ...")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in (
        "Name", "Priority", "Node groups", "Runtime limit", "Max priority", "Max cores",
        "Allowed groups", "Max runtime", "Users", "Description",
    ):  # fmt: skip
        table.add_column(column)
    for t in data.get("templates", []):
        table.add_row(
            *cells(
                dash(t.get("name")),
                priority(t.get("priority")),
                _groups(t.get("nodeGroups"), "-"),
                _duration(t.get("runtimeLimit")),
                priority(t.get("maxPriority")),
                dash(t.get("maxCores")),
                _groups(t.get("allowedNodeGroups"), "any"),
                _duration(t.get("maxRuntimeLimit")),
                _users(t.get("allowedUsers")),
                dash(t.get("description")),
            )
        )
    stdout_console().print(table)


@app.command("show")
def template_show(name: Name, as_json: JsonOption = False) -> None:
    """Show one job template."""
    with api_client() as client:
        t = client.get_template(name)
    if as_json:
        print_json(t)
        return
    stdout_console().print(_detail(t))


# `hpc template view`: the same command (Slurm says show, HPC Pack view: either works)
app.command("view", hidden=True)(template_show)


def _and_admins(value: Any) -> str:
    return " (and admins)" if value else ""


def _detail(t: dict[str, Any]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("Name", dash(t.get("name"))),
        ("Description", dash(t.get("description"))),
        ("Defaults", ""),
        ("  Priority", priority(t.get("priority"))),
        ("  Node groups", _groups(t.get("nodeGroups"), "-")),
        ("  Runtime limit", _duration(t.get("runtimeLimit"))),
        ("  Max retries", dash(t.get("maxRetries"))),
        ("  Max concurrent", dash(t.get("maxConcurrent"))),
        ("  Job runtime limit", _duration(t.get("jobRuntimeLimit"))),
        ("  Memory per core", memory(t.get("memoryPerCoreMb"))),
        ("Limits", ""),
        ("  Max priority", priority(t.get("maxPriority"))),
        ("  Max cores per task", dash(t.get("maxCores"))),
        ("  Allowed node groups", _groups(t.get("allowedNodeGroups"), "any")),
        ("  Max runtime limit", _duration(t.get("maxRuntimeLimit"))),
        ("  Max job runtime limit", _duration(t.get("maxJobRuntimeLimit"))),
        ("Allowed users", _users(t.get("allowedUsers")) + _and_admins(t.get("allowedUsers"))),
    ]
    for label, value in rows:
        table.add_row(label, *cells(value))
    return table


@app.command("set")
def template_set(
    name: Name,
    priority_: Annotated[
        str | None,
        typer.Option(
            "--priority",
            help="Default priority: Lowest .. Highest, or 0-4000.",
            callback=checked_by(parse_priority),
        ),
    ] = None,
    nodegroup: Annotated[
        list[str] | None,
        typer.Option(
            "--nodegroup",
            "--node-group",
            help="Default node group (repeatable, or comma-separated: A,B).",
        ),
    ] = None,
    runtime_limit: Annotated[
        str | None, _duration_option("Default runtime limit of a task.")
    ] = None,
    max_retries: Annotated[
        int | None, typer.Option(min=0, max=100, help="Default requeues after a lost node.")
    ] = None,
    max_concurrent: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=1_000_000,
            help="Default maxConcurrent: most tasks of a job running at once.",
        ),
    ] = None,
    max_priority: Annotated[
        str | None,
        typer.Option(
            help="Highest priority a job may ask for.", callback=checked_by(parse_priority)
        ),
    ] = None,
    max_cores: Annotated[
        int | None, typer.Option(min=1, help="Most cores one task may ask for.")
    ] = None,
    allowed_nodegroup: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-nodegroup",
            help="A node group jobs may use (repeatable, or comma-separated: A,B).",
        ),
    ] = None,
    max_runtime_limit: Annotated[
        str | None, _duration_option("Longest runtime limit a task may ask for.")
    ] = None,
    job_runtime_limit: Annotated[
        str | None, _duration_option("Default runtime limit of a whole job.")
    ] = None,
    max_job_runtime_limit: Annotated[
        str | None, _duration_option("Longest runtime limit a whole job may ask for.")
    ] = None,
    allowed_user: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-user",
            help="A user who may submit with it (repeatable, or comma-separated: A,B); "
            "replaces the list. Admins always may.",
        ),
    ] = None,
    all_users: Annotated[
        bool, typer.Option("--all-users", help="Let every user submit with it again.")
    ] = False,
    mem_per_core: Annotated[
        str | None,
        typer.Option(
            "--mem-per-core",
            metavar="SIZE",
            help="Default memory per core, e.g. 2G, of jobs asking for none (Slurm's "
            "DefMemPerCPU).",
            callback=checked_by(parse_memory),
        ),
    ] = None,
    description: Annotated[str | None, typer.Option(help="What the template is for.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a job template, or change the settings given of an existing one (admins only).

    Example: hpc template set Short --runtime-limit 1:00:00 --max-runtime-limit 4:00:00

    Example: hpc template set Big --max-priority Highest --allowed-user alice,bob
    """
    changes: dict[str, Any] = {
        "description": description,
        "priority": parse_priority(priority_) if priority_ is not None else None,
        "nodeGroups": group_names(nodegroup, "--nodegroup") or None,
        "runtimeLimit": parse_duration(runtime_limit) if runtime_limit is not None else None,
        "maxRetries": max_retries,
        "maxConcurrent": max_concurrent,
        "maxPriority": parse_priority(max_priority) if max_priority is not None else None,
        "maxCores": max_cores,
        "allowedNodeGroups": group_names(allowed_nodegroup, "--allowed-nodegroup") or None,
        "maxRuntimeLimit": (
            parse_duration(max_runtime_limit) if max_runtime_limit is not None else None
        ),
        "jobRuntimeLimit": (
            parse_duration(job_runtime_limit) if job_runtime_limit is not None else None
        ),
        "maxJobRuntimeLimit": (
            parse_duration(max_job_runtime_limit) if max_job_runtime_limit is not None else None
        ),
        "allowedUsers": _user_names(allowed_user, all_users),
        "memoryPerCoreMb": parse_memory(mem_per_core) if mem_per_core is not None else None,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        raise CliError("give at least one setting to change (see --help)", exit_code=2)
    with api_client() as client:
        try:
            current, etag = client.get_template_etag(name)
        except ApiError as e:
            if e.status != 404:
                raise
            current, etag = {}, None
        try:
            saved = client.put_template(name, {**current, **changes}, if_match=etag)
        except ApiError as e:
            if e.status == 409:
                raise CliError(
                    f"template {name} was changed by someone else meanwhile; run the command again"
                ) from None
            raise
        if changes.get("allowedUsers"):
            _warn_unknown_users(client, changes["allowedUsers"])
    if as_json:
        print_json(saved)
        return
    verb = "updated" if current else "created"
    stdout_console().print(f"template {dash(saved.get('name'))} {verb}", markup=False)


def _warn_unknown_users(client: Any, allowed: list[str]) -> None:
    """A warning (stderr) per allowed name no user has: the template is saved (users may be
    added after it), but a misspelt or miscased name would refuse its user later."""
    users = [u["name"] for u in client.list_users().get("users", [])]
    for line in unknown_allowed_users(allowed, users):
        stderr_console().print(Text(f"warning: {line}"), soft_wrap=True)


@app.command("delete")
def template_delete(name: Name) -> None:
    """Delete a job template (admins only); jobs submitted under it are not changed."""
    with api_client() as client:
        done = client.delete_template(name)
    stdout_console().print(f"template {dash(done.get('deleted'))} deleted", markup=False)
