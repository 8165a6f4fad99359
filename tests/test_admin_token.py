"""The local admin token `hpc up` keeps in HPC_HOME/admin.token: made once, kept across
restarts, registered again into a new store, and never brought back once revoked."""

from __future__ import annotations

from shared.adapters.sqlite_store import SqliteStore
from shared.auth import digest, ensure_admin_token
from shared.domain.cluster import Principal
from shared.settings import Settings


def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("HPC_HOME", str(tmp_path))
    settings = Settings()
    return settings, SqliteStore(tmp_path / "store.db")


def test_the_token_is_made_once_and_kept(tmp_path, monkeypatch):
    settings, store = setup(tmp_path, monkeypatch)
    token, fresh = ensure_admin_token(settings, store)
    assert fresh and settings.token_path.read_text().strip() == token
    assert settings.token_path.stat().st_mode & 0o777 == 0o600
    found = store.find_token(digest(token))
    assert found is not None and (found.name, found.role) == ("admin", "admin")
    assert found.created is not None  # when it was made (hpc user tokens admin)
    assert ensure_admin_token(settings, store) == (token, False)


def test_a_new_store_registers_the_token_of_the_file(tmp_path, monkeypatch):
    settings, store = setup(tmp_path, monkeypatch)
    token, _ = ensure_admin_token(settings, store)
    store.close()
    (tmp_path / "store.db").unlink()
    again = SqliteStore(tmp_path / "store.db")
    assert ensure_admin_token(settings, again) == (token, False)
    assert again.find_token(digest(token)) is not None


def test_a_revoked_token_stays_revoked_and_a_new_one_replaces_the_file(tmp_path, monkeypatch):
    settings, store = setup(tmp_path, monkeypatch)
    leaked, _ = ensure_admin_token(settings, store)
    store.add_token(digest("other-admin"), Principal(name="root", role="admin"))
    store.remove_token(digest(leaked))  # hpc user remove admin, by another admin
    token, fresh = ensure_admin_token(settings, store)
    assert fresh and token != leaked
    assert store.find_token(digest(leaked)) is None
    found = store.find_token(digest(token))
    assert found is not None and (found.name, found.role) == ("admin", "admin")
    assert found.created is not None  # when it was made (hpc user tokens admin)
    assert settings.token_path.read_text().strip() == token
