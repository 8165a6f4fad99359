"""Concurrent admin requests through the use cases (``hpc user add``, ``hpc nodegroup create``)
on both stores: a user gets one role whatever arrives at once, and a node group one spelling.

Found by a live probe: 30 parallel ``POST /api/users`` for one name, alternating roles, left
``rc1 admin 15`` and ``rc1 user 5``; 30 parallel ``POST /api/nodegroups`` of Rg0, rG0, RG0
made two groups. The use cases check first, for the message; the stores decide
(tests/contract/test_store_names.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import pytest

from shared.errors import Conflict
from shared.usecases import nodegroups, users
from shared.usecases.deps import Deps
from tests.contract.store_fixtures import OpenStore, open_store  # noqa: F401 - fixture
from tests.contract.test_store_names import race

THREADS = 20
T = TypeVar("T")


def deps_on(open_store: OpenStore) -> Deps:  # noqa: F811 - the fixture's value
    """These use cases touch the store only: the other ports are left out. Its listings
    (the use cases' checks before they write) take 20 ms longer, so that the writes of a
    race all fall between the checks and their own write, as on a loaded server: only the
    store's own refusal can then keep a second role or spelling out."""
    store = open_store()
    for listing in ("list_tokens", "list_groups"):
        setattr(store, listing, _slowed(getattr(store, listing)))
    nothing = cast(Any, None)
    return Deps(store=store, bus=nothing, output=nothing, settings=nothing)


def _slowed(read: Callable[[], T]) -> Callable[[], T]:
    def slow() -> T:
        out = read()
        time.sleep(0.02)
        return out

    return slow


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_adds_of_one_user_with_alternating_roles_leave_one_role(
    open_store: OpenStore,  # noqa: F811
    round_: int,
) -> None:
    all_deps = [deps_on(open_store) for _ in range(2)]
    name = f"rc{round_}"
    roles = [("user", "admin")[i % 2] for i in range(THREADS)]
    got: dict[int, str] = {}

    def add(i: int) -> None:
        user, _token = users.add_user(all_deps[i % 2], name, roles[i])
        got[i] = user.role

    raised = race([lambda i=i: add(i) for i in range(THREADS)])
    failures = [e for e in raised if e is not None]
    assert all(isinstance(e, Conflict) for e in failures), failures
    listed = [u for u in users.list_users(all_deps[0]) if u.name == name]
    assert len(listed) == 1, listed  # one role, whichever won
    (user,) = listed
    assert set(got.values()) == {user.role}
    assert user.tokens == len(got) == THREADS - len(failures)
    for i, error in enumerate(raised):  # the losers: the other role, told which one won
        if error is not None:
            assert roles[i] != user.role
            assert f"user {name} exists with role {user.role}" in str(error)


def test_concurrent_creates_of_a_group_spelt_differently_make_one(
    open_store: OpenStore,  # noqa: F811
) -> None:
    all_deps = [deps_on(open_store) for _ in range(2)]
    spellings = ["Rg0", "rG0", "RG0"] * 5
    raised = race(
        [
            lambda i=i, name=name: nodegroups.create_group(all_deps[i % 2], name)
            for i, name in enumerate(spellings)
        ]
    )
    failures = [e for e in raised if e is not None]
    assert all(isinstance(e, Conflict) for e in failures), failures
    assert len(failures) == len(spellings) - 1
    made = [g.name for g in all_deps[0].store.list_groups() if g.name.casefold() == "rg0"]
    assert len(made) == 1, made
    assert all("exists already" in str(e) for e in failures)
