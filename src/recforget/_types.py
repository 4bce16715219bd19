"""Array aliases used in signatures across the package."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

FloatMatrix = NDArray[np.floating]
FloatVector = NDArray[np.floating]
IntVector = NDArray[np.integer]
CSR = sp.csr_array

__all__ = ["CSR", "FloatMatrix", "FloatVector", "IntVector"]
