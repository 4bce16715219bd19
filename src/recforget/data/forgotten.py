"""The users and items a model forgot, kept as keyed hashes so that asking again is a no-op.

A model that dropped user 42 must recognise a second request for user 42 (it is no longer in
the vocabulary, but it is not unknown either) without keeping user 42 anywhere. The record
keeps ``HMAC-SHA256(key, id)`` of every dropped id. An unkeyed hash would not do: ids are
small integers or short strings, and anyone holding the saved model could hash every
candidate and read off who asked to be forgotten.

The key never enters a saved model. It comes from the caller (``id_key=``, or the
``RECFORGET_ID_KEY`` environment variable, hex), and what is saved depends on it:

* with a key given, the manifest holds the hashes and the key's check value (``key_id``):
  the model, loaded again, recognises its forgotten ids whenever the same key is supplied,
  refuses another key, and refuses to forget further without one (the record would be lost);
* with no key, the record uses a random key that lives in memory only: models derived from
  one another in one process recognise each other's forgotten ids, and the saved manifest
  keeps only how many users and items were forgotten (``scheme: "counts"``). A reloaded
  model then reports an id it forgot before as unknown, which is the point: the file does not
  know who was forgotten.

Manifests written before the record was keyed (plain ``sha256`` lists, no ``scheme``) are
read as counts: their lists were reversible and are not carried forward.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

ENV_KEY = "RECFORGET_ID_KEY"
SCHEME = "hmac-sha256"
SIDES = ("users", "items")
MIN_KEY_BYTES = 16
_CHECK = b"recforget forgotten-ids key check"


class IdKeyError(ValueError):
    """The id key is missing, malformed, or not the one the record was written with."""


def parse_key(key: bytes | str | None, *, source: str = "id_key") -> bytes | None:
    """``key`` as bytes: raw bytes, or a hex string (as ``RECFORGET_ID_KEY`` and key files)."""
    if key is None:
        return None
    if isinstance(key, str):
        text = key.strip()
        try:
            key = bytes.fromhex(text)
        except ValueError:
            raise IdKeyError(
                f"{source}: expected the key as hex digits; the {len(text)} characters given"
                " are not hex"
            ) from None
    if not isinstance(key, bytes | bytearray):
        raise IdKeyError(f"{source}: expected bytes or a hex string, got {type(key).__name__}")
    if len(key) < MIN_KEY_BYTES:
        raise IdKeyError(
            f"{source}: the key has {len(key)} bytes; at least {MIN_KEY_BYTES} are needed"
        )
    return bytes(key)


def key_from_env() -> bytes | None:
    """The key in ``RECFORGET_ID_KEY`` (hex), or None when it is unset or empty."""
    text = os.environ.get(ENV_KEY, "").strip()
    return parse_key(text, source=ENV_KEY) if text else None


def key_id(key: bytes) -> str:
    """A short check value of ``key``: tells keys apart without revealing them."""
    return hmac.new(key, _CHECK, hashlib.sha256).hexdigest()[:16]


def _text(raw: object) -> bytes:
    return str(raw.item() if isinstance(raw, np.generic) else raw).encode()


class ForgottenIds:
    """Keyed hashes of the users and items a model dropped, and how many there were.

    Build one with :meth:`from_manifest` (or with no arguments), then :meth:`bind` it to the
    caller's key before use; a bound record answers :meth:`contains` and takes :meth:`add`.
    Records are values: :meth:`bind` and :meth:`copy` return new ones.
    """

    def __init__(
        self,
        hashes: Mapping[str, Iterable[str]] | None = None,
        counts: Mapping[str, int] | None = None,
        *,
        key_id: str | None = None,
        key: bytes | None = None,
        keyed_by_caller: bool = False,
    ) -> None:
        self.hashes = {s: set((hashes or {}).get(s, ())) for s in SIDES}
        self.counts = {s: int((counts or {}).get(s, len(self.hashes[s]))) for s in SIDES}
        self.key_id = key_id
        self._key = key
        self._keyed_by_caller = keyed_by_caller

    # ----------------------------------------------------------------- building
    @classmethod
    def from_manifest(cls, entry: Mapping[str, Any] | None) -> ForgottenIds:
        """Read a manifest's ``forgotten`` entry (any scheme this library ever wrote)."""
        if not entry:
            return cls()
        scheme = entry.get("scheme")
        if scheme == SCHEME:
            if not isinstance(entry.get("key_id"), str):
                raise ValueError(
                    f"forgotten ids: the manifest's {SCHEME} record has no key_id; "
                    "the model's manifest is damaged"
                )
            return cls(entry.get("hashes", {}), entry.get("counts"), key_id=entry["key_id"])
        if scheme == "counts":
            return cls(counts=entry.get("counts"))
        if scheme is None:  # unkeyed sha256 lists: counted, not carried forward
            return cls(counts={s: len(entry.get(s, [])) for s in SIDES})
        raise ValueError(f"forgotten ids: unknown scheme {scheme!r} in the model's manifest")

    @classmethod
    def of(cls, model: object) -> ForgottenIds:
        """The record a model carries (an empty one for models that never forgot)."""
        record = getattr(model, "forgotten_", None)
        if isinstance(record, ForgottenIds):
            return record
        return cls.from_manifest(record)

    def bind(self, key: bytes | str | None = None) -> ForgottenIds:
        """A copy ready to check and record ids under ``key`` (default: ``RECFORGET_ID_KEY``).

        Raises :class:`IdKeyError` when the key is not the one the hashes were written with,
        or when the record holds hashes written under a key that is neither given nor known.
        """
        given = parse_key(key) if key is not None else key_from_env()
        if given is not None:
            kid = key_id(given)
            if self.key_id is not None and kid != self.key_id and any(self.hashes.values()):
                if self._key is not None and not self._keyed_by_caller:
                    raise IdKeyError(
                        "the ids this model forgot were recorded without a key (under a key "
                        "held in memory only); pass the same id_key from the first request on"
                    )
                raise IdKeyError(
                    f"the model's forgotten ids were recorded under key id {self.key_id}; "
                    f"the key given has key id {kid}"
                )
            return self._copy(key=given, key_id=kid, by_caller=True)
        if self._key is not None:
            return self._copy(key=self._key, key_id=self.key_id, by_caller=self._keyed_by_caller)
        if any(self.hashes.values()):
            raise IdKeyError(
                f"the model keeps keyed hashes of the ids it forgot (key id {self.key_id}): "
                f"pass id_key= or set {ENV_KEY} to forget further (without it the record of "
                "forgotten ids would be lost)"
            )
        key = os.urandom(32)  # in memory only: never saved, so the file cannot be searched
        return self._copy(key=key, key_id=key_id(key), by_caller=False)

    def _copy(self, *, key: bytes | None, key_id: str | None, by_caller: bool) -> ForgottenIds:
        return ForgottenIds(
            {s: set(v) for s, v in self.hashes.items()},
            dict(self.counts),
            key_id=key_id,
            key=key,
            keyed_by_caller=by_caller,
        )

    def copy(self) -> ForgottenIds:
        return self._copy(key=self._key, key_id=self.key_id, by_caller=self._keyed_by_caller)

    # ----------------------------------------------------------------- use
    def digest(self, raw: object) -> str:
        if self._key is None:
            raise IdKeyError("forgotten ids: bind() the record to a key before use")
        return hmac.new(self._key, _text(raw), hashlib.sha256).hexdigest()

    def contains(self, which: str, raw: object) -> bool:
        """Whether ``raw`` is a user (``which="users"``) or item this record holds."""
        return bool(self.hashes[which]) and self.digest(raw) in self.hashes[which]

    def add(self, which: str, raws: Iterable[object]) -> None:
        """Record dropped ids (each counted once)."""
        for raw in raws:
            h = self.digest(raw)
            if h not in self.hashes[which]:
                self.hashes[which].add(h)
                self.counts[which] += 1

    def to_manifest(self) -> dict[str, Any]:
        """The manifest entry: hashes and key id only when the caller supplied the key."""
        if self._keyed_by_caller or (self._key is None and self.key_id is not None):
            return {
                "scheme": SCHEME,
                "key_id": self.key_id,
                "counts": dict(self.counts),
                "hashes": {s: sorted(self.hashes[s]) for s in SIDES},
            }
        return {"scheme": "counts", "counts": dict(self.counts)}

    def __repr__(self) -> str:
        return f"ForgottenIds(users={self.counts['users']}, items={self.counts['items']})"


__all__ = ["ENV_KEY", "ForgottenIds", "IdKeyError", "key_from_env", "key_id", "parse_key"]
