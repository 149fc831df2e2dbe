"""The one-line summaries ``init`` and ``update`` print, read from the run's typed report.

>>> from recinc_cli.training.report import FitReport, RunReport, RunResult
>>> fit = FitReport(events=100, epochs=3, lr=0.01, final_loss=1.25, train_seconds=2.0,
...     epoch_seconds=0.5, events_trained=300, ts_min=None, ts_max=None)
>>> how_trained(fit, valid_last=False, update_epochs=1)
'3 epochs'
>>> served(RunResult({"pop_weight": 0.5, "pop_weight_note": None}, {}, RunReport(fit, 0, 0, 1, {})))
'pop weight 0.5'
"""

from __future__ import annotations

from recinc_cli.training.report import FitReport, InitReport, RunResult, UpdateReport


def init_line(model: str, r: RunResult, valid_last: bool, update_epochs: int) -> str:
    """``init: MODEL on N events, ... -> PATH`` (README "Output")."""
    report = r.report
    assert isinstance(report, InitReport)
    fit = report.fit
    return (
        f"init: {model} on {report.events_in:,} events, {r['n_users']:,} users, {r['n_items']:,} items, "
        f"{how_trained(fit, valid_last, update_epochs)} "
        f"in {fit.train_seconds:.1f}s on {threads(report.threads)} ({fit.epoch_seconds:.1f}s per epoch, "
        f"{fit.events_per_second:,.0f} events/s, "
        f"peak memory {report.peak_memory_mb:,.0f} MiB), {loss(fit.final_loss)}, {served(r)} -> {written(r)}"
    )


def how_trained(fit: FitReport, valid_last: bool, update_epochs: int) -> str:
    """How ``init`` fit: what a closed-form fit did, a fixed epoch count, or early-stopped."""
    if fit.summary is not None:  # closed form: counted or stored, no epochs
        return fit.summary
    if fit.judged is None:
        return epochs(fit.epochs)
    if valid_last:
        return f"{epochs(fit.epochs)} chosen by early stopping (leave-one-out)"
    return f"{epochs(fit.epochs)} chosen by early stopping + {epochs(update_epochs)} on the held-out newest events"


def update_line(r: RunResult) -> str:
    """``update: N events, +U users, +I items ... -> PATH`` (README "Output")."""
    report = r.report
    assert isinstance(report, UpdateReport)
    fit, notes = report.fit, [served(r)]
    if report.replayed:
        notes.append(f"{report.replayed:,} replayed")
    if report.late_events:
        notes.append(f"{report.late_events:,} late ({'dropped' if report.late_policy == 'drop' else 'kept'})")
    if report.admitted.get("events_not_admitted"):
        notes.append(f"{report.admitted['events_not_admitted']:,} events of ids below --min-count")
    if report.expired_items:
        pruned = f", {report.pruned_items:,} pruned" if report.pruned_items else ""
        notes.append(f"{report.expired_items:,} items expired{pruned}")
    if "gate" in r:
        notes.append(f"gate passed: {r['gate']['reason']}")
    return (
        f"update: {fit.events:,} events, +{report.new_users:,} users, +{report.new_items:,} items "
        f"(now {r['n_users']:,} / {r['n_items']:,}), "
        f"{'counted' if fit.summary is not None else epochs(fit.epochs)} in {fit.train_seconds:.1f}s "
        f"on {threads(report.threads)}, {loss(fit.final_loss)}, {', '.join(notes)} -> {written(r)}"
    )


def served(r: RunResult) -> str:
    """The popularity weight served, beside the held-out NDCG@10 of that ranking and of the
    model alone; a weight so large that popularity ranks alone says so (README "The popularity
    weight")."""
    what = r["pop_weight_note"] or f"pop weight {r['pop_weight']:g}"
    judged = None if r.report is None else r.report.fit.judged
    if judged is None:
        return what
    on = f" on {judged.units:,} held-out sessions" if judged.protocol == "session" else ""
    # the figures as the lineage keeps them (5 decimals), so the line and --json agree
    ndcg, model_ndcg = round(judged.ndcg, 5), round(judged.model_ndcg, 5)
    return f"{what} (valid ndcg@10 {ndcg:.4f}{on}; model alone {model_ndcg:.4f})"


def written(r: RunResult) -> str:
    """Where init/update wrote."""
    text = r["path"] + (" (now LATEST)" if r.get("version") else "")
    if r.get("pruned"):
        text += f"; pruned {', '.join(r['pruned'])}"
    return text


def threads(n: int) -> str:
    """How many threads trained (README "Several jobs on one machine")."""
    return f"{n} thread{'' if n == 1 else 's'}"


def epochs(n: int) -> str:
    return f"{n} epoch" + ("" if n == 1 else "s")


def loss(final_loss: float | None) -> str:
    """The loss; closed-form models (ease) have none."""
    return "closed form" if final_loss is None else f"loss {final_loss:.4f}"
