"""The session protocol: case construction, the sequential-rule baseline, ``evaluate --protocol
session`` worked out by hand, and ``--repeats`` on recommend and evaluate (flag and stored default).

The training log :data:`TRAIN` (8 sessions over items a..f, one visit per user) gives popularity
a > b > c > d > e, f and the consecutive pairs a->b x4, a->f, b->c x3, b->d, c->d x2, e->a.
The test log :data:`TEST` holds 3 sessions of at least two known clicks (x1: a b c, x2: b a b,
x5: c d a after dropping zz), one session left with one known click (x3: q a) and one of one
click (x4): 6 cases, one of them (x2's second b) a repeat.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from synthetic import write_events
from typer.testing import Result

from recinc_cli import api
from recinc_cli.config import ModelConfig, TrainConfig
from recinc_cli.data.context import Context
from recinc_cli.data.vocab import Vocab
from recinc_cli.errors import BadInputError
from recinc_cli.evaluation.metrics import ranking_metrics, user_metrics
from recinc_cli.evaluation.sessions import CASE_PREFIX, SessionCases, rule_scorer, session_cases
from recinc_cli.store.format import load_bundle

# --- case construction ---------------------------------------------------------------------------


def frame(rows: list[tuple[str, str]]) -> pl.DataFrame:
    """Time-ordered events of ``(user, item)`` rows, one minute apart."""
    t = [dt.datetime(2026, 1, 1) + dt.timedelta(minutes=m) for m in range(len(rows))]
    return pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "event_type": ["click"] * len(rows),
            "timestamp": t,
            "weight": [1.0] * len(rows),
        }
    )


VOCAB = Vocab(["", "a", "b", "c", "d"])
#: s2's zz and s4's zz are unknown; s3 has one click and s4 one known click: both skipped.
#: Known sessions: s1 a b c a (the last a a repeat), s2 a c b.
ROWS = [
    ("s2", "a"),
    ("s1", "a"),
    ("s1", "b"),
    ("s2", "zz"),
    ("s4", "zz"),
    ("s1", "c"),
    ("s3", "b"),
    ("s1", "a"),
    ("s2", "c"),
    ("s4", "a"),
    ("s2", "b"),
]


def history_of(cases: SessionCases, case: int) -> list[str]:
    h = cases.history.filter(pl.col("user_id") == cases.case_ids[case])
    return h["item_id"].to_list()


def test_cases_reveal_each_session_one_click_at_a_time() -> None:
    c = session_cases(frame(ROWS), VOCAB, max_len=10)
    assert len(c) == 5 and c.n_sessions == 2 and c.dropped_unknown == 2
    # Sessions in id order (s1, then s2), each click after the first a target.
    assert c.case_ids.to_list() == [
        f"{CASE_PREFIX}0:1",
        f"{CASE_PREFIX}0:2",
        f"{CASE_PREFIX}0:3",
        f"{CASE_PREFIX}1:1",
        f"{CASE_PREFIX}1:2",
    ]
    assert c.target.tolist() == [2, 3, 1, 3, 2]  # b c a | c b
    assert c.session.tolist() == [0, 0, 0, 1, 1]
    assert c.is_last.tolist() == [False, False, True, False, True]
    assert c.is_repeat.tolist() == [False, False, True, False, False]
    assert [history_of(c, j) for j in range(5)] == [["a"], ["a", "b"], ["a", "b", "c"], ["a"], ["a", "c"]]
    # The history rows are copies of the session's clicks (times and types kept), grouped by case.
    assert c.history.columns == ["user_id", "item_id", "event_type", "timestamp", "weight"]
    assert c.history["user_id"].to_list() == [c.case_ids[j] for j in (0, 1, 1, 2, 2, 2, 3, 4, 4)]
    s1_times = frame(ROWS).filter(pl.col("user_id") == "s1")["timestamp"].to_list()
    assert c.history.filter(pl.col("user_id") == c.case_ids[2])["timestamp"].to_list() == s1_times[:3]


def test_max_len_keeps_the_newest_clicks_of_the_revealed_prefix() -> None:
    c = session_cases(frame(ROWS), VOCAB, max_len=2)
    assert c.target.tolist() == [2, 3, 1, 3, 2]  # the cases do not change
    assert [history_of(c, j) for j in range(5)] == [["a"], ["a", "b"], ["b", "c"], ["a"], ["a", "c"]]
    # The repeat flag is about the whole session: the earlier a is out of the window, still a repeat.
    assert c.is_repeat.tolist() == [False, False, True, False, False]
    one = session_cases(frame(ROWS), VOCAB, max_len=1)
    assert [history_of(one, j) for j in range(5)] == [["a"], ["b"], ["c"], ["a"], ["c"]]
    assert one.history.height == 5


def test_no_session_with_two_known_clicks_gives_no_cases() -> None:
    c = session_cases(frame([("s1", "a"), ("s1", "zz"), ("s2", "b"), ("s3", "yy"), ("s3", "c")]), VOCAB, 5)
    assert len(c) == 0 and c.n_sessions == 0 and c.dropped_unknown == 2
    assert c.history.height == 0 and c.case_ids.len() == 0


# --- the sequential-rule baseline ------------------------------------------------------------------


def test_rule_scorer_ranks_what_followed_the_last_click_then_popularity() -> None:
    # Stored sessions 1: [1, 2, 3], 2: [1, 2, 4], 3: [2, 4, 1]: pairs 1->2 x2, 2->3, 2->4 x2, 4->1.
    stored = Context.empty(4).extend(
        np.array([1, 1, 1, 2, 2, 2, 3, 3, 3]),
        np.array([1, 2, 3, 1, 2, 4, 2, 4, 1]),
        np.zeros(9, np.int64),
        np.arange(9),
        n_users=4,
        max_len=10,
    )
    # Served: 4 ends on 2, 5 has no click, 6 ends on 3 (nothing follows 3), 7 ends on 1.
    serving = stored.extend(
        np.array([4, 4, 6, 7]), np.array([5, 2, 3, 1]), np.zeros(4, np.int64), np.arange(4), n_users=8, max_len=10
    )
    pop = torch.tensor([0.0, 4.0, 3.0, 2.0, 1.0, 5.0])
    score = rule_scorer(stored, serving, pop)(torch.tensor([4, 5, 6, 7]))
    fill = pop / 5 * 1e-3
    expected = fill.repeat(4, 1)
    expected[0, 3] += 1  # 2 -> 3 once
    expected[0, 4] += 2  # 2 -> 4 twice
    expected[3, 2] += 2  # 1 -> 2 twice
    torch.testing.assert_close(score, expected, rtol=0, atol=1e-7)
    assert score[:, 1:].argsort(1, descending=True).add(1).tolist() == [
        [4, 3, 5, 1, 2],
        [5, 1, 2, 3, 4],
        [5, 1, 2, 3, 4],
        [2, 5, 1, 3, 4],
    ]


def test_user_metrics_average_to_ranking_metrics() -> None:
    rng = np.random.default_rng(0)
    top = np.stack([rng.permutation(np.arange(1, 30))[:10] for _ in range(40)])
    row = np.repeat(np.arange(40), 3)
    truth = np.stack([rng.choice(np.arange(1, 30), 3, replace=False) for _ in range(40)]).ravel()
    per_user = user_metrics(top, row, truth, k=10)
    mean = ranking_metrics(top, row, truth, k=10, n_catalogue=29)
    assert set(per_user) == {"recall", "precision", "f1", "ndcg", "mrr", "hit_rate"}
    for name, values in per_user.items():
        assert values.shape == (40,) and values.dtype == np.float64
        assert mean[name] == pytest.approx(values.mean(), abs=1e-12), name
    # One user by hand: truth {7, 3}, top [5, 7, 9, 3] at k = 4: hits at ranks 2 and 4.
    one = user_metrics(np.array([[5, 7, 9, 3]]), np.array([0, 0]), np.array([7, 3]), k=4)
    dcg, idcg = 1 / math.log2(3) + 1 / math.log2(5), 1 + 1 / math.log2(3)
    assert one["ndcg"][0] == pytest.approx(dcg / idcg)
    assert (one["recall"][0], one["precision"][0], one["mrr"][0], one["hit_rate"][0]) == (1.0, 0.5, 0.5, 1.0)
    assert one["f1"][0] == pytest.approx(2 / 3)


# --- evaluate --protocol session, by hand -------------------------------------------------------------

TRAIN = [
    ["a", "b", "c"],
    ["a", "b", "c"],
    ["a", "b", "d"],
    ["a", "b"],
    ["c", "d"],
    ["e", "a"],
    ["a", "f"],
    ["b", "c", "d"],
]
TEST = [
    ("x1", "a"), ("x2", "b"), ("x1", "b"), ("x3", "q"), ("x2", "a"), ("x1", "c"), ("x4", "d"),
    ("x2", "b"), ("x3", "a"), ("x5", "c"), ("x5", "zz"), ("x5", "d"), ("x5", "a"),
]  # fmt: skip
#: Popularity barely decays, so it ranks by count: a 6, b 5, c 4, d 3, e 1, f 1.
NO_DECAY = {"pop_half_life_events": 1e9}


def train_log(path: Path) -> Path:
    rows, t = [], 0.0
    for s, session in enumerate(TRAIN):
        for item in session:
            t += 0.01
            rows.append((f"t{s}", item, t))
    return write_events(path, rows)


def eval_log(path: Path, rows: list[tuple[str, str]] = TEST) -> Path:
    return write_events(path, [(u, i, 10 + 0.01 * k) for k, (u, i) in enumerate(rows)])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("sessions")
    out = {"train": train_log(d / "train.parquet"), "test": eval_log(d / "test.parquet")}
    for name, cfg in {
        "sknn": ModelConfig(name="sknn"),
        "mf": ModelConfig(name="mf", dim=4),
        "sknn_repeats": ModelConfig(name="sknn"),
    }.items():
        out[name] = d / f"{name}.pt"
        train = TrainConfig.for_model(cfg.name, epochs=1, repeats=name.endswith("repeats"), **NO_DECAY)
        api.init(out["train"], out[name], cfg, train)
    return out


def rr(ranks: list[int], cut: int) -> list[float]:
    return [1 / r if r <= cut else 0.0 for r in ranks]


def summary(ranks: list[int], cuts: tuple[int, ...] = (2, 10, 20)) -> dict[str, float]:
    """HR, MRR and NDCG at each cut-off of cases whose one target sits at ``ranks``."""
    out = {}
    for c in cuts:
        out[f"hr@{c}"] = float(np.mean([r <= c for r in ranks]))
        out[f"mrr@{c}"] = float(np.mean(rr(ranks, c)))
        out[f"ndcg@{c}"] = float(np.mean([1 / math.log2(r + 1) if r <= c else 0.0 for r in ranks]))
    return out


# Rank of each case's target, cases in the order x1: [a]->b, [a b]->c; x2: [b]->a, ([b a]->b);
# x5: [c]->d, [c d]->a. Without repeats the session's clicks are not ranked, and x2's repeat of b
# is not counted.
POPULAR = {False: [1, 1, 1, 3, 1], True: [2, 3, 1, 2, 4, 1]}
RULE = {False: [1, 1, 3, 1, 1], True: [1, 1, 3, 1, 1, 1]}
LAST = {False: [1, 4], True: [1, 3, 5]}  # positions of the last clicks among the counted cases


def approx(d: dict[str, float]) -> dict[str, object]:
    return {k: pytest.approx(v, abs=1e-9) for k, v in d.items()}


@pytest.mark.parametrize("repeats", [False, True])
def test_session_evaluation_by_hand(files: dict[str, Path], repeats: bool) -> None:
    r = api.evaluate(files["sknn"], files["test"], k=2, protocol="session", repeats=repeats)
    n = 6 if repeats else 5
    assert (r["protocol"], r["k"], r["cutoffs"], r["repeats"]) == ("session", 2, [2, 10, 20], repeats)
    assert (r["cases"], r["sessions"], r["users"], r["dropped_unknown"]) == (n, 3, 3, 2)
    assert r["repeat_targets_skipped"] == (0 if repeats else 1)
    assert (r["test_events"], r["catalogue"]) == (13, 6)
    assert r["served_by"] == {"history": n}  # sknn serves each case from its clicks
    assert r["popular"] == approx(summary(POPULAR[repeats]))
    assert r["rule"] == approx(summary(RULE[repeats]))
    last = LAST[repeats]
    assert r["last_click_cases"] == len(last)
    assert r["last_click"]["popular"] == approx(summary([POPULAR[repeats][j] for j in last]))
    assert r["last_click"]["rule"] == approx(summary([RULE[repeats][j] for j in last]))
    assert r["warning"] == "only 3 sessions scored (under 100): these figures say little"
    ev = r["evidence"]
    assert (ev["units"], ev["unit"], ev["level"]) == (3, "sessions", 0.95)
    ndcg = lambda ranks: [1 / math.log2(x + 1) if x <= 2 else 0.0 for x in ranks]  # noqa: E731
    model_ranks = model_ranks_via_recommend(files["sknn"], repeats)
    assert ev["difference"] == pytest.approx(np.mean(ndcg(model_ranks)) - np.mean(ndcg(POPULAR[repeats])))
    assert r["model"] == approx(summary(model_ranks))


CASES = [["a", "b"], ["a", "b", "c"], ["b", "a"], ["b", "a", "b"], ["c", "d"], ["c", "d", "a"]]


def model_ranks_via_recommend(checkpoint: Path, repeats: bool) -> list[int]:
    """The rank of each case's target when ``recommend --history`` is given the clicks before it
    (an independent path to the same numbers)."""
    ranks = []
    for j, case in enumerate(CASES):
        *before, target = case
        if not repeats and target in before:
            continue
        path = write_events(
            checkpoint.with_name(f"h{j}.parquet"), [(f"case{j}", i, 20 + m / 100) for m, i in enumerate(before)]
        )
        rec = api.recommend(checkpoint, [f"case{j}"], k=6, history=path, repeats=repeats)
        assert rec["source"].unique().to_list() == ["history"]
        ranks.append(rec["item_id"].to_list().index(target) + 1)
    return ranks


def test_a_model_that_cannot_read_sessions_is_served_popularity(files: dict[str, Path]) -> None:
    r = api.evaluate(files["mf"], files["test"], k=2, protocol="session", repeats=False)
    assert r["served_by"] == {"popular": 5}
    assert "rule" not in r and "rule" not in r["last_click"]  # mf stores no sessions
    assert r["model"] == r["popular"] == approx(summary(POPULAR[False]))
    assert (r["evidence"]["difference"], r["evidence"]["interval"]) == (0.0, [0.0, 0.0])


def test_no_session_with_two_known_clicks_is_an_error(
    files: dict[str, Path], tmp_path: Path, cli, expect_error
) -> None:
    bad = eval_log(tmp_path / "bad.parquet", [("y1", "a"), ("y1", "zz"), ("y2", "b"), ("y3", "c"), ("y3", "qq")])
    message = f"{bad}: no session there has two clicks on items the model knows; nothing to evaluate"
    with pytest.raises(BadInputError) as e:
        api.evaluate(files["sknn"], bad, protocol="session")
    assert str(e.value) == message
    expect_error(cli("evaluate", files["sknn"], bad, "--protocol", "session"), 3, message)
    # Only repeat clicks to predict, and repeats not counted: nothing to evaluate either.
    repeat = eval_log(tmp_path / "repeat.parquet", [("y1", "a"), ("y1", "a")])
    expect_error(
        cli("evaluate", files["sknn"], repeat, "--protocol", "session", "--no-repeats"),
        3,
        f"{repeat}: no session there has two clicks on items the model knows; nothing to evaluate",
    )
    r = api.evaluate(files["sknn"], repeat, protocol="session", repeats=True)
    assert (r["cases"], r["sessions"]) == (1, 1)


def test_unknown_protocol_is_a_usage_error(files: dict[str, Path], cli, expect_error) -> None:
    expect_error(
        cli("evaluate", files["sknn"], files["test"], "--protocol", "visits"),
        2,
        "--protocol must be one of next, loo, session (got 'visits')",
    )


# --- the CLI -------------------------------------------------------------------------------------------

KEYS = {
    "k", "protocol", "repeats", "test_events", "catalogue", "checkpoint", "cutoffs", "sessions", "users",
    "cases", "repeat_targets_skipped", "dropped_unknown", "served_by", "model", "popular", "rule",
    "last_click", "last_click_cases", "evidence", "warning",
}  # fmt: skip
METRIC_KEYS = {f"{m}@{c}" for m in ("hr", "mrr", "ndcg") for c in (10, 20)}


def test_cli_evaluate_session_json(files: dict[str, Path], cli) -> None:
    r = cli("evaluate", files["sknn"], files["test"], "--protocol", "session", "--json")
    assert r.exit_code == 0, r.stderr
    # The warning is in the JSON and, as on every protocol, one line on stderr.
    assert r.stderr == "evaluate: warning: only 3 sessions scored (under 100): these figures say little\n"
    assert r.stdout.count("\n") == 1
    out = json.loads(r.stdout)
    assert set(out) == KEYS
    assert out["cutoffs"] == [10, 20] and out["checkpoint"] == str(files["sknn"])
    for name in ("model", "popular", "rule"):
        assert set(out[name]) == METRIC_KEYS and set(out["last_click"][name]) == METRIC_KEYS
    assert (out["cases"], out["sessions"], out["repeats"], out["repeat_targets_skipped"]) == (5, 3, False, 1)
    assert out["popular"] == approx(summary(POPULAR[False], (10, 20)))
    assert out["evidence"]["unit"] == "sessions"
    assert out["warning"] == "only 3 sessions scored (under 100): these figures say little"
    # The same numbers as the API, --repeats included.
    r = cli("evaluate", files["sknn"], files["test"], "--protocol", "session", "--repeats", "--json")
    out = json.loads(r.stdout)
    assert (out["cases"], out["repeats"], out["repeat_targets_skipped"]) == (6, True, 0)
    assert out["rule"] == approx(summary(RULE[True], (10, 20)))


def test_cli_evaluate_session_table(files: dict[str, Path], cli) -> None:
    r = cli("evaluate", files["mf"], files["test"], "--protocol", "session")
    assert r.exit_code == 0, r.stderr
    assert r.stderr == "evaluate: warning: only 3 sessions scored (under 100): these figures say little\n"
    text = " ".join(r.stdout.split())  # the table wraps at the terminal's width
    for words in ("session evaluation: 5 next clicks of 3 sessions", "1 repeat clicks not counted",
                  "2 clicks on unknown items dropped", "hr@10 next click", "ndcg@20 last click (2)",
                  "popularity fallback", "lift vs popular"):  # fmt: skip
        assert words in text, words


def test_cli_help_lists_the_session_protocol(cli) -> None:
    out = " ".join(cli("evaluate", "--help").stdout.split())
    assert "session (every next click of each session, from the clicks before it)" in out
    assert "--repeats" in out and "--no-repeats" in out
    assert "--repeats" in cli("recommend", "--help").stdout


# --- --repeats on recommend, and the stored default ---------------------------------------------------


def recommended(cli: Callable[..., Result], checkpoint: Path, *flags: str) -> dict[str, float]:
    """Item -> score of user t0's top 6."""
    r = cli("recommend", checkpoint, "--users", "t0", "-k", "6", *flags)
    assert r.exit_code == 0, r.stderr
    rows = pl.read_csv(r.stdout.encode(), schema_overrides={"item_id": pl.String})
    assert rows["source"].unique().to_list() == ["model"] and rows["rank"].to_list() == list(range(1, rows.height + 1))
    return dict(zip(rows["item_id"], rows["score"], strict=True))


def test_recommend_repeats_ranks_seen_items_too(files: dict[str, Path], cli) -> None:
    # t0 clicked a, b, c: without repeats only d, e, f are left of the 6 items.
    unseen = recommended(cli, files["sknn"])
    assert sorted(unseen) == ["d", "e", "f"]
    assert recommended(cli, files["sknn"], "--no-repeats") == unseen
    every = recommended(cli, files["sknn"], "--repeats")
    assert sorted(every) == ["a", "b", "c", "d", "e", "f"]
    assert {i: every[i] for i in unseen} == unseen  # the unseen items score as before


def test_init_repeats_is_the_stored_default_of_recommend_and_evaluate(
    files: dict[str, Path], cli, tmp_path: Path
) -> None:
    assert torch.load(files["sknn"], weights_only=True)["train_config"]["repeats"] is False
    ck = tmp_path / "r.pt"
    r = cli("init", files["train"], "-o", ck, "--model", "sknn", "--repeats", "-q")
    assert r.exit_code == 0, r.stderr
    assert torch.load(ck, weights_only=True)["train_config"]["repeats"] is True
    assert load_bundle(ck).train_cfg.repeats is True
    assert sorted(recommended(cli, ck)) == ["a", "b", "c", "d", "e", "f"]
    assert sorted(recommended(cli, ck, "--no-repeats")) == ["d", "e", "f"]
    out = json.loads(cli("evaluate", ck, files["test"], "--protocol", "session", "--json").stdout)
    assert (out["repeats"], out["cases"], out["repeat_targets_skipped"]) == (True, 6, 0)
    out = json.loads(cli("evaluate", ck, files["test"], "--protocol", "session", "--json", "--no-repeats").stdout)
    assert (out["repeats"], out["cases"], out["repeat_targets_skipped"]) == (False, 5, 1)
    # The API reads the same stored default.
    assert api.evaluate(files["sknn_repeats"], files["test"], protocol="session")["repeats"] is True
    # An update keeps it unless told otherwise.
    day = eval_log(tmp_path / "day.parquet", [("n1", "a"), ("n1", "b")])
    assert cli("update", ck, day, "-o", tmp_path / "r1.pt", "-q").exit_code == 0
    assert load_bundle(tmp_path / "r1.pt").train_cfg.repeats is True
    assert cli("update", ck, day, "-o", tmp_path / "r2.pt", "--no-repeats", "-q").exit_code == 0
    assert load_bundle(tmp_path / "r2.pt").train_cfg.repeats is False
