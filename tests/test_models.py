"""The model contract, run against every model in the registry.

Tiny data built in code with a known right answer: two taste groups of users, each user holding
out two items of their group; a working model ranks exactly those two first.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from recinc_cli.config import ModelConfig, TrainConfig
from recinc_cli.data import TrainData
from recinc_cli.errors import UsageError
from recinc_cli.models import MODELS, build_model
from recinc_cli.models.base import Recommender
from recinc_cli.recommend import top_k
from recinc_cli.seen import SeenItems
from recinc_cli.train import Trainer, seeded_generator

NAMES = sorted(MODELS)


def make(name: str, n_users: int = 5, n_items: int = 7, seed: int = 0, dim: int = 4) -> Recommender:
    m = build_model(ModelConfig(name=name, dim=dim), n_users, n_items)
    m.reset_parameters("random", seeded_generator(seed))
    return m


def test_registry_and_unknown_model() -> None:
    assert NAMES == ["mf"]
    with pytest.raises(UsageError, match="--model 'nope' is unknown; choose one of mf"):
        build_model(ModelConfig(name="nope"), 2, 2)


@pytest.mark.parametrize("name", NAMES)
def test_score_shape_dtype_and_padding_rows(name: str) -> None:
    m = make(name)
    s = m.score(torch.tensor([1, 2, 4]))
    assert s.shape == (3, 7) and s.dtype == torch.float32
    for pname in m.TABLES:
        p = m.get_parameter(pname)
        assert torch.count_nonzero(p[0]) == 0, pname
        if p.dim() == 2:
            assert torch.count_nonzero(p[1:]) > 0, pname


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_parameters(name: str) -> None:
    a, b, c = make(name, seed=3), make(name, seed=3), make(name, seed=4)
    for (n, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(pa, pb), n
        if pa.dim() == 2:
            assert not torch.equal(pa, pc), n


@pytest.mark.parametrize("name", NAMES)
def test_grow_appends_rows_and_keeps_old_ones(name: str) -> None:
    m = make(name, n_users=5, n_items=7)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    old_users = torch.tensor([1, 2, 3, 4])
    old_scores = m.score(old_users).detach().clone()

    m.grow(8, 10, "random", seeded_generator(1))

    assert (m.n_users, m.n_items) == (8, 10)
    sizes = {"user": 8, "item": 10}
    for n, p in m.named_parameters():
        old = before[n]
        if n in m.TABLES:
            assert p.shape == (sizes[m.TABLES[n]], *old.shape[1:])
            assert torch.equal(p[: old.shape[0]], old), n
        else:
            assert torch.equal(p, old), n
        assert isinstance(p, torch.nn.Parameter)
    # Old users score old items exactly as before; the grown columns come after them.
    new_scores = m.score(old_users)
    assert new_scores.shape == (4, 10)
    assert torch.equal(new_scores[:, :7], old_scores)
    # The registered parameters are the grown tensors (what an optimizer will see).
    assert {n: tuple(p.shape) for n, p in m.named_parameters()} == {n: tuple(m.get_parameter(n).shape) for n in before}


@pytest.mark.parametrize("name", NAMES)
def test_grow_with_zero_init_leaves_new_users_untrained(name: str) -> None:
    m = make(name, n_users=3, n_items=4)
    m.grow(5, 4, "zero", seeded_generator(1))
    for n, axis in m.TABLES.items():
        if axis == "user":
            assert torch.count_nonzero(m.get_parameter(n)[3:]) == 0


@pytest.mark.parametrize("name", NAMES)
def test_grow_refuses_to_shrink(name: str) -> None:
    m = make(name, n_users=5, n_items=7)
    with pytest.raises(ValueError, match="cannot shrink"):
        m.grow(4, 7, "random", seeded_generator(1))


N_GROUP_USERS = 30  # 15 per group


def two_groups() -> tuple[TrainData, dict[int, set[int]]]:
    """Two taste groups: users 1-15 use items 1-6, users 16-30 items 7-12.

    Each user saw 4 items of their group and never saw the other 2 (held[u]); every pair of
    held-out items occurs once, so each item is seen equally often and popularity says nothing.
    The right answer: a user's two best unseen items are their own group's held-out pair.
    """
    users, items, held = [], [], {}
    u = 0
    for g in range(2):
        group = range(1 + 6 * g, 7 + 6 * g)
        for pair in itertools.combinations(group, 2):
            u += 1
            held[u] = set(pair)
            users += [u] * 4
            items += [i for i in group if i not in pair]
    n = len(users)
    data = TrainData(np.array(users), np.array(items), np.ones(n, np.float32), np.arange(n, dtype=np.int64))
    return data, held


def held_out_ranked_first(m: Recommender, data: TrainData, held: dict[int, set[int]]) -> bool:
    seen = SeenItems.empty(N_GROUP_USERS + 1).merge(data.user_idx, data.item_idx, n_users=N_GROUP_USERS + 1)
    top, _ = top_k(m.score, np.arange(1, N_GROUP_USERS + 1), seen, k=2)
    return all(set(top[u - 1].tolist()) == held[u] for u in held)


# dim=1: one latent axis is enough for the groups but too little to memorise who skipped what,
# so the model has to generalise (with more dimensions it can fit each user's exact history).
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", [0, 1])
def test_learns_the_two_group_structure(name: str, seed: int) -> None:
    data, held = two_groups()
    m = make(name, n_users=N_GROUP_USERS + 1, n_items=13, seed=seed, dim=1)
    cfg = TrainConfig(lr=0.05, batch_size=16, l2=0.0)
    losses = Trainer(m, cfg).fit(data, epochs=60, generator=seeded_generator(seed))
    # Near-uniform start over the 12 real items; the loss can never go below log(4), each user
    # spreading their mass over 4 seen items (a batch mean may dip a little below).
    assert abs(losses[0] - math.log(12)) < 0.05
    assert math.log(4) - 0.05 < losses[-1] < losses[0] - 0.5
    assert held_out_ranked_first(m, data, held)


@pytest.mark.parametrize("name", NAMES)
def test_sampled_negatives_learn_it_too(name: str) -> None:
    data, held = two_groups()
    m = make(name, n_users=N_GROUP_USERS + 1, n_items=13, dim=1)
    # A catalogue above full_softmax_max_items trains against sampled negatives instead.
    cfg = TrainConfig(lr=0.05, batch_size=16, l2=0.0, full_softmax_max_items=4, n_negatives=8)
    batch = next(iter(m.batches(data, cfg, seeded_generator(0))))
    assert batch["neg"].shape == (8,) and int(batch["neg"].min()) >= 1
    losses = Trainer(m, cfg).fit(data, epochs=60, generator=seeded_generator(0))
    assert losses[-1] < losses[0] - 0.5
    assert held_out_ranked_first(m, data, held)


@pytest.mark.parametrize("name", NAMES)
def test_training_is_reproducible(name: str) -> None:
    data, _ = two_groups()
    runs = []
    for _ in range(2):
        m = make(name, n_users=N_GROUP_USERS + 1, n_items=13)
        losses = Trainer(m, TrainConfig(lr=0.05, batch_size=5)).fit(data, epochs=3, generator=seeded_generator(11))
        runs.append((losses, [p.detach().clone() for p in m.parameters()]))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1], strict=True):
        assert torch.equal(a, b)


def test_model_names_known_to_config_match_the_registry() -> None:
    from recinc_cli.config import MODEL_NAMES
    from recinc_cli.models import MODELS

    assert sorted(MODEL_NAMES) == sorted(MODELS)
