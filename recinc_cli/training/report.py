"""What a fit reports: typed records of one ``init`` or ``update`` run, and their lineage fields.

A :class:`FitReport` says how the model was fit on a block of events (every family returns
one); an :class:`InitReport` or :class:`UpdateReport` adds what the run did around the fit (new
ids, admission, late events, replay, expiry). :meth:`~RunReport.lineage_fields` turns a run's
report into the plain values a checkpoint's lineage entry keeps, and the CLI prints its summary
line from the same record.

>>> fit = FitReport(events=10, epochs=2, lr=0.01, final_loss=1.5, train_seconds=0.5,
...     epoch_seconds=0.25, events_trained=20, ts_min="a", ts_max="b")
>>> fit.events_per_second, fit.judged is None
(40.0, True)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl


def iso_ms(ms: int) -> str:
    """Unix milliseconds as an ISO 8601 UTC time to the second (lineage and messages)."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Judged:
    """What the held-out newest events said of a fit: NDCG@10 of the ranking served (with the
    popularity weight), of the model alone, the protocol (``next`` or ``session``) and how many
    users or sessions it was judged on."""

    ndcg: float
    model_ndcg: float
    protocol: str
    units: int

    def fields(self) -> dict[str, Any]:
        return {
            "valid_ndcg": round(self.ndcg, 5),
            "valid_ndcg_model": round(self.model_ndcg, 5),
            "valid_protocol": self.protocol,
            "valid_units": self.units,
        }


#: The lineage fields of a fit judged on nothing.
NOT_JUDGED: dict[str, Any] = {"valid_ndcg": None, "valid_ndcg_model": None, "valid_protocol": None, "valid_units": None}


@dataclass(frozen=True)
class FitReport:
    """How a model was fit on a block of events.

    ``events`` trained on; ``epochs`` passes (1 for closed-form models); ``lr`` and
    ``final_loss`` None for closed-form models (no gradient steps), ``final_loss`` NaN when
    nothing was trained; ``events_trained`` the event-passes made, for the throughput;
    ``ts_min`` / ``ts_max`` the ISO times of the oldest and newest event; ``judged`` the
    held-out evidence, None when nothing was held out; ``extra`` a model's own counts (the
    ranker's example pool); ``summary`` what a closed-form fit did, in words (None for gradient
    fits: their epochs say it).
    """

    events: int
    epochs: int
    lr: float | None
    final_loss: float | None
    train_seconds: float
    epoch_seconds: float
    events_trained: int
    ts_min: str | None
    ts_max: str | None
    judged: Judged | None = None
    extra: dict[str, int] = field(default_factory=dict)
    summary: str | None = None

    @property
    def events_per_second(self) -> float:
        return round(self.events_trained / max(self.train_seconds, 1e-9), 1)

    def replace(self, **changes: Any) -> FitReport:
        return dataclasses.replace(self, **changes)

    def fields(self) -> dict[str, Any]:
        """The lineage fields of the fit."""
        judged = NOT_JUDGED if self.judged is None else self.judged.fields()
        seconds = {"train_seconds": round(self.train_seconds, 3), "epoch_seconds": round(self.epoch_seconds, 3)}
        counts = _values(self, "events", "epochs", "lr", "final_loss")
        return {**judged, **counts, **seconds, **_values(self, "ts_min", "ts_max"), **self.extra}


def closed_form_report(
    events: pl.DataFrame, seconds: float, judged: Judged | None, summary: str, extra: dict[str, int] | None = None
) -> FitReport:
    """The report of one closed-form pass over ``events``: no learning rate, no loss;
    ``summary`` (:attr:`~recinc_cli.models.base.ClosedFormRecommender.FIT_SUMMARY`) is filled in
    from ``extra``."""
    ts = events["timestamp"].dt.epoch("ms")
    return FitReport(
        events=events.height,
        epochs=1,
        lr=None,
        final_loss=None,
        train_seconds=seconds,
        epoch_seconds=seconds,
        events_trained=events.height,
        ts_min=iso_ms(int(ts.min())),  # type: ignore[arg-type]
        ts_max=iso_ms(int(ts.max())),  # type: ignore[arg-type]
        judged=judged,
        extra=extra or {},
        summary=summary.format(**(extra or {})),
    )


@dataclass(frozen=True)
class RunReport:
    """What one ``init`` or ``update`` did: the fit, the ids it added and the threads it used.

    ``admitted``: the admission counts (:meth:`~recinc_cli.data.admission.Admission.admit`).
    """

    fit: FitReport
    new_users: int
    new_items: int
    threads: int
    admitted: dict[str, int]

    def lineage_fields(self) -> dict[str, Any]:
        """The run's part of its lineage entry (plain values)."""
        return {**self.fit.fields(), **_values(self, "new_users", "new_items", "threads")}


@dataclass(frozen=True)
class InitReport(RunReport):
    """An ``init``: ``events_in`` the events read (before admission), ``peak_memory_mb`` the
    process's peak resident memory."""

    events_in: int = 0
    peak_memory_mb: float = 0.0

    def lineage_fields(self) -> dict[str, Any]:
        # init counts the events it read: admission's leftovers are reported beside them
        fields = {**super().lineage_fields(), "events": self.events_in}
        return {**fields, "peak_memory_mb": self.peak_memory_mb, **self.admitted}


@dataclass(frozen=True)
class UpdateReport(RunReport):
    """An ``update``: ``events_in`` read, ``late_events`` older than the watermark allows (kept
    or dropped per ``late_policy``), ``replayed`` reservoir events trained beside the slice,
    ``expired_items`` / ``pruned_items`` after it, ``watermark`` the newest event time applied."""

    events_in: int = 0
    late_events: int = 0
    late_policy: str = "keep"
    replayed: int = 0
    expired_items: int = 0
    pruned_items: int = 0
    watermark: str = ""

    def lineage_fields(self) -> dict[str, Any]:
        intake = _values(self, "events_in", "late_events", "late_policy")
        after = _values(self, "replayed", "expired_items", "pruned_items", "watermark")
        return {**super().lineage_fields(), **intake, **self.admitted, **after}


def _values(record: object, *names: str) -> dict[str, Any]:
    """``{name: record.name}`` for each of ``names``, in that order."""
    return {name: getattr(record, name) for name in names}


@dataclass(frozen=True)
class RunResult(Mapping[str, Any]):
    """What :func:`recinc_cli.api.init` and :func:`~recinc_cli.api.update` return.

    ``entry`` the lineage entry written (plain values), ``saved`` where it went (``path``,
    ``sha256``, ``version``, ``pruned``), ``report`` the run's typed report (None for a slice
    skipped as already applied) and ``extra`` the command's own fields (``model`` of an init,
    ``skipped`` of an update). It reads as the JSON object ``--json`` prints, so
    ``result["epochs"]`` works as it always has; the CLI's summary line reads ``report``.

    >>> r = RunResult({"epochs": 2}, {"path": "m.pt"}, None, {"skipped": True})
    >>> r["epochs"], dict(r)
    (2, {'epochs': 2, 'skipped': True, 'path': 'm.pt'})
    """

    entry: dict[str, Any]
    saved: dict[str, Any]
    report: RunReport | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def json(self) -> dict[str, Any]:
        """The ``--json`` object (built once)."""
        speed = {} if self.report is None else {"events_per_second": self.report.fit.events_per_second}
        return {**self.entry, **self.extra, **speed, **self.saved}

    def __getitem__(self, key: str) -> Any:
        return self.json[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.json)

    def __len__(self) -> int:
        return len(self.json)
