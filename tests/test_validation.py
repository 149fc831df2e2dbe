"""Which protocol ``init`` and ``update`` validate on (recinc_cli.evaluation.validation): the session protocol
when a model that reads sessions meets held-out events mostly from users it has not seen, else
next-slice; the lineage records which (``valid_protocol``) and over how many units (``valid_units``).

:func:`session_log` has 20 sessions of 3 clicks, each a new user; with ``--valid-fraction 0.12``
the newest 7 of its 60 events are held out: the last click of session 17 (one click: skipped)
and all of sessions 18 and 19, so 2 held-out sessions. :func:`returning_log` has 10 users who
each click one new item in each of 6 rounds; the same cut holds out 7 of the users' last round.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import torch
from synthetic import write_events

from recinc_cli import api
from recinc_cli.config import ModelConfig, TrainConfig
from recinc_cli.evaluation.validation import RETURNING_SHARE, validation_for
from recinc_cli.store.format import load_bundle
from recinc_cli.training.report import Judged

VALID = {"valid_fraction": 0.1}  # the newest 6 of 60 events: two whole sessions of session_log
SASREC = ModelConfig(name="sasrec", dim=8, max_len=5, blocks=1, heads=1, dropout=0.0)


def session_log(path: Path, n_sessions: int = 20, start: float = 0.0) -> Path:
    rows = []
    for s in range(n_sessions):
        for k in range(3):
            rows.append((f"s{s:03d}", f"i{(s + k) % 8 + 1}", start + (3 * s + k) / 100))
    return write_events(path, rows)


def returning_log(path: Path) -> Path:
    rows = []
    for r in range(6):
        for u in range(10):
            rows.append((f"u{u}", f"i{(u + r) % 12}", (10 * r + u) / 100))
    return write_events(path, rows)


def init(events: Path, out: Path, cfg: ModelConfig, **train: object) -> dict:
    return api.init(events, out, cfg, TrainConfig.for_model(cfg.name, epochs=2, **{**VALID, **train}))


@pytest.mark.parametrize("cfg", [ModelConfig(name="sknn"), ModelConfig(name="ease"), SASREC], ids=lambda c: c.name)
def test_a_session_log_is_validated_by_sessions(tmp_path: Path, cfg: ModelConfig) -> None:
    events = session_log(tmp_path / "s.parquet")
    info = init(events, tmp_path / "m.pt", cfg)
    assert (info["valid_protocol"], info["valid_units"]) == ("session", 2)
    entry = torch.load(tmp_path / "m.pt", weights_only=True)["lineage"][-1]
    assert (entry["valid_protocol"], entry["valid_units"]) == ("session", 2)
    assert entry["valid_ndcg"] is not None and entry["valid_ndcg_model"] is not None


def test_a_model_that_reads_no_sessions_stays_with_the_next_slice(tmp_path: Path) -> None:
    # mf cannot serve a new session from its clicks: the held-out users with items new to them
    # (sessions 18 and 19; both in the vocabulary) are judged by the next-slice protocol.
    info = init(session_log(tmp_path / "s.parquet"), tmp_path / "m.pt", ModelConfig(name="mf", dim=4))
    assert (info["valid_protocol"], info["valid_units"]) == ("next", 2)


@pytest.mark.parametrize("cfg", [ModelConfig(name="sknn"), ModelConfig(name="mf", dim=4), SASREC], ids=lambda c: c.name)
def test_a_log_of_returning_users_is_validated_by_the_next_slice(tmp_path: Path, cfg: ModelConfig) -> None:
    info = init(returning_log(tmp_path / "r.parquet"), tmp_path / "m.pt", cfg)
    assert (info["valid_protocol"], info["valid_units"]) == ("next", 6)
    assert load_bundle(tmp_path / "m.pt").lineage[-1]["valid_protocol"] == "next"


def test_the_init_summary_names_the_held_out_sessions(tmp_path: Path, cli) -> None:
    events = session_log(tmp_path / "s.parquet")
    r = cli("init", events, "-o", tmp_path / "m.pt", "--model", "sknn", "--valid-fraction", "0.1")
    assert r.exit_code == 0, r.stderr
    entry = load_bundle(tmp_path / "m.pt").lineage[-1]
    assert (
        f"(valid ndcg@10 {entry['valid_ndcg']:.4f} on 2 held-out sessions; model alone "
        f"{entry['valid_ndcg_model']:.4f})" in r.stderr
    )
    r = cli("init", returning_log(tmp_path / "r.parquet"), "-o", tmp_path / "r.pt", "--model", "sknn",
            "--valid-fraction", "0.1")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert "(valid ndcg@10 " in r.stderr and "held-out sessions" not in r.stderr


def test_closed_form_update_on_new_sessions_is_validated_by_sessions(tmp_path: Path) -> None:
    init(session_log(tmp_path / "a.parquet"), tmp_path / "m0.pt", ModelConfig(name="sknn"))
    # A day of 10 new sessions: update_valid_fraction 0.2 holds out the newest 6 clicks, 2 sessions.
    day = session_log(tmp_path / "b.parquet", n_sessions=10, start=5.0)
    pl.read_parquet(day).with_columns(pl.col("user_id").str.replace("s", "d")).write_parquet(day)
    r = api.update(tmp_path / "m0.pt", day, tmp_path / "m1.pt")
    assert (r["valid_protocol"], r["valid_units"]) == ("session", 2)


def test_gradient_update_on_new_sessions_records_its_protocol(tmp_path: Path) -> None:
    """README "Session logs": init *and update* record ``valid_protocol`` in the lineage."""
    init(session_log(tmp_path / "a.parquet"), tmp_path / "m0.pt", SASREC)
    day = session_log(tmp_path / "b.parquet", n_sessions=10, start=5.0)
    pl.read_parquet(day).with_columns(pl.col("user_id").str.replace("s", "d")).write_parquet(day)
    r = api.update(tmp_path / "m0.pt", day, tmp_path / "m1.pt")
    assert r["valid_ndcg"] is not None
    assert (r.get("valid_protocol"), r.get("valid_units")) == ("session", 2)


def frame(rows: list[tuple[str, str]]) -> pl.DataFrame:
    import datetime as dt

    return pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "event_type": ["view"] * len(rows),
            "timestamp": [dt.datetime(2026, 2, 1, 0, m) for m in range(len(rows))],
            "weight": [1.0] * len(rows),
        }
    )


def test_the_share_of_returning_users_decides(tmp_path: Path) -> None:
    init(session_log(tmp_path / "s.parquet"), tmp_path / "m.pt", ModelConfig(name="sknn"))
    bundle = load_bundle(tmp_path / "m.pt")
    assert RETURNING_SHARE == 0.05

    def new_sessions(n1: int, n2: int) -> list[tuple[str, str]]:
        return [("n1", f"i{k % 8 + 1}") for k in range(n1)] + [("n2", f"i{k % 8 + 1}") for k in range(n2)]

    # 1 of 20 held-out events by a returning user (s000 has stored clicks): the next slice. s000's
    # i7 is new to it; the new sessions are unknown to the model, so not judged.
    at = frame([("s000", "i7"), *new_sessions(10, 9)])
    v = validation_for(bundle, at, bundle.seen)
    assert v is not None and (v.protocol, v.units) == ("next", 1)
    judged = Judged(0.5, 0.25, v.protocol, v.units).fields()  # what the lineage records of it
    assert (judged["valid_protocol"], judged["valid_units"]) == ("next", 1)
    # 1 of 21, under 5%: sessions (s000's single new click makes no case).
    under = frame([("s000", "i7"), *new_sessions(10, 10)])
    v = validation_for(bundle, under, bundle.seen)
    assert v is not None and (v.protocol, v.units) == ("session", 2)
    assert v.cases is not None and len(v.cases) == 18
    # Nothing to judge: one click of a new session.
    assert validation_for(bundle, frame([("n1", "i1")]), bundle.seen) is None


def test_session_validation_scores_what_evaluate_reports(tmp_path: Path) -> None:
    init(session_log(tmp_path / "s.parquet"), tmp_path / "m.pt", ModelConfig(name="sknn"))
    bundle = load_bundle(tmp_path / "m.pt")
    held = frame([("n1", "i1"), ("n1", "i2"), ("n1", "i3"), ("n2", "i5"), ("n2", "i6"), ("n2", "i5")])
    v = validation_for(bundle, held, bundle.seen)
    assert v is not None and (v.protocol, v.units) == ("session", 2)
    path = write_events(
        tmp_path / "held.parquet",
        [(u, i, 30 + j / 100) for j, (u, i) in enumerate(held.select("user_id", "item_id").iter_rows())],
    )
    r = api.evaluate(tmp_path / "m.pt", path, protocol="session", repeats=False)
    assert r["cases"] == 3  # n2's return to i5 is a repeat, not counted
    assert v.ndcg(bundle, bundle.pop_weight) == pytest.approx(r["model"]["ndcg@10"])
    assert v.ndcg(bundle, 1000.0) == pytest.approx(r["popular"]["ndcg@10"])
