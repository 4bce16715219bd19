"""Neural collaborative filtering networks (He et al., 2017): GMF, MLP and NeuMF.

Only :class:`torch.nn.Module` s live here; the estimator is :class:`recforget.models.ncf.NCF`
and the training loop :class:`recforget.models._trainer.NCFTrainer`.

Parameter structure
-------------------
Every network is an :class:`NCFModule` made of three parts:

``user_tables`` : ``nn.ModuleList`` of ``nn.Embedding`` (also :attr:`NCFModule.user_embeddings`)
    Tables indexed by user. GMF and MLP have one, NeuMF two (GMF table first, MLP table second).
``item_tables`` : ``nn.ModuleList`` of ``nn.Embedding`` (also :attr:`NCFModule.item_embeddings`)
    The same for items, in the same order.
``head`` : ``nn.Module``
    Every other ("shared") parameter: GMF output layer, MLP tower and output layer.

A user's *block* is the concatenation of its rows of all user tables, a vector of
``user_dim`` numbers (NeuMF: ``factors + layers[0] // 2``); an item's block likewise has
``item_dim`` numbers. The head maps blocks to logits and holds all shared weights, so the network
is a pure function of (user block, item block, shared weights)::

    U = module.user_vectors(users)          # (b, user_dim), rows gathered from all user tables
    V = module.item_vectors(items)          # (b, item_dim)
    shared = module.shared_parameters()     # {"out.weight": ..., "tower.0.weight": ...}
    z = module.logits(U, V, shared)         # (b,) logits; == module(users, items)
    z = torch.func.functional_call(module.head, shared, (U, V))   # the same thing

Alternating optimisation (AltEraser) therefore takes leaf tensors for the blocks it updates
(for example ``U = module.all_user_vectors()[rows].requires_grad_()``), keeps the others
detached, evaluates :meth:`NCFModule.logits`, and writes results back with
:meth:`NCFModule.set_user_vectors` / :meth:`NCFModule.set_item_vectors`. The shared names are
relative to ``head`` (``dict(module.head.named_parameters())``); the full module's names are
``"head." + name``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

ARCHS = ("neumf", "gmf", "mlp")


# ---------------------------------------------------------------------------- heads
class GMFHead(nn.Module):
    """Generalised matrix factorisation: ``z = h . (p_u * q_i) + b``."""

    def __init__(self, factors: int, *, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.out = nn.Linear(factors, 1, device=device)

    def forward(self, user_vecs: Tensor, item_vecs: Tensor) -> Tensor:
        return self.out(user_vecs * item_vecs).squeeze(-1)

    def row_features(self, U: Tensor, V: Tensor) -> tuple[Tensor, Tensor, Combine]:
        """See :meth:`NCFModule.pair_scorer`: the output weights folded into the user rows."""
        bias = self.out.bias[0]
        return U * self.out.weight[0], V, lambda ru, ri: (ru * ri).sum(-1) + bias


def _tower(layers: Sequence[int], device: torch.device | str | None) -> nn.Sequential:
    mods: list[nn.Module] = []
    for d_in, d_out in pairwise(layers):
        mods += [nn.Linear(d_in, d_out, device=device), nn.ReLU()]
    return nn.Sequential(*mods)


Combine = Callable[[Tensor, Tensor], Tensor]


def _split_first_layer(tower: nn.Sequential, U: Tensor, V: Tensor) -> tuple[Tensor, Tensor, Any]:
    """The first linear layer on ``[u, v]`` as ``U A^T + b`` and ``V B^T``, and the rest.

    The rest starts after the first ReLU, which the caller applies to the sum of the rows.
    """
    first = tower[0]
    du = U.shape[1]
    ru = U @ first.weight[:, :du].T + first.bias
    ri = V @ first.weight[:, du:].T
    return ru, ri, tower[2:]


class MLPHead(nn.Module):
    """Multi-layer perceptron on ``[p_u, q_i]``: ReLU tower ``layers``, then a linear output."""

    def __init__(self, layers: Sequence[int], *, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.tower = _tower(layers, device)
        self.out = nn.Linear(layers[-1], 1, device=device)

    def forward(self, user_vecs: Tensor, item_vecs: Tensor) -> Tensor:
        return self.out(self.tower(torch.cat([user_vecs, item_vecs], dim=-1))).squeeze(-1)

    def row_features(self, U: Tensor, V: Tensor) -> tuple[Tensor, Tensor, Combine]:
        """See :meth:`NCFModule.pair_scorer`: each side's share of the first layer."""
        ru, ri, rest = _split_first_layer(self.tower, U, V)
        return ru, ri, lambda a, b: self.out(rest(torch.relu_(a + b))).squeeze(-1)


class NeuMFHead(nn.Module):
    """GMF and MLP branches, concatenated into one linear output layer.

    Blocks are ``[gmf part (factors), mlp part (layers[0] // 2)]``.
    """

    def __init__(
        self, factors: int, layers: Sequence[int], *, device: torch.device | str | None = None
    ) -> None:
        super().__init__()
        self.factors = factors
        self.tower = _tower(layers, device)
        self.out = nn.Linear(factors + layers[-1], 1, device=device)

    def forward(self, user_vecs: Tensor, item_vecs: Tensor) -> Tensor:
        f = self.factors
        gmf = user_vecs[..., :f] * item_vecs[..., :f]
        mlp = self.tower(torch.cat([user_vecs[..., f:], item_vecs[..., f:]], dim=-1))
        return self.out(torch.cat([gmf, mlp], dim=-1)).squeeze(-1)

    def row_features(self, U: Tensor, V: Tensor) -> tuple[Tensor, Tensor, Combine]:
        """See :meth:`NCFModule.pair_scorer`: GMF output weights and the first layer split."""
        f = self.factors
        w, bias = self.out.weight[0], self.out.bias[0]
        mu, mi, rest = _split_first_layer(self.tower, U[:, f:], V[:, f:])
        ru = torch.cat([U[:, :f] * w[:f], mu], dim=1)
        ri = torch.cat([V[:, :f], mi], dim=1)

        def combine(a: Tensor, b: Tensor) -> Tensor:
            gmf = (a[:, :f] * b[:, :f]).sum(-1)
            return gmf + rest(torch.relu_(a[:, f:] + b[:, f:])) @ w[f:] + bias

        return ru, ri, combine


# ---------------------------------------------------------------------------- networks
class NCFModule(nn.Module):
    """Embedding tables plus a head; see the module docstring for the functional interface.

    Parameters
    ----------
    n_users, n_items : int
    user_dims, item_dims : sequence of int
        Width of each user (item) table, in block order.
    head : nn.Module
        ``head(user_vecs, item_vecs) -> logits`` holding every shared parameter.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        user_dims: Sequence[int],
        item_dims: Sequence[int],
        head: nn.Module,
        *,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.n_users = int(n_users)
        self.n_items = int(n_items)
        self.user_tables = nn.ModuleList(nn.Embedding(n_users, d, device=device) for d in user_dims)
        self.item_tables = nn.ModuleList(nn.Embedding(n_items, d, device=device) for d in item_dims)
        self.head = head

    # ------------------------------------------------------------ structure
    @property
    def user_embeddings(self) -> list[nn.Embedding]:
        """The tables indexed by user, in block order."""
        return list(self.user_tables)  # type: ignore[arg-type]

    @property
    def item_embeddings(self) -> list[nn.Embedding]:
        """The tables indexed by item, in block order."""
        return list(self.item_tables)  # type: ignore[arg-type]

    @property
    def user_dim(self) -> int:
        """Width of a user block (sum of the user tables' widths)."""
        return sum(t.embedding_dim for t in self.user_embeddings)

    @property
    def item_dim(self) -> int:
        return sum(t.embedding_dim for t in self.item_embeddings)

    def shared_parameters(self) -> dict[str, nn.Parameter]:
        """Every parameter that is not an embedding row, keyed by its name inside ``head``."""
        return dict(self.head.named_parameters())

    # ------------------------------------------------------------ blocks
    def user_vectors(self, users: Tensor) -> Tensor:
        """User blocks of shape (b, user_dim): each user's rows of all user tables."""
        return torch.cat([t(users) for t in self.user_embeddings], dim=-1)

    def item_vectors(self, items: Tensor) -> Tensor:
        """Item blocks of shape (b, item_dim)."""
        return torch.cat([t(items) for t in self.item_embeddings], dim=-1)

    def all_user_vectors(self) -> Tensor:
        """All user blocks, shape (n_users, user_dim) (a new tensor, still in the graph)."""
        return torch.cat([t.weight for t in self.user_embeddings], dim=-1)

    def all_item_vectors(self) -> Tensor:
        """All item blocks, shape (n_items, item_dim)."""
        return torch.cat([t.weight for t in self.item_embeddings], dim=-1)

    @torch.no_grad()
    def set_user_vectors(self, users: Tensor, vecs: Tensor) -> None:
        """Write user blocks ``vecs`` (b, user_dim) into the rows ``users`` of the tables."""
        _scatter(self.user_embeddings, users, vecs)

    @torch.no_grad()
    def set_item_vectors(self, items: Tensor, vecs: Tensor) -> None:
        """Write item blocks ``vecs`` (b, item_dim) into the rows ``items`` of the tables."""
        _scatter(self.item_embeddings, items, vecs)

    # ------------------------------------------------------------ forward
    def logits(
        self, user_vecs: Tensor, item_vecs: Tensor, shared: dict[str, Tensor] | None = None
    ) -> Tensor:
        """Logits of blocks (b, user_dim) x (b, item_dim) -> (b,).

        ``shared`` (names as in :meth:`shared_parameters`) replaces the head's weights through
        :func:`torch.func.functional_call`; ``None`` uses the module's own.
        """
        if shared is None:
            return self.head(user_vecs, item_vecs)
        return functional_call(self.head, shared, (user_vecs, item_vecs))

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        """Logits of (user index, item index) pairs, shape (b,)."""
        return self.head(self.user_vectors(users), self.item_vectors(items))

    @torch.no_grad()
    def pair_scorer(self) -> Combine:
        """A function of (user indices, item indices) to logits, for scoring many pairs.

        Every user and item row's share of the head's first layer (GMF: the output weights;
        MLP: the first linear layer, split by input) is computed once, so a pair costs a
        gather, an add and the rest of the tower: about a third of :meth:`forward`'s work
        for NeuMF. Equal to ``self(users, items)`` up to float rounding; no gradients.
        """
        ru, ri, combine = self.head.row_features(
            self.all_user_vectors().detach(), self.all_item_vectors().detach()
        )
        return lambda users, items: combine(F.embedding(users, ru), F.embedding(items, ri))

    # ------------------------------------------------------------ initialisation
    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> NCFModule:
        """Embeddings ~ N(0, 0.01^2), linear weights Glorot-uniform, biases 0 (He et al.).

        Only ``generator`` is consumed, never torch's global random state.
        """
        for table in (*self.user_embeddings, *self.item_embeddings):
            nn.init.normal_(table.weight, std=0.01, generator=generator)
        for mod in self.head.modules():
            if isinstance(mod, nn.Linear):
                nn.init.xavier_uniform_(mod.weight, generator=generator)
                nn.init.zeros_(mod.bias)
        return self

    @torch.no_grad()
    def take(self, users: Tensor | None = None, items: Tensor | None = None) -> NCFModule:
        """A copy keeping only the given user / item rows (in that order); shared weights copied.

        Used when whole users or items leave the vocabulary.
        """
        new = _empty_like(
            self,
            len(users) if users is not None else self.n_users,
            len(items) if items is not None else self.n_items,
        )
        state = {k: v.clone() for k, v in self.state_dict().items()}
        for prefix, rows in (("user_tables.", users), ("item_tables.", items)):
            if rows is not None:
                for k in state:
                    if k.startswith(prefix):
                        state[k] = state[k][rows].clone()
        new.load_state_dict(state)
        return new


def _scatter(tables: list[nn.Embedding], rows: Tensor, vecs: Tensor) -> None:
    start = 0
    for t in tables:
        d = t.embedding_dim
        t.weight[rows] = vecs[:, start : start + d].to(t.weight.dtype)
        start += d
    if start != vecs.shape[-1]:
        raise ValueError(f"blocks have width {vecs.shape[-1]}, the tables {start}")


class GMFModule(NCFModule):
    """GMF: one user and one item table of ``factors`` columns."""

    def __init__(
        self, n_users: int, n_items: int, factors: int, *, device: torch.device | str | None = None
    ) -> None:
        super().__init__(
            n_users, n_items, [factors], [factors], GMFHead(factors, device=device), device=device
        )
        self.config = {"arch": "gmf", "factors": factors}


class MLPModule(NCFModule):
    """MLP: tables of ``layers[0] // 2`` columns, concatenated into a ReLU tower."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        layers: Sequence[int],
        *,
        device: torch.device | str | None = None,
    ) -> None:
        d = layers[0] // 2
        super().__init__(n_users, n_items, [d], [d], MLPHead(layers, device=device), device=device)
        self.config = {"arch": "mlp", "layers": list(layers)}


class NeuMFModule(NCFModule):
    """NeuMF: separate GMF (``factors``) and MLP (``layers[0] // 2``) tables per side."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        factors: int,
        layers: Sequence[int],
        *,
        device: torch.device | str | None = None,
    ) -> None:
        dims = [factors, layers[0] // 2]
        head = NeuMFHead(factors, layers, device=device)
        super().__init__(n_users, n_items, dims, dims, head, device=device)
        self.config = {"arch": "neumf", "factors": factors, "layers": list(layers)}


def build_module(
    arch: str,
    n_users: int,
    n_items: int,
    factors: int,
    layers: Sequence[int],
    *,
    device: torch.device | str | None = None,
) -> NCFModule:
    """The network for ``arch``; ``device="meta"`` allocates nothing and draws no randomness."""
    if arch == "gmf":
        return GMFModule(n_users, n_items, factors, device=device)
    if arch == "mlp":
        return MLPModule(n_users, n_items, layers, device=device)
    if arch == "neumf":
        return NeuMFModule(n_users, n_items, factors, layers, device=device)
    raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")


def _empty_like(module: NCFModule, n_users: int, n_items: int) -> NCFModule:
    cfg = module.config  # type: ignore[attr-defined]
    device = next(module.parameters()).device
    new = build_module(
        cfg["arch"], n_users, n_items, cfg.get("factors", 0), cfg.get("layers", [0]), device="meta"
    )
    return new.to_empty(device=device)


__all__ = [
    "ARCHS",
    "GMFHead",
    "GMFModule",
    "MLPHead",
    "MLPModule",
    "NCFModule",
    "NeuMFHead",
    "NeuMFModule",
    "build_module",
]
