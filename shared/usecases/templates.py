"""Job templates: kept by admins, applied to every submitted job.

Each template is a Meta document ``template:<name in lower case>`` holding
``{"template": {...}}``; the Meta document ``templates`` lists the names,
because the Store cannot list documents by prefix. A template document is
the truth for one template (submit reads only it); the index only serves
listing. Writes go template first, index second, and a delete goes index
first, then leaves ``{"template": null}`` (the Store cannot delete a Meta
document) — so a crash between the two writes never lists a template that
is not there, and the next put or delete of that name repairs the index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.domain.cluster import Meta
from shared.domain.groupnames import unknown_groups
from shared.domain.jobspec import JobSpec
from shared.domain.templates import (
    DEFAULT_TEMPLATE,
    NAME,
    JobTemplate,
    check_template_name,
)
from shared.errors import Conflict, InvalidRequest, NotFound, Refused
from shared.usecases.deps import Deps

KEY_PREFIX = "template:"
INDEX_KEY = "templates"
ANY_ETAG = "*"
"""HTTP If-Match's "any current version" (RFC 9110 13.1.1): the write needs only that the
template exists."""


@dataclass(frozen=True)
class StoredTemplate:
    template: JobTemplate
    etag: str | None
    """The document's etag: send it back (HTTP If-Match) to change it only if unchanged."""


def _key(name: str) -> str:
    return KEY_PREFIX + name.lower()


def _read(deps: Deps, name: str) -> tuple[Meta | None, JobTemplate | None]:
    """The template's document (None if never written) and the template (None if deleted)."""
    if not NAME.fullmatch(name):
        return None, None  # no template can have it; and it must not reach the store as a key
    try:
        meta = deps.store.get_meta(_key(name))
    except NotFound:
        return None, None
    data = meta.data.get("template")
    return meta, JobTemplate.model_validate(data) if data else None


def _names(deps: Deps) -> list[str]:
    try:
        return list(deps.store.get_meta(INDEX_KEY).data.get("names", []))
    except NotFound:
        return []


def _not_found(deps: Deps, name: str) -> NotFound:
    known = sorted(_names(deps), key=str.lower)
    if not known:
        return NotFound(
            f"template {name!r} does not exist; there are no templates "
            "(an admin creates one with `hpc template set NAME ...`)"
        )
    return NotFound(f"template {name!r} does not exist; known templates: {', '.join(known)}")


def get(deps: Deps, name: str) -> StoredTemplate:
    """The template of this name (any case). Raises NotFound."""
    meta, template = _read(deps, name)
    if meta is None or template is None:
        raise _not_found(deps, name)
    return StoredTemplate(template, meta.etag)


def list_templates(deps: Deps) -> list[JobTemplate]:
    """Every template, by name (case-insensitively)."""
    found = []
    for name in _names(deps):
        _, template = _read(deps, name)
        if template is not None:
            found.append(template)
    return sorted(found, key=lambda t: t.key)


def put(
    deps: Deps,
    name: str,
    data: Any,
    *,
    if_match: str | None = None,
    create_only: bool = False,
) -> tuple[StoredTemplate, bool]:
    """Create or replace the template ``name`` with ``data`` (its whole JSON; ``name`` in it
    may be left out). With ``if_match``
    (an etag from :func:`get`) the write happens only if nobody changed the template since
    (Conflict otherwise); with ``if_match="*"`` (HTTP's "any version", RFC 9110) only if the
    template exists (Conflict if it does not), whatever its etag. ``create_only`` (HTTP's
    ``If-None-Match: *``): only if it does not exist (Conflict if it does). Returns it and
    whether it was created."""
    check_template_name(name)
    if not isinstance(data, dict):
        raise InvalidRequest('the body is a JSON object of template fields, e.g. {"maxCores": 8}')
    given = data.get("name", name)
    if not isinstance(given, str) or given.lower() != name.lower():
        raise InvalidRequest(
            f"name {given!r} in the body differs from {name!r} in the URL; "
            "leave it out or make them the same"
        )
    template = JobTemplate.parse({**data, "name": given})
    missing, field, known = _unknown_default_groups(deps, template)
    if missing:
        raise InvalidRequest(
            f"template {given!r}: {_groups_phrase(missing)} in {field} "
            f"{'does' if len(missing) == 1 else 'do'} not exist{_role(field)}; "
            f"see `hpc nodegroup list` (known groups: {', '.join(known) or 'none'})"
        )

    any_version = if_match is not None and if_match.strip() == ANY_ETAG
    etag = None if any_version else if_match

    def write() -> tuple[StoredTemplate, bool]:
        meta, current = _read(deps, name)
        if any_version and (current is None or meta is None):
            raise Refused(
                f"template {name!r} does not exist: If-Match: * replaces only an existing "
                "template (send no If-Match to create it)"
            )
        if create_only and current is not None:
            raise Refused(f"template {current.name!r} exists: If-None-Match: * only creates")
        if etag is not None and (current is None or meta is None or meta.etag != etag):
            raise Conflict(
                f"template {name!r} changed since it was read (or was deleted); read it again"
            )
        doc = meta or Meta(key=_key(name))
        doc.data = {"template": template.to_dict()}  # named as the URL names it: a PUT
        deps.store.put_meta(doc)  # the etag read above guards it: a write in between fails
        return StoredTemplate(template, doc.etag), current is None

    # with an etag a concurrent write must fail, not be retried over; "*" asks only that the
    # template exists, which a retry checks again
    stored, created = write() if etag is not None else deps.retry(write)
    deps.retry(_index, deps, add=template.name)
    return stored, created


def delete(deps: Deps, name: str) -> JobTemplate:
    """Delete the template ``name`` (any case); jobs submitted under it keep their values.
    Raises NotFound."""
    template = get(deps, name).template
    deps.retry(_index, deps, remove=template.name)

    def tombstone() -> None:
        meta, current = _read(deps, name)
        if meta is not None and current is not None:
            meta.data = {"template": None}
            deps.store.put_meta(meta)

    deps.retry(tombstone)
    return template


def _index(deps: Deps, *, add: str | None = None, remove: str | None = None) -> None:
    """Add or remove one name in the index (names are unique case-insensitively)."""
    try:
        meta = deps.store.get_meta(INDEX_KEY)
    except NotFound:
        meta = Meta(key=INDEX_KEY)
    gone = (add or remove or "").lower()
    names = [n for n in meta.data.get("names", []) if n.lower() != gone]
    if add is not None:
        names.append(add)
    names.sort(key=str.lower)
    if meta.etag is not None and names == meta.data.get("names"):
        return
    meta.data = {"names": names}
    deps.store.put_meta(meta)


def template_of(deps: Deps, spec: JobSpec) -> JobTemplate | None:
    """The spec's template: the one it names (NotFound if there is none of that name), else
    the Default template if an admin created one, else none."""
    if spec.template:
        return get(deps, spec.template).template
    return _read(deps, DEFAULT_TEMPLATE)[1]


def gone_default_groups(template: JobTemplate, missing: list[str], known: list[str]) -> NotFound:
    """The error for a job that named no group and got, from ``template``, groups that do not
    exist (a template saved before its groups were checked, or whose group was since
    removed): it names the template, since the job itself named no group."""
    field = _default_groups(template)[1]
    option = "--nodegroup" if field == "nodeGroups" else "--allowed-nodegroup"
    return NotFound(
        f"{_groups_phrase(missing)} {'does' if len(missing) == 1 else 'do'} not exist: "
        f"template {template.name!r} gives {'it' if len(missing) == 1 else 'them'} "
        f"({field}) to jobs that name no group; name one with --nodegroup, or an admin "
        f"fixes the template (`hpc template set {template.name} {option} GROUP`); "
        f"known groups: {', '.join(known) or 'none'}"
    )


def _default_groups(template: JobTemplate) -> tuple[list[str], str]:
    """The groups the template gives a job that names none, and the field they come from
    (``allowedNodeGroups`` serves as the default when ``nodeGroups`` is not set)."""
    if template.node_groups:
        return template.node_groups, "nodeGroups"
    return template.allowed_node_groups or [], "allowedNodeGroups"


def _unknown_default_groups(deps: Deps, template: JobTemplate) -> tuple[list[str], str, list[str]]:
    """The template's default groups that name no group (in any case), their field, and the
    known groups: what submit accepts (check_fits), the groups and any group a node holds.
    The nodes are read only when the groups alone leave a name unknown."""
    groups, field = _default_groups(template)
    if not groups:
        return [], field, []
    known = {g.name for g in deps.store.list_groups()}
    if unknown_groups(groups, known):
        known |= {g for n in deps.store.list_nodes() for g in n.groups}
    return unknown_groups(groups, known), field, sorted(known, key=str.lower)


def _groups_phrase(names: list[str]) -> str:
    quoted = ", ".join(repr(n) for n in names)
    return f"node group {quoted}" if len(names) == 1 else f"node groups {quoted}"


def _role(field: str) -> str:
    """Why an unknown allowed group matters: it is then every job's default."""
    if field == "allowedNodeGroups":
        return " (with no nodeGroups set, they are the groups of jobs that name none)"
    return ""
