"""The error types the CLI turns into a single red line instead of a traceback."""

from __future__ import annotations

import os
import re
from typing import Any


class CliError(Exception):
    """A failure the user can act on; ``str(error)`` says what to fix.

    :func:`hpc.cli.main` prints it as one line on stderr and exits with
    :attr:`exit_code`.
    """

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class InvalidInput(CliError):
    """Input the client refuses before sending anything (exit 2, as for a bad option).

    Not an :class:`hpc.client_http.ApiError`: no request was made, so callers that retry
    an unreachable control plane (status 0) or look at an HTTP status must not catch it.
    """

    def __init__(self, message: str, *, exit_code: int = 2) -> None:
        super().__init__(message, exit_code=exit_code)


# --- a bad setting in the environment -----------------------------------------------------

_EXPECTED = {
    "float_parsing": "not a number",
    "float_type": "not a number",
    "finite_number": "not a finite number",
    "int_parsing": "not a whole number",
    "int_type": "not a whole number",
    "int_from_float": "not a whole number",
    "bool_parsing": "expected true or false (or 1/0, yes/no, on/off)",
    "bool_type": "expected true or false (or 1/0, yes/no, on/off)",
    "dict_type": "expected a JSON object",
    "json_invalid": "not JSON",
}
_BOUNDS = {
    "greater_than_equal": ("ge", "at least"),
    "greater_than": ("gt", "more than"),
    "less_than_equal": ("le", "at most"),
    "less_than": ("lt", "less than"),
}
_FIELD_IN_SETTINGS_ERROR = re.compile(r'error parsing value for field "(\w+)"')


def settings_problem(error: BaseException) -> str | None:
    """One line for a setting the environment gives a bad value (``HPC_HEARTBEAT_INTERVAL_S=abc:
    not a number``), or None if ``error`` is not about :class:`shared.settings.Settings`.

    pydantic reports a field; the line names its environment variable as the user spelt it
    (names match whatever their case), the value and what is expected, one clause per bad
    setting, instead of pydantic's multi-line dump with its documentation links.
    """
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    if isinstance(error, ValidationError) and error.title == "Settings":
        clauses = []
        for detail in error.errors():
            if not detail.get("loc"):  # a rule across settings: its message names them
                clauses.append(str(detail.get("msg", "")).removeprefix("Value error, "))
                continue
            field = str(detail["loc"][0])
            variable, value = _variable(field)
            shown = value if value is not None else str(detail.get("input"))
            clauses.append(f"{variable}={_cut(shown)}: {_expected(detail)}")
        return "; ".join(clauses) if clauses else None
    if isinstance(error, SettingsError):  # a JSON-valued setting whose text is not JSON
        found = _FIELD_IN_SETTINGS_ERROR.search(str(error))
        if found is None:
            return None
        variable, value = _variable(found.group(1))
        cause = error.__cause__
        why = f"not JSON ({cause})" if cause is not None else "not JSON"
        return f"{variable}={_cut(value or '')}: {why}"
    return None


def _variable(field: str) -> tuple[str, str | None]:
    """The environment variable that set ``field`` (as spelt in the environment) and its value;
    the variable's canonical name and None if none is set."""
    from pydantic import AliasChoices

    from shared.settings import Settings

    prefix = str(Settings.model_config.get("env_prefix") or "")
    names = [f"{prefix}{field}".upper()]
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, str):
        names = [alias]
    elif isinstance(alias, AliasChoices):
        names = [c for c in alias.choices if isinstance(c, str)] or names
    for name in names:
        for key, value in os.environ.items():
            if key.upper() == name.upper():
                return key, value
    return names[0], None


def _expected(detail: Any) -> str:
    kind = str(detail.get("type", ""))
    ctx = detail.get("ctx") or {}
    if kind in _EXPECTED:
        return _EXPECTED[kind]
    if kind == "literal_error" and "expected" in ctx:
        return f"expected {ctx['expected']}"
    if kind in _BOUNDS and _BOUNDS[kind][0] in ctx:
        key, words = _BOUNDS[kind]
        return f"must be {words} {ctx[key]}"
    message = str(detail.get("msg", "not valid")).removeprefix("Value error, ")
    return message.replace("Input should be", "expected", 1)


def _cut(value: str, most: int = 80) -> str:
    return value if len(value) <= most else f"{value[:most]}... ({len(value)} characters)"
