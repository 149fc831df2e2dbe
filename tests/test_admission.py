"""--min-count: ids get a row only after N sightings; counts persist; indices only ever append."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from synthetic import TINY, ids, random_rows, write_events

from recinc_cli.data.admission import Admission
from recinc_cli.data.vocab import Vocab
from recinc_cli.store.format import read_payload

USERS, ITEMS = ids("u", 10), ids("i", 10)


def seen_of(raw: dict, user: str) -> set[str]:
    u = raw["users"].index(user)
    lo, hi = int(raw["seen_indptr"][u]), int(raw["seen_indptr"][u + 1])
    return {raw["items"][j] for j in raw["seen_indices"][lo:hi].tolist()}


def pending(raw: dict, kind: str) -> dict[str, int]:
    return dict(zip(raw[f"pending_{kind}_ids"], raw[f"pending_{kind}_counts"], strict=True))


@dataclass
class Lineage:
    raw: dict[str, dict]
    results: dict[str, object]


@pytest.fixture(scope="module")
def admitted(tmp_path_factory: pytest.TempPathFactory) -> Lineage:
    """init --min-count 2 on base, then two updates that use the stored min count."""
    from conftest import run_cli

    d = tmp_path_factory.mktemp("admission")
    base = [
        *random_rows(USERS, ITEMS, 200, 0, 10, seed=1),
        ("solo", "i000", 5.0),  # a user seen once
        ("u001", "rare", 6.0),  # an item seen once
        ("u002", "twice", 3.0),  # an item seen twice in one file: admitted at once
        ("u003", "twice", 4.0),
    ]
    day_a = [
        *random_rows(USERS, ITEMS, 50, 10, 11, seed=2),
        ("u004", "rare", 10.5),  # rare's second sighting: admitted now
        ("solo", "i001", 10.6),  # solo's second sighting
        ("u005", "rare2", 10.7),  # seen once: waits
        ("newbie", "i002", 10.8),
        ("newbie", "i003", 10.9),
    ]
    day_b = [*random_rows(USERS, ITEMS, 50, 11, 12, seed=3), ("u006", "rare2", 11.5)]
    files = {n: write_events(d / f"{n}.parquet", rows) for n, rows in (("base", base), ("a", day_a), ("b", day_b))}
    results = {
        "init": run_cli("init", files["base"], "-o", d / "m0.pt", *TINY, "--min-count", "2", "-q"),
        "a": run_cli("update", d / "m0.pt", files["a"], "-o", d / "m1.pt", "-q"),
        "b": run_cli("update", d / "m1.pt", files["b"], "-o", d / "m2.pt", "-q"),
    }
    for name, r in results.items():
        assert (r.exit_code, r.stderr) == (0, ""), name
    raw = {n: read_payload(d / f"m{j}.pt") for j, n in enumerate(("init", "a", "b"))}
    return Lineage(raw, {"dir": d, **files})


def test_ids_seen_once_get_no_row_at_init(admitted: Lineage) -> None:
    raw = admitted.raw["init"]
    assert raw["train_config"]["min_count"] == 2
    assert "solo" not in raw["users"] and "rare" not in raw["items"]
    assert "twice" in raw["items"]
    assert pending(raw, "user") == {"solo": 1}
    assert pending(raw, "item") == {"rare": 1}
    assert raw["weights"]["item_emb"].shape[0] == len(raw["items"]) == 1 + len(ITEMS) + 1  # + twice
    assert raw["weights"]["user_emb"].shape[0] == len(raw["users"]) == 1 + len(USERS)
    entry = raw["lineage"][0]
    assert entry["events_not_admitted"] == 2
    assert (entry["users_waiting"], entry["items_waiting"]) == (1, 1)
    # Both sightings of "twice" were trained on.
    assert "twice" in seen_of(raw, "u002") and "twice" in seen_of(raw, "u003")
    assert "rare" not in seen_of(raw, "u001")


def test_counts_persist_and_the_second_sighting_admits(admitted: Lineage) -> None:
    parent, raw = admitted.raw["init"], admitted.raw["a"]
    assert raw["train_config"]["min_count"] == 2  # the stored policy applied
    assert pending(raw, "user") == {}
    assert pending(raw, "item") == {"rare2": 1}
    assert "rare" in raw["items"] and "solo" in raw["users"] and "newbie" in raw["users"]
    assert "rare2" not in raw["items"]
    entry = raw["lineage"][-1]
    assert entry["events_not_admitted"] == 1
    assert entry["events"] == entry["events_in"] - 1 == 50 + 4
    assert (entry["new_users"], entry["new_items"]) == (2, 1)
    # The admitting sighting trains; the earlier, set-aside ones do not come back.
    assert "rare" in seen_of(raw, "u004") and "rare" not in seen_of(raw, "u001")
    assert seen_of(raw, "solo") == {"i001"}
    assert seen_of(raw, "newbie") == {"i002", "i003"}
    rare = raw["items"].index("rare")
    assert raw["weights"]["item_emb"].shape[0] == len(raw["items"])
    assert float(raw["weights"]["item_emb"][rare].abs().sum()) > 0
    assert int(raw["item_last_ms"][rare]) > 0
    # Nothing renumbered: the parent's ids keep their index, the new ones are appended.
    assert raw["users"][: len(parent["users"])] == parent["users"]
    assert raw["items"][: len(parent["items"])] == parent["items"]
    assert raw["items"][len(parent["items"]) :] == ["rare"]
    assert raw["users"][len(parent["users"]) :] == ["solo", "newbie"]


def test_a_pending_id_is_admitted_by_a_later_update(admitted: Lineage) -> None:
    parent, raw = admitted.raw["a"], admitted.raw["b"]
    assert pending(raw, "item") == {} and pending(raw, "user") == {}
    assert raw["items"] == [*parent["items"], "rare2"]
    assert "rare2" in seen_of(raw, "u006") and "rare2" not in seen_of(raw, "u005")
    assert raw["lineage"][-1]["events_not_admitted"] == 0
    # Earlier rows are those of the parent (admission grows, never reorders).
    assert raw["users"] == parent["users"]


def test_a_pending_user_is_served_as_a_stranger(cli, admitted: Lineage) -> None:
    r = cli("recommend", admitted.results["dir"] / "m0.pt", "--users", "solo,u001", "-k", "3", "-q")
    assert r.exit_code == 0, r.stderr
    sources = dict(pl.read_csv(r.stdout.encode()).select("user_id", "source").unique().iter_rows())
    assert sources == {"solo": "popular", "u001": "model"}


def test_min_count_given_to_update_applies_and_is_stored(cli, tmp_path: Path) -> None:
    base = write_events(tmp_path / "base.parquet", random_rows(USERS, ITEMS, 150, 0, 10, seed=4))
    day = write_events(
        tmp_path / "day.parquet",
        [*random_rows(USERS, ITEMS, 40, 10, 11, seed=5), ("u000", "once", 10.2), ("ghost", "i000", 10.3)],
    )
    assert cli("init", base, "-o", tmp_path / "m0.pt", *TINY, "-q").exit_code == 0
    r = cli("update", tmp_path / "m0.pt", day, "-o", tmp_path / "m1.pt", "--min-count", "2", "-q")
    assert (r.exit_code, r.stderr) == (0, "")
    raw = read_payload(tmp_path / "m1.pt")
    assert raw["train_config"]["min_count"] == 2
    assert pending(raw, "item") == {"once": 1} and pending(raw, "user") == {"ghost": 1}
    assert raw["lineage"][-1]["events_not_admitted"] == 2
    assert "once" not in raw["items"] and "ghost" not in raw["users"]


def test_admit_counts_sightings_not_distinct_files() -> None:
    a = Admission.empty()
    users, items = Vocab(["", "known"]), Vocab(["", "x"])
    ev = pl.DataFrame({"user_id": ["known", "new", "new", "new"], "item_id": ["x", "x", "y", "y"]})
    kept, stats = a.admit(ev, users, items, min_count=3)
    # "new" (3 sightings) is admitted; "y" (2) waits, so its events are set aside.
    assert kept.rows() == [("known", "x"), ("new", "x")]
    assert stats == {
        "users_admitted": 1,
        "items_admitted": 0,
        "users_waiting": 0,
        "items_waiting": 1,
        "events_not_admitted": 2,
    }
    assert a.items == {"y": 2}
    kept, _ = a.admit(pl.DataFrame({"user_id": ["known"], "item_id": ["y"]}), users, items, min_count=3)
    assert kept.height == 1 and a.items == {}
    assert Admission.from_dict(Admission({"a": 1}, {"b": 2}).to_dict()) == Admission({"a": 1}, {"b": 2})
