"""The Cosmos DB Store's API users and tokens (the cluster container).

A token is a document of its own (``token:<sha256>``, its own partition: ``find_token`` is a
point read on every request). Tokens of one user are in different partitions, so nothing
could make "check the user's role, then add a token" one step across them: a user document
(``user:<name>``, its own partition, the role in its body) decides the role instead. The
first token's add *creates* it, and a create is atomic in Cosmos: of two concurrent adds of
one name with different roles, one creates it and the other reads the winner's role and is
refused (:class:`Conflict`), so a user never has tokens of two roles.

The user document lives as long as the user has tokens: removing its last token deletes it
(under its etag), so the name may come back with another role. An add that raced such a
removal (it read the user document, then the removal deleted it) finds, re-reading it after
writing its token, that it is gone or another one: it deletes its token and starts over.
Tokens stored before user documents existed are taken into account when a user document is
created (one cross-partition listing, the first token of a user only).
"""

from __future__ import annotations

from typing import Any

from azure.core import MatchConditions
from azure.cosmos.exceptions import CosmosHttpResponseError

from shared.adapters import cosmos_docs as docs
from shared.adapters.cosmos_connection import CosmosConnection
from shared.domain.access import role_conflict
from shared.domain.cluster import Principal
from shared.errors import Conflict

ATTEMPTS = 5
"""Tries of an add that keeps racing removals of the same user's last token."""


class CosmosUsers(CosmosConnection):
    """``add_token``, ``find_token``, ``list_tokens``, ``remove_token`` (the Store port's)."""

    def add_token(self, token_sha256: str, principal: Principal) -> None:
        doc_id = docs.cluster_id("token", token_sha256)
        body = principal.model_dump(mode="json")
        doc = {"id": doc_id, "pk": doc_id, "type": "token", "body": body}
        for _ in range(ATTEMPTS):
            etag = self._user_etag(principal)
            if etag is None:
                continue  # removed between its create and its read: create it again
            self._cluster.upsert_item(doc, response_hook=self._hook)
            now = self._user_doc(principal.name)
            if now is not None and now["_etag"] == etag:
                return
            self._delete_token(doc_id)  # its user was removed meanwhile: undo, start over
        raise Conflict(
            f"user {principal.name} was removed again and again while a token was added to "
            "it: try again"
        )

    def find_token(self, token_sha256: str) -> Principal | None:
        doc_id = docs.cluster_id("token", token_sha256)
        doc = self._read(self._cluster, doc_id, doc_id)
        return None if doc is None else Principal.model_validate(doc["body"])

    def list_tokens(self) -> list[tuple[str, Principal]]:
        """Cross-partition (each token is its own partition): an admin's rare listing."""
        query = docs.Query(
            "SELECT * FROM c WHERE c.type = @type", [{"name": "@type", "value": "token"}]
        )
        out = [
            (d["id"].split(":", 1)[1], Principal.model_validate(d["body"]))
            for d in self._query(self._cluster, query)
        ]
        return sorted(out, key=lambda pair: pair[0])

    def remove_token(self, token_sha256: str) -> bool:
        doc_id = docs.cluster_id("token", token_sha256)
        token = self._read(self._cluster, doc_id, doc_id)
        if token is None or not self._delete_token(doc_id):
            return False
        name = Principal.model_validate(token["body"]).name
        user = self._user_doc(name)
        if user is not None and all(p.name != name for _, p in self.list_tokens()):
            self._delete_user(user)  # its last token: the name may come back in another role
        return True

    # --- the user document ----------------------------------------------------

    def _user_etag(self, principal: Principal) -> str | None:
        """The etag of ``principal``'s user document, created if missing; Conflict if it
        holds another role; None if it vanished between a refused create and the read."""
        user_id = docs.cluster_id("user", principal.name)
        doc = {
            "id": user_id,
            "pk": user_id,
            "type": "user",
            "name": principal.name,
            "body": principal.model_dump(mode="json"),
        }
        try:
            new = self._cluster.create_item(doc, response_hook=self._hook)
        except CosmosHttpResponseError as error:
            if error.status_code != 409:
                raise
            got = self._user_doc(principal.name)
            if got is None:
                return None
            _same_role(principal, Principal.model_validate(got["body"]).role)
            return str(got["_etag"])
        older = {p.role for _, p in self.list_tokens() if p.name == principal.name}
        other = older - {principal.role}  # tokens from before user documents
        if other:
            self._delete_user(new)
            _same_role(principal, min(other))
        return str(new["_etag"])

    def _user_doc(self, name: str) -> dict[str, Any] | None:
        user_id = docs.cluster_id("user", name)
        return self._read(self._cluster, user_id, user_id)

    def _delete_user(self, user: dict[str, Any]) -> None:
        """Delete a user document unless it changed since it was read (then it is another's)."""
        try:
            self._cluster.delete_item(
                user["id"], partition_key=user["pk"], etag=user["_etag"],
                match_condition=MatchConditions.IfNotModified, response_hook=self._hook,
            )  # fmt: skip
        except CosmosHttpResponseError as error:
            if not docs.is_missing(error) and error.status_code != 412:
                raise

    def _delete_token(self, doc_id: str) -> bool:
        try:
            self._cluster.delete_item(doc_id, partition_key=doc_id, response_hook=self._hook)
        except CosmosHttpResponseError as error:
            if docs.is_missing(error):
                return False
            raise
        return True


def _same_role(principal: Principal, role: str) -> None:
    if role != principal.role:
        raise role_conflict(principal.name, role, principal.role)
