"""Job templates on every Store: a template is a Meta document holding its whole JSON, so
every field (``allowedUsers``, the latest) comes back as it was saved, from another instance."""

from __future__ import annotations

from typing import Any

from shared.settings import Settings
from shared.usecases import templates
from shared.usecases.deps import Deps
from tests.contract.store_fixtures import OpenStore


def deps_of(store: Any) -> Deps:
    """What the template use cases touch: the store (and retries); no bus, output or compute."""
    return Deps(store=store, bus=None, output=None, settings=Settings())  # type: ignore[arg-type]


def test_a_templates_allowed_users_are_stored_and_cleared(open_store: OpenStore) -> None:
    writer, reader = deps_of(open_store()), deps_of(open_store())
    saved = {"maxPriority": "Highest", "maxCores": 8, "allowedUsers": ["alice", "bob"]}
    templates.put(writer, "Big", saved)
    got = templates.get(reader, "big").template
    assert got.allowed_users == ["alice", "bob"] and got.max_cores == 8
    assert [t.allowed_users for t in templates.list_templates(reader)] == [["alice", "bob"]]
    templates.put(writer, "Big", {**saved, "allowedUsers": []})  # back to everyone
    assert templates.get(reader, "Big").template.allowed_users is None
