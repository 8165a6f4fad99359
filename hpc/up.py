"""``hpc up``: a whole cluster on this machine, in the foreground.

It starts the control plane (the local Functions host, ``python -m devhost``)
and N node agents (``python -m agent``) as child processes, waits until the
API answers and lists every node Online (or, if an admin's ``hpc node drain | offline``
holds it, Draining or Offline with its agent registered, which it says), prints where
things are, and then stays until Ctrl-C or SIGTERM.

Guarantees:

- Stopping is ordered: the host first (SIGTERM, then SIGKILL after
  :data:`~hpc.up_processes.STOP_TIMEOUT_S`), so nothing is scheduled while agents stop,
  then the agents, whose last events wait in the (durable) bus for the next start. A second
  Ctrl-C kills what is left at once.
- Children run in their own process group, so a Ctrl-C in the terminal
  reaches ``hpc up`` alone and the order above holds; on Linux they also get
  SIGTERM if ``hpc up`` itself dies (PR_SET_PDEATHSIG), so nothing is left
  behind even after ``kill -9``.
- Each child's stdout and stderr go to ``HPC_HOME/logs/<name>.log`` (rewritten
  on every start); a failure to start prints the tail of that log.
- An agent that dies (while starting or later) is reported with the tail of
  its log and the cluster stays up; a control plane that dies, or every
  agent dying before its node came Online, ends ``hpc up`` with exit code 1.

The child processes are started, watched and stopped by :mod:`hpc.up_processes`;
this module checks the ground, drives them and prints what happens.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import socket
from importlib.util import find_spec
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from hpc.client import ApiClient
from hpc.client_http import ApiError
from hpc.errors import CliError
from hpc.render_nodes import nodes_table
from hpc.text import cell, safe
from hpc.up_processes import AGENT_GROUP, HOST_NAME, ClusterProcesses, Stopper

if TYPE_CHECKING:
    from shared.settings import Settings

AZURE_GROUP = "AzureNodes"


def app_root() -> Path:
    """The directory holding ``function_app.py`` (the host's working directory)."""
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "function_app.py").is_file():
        return checkout
    spec = find_spec("function_app")
    if spec is not None and spec.origin:
        return Path(spec.origin).resolve().parent
    raise CliError(
        "cannot find function_app.py: run `hpc up` from a HybridHPC checkout "
        "installed with `pip install -e .`"
    )


def check_port_free(port: int) -> None:
    """Raise CliError if something already listens on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR ignores connections lingering in TIME_WAIT from a previous run;
        # on Linux it still refuses a port with a live listener.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                raise CliError(
                    f"port {port} is in use (another `hpc up`?): stop it or pass --port"
                ) from None
            raise CliError(f"cannot use port {port}: {e.strerror}") from None


def hold_home(home: Path, port: int) -> IO[str]:
    """Lock ``home`` for this ``hpc up`` (an flock the kernel drops when the process ends,
    even after kill -9), or CliError naming the one that holds it: a second control plane
    on the same store and bus would run its own timers beside the first and rewrite its
    logs."""
    path = home / "up.lock"
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise CliError(
            f"a cluster is already up on HPC_HOME {home} ({holder}): stop it (Ctrl-C in its "
            "terminal), or give this one another HPC_HOME"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}, port {port}")
    handle.flush()
    return handle


def _add_local_azure_nodes(client: ApiClient, count: int, cores: int, console: Console) -> None:
    """AzureNodes on the local provider with at least ``count`` VMs (agent processes once
    started), Offline until the autoscaler (or ``hpc node start``) starts them.

    The group's settings are set once, when the group is still as the store made it
    (on-prem, no nodes): a restart leaves an admin's ``hpc nodegroup set AzureNodes --max 4``
    and added nodes as they are (a probe found max set back to 2 under 3 nodes, and
    ``hpc node add`` then refused). Later starts only raise maxNodes to fit ``count``, never
    lower it. With ``count`` 0 the group is still made local (maxNodes 0), so that
    ``hpc node add --group AzureNodes`` works once an admin raises its max."""
    group = _azure_group(client)
    have = _members(client, group["name"])
    if group.get("provider") is None:
        if have:  # on-prem nodes joined it: its provider changes only while it has none
            console.log(
                f"group {group['name']} is on-prem with {len(have)} node(s): left as it is "
                f"(no local VMs added; hpc nodegroup set {group['name']} --provider local once "
                "it has no nodes)"
            )
            return
        try:
            group = client.set_node_group(
                group["name"], provider="local", maxNodes=count, nodeCores=cores, minNodes=0
            )
        except ApiError as e:  # e.g. HPC_COMPUTE is not local here: the cluster runs on
            if e.status != 422:
                raise
            console.log(f"group {group['name']} left on-prem: {safe(e.message)}")
            return
    elif group.get("provider") != "local":
        console.log(f"group {group['name']} is managed by {group.get('provider')}: left as it is")
        return
    elif len(have) < count and int(group.get("maxNodes") or 0) < count:
        group = client.set_node_group(group["name"], maxNodes=count)  # raised, never lowered
    if len(have) < count:
        client.add_nodes(group["name"], count - len(have))  # of the group's nodeCores
        have = _members(client, group["name"])
    most = group.get("maxNodes")
    if not have:
        console.log(
            f"group {group['name']}: no nodes on the local provider (maxNodes {most}); add some "
            f"with hpc nodegroup set {group['name']} --max N and hpc node add --group "
            f"{group['name']} --count N"
        )
        return
    sizes = sorted({int(n.get("cores") or 0) for n in have})
    each = " or ".join(str(c) for c in sizes)
    console.log(
        f"group {group['name']}: {len(have)} node(s) of {each} core(s) on the local provider "
        f"(maxNodes {most}), started by the autoscaler when work needs them"
    )


def _azure_group(client: ApiClient) -> dict[str, Any]:
    """The AzureNodes group from its own route (its name matches whatever its case)."""
    try:
        return dict(client.get_node_group(AZURE_GROUP))
    except ApiError as e:
        if e.status != 404:
            raise
    raise CliError(f"the control plane has no node group {AZURE_GROUP}")  # every store makes it


def _members(client: ApiClient, group: str) -> list[dict[str, Any]]:
    return [n for n in client.list_nodes().get("nodes", []) if group in n.get("groups", [])]


def _summary(cluster: ClusterProcesses, token_path: Path) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("API", cell(cluster.url))
    table.add_row(
        "Dashboard", cell(f"{cluster.url}/api/dashboard (hpc dashboard: a link that signs in)")
    )
    table.add_row("Token file", cell(token_path))
    table.add_row("HPC_HOME", cell(cluster.home))
    table.add_row("Logs", cell(cluster.logs))
    return table


def _client_env_hint(cluster: ClusterProcesses, default_home: bool) -> str | None:
    """What another shell must export for ``hpc`` to find this cluster, if anything."""
    exports = []
    if cluster.port != 7071:
        exports.append(f"export HPC_API_URL={cluster.url}")
    if not default_home:
        exports.append(f"export HPC_HOME={cluster.home}")
    return "; ".join(exports) or None


def private_state(settings: Settings) -> None:
    """The cluster's own state under HPC_HOME is its owner's alone: the task output folder
    (``hpc task output`` is the job owner's and admins'; a probe found every local user could
    read it, which matters where tasks run as their owners), the store and the bus. HPC_HOME
    itself is left as it is: it may be a folder the user chose for other things too. So are
    the logs (``HPC_HOME/logs``) and the agents' folders."""
    output = settings.output_dir
    output.mkdir(parents=True, exist_ok=True)
    # the host's and agents' logs (they name jobs, commands and users) and the agents'
    # folders (end records, locks): an API probe found the logs readable by every local user
    folders = [output, settings.home_dir / "logs", settings.home_dir / "agents"]
    for folder in folders[1:]:
        folder.mkdir(exist_ok=True)
    logs = sorted(folders[1].iterdir())
    databases = (settings.store_path, settings.bus_path)
    files = [db.with_name(db.name + end) for db in databases for end in ("", "-wal", "-shm")]
    for path in (*folders, *files, *logs):
        with contextlib.suppress(FileNotFoundError):
            path.chmod(0o700 if path.is_dir() else 0o600)


def run_up(
    *, port: int, nodes: int, cores: int, azure_nodes: int = 0, console: Console | None = None
) -> int:
    """Run the local cluster until Ctrl-C or SIGTERM; the exit code for ``hpc up``."""
    # Imported here: they pull in the store, which commands talking HTTP never need.
    from shared.auth import ensure_admin_token
    from shared.settings import Settings
    from shared.wiring import build_store

    console = console or Console(log_path=False)
    if not console.is_terminal:  # a log file: as wide as `hpc node list` piped, so the node
        console.width = max(console.width, 160)  # table keeps its columns (newcomer probe)
    check_port_free(port)
    root = app_root()
    settings = Settings()
    try:
        home = settings.home_dir.resolve()
    except OSError as e:
        raise CliError(
            f"HPC_HOME {settings.home}: {e.strerror}: give a directory this user can write"
        ) from None
    default_home = "HPC_HOME" not in os.environ
    lock = hold_home(home, port)  # open until this process ends: one cluster per HPC_HOME

    store = build_store(settings)
    had_token = settings.token_path.exists()
    try:
        token, fresh = ensure_admin_token(settings, store)
    finally:
        store.close()
    if fresh and had_token:
        console.log(
            f"the token in {safe(settings.token_path)} was revoked (hpc user remove admin): it "
            "stays revoked, and a new admin token replaces it in that file"
        )
    private_state(settings)

    env = dict(os.environ)
    env.update(
        HPC_HOME=str(home),
        HPC_API_URL=f"http://127.0.0.1:{port}",
        PYTHONUNBUFFERED="1",
    )
    stopper = Stopper()
    previous = {sig: signal.signal(sig, stopper.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    cluster = ClusterProcesses(
        root=root, home=home, port=port, env=env, console=console, stopper=stopper
    )
    try:
        console.log(
            f"starting the control plane on {cluster.url} "
            f"(log: {safe(cluster.logs / f'{HOST_NAME}.log')})"
        )
        cluster.start_host()
        if stopper.stop.is_set():
            return 0
        console.log(f"starting {nodes} agent(s) in group {AGENT_GROUP} with {cores} core(s) each")
        with ApiClient(cluster.url, token=token, settings=settings) as client:
            cluster.start_agents(nodes, cores)
            online = cluster.wait_online(client)
            _add_local_azure_nodes(client, azure_nodes, cores, console)
        if stopper.stop.is_set():
            return 0

        up = sum(1 for n in online if n.get("state") == "Online")
        held = f" ({len(online) - up} held by an admin)" if up < len(online) else ""
        console.print(f"[bold green]HybridHPC is up[/] with {up} node(s) Online{held}")
        console.print(_summary(cluster, settings.token_path))
        if online:
            console.print(nodes_table(online))
        hint = _client_env_hint(cluster, default_home)
        if hint:
            console.print(f"In another shell: [bold]{safe(hint)}[/]", soft_wrap=True)
        console.print("Try: [bold]hpc job submit -- echo hello[/]  ·  [bold]Ctrl-C to stop[/]")
        return cluster.supervise()
    finally:
        console.log("stopping")
        cluster.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        console.print("stopped")
        lock.close()  # the next `hpc up` on this HPC_HOME may start
