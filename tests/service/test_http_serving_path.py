"""The recommendation path's shortcuts, each against the slow way it replaces.

Cached token checks (revocation and expiry still honoured), the driver-level reads (the
same rows as the ORM queries, on SQLite and PostgreSQL), versions sharing their
predecessor's id lookups, and several server processes on one port.
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import pytest
import sqlalchemy as sa
from _http_live import (  # noqa: F401
    GROUND,
    SQLITE_THEN_SLOW_PG,
    fresh_live,
    wait_for,
)

from recforget import DeletionRequest


@pytest.fixture
def svc(db_url, tmp_path, tiny_model):
    from recforget.service import DeletionService

    service = DeletionService.init(tmp_path / "home", tiny_model, url=db_url)
    yield service
    service.close()


def test_driver_reads_return_what_the_orm_queries_return(svc):
    from recforget.service import db
    from recforget.service.http import reads

    svc.submit("t", "k1", DeletionRequest(users=["u5"]), GROUND)
    svc.submit("t", "k2", DeletionRequest(items=["i4"]), GROUND)
    engine = reads.read_engine(svc.url)
    try:
        with engine.connect() as conn:
            t = db.interactions
            for user in ("u3", "u5", "u17", "nobody"):
                want = conn.execute(sa.select(t.c.item_id).where(t.c.user_id == user))
                assert sorted(reads.user_items(conn, user)) == sorted(want.scalars())
            assert reads.user_items(conn, "u5") == []  # erased at submission
            assert "i4" not in reads.user_items(conn, "u3")
            stored = set(conn.execute(sa.select(db.suppression.c.subject)).scalars())
            asked = [svc.keys.subject("user", "u5"), svc.keys.subject("item", "i4")]
            asked += [svc.keys.subject("user", "u6"), svc.keys.subject("item", "i5")]
            assert stored >= set(asked[:2])
            assert reads.suppressed(conn, asked) == set(asked[:2])
            assert reads.suppressed(conn, []) == set()
            ingested = conn.execute(
                sa.select(db.counters.c.value).where(db.counters.c.name == "ingest")
            ).scalar_one()
            assert reads.counter(conn, "ingest") == ingested > 0
            assert reads.counter(conn, "no-such-counter") is None
    finally:
        engine.dispose()


def test_token_cache_honours_revocation_and_expiry(svc):
    from recforget.service.http import reads, tokens

    ida, a = tokens.create(svc.engine, "alpha", ["read"])
    idb, b = tokens.create(svc.engine, "beta", ["submit"])
    _, soon = tokens.create(svc.engine, "gamma", ["read"], expires_days=1.0 / 86400)
    cache = tokens.TokenCache()
    engine = reads.read_engine(svc.url)
    try:
        with engine.connect() as conn:
            first = cache.verify(conn, a)
            assert first is not None and first.client == "alpha" and first.scopes == {"read"}
            assert (cache.hits, cache.misses) == (0, 1)
            assert cache.verify(conn, a) == first and (cache.hits, cache.misses) == (1, 1)
            assert a not in repr(cache._entries)  # keyed by hash, the token is not kept
            # a wrong secret for a cached token's id is not answered from the cache
            assert cache.verify(conn, a[:-2] + ("xx" if not a.endswith("xx") else "yy")) is None
            before = reads.counter(conn, tokens.REVOCATIONS)
            tokens.revoke(svc.engine, idb)  # another token: a's entry is checked again
            assert reads.counter(conn, tokens.REVOCATIONS) == before + 1
            assert cache.verify(conn, a) == first and cache.misses == 3
            assert cache.verify(conn, b) is None
            with pytest.raises(tokens.TokenError):
                tokens.revoke(svc.engine, idb)  # already revoked: the counter stays
            assert reads.counter(conn, tokens.REVOCATIONS) == before + 1
            tokens.revoke(svc.engine, ida)  # by another engine, as the CLI does
            assert cache.verify(conn, a) is None
            assert cache.verify(conn, a) is None  # and the refusal is not cached as valid
            assert cache.verify(conn, soon) is not None
            time.sleep(max(0.0, tokens.listing(svc.engine)[-1]["expires_at"] - time.time()))
            time.sleep(0.05)
            assert cache.verify(conn, soon) is None  # expired while cached
    finally:
        engine.dispose()


def test_token_schema_upgrade_adds_the_revocation_counter(svc):
    from recforget.service import db
    from recforget.service.http import tokens

    tokens.migrate(svc.engine)
    with svc.engine.begin() as conn:  # back to what a version-1 database holds
        conn.execute(sa.delete(db.counters).where(db.counters.c.name == tokens.REVOCATIONS))
        db.set_setting(conn, "http_schema_version", "1")
    token_id, token = tokens.create(svc.engine, "old", ["read"])  # create migrates
    with svc.engine.connect() as conn:
        assert tokens.schema_version(conn) == tokens.HTTP_SCHEMA_VERSION == 2
        assert db.get_setting(conn, "http_schema_version") == "2"
        assert tokens.TokenCache().verify(conn, token) is not None
    tokens.revoke(svc.engine, token_id)
    with svc.engine.connect() as conn:
        assert tokens.TokenCache().verify(conn, token) is None


def test_versions_with_the_same_ids_share_lookups_and_others_rebuild_them(svc):
    from recforget.service.http import reads
    from recforget.service.http.serving import load_verified

    with svc.engine.connect() as conn:
        vid, gen = reads.serving_pointer(conn)
        row = reads.version_row(conn, vid)
    first = load_verified(svc, row, gen, verify_data=False)
    again = load_verified(svc, row, gen, verify_data=False, previous=first)
    assert again.lookups is first.lookups and again.users is first.users
    np.testing.assert_array_equal(again.X, first.X)
    # a predecessor with other ids (users in another order): nothing shared, all rebuilt
    users = first.raw_ids[0]
    other = dataclasses.replace(first, raw_ids=(users[::-1].copy(), first.raw_ids[1]))
    rebuilt = load_verified(svc, row, gen, verify_data=False, previous=other)
    assert rebuilt.lookups is not first.lookups
    assert rebuilt.lookups == first.lookups  # the same content, built anew
    for model in (first, again, rebuilt):
        for k, user in enumerate(model.users.ids.tolist()):
            assert model.user_index(str(user)) == k
        assert model.item_ids == [str(x) for x in model.items.ids.tolist()]
        assert model.user_index("nobody") == -1
    exclude = [*first.item_ids[:3], "not-an-item"]
    for model in (again, rebuilt):
        for u in range(5):
            got, want = model.recommend(u, 7, exclude), first.recommend(u, 7, exclude)
            assert got[0].tolist() == want[0].tolist()


def test_integer_ids_keep_the_vocabulary_coercion():
    from recforget.data.vocab import Vocabulary
    from recforget.service.http.serving import ServingModel

    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(4, 2)), rng.normal(size=(6, 2))
    m = ServingModel(
        1, 1, "d", Vocabulary([10, 20, 30, 40], "user"), Vocabulary(list(range(6)), "item"),
        X, Y, None, None, 0.0,
    )  # fmt: skip
    assert m.user_index("30") == 2  # verbatim text
    assert m.user_index("30.0") == 2  # what the vocabulary also accepts
    assert m.user_index("31") == -1 and m.user_index("x") == -1
    assert sorted(m.item_rows(["5", "1.0", "7"])) == [1, 5]
    assert m.item_rows(["z"]) == []
    top, _ = m.recommend(0, 6, ["0", "2.0"])
    assert sorted(top.tolist()) == [1, 3, 4, 5]


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                out.append(int(entry))
    return out


@pytest.mark.parametrize("fresh_live", SQLITE_THEN_SLOW_PG, indirect=True)
def test_several_server_processes_share_the_port_and_the_revocations(fresh_live):  # noqa: F811
    import httpx

    from recforget.service.http import tokens

    live = fresh_live(args=["--workers", "2"])
    kids = wait_for(lambda: len(_children(live.proc.pid)) >= 2 and _children(live.proc.pid))
    headers = {"Authorization": f"Bearer {live.tokens['reader']}"}

    def fresh_get(path):  # a new connection each time: any process may take it
        with httpx.Client(base_url=live.base, headers=headers, timeout=30) as c:
            return c.get(path)

    answers = [fresh_get("/v1/recommendations/u1?k=3") for _ in range(20)]
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    assert len({(r.json()["version"], str(r.json()["items"])) for r in answers}) == 1
    svc = live.service()
    try:
        tokens.revoke(svc.engine, live.token_ids["reader"])
    finally:
        svc.close()
    refused = [fresh_get("/v1/recommendations/u1?k=3").status_code for _ in range(20)]
    assert refused == [401] * 20
    live.proc.terminate()
    live.proc.wait(timeout=30)
    wait_for(lambda: not any(os.path.exists(f"/proc/{k}") for k in kids), 30, "workers exit")
