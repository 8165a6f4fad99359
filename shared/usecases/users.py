"""API users: an admin adds one (a bearer token, shown once), lists them, removes one, and
lists or revokes one user's tokens one at a time.

A user is the name and role its tokens carry (``Principal``); its jobs carry the name as
their ``owner``, and only the owner or an admin may change a job (HPC Pack's rule). Only
each token's SHA-256 digest is stored (shared/auth.py), so a lost token cannot be shown
again: add another, or remove the user and add it anew. Names follow POSIX user names
(letters, digits, ``_ . -``; 32 at most), the accounts a task could one day run as.

A token is named by its id: the first 12 hex digits of its digest. That is safe to show, since
the digest of a 256-bit random token tells nothing of it, and enough to tell a user's few
tokens apart. An admin revokes one leaked token by it, and the user's others still sign in
(a multi-user probe: only all of a user's tokens could be revoked, with ``hpc user remove``).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.auth import digest
from shared.domain.access import role_conflict
from shared.domain.cluster import Principal
from shared.domain.specvalues import quoted, shown_json
from shared.domain.usernames import NAME_RULE, USER_NAME
from shared.errors import Conflict, InvalidRequest, NotFound
from shared.usecases.deps import Deps

ROLES = ("user", "admin")
LOCAL_ADMIN = "admin"
"""The user ``hpc up``'s token (HPC_HOME/admin.token) signs in as (shared/auth.py)."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    tokens: int
    """Tokens that sign in as it (each ``hpc user add`` adds one)."""


@dataclass(frozen=True)
class Token:
    id: str
    """The first :data:`TOKEN_ID_LEN` hex digits of its digest."""
    created: datetime | None


TOKEN_ID_LEN = 12
TOKEN_ID = re.compile(r"[0-9a-f]{6,64}")
"""A token id as given: at least 6 of its first hex digits (a unique prefix, as git's)."""


def token_id(sha256: str) -> str:
    return sha256[:TOKEN_ID_LEN]


def add_user(deps: Deps, name: str, role: str = "user") -> tuple[User, str]:
    """A new token for ``name`` (the user is made by its first); the user and the token
    (its id: :func:`token_id` of its :func:`digest`)."""
    rule = NAME_RULE
    if not isinstance(name, str):
        raise InvalidRequest(f'"name" must be a string ({rule}), got {shown_json(name)}')
    if not USER_NAME.fullmatch(name):
        raise InvalidRequest(f"user name {quoted(name)}: {rule}")
    if not isinstance(role, str) or role not in ROLES:
        shown = quoted(role) if isinstance(role, str) else shown_json(role)
        raise InvalidRequest(f"role must be one of {', '.join(ROLES)}, got {shown}")
    if name == LOCAL_ADMIN and role != "admin":
        # a probe: admin's tokens revoked, then `hpc user add admin` made a user admin, and
        # `hpc up` could not start again (its admin.token must sign in as an admin)
        raise Conflict(
            f"the name {LOCAL_ADMIN} is hpc up's admin (HPC_HOME/admin.token signs in as it): "
            f"add it with the admin role (hpc user add {LOCAL_ADMIN} --admin), or name the "
            "user otherwise"
        )
    before = _refuse_other_role(deps, name, role)
    token = secrets.token_urlsafe(32)
    try:
        # The store decides the role atomically (the check above is for the message only):
        # of concurrent adds with different roles, one wins and the others get Conflict.
        deps.store.add_token(digest(token), Principal(name=name, role=role, created=deps.clock()))
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


def list_tokens(deps: Deps, name: str) -> list[Token]:
    """The tokens that sign in as ``name``, oldest first (those from before their time was
    kept first); NotFound for a user with none."""
    mine = [(d, p) for d, p in deps.store.list_tokens() if p.name == name]
    if not mine:
        raise NotFound(f"user {name!r} does not exist (hpc user list)")
    epoch = datetime.min.replace(tzinfo=UTC)
    mine.sort(key=lambda dp: (dp[1].created or epoch, dp[0]))
    return [Token(token_id(d), p.created) for d, p in mine]


def revoke_token(deps: Deps, name: str, token: str, *, caller_token: str) -> tuple[str, int]:
    """Revoke the one token of ``name`` whose id is (or starts with) ``token``, in any case;
    its full id and how many tokens the user has left (0: it can no longer sign in). Not the
    token this request signs in with (``caller_token``, its digest): that would leave the
    caller locked out mid-request; another admin, or another token, may."""
    if not isinstance(token, str) or not TOKEN_ID.fullmatch(token.lower()):
        raise InvalidRequest(
            f"token id {quoted(str(token))}: the id `hpc user tokens {name}` shows "
            "(hex digits, at least the first 6)"
        )
    token = token.lower()
    mine = [d for d, p in deps.store.list_tokens() if p.name == name]
    if not mine:
        raise NotFound(f"user {name!r} does not exist (hpc user list)")
    found = [d for d in mine if d.startswith(token)]
    if not found:
        raise NotFound(f"user {name!r} has no token {token} (hpc user tokens {name})")
    if len(found) > 1:
        raise InvalidRequest(
            f"token id {token} is the start of {len(found)} of {name}'s tokens: give more of it "
            f"(hpc user tokens {name})"
        )
    if found[0] == caller_token:
        raise Conflict(
            f"token {token_id(found[0])} is the one this request signs in with: revoking it "
            "would lock you out; revoke it from another token or ask another admin"
        )
    if not deps.store.remove_token(found[0]):
        raise NotFound(f"user {name!r} has no token {token} (revoked meanwhile)")
    return token_id(found[0]), len(mine) - 1
