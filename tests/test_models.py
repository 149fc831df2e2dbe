"""The model contract, run against every model in the registry.

Each model gets a tiny architecture (:data:`TINY`) and the same checks: scores, padding rows,
growing (old rows and old scores kept, never shrinking), checkpoint round trips, seeded
reproducibility, and learning tiny data built in code whose right answer is known exactly:
disjoint chains of 4 items consumed in order, where the next item of a user's chain is the
answer and global popularity is wrong for every user.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from recinc_cli.config import MODEL_NAMES, ModelConfig, TrainConfig
from recinc_cli.data.context import Context
from recinc_cli.data.events import TrainData
from recinc_cli.data.seen import SeenItems
from recinc_cli.data.vocab import Vocab
from recinc_cli.errors import TrainingError, UsageError
from recinc_cli.models import MODELS, build_model
from recinc_cli.models.base import (
    ClosedFormRecommender,
    GradientRecommender,
    Query,
    RankingRecommender,
    Recommender,
    TrainInput,
    closed_form_model,
)
from recinc_cli.serving.recommend import ScoreFn, model_scorer, popularity_scorer, top_k
from recinc_cli.serving.views import bundle_scorer
from recinc_cli.store.bundle import Bundle
from recinc_cli.store.format import load_bundle, save_bundle
from recinc_cli.training.train import Trainer, seeded_generator

#: Models trained by gradient steps; the closed-form ones (``ease``, ``sknn``) have the contract
#: of :data:`CLOSED` below and their own tests (test_ease.py, test_sknn.py).
NAMES = sorted(n for n in MODELS if not MODELS[n].CLOSED_FORM)
#: Models solved in closed form (``absorb``): events folded in, never trained by gradient steps.
CLOSED = sorted(n for n in MODELS if MODELS[n].CLOSED_FORM)
#: A tiny architecture per model; a new model must add one here (checked below).
TINY: dict[str, ModelConfig] = {
    "mf": ModelConfig(name="mf", dim=8),
    "sasrec": ModelConfig(name="sasrec", dim=16, max_len=8, blocks=1, heads=2, dropout=0.0),
}
#: Training settings that learn the tiny data below in well under a second per model.
TRAIN: dict[str, TrainConfig] = {
    "mf": TrainConfig(lr=0.05, batch_size=16, l2=0.0),
    "sasrec": TrainConfig(lr=0.01, batch_size=64, l2=0.0),
}
SEQUENTIAL = [n for n in NAMES if MODELS[n].CONTEXT]


def config(name: str, **changes: object) -> ModelConfig:
    return dataclasses.replace(TINY[name], **changes)  # type: ignore[arg-type]


def make(name: str, sizes: dict[str, int], seed: int = 0, init: str = "random", **changes: object) -> Recommender:
    m = build_model(config(name, **changes), sizes)
    m.reset_parameters(init, seeded_generator(seed))
    return m


def events(users: list[int], items: list[int], types: list[int] | None = None) -> TrainData:
    """Time-ordered events (in list order) with weight 1."""
    n = len(users)
    t = None if types is None else np.array(types, dtype=np.int64)
    return TrainData(np.array(users), np.array(items), np.ones(n, np.float32), np.arange(n, dtype=np.int64), t)


def context_of(data: TrainData, n_users: int, max_len: int) -> Context:
    return Context.empty(n_users).extend(data.user_idx, data.item_idx, data.types(), data.ts_ms, n_users, max_len)


def query(model: Recommender, users: torch.Tensor, data: TrainData) -> Query:
    """The model's query for ``users``: their index and, for sequential models, their events."""
    q = {"user": users}
    if model.CONTEXT:
        q["seq_item"], q["seq_type"] = context_of(data, model.n_users, model.cfg.max_len).padded(users)
    return q


def scorer(model: Recommender, data: TrainData) -> ScoreFn:
    ctx = context_of(data, model.n_users, model.cfg.max_len) if model.CONTEXT else None
    return model_scorer(model.eval(), ctx)


def hit_rate_at_1(score_fn: ScoreFn, data: TrainData, users: np.ndarray, targets: np.ndarray) -> float:
    """Share of ``users`` whose best item not in ``data`` is their target."""
    n_users = int(data.user_idx.max()) + 1
    seen = SeenItems.empty(n_users).merge(data.user_idx, data.item_idx, n_users)
    top, _ = top_k(score_fn, users, seen, k=1)
    return float((top[:, 0] == targets).mean())


# --- tiny data with a known answer ------------------------------------------------------------


@dataclasses.dataclass
class Task:
    data: TrainData
    users: np.ndarray  # (U,) users to evaluate
    targets: np.ndarray  # (U,) the one right next item of each
    n_users: int  # table rows, row 0 included
    n_items: int

    def popularity_hit_rate(self) -> float:
        counts = np.bincount(self.data.item_idx, minlength=self.n_items).astype(np.float32)
        return hit_rate_at_1(popularity_scorer(torch.from_numpy(counts)), self.data, self.users, self.targets)


def chains(n_chains: int = 6, per_j: int = 2, full: int = 2) -> Task:
    """Items 1..4n in disjoint chains of 4 (4c+1 -> 4c+2 -> 4c+3 -> 4c+4), each consumed in order.

    For every chain and j = 1..3, ``per_j`` users have consumed its first j items; their answer
    is item j+1 of the chain. ``full`` more users per chain consumed all 4 (training only), so
    every item is seen. A chain's first item is the most popular of all, so popularity
    recommends another chain's first item to everyone: it scores 0.
    """
    users, items, eval_users, targets = [], [], [], []
    u = 0
    for c in range(n_chains):
        chain = [4 * c + k for k in (1, 2, 3, 4)]
        for j in [1, 2, 3] * per_j + [4] * full:
            u += 1
            users += [u] * j
            items += chain[:j]
            if j < 4:
                eval_users.append(u)
                targets.append(chain[j])
    return Task(events(users, items), np.array(eval_users), np.array(targets), u + 1, 4 * n_chains + 1)


def cycle(n_items: int = 12, lengths: tuple[int, ...] = (3, 4, 5), seed: int = 0) -> Task:
    """One cycle 1 -> 2 -> ... -> n -> 1; per length L, n users start at a random (permuted)
    position and consume L consecutive items; the answer is the item after them.

    Every item is consumed equally often, and a user's last item has an unseen neighbour on
    either side: only the order of events tells which one comes next.
    """
    rng = np.random.default_rng(seed)
    users, items, eval_users, targets = [], [], [], []
    u = 0
    for length in lengths:
        for start in rng.permutation(n_items):
            u += 1
            users += [u] * length
            items += [(start + k) % n_items + 1 for k in range(length)]
            eval_users.append(u)
            targets.append((start + length) % n_items + 1)
    return Task(events(users, items), np.array(eval_users), np.array(targets), u + 1, n_items + 1)


def train_on(name: str, task: Task, epochs: int, seed: int = 0, cfg: TrainConfig | None = None) -> Recommender:
    m = make(name, {"user": task.n_users, "item": task.n_items}, seed=seed)
    Trainer(m, cfg or TRAIN[name]).fit(task.data, epochs=epochs, generator=seeded_generator(seed))
    return m


# --- registry -----------------------------------------------------------------------------------


def test_registry_and_unknown_model() -> None:
    assert NAMES == ["mf", "sasrec"] == sorted(TINY) == sorted(TRAIN)
    assert sorted(MODEL_NAMES) == sorted(MODELS) == ["ease", "mf", "ranker", "sasrec", "sknn"]
    assert CLOSED == ["ease", "ranker", "sknn"] == sorted(CLOSED_TINY)
    assert SEQUENTIAL == ["sasrec"]
    with pytest.raises(UsageError, match=r"^--model 'nope' is unknown; choose one of mf, sasrec, ease, sknn, ranker$"):
        ModelConfig(name="nope")


# --- scores, padding and growth -------------------------------------------------------------------

SIZES = {"user": 5, "item": 7, "type": 3}
#: Events of users 1..4 over items 1..6 and event types 1..2 (user 4 has a single event).
HISTORY = events([1, 2, 1, 3, 2, 1, 3, 4], [1, 2, 3, 4, 5, 6, 1, 2], [1, 2, 1, 1, 2, 2, 1, 1])


def featured(name: str) -> dict[str, object]:
    """Config changes that give sequential models an item feature (4 values), so it is checked too."""
    return {"item_features": ("category",)} if MODELS[name].CONTEXT else {}


def sizes_for(name: str, **changes: int) -> dict[str, int]:
    sizes = {**SIZES, **({"feat:category": 4} if featured(name) else {})}
    return {**sizes, **changes}


def with_features(m: Recommender) -> Recommender:
    if m.cfg.item_features:
        m.set_item_features(torch.arange(1, m.n_items), torch.arange(1, m.n_items)[:, None] % 3 + 1)
    return m


@pytest.mark.parametrize("name", NAMES)
def test_score_shape_dtype_and_padding_rows(name: str) -> None:
    m = with_features(make(name, sizes_for(name), **featured(name)))
    with torch.no_grad():
        s = m.score(query(m, torch.tensor([1, 2, 4]), HISTORY))
    assert s.shape == (3, 7) and s.dtype == torch.float32
    assert torch.isfinite(s).all()
    tables = m.tables()
    assert tables and set(tables.values()) <= set(sizes_for(name))
    for tname, axis in tables.items():
        t = m.get_parameter(tname) if tname in dict(m.named_parameters()) else m.get_buffer(tname)
        assert t.shape[0] == sizes_for(name)[axis], tname
        assert torch.count_nonzero(t[0]) == 0, tname  # row 0 is padding / unknown
        if t.dim() == 2:
            assert torch.count_nonzero(t[1:]) > 0, tname


@pytest.mark.parametrize("name", SEQUENTIAL)
def test_left_padding_and_user_index_do_not_change_sequential_scores(name: str) -> None:
    m = make(name, sizes_for(name), **featured(name)).eval()
    q = query(m, torch.tensor([1, 2, 3]), HISTORY)
    pad = torch.zeros(3, 4, dtype=torch.int64)
    wider = {"user": torch.tensor([4, 4, 4]), "seq_item": torch.cat([pad, q["seq_item"]], 1)}
    wider["seq_type"] = torch.cat([pad, q["seq_type"]], 1)
    with torch.no_grad():
        torch.testing.assert_close(m.score(wider), m.score(q), rtol=1e-5, atol=1e-6)
        # The scores follow the events: other events, other scores.
        other = {**q, "seq_item": q["seq_item"].flip(0)}
        assert not torch.allclose(m.score(other), m.score(q))


@pytest.mark.parametrize("name", SEQUENTIAL)
def test_a_batch_of_users_with_no_events_scores_like_all_padding(name: str) -> None:
    # Issue 13, bug 1: when no user of a scoring batch has any event yet (users first seen in an
    # update's held-out part), the batch is (B, 0) wide; sasrec indexed its last position.
    m = make(name, sizes_for(name), **featured(name)).eval()
    empty = torch.zeros(2, 0, dtype=torch.int64)
    padding = torch.zeros(2, 3, dtype=torch.int64)
    users = torch.tensor([1, 2])
    with torch.no_grad():
        s = m.score({"user": users, "seq_item": empty, "seq_type": empty})
        assert s.shape == (2, m.n_items) and torch.isfinite(s).all()
        torch.testing.assert_close(s, m.score({"user": users, "seq_item": padding, "seq_type": padding}))


@pytest.mark.parametrize("name", NAMES)
def test_grow_appends_rows_and_keeps_old_rows_and_scores(name: str) -> None:
    m = with_features(make(name, sizes_for(name), **featured(name)))
    before = {n: t.detach().clone() for n, t in m.state_dict().items()}
    old_users = torch.tensor([1, 2, 3, 4])
    with torch.no_grad():
        old_scores = m.score(query(m, old_users, HISTORY)).clone()

    grown = sizes_for(name, user=8, item=10, type=4, **({"feat:category": 6} if featured(name) else {}))
    m.grow(grown, "random", seeded_generator(1))

    assert (m.n_users, m.n_items) == (8, 10) and m.sizes == grown
    tables = m.tables()
    state = m.state_dict()
    assert set(state) == set(before)
    for n, t in state.items():
        old = before[n]
        if n in tables:
            assert t.shape == (grown[tables[n]], *old.shape[1:]), n
            assert torch.equal(t[: old.shape[0]], old), n  # old rows never move
            new_rows = t[old.shape[0] :]
            if t.is_floating_point() and t.dim() == 2:
                assert torch.count_nonzero(new_rows) > 0, n  # random init
            elif not t.is_floating_point():
                assert torch.count_nonzero(new_rows) == 0, n  # unknown feature value
        else:
            assert torch.equal(t, old), n
    # Every grown table is still a registered parameter (what an optimizer will see).
    params = dict(m.named_parameters())
    assert all(isinstance(p, torch.nn.Parameter) for p in params.values())
    assert {n for n in tables if n in params} == {n for n in tables if before[n].is_floating_point()}
    # Old users score old items as before; the new columns come after them. (The weights are
    # equal bit for bit, above; the BLAS kernel picked for a wider matmul may round differently.)
    with torch.no_grad():
        new_scores = m.score(query(m, old_users, HISTORY))
    assert new_scores.shape == (4, 10)
    torch.testing.assert_close(new_scores[:, :7], old_scores, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_grow_refuses_to_shrink(name: str) -> None:
    m = make(name, sizes_for(name), **featured(name))
    for axis in sorted(set(m.tables().values())):
        with pytest.raises(ValueError, match=f"^cannot shrink .* from {SIZES.get(axis, 4)} to 2 rows$"):
            m.grow({axis: 2}, "random", seeded_generator(1))
    assert m.sizes == {**sizes_for(name)}


USER_TABLE_MODELS = [n for n in NAMES if "user" in make(n, sizes_for(n), **featured(n)).tables().values()]


def test_some_model_has_user_tables() -> None:
    assert USER_TABLE_MODELS == ["mf"]


@pytest.mark.parametrize("name", USER_TABLE_MODELS)
def test_zero_init_leaves_user_rows_zero(name: str) -> None:
    m = make(name, sizes_for(name), init="zero")
    users = [n for n, axis in m.tables().items() if axis == "user"]
    for n in users:
        assert torch.count_nonzero(m.get_parameter(n)) == 0, n
    with torch.no_grad():
        for n in users:
            m.get_parameter(n).normal_()
    m.grow(sizes_for(name, user=9, item=9), "zero", seeded_generator(1))
    for n in users:
        p = m.get_parameter(n)
        assert torch.count_nonzero(p[5:]) == 0 and torch.count_nonzero(p[1:5]) > 0, n
    items = [n for n, axis in m.tables().items() if axis == "item" and m.get_parameter(n).dim() == 2]
    assert items and all(torch.count_nonzero(m.get_parameter(n)[7:]) > 0 for n in items)


# --- checkpoints and seeds ----------------------------------------------------------------------


def ids(prefix: str, n: int) -> Vocab:
    """A vocabulary of ``n`` rows: padding and ``prefix1`` .. ``prefix{n-1}``."""
    return Vocab(["", *(f"{prefix}{k}" for k in range(1, n))])


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_parameters(name: str) -> None:
    a, b, c = (make(name, sizes_for(name), seed=s, **featured(name)) for s in (3, 3, 4))
    for (n, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(pa, pb), n
        if pa.dim() == 2 and n in a.tables():
            assert not torch.equal(pa, pc), n


REPRO_CASES = [(n, {}) for n in NAMES] + [(n, {"dropout": 0.3}) for n in SEQUENTIAL]


@pytest.mark.parametrize(("name", "changes"), REPRO_CASES, ids=lambda v: str(v) if v else "default")
def test_same_seed_same_trained_model(name: str, changes: dict[str, object]) -> None:
    task = chains()

    def run(seed: int, global_seed: int) -> tuple[list[float], list[torch.Tensor]]:
        torch.manual_seed(global_seed)  # the result must not depend on torch's global RNG
        m = make(name, {"user": task.n_users, "item": task.n_items}, seed=seed, **changes)
        losses = Trainer(m, TRAIN[name]).fit(task.data, epochs=3, generator=seeded_generator(seed))
        return losses, [p.detach().clone() for p in m.parameters()]

    (la, pa), (lb, pb), (lc, pc) = run(11, 1), run(11, 2), run(12, 1)
    assert la == lb
    assert all(torch.equal(x, y) for x, y in zip(pa, pb, strict=True))
    assert la != lc and not all(torch.equal(x, y) for x, y in zip(pa, pc, strict=True))


# --- learning tiny patterns ---------------------------------------------------------------------


def test_popularity_fails_the_chain_task() -> None:
    task = chains()
    assert len(task.users) == 36 and task.n_items == 25
    # Every j = 1..3 is asked for (targets are a chain's 2nd, 3rd and 4th items).
    assert np.bincount(task.targets % 4).tolist() == [12, 0, 12, 12]
    assert task.popularity_hit_rate() == 0.0


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", [0, 1])
def test_learns_that_item_i_is_followed_by_item_i_plus_1(name: str, seed: int) -> None:
    task = chains()
    m = make(name, {"user": task.n_users, "item": task.n_items}, seed=seed)
    losses = Trainer(m, TRAIN[name]).fit(task.data, epochs=60, generator=seeded_generator(seed))
    # A near-uniform start over the 24 real items, and a clear drop.
    assert abs(losses[0] - math.log(task.n_items - 1)) < 0.1
    assert losses[-1] < losses[0] - 1.0
    assert hit_rate_at_1(scorer(m, task.data), task.data, task.users, task.targets) > 0.9


@pytest.mark.parametrize("name", SEQUENTIAL)
def test_sequential_model_learns_the_direction_of_a_cycle(name: str) -> None:
    task = cycle()
    assert np.unique(np.bincount(task.data.item_idx)[1:]).tolist() == [12]  # uniform popularity
    assert task.popularity_hit_rate() < 0.2
    m = train_on(name, task, epochs=60)
    assert hit_rate_at_1(scorer(m, task.data), task.data, task.users, task.targets) > 0.9


@pytest.mark.parametrize("name", [n for n in NAMES if n not in SEQUENTIAL])
def test_a_model_blind_to_order_cannot_learn_the_cycle(name: str) -> None:
    """The cycle task really needs the order: each user's two unseen neighbours look alike."""
    task = cycle()
    m = train_on(name, task, epochs=60)
    assert hit_rate_at_1(scorer(m, task.data), task.data, task.users, task.targets) < 0.7


@pytest.mark.parametrize("name", NAMES)
def test_sampled_softmax_learns_it_too(name: str) -> None:
    task = chains()
    # A catalogue above full_softmax_max_items trains against sampled negatives instead.
    cfg = TRAIN[name].replace(full_softmax_max_items=4, n_negatives=16)
    m = make(name, {"user": task.n_users, "item": task.n_items})
    prior = Context.empty(0)
    batches = list(m.batches(TrainInput(task.data, prior, cfg), seeded_generator(0)))
    assert batches and all(b["neg"].shape == (16,) and int(b["neg"].min()) >= 1 for b in batches)
    full = next(iter(m.batches(TrainInput(task.data, prior, TRAIN[name]), seeded_generator(0))))
    assert "neg" not in full
    losses = Trainer(m, cfg).fit(task.data, epochs=80, generator=seeded_generator(0))
    assert losses[-1] < losses[0] - 0.5
    assert hit_rate_at_1(scorer(m, task.data), task.data, task.users, task.targets) > 0.9


@pytest.mark.parametrize("name", NAMES)
def test_auto_chooses_the_sampled_softmax_by_cost(name: str) -> None:
    """At ``full_softmax_max_items`` auto the exact softmax is used while its logits per epoch
    cost at most EXACT_SOFTMAX_PREMIUM x the sampled one's (events x negatives): here the
    catalogue is fixed and only the negatives move the cost."""
    task = chains()
    m = make(name, {"user": task.n_users, "item": task.n_items})
    job = functools.partial(TrainInput, task.data, Context.empty(0))
    assert TRAIN[name].full_softmax_max_items == "auto"
    cheap = next(iter(m.batches(job(TRAIN[name].replace(n_negatives=task.n_items)), seeded_generator(0))))
    costly = next(iter(m.batches(job(TRAIN[name].replace(n_negatives=1)), seeded_generator(0))))
    assert "neg" not in cheap and costly["neg"].shape == (1,)


@pytest.mark.parametrize("name", NAMES)
def test_a_diverging_learning_rate_raises_training_error(name: str) -> None:
    task = chains()
    m = make(name, {"user": task.n_users, "item": task.n_items})
    with pytest.raises(TrainingError, match=r"lower --lr"):
        Trainer(m, TRAIN[name].replace(lr=1e30)).fit(task.data, epochs=3, generator=seeded_generator(0))


# --- the closed-form contract ----------------------------------------------------------------------

#: A tiny configuration per closed-form model; a new one must add one here (checked above).
CLOSED_TINY: dict[str, ModelConfig] = {
    "ease": ModelConfig(name="ease", max_len=8, ease_l2=1.0),
    "sknn": ModelConfig(name="sknn", max_len=8, neighbors=10),
    "ranker": ModelConfig(name="ranker", max_len=8, neighbors=10, ease_l2=1.0, candidates=5),
}


def absorbed(name: str, data: TrainData, n_users: int, n_items: int, cuts: tuple[int, ...] = ()) -> Recommender:
    """A closed-form model that absorbed ``data``, at once or in the slices between ``cuts``."""
    m = build_model(CLOSED_TINY[name], {"user": n_users, "item": n_items})
    m.reset_parameters("random", seeded_generator(0))
    ctx = Context.empty(n_users)
    for lo, hi in zip((0, *cuts), (*cuts, len(data)), strict=True):
        part = data.subset(np.arange(lo, hi))
        m.absorb(part, ctx, half_life_events=0)  # type: ignore[operator]
        ctx = ctx.extend(part.user_idx, part.item_idx, part.types(), part.ts_ms, n_users, m.cfg.max_len)
    return m.eval()


@pytest.mark.parametrize("name", CLOSED)
def test_closed_form_scores_shape_and_no_gradient_path(name: str) -> None:
    m = absorbed(name, HISTORY, 5, 7)
    assert m.CONTEXT
    with torch.no_grad():
        s = m.score(query(m, torch.tensor([1, 2, 4]), HISTORY))
    assert s.shape == (3, 7) and s.dtype == torch.float32 and torch.isfinite(s).all()
    assert list(m.parameters()) == [] and m.tables() == {}
    with pytest.raises(NotImplementedError, match=f"^{name} "):
        m.loss({})
    with pytest.raises(NotImplementedError, match=f"^{name} "):
        m.batches(TrainInput(HISTORY, Context.empty(5), TrainConfig()), seeded_generator(0))


@pytest.mark.parametrize("name", CLOSED)
def test_closed_form_absorbing_in_slices_equals_absorbing_at_once(name: str) -> None:
    task = chains()
    whole = absorbed(name, task.data, task.n_users, task.n_items)
    parts = absorbed(name, task.data, task.n_users, task.n_items, cuts=(5, 40, 41))
    users = torch.from_numpy(task.users)
    with torch.no_grad():
        torch.testing.assert_close(
            parts.score(query(parts, users, task.data)),
            whole.score(query(whole, users, task.data)),
            rtol=1e-5,
            atol=1e-6,
        )


@pytest.mark.parametrize("name", CLOSED)
def test_closed_form_learns_that_item_i_is_followed_by_item_i_plus_1(name: str) -> None:
    task = chains()
    m = absorbed(name, task.data, task.n_users, task.n_items)
    assert task.popularity_hit_rate() == 0.0
    assert hit_rate_at_1(scorer(m, task.data), task.data, task.users, task.targets) == 1.0


#: Closed-form models that read the order of a user's events (sknn's sequential rules); ease
#: counts co-occurrences, blind to order.
ORDER_AWARE = {"ease": False, "sknn": True, "ranker": True}


@pytest.mark.parametrize("name", CLOSED)
def test_closed_form_cycle_direction_is_learned_only_from_order(name: str) -> None:
    assert sorted(ORDER_AWARE) == CLOSED
    task = cycle()
    m = absorbed(name, task.data, task.n_users, task.n_items)
    hit_rate = hit_rate_at_1(scorer(m, task.data), task.data, task.users, task.targets)
    if ORDER_AWARE[name]:
        assert hit_rate == 1.0
    else:
        assert hit_rate < 0.7


# --- the contract every model shares, whatever its family ---------------------------------------

#: Every registered model.
ALL = sorted(MODELS)


def fitted(name: str, task: Task) -> tuple[Recommender, ModelConfig, dict[str, int]]:
    """``name`` fit on ``task`` by its family's one path (gradient steps through the Trainer, or
    absorbing the events); with its config and table sizes."""
    changes = featured(name) if name in NAMES else {}
    n_types = max(2, int(task.data.types().max()) + 1)
    sizes = {"user": task.n_users, "item": task.n_items, "type": n_types, **({"feat:category": 4} if changes else {})}
    cfg = config(name, **changes) if name in NAMES else CLOSED_TINY[name]
    m = build_model(cfg, sizes)
    m.reset_parameters("random", seeded_generator(0))
    with_features(m)
    if isinstance(m, GradientRecommender):
        Trainer(m, TRAIN[name]).fit(task.data, epochs=2, generator=seeded_generator(0))
    else:
        closed_form_model(m).absorb(task.data, Context.empty(task.n_users), half_life_events=0)
    return m.eval(), cfg, sizes


@pytest.mark.parametrize("name", ALL)
def test_save_and_load_give_identical_scores(name: str, tmp_path: Path) -> None:
    task = chains()
    m, cfg, sizes = fitted(name, task)
    seen = SeenItems.empty(task.n_users).merge(task.data.user_idx, task.data.item_idx, task.n_users)
    bundle = Bundle(
        model=m,
        model_cfg=cfg,
        train_cfg=TRAIN.get(name, TrainConfig.for_model(name)),
        users=ids("u", task.n_users),
        items=ids("i", task.n_items),
        seen=seen,
        item_pop=torch.rand(task.n_items),
        pop_time_ms=123,
        types=ids("t", 2),
        features={"category": ids("c", 4)} if cfg.item_features else {},
        context=context_of(task.data, task.n_users, cfg.max_len) if cfg.sequential else None,
    )
    save_bundle(bundle, tmp_path / "m.pt")
    loaded = load_bundle(tmp_path / "m.pt")
    assert type(loaded.model) is type(m) and loaded.model_cfg == cfg and loaded.sizes() == sizes
    state = loaded.model.state_dict()
    assert set(state) == set(m.state_dict())
    for key, t in m.state_dict().items():
        assert torch.equal(state[key], t), key
    users = torch.arange(task.n_users)
    with torch.no_grad():
        assert torch.equal(bundle_scorer(loaded)(users), bundle_scorer(bundle)(users))
    if cfg.sequential:
        assert loaded.context is not None and bundle.context is not None
        for a, b in zip(dataclasses.astuple(loaded.context), dataclasses.astuple(bundle.context), strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize("name", ALL)
def test_every_model_grows_keeping_old_scores_and_refuses_to_shrink(name: str) -> None:
    history = Task(HISTORY, np.zeros(0, np.int64), np.zeros(0, np.int64), 5, 7)
    m, _, sizes = fitted(name, history)
    users = torch.tensor([1, 2, 3, 4])
    with torch.no_grad():
        before = m.score(query(m, users, HISTORY)).clone()
        m.grow({**sizes, "user": 8, "item": 10}, "random", seeded_generator(1))
        after = m.score(query(m, users, HISTORY))
    assert (m.n_users, m.n_items) == (8, 10) and after.shape == (4, 10)
    torch.testing.assert_close(after[:, :7], before, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"^cannot shrink"):
        m.grow({"item": 3}, "random", seeded_generator(1))


@pytest.mark.parametrize("name", ALL)
def test_every_model_scores_every_item_for_every_user(name: str) -> None:
    task = chains()
    m, _, _ = fitted(name, task)
    users = torch.arange(1, task.n_users)
    with torch.no_grad():
        s = m.score(query(m, users, task.data))
    assert s.shape == (task.n_users - 1, task.n_items) and s.dtype == torch.float32
    assert torch.isfinite(s[:, 1:]).all()


@pytest.mark.parametrize("name", ALL)
def test_scores_written_into_a_buffer_equal_fresh_ones_and_chunks_do_not_change_the_top(name: str) -> None:
    task = chains()
    m, _, _ = fitted(name, task)
    users = torch.arange(1, task.n_users)
    buf = torch.full((len(users), task.n_items), 7.0)
    with torch.no_grad():
        fresh = m.score(query(m, users, task.data))
        into = m.score(query(m, users, task.data), out=buf)
    torch.testing.assert_close(into, fresh, rtol=1e-6, atol=1e-6)
    assert into.data_ptr() == buf.data_ptr()  # written in place, not copied
    # top_k scores chunk after chunk into one reused buffer: the same top as one user at a time.
    fn, seen = scorer(m, task.data), SeenItems.empty(task.n_users)
    idx = np.tile(np.arange(1, task.n_users), 40)  # past the first chunk (256 users)
    chunked, vals = top_k(fn, idx, seen, k=3, chunk=5)
    alone = np.concatenate([top_k(fn, idx[i : i + 1], seen, k=3)[0] for i in range(task.n_users - 1)])
    assert np.array_equal(chunked, np.tile(alone, (40, 1)))
    assert np.isfinite(vals).all()
    # Chunks scored on two threads at once (recommend --all on a machine with cores to spare).
    threaded, threaded_vals = top_k(fn, idx, seen, k=3, chunk=5, workers=2)
    assert np.array_equal(threaded, chunked) and np.array_equal(threaded_vals, vals)


def test_sasrec_item_vectors_kept_for_serving_follow_every_change_of_its_tables() -> None:
    task = chains()
    m, _, sizes = fitted("sasrec", task)
    users = torch.arange(1, task.n_users)

    def served() -> torch.Tensor:
        with torch.no_grad():
            return m.score(query(m, users, task.data)).clone()

    def rebuilt() -> torch.Tensor:  # with gradients on, nothing kept is read
        return m.score(query(m, users, task.data)).detach()

    first = served()
    with torch.no_grad():
        assert m.item_vectors() is m.item_vectors()  # kept, not rebuilt per request
        m.item_emb[5] += 1.0  # an optimizer step writes in place like this
    assert not torch.equal(served(), first)
    torch.testing.assert_close(served(), rebuilt(), rtol=0, atol=1e-6)
    before = served()
    assert m.cfg.item_features  # a feature value change moves the item's vector too
    other = int(m.item_feat[5, 0]) % 3 + 1  # categories 1..3: a value item 5 does not have
    m.set_item_features(torch.tensor([5]), torch.tensor([[other]]))
    assert not torch.equal(served(), before)
    torch.testing.assert_close(served(), rebuilt(), rtol=0, atol=1e-6)
    m.grow({**sizes, "item": task.n_items + 3}, "random", seeded_generator(2))
    assert served().shape == (len(users), task.n_items + 3)
    torch.testing.assert_close(served(), rebuilt(), rtol=0, atol=1e-6)


def test_the_contract_is_enforced_and_every_model_is_of_one_family() -> None:
    class Empty(GradientRecommender):
        name = "empty"

    with pytest.raises(TypeError, match="abstract"):
        Empty({}, ModelConfig(name="mf"))  # type: ignore[abstract]
    for name, cls in MODELS.items():
        families = [issubclass(cls, GradientRecommender), issubclass(cls, ClosedFormRecommender)]
        assert families.count(True) == 1, name
        assert issubclass(cls, ClosedFormRecommender) == cls.CLOSED_FORM, name
    # The composite family: closed-form generators with a learned ranking on top, fit by ranker_fit.
    assert [n for n, cls in sorted(MODELS.items()) if issubclass(cls, RankingRecommender)] == ["ranker"]

    class HalfRanker(RankingRecommender):  # absorbs, but never says how it learns its ranking
        name = "half"

        def tables(self) -> dict[str, str]:
            return {}

        def score(self, query: Query) -> torch.Tensor:
            return torch.zeros(len(query["user"]), self.n_items)

        def absorb(self, data: object, prior: object, half_life_events: float) -> None:
            pass

    with pytest.raises(TypeError, match="abstract"):
        HalfRanker({}, ModelConfig(name="ranker"))  # type: ignore[abstract]
