"""The session protocol: score every next click of each test session from the clicks before it.

Session logs (anonymous visits that never come back) cannot be judged by the next-slice
protocol: no test user is known to the model. Here each test session (a ``user_id`` of the
test events) is revealed one click at a time, as ``recommend --history`` would see it, and
the click that follows is the target. Following the field's habit (Ludewig & Jannach, 2018),
clicks on items the model does not know are removed first (nothing could rank them) and
sessions left with fewer than two clicks are skipped.

Each revealed prefix becomes one *case*: a temporary user whose history is the prefix (its
newest ``max_len`` clicks). Case ids start with a NUL character, which no preprocessed id can
hold, so they never collide with a user the model knows.

>>> import datetime as dt
>>> from recinc_cli.data.vocab import Vocab
>>> t = [dt.datetime(2026, 1, 1, 0, m) for m in range(5)]
>>> ev = pl.DataFrame({"user_id": ["s1", "s1", "s1", "s2", "s2"], "item_id": ["a", "b", "a", "b", "zz"],
...     "event_type": ["click"] * 5, "timestamp": t, "weight": [1.0] * 5})
>>> c = session_cases(ev, Vocab(["", "a", "b"]), max_len=10)
>>> c.target.tolist(), c.is_repeat.tolist(), c.is_last.tolist(), c.dropped_unknown
([2, 1], [False, True], [False, True], 1)
>>> c.history["user_id"].to_list() == [c.case_ids[0], c.case_ids[1], c.case_ids[1]]
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import torch

from recinc_cli.data.context import Context
from recinc_cli.data.unique import sorted_unique
from recinc_cli.data.vocab import Vocab
from recinc_cli.evaluation.metrics import user_metrics
from recinc_cli.evaluation.significance import lift_evidence
from recinc_cli.progress import NullReporter, Reporter
from recinc_cli.serving.views import popular_scorer, serving_state

if TYPE_CHECKING:
    from recinc_cli.serving.recommend import ScoreFn
    from recinc_cli.store.bundle import Bundle

#: First character of every case id: ids from ``preprocess`` never hold control characters.
CASE_PREFIX = "\x00"


@dataclass(frozen=True)
class SessionCases:
    """One case per predicted click.

    ``case_ids`` (C,) temporary user ids; ``history`` the events revealed to each case (a
    copy of its session's earlier clicks, ``user_id`` = case id, time-ordered per case);
    ``target`` (C,) int64 item index of the click to predict; ``session`` (C,) int64 index
    of the case's session (for resampling whole sessions); ``is_last`` (C,) bool the target
    is its session's last click; ``is_repeat`` (C,) bool the target was clicked earlier in the
    session; ``dropped_unknown`` clicks removed because the model does not know their item;
    ``n_sessions`` sessions with at least one case.
    """

    case_ids: pl.Series
    history: pl.DataFrame
    target: np.ndarray
    session: np.ndarray
    is_last: np.ndarray
    is_repeat: np.ndarray
    dropped_unknown: int
    n_sessions: int

    def __len__(self) -> int:
        return len(self.target)


def session_cases(events: pl.DataFrame, items: Vocab, max_len: int) -> SessionCases:
    """The cases of the time-sorted test ``events`` under the model's item vocabulary ``items``."""
    known = pl.Series(items.lookup(events["item_id"]) > 0)
    ev = events.filter(known).with_columns(pl.Series("item_idx", items.lookup(events["item_id"].filter(known))))
    ev = ev.with_columns(
        pl.int_range(pl.len()).over("user_id").alias("pos"), pl.len().over("user_id").alias("n")
    ).filter(pl.col("n") >= 2)
    # Rows of a session together, its clicks in time order (sessions in id order).
    ev = ev.with_columns(pl.col("user_id").rank("dense").alias("_s")).sort("_s", "pos", maintain_order=True)
    pos, n = ev["pos"].to_numpy().astype(np.int64), ev["n"].to_numpy().astype(np.int64)
    item = ev["item_idx"].to_numpy().astype(np.int64)
    sess = _session_index(ev["user_id"])
    is_case = pos >= 1
    case_row = np.flatnonzero(is_case)  # the target click of each case
    case_ids = pl.Series(
        "user_id", [f"{CASE_PREFIX}{s}:{p}" for s, p in zip(sess[case_row], pos[case_row], strict=True)], pl.String
    )
    # Click at position q is revealed to the cases q+1 .. min(q + max_len, n - 1) of its session.
    copies = np.maximum(np.minimum(pos + max_len, n - 1) - pos, 0)
    src = np.repeat(np.arange(len(ev)), copies)
    offset = np.arange(len(src)) - np.repeat(np.cumsum(copies) - copies, copies)
    # Case of (session, target position): cases are numbered in row order of their target click.
    case_of_row = np.full(len(ev), -1, dtype=np.int64)
    case_of_row[case_row] = np.arange(len(case_row))
    row_of_target = src + 1 + offset  # rows of a session are contiguous and in position order
    case = case_of_row[row_of_target]
    history = (
        ev[src]
        .select("user_id", "item_id", "event_type", "timestamp", "weight")
        .with_columns(case_ids.gather(case).alias("user_id"), pl.Series("_case", case))
        .sort("_case", maintain_order=True)
        .drop("_case")
    )
    repeat = _is_repeat(sess, item)
    return SessionCases(
        case_ids=case_ids,
        history=history,
        target=item[case_row],
        session=sess[case_row],
        is_last=(pos == n - 1)[case_row],
        is_repeat=repeat[case_row],
        dropped_unknown=int((~known).sum()),
        n_sessions=len(sorted_unique(sess[case_row])),
    )


def _session_index(user_id: pl.Series) -> np.ndarray:
    """(n,) int64 index of each row's session, numbered in order of appearance."""
    return user_id.rank("dense").to_numpy().astype(np.int64) - 1 if len(user_id) else np.zeros(0, np.int64)


def _is_repeat(sess: np.ndarray, item: np.ndarray) -> np.ndarray:
    """(n,) bool: the row's item appeared in an earlier row of the same session."""
    first = pl.DataFrame({"s": sess, "i": item}).with_columns(pl.int_range(pl.len()).over("s", "i").alias("k"))
    return first["k"].to_numpy() > 0


#: Cut-offs the session protocol always reports (20 is the field's habit for this task).
SESSION_CUTOFFS = (10, 20)


def evaluate_sessions(
    bundle: Bundle, events: pl.DataFrame, k: int, repeats: bool, reporter: Reporter | None = None
) -> dict[str, Any]:
    """Metrics of ``bundle`` and its popularity baseline under the session protocol.

    Without ``repeats`` a session's earlier clicks are not ranked and targets that repeat one
    are not counted (nothing could hit them); with ``repeats`` both count. Returns
    ``{"protocol", "cutoffs", "sessions", "cases", "repeats", "dropped_unknown",
    "served_by", "model", "popular", "last_click", "evidence"}``: per scorer HR, MRR and NDCG
    at each cut-off over every case; ``last_click`` the same over each session's last click
    only; ``evidence`` the bootstrap interval of the model's NDCG@k lift over sessions.
    """
    from recinc_cli.serving.recommend import top_k
    from recinc_cli.serving.serve import serve_top

    reporter = reporter or NullReporter()
    cases = session_cases(events, bundle.items, bundle.model_cfg.max_len)
    counted = np.ones(len(cases), bool) if repeats else ~cases.is_repeat
    cutoffs = sorted({*SESSION_CUTOFFS, k})
    depth = cutoffs[-1]
    state = serving_state(bundle, cases.history)
    raw = cases.case_ids.filter(pl.Series(counted))
    idx = state.lookup(bundle.users, raw)
    seen = None if repeats else state.seen
    baselines = {"popular": popular_scorer(bundle)}
    if bundle.context is not None and state.context is not None:
        baselines["rule"] = rule_scorer(bundle.context, state.context, bundle.item_pop)
    reporter.start("scoring sessions", (1 + len(baselines)) * len(idx))
    model_top, _, source = serve_top(bundle, state, raw, depth, reporter, repeats=repeats)
    tops = {"model": model_top}
    for name, fn in baselines.items():
        tops[name] = top_k(fn, idx, seen, depth, progress=reporter.advance)[0]
    reporter.stop()
    target, last, sess = cases.target[counted], cases.is_last[counted], cases.session[counted]
    row = np.arange(len(target))
    per_case = {name: {c: user_metrics(top, row, target, c) for c in cutoffs} for name, top in tops.items()}
    _, unit = np.unique(sess, return_inverse=True)
    n_units = int(unit.max(initial=-1)) + 1
    by_session = {name: np.bincount(unit, weights=m[k]["ndcg"], minlength=n_units) for name, m in per_case.items()}
    evidence = lift_evidence(
        by_session["model"], by_session["popular"], counts=np.bincount(unit, minlength=n_units), unit="sessions"
    )
    served, counts = np.unique(source, return_counts=True)
    return {
        "protocol": "session",
        "k": k,
        "cutoffs": cutoffs,
        "sessions": n_units,
        "users": n_units,
        "cases": len(target),
        "repeats": repeats,
        "repeat_targets_skipped": int((~counted).sum()),
        "dropped_unknown": cases.dropped_unknown,
        "served_by": {str(s): int(n) for s, n in zip(served, counts, strict=True)},
        **{name: _summary(m, cutoffs, np.ones(len(target), bool)) for name, m in per_case.items()},
        "last_click": {name: _summary(m, cutoffs, last) for name, m in per_case.items()},
        "last_click_cases": int(last.sum()),
        "evidence": evidence,
    }


def _summary(metrics: dict[int, dict[str, np.ndarray]], cutoffs: list[int], rows: np.ndarray) -> dict[str, float]:
    """``{"hr@10", "mrr@10", "ndcg@10", ...}``: the means over ``rows`` (bool mask)."""
    out = {}
    for c in cutoffs:
        for name, key in (("hr", "hit_rate"), ("mrr", "mrr"), ("ndcg", "ndcg")):
            values = metrics[c][key][rows]
            out[f"{name}@{c}"] = float(values.mean()) if len(values) else 0.0
    return out


def rule_scorer(stored: Context, serving: Context, item_pop: torch.Tensor) -> ScoreFn:
    """The sequential-rule baseline: items ranked by how often they followed the session's
    newest click in ``stored`` (each user's stored events, consecutive pairs), then by
    popularity ``item_pop`` (n_items,). ``serving`` holds the sessions scored.

    >>> c = Context.empty(3).extend(np.array([1, 1, 2, 2]), np.array([1, 2, 1, 3]),
    ...     np.zeros(4, np.int64), np.arange(4), n_users=3, max_len=5)
    >>> rule_scorer(c, c, torch.tensor([0.0, 1.0, 1.0, 5.0]))(torch.tensor([1])).argsort(descending=True)[0, :2]
    tensor([3, 1])
    """
    from recinc_cli.models.sknn import follow_weights

    n_items = len(item_pop)
    user = np.repeat(np.arange(stored.n_users), stored.lengths())
    follows = follow_weights(user, stored.items.numpy().astype(np.int64), n_items, steps=1)
    fill = (item_pop / item_pop.max().clamp(min=1e-12)).float() * 1e-3

    def score(users: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        last = serving.padded(users, width=1)[0][:, 0].clamp(max=n_items - 1).numpy()
        counts = torch.from_numpy(follows[last].toarray())
        counts[last == 0] = 0.0
        return torch.add(counts, fill, out=out)

    return score
