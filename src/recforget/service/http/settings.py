"""Settings of the HTTP app (one object, passed to :func:`create_app`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """How the HTTP layer runs.

    home : the service directory (``recforget service init`` wrote it)
    url : database URL (default: the one recorded in ``home``)
    max_body_bytes : largest request body accepted, counted as it arrives (chunked too)
    reload_poll : seconds between looks at the serving pointer's generation
    verify_data : also rebuild a new version's data from the store and check its fingerprint
        before serving it (costs a full read of the store per version)
    heartbeat_stale : seconds without a worker heartbeat after which /readyz says not ready
    max_k : largest ``k`` for recommendations
    watch : follow the serving pointer in a thread (off: call ``app.state.models.refresh()``)
    gc_freeze : after startup, move every object built so far out of the cyclic garbage
        collector's reach (:func:`gc.freeze`), so its full collections stay short under load
    """

    home: str | Path
    url: str | None = None
    max_body_bytes: int = 1 << 20
    reload_poll: float = 0.5
    verify_data: bool = False
    heartbeat_stale: float = 30.0
    max_k: int = 1000
    watch: bool = True
    gc_freeze: bool = True


__all__ = ["Settings"]
