"""The record of forgotten ids: keyed hashes, what a manifest keeps, and which keys it takes."""

from __future__ import annotations

import hashlib
import hmac
import json

import numpy as np
import pytest

from recforget.data.forgotten import ForgottenIds, IdKeyError, key_id, parse_key

KEY = bytes(range(32))


def test_the_hash_is_hmac_sha256_of_the_ids_text_under_the_key():
    record = ForgottenIds().bind(KEY)
    want = hmac.new(KEY, b"42", hashlib.sha256).hexdigest()
    assert record.digest(42) == record.digest(np.int64(42)) == record.digest("42") == want
    assert ForgottenIds().bind(bytes(32)).digest(42) != want
    assert record.digest(42) != hashlib.sha256(b"42").hexdigest()


def test_keys_are_checked():
    assert parse_key(KEY.hex()) == parse_key(KEY) == KEY
    with pytest.raises(IdKeyError, match="at least 16"):
        parse_key(b"short")
    with pytest.raises(IdKeyError, match="not hex"):
        parse_key("zz" * 16)
    with pytest.raises(IdKeyError, match="expected bytes"):
        parse_key(12345)  # type: ignore[arg-type]
    assert key_id(KEY) != key_id(bytes(32)) and KEY.hex()[:16] not in key_id(KEY)


def test_add_counts_each_id_once_and_contains_finds_it():
    record = ForgottenIds().bind(KEY)
    record.add("users", [1, 2, 2])
    record.add("items", ["a"])
    assert record.counts == {"users": 2, "items": 1}
    assert record.contains("users", 2) and not record.contains("users", 3)
    assert not record.contains("items", 1)  # sides are apart


def test_a_keyed_record_round_trips_and_takes_only_its_key():
    record = ForgottenIds().bind(KEY)
    record.add("users", [7])
    entry = json.loads(json.dumps(record.to_manifest()))
    assert entry["scheme"] == "hmac-sha256" and entry["key_id"] == key_id(KEY)
    assert KEY.hex() not in json.dumps(entry)
    loaded = ForgottenIds.from_manifest(entry)
    assert loaded.to_manifest() == entry  # saved again unchanged, without the key
    assert loaded.bind(KEY).contains("users", 7)
    with pytest.raises(IdKeyError, match="recorded under key id"):
        loaded.bind(bytes(32))
    with pytest.raises(IdKeyError, match="RECFORGET_ID_KEY"):
        loaded.bind(None)


def test_without_a_key_the_record_works_in_memory_and_saves_counts_only(monkeypatch):
    monkeypatch.delenv("RECFORGET_ID_KEY", raising=False)
    record = ForgottenIds().bind()
    record.add("users", [7])
    assert record.bind().contains("users", 7)  # the in-memory key carries on
    assert record.to_manifest() == {"scheme": "counts", "counts": {"users": 1, "items": 0}}
    again = ForgottenIds.from_manifest(record.to_manifest()).bind()
    assert not again.contains("users", 7) and again.counts["users"] == 1
    with pytest.raises(IdKeyError, match="without a key"):
        record.bind(KEY)  # its hashes cannot be moved to another key
    monkeypatch.setenv("RECFORGET_ID_KEY", KEY.hex())
    assert ForgottenIds().bind().to_manifest()["key_id"] == key_id(KEY)


def test_old_unkeyed_lists_are_read_as_counts_and_unknown_schemes_refused():
    legacy = {"users": [hashlib.sha256(b"1").hexdigest()], "items": []}
    record = ForgottenIds.from_manifest(legacy)
    assert record.counts == {"users": 1, "items": 0} and not any(record.hashes.values())
    assert ForgottenIds.from_manifest(None).counts == {"users": 0, "items": 0}
    with pytest.raises(ValueError, match="unknown scheme 'rot13'"):
        ForgottenIds.from_manifest({"scheme": "rot13"})
    with pytest.raises(ValueError, match="no key_id"):
        ForgottenIds.from_manifest({"scheme": "hmac-sha256", "hashes": {"users": ["ab"]}})
