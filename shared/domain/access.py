"""Who may change what: a job is its owner's; admins may change any, and only admins change
nodes, node groups and users (HPC Pack's rules).

Pure. Reading is open to every user (everyone monitors progress); changing a job (cancel,
requeue, hold, release, priority) takes its owner or an admin, so one user's token cannot
cancel another's work.
"""

from __future__ import annotations

from shared.domain.cluster import Principal
from shared.domain.models import Job
from shared.errors import Conflict, Forbidden

ADMIN = "admin"


def check_admin(principal: Principal, what: str) -> None:
    """Forbidden (403) unless ``principal`` is an admin: nodes, node groups and users are the
    cluster's (and its bill's), so only admins change them, as in HPC Pack."""
    if principal.role != ADMIN:
        raise Forbidden(
            f"only an admin may {what}; {principal.name} has role {principal.role!r} "
            "(use an admin token)"
        )


def role_conflict(name: str, has: str, wanted: str) -> Conflict:
    """A user keeps one role (its tokens all sign in as it): the 409 for a token of another
    role, and how to change it. Raised by the use case and, for concurrent adds, the stores."""
    return Conflict(
        f"user {name} exists with role {has}: remove it first (hpc user remove {name}) to "
        f"give it role {wanted}"
    )


def may_change(job: Job, principal: Principal) -> bool:
    return principal.role == ADMIN or job.owner == principal.name


def check_may_change(job: Job, principal: Principal, what: str) -> None:
    """Forbidden (403) naming the owner, unless ``principal`` may ``what`` the job."""
    if not may_change(job, principal):
        raise Forbidden(
            f"job {job.id} belongs to {job.owner}: only its owner or an admin may {what} it "
            f"({principal.name} has role {principal.role!r})"
        )
