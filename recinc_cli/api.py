"""The Python API: one function per CLI command, usable without the CLI.

>>> from recinc_cli import api  # doctest: +SKIP
>>> api.preprocess(["log.csv"], "events.parquet")  # doctest: +SKIP
>>> api.init("events.parquet", "m0.pt")  # doctest: +SKIP
>>> api.update("m0.pt", "slice.parquet", "m1.pt")  # doctest: +SKIP
>>> api.recommend("m1.pt", users=["u1"], k=10)  # doctest: +SKIP
>>> api.evaluate("m1.pt", "next_slice.parquet")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from recinc_cli.config import DEFAULT_REPLAY_STRATEGIES, POLICY_FIELDS, ModelConfig, PreprocessConfig, TrainConfig
from recinc_cli.data.database import DbSource
from recinc_cli.data.io import read_events, sha256_file, write_table
from recinc_cli.errors import BadInputError, PromotionError, UsageError
from recinc_cli.failpoints import pause_point
from recinc_cli.progress import NullReporter, Reporter
from recinc_cli.threads import use_threads

if TYPE_CHECKING:
    from recinc_cli.compute import Compute
    from recinc_cli.store.bundle import Bundle
    from recinc_cli.store.target import Target
    from recinc_cli.training.report import RunResult

# The modules of the steps below are imported inside the functions that need them: torch (about
# 2 s) only for the commands that need it, so that `recinc preprocess` and `--help` start fast,
# and `recommend` and `evaluate` import no training or evaluation code they do not run.

__all__ = [
    "DbSource",
    "evaluate",
    "info",
    "init",
    "preprocess",
    "recommend",
    "replay",
    "rollback",
    "serve",
    "since_time",
    "split",
    "split_slices",
    "update",
]


def preprocess(
    inputs: Sequence[str | Path], out: str | Path, cfg: PreprocessConfig | None = None, *, db: DbSource | None = None
) -> dict[str, Any]:
    """Clean raw logs, or the rows of a database table or query ``db``, into the events
    Parquet ``out`` and return its manifest (:func:`recinc_cli.data.preprocess.preprocess`).

    Raises :class:`UsageError` when both or neither of ``inputs`` and ``db`` are given.

    >>> preprocess([], "day.parquet", db=DbSource("sqlite:///shop.db", table="events"))  # doctest: +SKIP
    """
    from recinc_cli.data.preprocess import preprocess as clean

    if bool(inputs) == (db is not None):
        raise UsageError("give INPUTS (files) or --db (a database), one of the two")
    return clean(inputs, out, cfg, db)


def since_time(value: str | Path | dt.datetime) -> dt.datetime:
    """What ``--since`` means: a datetime (aware, UTC), the newest event a checkpoint or a
    registry's ``LATEST`` has folded in, or a time written as ISO 8601 or unix seconds.

    Raises :class:`UsageError` for text that is neither an existing path nor a time, and
    :class:`CheckpointError` for a path that is no checkpoint.

    >>> since_time("2026-03-01T12:00:00Z").isoformat()
    '2026-03-01T12:00:00+00:00'
    >>> since_time("1772366400").isoformat()
    '2026-03-01T12:00:00+00:00'
    """
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)
    text = str(value).strip()
    if Path(text).exists():
        from recinc_cli.store.format import read_watermark_ms

        return dt.datetime.fromtimestamp(read_watermark_ms(text) / 1000, dt.timezone.utc)
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return dt.datetime.fromtimestamp(float(text), dt.timezone.utc)
    try:
        return since_time(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise UsageError(
            f"--since {text!r}: no such checkpoint or registry, and not a time; give a path, "
            "an ISO 8601 time like 2026-03-01T12:00:00Z, or unix seconds"
        ) from None


def init(
    events: str | Path,
    out: str | Path | None = None,
    model_cfg: ModelConfig | None = None,
    train_cfg: TrainConfig | None = None,
    reporter: Reporter | None = None,
    *,
    registry: str | Path | None = None,
    keep: int | None = None,
    wait: float = 0.0,
    device: str = "auto",
    precision: str = "fp32",
) -> RunResult:
    """Train a new model on the events Parquet ``events`` and save it to ``out``, or as the
    next version of the registry directory ``registry`` (which it then serves; ``keep``
    prunes old versions). ``device`` (auto, cpu, cuda) and ``precision`` (fp32, bf16) say
    where and how the training steps run (:mod:`recinc_cli.compute`). Under torchrun the
    ranks train data-parallel and rank 0 writes (:mod:`recinc_cli.distributed`).

    The output is locked for the run (:class:`LockedError` if another run holds it after
    ``wait`` seconds). Returns the lineage entry of the new checkpoint (counts, loss,
    seconds) with ``sha256``, ``path`` and (registry) ``version``.
    """
    from recinc_cli import compute, distributed
    from recinc_cli.store.target import Target
    from recinc_cli.training.growth import check_feature_columns
    from recinc_cli.training.lifecycle import check_finite, create_bundle, lineage_entry
    from recinc_cli.training.report import RunResult

    model_cfg = model_cfg or ModelConfig()
    train_cfg = train_cfg or TrainConfig.for_model(model_cfg.name)
    target = Target.of(out, registry, keep)
    use_threads()
    run_on = compute.resolve(device, precision)
    with compute.using(run_on), distributed.session(run_on.device.type), _locked_if_writer(target, wait):
        df = read_events(events)
        check_feature_columns(df, model_cfg.item_features, events)
        data_sha = sha256_file(events)
        pause_point("read")
        bundle, report = create_bundle(df, model_cfg, train_cfg, reporter)
        check_finite(bundle)
        pause_point("trained")
        entry = {
            **lineage_entry("init", data_sha, str(events), None, bundle, report),
            **_run_on(run_on),
            "version": target.version,
        }
        saved = target.publish(bundle.replace(lineage=[*bundle.lineage, entry])) if distributed.is_writer() else {}
        distributed.finish()  # torchrun: the other ranks wait here until rank 0 has written
    return RunResult(entry, saved, report, {"model": model_cfg.name})


def _run_on(run_on: Compute) -> dict[str, Any]:
    """Where a run trained, for its lineage entry: device, precision, torchrun ranks and, on a
    GPU, the peak memory torch allocated there."""
    from recinc_cli import distributed

    group = distributed.current()
    where = {"device": str(run_on.device), "precision": run_on.precision, "ranks": 1 if group is None else group.world}
    if run_on.device.type == "cuda":
        import torch

        where["gpu_peak_memory_mb"] = round(torch.cuda.max_memory_allocated(run_on.device) / 2**20, 1)
    return where


def _locked_if_writer(target: Target, wait: float) -> contextlib.AbstractContextManager[Any]:
    """``target``'s lock, taken by the process that writes it (not by torchrun's other ranks)."""
    from recinc_cli import distributed

    return target.locked(wait) if distributed.is_writer() else contextlib.nullcontext()


def update(
    checkpoint: str | Path,
    events: str | Path,
    out: str | Path | None = None,
    force: bool = False,
    reporter: Reporter | None = None,
    *,
    registry: str | Path | None = None,
    gate: str | Path | None = None,
    max_drop: float = 0.02,
    keep: int | None = None,
    wait: float = 0.0,
    device: str = "auto",
    precision: str = "fp32",
    **overrides: Any,
) -> RunResult:
    """Fold the events Parquet ``events`` into the model at ``checkpoint``; save to ``out``.

    ``checkpoint`` may be a registry directory (its ``LATEST``); with neither ``out`` nor
    ``registry`` the new version goes into that same registry. ``overrides`` are
    :class:`TrainConfig` fields (``None`` = keep stored). The incremental policies
    (:data:`~recinc_cli.config.POLICY_FIELDS`: replay, anchoring, decay, admission, expiry,
    lateness, schedule) are stored in the new checkpoint as the defaults of later updates; the
    others (``update_epochs``, ``lr``, ``batch_size``) apply to this run only. When this
    lineage already applied the same data (by sha256) nothing is trained or written, unless
    ``force``; the result then has ``skipped=True``.

    ``gate``: a holdout events Parquet; the candidate is promoted only if its NDCG@10 there
    is at most ``max_drop`` (relative) below the parent's (:mod:`recinc_cli.evaluation.gate`). Otherwise
    it is saved as ``*.rejected.pt`` and :class:`PromotionError` (exit 6) is raised, with the
    verdict in its ``verdict`` attribute and, in ``result``, this function's result for the
    rejected file (``path``, ``gate.passed`` False). The output is locked for the run.
    """
    from recinc_cli import compute, distributed
    from recinc_cli.store.registry import Registry
    from recinc_cli.store.target import Target

    if out is None and registry is None and Registry.is_registry(checkpoint):
        registry = checkpoint
    target = Target.of(out, registry, keep)
    if not 0.0 <= max_drop < 1.0:
        raise UsageError(f"--max-drop must be in [0, 1): a relative NDCG@10 drop (got {max_drop:g})")
    use_threads()
    run_on = compute.resolve(device, precision)
    with compute.using(run_on), distributed.session(run_on.device.type), _locked_if_writer(target, wait):
        result = _update_locked(target, Path(checkpoint), Path(events), force, reporter, gate, max_drop, overrides)
        distributed.finish()  # torchrun: the other ranks wait here until rank 0 has written
        return result


def _update_locked(
    target: Target,
    checkpoint: Path,
    events: Path,
    force: bool,
    reporter: Reporter | None,
    gate: str | Path | None,
    max_drop: float,
    overrides: dict[str, Any],
) -> RunResult:
    """:func:`update`'s read -> fold -> (gate) -> write, with ``target`` locked."""
    from recinc_cli import compute, distributed
    from recinc_cli.evaluation.gate import judge
    from recinc_cli.store.format import load_bundle
    from recinc_cli.store.registry import resolve_checkpoint
    from recinc_cli.training.growth import check_feature_columns
    from recinc_cli.training.lifecycle import check_finite, lineage_entry, update_bundle
    from recinc_cli.training.report import RunResult

    parent_path = resolve_checkpoint(checkpoint)
    bundle = load_bundle(parent_path)
    pause_point("loaded")
    df = read_events(events)  # validates the slice before it is hashed
    check_feature_columns(df, bundle.model_cfg.item_features, events)
    holdout = None if gate is None else read_events(gate)
    data_sha = sha256_file(events)
    pause_point("read")
    if data_sha in bundle.applied_data() and not force:
        return RunResult({}, {}, None, {"skipped": True, "data_sha256": data_sha, "data_path": str(events)})
    stored, train_cfg = _update_configs(bundle.train_cfg, overrides)
    bundle, report = update_bundle(bundle.replace(train_cfg=stored), df, train_cfg, reporter, source=str(events))
    check_finite(bundle)
    pause_point("trained")
    if not distributed.is_writer():  # torchrun: rank 0 gates and writes
        return RunResult({}, {}, report, {"skipped": False})
    entry = lineage_entry("update", data_sha, str(events), sha256_file(parent_path), bundle, report)
    entry.update(parent_path=str(parent_path), **_run_on(compute.current()), version=target.version)
    if gate is not None and holdout is not None:
        verdict = judge(load_bundle(parent_path), bundle, df, holdout, max_drop)
        entry["gate"] = {"holdout": str(gate), "holdout_sha256": sha256_file(gate), **verdict}
        pause_point("gated")
    bundle = bundle.replace(lineage=[*bundle.lineage, entry])
    if "gate" in entry and not entry["gate"]["passed"]:
        path = target.reject(bundle)
        error = PromotionError(f"{path}: not promoted by --gate {gate}: {entry['gate']['reason']}; {target.served()}")
        error.verdict = entry["gate"]
        rejected = {"path": str(path), "sha256": sha256_file(path), "pruned": []}
        error.result = RunResult(entry, rejected, report, {"skipped": False})
        raise error
    return RunResult(entry, target.publish(bundle), report, {"skipped": False})


def _update_configs(stored: TrainConfig, overrides: dict[str, Any]) -> tuple[TrainConfig, TrainConfig]:
    """The stored config with the policies given (kept for later updates), and this run's config
    (the others too, for this run only)."""
    policies = {k: v for k, v in overrides.items() if k in POLICY_FIELDS}
    kept = update_config(stored, policies, as_update=False)
    return kept, update_config(kept, {k: v for k, v in overrides.items() if k not in POLICY_FIELDS})


def rollback(registry: str | Path, to: int | None = None, wait: float = 0.0) -> dict[str, Any]:
    """Point the registry's ``LATEST`` back at version ``to`` (default: the one before it).

    Nothing is deleted; rolling forward is another ``rollback --to N``. The next ``update``
    builds on the version now served and takes a new number. Returns ``{"registry",
    "previous", "latest", "path"}``.
    """
    from recinc_cli.store.format import load_bundle
    from recinc_cli.store.locking import exclusive, lock_path_for
    from recinc_cli.store.registry import Registry

    root = Path(registry)
    if not root.is_dir():
        raise UsageError(f"{root}: not a registry directory; create one with `recinc init EVENTS --registry {root}`")
    reg = Registry(root)
    with exclusive(lock_path_for(root), str(root), wait):
        previous, latest = reg.rollback_target(to)
        load_bundle(reg.path_of(latest))  # never point LATEST at a damaged file
        reg.promote(latest)
    return {"registry": str(root), "previous": previous, "latest": latest, "path": str(reg.path_of(latest))}


def recommend(
    checkpoint: str | Path,
    users: Sequence[str] | None = None,
    k: int = 10,
    reporter: Reporter | None = None,
    history: str | Path | None = None,
    repeats: bool | None = None,
) -> pl.DataFrame:
    """Top-``k`` unseen items per user; ``users=None`` means every user the model knows.

    ``history``: an events Parquet of fresh events (not trained on). They extend each user's
    context and seen items in memory; a sequential model then recommends for users it has
    never seen from those events alone (``source="history"``). Other users unknown to the
    model get the decayed most-popular items (``source="popular"``). ``repeats`` (default: the
    checkpoint's stored setting) ranks items the user has seen too. Returns columns
    ``user_id, rank, item_id, score, source`` in the order of ``users``.
    """
    from recinc_cli.serving.serve import serve_top
    from recinc_cli.serving.views import serving_state
    from recinc_cli.store.format import load_bundle

    use_threads()
    bundle = load_bundle(checkpoint)
    state = serving_state(bundle, None if history is None else read_events(history))
    raw = pl.Series("user_id", bundle.users.ids[1:] if users is None else list(users), pl.String)
    repeats = bundle.train_cfg.repeats if repeats is None else repeats
    items, scores, source = serve_top(bundle, state, raw, k, reporter, repeats=repeats)
    item_ids = pl.Series(bundle.items.ids, dtype=pl.String)
    flat = items.reshape(-1)
    frame = pl.DataFrame(
        {
            "user_id": np.repeat(raw.to_numpy(), k),
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), len(raw)),
            "item_id": item_ids.gather(flat),
            "score": scores.reshape(-1),
            "source": np.repeat(source, k),
        }
    )
    return frame.filter(pl.Series(flat > 0))


def info(target: str | Path) -> dict[str, Any]:
    """What a checkpoint (or a registry's ``LATEST``) holds: ``{"path", "file_bytes", "model",
    "sizes": {"users", "items", "parameters"}, "model_config", "train_config", "policies",
    "watermark", "lineage": [...], "registry": {"versions", "latest"} or None}``; every value
    plain (``recinc info --json`` prints it). Raises :class:`CheckpointError`."""
    from recinc_cli.store.format import load_bundle
    from recinc_cli.store.registry import registry_versions, resolve_checkpoint

    path = resolve_checkpoint(target)
    bundle = load_bundle(path)
    train = dataclasses.asdict(bundle.train_cfg)
    return {
        "path": str(path),
        "file_bytes": path.stat().st_size,
        "sha256": sha256_file(path),
        "model": bundle.model.name,
        "sizes": {
            "users": len(bundle.users) - 1,
            "items": len(bundle.items) - 1,
            "event_types": len(bundle.types) - 1,
            "parameters": sum(t.numel() for t in bundle.model.state_dict().values()),
        },
        "model_config": _plain(dataclasses.asdict(bundle.model_cfg)),
        "train_config": _plain({k: v for k, v in train.items() if k not in POLICY_FIELDS}),
        "policies": _plain({k: v for k, v in train.items() if k in POLICY_FIELDS}),
        "watermark": dt.datetime.fromtimestamp(bundle.watermark_ms / 1000, dt.timezone.utc).isoformat()
        if bundle.watermark_ms
        else None,
        "lineage": _plain(bundle.lineage),
        "registry": registry_versions(Path(target)),
    }


def _plain(value: Any) -> Any:
    """``value`` with tuples as lists and anything not JSON-native as text."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def serve(
    target: str | Path, host: str = "127.0.0.1", port: int = 8080, reload_every: float = 2.0, quiet: bool = False
) -> None:
    """Serve the checkpoint or registry ``target`` over HTTP on ``host``:``port`` (0: any free
    port) until SIGINT/SIGTERM, reloading a new registry version every ``reload_every``
    seconds (0: never); README "Serving" lists the endpoints.

    Raises :class:`CheckpointError` when the first version cannot be loaded and
    :class:`UsageError` when the address cannot be listened on.
    """
    from recinc_cli.service.run import bind, run

    if reload_every < 0:
        raise UsageError(f"--reload-every must be 0 (never) or more seconds (got {reload_every:g})")
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be from 0 (any free port) to 65535 (got {port})")
    try:
        sock = bind(host, port)
    except OSError as e:
        raise UsageError(f"--host {host} --port {port}: cannot listen there ({e.strerror or e}); choose another") from e
    with sock:
        run(target, sock, reload_every, quiet)


PROTOCOLS = ("next", "loo", "session")


def evaluate(
    checkpoint: str | Path,
    events: str | Path,
    k: int = 10,
    reporter: Reporter | None = None,
    protocol: str = "next",
    repeats: bool | None = None,
) -> dict[str, Any]:
    """Evaluate the model and its most-popular baseline on the test events ``events``.

    ``protocol="next"``: next-slice (shared/PROTOCOL.md 3a): users known to the model with
    items new to them in ``events``; ground truth = those items. ``protocol="loo"``:
    leave-one-out: each user's last event in ``events`` is the target; their earlier events
    there (if any) are first appended to their context and seen items, as ``--history`` does.
    Either way the full catalogue minus each user's seen items is ranked. ``protocol="session"``:
    every next click of each session (user) of ``events``, from the clicks before it
    (:mod:`recinc_cli.evaluation.sessions`); HR, MRR and NDCG at 10, 20 and ``k``.

    ``repeats`` (default: the checkpoint's stored setting): rank items the user has seen too,
    and count them in the ground truth (re-purchases, repeat clicks in a session).

    Returns ``{"k", "protocol", "users", "repeats", "model": {...}, "popular": {...},
    "evidence": {...}, "warning", ...}``: the metrics of each scorer, the number of users (or
    sessions) scored, the 95% bootstrap interval of the model's NDCG@k lift over popularity
    (:func:`~recinc_cli.evaluation.significance.lift_evidence`) and a warning (None when the figures can be
    trusted). Raises :class:`BadInputError` when no user is eligible.
    """
    from recinc_cli.store.format import load_bundle

    if protocol not in PROTOCOLS:
        raise UsageError(f"--protocol must be one of {', '.join(PROTOCOLS)} (got {protocol!r})")
    reporter = reporter or NullReporter()
    use_threads()
    bundle = load_bundle(checkpoint)
    repeats = bundle.train_cfg.repeats if repeats is None else repeats
    df = read_events(events)
    head: dict[str, Any] = {"k": k, "protocol": protocol, "repeats": repeats, "test_events": df.height}
    head |= {"catalogue": len(bundle.items) - 1, "checkpoint": str(checkpoint)}
    if protocol != "session":
        return _evaluate_ranking(bundle, df, head, events, reporter)
    from recinc_cli.evaluation.sessions import evaluate_sessions  # here (start-up time: only this protocol)
    from recinc_cli.evaluation.significance import thin_warning

    result = head | evaluate_sessions(bundle, df, k, repeats, reporter)
    if result["cases"] == 0:
        raise BadInputError(f"{events}: no session there has two clicks on items the model knows; nothing to evaluate")
    return result | {"warning": thin_warning(result["evidence"])}


def _evaluate_ranking(
    bundle: Bundle, df: pl.DataFrame, head: dict[str, Any], events: str | Path, reporter: Reporter
) -> dict[str, Any]:
    """:func:`evaluate` under the next-slice or leave-one-out protocol (``head`` says which)."""
    from recinc_cli.data.split import split_last
    from recinc_cli.evaluation.metrics import latency_ms, never_seen, ranking_metrics, slice_truth, user_metrics
    from recinc_cli.evaluation.significance import lift_evidence, thin_warning
    from recinc_cli.serving.recommend import top_k
    from recinc_cli.serving.views import bundle_scorer, popular_scorer, serving_state

    k, repeats, before = head["k"], head["repeats"], None
    if head["protocol"] == "loo":
        before, df = split_last(df, 1, min_left=0)
        head["test_events"] = df.height  # the targets; the events before them are context
    state = serving_state(bundle, before if before is not None and before.height else None)
    seen = None if repeats else state.seen
    users, row, truth = slice_truth(df, bundle.users, bundle.items, never_seen if repeats else state.seen.contains)
    if len(users) == 0:
        raise BadInputError(f"{events}: no user known to the model has new items there; nothing to evaluate")
    result = head | {"users": len(users)}
    model_fn = bundle_scorer(bundle, state.context)
    scorers = {"model": model_fn, "popular": popular_scorer(bundle)}
    per_user = {}
    reporter.start("evaluating", 2 * len(users))
    for name, fn in scorers.items():
        top, _ = top_k(fn, users, seen, k, progress=reporter.advance)
        result[name] = ranking_metrics(top, row, truth, k, len(bundle.items) - 1)
        per_user[name] = user_metrics(top, row, truth, k)["ndcg"]
    reporter.stop()
    result["evidence"] = lift_evidence(per_user["model"], per_user["popular"])
    result["warning"] = thin_warning(result["evidence"])
    result["latency_ms"] = latency_ms(lambda u: top_k(model_fn, u, seen, k), users)
    return result


def split(
    events: str | Path,
    train_out: str | Path,
    test_out: str | Path,
    last: int | None = None,
    at: dt.datetime | None = None,
) -> dict[str, Any]:
    """Split an events Parquet into train and test files: each user's ``last`` events, or
    every event at or after time ``at``, go to ``test_out``. Returns the row counts and paths:
    ``{"events", "train", "test", "test_users", "train_path", "test_path"}``.

    With ``last``, users with ``last`` events or fewer stay wholly in train (nothing would
    predict their held-out events).
    """
    from recinc_cli.data.split import split_at, split_last

    if (last is None) == (at is None):
        raise UsageError("give exactly one of --last or --at")
    if last is not None and last < 1:
        raise UsageError("--last must be at least 1")
    df = read_events(events)
    train, test = split_last(df, last) if last is not None else split_at(df, at)  # type: ignore[arg-type]
    for part, name in ((train, "train"), (test, "test")):
        if part.height == 0:
            raise BadInputError(f"{events}: the {name} part would be empty; change --last / --at")
    write_table(train, train_out)
    write_table(test, test_out)
    return {
        "events": df.height,
        "train": train.height,
        "test": test.height,
        "test_users": test["user_id"].n_unique(),
        "train_path": str(train_out),
        "test_path": str(test_out),
    }


def split_slices(events: str | Path, n: int, prefix: str | Path) -> dict[str, Any]:
    """Cut an events Parquet by time into ``n`` files ``PREFIX1.parquet`` .. ``PREFIXn.parquet``
    (numbers zero-padded to the width of ``n``, so they sort in time order) of about equal
    event counts; all events of one timestamp stay in one slice (:func:`~recinc_cli.data.split.split_slices`).

    Each file is written atomically. Returns ``{"events", "slices": [{"path", "events",
    "users", "items", "time_min", "time_max"}]}``. Raises :class:`UsageError` for ``n`` below 2
    and :class:`BadInputError` when the events have fewer distinct times than ``n``.
    """
    from recinc_cli.data.split import split_slices as cut

    if n < 2:
        raise UsageError(f"--slices must be at least 2 (got {n})")
    df = read_events(events)
    times = df["timestamp"].n_unique()
    if times < n:
        raise BadInputError(
            f"{events}: {df.height} events at {times} distinct times cannot make {n} slices "
            "(events of one time stay together); use fewer --slices"
        )
    parts = cut(df, n)
    written = []
    for k, part in enumerate(parts, 1):
        path = Path(f"{prefix}{k:0{len(str(n))}d}.parquet")
        write_table(part, path)
        written.append(_slice_summary(part, path))
    return {"events": df.height, "slices": written}


def _slice_summary(part: pl.DataFrame, path: Path) -> dict[str, Any]:
    ts = part["timestamp"]
    return {
        "path": str(path),
        "events": part.height,
        "users": part["user_id"].n_unique(),
        "items": part["item_id"].n_unique(),
        "time_min": ts.min().isoformat(),  # type: ignore[union-attr]
        "time_max": ts.max().isoformat(),  # type: ignore[union-attr]
    }


def replay(
    log: str | Path,
    out_dir: str | Path,
    model_cfg: ModelConfig | None = None,
    train_cfg: TrainConfig | None = None,
    strategies: Sequence[str] = DEFAULT_REPLAY_STRATEGIES,
    n_slices: int = 5,
    base_fraction: float = 0.5,
    k: int = 10,
    plot: str | Path | None = None,
    reporter: Reporter | None = None,
    on_step: Any = None,
    on_slice: Any = None,
    protocol: str = "next",
    **update_overrides: Any,
) -> dict[str, Any]:
    """Run the streaming benchmark (:mod:`recinc_cli.bench.replay`) on ``log``; write
    ``out_dir/report.json`` (and the PNG ``plot``); return the report.

    ``log`` is an events Parquet from ``recinc preprocess`` or a raw CSV/Parquet log, which is
    preprocessed with the default settings into ``out_dir/events.parquet`` first.
    ``update_overrides`` are :class:`TrainConfig` fields of the incremental updates only
    (e.g. ``replay_ratio=0``), so one run measures what an option buys. ``strategies``
    defaults to :data:`~recinc_cli.config.DEFAULT_REPLAY_STRATEGIES` (no ``retrain``: it costs
    several updates' time at every slice).

    ``report.json`` is rewritten (atomically) after the base fit and after each slice, with
    ``"complete": false`` and the slices done so far until the last one, so a killed run keeps
    what finished. ``on_slice(report)`` is called after each such write.

    ``protocol``: ``next`` (next-slice) or ``session`` (each slice's sessions click by click,
    for session logs). ``repeats`` among ``update_overrides`` applies to every strategy.
    """
    from recinc_cli.bench.plot import plot_report, require_matplotlib
    from recinc_cli.bench.replay import check_options
    from recinc_cli.bench.replay import replay as run_replay

    check_options(strategies, n_slices, base_fraction, protocol)  # fail before the long run, not after it
    if plot is not None:
        require_matplotlib()
    out_dir = Path(out_dir)
    use_threads()
    events_path = _events_of(Path(log), out_dir)
    model_cfg = model_cfg or ModelConfig()
    train_cfg, update_cfg = _replay_configs(train_cfg or TrainConfig.for_model(model_cfg.name), update_overrides)
    source = {"log": str(Path(log)), "data_sha256": sha256_file(events_path)}
    save = functools.partial(_save_report, out_dir / "report.json", source, on_slice)
    events = read_events(events_path)
    args = (model_cfg, train_cfg, strategies, n_slices, base_fraction, k, update_cfg, reporter, on_step, save)
    report = run_replay(events, *args, protocol=protocol)
    report = {**source, **report}
    if plot is not None:
        plot_path = Path(plot)
        plot_report(report, plot_path if plot_path.parent != Path() else out_dir / plot_path)
    return report


def _replay_configs(train_cfg: TrainConfig, overrides: dict[str, Any]) -> tuple[TrainConfig, TrainConfig]:
    """The config of the base model and the retrains, and that of the incremental updates."""
    if overrides.get("repeats") is not None:  # how every strategy serves, not an update policy
        train_cfg = dataclasses.replace(train_cfg, repeats=overrides["repeats"])
    return train_cfg, update_config(train_cfg, overrides)


def _save_report(path: Path, source: dict[str, Any], on_slice: Any, partial: dict[str, Any]) -> None:
    """Write the report so far atomically (a killed replay keeps the slices done), then tell ``on_slice``."""
    import json

    from recinc_cli.data.io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({**source, **partial}, indent=2) + "\n")
    pause_point(f"replay:slice-{partial['slices_done']}")
    if on_slice is not None:
        on_slice({**source, **partial})


def _events_of(log: Path, out_dir: Path) -> Path:
    """``log`` itself when it is an events Parquet, else ``out_dir/events.parquet`` made from
    it by ``preprocess`` with the default settings."""
    from recinc_cli.data.io import EVENTS_SCHEMA

    if not log.exists():
        raise BadInputError(f"{log}: no such file; check the path")
    if log.suffix in (".parquet", ".pq") and all(c in pl.read_parquet_schema(log) for c in EVENTS_SCHEMA):
        return log
    preprocess([log], out_dir / "events.parquet")
    return out_dir / "events.parquet"


def update_config(stored: TrainConfig, overrides: dict[str, Any], as_update: bool = True) -> TrainConfig:
    """The settings of one update: ``stored`` with the non-None ``overrides`` applied and (with
    ``as_update``) the update learning rate (``lr`` overrides it). None is "not given";
    ``auto`` (e.g. ``pop_weight="auto"``) is a value like any other.

    >>> update_config(TrainConfig(lr=0.01, update_lr=0.001), {"lr": None, "epochs": 2}).lr
    0.001
    """
    cfg = stored.replace(**{k: v for k, v in overrides.items() if k != "lr"})
    return cfg.for_update(overrides.get("lr")) if as_update else cfg
