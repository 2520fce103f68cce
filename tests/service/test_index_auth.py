"""The FAISS index wrapper and the API key store."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from service.auth import KeyStore
from service.errors import NotFound
from service.gallery.db import make_engine, migrate, session_factory
from service.gallery.tables import ApiKey
from service.index import FaceIndex


def test_index_add_search_remove():
    idx = FaceIndex(4)
    vecs = np.eye(4, dtype=np.float32)
    idx.add([10, 20, 30], vecs[:3])
    sims, ids = idx.search(vecs[1], 2)
    assert ids[0, 0] == 20 and sims[0, 0] == pytest.approx(1.0)
    assert idx.remove([20]) == 1 and idx.ids() == {10, 30} and len(idx) == 2
    with pytest.raises(ValueError):
        idx.add([10], vecs[:1])
    sims, ids = FaceIndex(4).search(vecs[0], 3)
    assert (ids == -1).all()
    idx.rebuild([1], vecs[3:4])
    assert idx.ids() == {1}


@pytest.fixture
def keys(database_url):
    engine = make_engine(database_url)
    migrate(engine)
    yield KeyStore(session_factory(engine))
    engine.dispose()


def test_keys_are_hashed_scoped_and_revocable(keys):
    plaintext, record = keys.create("door", {"verify"})
    assert plaintext.startswith("fg_") and record.scopes == {"verify"}
    with keys.sessions() as s:
        stored = s.scalars(select(ApiKey)).all()
    assert all(plaintext not in (k.key_hash, k.prefix, k.name) for k in stored)
    assert keys.authenticate(plaintext).id == record.id
    assert keys.authenticate(plaintext + "x") is None
    assert keys.authenticate("fg_wrong") is None
    keys.revoke(record.id)
    assert keys.authenticate(plaintext) is None
    with pytest.raises(NotFound):
        keys.revoke(9999)
    with pytest.raises(ValueError):
        keys.create("bad", {"root"})


def test_ensure_is_idempotent(keys):
    key = "fg_fixed_admin_key_for_scripts_0001"
    first = keys.ensure(key, "admin", {"admin"})
    second = keys.ensure(key, "admin", {"admin"})
    assert first.id == second.id and keys.count_active() == 1
    keys.revoke(first.id)
    assert keys.ensure(key, "admin", {"admin"}).id == first.id and keys.authenticate(key) is not None
    with pytest.raises(ValueError):
        keys.ensure("short", "x", {"admin"})
