"""Who may change what: a job is its owner's; admins may change any, and only admins change
nodes, node groups and users (HPC Pack's rules). And who may submit with a job template: the
users it lists, or everyone when it lists none.

Pure. Reading is open to every user (everyone monitors progress); changing a job (cancel,
requeue, hold, release, priority) takes its owner or an admin, so one user's token cannot
cancel another's work.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from shared.domain.cluster import Principal
from shared.domain.models import Job
from shared.domain.specvalues import quoted
from shared.domain.templates import JobTemplate
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


SHOWN_USERS = 10
"""Most allowed users a refusal names; the rest are counted (``hpc template show`` has all)."""


def may_use_template(template: JobTemplate, principal: Principal) -> bool:
    """HPC Pack's template permissions: a template with ``allowedUsers`` is for those users
    (names compared exactly, as a job's owner is) and admins; one without is for everyone."""
    users = template.allowed_users
    return not users or principal.role == ADMIN or principal.name in users


def template_refusal(template: JobTemplate, principal: Principal, *, named: bool) -> str | None:
    """Why ``principal`` may not submit with ``template`` (None if it may), saying who may
    and what to do. ``named``: the job named it; else it is the Default every job without a
    template falls to, which the message says, since the user never named it."""
    if may_use_template(template, principal):
        return None
    users = template.allowed_users or []
    shown = ", ".join(users[:SHOWN_USERS])
    ask = f"hpc template set {template.name} --allowed-user {','.join([*users, principal.name])}"
    if len(users) > SHOWN_USERS:
        shown += f" and {len(users) - SHOWN_USERS} more"
        ask = f"to add {principal.name} to its allowedUsers"
    which = quoted(template.name)
    if not named:
        which += " (applied to jobs that name no template)"
    return (
        f"template {which} is for {shown} (and admins); {principal.name} may not submit "
        "with it: submit with another template (hpc job submit --template NAME; see hpc "
        f"template list) or ask an admin ({ask})"
    )


def check_may_use_template(template: JobTemplate, principal: Principal, *, named: bool) -> None:
    """Forbidden (403) unless ``principal`` may submit with ``template``: a permissive
    template kept for some users must not let everyone escape Default's limits."""
    refusal = template_refusal(template, principal, named=named)
    if refusal:
        raise Forbidden(refusal, template=template.name)


def unknown_allowed_users(allowed: Sequence[str], users: Iterable[str]) -> list[str]:
    """For each name in a template's ``allowedUsers`` that no user has (yet), a line saying
    so, naming a user it matches but for case (names compare exactly, as owners do: a
    probe's ``--allowed-user Alice`` was taken silently and alice was refused)."""
    known = sorted(set(users))
    by_case = {u.lower(): u for u in known}
    out = []
    for name in allowed:
        if name in known:
            continue
        near = by_case.get(name.lower())
        if near is not None:
            out.append(
                f"allowedUsers {quoted(name)}: no user has that name; did you mean "
                f"{quoted(near)}? (names match exactly)"
            )
        else:
            shown = ", ".join(known[:SHOWN_USERS]) or "none"
            if len(known) > SHOWN_USERS:
                shown += f" and {len(known) - SHOWN_USERS} more (hpc user list)"
            out.append(
                f"allowedUsers {quoted(name)}: no user has that name yet (hpc user add "
                f"{name}); known users: {shown}"
            )
    return out
