"""The admin node actions as ``hpc node start|online|release|stop|drain|offline|remove`` send
them: one API call a node, by name or every node of ``--group``, each result or refusal said
on its own line; and ``--reason``, checked in the CLI's words. Out of hpc/commands/nodes.py,
which declares the commands."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.text import Text

from hpc import render
from hpc.client_http import ApiError
from hpc.common import api_client, checked_by, group_names, stderr_console, stdout_console
from hpc.errors import CliError
from hpc.render_nodes import find_node
from hpc.text import one_line
from shared.domain.groupnames import unknown_groups

T = TypeVar("T")


def act(
    action: str,
    names: list[str] | None,
    groups: list[str] | None,
    *,
    said: str = "",
    reason: str | None = None,
) -> None:
    """Ask the API for ``action`` on each node; ``said``: the command's own word for it
    (``online`` sends ``start``).

    Every node is asked in turn, a refusal (409, or 404 for a node that does not exist: a
    typo among the names, or a node removed since ``--group`` listed it) does not stop the
    rest, and each is printed; any other error (401, 403, no connection) would be the same
    for every node, so it stops the command at once. Named nodes: each was meant, so any
    refusal fails the command. ``--group`` (repeatable, or comma-separated: the nodes of
    every group, each once): a refusal fails it unless the node is already as the action
    would leave it (:data:`_ALREADY`: ``online`` past a node Online already)."""
    said = said or action
    groups = group_names(groups, "--group")
    if bool(names) == bool(groups):
        raise CliError(
            f"name the nodes to {_verb(said)}, or give --group G (not both)", exit_code=2
        )
    with api_client() as client:
        targets = names or []
        if groups:
            targets = _group_nodes(client, groups)
        refused: list[str] = []
        for name in targets:
            try:
                result: Any = _node_action(client, name, action, reason, named=not groups)
            except ApiError as exc:
                if exc.status not in (404, 409):
                    raise
                # one node's state does not stop the rest (a group's Offline node has
                # nothing to drain): each is said, and the others still get the action
                refusal = Text(f"{one_line(name)}: not {_done(said)}: {one_line(exc.message)}")
                stderr_console().print(refusal, soft_wrap=True)  # one line each
                if not groups or not _already(action, exc.body.get("state")):
                    refused.append(name)
                continue
            for node in result.get("nodes", []) or result.get("removed", []):
                if isinstance(node, str):
                    stdout_console().print(Text(f"{one_line(node)}: removed"))
                else:
                    line = Text(f"{one_line(node.get('name'))}: ")
                    line.append_text(render.state(node.get("state")))
                    if result.get("changed") is False:  # as the action leaves it already
                        line.append(" (already: nothing to do)")
                    elif node.get("startRequested") and node.get("state") == "Stopping":
                        line.append(" (starts once its VM is deallocated)")
                    elif node.get("provider") == "onprem" and node.get("state") == "Starting":
                        line.append(f" ({one_line(node.get('stateReason'))})")  # its agent's turn
                    stdout_console().print(line)
            if result.get("tasks"):
                stdout_console().print(Text(given_up(name, result["tasks"])), soft_wrap=True)
            for warning in result.get("warnings", []):
                # e.g. the autoscaler will start a stopped node again for its group's minNodes
                stderr_console().print(Text(f"warning: {one_line(warning)}"), soft_wrap=True)
        if refused:
            raise CliError(f"{len(refused)} of {len(targets)} node(s) not {_done(said)}")


def given_up(name: str, tasks: list[dict[str, Any]]) -> str:
    """What an offline took off the node, as ``hpc node offline`` says it: the tasks requeued
    (or canceled with their job), by JOB.TASK."""
    ids = [f"{t.get('jobId')}.{t.get('taskId')}" for t in tasks]
    queued = [i for i, t in zip(ids, tasks, strict=True) if t.get("state") == "Queued"]
    other = [f"{i} ({t.get('state')})" for i, t in zip(ids, tasks, strict=True) if i not in queued]
    n = len(tasks)
    said = ", ".join(queued + other)
    what = "requeued" if not other else "given up"
    return f"{one_line(name)}: {n} running task{'' if n == 1 else 's'} {what}: {said}"


def by_any_case(client: Any, name: str, call: Callable[[str], T]) -> T:
    """``call(name)``; a node not found by its exact name is asked again by the name of the
    node its case matches, as ``hpc node view`` finds it (a probe's ``hpc node drain
    ONPREM-2`` and ``hpc node set ONPREM-2`` were refused while view showed onprem-2)."""
    try:
        return call(name)
    except ApiError as exc:
        if exc.status != 404:
            raise
        node = find_node(client.list_nodes().get("nodes", []), name)
        if node is None or node.get("name") == name:
            raise
        return call(str(node["name"]))


def _node_action(client: Any, name: str, action: str, reason: str | None, *, named: bool) -> Any:
    """The action on ``name`` (a node named in another case too, :func:`by_any_case`; not one
    ``--group`` listed, whose name is its own)."""
    if not named:
        return client.node_action(name, action, reason)
    return by_any_case(client, name, lambda exact: client.node_action(exact, action, reason))


def _group_nodes(client: Any, groups: list[str]) -> list[str]:
    """The nodes of every group given (names in any case), each once, in the API's order;
    CliError, before any node is acted on, if a group does not exist or none has nodes."""
    wanted = {g.lower() for g in groups}
    nodes = client.list_nodes().get("nodes", [])
    targets = [n["name"] for n in nodes if wanted & {g.lower() for g in n["groups"]}]
    have = {g.lower() for n in nodes for g in n["groups"]}
    empty = list(dict.fromkeys(g for g in groups if g.lower() not in have))
    if empty:
        known = [g["name"] for g in client.list_node_groups().get("groups", [])]
        unknown = unknown_groups(empty, known)
        if unknown:
            which = ", ".join(repr(g) for g in unknown)
            verb = "does not exist" if len(unknown) == 1 else "do not exist"
            raise CliError(
                f"node group{_s(unknown)} {which} {verb} (hpc nodegroup list): {', '.join(known)}"
            )
    if not targets:
        verb = "has" if len(empty) == 1 else "have"
        raise CliError(f"node group{_s(empty)} {', '.join(empty)} {verb} no nodes")
    return targets  # (each node once: one pass over the list)


def _s(items: list[str]) -> str:
    return "" if len(items) == 1 else "s"


_ALREADY = {
    "start": ("Online", "Starting"),
    "stop": ("Offline", "Stopping"),
    "drain": ("Draining", "Offline"),
    "offline": ("Offline",),
    "release": ("Online", "Starting", "Stopping"),  # up or on its way: nothing to release
}
"""The states in which a node already is as each action would leave it: the API answers
those with a 200 (``"changed": false``); one refused in them anyway (a 409 from an older
control plane, or a drain of an Offline node) does not fail a ``--group`` action."""


def _already(action: str, state: object) -> bool:
    """Whether the API refused ``action`` on a node already in a state the action leads to:
    its 409 says the node's state (``"state"``)."""
    return isinstance(state, str) and state in _ALREADY.get(action, ())


def _verb(action: str) -> str:
    return {"offline": "take offline", "online": "bring online"}.get(action, action)


def _done(action: str) -> str:
    return {"start": "started", "stop": "stopped", "drain": "drained",
            "offline": "taken offline", "online": "brought online",
            "remove": "removed", "release": "released"}.get(action, action)  # fmt: skip


MAX_REASON = 200
"""The control plane's bound (functions/nodes_api.py), checked here to say it in the CLI's
words: a probe's ``--reason ''`` read the API's ``the body is {"reason": TEXT}``."""


def parse_reason(text: str) -> str:
    """``--reason``: 1 to 200 characters of plain text."""
    given = len(text.strip())
    if not 1 <= given <= MAX_REASON:
        raise ValueError(
            f"give 1 to {MAX_REASON} characters, e.g. 'disk swap, ticket 123' "
            f"(got {given} after trimming spaces)"
        )
    bad = next((c for c in text if unicodedata.category(c) in ("Cc", "Cf")), None)
    if bad is not None:
        raise ValueError(f"it holds the control character U+{ord(bad):04X}: give plain text")
    return text


Reason = Annotated[
    str | None,
    typer.Option(
        help="Why, for the node's reason (Slurm's reason=): 'disk swap, ticket 123'. "
        "The reason says who in any case; none given keeps the why of the node's hold.",
        callback=checked_by(parse_reason),
    ),
]
