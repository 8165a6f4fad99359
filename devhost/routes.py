"""Functions (ASP.NET Core) route templates, compiled to regular expressions.

Supported: literal segments (matched case-insensitively, like ASP.NET),
``{name}``, constraints ``{id:int}`` (chainable: ``{id:int:min(1)}``),
optional ``{id?}`` and default ``{id=1}`` parameters at the end, catch-all
``{*rest}`` (which may be empty), and complex segments such as
``{name}.{ext}``. Route values are the decoded path segments, as strings.

When several templates match a path, the more specific wins by ASP.NET's
inbound precedence (literal, then constrained parameter, then parameter,
then complex segment, then catch-all, segment by segment), so ``users/me``
beats ``users/{name}`` whatever the registration order.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

Check = Callable[[str], bool]


def _is_int(value: str, bits: int) -> bool:
    if re.fullmatch(r"-?\d+", value) is None:
        return False
    return -(2 ** (bits - 1)) <= int(value) < 2 ** (bits - 1)


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return value.lower().lstrip("+-") not in ("nan", "inf", "infinity")


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _constraint(name: str, args: str | None) -> Check:
    """The check for one route constraint; unknown constraints fail loading, as in Functions."""
    simple: dict[str, Check] = {
        "int": lambda v: _is_int(v, 32),
        "long": lambda v: _is_int(v, 64),
        "bool": lambda v: v.lower() in ("true", "false"),
        "guid": _is_guid,
        "alpha": lambda v: re.fullmatch(r"[A-Za-z]+", v) is not None,
        "double": _is_float,
        "float": _is_float,
        "decimal": _is_float,
        "datetime": _is_datetime,
        "required": lambda v: v != "",
    }
    key = name.lower()
    if key in simple:
        if args is not None:
            raise ValueError(f"route constraint {name!r} takes no arguments")
        return simple[key]
    if args is None:
        raise ValueError(f"unknown route constraint {name!r}")
    if key == "regex":  # braces are doubled in templates: regex(^\d{{3}}$)
        pattern = re.compile(args.replace("{{", "{").replace("}}", "}"), re.IGNORECASE)
        return lambda v: pattern.search(v) is not None
    numbers = [int(a) for a in args.split(",")]
    if key == "minlength":
        return lambda v: len(v) >= numbers[0]
    if key == "maxlength":
        return lambda v: len(v) <= numbers[0]
    if key == "length":
        shortest, longest = numbers[0], numbers[-1]
        return lambda v: shortest <= len(v) <= longest
    if key in ("min", "max", "range"):
        low = numbers[0] if key in ("min", "range") else None
        high = numbers[-1] if key in ("max", "range") else None

        def in_range(v: str) -> bool:
            if not _is_int(v, 64):
                return False
            n = int(v)
            return (low is None or n >= low) and (high is None or n <= high)

        return in_range
    raise ValueError(f"unknown route constraint {name!r}")


@dataclass(frozen=True)
class _Param:
    name: str
    group: str
    checks: tuple[Check, ...] = ()
    optional: bool = False
    default: str | None = None
    catch_all: bool = False


def _closing_brace(text: str, start: int) -> int:
    """Index of the ``}`` closing the parameter opened at ``start`` (parentheses may hold braces)."""
    depth = 0
    for i in range(start + 1, len(text)):
        ch = text[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "}" and depth <= 0:
            return i
    raise ValueError(f"unclosed '{{' in route segment {text!r}")


def _parse_param(body: str, group: str) -> _Param:
    catch_all = body.startswith("*")
    body = body.lstrip("*")
    match = re.match(r"[^:?=]+", body)
    if match is None:
        raise ValueError(f"route parameter without a name: {{{body}}}")
    name, rest = match.group(0).strip(), body[match.end() :]
    checks: list[Check] = []
    while rest.startswith(":"):
        constraint = re.match(r":(\w+)", rest)
        if constraint is None:
            raise ValueError(f"bad route constraint in {{{body}}}")
        rest = rest[constraint.end() :]
        args = None
        if rest.startswith("("):
            depth = 0
            for i, ch in enumerate(rest):
                depth += ch == "("
                depth -= ch == ")"
                if depth == 0:
                    args, rest = rest[1:i], rest[i + 1 :]
                    break
            else:
                raise ValueError(f"unclosed '(' in route parameter {{{body}}}")
        checks.append(_constraint(constraint.group(1), args))
    optional, default = False, None
    if rest.startswith("?"):
        optional, rest = True, rest[1:]
    elif rest.startswith("="):
        default, rest = rest[1:], ""
    if rest:
        raise ValueError(f"cannot parse route parameter {{{body}}}")
    return _Param(name, group, tuple(checks), optional, default, catch_all)


@dataclass(frozen=True)
class RouteTemplate:
    """A compiled template; ``match`` gives the route values or None."""

    template: str
    regex: re.Pattern[str]
    params: tuple[_Param, ...]
    precedence: tuple[int, ...]

    def match(self, path: str) -> dict[str, str] | None:
        found = self.regex.match(path)
        if found is None:
            return None
        values: dict[str, str] = {}
        for param in self.params:
            value = found.group(param.group)
            if value is None or (param.catch_all and value == ""):
                if param.default is not None:
                    values[param.name] = param.default
                continue
            if not all(check(value) for check in param.checks):
                return None
            values[param.name] = value
        return values


def compile_template(template: str, prefix: str = "") -> RouteTemplate:
    """Compile ``prefix/template`` (leading and trailing slashes ignored)."""
    full = "/".join(p.strip("/") for p in (prefix, template) if p.strip("/"))
    segments = full.split("/") if full else []
    params: list[_Param] = []
    pattern = ""
    precedence: list[int] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        pieces: list[str | _Param] = []
        pos = 0
        while pos < len(segment):
            if segment[pos] == "{":
                end = _closing_brace(segment, pos)
                param = _parse_param(segment[pos + 1 : end], f"p{len(params)}")
                params.append(param)
                pieces.append(param)
                pos = end + 1
            else:
                end = segment.find("{", pos)
                end = len(segment) if end < 0 else end
                pieces.append(segment[pos:end])
                pos = end
        if not pieces:
            raise ValueError(f"empty segment in route {template!r}")
        only = pieces[0] if len(pieces) == 1 else None
        if isinstance(only, _Param):
            precedence.append((5 if only.catch_all else 3) - bool(only.checks))
            if only.catch_all:
                if not last:
                    raise ValueError(f"a catch-all parameter must end the route: {template!r}")
                pattern += f"(?:/(?P<{only.group}>.*))?"
            elif only.optional or only.default is not None:
                if not last:
                    raise ValueError(f"an optional parameter must end the route: {template!r}")
                pattern += f"(?:/(?P<{only.group}>[^/]+))?"
            else:
                pattern += f"/(?P<{only.group}>[^/]+)"
            continue
        precedence.append(1 if only is not None else 4)
        pattern += "/"
        for i, piece in enumerate(pieces):
            if isinstance(piece, str):
                pattern += re.escape(piece)
                continue
            if piece.catch_all:
                raise ValueError(f"a catch-all parameter must fill its segment: {template!r}")
            if piece.optional or piece.default is not None:
                if not last or i != len(pieces) - 1:
                    raise ValueError(f"an optional parameter must end the route: {template!r}")
                before = pieces[i - 1] if i > 0 else ""
                literal = before if isinstance(before, str) else ""
                if literal:  # "{name}.{ext?}": the separator is optional with the parameter
                    pattern = pattern[: -len(re.escape(literal))]
                excluded = re.escape(literal[:1]) if literal else ""
                pattern += f"(?:{re.escape(literal)}(?P<{piece.group}>[^/{excluded}]+))?"
            else:
                # Greedy, so the last literal separates (ASP.NET matches right to left),
                # unless an optional parameter follows and must get its chance.
                ends_optional = isinstance(pieces[-1], _Param) and (
                    pieces[-1].optional or pieces[-1].default is not None
                )
                pattern += f"(?P<{piece.group}>[^/]+{'?' if ends_optional else ''})"
    regex = re.compile(f"^{pattern}/?$", re.IGNORECASE)
    return RouteTemplate(template, regex, tuple(params), tuple(precedence))
