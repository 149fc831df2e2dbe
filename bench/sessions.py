"""Session logs: the session protocol on the YooChoose clicks, last day held out (issue 13).

    python bench/sessions.py --out bench_out            # about 4 minutes on 2 cores
    python bench/sessions.py --show bench_out/sessions.json

The log (``shared/data/yoochoose-sessions-70k.parquet``: anonymous sessions, no users) is
preprocessed with ``--user-col session_id`` and cut with ``recinc split --at`` 24 hours before
its newest click (the field's habit: the last day is the test). Each model is trained with
``recinc init`` on the rest, with its default settings, and scored with
``recinc evaluate --protocol session``, without and with ``--repeats``: HR@20 and MRR@20 over
every next click, and over each session's last click only. The sequential rule (the most
frequent next item after the session's last click, popularity fill) and popularity are the
baselines ``evaluate`` reports beside every sequential model; the issue's acceptance is the
best model's last-click HR@20 (with repeats) >= 1.05x the rule's.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import polars as pl
from common import console, recinc, run_main
from rich.table import Table


def run_dataset(name: str, path: Path, out: Path, models: list[str]) -> dict[str, Any]:
    out = out / "sessions"
    out.mkdir(parents=True, exist_ok=True)
    raw = out / "clicks.parquet"
    pl.read_parquet(path).write_parquet(raw)
    events, train, test = out / "events.parquet", out / "train.parquet", out / "test.parquet"
    recinc("preprocess", str(raw), "-o", str(events), "--user-col", "session_id")
    newest = pl.read_parquet(events)["timestamp"].max()
    cut = (newest - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.%f")  # type: ignore[operator]
    recinc("split", str(events), "--at", cut, "--train", str(train), "--test", str(test))
    report: dict[str, Any] = {"cut": cut, "models": {}}
    for model in models:
        ckpt = out / f"{model}.pt"
        _, seconds = recinc("init", str(train), "-o", str(ckpt), "--model", model)
        runs = {}
        for repeats in ("--no-repeats", "--repeats"):
            text, _ = recinc("evaluate", str(ckpt), str(test), "--protocol", "session", repeats, "--json")
            runs[repeats.lstrip("-")] = json.loads(text)
        report["models"][model] = {"init_seconds": round(seconds, 1), **runs}
        console.print(f"{model}: init {seconds:.0f}s", highlight=False)
    return report


def show(name: str, report: dict[str, Any]) -> None:
    table = Table(title=f"{name}: session protocol, last day held out (cut {report['cut']})")
    for col in ("ranker", "repeats", "HR@20 all", "MRR@20 all", "HR@20 last", "MRR@20 last", "cases | last"):
        table.add_column(col, justify="left" if col in ("ranker", "repeats") else "right")
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for model, runs in report["models"].items():
        for repeats in ("no-repeats", "repeats"):
            r = runs[repeats]
            for ranker in ("model", "rule", "popular"):
                label = model if ranker == "model" else {"rule": "sequential rule", "popular": "popularity"}[ranker]
                rows.setdefault((label, repeats), {"all": r[ranker], "last": r["last_click"][ranker], "r": r})
    for (label, repeats), v in rows.items():
        r = v["r"]
        table.add_row(
            label,
            repeats,
            f"{v['all']['hr@20']:.4f}",
            f"{v['all']['mrr@20']:.4f}",
            f"{v['last']['hr@20']:.4f}",
            f"{v['last']['mrr@20']:.4f}",
            f"{r['cases']:,} | {r['last_click_cases']:,}",
        )
    console.print(table)
    rule = rows[("sequential rule", "repeats")]["last"]["hr@20"]
    best = max(report["models"], key=lambda m: report["models"][m]["repeats"]["last_click"]["model"]["hr@20"])
    hr = report["models"][best]["repeats"]["last_click"]["model"]["hr@20"]
    verdict = "meets" if hr >= 1.05 * rule else "misses"
    console.print(
        f"best: {best}, last-click HR@20 with repeats {hr:.4f} = {hr / rule:.3f}x the sequential rule's {rule:.4f} "
        f"({verdict} the >= 1.05x acceptance)",
        highlight=False,
    )


if __name__ == "__main__":
    run_main(__doc__, "sessions.json", run_dataset, show, datasets="yoochoose", models="sknn,sasrec")
