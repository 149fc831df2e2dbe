"""sasrec end to end through the CLI: the sample-data pipeline, context kept across updates,
session-based cold start with --history, leave-one-out evaluation, item features, split."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from conftest import SASREC_ARCH, SASREC_MAX_LEN, only_files, run_cli, write_csv

from recinc_cli.store.format import load_bundle, read_payload

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
HEADER = ("user_id", "item_id", "event_type", "timestamp", "category")


def read_csv(text: str) -> pl.DataFrame:
    return pl.read_csv(io.StringIO(text), schema_overrides={"user_id": pl.String, "item_id": pl.String})


def events_file(directory: Path, name: str, rows: list[tuple[str, str, str, int, str]]) -> Path:
    """Preprocess rows (user, item, event type, minutes after T0, category) into an events Parquet."""
    csv = write_csv(
        directory / f"{name}.csv",
        HEADER,
        [(u, i, e, (T0 + dt.timedelta(minutes=m)).isoformat(), c) for u, i, e, m, c in rows],
    )
    out = directory / f"{name}.parquet"
    r = run_cli("preprocess", csv, "-o", out, "-q")
    assert r.exit_code == 0, r.stderr
    return out


def contexts(path: Path) -> dict[str, list[tuple[str, str, int]]]:
    """Each user's stored (item, event type, ms) events, by raw ids."""
    raw = read_payload(path)
    indptr = raw["context_indptr"].tolist()
    items, types, ts = raw["context_items"].tolist(), raw["context_types"].tolist(), raw["context_ts_ms"].tolist()
    return {
        u: [(raw["items"][items[k]], raw["event_types"][types[k]], ts[k]) for k in range(indptr[j], indptr[j + 1])]
        for j, u in enumerate(raw["users"])
        if j > 0
    }


def newest_events(ev: pl.DataFrame, n: int) -> dict[str, list[tuple[str, str, int]]]:
    """Reference: each user's last ``n`` events of the time-sorted ``ev``."""
    out: dict[str, list[tuple[str, str, int]]] = {}
    ms = ev["timestamp"].dt.epoch("ms").to_list()
    for u, i, e, t in zip(ev["user_id"], ev["item_id"], ev["event_type"], ms, strict=True):
        out[u] = [*out.get(u, []), (i, e, t)][-n:]
    return out


# --- the sample-data pipeline ---------------------------------------------------------------


def test_every_step_succeeded_with_a_one_line_summary(sasrec_pipeline) -> None:
    for name, r in sasrec_pipeline.results.items():
        assert (r.exit_code, r.stdout) == (0, ""), name
        assert len(r.stderr.splitlines()) == 1, name
    assert re.fullmatch(
        r"init: sasrec on 19,157 events, 1,360 users, 762 items, [12] epochs? chosen by early stopping "
        r"\+ 1 epoch on the held-out newest events in [\d.]+s on 1 thread "
        r"\([\d.]+s per epoch, [\d,]+ events/s, peak memory [\d,]+ MiB\), "
        r"loss [\d.]+, pop weight [\d.]+ \(valid ndcg@10 0\.\d{4}; model alone 0\.\d{4}\) "
        rf"-> {re.escape(str(sasrec_pipeline.ckpt[10]))}\n",
        sasrec_pipeline.results["init"].stderr,
    )
    assert re.fullmatch(
        r"update: 2,476 events, \+35 users, \+13 items \(now 1,395 / 775\), 1 epoch in [\d.]+s on 1 thread, "
        r"loss [\d.]+, pop weight [\d.]+ \(valid ndcg@10 0\.\d{4}; model alone 0\.\d{4}\)"
        rf"(, [\d,]+ replayed)? -> {re.escape(str(sasrec_pipeline.ckpt[11]))}\n",
        sasrec_pipeline.results["update 11"].stderr,
    )


def test_update_grows_the_context_and_keeps_sequences(sasrec_pipeline) -> None:
    names = {10: ["base"], 11: ["base", "day11"], 12: ["base", "day11", "day12"]}
    stored = {}
    for day, parts in names.items():
        ev = pl.concat([pl.read_parquet(sasrec_pipeline.events[p]) for p in parts])
        stored[day] = contexts(sasrec_pipeline.ckpt[day])
        # Each user's newest max_len events over every slice so far, in time order.
        assert stored[day] == newest_events(ev, SASREC_MAX_LEN), day
    day11_users = set(pl.read_parquet(sasrec_pipeline.events["day11"])["user_id"])
    kept = [u for u in stored[10] if u not in day11_users]
    assert len(kept) > 500 and all(stored[11][u] == stored[10][u] for u in kept)
    assert len(stored[11]) == len(stored[10]) + 35


def test_recommend_and_evaluate_read_the_context(cli, sasrec_pipeline) -> None:
    ckpt = sasrec_pipeline.ckpt[12]
    r = cli("recommend", ckpt, "--users", "u00001,u00002,nobody", "-k", "5")
    assert r.exit_code == 0, r.stderr
    assert r.stderr == "recommend: 3 users (1 popular fallback), 15 rows\n"
    df = read_csv(r.stdout)
    assert df["source"].to_list() == ["model"] * 10 + ["popular"] * 5
    b = load_bundle(ckpt)
    assert b.context is not None
    for user in ("u00001", "u00002"):
        u = b.users.ids.index(user)
        items, types = b.context.padded(torch.tensor([u]))
        with torch.no_grad():
            scores = b.model.eval().score({"user": torch.tensor([u]), "seq_item": items, "seq_type": types})[0]
        scores = scores + b.pop_weight * torch.log1p(b.item_pop)  # the stored popularity adjustment
        scores[0] = float("-inf")
        scores[b.seen.items_of(u)] = float("-inf")
        expected = [b.items.ids[j] for j in torch.topk(scores, 5).indices.tolist()]
        assert df.filter(pl.col("user_id") == user)["item_id"].to_list() == expected
    r = cli("evaluate", ckpt, sasrec_pipeline.events["day14"], "--json")
    assert r.exit_code == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["protocol"] == "next" and result["users"] > 400
    assert 0 < result["model"]["ndcg"] < 1


# --- item features ----------------------------------------------------------------------------


def test_an_item_new_in_an_update_starts_from_its_known_category(sasrec_pipeline) -> None:
    parent, child = load_bundle(sasrec_pipeline.ckpt[10]), load_bundle(sasrec_pipeline.ckpt[11])
    day11 = pl.read_parquet(sasrec_pipeline.events["day11"])
    category = dict(day11.select("item_id", "category").unique().iter_rows())
    cats = child.features["category"]
    assert cats.ids == parent.features["category"].ids  # no category is new on day 11
    new_items = child.items.ids[len(parent.items) :]
    assert len(new_items) == 13
    feat = child.model.get_buffer("item_feat")
    for item in new_items:
        j = child.items.ids.index(item)
        assert int(feat[j, 0]) == cats.ids.index(category[item]) > 0, item
        # The item's vector is its own row plus its category's, which base trained.
        vec = child.model.item_vectors(torch.tensor([j]))[0]  # type: ignore[operator]
        torch.testing.assert_close(vec, child.model.item_emb[j] + child.model.feat_emb[0][feat[j, 0]])
    old = parent.model.get_buffer("item_feat")
    assert torch.equal(feat[: len(old)], old)


def test_a_missing_feature_column_is_exit_3_naming_file_and_column(
    cli, expect_error, sasrec_pipeline, tmp_path
) -> None:
    base = sasrec_pipeline.events["base"]
    columns = ", ".join(pl.read_parquet_schema(base))
    r = cli("init", base, "-o", tmp_path / "m.pt", *SASREC_ARCH, "--item-features", "category,brand")
    expect_error(
        r,
        3,
        f"{base}: column 'brand' not found; the model embeds it as an item feature (--item-features), "
        f"so every events file needs it (columns: {columns})",
    )
    pl.read_parquet(sasrec_pipeline.events["day11"]).drop("category").write_parquet(tmp_path / "slice.parquet")
    r = cli("update", sasrec_pipeline.ckpt[10], tmp_path / "slice.parquet", "-o", tmp_path / "m.pt")
    msg = expect_error(r, 3)
    assert msg.startswith(f"{tmp_path / 'slice.parquet'}: column 'category' not found; the model embeds it")
    assert only_files(tmp_path) == ["slice.parquet"]


# --- a log with a known answer: a cycle of 15 items ---------------------------------------------

ITEMS = [f"i{k:02d}" for k in range(1, 16)]
#: Tiny sasrec that learns the cycle in a second.
CHAIN_ARCH = ("--model", "sasrec", "--dim", "16", "--max-len", "8", "--blocks", "1", "--heads", "1", "--dropout", "0")
CHAIN_INIT = (*CHAIN_ARCH, "--epochs", "40", "--lr", "0.01", "--batch-size", "256", "--seed", "3")


def cycle_rows(n_rounds: int = 3, length: int = 6) -> list[tuple[str, str, str, int, str]]:
    """Per round, 15 users start at every position of the cycle (random order) and consume
    ``length`` consecutive items; users' events interleave in time. Every item is equally popular."""
    rng = np.random.default_rng(0)
    starts = [int(s) for _ in range(n_rounds) for s in rng.permutation(len(ITEMS))]
    rows = []
    for k in range(length):
        for u, s in enumerate(starts):
            item = ITEMS[(s + k) % len(ITEMS)]
            rows.append((f"u{u + 1:03d}", item, "view", k * 100 + u, f"c{int(item[1:]) % 3}"))
    return rows


@pytest.fixture(scope="module")
def cycle_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("cycle")
    events = events_file(d, "cycle", cycle_rows())
    r = run_cli("init", events, "-o", d / "m.pt", *CHAIN_INIT, "--valid-fraction", "0", "-q")
    assert r.exit_code == 0, r.stderr
    return events, d / "m.pt"


def after(item: str, steps: int = 1) -> str:
    return ITEMS[(ITEMS.index(item) + steps) % len(ITEMS)]


def test_history_lets_sasrec_continue_a_new_users_session(cli, cycle_model, tmp_path: Path) -> None:
    _, ckpt = cycle_model
    known = "u001"
    last = contexts(ckpt)[known][-1][0]
    r = cli("recommend", ckpt, "--users", known, "-k", "1", "-q")
    assert read_csv(r.stdout)["item_id"].to_list() == [after(last)]  # the model continues u001
    history = events_file(
        tmp_path,
        "history",
        [
            ("visitor", "i07", "view", 10_000, "c1"),
            ("visitor", "i08", "view", 10_001, "c2"),
            ("visitor", "new-item", "view", 10_002, "c0"),  # unknown to the model: ignored
            ("visitor", "i09", "view", 10_003, "c0"),
            (known, after(last, 5), "view", 10_004, "c0"),  # newer than u001's stored events: read too
            (known, after(last, 6), "view", 10_005, "c1"),
        ],
    )
    r = cli("recommend", ckpt, "--users", f"visitor,{known},ghost", "-k", "3", "--history", history)
    assert r.exit_code == 0, r.stderr
    assert r.stderr == "recommend: 3 users (1 popular fallback, 1 from --history), 9 rows\n"
    df = read_csv(r.stdout)
    visitor = df.filter(pl.col("user_id") == "visitor")
    assert visitor["item_id"][0] == "i10" and set(visitor["source"]) == {"history"}
    assert not set(visitor["item_id"]) & {"i07", "i08", "i09"}
    u001 = df.filter(pl.col("user_id") == known)
    assert u001["item_id"][0] == after(last, 7) and set(u001["source"]) == {"model"}
    assert set(df.filter(pl.col("user_id") == "ghost")["source"]) == {"popular"}
    # Nothing was saved: without --history the visitor is unknown again.
    r = cli("recommend", ckpt, "--users", "visitor", "-k", "1", "-q")
    assert set(read_csv(r.stdout)["source"]) == {"popular"}


def test_mf_with_history_falls_back_to_popular_minus_the_history(cli, pipeline, tmp_path: Path) -> None:
    ckpt = pipeline.ckpt[13]
    raw = read_payload(ckpt)
    pop = raw["item_pop"].clone()
    pop[0] = float("-inf")
    ranked = [raw["items"][j] for j in torch.argsort(pop, descending=True, stable=True).tolist()]
    history = events_file(
        tmp_path, "history", [("visitor", item, "view", k, "c01") for k, item in enumerate(ranked[:3])]
    )
    r = cli("recommend", ckpt, "--users", "visitor,ghost", "-k", "4", "--history", history)
    assert r.exit_code == 0, r.stderr
    assert r.stderr == "recommend: 2 users (2 popular fallback, 0 from --history), 8 rows\n"
    df = read_csv(r.stdout)
    assert df.filter(pl.col("user_id") == "visitor")["item_id"].to_list() == ranked[3:7]
    assert df.filter(pl.col("user_id") == "ghost")["item_id"].to_list() == ranked[:4]
    assert set(df["source"]) == {"popular"}


@pytest.mark.parametrize("last", [1, 2])
def test_loo_evaluation_on_a_split(cli, cycle_model, tmp_path: Path, last: int) -> None:
    events, _ = cycle_model
    train, test = tmp_path / "train.parquet", tmp_path / "test.parquet"
    r = cli("split", events, "--last", last, "--train", train, "--test", test)
    assert r.exit_code == 0, r.stderr
    n_test = 45 * last
    assert r.stderr == f"split: 270 events -> {270 - n_test} in {train}, {n_test} (45 users) in {test}\n"
    ev, tr, te = (pl.read_parquet(p) for p in (events, train, test))
    assert tr.columns == te.columns == ev.columns
    assert pl.concat([tr, te]).sort("timestamp", "user_id").equals(ev.sort("timestamp", "user_id"))
    assert te.group_by("user_id").len()["len"].to_list() == [last] * 45
    # The test part holds each user's last events.
    assert te.sort("user_id", "timestamp").equals(
        ev.sort("user_id", "timestamp").group_by("user_id", maintain_order=True).tail(last)
    )
    r = cli("init", train, "-o", tmp_path / "m.pt", *CHAIN_INIT, "--valid-fraction", "0", "-q")
    assert r.exit_code == 0, r.stderr
    r = cli("evaluate", tmp_path / "m.pt", test, "--protocol", "loo", "--json", "-k", "1")
    assert r.exit_code == 0, r.stderr
    result = json.loads(r.stdout)
    # Each user's last event is the target, predicted from the events before it (with --last 2,
    # the first test event is read as history); popularity is uniform, so only the order tells.
    assert (result["protocol"], result["users"], result["test_events"]) == ("loo", 45, 45)
    assert result["model"]["hit_rate"] > 0.9
    assert result["popular"]["hit_rate"] < 0.5
    r = cli("evaluate", tmp_path / "m.pt", test, "--protocol", "loo")
    assert r.exit_code == 0 and "ndcg@10" in r.stdout
    r = cli("evaluate", tmp_path / "m.pt", test, "--protocol", "random")
    assert (
        r.exit_code == 2 and r.stderr == "recinc: error: --protocol must be one of next, loo, session (got 'random')\n"
    )


def test_init_valid_last_early_stops_on_each_users_last_event(cli, cycle_model, tmp_path: Path) -> None:
    events, _ = cycle_model
    out = tmp_path / "m.pt"
    r = cli("init", events, "-o", out, *CHAIN_ARCH, "--epochs", "3", "--lr", "0.01", "--valid-last")
    assert r.exit_code == 0, r.stderr
    assert re.fullmatch(
        r"init: sasrec on 270 events, 45 users, 15 items, [123] epochs? chosen by early stopping "
        r"\(leave-one-out\) in [\d.]+s on 1 thread \([\d.]+s per epoch, [\d,]+ events/s, "
        r"peak memory [\d,]+ MiB\), loss [\d.]+, pop weight [\d.]+ \(valid ndcg@10 \d\.\d{4}; "
        rf"model alone \d\.\d{{4}}\) -> {re.escape(str(out))}\n",
        r.stderr,
    )
    raw = read_payload(out)
    entry = raw["lineage"][0]
    assert entry["valid_ndcg"] is not None
    assert raw["train_config"]["valid_last"] is True
    # The held-out last events became context and seen items all the same.
    ev = pl.read_parquet(events)
    assert contexts(out) == newest_events(ev, 8)
    b = load_bundle(out)
    last = ev.group_by("user_id", maintain_order=True).last()
    for u, i in last.select("user_id", "item_id").iter_rows():
        assert b.items.ids.index(i) in b.seen.items_of(b.users.ids.index(u)).tolist()


def test_real_process_item_features_summary_is_one_line(cycle_model, tmp_path: Path) -> None:
    events, _ = cycle_model
    args = [sys.executable, "-m", "recinc_cli", "init", str(events), "-o", str(tmp_path / "m.pt")]
    args += [*CHAIN_ARCH, "--epochs", "1", "--valid-fraction", "0", "--item-features", "category"]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # No warning (torch once warned here about a read-only NumPy array) before the summary.
    assert proc.stderr.startswith("init: sasrec on 270 events") and len(proc.stderr.splitlines()) == 1, proc.stderr


# --- split --------------------------------------------------------------------------------------


def test_split_at_a_time(cli, cycle_model, tmp_path: Path) -> None:
    events, _ = cycle_model
    train, test = tmp_path / "a.parquet", tmp_path / "b.parquet"
    at = (T0 + dt.timedelta(minutes=400)).strftime("%Y-%m-%dT%H:%M")
    r = cli("split", events, "--at", at, "--train", train, "--test", test, "-q")
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "")
    cut = T0 + dt.timedelta(minutes=400)
    assert pl.read_parquet(train)["timestamp"].max() < cut <= pl.read_parquet(test)["timestamp"].min()
    assert pl.read_parquet(train).height == 4 * 45 and pl.read_parquet(test).height == 2 * 45


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--last", "1", "--at", "2026-03-01"], 2, "give exactly one of --last, --at or --slices"),
        ([], 2, "give exactly one of --last, --at or --slices"),
        (["--last", "0"], 2, "--last must be at least 1"),
        (["--at", "soon"], 2, "--at: cannot read time 'soon'; use ISO 8601 like 2026-03-01 or 2026-03-01T12:00"),
        (["--last", "6"], 3, "{events}: the test part would be empty; change --last / --at"),
        (["--at", "2027-01-01"], 3, "{events}: the test part would be empty; change --last / --at"),
        (["--at", "2026-02-01"], 3, "{events}: the train part would be empty; change --last / --at"),
    ],
)
def test_split_errors(cli, expect_error, cycle_model, tmp_path: Path, args: list[str], code: int, message: str) -> None:
    events, _ = cycle_model
    r = cli("split", events, "--train", tmp_path / "a.parquet", "--test", tmp_path / "b.parquet", *args)
    expect_error(r, code, message.format(events=events))
    assert only_files(tmp_path) == []


def test_updates_use_the_gentler_update_lr_unless_overridden(cli, sasrec_pipeline, tmp_path: Path) -> None:
    raw = read_payload(sasrec_pipeline.ckpt[12])
    cfg = raw["train_config"]
    assert (cfg["lr"], cfg["update_lr"], cfg["update_epochs"]) == (0.003, 0.001, 1)  # sasrec defaults
    assert [e["lr"] for e in raw["lineage"]] == [0.003, 0.001, 0.001]
    out = tmp_path / "s13.pt"
    r = cli("update", sasrec_pipeline.ckpt[12], sasrec_pipeline.events["day13"], "-o", out, "--lr", "0.002")
    assert r.exit_code == 0, r.stderr
    after = read_payload(out)
    assert after["lineage"][-1]["lr"] == 0.002 and after["train_config"]["update_lr"] == 0.001


def test_update_whose_held_out_users_are_all_new(cli, tmp_path: Path) -> None:
    """Issue 13, bug 1: the newest share of the slice (held out to choose epochs) holds only a
    user first seen in it, so the validation batch had no event at all: exit 1, IndexError."""
    t0 = 1_700_000_000
    base = [(f"u{i % 4 + 1}", f"i{i * 7 % 12 + 1}", t0 + i * 60) for i in range(60)]
    fresh = [(f"u{i % 4 + 1}", f"i{i * 5 % 12 + 1}", t0 + 4000 + i * 60) for i in range(16)]
    fresh += [("u9", f"i{j}", t0 + 6000 + k * 60) for k, j in enumerate((3, 5, 7, 2))]  # the newest 20%
    header = ["user_id", "item_id", "timestamp"]
    for name, rows in (("base", base), ("slice", fresh)):
        r = cli("preprocess", write_csv(tmp_path / f"{name}.csv", header, rows), "-o", tmp_path / f"{name}.parquet")
        assert r.exit_code == 0, r.stderr
    m0, m1 = tmp_path / "m0.pt", tmp_path / "m1.pt"
    r = cli("init", tmp_path / "base.parquet", "-o", m0, *SASREC_ARCH, "--epochs", "2", "--seed", "1")
    assert r.exit_code == 0, r.stderr
    r = cli("update", m0, tmp_path / "slice.parquet", "-o", m1)
    assert r.exit_code == 0, r.stderr
    assert r.stderr.startswith("update: 20 events, +1 users, +0 items (now 5 / 12), ")
    r = cli("recommend", m1, "--users", "u9", "-k", "3")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines()[1:] and all(line.startswith("u9,") for line in r.stdout.splitlines()[1:])
