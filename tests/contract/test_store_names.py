"""The Store contract, names that stay unique when written at once: a node group whatever its
case (``put_group``'s create), and one role per API user (``add_token``).

Each race runs its writes in threads released together by a barrier, spread over several
store instances on the same storage (as the Function instances of one deployment are).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from shared.domain.cluster import NodeGroup, Principal
from shared.errors import Conflict
from shared.ports.store import Store
from tests.contract.store_fixtures import OpenStore

STORES = 3
"""Store instances a race spreads its writes over."""


def race(calls: list[Callable[[], None]]) -> list[Exception | None]:
    """Run each call in a thread of its own, all released at once; what each raised."""
    barrier = threading.Barrier(len(calls))
    raised: list[Exception | None] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            calls[i]()
        except Exception as error:  # noqa: BLE001 - returned for the test to judge
            raised[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return raised


def only_conflicts(raised: list[Exception | None]) -> int:
    """How many calls succeeded; every failure must be a Conflict."""
    failures = [e for e in raised if e is not None]
    assert all(isinstance(e, Conflict) for e in failures), failures
    return len(raised) - len(failures)


# --- node groups: one per name, whatever its case ------------------------------


def test_put_group_refuses_a_name_that_differs_only_by_case(store: Store) -> None:
    store.put_group(NodeGroup(name="Rg0", max_nodes=1))
    for spelling in ("rG0", "RG0", "rg0", "azurenodes", "ONPREMNODES"):
        other = NodeGroup(name=spelling, max_nodes=9)
        with pytest.raises(Conflict):
            store.put_group(other)
        assert other.etag is None
    groups = store.list_groups()
    assert [g.name for g in groups] == ["AzureNodes", "OnPremNodes", "Rg0"]
    assert next(g for g in groups if g.name == "Rg0").max_nodes == 1


def test_concurrent_creates_of_one_name_in_different_cases_make_one_group(
    open_store: OpenStore,
) -> None:
    stores = [open_store() for _ in range(STORES)]
    spellings = ["Rg{}", "rG{}", "RG{}", "rg{}"] * 3
    for round_ in range(3):
        names = [s.format(round_) for s in spellings]
        raised = race(
            [
                lambda i=i, name=name: stores[i % STORES].put_group(NodeGroup(name=name))
                for i, name in enumerate(names)
            ]
        )
        assert only_conflicts(raised) == 1
        made = [g.name for g in stores[0].list_groups() if g.name.casefold() == f"rg{round_}"]
        assert len(made) == 1, made


def test_a_group_in_mixed_case_is_replaced_under_its_etag(store: Store) -> None:
    store.put_group(NodeGroup(name="GpuNodes"))
    mine = next(g for g in store.list_groups() if g.name == "GpuNodes")
    theirs = mine.model_copy()
    theirs.max_nodes = 3
    store.put_group(theirs)
    mine.max_nodes = 7
    with pytest.raises(Conflict):
        store.put_group(mine)  # stale etag
    got = next(g for g in store.list_groups() if g.name == "GpuNodes")
    assert got.max_nodes == 3 and got.etag == theirs.etag


# --- users: one role each, decided once ------------------------------------------------

ALICE = Principal(name="alice", role="user")


def digest_of(i: int) -> str:
    return f"{i:064x}"


def roles_of(store: Store, name: str) -> dict[str, int]:
    """Tokens of ``name`` by role."""
    out: dict[str, int] = {}
    for _, principal in store.list_tokens():
        if principal.name == name:
            out[principal.role] = out.get(principal.role, 0) + 1
    return out


def test_a_token_for_a_name_with_another_role_conflicts(store: Store) -> None:
    store.add_token(digest_of(1), ALICE)
    with pytest.raises(Conflict, match="role user"):
        store.add_token(digest_of(2), Principal(name="alice", role="admin"))
    assert store.find_token(digest_of(2)) is None
    store.add_token(digest_of(3), ALICE)  # the same role: another token
    assert roles_of(store, "alice") == {"user": 2}


def test_concurrent_adds_with_different_roles_leave_one_role(open_store: OpenStore) -> None:
    stores = [open_store() for _ in range(STORES)]
    for round_ in range(3):
        name = f"rc{round_}"
        calls = [
            lambda i=i, first=100 * round_, name=name: stores[i % STORES].add_token(
                digest_of(first + i), Principal(name=name, role=("user", "admin")[i % 2])
            )
            for i in range(12)
        ]
        added = only_conflicts(race(calls))
        roles = roles_of(stores[0], name)
        assert len(roles) == 1, roles
        assert sum(roles.values()) == added


def test_concurrent_adds_with_the_same_role_all_succeed(open_store: OpenStore) -> None:
    stores = [open_store() for _ in range(STORES)]
    calls = [lambda i=i: stores[i % STORES].add_token(digest_of(i), ALICE) for i in range(9)]
    assert only_conflicts(race(calls)) == 9
    assert roles_of(stores[0], "alice") == {"user": 9}


def test_a_user_whose_tokens_are_all_removed_may_come_back_in_another_role(
    store: Store,
) -> None:
    store.add_token(digest_of(1), ALICE)
    store.add_token(digest_of(2), ALICE)
    assert store.remove_token(digest_of(1)) is True
    with pytest.raises(Conflict):  # one token is left: still a user
        store.add_token(digest_of(3), Principal(name="alice", role="admin"))
    assert store.remove_token(digest_of(2)) is True
    store.add_token(digest_of(4), Principal(name="alice", role="admin"))
    assert roles_of(store, "alice") == {"admin": 1}
    assert store.find_token(digest_of(4)) == Principal(name="alice", role="admin")
