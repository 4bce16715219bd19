"""Imported only by the crash harness's fork server: warms every kernel once in that process.

Importing this module fits a tiny ALS and unlearns from it, so that the children the fork
server forks start warm (no numba cache loading, no method-registry imports per trial). The
fork server runs under numba's workqueue threading layer, which is safe to fork; importing
this module anywhere else is pointless (and refused unless that layer is selected).
"""

from __future__ import annotations

import os

if os.environ.get("NUMBA_THREADING_LAYER") == "workqueue":
    import numpy as np

    from recforget import ALS, DeletionRequest, forget
    from recforget.data.interactions import Interactions

    _rng = np.random.default_rng(0)
    _u, _i = np.nonzero(_rng.random((30, 12)) < 0.3)
    _model = ALS(4, regularization=1.0, iterations=50, grad_tol=1e-3, random_state=0).fit(
        Interactions.from_arrays(_u, _i)
    )
    forget(_model, DeletionRequest(users=[int(_u[0])]), "unlearn-als-selective")
    _model.certify(tol=1e-3)
