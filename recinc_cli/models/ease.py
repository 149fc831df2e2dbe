"""EASE (Steck, WWW 2019): a closed-form item-item model over a decayed co-occurrence matrix.

score(u, i) = sum over j in u's recent items of B[j, i], with

    B = argmin ||X - X B||^2 + lambda ||B||^2  subject to diag(B) = 0
      = I - P / diag(P),   P = (G + lambda I)^-1,   G = X^T X (the item Gram matrix).

Incremental by construction: G is a sum over users, and a user who consumes item i after
items H adds 1 to G[i, i] and to G[i, h], G[h, i] for every h in H. :meth:`EASE.absorb` adds
those co-occurrences on an event clock (G is multiplied by 2^(-n / half_life) every n events),
so an update folds a slice in without re-reading the log and the same events in the same
order give the same G whether they arrive at once or slice by slice. ``B`` is solved from G
when first needed (one (n_items x n_items) inverse: about a second at 3,500 items) and is not
stored in the checkpoint. Catalogues above :data:`MAX_ITEMS` are refused: G is dense.

Why it is here: under the streaming protocol (PROTOCOL.md) on MovieLens-1M, co-occurrence
with recently consumed items ranks next week's new items better than the factor models do
(README, "Where recinc stands").

>>> import numpy as np
>>> from recinc_cli.config import ModelConfig
>>> from recinc_cli.data.context import Context
>>> from recinc_cli.data.events import TrainData
>>> m = EASE({"user": 3, "item": 4}, ModelConfig(name="ease"))
>>> d = TrainData.of_pairs([1, 1, 2, 2], [1, 2, 1, 2])
>>> m.absorb(d, Context.empty(3), half_life_events=0)
>>> m.gram[1:3, 1:3].tolist()
[[2.0, 2.0], [2.0, 2.0]]
>>> s = m.score({"user": torch.tensor([1]), "seq_item": torch.tensor([[0, 1]])})
>>> bool(s[0, 2] > s[0, 3])
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from recinc_cli.config import ModelConfig
from recinc_cli.data.context import Context
from recinc_cli.data.events import TrainData
from recinc_cli.errors import UsageError
from recinc_cli.models.base import ClosedFormRecommender, Query

#: Largest catalogue (items) EASE accepts: its Gram matrix is dense, n_items^2 float32
#: (400 MB at this size) and solving it is O(n_items^3).
MAX_ITEMS = 10_000
#: Users whose co-occurrences are added per matrix product; bounds the dense (users x items)
#: history block.
_USER_BLOCK = 1024


class EASE(ClosedFormRecommender):
    """Decayed item Gram matrix ``gram`` (n_items, n_items) and its ridge solution (in memory)."""

    name = "ease"
    CONTEXT: ClassVar[bool] = True
    NO_GRADIENT: ClassVar[str] = "is solved in closed form; see EASE.absorb"
    gram: torch.Tensor

    def __init__(self, sizes: Mapping[str, int], cfg: ModelConfig) -> None:
        super().__init__(sizes, cfg)
        _check_size(self.n_items)
        self.register_buffer("gram", torch.zeros(self.n_items, self.n_items))
        self._weights: torch.Tensor | None = None

    def tables(self) -> dict[str, str]:
        return {}  # gram grows along both axes: see grow()

    def reset_parameters(self, init: str, generator: torch.Generator) -> None:
        self.gram.zero_()
        self._weights = None

    def grow(self, sizes: Mapping[str, int], init: str, generator: torch.Generator) -> None:
        """Pad ``gram`` with zero rows and columns for new items; old entries keep their index."""
        sizes = {**self.sizes, **sizes}
        n = sizes["item"]
        if n < self.n_items:
            raise ValueError(f"cannot shrink gram from {self.n_items} to {n} items")
        _check_size(n)
        if n > self.n_items:
            grown = torch.zeros(n, n)
            grown[: self.n_items, : self.n_items] = self.gram
            self.gram = grown
            self._weights = None
        self.sizes = sizes

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        self._weights = None
        super()._load_from_state_dict(state_dict, prefix, *args)

    def absorb(self, data: TrainData, prior: Context, half_life_events: float) -> None:
        """Add the co-occurrences of ``data`` (time-ordered) to ``gram``.

        ``prior`` holds each user's items before ``data`` (their newest ``max_len``); the caller
        folds ``data`` into its own context afterwards. The events are taken in chunks of at most
        a quarter half-life; before each chunk ``gram`` decays by 2^(-events / half_life)
        (``half_life_events`` 0 = no decay). An item a user already had within the context adds
        nothing again.
        """
        self._weights = None
        chunk = max(1, int(half_life_events // 4)) if half_life_events > 0 else max(len(data), 1)
        ctx = prior
        for lo in range(0, len(data), chunk):
            if lo:  # the history of this chunk includes the chunk before it
                before = data.subset(np.arange(lo - chunk, lo))
                n_users = max(self.n_users, ctx.n_users)
                ctx = ctx.extend(
                    before.user_idx, before.item_idx, before.types(), before.ts_ms, n_users, self.cfg.max_len
                )
            part = data.subset(np.arange(lo, min(lo + chunk, len(data))))
            if half_life_events > 0:
                self.gram.mul_(2.0 ** (-len(part) / half_life_events))
            self._add_pairs(part, ctx)

    def _add_pairs(self, part: TrainData, ctx: Context) -> None:
        users, inverse = np.unique(part.user_idx, return_inverse=True)
        for lo in range(0, len(users), _USER_BLOCK):
            block = slice(lo, lo + _USER_BLOCK)
            mask = (inverse >= lo) & (inverse < lo + _USER_BLOCK)
            rows = torch.as_tensor(inverse[mask] - lo)
            history = self._dense(ctx.padded(torch.as_tensor(users[block]))[0])
            new = torch.zeros_like(history)
            new[rows, torch.as_tensor(part.item_idx[mask])] = 1.0
            new[:, 0] = 0.0
            new = new * (1 - history)  # re-consumed items are no new co-occurrence
            cross = new.T @ history
            self.gram += cross + cross.T + new.T @ new

    def _dense(self, seq_item: torch.Tensor) -> torch.Tensor:
        x = torch.zeros(len(seq_item), self.n_items)
        if seq_item.numel():
            x.scatter_(1, seq_item.clamp(max=self.n_items - 1), 1.0)
        x[:, 0] = 0.0
        return x

    def weights(self) -> torch.Tensor:
        """The item-item weights ``B`` (n_items, n_items), solved from ``gram`` once per change.

        lambda = ``cfg.ease_l2`` x the mean diagonal of ``gram`` over items seen, so the
        regularisation scales with the log (and the decay) instead of being an absolute count.
        """
        if self._weights is None:
            self._weights = ease_solve(self.gram, self.cfg.ease_l2)
        return self._weights

    def score(self, query: Query, out: torch.Tensor | None = None) -> torch.Tensor:
        return torch.matmul(self._dense(query["seq_item"]), self.weights(), out=out)


def ease_solve(gram: torch.Tensor, l2: float) -> torch.Tensor:
    """EASE's weights ``B`` (n, n) float32 from a dense item Gram matrix ``gram`` (n, n), with
    lambda = ``l2`` x the mean diagonal over items seen; row and column 0 (padding) are 0.

    >>> b = ease_solve(torch.tensor([[0., 0, 0], [0, 2, 1], [0, 1, 2]]), 1.0)
    >>> b[1, 2].item() > 0, b.diagonal().tolist(), b[0].tolist()
    (True, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    """
    g = gram.double()
    diag = torch.diagonal(g)
    lam = l2 * float(diag[diag > 0].mean()) if bool((diag > 0).any()) else 1.0
    a = g + lam * torch.eye(len(g), dtype=torch.float64)
    # Cholesky inverts in half the time of LU; the decayed co-occurrence matrix is symmetric
    # but not always positive definite, so fall back to LU when the factorisation fails.
    chol, info = torch.linalg.cholesky_ex(a)
    p = torch.cholesky_inverse(chol) if int(info) == 0 else torch.linalg.inv(a)
    b = -p / torch.diagonal(p)[None, :]
    b.fill_diagonal_(0.0)
    b[0] = 0.0
    b[:, 0] = 0.0
    return b.float()


def _check_size(n_items: int) -> None:
    if n_items - 1 > MAX_ITEMS:
        raise UsageError(
            f"--model ease handles catalogues of up to {MAX_ITEMS:,} items (this one has {n_items - 1:,}); "
            "use --model mf or sasrec"
        )
