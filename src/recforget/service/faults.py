"""Named fault-injection points, armed only through the ``RECFORGET_FAULTS`` variable.

``RECFORGET_FAULTS="point=action[,point=action...]"`` where ``action`` is ``kill`` (the process
sends itself SIGKILL: no cleanup, no flush, exactly what a power cut leaves behind), ``stop``
(it sends itself SIGSTOP: every thread freezes until someone sends SIGCONT, as in a VM pause)
or ``sleep:SECONDS`` (the calling thread stalls there). Unset, every point is a
no-op. The service reads the variable; nothing else does. Points (see docs/service.md):

=========================  ===================================================================
``submit.after_commit``    request row committed, acknowledgement not yet returned
``delete.in_txn``          inside the deletion transaction (rows deleted, state not yet moved)
``build.mid_write``        one file of the new version written, the others not
``build.after_rename``     version directory renamed into place, not yet registered
``build.after_register``   version registered (STAGED), serving pointer not yet switched
``complete.before_txn``    just before the completion transaction (lease-fencing tests pause here)
``complete.after_switch``  inside the completion transaction: pointer swapped, no receipts yet
``complete.after_commit``  completion committed, superseded versions not yet purged
=========================  ===================================================================
"""

from __future__ import annotations

import os
import signal
import sys
import time

ENV = "RECFORGET_FAULTS"
POINTS = (
    "submit.after_commit",
    "delete.in_txn",
    "build.mid_write",
    "build.after_rename",
    "build.after_register",
    "complete.before_txn",
    "complete.after_switch",
    "complete.after_commit",
)


def _armed() -> dict[str, str]:
    spec = os.environ.get(ENV, "").strip()
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, action = part.partition("=")
        if name not in POINTS:
            raise ValueError(f"{ENV}: unknown fault point {name!r}; known: {', '.join(POINTS)}")
        if action not in ("kill", "stop") and not action.startswith("sleep:"):
            raise ValueError(f"{ENV}: action for {name!r} must be kill, stop or sleep:SECONDS")
        out[name] = action
    return out


def fault(point: str) -> None:
    """Fire ``point`` if it is armed in the environment (otherwise do nothing)."""
    if point not in POINTS:  # pragma: no cover - programming error
        raise ValueError(f"unknown fault point {point!r}")
    action = _armed().get(point)
    if action is None:
        return
    if action == "kill":
        sys.stderr.write(f"fault point {point}: SIGKILL\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(10)  # pragma: no cover - the signal arrives first
    elif action == "stop":
        sys.stderr.write(f"fault point {point}: SIGSTOP\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGSTOP)
    else:
        seconds = float(action.split(":", 1)[1])
        sys.stderr.write(f"fault point {point}: sleeping {seconds} s\n")
        sys.stderr.flush()
        time.sleep(seconds)


__all__ = ["ENV", "POINTS", "fault"]
