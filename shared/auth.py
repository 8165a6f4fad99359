"""Bearer tokens: created by ``hpc up``, checked on every HTTP route but health.

Only the SHA-256 digest of a token is stored; tokens are 256-bit random, so
a plain digest (no salt, no slow hash) is enough and allows a lookup by key.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from shared.domain.cluster import Principal
from shared.domain.records import utcnow
from shared.errors import Unauthorized
from shared.ports.store import Store
from shared.settings import Settings


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def ensure_admin_token(settings: Settings, store: Store) -> tuple[str, bool]:
    """The local admin token, read from HPC_HOME/admin.token (mode 0600), and whether it is
    new. A file whose token the store does not know is registered if the store has no token
    at all (a new store); otherwise an admin revoked it (``hpc user remove admin``, e.g.
    because the file leaked), so it stays revoked and a new token replaces the file."""
    path = settings.token_path
    token = path.read_text().strip() if path.exists() else ""
    known = bool(token) and store.find_token(digest(token)) is not None
    fresh = not token or (not known and bool(store.list_tokens()))
    if fresh:
        token = secrets.token_urlsafe(32)
        _write_private(path, token + "\n")
    if not known:  # (a fresh token is never known)
        store.add_token(digest(token), Principal(name="admin", role="admin", created=utcnow()))
    return token, fresh


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` whole or not at all (a temporary 0600 file renamed over ``path``): a
    CLI or a test reading the token while ``hpc up`` writes it never sees it empty."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def authenticate(store: Store, authorization: str | None) -> Principal:
    """The principal of an ``Authorization: Bearer <token>`` header, or Unauthorized."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized(
            "missing bearer token: send 'Authorization: Bearer <token>' "
            "(the CLI reads HPC_TOKEN or HPC_HOME/admin.token)"
        )
    principal = store.find_token(digest(authorization[7:].strip()))
    if principal is None:
        # (a user's revoked token was told to use the admin's file: a multi-user probe)
        raise Unauthorized(
            "invalid token: never issued here, or revoked: ask an admin for a new one "
            "(hpc user add NAME)"
        )
    return principal
