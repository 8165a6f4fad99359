"""The ``hpc`` command: Typer commands over :class:`hpc.client.ApiClient`.

This module is the entry point: the root Typer app, its error handling
(:class:`HpcGroup`, :func:`fail_line`, :func:`main`) and the registration of
the command groups, each in its own module under :mod:`hpc.commands`
(``hpc job`` in :mod:`hpc.commands.jobs`, and so on); helpers they share are
in :mod:`hpc.common`.

The command names and flags are a public contract (scripts and docs use
them). Output: Rich tables for people; ``--json`` prints the API's JSON
unchanged for scripts; ``hpc job submit`` prints only the new job id on
stdout.

Errors never show a traceback: :class:`HpcGroup` runs every command and turns
an API error, a bad option, Ctrl-C or an unexpected exception into one red
line on stderr and a non-zero exit code (set HPC_DEBUG=1 to see the
traceback of an unexpected exception); a setting the environment gives a bad value
(``HPC_HEARTBEAT_INTERVAL_S=abc``) is named with its value and what is expected. Because this lives in the group's
``main``, the console script and Typer's ``CliRunner`` behave the same.

Text that users or tasks wrote (names, output, error messages) is never
parsed as Rich markup and reaches the terminal without escape sequences or
control characters (:mod:`hpc.text`); only ``--json`` and a piped
``hpc task output`` pass it on unchanged.
"""

from __future__ import annotations

import inspect
import os
import re
import shlex
import sys
from typing import Any

import typer
from rich.text import Text
from typer.core import TyperGroup

from hpc.commands import (
    agents,
    autoscale,
    jobs,
    nodegroups,
    nodes,
    sim,
    tasks,
    templates,
    users,
)
from hpc.commands.dashboard import dashboard
from hpc.commands.up import up
from hpc.common import ID_RULE, stderr_console
from hpc.errors import CliError, settings_problem
from hpc.submit_options import SLURM_HINTS
from hpc.text import one_line

# --- error handling ---------------------------------------------------------


def fail_line(message: str) -> None:
    """Print ``error: <message>`` as one red line on stderr (never wrapped)."""
    text = Text("error: ", style="bold red")
    text.append(" ".join(one_line(message).split()), style="red")
    stderr_console().print(text, soft_wrap=True)


def _negative_id(e: Exception, ctx: Any, given: list[str] | None = None) -> str | None:
    """The error for ``hpc job cancel -1``: Click reads ``-1`` as an option and says "No such
    option: -1"; for a command that takes an id, say what an id is instead, naming the
    argument when it is clear which: the only one, or the first when the negative is the
    first word after the command (``hpc task view -1.1``, ``given``: the command line)."""
    option = getattr(e, "option_name", None)
    if not isinstance(option, str) or not _NEGATIVE.fullmatch(option) or ctx is None:
        return None
    ids = [
        p
        for p in ctx.command.params
        if p.param_type_name == "argument"
        and ((p.name or "").endswith(("_id", "_ids")) or p.name == "refs")  # task cancel|requeue
    ]
    if not ids:
        return None
    # as click names a bad value ("Invalid value for 'ID'"), where one argument can be meant
    first = given is not None and _first_word(given, ctx.command_path).startswith(option)
    named = f"Invalid value for {ids[0].get_error_hint()}: " if len(ids) == 1 or first else ""
    return f"{named}{ID_RULE}, got {option} (see `{ctx.command_path} --help`)"


_NEGATIVE = re.compile(r"-[0-9]+")


def _first_word(given: list[str], command_path: str) -> str:
    """The first word after the command's own words (``hpc task view``) on the command line."""
    depth = len(command_path.split()) - 1  # (the program's name is not in ``given``)
    return given[depth] if len(given) > depth else ""


def _command_without_dashes(e: Exception, ctx: Any, args: list[str]) -> str | None:
    """The error for ``hpc job submit mpirun -np 4 ./app``: Click takes ``-np`` for an
    option of ours and says "No such option: -n". For a command whose argument is a command
    line after ``--`` (its metavar starts with ``--``), an unknown option after a word that
    is no option's value is the command's own: say to put the command after ``--``."""
    if type(e).__name__ != "NoSuchOption" or ctx is None:
        return None
    command_arg = next(
        (
            p
            for p in ctx.command.params
            if p.param_type_name == "argument" and str(p.metavar or "").startswith("--")
        ),
        None,
    )
    if command_arg is None or "--" in args:
        return None
    split = _split_at_command(ctx, args)
    if split is None:
        return None
    ours, theirs = split
    usage = f"{ctx.command_path} [OPTIONS] -- {command_arg.metavar.removeprefix('--').strip()}..."
    example = shlex.join([*ctx.command_path.split(), *ours, "--", *theirs])
    said = e.format_message()  # type: ignore[attr-defined]  # (a NoSuchOption, checked above)
    return f"{said}: put the command after `--` ({usage}), e.g. `{example}`"


def _slurm_option(e: Exception, ctx: Any) -> str | None:
    """For an sbatch option ``hpc job submit`` takes in another form (``--time``, ``-n``,
    ``--partition``): what to give instead, where Click offered "--file, --name"."""
    option = getattr(e, "option_name", None)
    if type(e).__name__ != "NoSuchOption" or ctx is None or option not in SLURM_HINTS:
        return None
    if not ctx.command_path.endswith("job submit"):
        return None
    return f"No such option: {option}: {SLURM_HINTS[option]}"


def _split_at_command(ctx: Any, args: list[str]) -> tuple[list[str], list[str]] | None:
    """``args`` after the command's name, split at the first word that is neither an option
    of ``ctx``'s command nor an option's value, when an unknown option comes after that word
    (None if none does: the unknown option is then a typo of ours)."""
    takes_value = {
        opt: not getattr(p, "is_flag", False) and not getattr(p, "count", False)
        for p in ctx.command.params
        if p.param_type_name == "option"
        for opt in (*p.opts, *p.secondary_opts)
    }
    path = ctx.command_path.split()[1:]  # the group and command names: `job submit`
    rest = list(args)
    for name in path:  # up to and including the command's own name
        rest = rest[rest.index(name) + 1 :] if name in rest else rest
    first: int | None = None
    i = 0
    while i < len(rest):
        word = rest[i]
        if word.startswith("-") and word != "-":
            flag = word.split("=", 1)[0]
            if flag not in takes_value:
                return (rest[:first], rest[first:]) if first is not None else None
            i += 2 if takes_value[flag] and "=" not in word else 1
            continue
        if first is None:
            first = i
        i += 1
    return None


def unwrap_summaries(group: Any) -> None:
    """Join the lines of each command's first help paragraph (its summary), here and below,
    and make it the command's short help, which click's command lists show whole. Typer's
    rich help (no longer used: it cut option names at 80 columns) kept a docstring's line breaks in the command lists (its
    ``_make_command_help`` tests the markup mode the wrong way round), so ``hpc task
    --help`` broke "why it waits if it" / "is queued" mid-sentence."""
    for command in getattr(group, "commands", {}).values():
        text = command.help or ""
        first, sep, rest = inspect.cleandoc(text).partition("\n\n")
        if text and not first.startswith("\b"):
            command.help = " ".join(first.split()) + sep + rest
            # click's lists cut a summary at the line's end ("the control plane and...")
            # unless it is the command's short help, which they wrap whole
            command.short_help = command.short_help or " ".join(first.split())
        unwrap_summaries(command)


class HpcGroup(TyperGroup):
    """The root group: runs the command and reports any failure as one line."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise CliError("interrupted", exit_code=130) from None

    def main(  # type: ignore[override]
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        unwrap_summaries(self)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = result if isinstance(result, int) and not isinstance(result, bool) else 0
        except CliError as e:
            fail_line(str(e))
            code = e.exit_code
        except typer.TyperException as e:  # a usage error: bad option, bad value, missing argument
            if type(e).__name__ == "NoArgsIsHelpError":  # a bare group: show its help
                e.show()  # type: ignore[attr-defined]
            else:
                ctx = getattr(e, "ctx", None)
                hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
                given = list(sys.argv[1:] if args is None else args)
                fail_line(
                    _negative_id(e, ctx, given)
                    or _command_without_dashes(e, ctx, given)
                    or _slurm_option(e, ctx)
                    or e.format_message() + hint
                )
            code = e.exit_code
        except typer.Abort:
            fail_line("aborted")
            code = 1
        except UnicodeEncodeError as e:  # argv's bytes not UTF-8 (kept as surrogates)
            fail_line(not_utf8(e))
            code = 2  # bad input, as a bad option value is
        except Exception as e:
            problem = settings_problem(e)  # a bad HPC_* setting: name it, not pydantic's dump
            if problem is None and os.environ.get("HPC_DEBUG"):
                raise
            fail_line(
                problem
                or f"unexpected {type(e).__name__}: {e} (set HPC_DEBUG=1 to see the traceback)"
            )
            code = 1
        if standalone_mode:
            sys.exit(code)
        return code


def not_utf8(e: UnicodeEncodeError) -> str:
    """What to fix when a value holds bytes that are not UTF-8 (a probe's ``echo $'\\xff'``
    read as an unexpected error): the API, JSON, takes UTF-8 text only."""
    raw = e.object[e.start : e.end]
    shown = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else bytes(raw)
    hexed = "".join(f"\\x{b:02x}" for b in shown)
    return (
        f"a value given holds bytes that are not UTF-8 text ({hexed}): the API takes UTF-8 "
        "only; give it in UTF-8 (a task's command may run a script that holds such bytes)"
    )


app = typer.Typer(
    cls=HpcGroup,
    name="hpc",
    help="HybridHPC: submit and monitor jobs on a hybrid (on-premises + Azure) cluster.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's plain help: Rich's truncated option names at 80 columns
)
app.command()(up)
app.command()(dashboard)
app.add_typer(jobs.app, name="job")
app.add_typer(tasks.app, name="task")
app.add_typer(nodes.app, name="node")
app.add_typer(agents.app, name="agent")
app.add_typer(sim.app, name="sim")
app.add_typer(nodegroups.app, name="nodegroup")
app.add_typer(autoscale.app, name="autoscale")
app.add_typer(templates.app, name="template")
app.add_typer(users.app, name="user")


def main() -> None:
    """Console-script entry point (``hpc``); HpcGroup.main does the error handling and exits."""
    app(prog_name="hpc")


if __name__ == "__main__":
    main()
