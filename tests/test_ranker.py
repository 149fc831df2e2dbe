"""``--model ranker``: it learns only from what came after its features, survives a round trip,
refuses a damaged booster, and ranks sample data well above popularity."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from recinc_cli import api
from recinc_cli.config import ModelConfig, TrainConfig
from recinc_cli.data.context import Context
from recinc_cli.data.events import TrainData
from recinc_cli.models import item_graph
from recinc_cli.models.ranker import CONTINUE_ROUNDS, FEATURES, MAX_TREES, POOL_ROWS, ROUNDS, Ranker
from recinc_cli.serving.views import bundle_scorer
from recinc_cli.store.checksum import payload_digest
from recinc_cli.store.format import load_bundle
from recinc_cli.training.growth import grow_vocabularies
from recinc_cli.training.lifecycle import create_bundle, update_bundle
from recinc_cli.training.ranker_fit import examples
from tests.conftest import check_error, run_cli

RANKER = ModelConfig(name="ranker")


def read(path: Path) -> pl.DataFrame:
    return pl.read_parquet(path)


def test_update_learns_from_the_slice_with_features_from_before_it(pipeline) -> None:
    """The leak guard. Every training row an update adds is built from the parent's state and
    labelled by the slice; rows built after folding the slice in (the state that serves the
    *next* slice) would differ, so the test fails if the order is ever swapped."""
    base, day11 = read(pipeline.events["base"]), read(pipeline.events["day11"])
    parent, _ = create_bundle(base, RANKER, TrainConfig.for_model("ranker"))
    before = len(parent.model.pool_y)

    expected = copy.deepcopy(parent)
    grow_vocabularies(day11, expected.users, expected.items, expected.types, expected.features)
    expected.model.grow(expected.sizes(), "random", torch.Generator())
    feats, labels, groups, _ = examples(expected, day11)

    leaky = copy.deepcopy(expected)
    data = TrainData.from_events(day11, leaky.users, leaky.items, leaky.types)
    leaky.model.absorb(data, leaky.context, leaky.train_cfg.cooc_half_life_events)  # type: ignore[operator]
    _, leaky_labels, _, _ = examples(leaky.folded(data), day11)
    assert labels.sum() > 50 and leaky_labels.sum() == 0  # after folding, the slice's items are seen

    child = copy.deepcopy(parent)
    child, report = update_bundle(child, day11, child.train_cfg)
    model: Ranker = child.model  # type: ignore[assignment]
    added = slice(len(model.pool_y) - len(labels), None)
    assert len(labels) <= len(model.pool_y) <= max(POOL_ROWS, before + len(labels))  # newest groups kept
    assert torch.equal(model.pool_x[added], torch.from_numpy(feats))
    assert torch.equal(model.pool_y[added], torch.from_numpy(labels))
    assert model.pool_group[-len(groups) :].tolist() == groups.tolist()
    assert report.fit.judged is not None
    assert report.fit.judged.protocol == "next" and report.fit.judged.units > 100


def test_init_builds_each_cut_from_the_events_before_it_only(pipeline, monkeypatch) -> None:
    """The leak guard for ``init``: at every cut the model has folded exactly the events before
    its label window, none of the window and none after it."""
    import recinc_cli.training.ranker_fit as fit

    base = read(pipeline.events["base"])
    seen: list[tuple[int, int, int, int]] = []
    real = fit.examples

    def spy(bundle, window, rng=None):  # type: ignore[no-untyped-def]
        first_ms = int(window["timestamp"].dt.epoch("ms").min())
        seen.append((int(bundle.model.clock[0]), bundle.pop_clock, bundle.watermark_ms, first_ms))
        return real(bundle, window, rng)

    monkeypatch.setattr(fit, "examples", spy)
    monkeypatch.setattr(fit, "POOL_ROWS", 10**9)  # every cut is built
    bundle, report = create_bundle(base, RANKER, TrainConfig.for_model("ranker"))
    cuts = [round(base.height * f) for f in fit.INIT_CUTS]
    assert [s[0] for s in seen] == cuts == [s[1] for s in seen]
    assert all(watermark <= first for _, _, watermark, first in seen)
    assert int(bundle.model.clock[0]) == base.height and report.fit.extra["pool_groups"] > 0


@pytest.fixture(scope="module")
def lineage(pipeline, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Ranker checkpoints of the sample data (the default model): 10 = init on days 1-10, 11-13 =
    the updates."""
    out = tmp_path_factory.mktemp("ranker")
    ckpt = {10: out / "r10.pt"}
    api.init(pipeline.events["base"], ckpt[10])  # the default model
    assert ModelConfig().name == "ranker" and load_bundle(ckpt[10]).model_cfg.name == "ranker"
    for d in (11, 12, 13):
        ckpt[d] = out / f"r{d}.pt"
        info = api.update(ckpt[d - 1], pipeline.events[f"day{d}"], ckpt[d])
        assert info["pool_rows"] > 0 and info["valid_ndcg"] is not None
    return ckpt


def trees(path: Path) -> int:
    return load_bundle(path).model._parse_booster().num_trees()  # type: ignore[operator]


def test_update_continues_the_booster_and_refits_past_max_trees(
    lineage: dict[int, Path], pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``init`` fits ROUNDS trees; each update adds CONTINUE_ROUNDS to the stored ones (the old
    trees stay as they were: same scores on the old trees' part); one that would pass MAX_TREES
    is refit from scratch."""
    counts = {d: trees(lineage[d]) for d in (10, 11, 12, 13)}
    assert list(counts.values()) == [ROUNDS + CONTINUE_ROUNDS * k for k in range(4)]
    parent, child = load_bundle(lineage[12]).model, load_bundle(lineage[13]).model
    x = parent.pool_x.numpy()
    old = parent._parse_booster().predict(x)  # type: ignore[attr-defined]
    head = child._parse_booster().predict(x, num_iteration=counts[12])  # type: ignore[attr-defined]
    np.testing.assert_allclose(head, old, rtol=1e-6, atol=1e-9)

    # A lineage that has reached the cap (lowered to day 13's trees, as 17 updates would reach it).
    import recinc_cli.models.ranker as ranker_module

    bundle = load_bundle(lineage[13])
    monkeypatch.setattr(ranker_module, "MAX_TREES", counts[13])
    bundle, _ = update_bundle(bundle, read(pipeline.events["day14"]), bundle.train_cfg)
    assert bundle.model._parse_booster().num_trees() == ROUNDS  # type: ignore[operator]
    assert MAX_TREES == 3 * ROUNDS


def test_checkpoint_round_trip_gives_identical_rankings(lineage: dict[int, Path]) -> None:
    a, b = load_bundle(lineage[11]), load_bundle(lineage[11])
    booster = a.model._parse_booster()  # type: ignore[operator]
    assert booster is not None and booster.num_feature() == len(FEATURES)
    users = torch.arange(1, len(a.users))
    with torch.no_grad():
        assert torch.equal(bundle_scorer(a)(users), bundle_scorer(b)(users))
    first = api.recommend(lineage[11], k=10)
    again = api.recommend(lineage[11], k=10)
    assert first.equals(again) and first.height == 10 * (len(a.users) - 1)


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        ("truncated", "its text does not match its sha256"),
        ("rehashed", "not a LightGBM model text"),
    ],
)
def test_a_damaged_booster_exits_4(lineage: dict[int, Path], tmp_path: Path, damage: str, why: str) -> None:
    """A consistent file (checksum recomputed) whose booster is cut short: LightGBM itself
    would abort the process on such text, so recinc must catch it first."""
    bad = tmp_path / "bad.pt"
    raw = torch.load(lineage[10], weights_only=True)
    raw.pop("checksum")
    text = bytes(raw["weights"]["booster"].numpy())[:1000]
    raw["weights"]["booster"] = torch.frombuffer(bytearray(text), dtype=torch.uint8).clone()
    if damage == "rehashed":
        digest = hashlib.sha256(text).digest()
        raw["weights"]["booster_sha256"] = torch.frombuffer(bytearray(digest), dtype=torch.uint8).clone()
    raw["checksum"] = payload_digest(raw)
    torch.save(raw, bad)
    result = run_cli("recommend", bad, "--users", "u1")
    check_error(result, 4, f"{bad}: damaged or inconsistent checkpoint (the ranker's booster does not parse ({why}))")


def test_ranker_beats_popularity_on_day14(pipeline, lineage: dict[int, Path]) -> None:
    result = api.evaluate(lineage[13], pipeline.events["day14"], k=10)
    # Measured 0.227 vs 0.076 (3.0x; mf at defaults 0.153) when this test was written.
    assert result["model"]["ndcg"] > 2.0 * result["popular"]["ndcg"], result


@pytest.mark.parametrize("bad", [0, -3])
def test_candidates_must_be_positive(bad: int) -> None:
    with pytest.raises(Exception, match=rf"^--candidates must be a positive integer \(got {bad}\)$"):
        ModelConfig(name="ranker", candidates=bad)


def test_rank_features_names_the_groups_it_takes(pipeline, tmp_path: Path) -> None:
    result = run_cli(
        "init", pipeline.events["base"], "-o", tmp_path / "r.pt", "--model", "ranker", "--rank-features", "user,colour"
    )
    check_error(
        result, 2, "--rank-features takes one or more of generators, popularity, item_age, user (got user,colour)"
    )
    assert not (tmp_path / "r.pt").exists()


def test_a_left_out_feature_group_is_missing_for_the_booster() -> None:
    cfg = ModelConfig(name="ranker", rank_features=("generators", "user"))
    m = Ranker({"user": 3, "item": 5}, cfg)
    d = TrainData(np.array([1, 1, 2, 2, 2]), np.array([1, 2, 1, 2, 3]), np.ones(5, np.float32), np.arange(5))
    m.absorb(d, Context.empty(3), half_life_events=100)
    _, _, feats = m.candidates(np.array([[1, 2]]), np.array([1]))
    groups = np.array(list(FEATURES.values()))
    assert len(feats) and np.isnan(feats[:, np.isin(groups, ["popularity", "item_age"])]).all()
    assert not np.isnan(feats[:, groups == "user"][:, :2]).any()  # events, idle: known user


def test_no_dense_copy_of_the_matrix_above_the_ease_limit() -> None:
    """Above EASE's 10,000 items the EASE generator is missing, and its dense (n x n) matrix is
    never built: at Taobao's 55k items that copy alone was 12 GB."""
    import tracemalloc

    n = 12_001
    model = Ranker({"user": 3, "item": n}, RANKER)
    d = TrainData(np.array([1, 1, 2, 2]), np.array([1, 2, 1, 3]), np.ones(4, np.float32), np.arange(4))
    model.absorb(d, Context.empty(3), half_life_events=100)
    tracemalloc.start()
    try:
        assert model._derived("ease") is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20  # a dense float32 copy would be 549 MiB


def test_a_catalogue_past_ease_inits_updates_and_serves_through_the_cli(pipeline, tmp_path, monkeypatch) -> None:
    """Above EASE's item limit the ease feature is missing (NaN) in every training row. The
    scale benchmark found `recinc init` refusing that as a broken fit (exit 5) on a 20k-item
    log; NaN there is a missing value, inf still is an error."""
    import recinc_cli.models.ranker as ranker_module
    from recinc_cli.errors import TrainingError
    from recinc_cli.training.lifecycle import check_finite

    monkeypatch.setattr(ranker_module, "EASE_MAX_ITEMS", 5)  # the sample's 762 items count as past it
    m0, m1 = tmp_path / "r0.pt", tmp_path / "r1.pt"
    init = run_cli("init", pipeline.events["base"], "-o", m0, "--model", "ranker")
    assert init.exit_code == 0, init.stderr
    update = run_cli("update", m0, pipeline.events["day11"], "-o", m1)
    assert update.exit_code == 0, update.stderr
    assert run_cli("recommend", m1, "--users", "u00001", "-k", "5").exit_code == 0
    bundle = load_bundle(m1)
    pool = bundle.model.pool_x  # type: ignore[union-attr]
    ease = list(FEATURES).index("score_ease")
    assert bool(pool[:, ease : ease + 2].isnan().all()) and bool(torch.isfinite(pool[:, :ease]).all())
    pool[0, 0] = float("inf")
    with pytest.raises(TrainingError, match="pool_x holds NaN/inf"):
        check_finite(bundle)


def _random_ranker(n_users: int = 60, n_items: int = 40, events: int = 600, neighbors: int = 100) -> Ranker:
    rng = np.random.default_rng(1)
    cfg = ModelConfig(name="ranker", candidates=7, max_len=12, neighbors=neighbors)
    m = Ranker({"user": n_users, "item": n_items}, cfg)
    u, i = rng.integers(1, n_users, events), rng.integers(1, n_items - 3, events)  # the last 3 items: unseen
    m.absorb(TrainData(u, i, np.ones(events, np.float32), np.arange(events)), Context.empty(n_users), 300)
    return m


def test_candidates_are_each_generators_top_k_unseen_unblocked_items() -> None:
    """Against the dense scores: every candidate is a known item outside the user's context;
    a generator's rank feature is its position in that generator's top k (k = absent), the
    ranked items are its k best (ties aside) and their order follows its scores."""
    m = _random_ranker()
    k = m.cfg.candidates
    seq = np.array([[0, 0, 3, 5, 8], [1, 2, 4, 6, 7], [0, 0, 0, 0, 9]])
    rows, items, feats = m.candidates(seq, np.array([1, 2, 3]))
    assert len(rows) and np.all(np.diff(rows * m.n_items + items) > 0)  # sorted, unique
    blocked = np.zeros((3, m.n_items), bool)
    np.put_along_axis(blocked, seq, True, 1)
    blocked[:, 0] = True
    blocked[:, m.item_first.numpy() < 0] = True
    assert not blocked[rows, items].any()
    gens = m._generator_scores(item_graph.binary_rows(seq, m.n_items), seq)
    names = list(FEATURES)
    for g, s in gens.items():
        assert s is not None
        s = s.numpy()
        rank = np.expm1(feats[:, names.index(f"rank_{g}")])
        for r in range(3):
            mine = rows == r
            listed = mine & (rank < k - 0.5)
            assert listed.sum() == min(k, (~blocked[r]).sum())
            scores = s[r, items[listed]]
            assert np.all(np.diff(scores[np.argsort(rank[listed])]) <= 1e-6)  # best first
            others = np.delete(np.arange(m.n_items), items[listed])
            others = others[~blocked[r, others]]
            assert not len(others) or scores.min() >= s[r, others].max() - 1e-6


def test_a_missing_generator_has_missing_scores_and_ranks(monkeypatch) -> None:
    import recinc_cli.models.ranker as ranker_module

    monkeypatch.setattr(ranker_module, "EASE_MAX_ITEMS", 5)
    m = _random_ranker()
    _, _, feats = m.candidates(np.array([[0, 3, 5]]), np.array([1]))
    names = list(FEATURES)
    assert np.isnan(feats[:, [names.index("score_ease"), names.index("rank_ease")]]).all()
    assert not np.isnan(feats[:, names.index("rank_cos")]).any()


def test_absorb_in_batches_of_pairs_gives_the_same_matrix(monkeypatch) -> None:
    """A large slice is folded in batches of users bounded by _PAIR_BUDGET pairs: same counts."""
    import recinc_cli.models.ranker as ranker_module

    whole = _random_ranker()._gram().toarray()
    monkeypatch.setattr(ranker_module, "_PAIR_BUDGET", 50)
    batched = _random_ranker()._gram().toarray()
    assert whole.sum() > 1000 and np.allclose(whole, batched, atol=1e-5)


def test_examples_are_drawn_for_at_most_example_users(pipeline, monkeypatch) -> None:
    import recinc_cli.training.ranker_fit as fit

    parent, _ = create_bundle(read(pipeline.events["base"]), RANKER, TrainConfig.for_model("ranker"))
    day11 = read(pipeline.events["day11"])
    grow_vocabularies(day11, parent.users, parent.items, parent.types, parent.features)
    parent.model.grow(parent.sizes(), "random", torch.Generator())
    _, _, groups, ndcg = examples(parent, day11)
    assert len(ndcg) > 40
    monkeypatch.setattr(fit, "EXAMPLE_USERS", 40)
    _, _, few, few_ndcg = examples(parent, day11, np.random.default_rng(3))
    assert len(few_ndcg) == 40 and 0 < len(few) <= 40 < len(groups)


def test_init_skips_the_cuts_whose_rows_the_pool_would_push_out(pipeline, monkeypatch) -> None:
    """With a pool of a few cuts' rows, init builds the first cut (to learn a cut's size), then
    only the newest cuts: the older ones' rows would be dropped unread."""
    import recinc_cli.training.ranker_fit as fit

    base = read(pipeline.events["base"])
    built: list[int] = []
    real = fit.examples

    def spy(bundle, window, rng=None):  # type: ignore[no-untyped-def]
        built.append(int(bundle.model.clock[0]))
        out = real(bundle, window, rng)
        sizes.append(len(out[1]))
        return out

    sizes: list[int] = []
    monkeypatch.setattr(fit, "examples", spy)
    monkeypatch.setattr(fit, "POOL_ROWS", 3000)
    create_bundle(base, RANKER, TrainConfig.for_model("ranker"))
    cuts = [round(base.height * f) for f in fit.INIT_CUTS]
    assert 2 <= len(built) < len(cuts) and built[0] == cuts[0]
    assert built[1:] == cuts[len(cuts) - len(built) + 1 :]  # the newest ones
    assert (len(built) - 2) * sizes[1] < 3000  # no built cut was pushed out by the estimate


def test_the_matrix_stops_growing_with_the_log(monkeypatch) -> None:
    """Past its entry budget the co-occurrence matrix is pruned to each item's strongest
    partners (never below ``neighbors`` of them): bounded, and still telling taste apart."""
    import recinc_cli.models.ranker as ranker_module

    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(1, 200), 8)
    items = 1 + 10 * (users % 4) + rng.integers(0, 10, len(users))  # 4 tastes of 10 items
    stray = rng.random(len(items)) < 0.15
    items[stray] = rng.integers(1, 41, stray.sum())  # and some of anything
    data = TrainData(users, items, np.ones(len(users), np.float32), np.arange(len(users)))

    def fit() -> Ranker:
        m = Ranker({"user": 200, "item": 41}, ModelConfig(name="ranker", candidates=5, max_len=12, neighbors=5))
        m.absorb(data, Context.empty(200), 400)
        return m

    full = fit()
    monkeypatch.setattr(ranker_module, "_GRAM_ENTRIES", 16)  # per_row = max(neighbors, 0) = 5
    small = fit()
    assert len(small.g_val) <= 2 * 41 * 5 + 41 < len(full.g_val)  # kept: 2 x neighbors an item + the diagonal
    for taste in range(4):
        seq = np.array([[1 + 10 * taste, 2 + 10 * taste]])
        _, cand, feats = small.candidates(seq, np.array([taste + 4]))
        rank_cos = feats[:, list(FEATURES).index("rank_cos")]
        assert set(((cand[rank_cos < np.log1p(5)] - 1) // 10).tolist()) == {taste}


def test_the_dense_generators_are_in_c_order(lineage: dict[int, Path]) -> None:
    """scipy's ``sparse @ dense`` copies a dense operand that is not in C order, for every block
    of users: EASE's (n, n) weights came out of the solve in Fortran order, 140 ms of each
    one-user request on ml-1m (3,545 items)."""
    model: Ranker = load_bundle(lineage[11]).model  # type: ignore[assignment]
    for key in ("svd", "ease"):
        assert model._derived(key).flags.c_contiguous, key


def test_pure_svd_factors_are_kept_and_older_checkpoints_solve_them(lineage: dict[int, Path], tmp_path: Path) -> None:
    """The factors travel in the checkpoint (no solve on load); a checkpoint from before 0.10,
    without them, loads and solves them from the matrix on first use."""
    from recinc_cli.models import item_graph

    bundle = load_bundle(lineage[11])
    model: Ranker = bundle.model  # type: ignore[assignment]
    assert model.svd_v.shape == (model.n_items, item_graph.SVD_RANK)
    assert model._derived("svd") is not None and np.array_equal(model._derived("svd"), model.svd_v.numpy())
    raw = torch.load(lineage[11], weights_only=True)
    del raw["weights"]["svd_v"]
    old = Ranker(model.sizes, model.cfg)
    old.load_state_dict(raw["weights"])
    assert old.svd_v.shape == (model.n_items, 0)
    assert np.array_equal(old._derived("svd"), item_graph.svd_factors(old._gram()))
