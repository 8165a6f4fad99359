"""Who may submit with a job template (HPC Pack's template permissions), the pure rule:
``allowedUsers`` names them, none means everyone, admins always may."""

from __future__ import annotations

import pytest

from shared.domain.access import (
    check_may_use_template,
    may_use_template,
    template_refusal,
    unknown_allowed_users,
)
from shared.domain.cluster import Principal
from shared.domain.templates import JobTemplate
from shared.errors import Forbidden, InvalidRequest

ALICE = Principal(name="alice", role="user")
CAROL = Principal(name="carol", role="user")
ROOT = Principal(name="root", role="admin")
BIG = JobTemplate(name="Big", allowed_users=["alice", "bob"], max_priority="Highest")


@pytest.mark.parametrize(
    ("allowed", "principal", "may"),
    [
        (None, CAROL, True),  # missing: everyone, as before the field existed
        ([], CAROL, True),  # empty: everyone too
        (["alice", "bob"], ALICE, True),
        (["alice", "bob"], CAROL, False),
        (["alice", "bob"], ROOT, True),  # admins may use any template
        (["alice"], Principal(name="Alice", role="user"), False),  # names are exact
        (["alice"], Principal(name="carol", role="admin"), True),
    ],
)
def test_allowed_users_decide_who_may_submit_with_a_template(allowed, principal, may):
    template = JobTemplate(name="T", allowed_users=allowed)
    assert may_use_template(template, principal) is may
    assert (template_refusal(template, principal, named=True) is None) is may


def test_a_refusal_says_which_template_who_may_use_it_and_what_to_do():
    refusal = template_refusal(BIG, CAROL, named=True)
    assert refusal == (
        "template 'Big' is for alice, bob (and admins); carol may not submit with it: submit "
        "with another template (hpc job submit --template NAME; see hpc template list) or ask "
        "an admin (hpc template set Big --allowed-user alice,bob,carol)"
    )
    with pytest.raises(Forbidden) as refused:
        check_may_use_template(BIG, CAROL, named=True)
    assert refused.value.status == 403 and refused.value.fields == {"template": "Big"}
    check_may_use_template(BIG, ALICE, named=True)  # no error


def test_the_default_template_refusal_says_the_job_fell_to_it():
    default = JobTemplate(name="Default", allowed_users=["alice"])
    refusal = template_refusal(default, CAROL, named=False)
    assert refusal is not None
    assert refusal.startswith(
        "template 'Default' (applied to jobs that name no template) is for alice (and admins)"
    )


def test_a_long_list_is_cut_in_the_refusal():
    many = JobTemplate(name="Wide", allowed_users=[f"u{n}" for n in range(25)])
    refusal = template_refusal(many, CAROL, named=True) or ""
    assert "is for u0, u1, u2, u3, u4, u5, u6, u7, u8, u9 and 15 more (and admins)" in refusal
    assert "ask an admin (to add carol to its allowedUsers)" in refusal


def test_allowed_users_are_user_names_kept_once_and_empty_means_missing():
    t = JobTemplate.parse({"name": "T", "allowedUsers": ["alice", "bob", "alice"]})
    assert t.allowed_users == ["alice", "bob"]
    assert t.to_dict()["allowedUsers"] == ["alice", "bob"]
    cleared = JobTemplate.parse({"name": "T", "allowedUsers": []})
    assert cleared.allowed_users is None and "allowedUsers" not in cleared.to_dict()
    with pytest.raises(InvalidRequest, match="user name 'a b': a letter or _ first"):
        JobTemplate.parse({"name": "T", "allowedUsers": ["a b"]})
    with pytest.raises(InvalidRequest, match="allowedUsers"):
        JobTemplate.parse({"name": "T", "allowedUsers": "alice"})


@pytest.mark.parametrize(
    ("allowed", "users", "said"),
    [
        (["alice", "bob"], ["alice", "bob", "carol"], []),
        (["Alice"], ["alice", "bob"], ["allowedUsers 'Alice': no user has that name; did you mean 'alice'? (names match exactly)"]),
        (["dave"], ["bob", "alice"], ["allowedUsers 'dave': no user has that name yet (hpc user add dave); known users: alice, bob"]),
        (["dave"], [], ["allowedUsers 'dave': no user has that name yet (hpc user add dave); known users: none"]),
        (["x"], [f"u{i:02d}" for i in range(12)], ["allowedUsers 'x': no user has that name yet (hpc user add x); known users: u00, u01, u02, u03, u04, u05, u06, u07, u08, u09 and 2 more (hpc user list)"]),
    ],
)  # fmt: skip
def test_allowed_names_no_user_has_are_said_with_the_near_one(allowed, users, said):
    """A misspelt or miscased allowed name would refuse its user later: the CLI warns."""
    assert unknown_allowed_users(allowed, users) == said
