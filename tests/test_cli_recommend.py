"""recommend: user selection, output formats, seen-item exclusion, cold-start fallback."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import torch
from conftest import only_files

from recinc_cli.store.format import load_bundle, read_payload

COLUMNS = ["user_id", "rank", "item_id", "score", "source"]


def seen_items(pipeline, upto: int) -> dict[str, set[str]]:
    names = ["base", *(f"day{d}" for d in range(11, upto + 1))]
    ev = pl.concat([pl.read_parquet(pipeline.events[n]) for n in names])
    out: dict[str, set[str]] = {}
    for u, i in ev.select("user_id", "item_id").iter_rows():
        out.setdefault(u, set()).add(i)
    return out


def read_stdout_csv(text: str) -> pl.DataFrame:
    return pl.read_csv(io.StringIO(text), schema_overrides={"user_id": pl.String, "item_id": pl.String})


def brute_force_top(pipeline, user: str, k: int) -> list[str]:
    """Top-k by the model's scores with padding and the user's seen items removed, by hand."""
    b = load_bundle(pipeline.ckpt[13])
    u = b.users.ids.index(user)
    with torch.no_grad():
        scores = b.model.score({"user": torch.tensor([u])})[0].clone()
    scores += b.pop_weight * torch.log1p(b.item_pop)  # the stored popularity logit adjustment
    seen = seen_items(pipeline, 13)[user]
    for j, item in enumerate(b.items.ids):
        if j == 0 or item in seen:
            scores[j] = float("-inf")
    return [b.items.ids[j] for j in torch.topk(scores, k).indices.tolist()]


def test_users_flag_prints_only_csv_on_stdout(cli, pipeline) -> None:
    r = cli("recommend", pipeline.ckpt[13], "--users", "u00001, u00002,nobody", "-k", "5")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines()[0] == ",".join(COLUMNS)
    assert r.stderr == "recommend: 3 users (1 popular fallback), 15 rows\n"
    df = read_stdout_csv(r.stdout)
    assert df.columns == COLUMNS and df.height == 15
    assert df["user_id"].to_list() == ["u00001"] * 5 + ["u00002"] * 5 + ["nobody"] * 5
    assert df["rank"].to_list() == [1, 2, 3, 4, 5] * 3
    assert df["source"].to_list() == ["model"] * 10 + ["popular"] * 5
    seen = seen_items(pipeline, 13)
    for user in ("u00001", "u00002"):
        rows = df.filter(pl.col("user_id") == user)
        assert not set(rows["item_id"]) & seen[user]
        assert rows["score"].is_sorted(descending=True)
        assert rows["item_id"].to_list() == brute_force_top(pipeline, user, 5)


def test_unknown_users_get_the_most_popular_items(cli, pipeline) -> None:
    r = cli("recommend", pipeline.ckpt[13], "--users", "nobody,ghost", "-k", "4", "-q")
    assert (r.exit_code, r.stderr) == (0, "")
    df = read_stdout_csv(r.stdout)
    raw = read_payload(pipeline.ckpt[13])
    pop = raw["item_pop"].clone()
    pop[0] = float("-inf")
    vals, idx = torch.topk(pop, 4)
    expected = [raw["items"][j] for j in idx.tolist()]
    for user in ("nobody", "ghost"):
        rows = df.filter(pl.col("user_id") == user)
        assert rows["item_id"].to_list() == expected
        assert rows["score"].to_list() == pytest.approx(vals.tolist(), rel=1e-6)
        assert set(rows["source"]) == {"popular"}


def test_users_file_and_all(cli, pipeline, tmp_path: Path) -> None:
    (tmp_path / "users.txt").write_text("user_id\nu00003\n\n  u00004  \nnobody\n")
    r = cli("recommend", pipeline.ckpt[13], "--users-file", tmp_path / "users.txt", "-k", "3")
    assert r.exit_code == 0, r.stderr
    df = read_stdout_csv(r.stdout)
    assert df["user_id"].unique(maintain_order=True).to_list() == ["u00003", "u00004", "nobody"]
    assert r.stderr == "recommend: 3 users (1 popular fallback), 9 rows\n"

    r = cli("recommend", pipeline.ckpt[13], "--all", "-k", "2", "-q")
    assert r.exit_code == 0, r.stderr
    df = read_stdout_csv(r.stdout)
    users = read_payload(pipeline.ckpt[13])["users"][1:]
    assert df["user_id"].unique(maintain_order=True).to_list() == users
    assert df.height == 2 * len(users) and set(df["source"]) == {"model"}
    seen = seen_items(pipeline, 13)
    assert not any(i in seen[u] for u, i in df.select("user_id", "item_id").iter_rows())


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_output_files_match_stdout(cli, pipeline, tmp_path: Path, suffix: str) -> None:
    args = ("recommend", pipeline.ckpt[13], "--users", "u00001,nobody", "-k", "3")
    expected = read_stdout_csv(cli(*args).stdout)
    out = tmp_path / f"recs{suffix}"
    r = cli(*args, "-o", out)
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""
    assert r.stderr == f"recommend: 2 users (1 popular fallback), 6 rows -> {out}\n"
    readers = {
        ".csv": lambda: read_stdout_csv(out.read_text()),
        ".parquet": lambda: pl.read_parquet(out),
        ".jsonl": lambda: pl.read_ndjson(out),
    }
    got = readers[suffix]()
    assert got.columns == COLUMNS
    assert (
        got.select("user_id", "rank", "item_id", "source").rows()
        == expected.select("user_id", "rank", "item_id", "source").rows()
    )
    assert got["score"].to_list() == pytest.approx(expected["score"].to_list(), rel=1e-6)
    assert only_files(tmp_path) == [out.name]


def test_k_larger_than_the_catalogue_lists_every_unseen_item(cli, pipeline) -> None:
    n_items = len(read_payload(pipeline.ckpt[10])["items"]) - 1
    r = cli("recommend", pipeline.ckpt[10], "--users", "u00001,nobody", "-k", "5000", "-q")
    assert r.exit_code == 0, r.stderr
    df = read_stdout_csv(r.stdout)
    n_seen = len(seen_items(pipeline, 10)["u00001"])
    assert df.filter(pl.col("user_id") == "u00001").height == n_items - n_seen
    assert df.filter(pl.col("user_id") == "nobody").height == n_items


def test_real_process_keeps_stdout_for_data(pipeline, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "recinc_cli",
            "recommend",
            str(pipeline.ckpt[13]),
            "--users",
            "u00001,nobody",
            "-k",
            "2",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == ",".join(COLUMNS) and len(lines) == 5
    assert [line.split(",")[0] for line in lines[1:]] == ["u00001", "u00001", "nobody", "nobody"]
    assert proc.stderr == "recommend: 2 users (1 popular fallback), 4 rows\n"


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_users_file_can_be_an_earlier_recommendations_file(cli, pipeline, tmp_path: Path, suffix: str) -> None:
    recs = tmp_path / f"recs{suffix}"
    r = cli("recommend", pipeline.ckpt[13], "--users", "u00005,nobody,u00003", "-k", "2", "-o", recs, "-q")
    assert r.exit_code == 0, r.stderr
    r = cli("recommend", pipeline.ckpt[13], "--users-file", recs, "-k", "1", "-q")
    assert r.exit_code == 0, r.stderr
    df = read_stdout_csv(r.stdout)
    assert df["user_id"].to_list() == ["u00005", "nobody", "u00003"]
