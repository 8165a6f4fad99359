"""From ``hpc job submit`` options (or a file) to the job spec the HTTP API takes.

The server validates every spec again; the checks here exist so that a typo
in ``--sweep``, ``--env`` or ``--priority`` is reported before anything is
sent, with a message that names the option. Each ``parse_*`` raises
``ValueError`` with that message.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shared.domain.jobspec import ONE_TASK_KEYS, Sweep, check_env_name, priority_value
from shared.domain.memory import parse_mb
from shared.domain.models import PRIORITY_NAMES
from shared.domain.outputpaths import check_output_path
from shared.domain.specvalues import JsonRefused, load_json, quoted
from shared.domain.taskspans import merged


def parse_priority(text: str) -> int | str:
    """A priority name (any case; returned in HPC Pack's spelling) or an integer 0-4000,
    checked by the server's own rule."""
    by_lower = {name.lower(): name for name in PRIORITY_NAMES}
    if text.strip().lower() in by_lower:
        return by_lower[text.strip().lower()]
    return priority_value(text.strip())


def parse_sweep(text: str) -> str:
    """``START-END[:STEP]`` checked with the server's own parser; returned as given, trimmed."""
    try:
        Sweep.parse(text)
    except ValidationError as e:
        raise ValueError(
            "; ".join(err["msg"].removeprefix("Value error, ") for err in e.errors())
        ) from None
    return text.strip()


def parse_env(items: list[str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``KEY=VALUE`` pairs (the value may contain ``=`` and be empty), or ``KEY`` alone: its
    value in this shell's environment (``environ``), as Slurm's ``--export=KEY`` passes it
    (a user probe's ``--env A`` was refused)."""
    env: dict[str, str] = {}
    shell = os.environ if environ is None else environ
    for item in items:
        key, sep, value = item.partition("=")
        check_env_name(key)
        if not sep:
            if key not in shell:
                raise ValueError(
                    f"{quoted(item)} is not set in this shell, to pass on: give KEY=VALUE, "
                    "e.g. --env OMP_NUM_THREADS=4, or export it first"
                )
            value = shell[key]
        env[key] = value
    return env


def parse_cores(text: str) -> int | dict[str, int]:
    """``--cores N`` or ``--cores MIN-MAX`` (grows up to MAX when cores are free), as the
    spec's ``cores``: a number or ``{"min": MIN, "max": MAX}``."""
    low, sep, high = text.strip().partition("-")
    if not low.strip().isdigit() or (sep and not high.strip().isdigit()):
        raise ValueError(f"{quoted(text)} is not N or MIN-MAX cores, e.g. --cores 4 or --cores 2-8")
    first, last = int(low), int(high) if sep else int(low)
    if first < 1:
        raise ValueError(f"{text!r}: a task needs at least 1 core")
    if last < first:
        raise ValueError(f"{text!r}: MAX {last} is below MIN {first}")
    return {"min": first, "max": last} if sep else first


def parse_memory(text: str) -> int:
    """A size, ``4G``, ``512M``, ``1.5T`` or MB (``4096``), as MB by the server's own rule
    (``--min-memory``, ``--node-memory``)."""
    try:
        return parse_mb(text)
    except ValueError:
        raise ValueError(
            f"{quoted(text)} is not a size: give e.g. 4G, 512M, 1.5T or 4096 (MB), 1 MB to 64 TB"
        ) from None


def parse_output_path(text: str, *, sweep: bool = True) -> str:
    """A --stdout / --stderr path, its placeholders checked by the server's own rule
    (``sweep``: whether the task is a sweep, which ``%a`` needs)."""
    check_output_path(text, sweep=sweep)
    return text


def join_command(args: list[str]) -> str:
    """One shell command: a single argument as-is (so ``'echo $X'`` keeps its ``$X``), else quoted."""
    return args[0] if len(args) == 1 else shlex.join(args)


def build_spec(
    *,
    command: str,
    cores: int | dict[str, int] = 1,
    exclusive: bool = False,
    nodes: int | None = None,
    min_memory_mb: int | None = None,
    sweep: str | list[str] | None = None,
    work_dir: str | None = None,
    env: dict[str, str] | None = None,
    stdout: str | None = None,
    stderr: str | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """A one-task job spec (a sweep expands server-side; ``--array 1,3,5-9`` is one task entry
    per range, alike otherwise); ``settings`` are the job's, as :func:`job_settings` takes
    them. Options left out are left to the server."""
    given = {
        "exclusive": exclusive or None,
        "nodes": nodes,
        "minMemoryMb": min_memory_mb,
        "workDir": work_dir,
        "env": env or None,
        "stdout": stdout,
        "stderr": stderr,
    }
    task = {"command": command, "cores": cores, **{k: v for k, v in given.items() if v is not None}}
    sweeps = [sweep] if isinstance(sweep, str) else sweep or []
    spec: dict[str, Any] = {"tasks": [{**task, "sweep": s} for s in sweeps] or [task]}
    spec.update(job_settings(**settings))
    return spec


def with_job_exclusive(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with the job-level ``exclusive`` set; a one-task spec given by a top-level
    command (whose top-level ``exclusive`` is the task's) is first moved into ``tasks``."""
    if "command" in spec and "tasks" not in spec:
        task = {k: spec.pop(k) for k in ONE_TASK_KEYS if k in spec}
        spec = {**spec, "tasks": [task]}
    return {**spec, "exclusive": True}


def job_settings(
    *,
    name: str | None = None,
    template: str | None = None,
    node_groups: list[str] | None = None,
    priority: int | str | None = None,
    runtime_limit: int | None = None,
    valid_exit_codes: list[int] | None = None,
    max_concurrent: int | None = None,
    depends_on: list[int] | None = None,
    max_retries: int | None = None,
    hold_until: str | None = None,
    min_memory_mb: int | None = None,
    job_runtime_limit: int | None = None,
) -> dict[str, Any]:
    """The job-level fields of a spec that the flags give (None, empty: not given); also what
    flags beside ``--file`` put over the file's, as HPC Pack's ``job submit /jobfile:`` takes
    ``/priority:`` and the like."""
    given: dict[str, Any] = {
        "name": name,
        "template": template,
        "nodeGroups": node_groups or None,
        "priority": priority,
        "runtimeLimit": runtime_limit,
        "validExitCodes": valid_exit_codes or None,
        "maxConcurrent": max_concurrent,
        "dependsOn": depends_on or None,
        "maxRetries": max_retries,
        "holdUntil": hold_until,
        "minMemoryMb": min_memory_mb,
        "jobRuntimeLimit": job_runtime_limit,
    }
    return {k: v for k, v in given.items() if v is not None}


def parse_array(text: str) -> tuple[list[str], int | None]:
    """Slurm's ``--array 1-100%10``: the sweep ranges (``1,3,5-9:2`` is three; a lone index
    ``5`` is ``5-5``, as Slurm takes both), and how many may run at once."""
    sweep, sep, cap = text.partition("%")
    limit = None
    if sep:
        if not cap.strip().isdigit() or int(cap) < 1:
            raise ValueError(
                f"{quoted(text)}: after % comes how many may run at once, e.g. 1-100%10"
            )
        limit = int(cap)
    parts = [part.strip() for part in sweep.split(",")]
    if not all(parts):
        raise ValueError(f"{quoted(text)}: give indices or ranges between the commas, e.g. 1,3,5-9")
    return _once_each([parse_sweep(f"{p}-{p}" if p.isdigit() else p) for p in parts]), limit


_DEDUPE_UP_TO = 2_000_000
"""Indices counted at most (above it the server refuses the job's size anyway)."""


def _once_each(ranges: list[str]) -> list[str]:
    """Each index once, as Slurm's array is a set of indices (a probe's ``--array 1,1,2`` ran
    task 1 twice, both writing one ``%a`` file): ranges that overlap are merged into runs of
    consecutive indices, in order; ranges that do not are kept as given."""
    sweeps = [Sweep.parse(r) for r in ranges]
    total = sum(s.count for s in sweeps)
    if len(sweeps) < 2 or total > _DEDUPE_UP_TO:
        return ranges
    indices = {i for s in sweeps for i in s.indices()}
    if len(indices) == total:
        return ranges
    return [f"{first}-{last}" for first, last in merged((i, i) for i in indices)]


def parse_exit_codes(text: str) -> list[int]:
    """``0,3`` as [0, 3]."""
    try:
        codes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(
            f"{quoted(text)} is not a comma-separated list of exit codes, e.g. 0,3"
        ) from None
    if not codes:
        raise ValueError("give at least one exit code, e.g. 0,3")
    return codes


def absolute_work_dir(path: str, base: str) -> str:
    """A task's working directory as the CLI sends it: a relative ``path`` taken from
    ``base`` (the directory the user submits from), as Slurm's ``--chdir`` is; the agent
    would otherwise take it from its own directory, on another machine or account. Absolute
    paths, and empty ones (the server's to refuse), are sent as given."""
    if not path.strip() or os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(base, path))  # lexical, as the shell's `cd a/..`


def resolve_work_dirs(
    spec: dict[str, Any], base: str, default: str | None = None
) -> dict[str, Any]:
    """A job spec file's relative ``workDir`` values (top-level, for a one-task job, and each
    task's) made absolute from ``default`` (``--workdir``, the job's directory, itself from
    ``base``) if given, else from ``base``: the directory the user submits from, as
    ``--workdir`` is (a probe: ``--workdir /scratch/run`` beside a task's ``"workDir": "a"``
    ran it in the shell's ``a``). A task with none gets ``default``, else ``base``, as ``hpc
    job submit -- cmd`` and Slurm's sbatch do (a probe: the same command moved into a file ran
    in the agent's home, and its relative output files landed there). Everything else is
    sent as it was written; values that are not text are left for the server."""
    fallback = absolute_work_dir(default if default is not None else ".", base)
    base = fallback if default is not None and default.strip() else base

    def resolved(fields: Any) -> Any:
        if not isinstance(fields, dict):
            return fields
        out = {
            key: absolute_work_dir(value, base)
            if key in ("workDir", "work_dir") and isinstance(value, str)
            else value
            for key, value in fields.items()
        }
        if "command" in out and "workDir" not in out and "work_dir" not in out:
            out["workDir"] = fallback
        return out

    spec = resolved(spec)
    if isinstance(spec.get("tasks"), list):
        spec["tasks"] = [resolved(task) for task in spec["tasks"]]
    return spec


def load_spec_file(path: str) -> dict[str, Any]:
    """A job spec from a JSON file, or from stdin for ``-``; must be a JSON object. A UTF-8
    byte order mark is skipped: Notepad and PowerShell's ``Out-File -Encoding utf8`` write
    one, and HPC Pack's users edit job files with them (a probe's was refused)."""
    where = "stdin" if path == "-" else path
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8-sig")
        text = text.removeprefix("\ufeff")  # stdin's, decoded as the terminal's UTF-8
    except OSError as e:
        raise ValueError(f"cannot read {where}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{where} is not UTF-8 text") from None
    try:
        spec = load_json(text)  # the server's own rules: how deep JSON nests, no key twice
    except JsonRefused as e:
        raise ValueError(f"{where} {e}") from None
    except ValueError as e:  # also a number of more than 4300 digits
        raise ValueError(f"{where} is not valid JSON: {e}") from None
    if not isinstance(spec, dict):
        raise ValueError(
            f"{where} must hold a JSON object (the job spec), not {type(spec).__name__}"
        )
    return spec


def dependency_ids(item: str) -> list[str]:
    """One ``--depends-on`` item's ids: an id, or Slurm's ``afterok:12:15``, which is this
    flag's own rule (start once they Finished). Slurm's other kinds are said in this CLI's
    words (a probe's ``afterok:8`` read "ids are whole numbers")."""
    kind, sep, ids = item.strip().partition(":")
    if not sep:
        return [item]
    if kind.strip().lower() == "afterok":
        return ids.split(":")
    hint = {
        "afterany": "--depends-on ID --run-dependents-on-failure (it runs however they end)",
        "afternotok": "--depends-on ID --run-dependents-on-failure, and test their state",
    }.get(kind.strip().lower(), "--depends-on ID (Slurm's afterok: once they Finished)")
    raise ValueError(f"Slurm's {quoted(kind + ':')} is not taken here; give {hint}")
