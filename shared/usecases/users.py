"""API users: an admin adds one (a bearer token, shown once), lists them, removes one.

A user is the name and role its tokens carry (``Principal``); its jobs carry the name as
their ``owner``, and only the owner or an admin may change a job (HPC Pack's rule). Only
each token's SHA-256 digest is stored (shared/auth.py), so a lost token cannot be shown
again: add another, or remove the user and add it anew. Names follow POSIX user names
(letters, digits, ``_ . -``; 32 at most), the accounts a task could one day run as.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from shared.auth import digest
from shared.domain.access import role_conflict
from shared.domain.cluster import Principal
from shared.domain.specvalues import quoted, shown_json
from shared.domain.usernames import NAME_RULE, USER_NAME
from shared.errors import Conflict, InvalidRequest, NotFound
from shared.usecases.deps import Deps

ROLES = ("user", "admin")


@dataclass(frozen=True)
class User:
    name: str
    role: str
    tokens: int
    """Tokens that sign in as it (each ``hpc user add`` adds one)."""


def add_user(deps: Deps, name: str, role: str = "user") -> tuple[User, str]:
    """A new token for ``name`` (the user is made by its first); the user and the token."""
    rule = NAME_RULE
    if not isinstance(name, str):
        raise InvalidRequest(f'"name" must be a string ({rule}), got {shown_json(name)}')
    if not USER_NAME.fullmatch(name):
        raise InvalidRequest(f"user name {quoted(name)}: {rule}")
    if not isinstance(role, str) or role not in ROLES:
        shown = quoted(role) if isinstance(role, str) else shown_json(role)
        raise InvalidRequest(f"role must be one of {', '.join(ROLES)}, got {shown}")
    before = _refuse_other_role(deps, name, role)
    token = secrets.token_urlsafe(32)
    try:
        # The store decides the role atomically (the check above is for the message only):
        # of concurrent adds with different roles, one wins and the others get Conflict.
        deps.store.add_token(digest(token), Principal(name=name, role=role))
    except Conflict:
        _refuse_other_role(deps, name, role)  # say which role won
        raise
    return User(name, role, before + 1), token


def _refuse_other_role(deps: Deps, name: str, role: str) -> int:
    """Conflict if ``name`` has tokens of another role, or is a user's name in another case
    (a probe's `hpc user add Alice` beside alice made a second user, whom templates and
    `--owner` then told apart from alice); else how many tokens it has."""
    users = list_users(deps)
    other_case = next(
        (u.name for u in users if u.name.lower() == name.lower() and u.name != name), None
    )
    if other_case is not None:
        raise Conflict(
            f"user {other_case!r} exists: user names are one whatever their case here "
            f"(hpc user add {other_case} gives that user another token)"
        )
    same = [u for u in users if u.name == name]
    for user in same:
        if user.role != role:
            raise role_conflict(name, user.role, role)
    return sum(u.tokens for u in same)


def list_users(deps: Deps) -> list[User]:
    """Every user, by name, with how many tokens sign in as it."""
    counts: dict[tuple[str, str], int] = {}
    for _, principal in deps.store.list_tokens():
        key = (principal.name, principal.role)
        counts[key] = counts.get(key, 0) + 1
    return [User(name, role, n) for (name, role), n in sorted(counts.items())]


def remove_user(deps: Deps, name: str, caller: Principal) -> int:
    """Revoke every token of ``name`` (its jobs stay, with their owner); how many."""
    if name == caller.name:
        raise Conflict(
            f"you are {name}: removing yourself would leave this token unable to sign in; "
            "ask another admin"
        )
    mine = [d for d, p in deps.store.list_tokens() if p.name == name]
    removed = sum(1 for d in mine if deps.store.remove_token(d))
    if not mine:
        raise NotFound(f"user {name!r} does not exist (hpc user list)")
    return removed
