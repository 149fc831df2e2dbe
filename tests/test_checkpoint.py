"""The .pt bundle: plain tensors and values, lineage, round trips, atomic writes, bad files."""

from __future__ import annotations

import datetime as dt
import itertools
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from conftest import SASREC_MAX_LEN, RunsCode, only_files

from recinc_cli import __version__, api
from recinc_cli.config import ModelConfig, TrainConfig
from recinc_cli.data.io import sha256_file
from recinc_cli.errors import CheckpointError, OutputError
from recinc_cli.serving.views import bundle_scorer
from recinc_cli.store.checksum import payload_digest
from recinc_cli.store.format import FORMAT_VERSION, load_bundle, read_payload, save_bundle, unpack_ids

#: Keys of every lineage entry; init adds its peak memory, update its learning rate.
LINEAGE_KEYS = {
    "valid_ndcg",
    "valid_ndcg_model",  # held-out NDCG@10 of the model alone (pop weight 0)
    # the validation that chose the epochs and the popularity weight (recinc_cli.evaluation.validation):
    "valid_protocol",  # next or session; None when nothing was held out
    "valid_units",  # users or sessions judged
    "pop_weight",
    "pop_weight_note",  # "model ranking not used: popularity weight 1000", else None
    "command",
    "time",
    "recinc_version",
    "parent_sha256",
    "data_path",
    "data_sha256",
    "n_users",
    "n_items",
    "events",
    "epochs",
    "final_loss",
    "train_seconds",
    "ts_min",
    "ts_max",
    "new_users",
    "new_items",
    "epoch_seconds",
    "threads",  # torch threads the training ran on (recinc_cli.threads)
    "version",  # registry version number; None for -o
    "device",  # where the training steps ran: cpu, cuda:0 (recinc_cli.compute)
    "precision",  # fp32 or bf16
    "ranks",  # torchrun processes (1: none)
}
INIT_KEYS = LINEAGE_KEYS | {
    "peak_memory_mb",
    "lr",
    "pop_weight",
    "events_not_admitted",
}
UPDATE_KEYS = LINEAGE_KEYS | {
    "lr",
    "pop_weight",
    "events_not_admitted",
    "events_in",
    "late_events",
    "late_policy",
    "replayed",
    "expired_items",
    "pruned_items",
    "watermark",
    "parent_path",
}
MF_CONFIG = {
    "name": "mf",
    "dim": 8,
    "max_len": 200,
    "blocks": 2,
    "heads": 1,
    "dropout": 0.2,
    "item_features": (),
    "ease_l2": 30.0,
    "neighbors": 100,
    "candidates": 50,
    "rank_features": ("generators", "popularity", "item_age", "user"),
    "time_inputs": False,
}
TINY = (ModelConfig(name="mf", dim=4), TrainConfig(epochs=1, update_epochs=1, batch_size=4096, seed=5))


def events_of(pipeline, *names: str) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(pipeline.events[n]) for n in names])


def test_loads_with_weights_only_and_holds_every_documented_key(pipeline) -> None:
    stored = torch.load(pipeline.ckpt[10], weights_only=True)
    # Format 5: each id vocabulary is one uint8 tensor (UTF-8, newline-joined), read_payload's lists.
    raw = read_payload(pipeline.ckpt[10])
    for key in ("users", "items", "event_types"):
        assert stored[key].dtype == torch.uint8 and unpack_ids(stored[key]) == raw[key], key
    assert bytes(stored["users"].numpy()).decode().split("\n") == raw["users"] and raw["users"][0] == ""
    assert len(raw["users"]) == len(raw["seen_indptr"]) - 1
    assert set(raw) == {
        "format_version",
        "recinc_version",
        "model_config",
        "train_config",
        "weights",
        "optimizer",
        "users",
        "items",
        "seen_indptr",
        "seen_indices",
        "item_pop",
        "pop_time_ms",
        "lineage",
        "event_types",
        "features",
        "item_last_ms",
        "pop_weight",
        "pop_evidence",
        "pop_clock",
        "replay_user",
        "replay_item",
        "replay_type",
        "replay_weight",
        "replay_ts_ms",
        "replay_size",
        "replay_seen",
        "pending_user_ids",
        "pending_user_counts",
        "pending_item_ids",
        "pending_item_counts",
        "checksum",
    }
    assert raw["format_version"] == FORMAT_VERSION == 5
    assert raw["recinc_version"] == __version__
    assert raw["model_config"] == MF_CONFIG
    assert raw["train_config"]["seed"] == 7 and raw["train_config"]["epochs"] == 2
    base = pl.read_parquet(pipeline.events["base"])
    assert raw["users"][0] == "" and raw["items"][0] == ""
    assert raw["users"][1:] == base["user_id"].unique(maintain_order=True).to_list()
    assert raw["items"][1:] == base["item_id"].unique(maintain_order=True).to_list()
    w = raw["weights"]
    assert w["user_emb"].shape == (len(raw["users"]), 8)
    assert w["item_emb"].shape == (len(raw["items"]), 8) and w["item_bias"].shape == (len(raw["items"]),)
    assert raw["pop_time_ms"] == int(base["timestamp"].max().timestamp() * 1000)
    assert raw["event_types"] == ["", *base["event_type"].unique(maintain_order=True).to_list()]
    assert raw["features"] == {}


def test_sasrec_checkpoint_holds_context_and_feature_vocabularies(sasrec_pipeline) -> None:
    raw = read_payload(sasrec_pipeline.ckpt[10])
    assert set(raw) >= {"event_types", "features", "context_indptr", "context_items", "context_types", "context_ts_ms"}
    assert raw["model_config"] == {
        "name": "sasrec",
        "dim": 8,
        "max_len": SASREC_MAX_LEN,
        "blocks": 1,
        "heads": 2,
        "dropout": 0.0,
        "item_features": ("category",),
        "ease_l2": 30.0,
        "neighbors": 100,
        "candidates": 50,
        "rank_features": ("generators", "popularity", "item_age", "user"),
        "time_inputs": False,
    }
    base = pl.read_parquet(sasrec_pipeline.events["base"])
    assert raw["features"] == {"category": ["", *base["category"].unique(maintain_order=True).to_list()]}
    assert raw["event_types"] == ["", *base["event_type"].unique(maintain_order=True).to_list()]
    indptr = raw["context_indptr"]
    assert indptr.dtype == torch.int64 and len(indptr) == len(raw["users"]) + 1
    assert raw["context_items"].dtype == torch.int32 and raw["context_types"].dtype == torch.int16
    assert raw["context_ts_ms"].dtype == torch.int64
    assert int(indptr[-1]) == len(raw["context_items"]) == len(raw["context_types"]) == len(raw["context_ts_ms"])
    assert int(torch.diff(indptr).max()) == SASREC_MAX_LEN
    w = raw["weights"]
    assert w["item_emb"].shape == (len(raw["items"]), 8)
    assert w["type_emb"].shape == (len(raw["event_types"]), 8)
    assert w["feat_emb.0"].shape == (len(raw["features"]["category"]), 8)
    assert w["item_feat"].shape == (len(raw["items"]), 1) and w["item_feat"].dtype == torch.int64
    # Every item of base has its category recorded (sample data: one category per item).
    cats = dict(base.select("item_id", "category").unique().iter_rows())
    got = [raw["features"]["category"][v] for v in w["item_feat"][1:, 0].tolist()]
    assert got == [cats[i] for i in raw["items"][1:]]


def test_format_1_mf_checkpoint_still_loads_and_updates(pipeline, tmp_path: Path) -> None:
    raw = read_payload(pipeline.ckpt[10])
    old = {k: v for k, v in raw.items() if k not in ("event_types", "features")}
    old.update(format_version=1, model_config={"name": "mf", "dim": 8})
    torch.save(old, tmp_path / "v1.pt")
    b = load_bundle(tmp_path / "v1.pt")
    assert b.model_cfg == ModelConfig(name="mf", dim=8) and b.types.ids == [""] and b.features == {}
    assert b.context is None
    users = torch.arange(len(b.users))
    with torch.no_grad():
        assert torch.equal(bundle_scorer(b)(users), bundle_scorer(load_bundle(pipeline.ckpt[10]))(users))
    r = api.update(tmp_path / "v1.pt", pipeline.events["day11"], tmp_path / "v2.pt")
    assert not r["skipped"]
    new = read_payload(tmp_path / "v2.pt")
    assert new["format_version"] == FORMAT_VERSION
    assert new["event_types"] == [
        "",
        *pl.read_parquet(pipeline.events["day11"])["event_type"].unique(maintain_order=True),
    ]


def test_seen_csr_holds_exactly_the_distinct_pairs(pipeline) -> None:
    raw = read_payload(pipeline.ckpt[13])
    indptr, indices = raw["seen_indptr"].numpy(), raw["seen_indices"].numpy()
    assert indptr.dtype == np.int64 and indices.dtype == np.int64
    assert len(indptr) == len(raw["users"]) + 1 and indptr[0] == 0 and indptr[-1] == len(indices)
    assert (np.diff(indptr) >= 0).all()
    users = {u: i for i, u in enumerate(raw["users"])}
    items = {u: i for i, u in enumerate(raw["items"])}
    ev = events_of(pipeline, "base", "day11", "day12", "day13")
    expected: dict[int, set[int]] = {}
    for u, i in ev.select("user_id", "item_id").iter_rows():
        expected.setdefault(users[u], set()).add(items[i])
    for u in range(len(raw["users"])):
        row = indices[indptr[u] : indptr[u + 1]].tolist()
        assert row == sorted(expected.get(u, set())), u


def test_item_pop_is_the_decayed_sum_over_all_folded_events(pipeline) -> None:
    # By default popularity runs on an event clock: an event's age is the number of events
    # folded after it, and the half-life is a tenth of init's events.
    raw = read_payload(pipeline.ckpt[13])
    ev = events_of(pipeline, "base", "day11", "day12", "day13")
    base = pl.read_parquet(pipeline.events["base"]).height
    hl = raw["train_config"]["pop_half_life_events"]
    assert hl == base / 10 and raw["pop_clock"] == ev.height
    age = np.arange(ev.height - 1, -1, -1, dtype=np.float64)
    contrib = ev["weight"].to_numpy().astype(np.float64) * 2.0 ** (-age / hl)
    items = {u: i for i, u in enumerate(raw["items"])}
    expected = np.zeros(len(raw["items"]))
    np.add.at(expected, [items[i] for i in ev["item_id"]], contrib)
    assert raw["item_pop"].dtype == torch.float32
    np.testing.assert_allclose(raw["item_pop"].numpy(), expected, rtol=1e-4, atol=1e-6)
    assert raw["pop_time_ms"] == int(ev["timestamp"].max().timestamp() * 1000)  # the watermark


def test_item_pop_with_a_wall_clock_half_life(cli, pipeline, tmp_path) -> None:
    out = tmp_path / "m.pt"
    r = cli(
        "init",
        "--model",
        "mf",
        pipeline.events["base"],
        "-o",
        out,
        "--dim",
        "4",
        "--epochs",
        "1",
        "--pop-half-life",
        "2d",
        "-q",
    )
    assert r.exit_code == 0, r.stderr
    raw = read_payload(out)
    ev = pl.read_parquet(pipeline.events["base"])
    now = ev["timestamp"].max()
    age_ms = (now - ev["timestamp"]).dt.total_milliseconds().to_numpy().astype(np.float64)
    contrib = ev["weight"].to_numpy().astype(np.float64) * 2.0 ** (-age_ms / (2 * 86400 * 1000))
    items = {u: i for i, u in enumerate(raw["items"])}
    expected = np.zeros(len(raw["items"]))
    np.add.at(expected, [items[i] for i in ev["item_id"]], contrib)
    assert raw["train_config"]["pop_half_life_events"] == 0.0
    np.testing.assert_allclose(raw["item_pop"].numpy(), expected, rtol=1e-4, atol=1e-6)


def test_lineage_records_every_run(pipeline) -> None:
    lineage = read_payload(pipeline.ckpt[13])["lineage"]
    assert [e["command"] for e in lineage] == ["init", "update", "update", "update"]
    for entry, name, parent in zip(
        lineage, ["base", "day11", "day12", "day13"], [None, *(pipeline.ckpt[d] for d in (10, 11, 12))], strict=True
    ):
        assert set(entry) == (INIT_KEYS if entry["command"] == "init" else UPDATE_KEYS), entry["command"]
        path = pipeline.events[name]
        df = pl.read_parquet(path)
        assert entry["data_path"] == str(path)
        assert entry["data_sha256"] == sha256_file(path)
        assert entry["parent_sha256"] == (None if parent is None else sha256_file(parent))
        assert entry["events"] == df.height
        assert entry["ts_min"] == df["timestamp"].min().replace(microsecond=0).isoformat()
        assert entry["ts_max"] == df["timestamp"].max().replace(microsecond=0).isoformat()
        assert entry["recinc_version"] == __version__
        assert (entry["device"], entry["precision"], entry["ranks"]) == ("cpu", "fp32", 1)
        assert np.isfinite(entry["final_loss"]) and entry["train_seconds"] >= 0
        dt.datetime.fromisoformat(entry["time"])
    assert 1 <= lineage[0]["epochs"] <= 2 and [e["epochs"] for e in lineage[1:]] == [1, 1, 1]
    assert lineage[0]["new_users"] == lineage[0]["n_users"]
    for prev, cur in itertools.pairwise(lineage):
        assert cur["n_users"] == prev["n_users"] + cur["new_users"]
        assert cur["n_items"] == prev["n_items"] + cur["new_items"]
        assert cur["new_users"] > 0 and cur["new_items"] > 0
    raw = read_payload(pipeline.ckpt[13])
    assert (lineage[-1]["n_users"], lineage[-1]["n_items"]) == (len(raw["users"]) - 1, len(raw["items"]) - 1)
    assert all(e["epoch_seconds"] >= 0 for e in lineage) and lineage[0]["peak_memory_mb"] > 0
    # mf reads no sessions: its held-out users are judged by the next-slice protocol.
    assert lineage[0]["valid_protocol"] == "next" and lineage[0]["valid_units"] > 100


def test_init_lineage_records_the_learning_rate(pipeline) -> None:
    raw = read_payload(pipeline.ckpt[10])
    assert raw["lineage"][0]["lr"] == raw["train_config"]["lr"]


def test_save_load_round_trip_gives_identical_scores(pipeline, tmp_path: Path) -> None:
    b = load_bundle(pipeline.ckpt[11])
    users = torch.arange(len(b.users))
    with torch.no_grad():
        before = bundle_scorer(b)(users)
    digest = save_bundle(b, tmp_path / "copy.pt")
    assert digest == sha256_file(tmp_path / "copy.pt")
    c = load_bundle(tmp_path / "copy.pt")
    with torch.no_grad():
        assert torch.equal(bundle_scorer(c)(users), before)
    assert c.users.ids == b.users.ids and c.items.ids == b.items.ids
    assert torch.equal(c.seen.indptr, b.seen.indptr) and torch.equal(c.seen.indices, b.seen.indices)
    assert torch.equal(c.item_pop, b.item_pop) and c.pop_time_ms == b.pop_time_ms
    assert c.lineage == b.lineage and c.train_cfg == b.train_cfg and c.model_cfg == b.model_cfg


def test_same_seed_same_model(pipeline, tmp_path: Path) -> None:
    day = pipeline.events["day11"]
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        api.init(day, tmp_path / f"{name}.pt", TINY[0], TINY[1].replace(seed=seed))
    a, b, c = (read_payload(tmp_path / f"{n}.pt") for n in "abc")
    for key in a["weights"]:
        assert torch.equal(a["weights"][key], b["weights"][key]), key
    assert not torch.equal(a["weights"]["item_emb"], c["weights"]["item_emb"])
    for sa, sb in zip(a["optimizer"], b["optimizer"], strict=True):
        for k, st in sa["state"].items():
            assert torch.equal(st["exp_avg"], sb["state"][k]["exp_avg"])


def test_failed_save_keeps_the_previous_file_and_leaves_no_temp(pipeline, tmp_path: Path, full_disk) -> None:
    target = tmp_path / "m.pt"
    shutil.copy(pipeline.ckpt[10], target)
    before = target.read_bytes()
    bundle = load_bundle(pipeline.ckpt[11])
    with pytest.raises(OutputError, match=r"m\.pt: cannot write \(No space left on device\)"):
        save_bundle(bundle, target)
    assert target.read_bytes() == before
    assert only_files(tmp_path) == ["m.pt"]
    # The same through api.update writing over an existing output, and to a new path.
    with pytest.raises(OutputError):
        api.update(pipeline.ckpt[10], pipeline.events["day11"], target)
    with pytest.raises(OutputError):
        api.update(pipeline.ckpt[10], pipeline.events["day11"], tmp_path / "new.pt")
    assert target.read_bytes() == before
    assert only_files(tmp_path) == ["m.pt"]


def test_unloadable_files_raise_checkpoint_error(pipeline, tmp_path: Path) -> None:
    cases: dict[str, str] = {}
    (tmp_path / "text.pt").write_text("hello")
    cases["text.pt"] = "not a recinc checkpoint (not a torch .pt file); check the path"
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    cases["tensor.pt"] = "not a recinc checkpoint (required keys are missing)"
    raw = read_payload(pipeline.ckpt[10])
    torch.save({**raw, "format_version": FORMAT_VERSION + 1}, tmp_path / "future.pt")
    cases["future.pt"] = (
        f"format version {FORMAT_VERSION + 1} is newer than this recinc "
        f"({__version__}, format {FORMAT_VERSION}); upgrade recinc"
    )
    inconsistent = {k: v for k, v in raw.items() if k != "checksum"} | {"users": raw["users"][:-1]}
    torch.save({**inconsistent, "checksum": payload_digest(inconsistent)}, tmp_path / "inconsistent.pt")
    cases["missing.pt"] = "no such checkpoint; check the path"
    for name, message in cases.items():
        with pytest.raises(CheckpointError) as e:
            load_bundle(tmp_path / name)
        assert str(e.value) == f"{tmp_path / name}: {message}"
    with pytest.raises(CheckpointError, match="damaged or inconsistent checkpoint"):
        load_bundle(tmp_path / "inconsistent.pt")
    data = Path(pipeline.ckpt[10]).read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(
        CheckpointError,
        match=r"cut\.pt: damaged checkpoint \(.*\); restore it "
        r"from a backup$",
    ):
        load_bundle(tmp_path / "cut.pt")


def test_a_pickle_that_runs_code_is_refused_unrun(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"format_version": 1, "payload": RunsCode(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused to load: it holds objects other than tensors and plain values"):
        load_bundle(tmp_path / "evil.pt")
    assert not marker.exists()
    # The payload is real: a full unpickle would have run it.
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()
