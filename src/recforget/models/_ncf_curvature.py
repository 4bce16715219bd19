"""The prepared block curvature of an NCF model: its data type and its file.

:func:`recforget.unlearn.ncf.update.prepare` computes it (one pass over the model's fixed
sample) and AltEraser's one-step update uses and carries it forward; it belongs to the model's
weights, so it lives beside them: ``NCF.save(path, curvature=True)`` writes it with
:func:`save_curvature` (``curvature.safetensors``, no pickle) and ``NCF.load`` reads it back
with :func:`load_curvature`, which checks that it was prepared for these very weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from recforget.data.errors import DataError

if TYPE_CHECKING:
    from recforget.models.ncf import NCF


CURVATURE_FILE = "curvature.safetensors"


_TENSORS = ("users", "items", "user_anchor", "item_anchor")
_ROW_REGS = ("user_reg", "item_reg")  # present only in a curvature with per-row ridges
RIDGES = ("global", "row")
DEFAULT_RIDGE = "row"
"""The ridge of a curvature :func:`recforget.unlearn.ncf.update.prepare` makes by default, and
of AltEraser's one-step update."""


@dataclass
class Curvature:
    """Per-block Hessian data parts and anchor rows of a model's fixed-sample objective.

    ``users`` (n_users, user_dim, user_dim) and ``items`` (n_items, item_dim, item_dim) are
    float32; ``user_anchor`` and ``item_anchor`` (float64) the block gradients :math:`c_b`
    (ridge included); ``reg`` the ridge; ``exact`` whether they were computed at the model's
    current parameters. ``user_reg`` and ``item_reg`` (float64, one per row), when set, are
    per-row ridges that replace ``reg`` on the embedding rows (``ridge == "row"``, see
    :func:`recforget.unlearn.ncf.update.prepare`).
    """

    users: torch.Tensor
    items: torch.Tensor
    user_anchor: torch.Tensor
    item_anchor: torch.Tensor
    reg: float
    loss: float = 0.0
    exact: bool = True
    params_hash: str = ""
    user_reg: torch.Tensor | None = None
    item_reg: torch.Tensor | None = None

    @property
    def ridge(self) -> str:
        """``"row"`` with per-row ridges, else ``"global"``."""
        return "global" if self.user_reg is None else "row"


def current_curvature(model: NCF) -> Curvature | None:
    """The model's :class:`Curvature` if it belongs to its current weights."""
    curv = model.__dict__.get("curvature_")
    if curv is None or curv.params_hash != model.model_hash():
        return None
    return curv


def prepared(model: NCF, reg: float, ridge: str = DEFAULT_RIDGE) -> Curvature | None:
    """The model's :class:`Curvature` if it belongs to its current weights, ``reg`` and
    ``ridge``."""
    curv = current_curvature(model)
    return curv if curv is not None and curv.reg == reg and curv.ridge == ridge else None


def require_curvature(model: NCF) -> Curvature:
    """:func:`current_curvature`, or ``ValueError`` when the model has none."""
    curv = current_curvature(model)
    if curv is None:
        raise ValueError("the model has no curvature for its current weights: prepare() it first")
    return curv


def save_curvature(model: NCF, path: str | Path) -> Path:
    """Write the model's prepared curvature to ``path/curvature.safetensors``.

    Raises ``ValueError`` when the model has none for its current weights (call
    :func:`prepare` first).
    """
    from safetensors.torch import save_file

    curv = require_curvature(model)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    names = _TENSORS + (_ROW_REGS if curv.ridge == "row" else ())
    tensors = {k: getattr(curv, k).detach().cpu().contiguous() for k in names}
    meta = {
        "reg": repr(curv.reg),
        "loss": repr(curv.loss),
        "exact": str(curv.exact),
        "params_hash": curv.params_hash,
    }
    tmp = path / (CURVATURE_FILE + ".tmp")
    save_file(tensors, tmp, metadata=meta)
    tmp.replace(path / CURVATURE_FILE)
    return path / CURVATURE_FILE


def load_curvature(model: NCF, path: str | Path) -> Curvature:
    """Read ``path/curvature.safetensors`` into ``model.curvature_`` (and return it).

    Raises :class:`~recforget.DataError` naming the file when it is missing, unreadable,
    incomplete, of the wrong shape, or prepared for other weights than the model's.
    """
    from safetensors import SafetensorError, safe_open

    file = Path(path) / CURVATURE_FILE
    if not file.is_file():
        raise DataError(f"{CURVATURE_FILE} is missing", file=str(path))
    dev = next(model.module_.parameters()).device
    try:
        with safe_open(file, framework="pt", device="cpu") as fh:
            meta = fh.metadata() or {}
            missing = sorted({*_TENSORS} - set(fh.keys())) + sorted(
                {"reg", "loss", "exact", "params_hash"} - set(meta)
            )
            if missing:
                raise DataError(f"curvature file lacks {', '.join(missing)}", file=str(file))
            names = _TENSORS + tuple(k for k in _ROW_REGS if k in fh.keys())
            t = {k: fh.get_tensor(k).to(dev) for k in names}
    except SafetensorError as exc:
        raise DataError(f"not a readable safetensors file ({exc})", file=str(file)) from exc
    module = model.module_
    shapes = {
        "users": (module.n_users, module.user_dim, module.user_dim),
        "items": (module.n_items, module.item_dim, module.item_dim),
        "user_anchor": (module.n_users, module.user_dim),
        "item_anchor": (module.n_items, module.item_dim),
        "user_reg": (module.n_users,),
        "item_reg": (module.n_items,),
    }
    if ("user_reg" in t) != ("item_reg" in t):
        raise DataError("curvature file has one side's per-row ridges only", file=str(file))
    for k, shape in shapes.items():
        if k not in t:
            continue
        if tuple(t[k].shape) != shape:
            raise DataError(
                f"curvature {k} has shape {tuple(t[k].shape)}, the model needs {shape}",
                file=str(file),
            )
    if meta["params_hash"] != model.model_hash():
        raise DataError("curvature was prepared for other weights than the model's", file=str(file))
    curv = Curvature(
        t["users"],
        t["items"],
        t["user_anchor"],
        t["item_anchor"],
        float(meta["reg"]),
        loss=float(meta["loss"]),
        exact=meta["exact"] == "True",
        params_hash=meta["params_hash"],
        user_reg=t.get("user_reg"),
        item_reg=t.get("item_reg"),
    )
    model.curvature_ = curv
    return curv


__all__ = [
    "CURVATURE_FILE",
    "DEFAULT_RIDGE",
    "RIDGES",
    "Curvature",
    "current_curvature",
    "load_curvature",
    "prepared",
    "require_curvature",
    "save_curvature",
]
