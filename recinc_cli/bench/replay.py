"""``recinc replay``: the streaming (test-then-train) benchmark of PROTOCOL.md on any log.

Sort by time (stable), base = the first ``base_fraction`` of the events, the rest cut into
``n_slices`` slices of equal event count. A model is initialised on the base; then for each
slice s every strategy is evaluated on slice s before it sees it, then updated with it:

- ``frozen``: the base model, never updated;
- ``incremental``: ``update`` with each slice (the nightly job);
- ``retrain``: ``init`` from scratch on the base + slices 1..s;
- ``popular``: the most popular items of the latest slice (for slice 1, the last slice-sized
  window of the base).

Every strategy is scored on the same users and ground truth, taken from the log, not from a
model: eligible users have events before slice s and in it; their truth is the distinct items
of slice s they never had before; the full catalogue known before s minus each user's history is
ranked. A user a model does not know gets that model's popularity fallback, as ``recommend``
would serve. Update seconds are the in-process wall time of ``update`` / ``init`` (no process
start-up, no file I/O). The update after the last slice is not run: nothing would evaluate it.

How much to trust a difference: for each model strategy, the paired bootstrap interval of its
NDCG@k minus latest-slice popularity's on the same users (:mod:`recinc_cli.evaluation.significance`), per
slice and pooled over every (user, slice) pair; popularity is scored for this even when
``popular`` is not among the strategies (it trains nothing). ``warnings`` name the slices with
fewer than 100 users and the strategies whose pooled lift is within the noise.

>>> STRATEGIES, DEFAULT_REPLAY_STRATEGIES
(('frozen', 'incremental', 'retrain', 'popular'), ('frozen', 'incremental', 'popular'))
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from recinc_cli.config import DEFAULT_REPLAY_STRATEGIES, ModelConfig, TrainConfig
from recinc_cli.data.seen import SeenItems
from recinc_cli.data.vocab import Vocab
from recinc_cli.errors import BadInputError, UsageError
from recinc_cli.evaluation.metrics import SLICE_METRICS, SliceScore
from recinc_cli.evaluation.metrics import slice_truth as truth_of
from recinc_cli.evaluation.significance import MIN_USERS, lift_evidence, thin_warning
from recinc_cli.progress import NullReporter, Reporter
from recinc_cli.serving.recommend import ranked_unseen, top_k
from recinc_cli.serving.views import bundle_scorer, popular_scorer

if TYPE_CHECKING:
    from recinc_cli.store.bundle import Bundle

STRATEGIES: tuple[str, ...] = ("frozen", "incremental", "retrain", "popular")
METRICS: tuple[str, ...] = SLICE_METRICS
#: callback(done, total, what): one step (a strategy on a slice) is finished.
StepFn = Callable[[int, int, str], None]
#: callback(report): the base model or a slice is finished; the report so far (``complete`` False
#: until the last slice), so a caller can save it and a killed run keeps what finished.
SliceFn = Callable[[dict[str, Any]], None]


def cut_slices(events: pl.DataFrame, n_slices: int, base_fraction: float) -> list[pl.DataFrame]:
    """Base and ``n_slices`` equal-count slices of a time-sorted log (PROTOCOL.md step 2).

    >>> import datetime as dt
    >>> ev = pl.DataFrame({"timestamp": [dt.datetime(2026, 1, d) for d in range(1, 11)]})
    >>> [p.height for p in cut_slices(ev, 5, 0.5)]
    [5, 1, 1, 1, 1, 1]
    """
    n = events.height
    base_end = int(n * base_fraction)
    bounds = [base_end + round(i * (n - base_end) / n_slices) for i in range(n_slices + 1)]
    return [events[:base_end]] + [events[bounds[i] : bounds[i + 1]] for i in range(n_slices)]


@dataclass(frozen=True)
class SliceTruth:
    """What every strategy is scored on for one slice, in raw ids.

    ``users`` (U,) eligible user ids; ``truth_user`` / ``truth_item`` (m,) their new items;
    ``history`` every (user_id, item_id) before the slice, for masking.
    """

    users: pl.Series
    truth_user: pl.Series
    truth_item: pl.Series
    history: pl.DataFrame


def slice_truth(before: pl.DataFrame, test: pl.DataFrame) -> SliceTruth:
    """Eligible users and ground truth of ``test`` given every event ``before`` it.

    The truth is :func:`~recinc_cli.evaluation.metrics.slice_truth`'s (what ``evaluate`` scores)
    under the log's own vocabularies instead of a model's: eligible users have events before the
    slice, their truth is the slice's distinct items they never had. Users are ordered by their
    first new item in ``test``.
    """
    history = before.select("user_id", "item_id").unique()
    users, items = Vocab.empty(), Vocab.empty()
    users.extend(before["user_id"].unique(maintain_order=True))
    items.extend(pl.concat([before["item_id"], test["item_id"]]).unique(maintain_order=True))
    n = len(users)
    had = SeenItems.empty(n).merge(users.lookup(history["user_id"]), items.lookup(history["item_id"]), n)
    eligible, row, item = truth_of(test, users, items, had.contains)
    # Order users as their first new item appears in the slice (the bootstrap pairs by position).
    t_user, t_item = users.lookup(test["user_id"]), items.lookup(test["item_id"])
    fresh = np.flatnonzero((t_user > 0) & ~had.contains(t_user, t_item))
    first = np.full(n, len(t_user), dtype=np.int64)
    np.minimum.at(first, t_user[fresh], fresh)
    by_appearance = np.argsort(first[eligible], kind="stable")
    user_ids = pl.Series(users.ids, dtype=test["user_id"].dtype)
    item_ids = pl.Series(items.ids, dtype=test["item_id"].dtype)
    return SliceTruth(
        user_ids.gather(eligible[by_appearance]), user_ids.gather(eligible[row]), item_ids.gather(item), history
    )


def score_bundle(bundle: Bundle, truth: SliceTruth, k: int) -> SliceScore:
    """Metrics@k of ``bundle`` on ``truth``; users it does not know get its popularity fallback."""
    u_idx = bundle.users.lookup(truth.users)
    h_u, h_i = bundle.users.lookup(truth.history["user_id"]), bundle.items.lookup(truth.history["item_id"])
    ok = (h_u > 0) & (h_i > 0)
    seen = SeenItems.empty(len(bundle.users)).merge(h_u[ok], h_i[ok], len(bundle.users))
    by_model = u_idx > 0
    if bundle.context is not None:
        by_model &= bundle.context.lengths()[u_idx] > 0
    top = np.zeros((len(u_idx), k), dtype=np.int64)
    if by_model.any():
        top[by_model] = top_k(bundle_scorer(bundle), u_idx[by_model], seen, k)[0]
    if (~by_model).any():
        # Unknown users have no seen row: rank once for an empty history and mask by hand.
        top[~by_model] = _popular_top(bundle, truth, ~by_model, k)
    return _metrics(top, truth, bundle.items, k)


def _popular_top(bundle: Bundle, truth: SliceTruth, rows: np.ndarray, k: int) -> np.ndarray:
    scores = popular_scorer(bundle)(np.zeros(1, np.int64))[0].clone()  # type: ignore[arg-type]
    scores[0] = float("-inf")
    return _masked_top(scores.numpy(), truth, rows, bundle.items, k)


def popular_of(window: pl.DataFrame, before: pl.DataFrame, truth: SliceTruth, k: int) -> SliceScore:
    """Metrics@k of ranking the catalogue known ``before`` by item count in ``window``."""
    items = Vocab.empty()
    items.extend(before["item_id"].unique(maintain_order=True))
    counts = np.bincount(items.lookup(window["item_id"]), minlength=len(items)).astype(np.float64)
    counts[0] = -np.inf
    top = _masked_top(counts, truth, np.ones(len(truth.users), bool), items, k)
    return _metrics(top, truth, items, k)


def _masked_top(scores: np.ndarray, truth: SliceTruth, rows: np.ndarray, items: Vocab, k: int) -> np.ndarray:
    """Top-k of one score vector (stable tie order) for the users at ``rows``, minus each one's history."""
    order = np.argsort(-scores, kind="stable")
    order = order[np.isfinite(scores[order])]
    users = pl.DataFrame({"user_id": truth.users.filter(pl.Series(rows))}).with_row_index("row", offset=1)
    hist = truth.history.join(users, on="user_id")
    n = users.height + 1
    seen = SeenItems.empty(n).merge(hist["row"].to_numpy().astype(np.int64), items.lookup(hist["item_id"]), n)
    return ranked_unseen(order, seen, np.arange(1, n, dtype=np.int64), k)


def _metrics(top: np.ndarray, truth: SliceTruth, items: Vocab, k: int) -> SliceScore:
    row = pl.DataFrame({"user_id": truth.users, "row": np.arange(len(truth.users))})
    rows = pl.DataFrame({"user_id": truth.truth_user}).join(row, on="user_id", how="left")["row"].to_numpy()
    return SliceScore.of(top, rows, items.lookup(truth.truth_item), k)


#: ``replay --protocol`` choices.
REPLAY_PROTOCOLS: tuple[str, ...] = ("next", "session")


def check_options(strategies: Sequence[str], n_slices: int, base_fraction: float, protocol: str = "next") -> None:
    """Raise :class:`UsageError` for an unknown strategy or protocol, or an impossible cut."""
    if protocol not in REPLAY_PROTOCOLS:
        raise UsageError(f"--protocol must be one of {', '.join(REPLAY_PROTOCOLS)} (got {protocol!r})")
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or not strategies:
        raise UsageError(f"--strategies: choose from {', '.join(STRATEGIES)} (got {', '.join(strategies) or 'none'})")
    if n_slices < 1 or not 0 < base_fraction < 1:
        raise UsageError("--slices must be at least 1 and --base-fraction in (0, 1)")


def replay(
    events: pl.DataFrame,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    strategies: Sequence[str] = DEFAULT_REPLAY_STRATEGIES,
    n_slices: int = 5,
    base_fraction: float = 0.5,
    k: int = 10,
    update_cfg: TrainConfig | None = None,
    reporter: Reporter | None = None,
    on_step: StepFn | None = None,
    on_slice: SliceFn | None = None,
    protocol: str = "next",
) -> dict[str, Any]:
    """Run the streaming protocol on the time-sorted ``events``; return the report dict.

    ``protocol``: ``next`` (next-slice, above) or ``session`` (each slice's sessions scored
    click by click: :mod:`recinc_cli.bench.replay_sessions`; repeats per ``update_cfg.repeats``).

    ``train_cfg`` trains the base model (and each retrain); ``update_cfg`` the incremental
    updates (default: ``train_cfg.for_update()``). ``on_slice`` receives the report
    (:meth:`_Run.report`) after the base fit and after each slice.
    """
    parts = _cut(events, strategies, n_slices, base_fraction, protocol)
    reporter = reporter or NullReporter()
    update_cfg = update_cfg or train_cfg.for_update()
    models = [s for s in strategies if s != "popular"]
    run = _Run(strategies, n_slices)
    header = _header(events.height, k, model_cfg, train_cfg, update_cfg, protocol, parts)
    step = _Steps(n_slices * len(strategies) + (1 if models else 0), on_step)
    bundles: dict[str, Bundle] = {}
    if models:
        bundles, header["base_seconds"] = _base_models(models, parts[0], model_cfg, train_cfg, reporter)
        step("base model")
    if on_slice:
        on_slice(run.report(header))
    for s in range(1, n_slices + 1):
        before, test = pl.concat(parts[:s]), parts[s]
        window = parts[s - 1] if s > 1 else parts[0][-test.height :]
        popular, score = _scoring(protocol, before, test, window, k, model_cfg.max_len, update_cfg.repeats)
        run.add_baseline(popular)
        for name in strategies:
            if name == "popular":
                run.add(name, popular, popular, 0.0)
            else:
                scored = score(bundles[name])
                scored.metrics["pop_weight"] = bundles[name].pop_weight  # the weight it was scored with
                scored.metrics["own_ndcg"] = _own_ndcg(bundles[name], scored, score)
                start, train = time.perf_counter(), s < n_slices  # nothing would evaluate the last update
                if train:
                    cfgs = (model_cfg, train_cfg, update_cfg)
                    bundles[name] = _next(name, bundles[name], parts[: s + 1], *cfgs, reporter)
                run.add(name, scored, popular, time.perf_counter() - start if train and name != "frozen" else 0.0)
            step(f"slice {s}: {name}")
        if on_slice:
            on_slice(run.report(header))
    return run.report(header)


def _cut(
    events: pl.DataFrame, strategies: Sequence[str], n_slices: int, base_fraction: float, protocol: str
) -> list[pl.DataFrame]:
    """The base and slices of ``events``, after checking the options."""
    check_options(strategies, n_slices, base_fraction, protocol)
    parts = cut_slices(events, n_slices, base_fraction)
    if min(p.height for p in parts) == 0:
        raise BadInputError(f"{events.height} events are too few for a base and {n_slices} slices; use --slices")
    return parts


class _Steps:
    """Counts finished steps (a strategy on a slice, the base model) for ``on_step``."""

    def __init__(self, total: int, on_step: StepFn | None) -> None:
        self.total, self.done, self.on_step = total, 0, on_step

    def __call__(self, what: str) -> None:
        self.done += 1
        if self.on_step:
            self.on_step(self.done, self.total, what)


def _header(
    n_events: int,
    k: int,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    update_cfg: TrainConfig,
    protocol: str,
    parts: list[pl.DataFrame],
) -> dict[str, Any]:
    """What the report says of the run before any result: the log, the configs, the slices."""
    return {
        "events": n_events,
        "k": k,
        "model": model_cfg.name,
        "model_config": model_cfg.to_dict(),
        "train_config": train_cfg.to_dict(),
        "update_config": update_cfg.to_dict(),
        "base_seconds": 0.0,
        "protocol": protocol,
        "slices": [_describe(p) for p in parts],
    }


def _base_models(
    models: list[str], base: pl.DataFrame, model_cfg: ModelConfig, train_cfg: TrainConfig, reporter: Reporter
) -> tuple[dict[str, Bundle], float]:
    """One model trained on ``base``, a copy per model strategy, and the seconds it took."""
    from recinc_cli.training.lifecycle import create_bundle

    start = time.perf_counter()
    bundle, _ = create_bundle(base, model_cfg, train_cfg, reporter)
    seconds = round(time.perf_counter() - start, 3)
    return {s: (bundle if i == 0 else copy.deepcopy(bundle)) for i, s in enumerate(models)}, seconds


def _scoring(
    protocol: str, before: pl.DataFrame, test: pl.DataFrame, window: pl.DataFrame, k: int, max_len: int, repeats: bool
) -> tuple[SliceScore, Callable[[Bundle], SliceScore]]:
    """Popularity's score on the slice ``test`` (every model's baseline, asked for or not) and
    the function that scores a bundle on it, under ``protocol``."""
    from recinc_cli.bench.replay_sessions import popular_sessions, score_bundle_sessions, session_truth

    if protocol == "session":
        cases = session_truth(before, test, max_len, repeats)
        return popular_sessions(window, cases, k), functools.partial(score_bundle_sessions, truth=cases, k=k)
    truth = slice_truth(before, test)
    return popular_of(window, before, truth, k), functools.partial(score_bundle, truth=truth, k=k)


def _next(
    name: str,
    bundle: Bundle,
    seen: list[pl.DataFrame],
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    update_cfg: TrainConfig,
    reporter: Reporter,
) -> Bundle:
    """Strategy ``name``'s bundle after the slice ``seen[-1]``: updated with it (incremental),
    trained from scratch on all of ``seen`` (retrain), or as it was (frozen)."""
    from recinc_cli.training.lifecycle import create_bundle, update_bundle

    if name == "incremental":
        return update_bundle(bundle, seen[-1], update_cfg, reporter, source=f"slice {len(seen) - 1}")[0]
    if name == "retrain":
        return create_bundle(pl.concat(seen), model_cfg, train_cfg, reporter)[0]
    return bundle


class _Run:
    """The results of a replay so far, and the report they make (complete or not)."""

    def __init__(self, strategies: Sequence[str], n_slices: int) -> None:
        self.n_slices = n_slices
        self.rows: dict[str, list[dict[str, Any]]] = {s: [] for s in strategies}
        # Per-user NDCG of each model strategy and of its popularity baseline, slice by slice.
        self.ndcg: dict[str, list[np.ndarray]] = {s: [] for s in strategies if s != "popular"}
        self.baseline: list[np.ndarray] = []
        self.users: list[int] = []

    def add_baseline(self, popular: SliceScore) -> None:
        """Start a slice: its users and their NDCG under latest-slice popularity."""
        self.baseline.append(popular.ndcg)
        self.users.append(int(popular.metrics["users"]))

    def add(self, name: str, scored: SliceScore, popular: SliceScore, seconds: float) -> None:
        """Record strategy ``name`` on the current slice, and for a model its lift over ``popular``."""
        row: dict[str, Any] = {**scored.metrics, "seconds": round(seconds, 3)}
        if name != "popular":
            self.ndcg[name].append(scored.ndcg)
            row["vs_popular"] = _evidence(scored.ndcg, popular.ndcg)
        self.rows[name].append(row)

    def report(self, header: dict[str, Any]) -> dict[str, Any]:
        """``header`` with ``complete`` and ``slices_done``, ``warnings`` (lines for the user)
        and per strategy ``per_slice`` (ndcg, recall, hit_rate, users, seconds of the update
        that followed, and for model strategies the ``pop_weight`` the slice was scored with
        and ``vs_popular``, the lift evidence of :func:`~recinc_cli.evaluation.significance.lift_evidence`)
        and ``mean`` (and for model strategies ``vs_popular`` pooled over every user and slice).
        """
        done = len(self.users)
        strategies: dict[str, Any] = {}
        for name, rows in self.rows.items():
            entry: dict[str, Any] = {"per_slice": rows, "mean": _mean(rows, self.n_slices) if rows else {}}
            if name in self.ndcg and rows:
                pooled = np.concatenate(self.ndcg[name]), np.concatenate(self.baseline)
                entry["vs_popular"] = _evidence(*pooled, unit="user-slices")
            strategies[name] = entry
        return {
            **header,
            "complete": done == self.n_slices,
            "slices_done": done,
            "strategies": strategies,
            "warnings": self.warnings(strategies),
        }

    def warnings(self, strategies: dict[str, Any]) -> list[str]:
        """One line per slice with too few users, one per model strategy whose pooled lift over
        popularity is within the noise (per-slice intervals are in the report, not warned)."""
        # Under MIN_USERS thin_warning reads the count alone; a popular-only run has no lift.
        out = [
            f"slice {s}: {thin_warning({'units': n, 'unit': 'users'})}"
            for s, n in enumerate(self.users, 1)
            if n < MIN_USERS
        ]
        for name, entry in strategies.items():
            pooled = entry.get("vs_popular")
            warning = None if pooled is None else thin_warning(pooled)
            if warning is not None:
                out.append(f"{name}, all slices: {warning}")
        return out


def _evidence(model: np.ndarray, baseline: np.ndarray, unit: str = "users") -> dict[str, Any]:
    """:func:`lift_evidence` of per-user NDCG, rounded for the report."""
    e = lift_evidence(model, baseline, unit=unit)
    return e | {"difference": round(e["difference"], 5), "interval": [round(x, 5) for x in e["interval"]]}


def _describe(part: pl.DataFrame) -> dict[str, Any]:
    ts = part["timestamp"]
    return {"events": part.height, "ts_min": str(ts.min()), "ts_max": str(ts.max())}


def _own_ndcg(bundle: Bundle, served: SliceScore, score: Callable[[Bundle], SliceScore]) -> float:
    """NDCG@k of ``bundle``'s own ranking (popularity weight 0) on the slice ``served`` was
    scored on: a served ranking can lean on popularity so hard that it hides an untrained model."""
    if bundle.pop_weight == 0:
        return served.metrics["ndcg"]
    return score(bundle.replace(pop_weight=0.0)).metrics["ndcg"]


def _mean(per_slice: list[dict[str, Any]], n_slices: int) -> dict[str, float]:
    out = {m: round(float(np.mean([r[m] for r in per_slice])), 5) for m in METRICS}
    if all("own_ndcg" in r for r in per_slice):
        out["own_ndcg"] = round(float(np.mean([r["own_ndcg"] for r in per_slice])), 5)
    updates = [r["seconds"] for r in per_slice[: n_slices - 1]] or [0.0]  # none runs after the last slice
    out["seconds"] = round(float(np.mean(updates)), 3)
    return out
