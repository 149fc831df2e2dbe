"""Terminal output of the CLI: stderr console, progress bars, the metrics table.

Progress bars are drawn only when stderr is a terminal and ``--quiet`` is off, so cron mail
and Makefile logs stay clean. stdout is reserved for data.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from rich.progress import Progress

stderr = Console(stderr=True, highlight=False, soft_wrap=True)
stdout = Console(highlight=False)


class RichReporter:
    """A :class:`~recinc_cli.progress.Reporter` drawing one rich bar per phase on stderr."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task: Any = None

    def start(self, description: str, total: int | None) -> None:
        # Imported here, where a bar is drawn (start-up time: pipes and cron draw none).
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.stop()
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=stderr,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(description, total=total, status="")

    def advance(self, n: int = 1, status: str = "") -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=n, status=status)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def reporter(quiet: bool) -> RichReporter | None:
    """A progress reporter for a terminal, or None under cron, pipes and ``--quiet``."""
    return RichReporter() if not quiet and sys.stderr.isatty() else None


def info(message: str, quiet: bool) -> None:
    """The one-line summary of a command, on stderr."""
    if not quiet:
        stderr.print(message, markup=False)


METRICS = ("ndcg", "recall", "precision", "f1", "mrr", "hit_rate", "coverage")


def metrics_table(result: dict[str, Any]) -> Table:
    """Model beside its most-popular baseline, with the lift, for ``evaluate``."""
    if result.get("protocol") == "session":
        return session_table(result)
    k = result["k"]
    protocol = {"next": "next-slice", "loo": "leave-one-out"}[result.get("protocol", "next")]
    repeats = ", repeats ranked" if result.get("repeats") else ""
    title = f"{protocol} evaluation @ {k}: {result['users']:,} users scored, catalogue {result['catalogue']:,}"
    table = Table(title=title + repeats)
    for col in ("metric", "model", "popular", "lift"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for m in METRICS:
        a, b = result["model"][m], result["popular"][m]
        lift = f"{a / b:.2f}x" if b > 0 else "-"
        table.add_row(f"{m}@{k}" if m != "coverage" else m, f"{a:.4f}", f"{b:.4f}", lift)
    _interval_row(table, result, k, 2)
    lat = result["latency_ms"]
    table.add_row("ms/user p50 | p99", f"{lat['p50']:.2f} | {lat['p99']:.2f}", "", "")
    return table


def session_table(result: dict[str, Any]) -> Table:
    """``evaluate --protocol session``: HR, MRR, NDCG at each cut-off over every next click and
    over each session's last click, for the model, the sequential rule and popularity."""
    names = [n for n in ("model", "rule", "popular") if n in result]
    repeats = (
        "repeats ranked and counted"
        if result["repeats"]
        else f"{result['repeat_targets_skipped']:,} repeat clicks not counted"
    )
    served = ", ".join(f"{n:,} {s}" for s, n in result["served_by"].items())
    if result["served_by"].get("popular"):  # e.g. mf: it cannot read a session's clicks
        served += " (the model cannot serve from a session's clicks: popularity fallback, as recommend does)"
    table = Table(
        title=f"session evaluation: {result['cases']:,} next clicks of {result['sessions']:,} sessions "
        f"({repeats}; {result['dropped_unknown']:,} clicks on unknown items dropped; served: {served})"
    )
    table.add_column("metric")
    for n in names:
        table.add_column(n, justify="right")
    table.add_column("lift vs " + ("rule" if "rule" in result else "popular"), justify="right")
    base = "rule" if "rule" in result else "popular"
    for part, label in (("all", "next click"), ("last", f"last click ({result['last_click_cases']:,})")):
        source = result if part == "all" else result["last_click"]
        for key in source["model"]:
            a, b = source["model"][key], source[base][key]
            table.add_row(
                f"{key} {label}", *(f"{source[n][key]:.4f}" for n in names), f"{a / b:.2f}x" if b > 0 else "-"
            )
    _interval_row(table, result, result["k"], len(names))
    return table


def _interval_row(table: Table, result: dict[str, Any], k: int, n_values: int) -> None:
    """The row with the 95% bootstrap interval of the model's NDCG@k lift over popularity."""
    ev = result.get("evidence")
    if ev and "interval" in ev:
        lo, hi = ev["interval"]
        cells = [f"{ev['difference']:+.4f}"] + [""] * (n_values - 1)
        table.add_row(f"ndcg@{k} - popular (95% interval)", *cells, f"{lo:+.4f} .. {hi:+.4f}")


class ReplayProgress:
    """Two rich bars for ``replay``: steps (strategy x slice) and the current training phase.

    ``inner`` is the :class:`~recinc_cli.progress.Reporter` that training reports epochs and
    batches to; :meth:`step` advances the outer bar. Draws nothing when stderr is no terminal.
    """

    def __init__(self, enabled: bool) -> None:
        # Imported here, where a bar is drawn (start-up time: pipes and cron draw none).
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = (
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[status]}"),
                console=stderr,
                transient=True,
            )
            if enabled
            else None
        )
        self._outer: Any = None
        self._phase: Any = None
        self.inner = self  # the Reporter protocol is implemented below

    def __enter__(self) -> ReplayProgress:
        if self._progress is not None:
            self._progress.start()
            self._outer = self._progress.add_task("replay", total=None, status="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def step(self, done: int, total: int, what: str) -> None:
        if self._progress is not None:
            self._progress.update(self._outer, completed=done, total=total, status=what)

    def start(self, description: str, total: int | None) -> None:
        if self._progress is None:
            return
        self.stop()
        self._phase = self._progress.add_task(f"  {description}", total=total, status="")

    def advance(self, n: int = 1, status: str = "") -> None:
        if self._progress is not None and self._phase is not None:
            self._progress.update(self._phase, advance=n, status=status)

    def stop(self) -> None:
        if self._progress is not None and self._phase is not None:
            self._progress.remove_task(self._phase)
            self._phase = None


def replay_reporter(quiet: bool) -> ReplayProgress:
    """Progress of ``replay``: bars on a terminal, nothing under cron, pipes and ``--quiet``."""
    return ReplayProgress(not quiet and sys.stderr.isatty())


def replay_table(report: dict[str, Any]) -> Table:
    """Per strategy: NDCG@k of each slice, the means of NDCG, of the model's own ranking's NDCG
    (popularity weight 0), Recall and HR @k, seconds per update, and for a model its NDCG@k minus
    latest-slice popularity's over every user of every slice, with the 95% interval; the first
    row is the users scored in each slice."""
    k = report["k"]
    n_slices = len(report["slices"]) - 1
    table = Table(
        title=f"replay of {report['events']:,} events, model {report['model']}, "
        f"base fit {report['base_seconds']:.1f}s: "
        f"NDCG@{k} of slices 1-{n_slices}, then means of NDCG, Recall, HR @{k}"
    )
    table.add_column("strategy")
    for s in range(1, n_slices + 1):
        table.add_column(str(s), justify="right")
    for col in ("ndcg", "own ndcg", "recall", "hr", "s/upd", "ndcg - popular (95% interval)"):
        table.add_column(col, justify="right")
    users = [x["users"] for x in next(iter(report["strategies"].values()))["per_slice"]]
    table.add_row("users", *(f"{u:,}" for u in users), "", "", "", "", "", "")
    for name, r in report["strategies"].items():
        m, lift = r["mean"], r.get("vs_popular")
        table.add_row(
            name,
            *(f"{x['ndcg']:.3f}" for x in r["per_slice"]),
            f"{m['ndcg']:.4f}",
            f"{m['own_ndcg']:.4f}" if "own_ndcg" in m else "",
            f"{m['recall']:.4f}",
            f"{m['hit_rate']:.3f}",
            f"{m['seconds']:.2f}",
            "" if lift is None else _lift(lift),
        )
    return table


def _lift(evidence: dict[str, Any]) -> str:
    lo, hi = evidence["interval"]
    return f"{evidence['difference']:+.4f} ({lo:+.4f} .. {hi:+.4f})"


def replay_line(report: dict[str, Any]) -> str | None:
    """The one stderr line of a finished base fit or slice of ``replay`` (its report so far), e.g.
    ``replay: slice 2/5: ndcg@10 frozen 0.1500, incremental 0.1612, popular 0.1400 (312 users);
    update incremental 2.1s``; None after a base fit when no model is replayed."""
    done, n_slices, k = report["slices_done"], len(report["slices"]) - 1, report["k"]
    if done == 0:
        if set(report["strategies"]) == {"popular"}:
            return None
        return (
            f"replay: base model {report['model']} trained on {report['slices'][0]['events']:,} events "
            f"in {report['base_seconds']:.1f}s"
        )
    rows = {name: r["per_slice"][done - 1] for name, r in report["strategies"].items()}
    scores = ", ".join(f"{name} {row['ndcg']:.4f}" for name, row in rows.items())
    users = next(iter(rows.values()))["users"]
    updates = ", ".join(
        f"{name} {row['seconds']:.1f}s" for name, row in rows.items() if name in ("incremental", "retrain")
    )
    return f"replay: slice {done}/{n_slices}: ndcg@{k} {scores} ({users:,} users)" + (
        f"; update {updates}" if updates and done < n_slices else ""
    )


#: Width of stdout when it is no terminal: wide enough that no table is ever cut.
_PIPE_WIDTH = 4096


def print_table(table: Table) -> None:
    """Print ``table`` on stdout: fitted to a terminal; to a pipe, file or cron mail at its full
    width (rich would cut it to 80 columns there, ``0.16…``)."""
    if stdout.is_terminal:
        stdout.print(table)
    else:
        Console(highlight=False, width=_PIPE_WIDTH, file=sys.stdout).print(table)


def info_tables(r: dict[str, Any]) -> list[Table]:
    """``recinc info``: the checkpoint, its settings, its lineage (one row per run) and, for a
    registry, its versions."""
    sizes = r["sizes"]
    head = Table(title=f"{r['path']}: {r['model']}", show_header=False)
    head.add_column("what")
    head.add_column("value", overflow="fold")
    for what, value in (
        ("users / items / event types", f"{sizes['users']:,} / {sizes['items']:,} / {sizes['event_types']:,}"),
        ("parameters", f"{sizes['parameters']:,}"),
        ("file", f"{r['file_bytes'] / 2**20:,.1f} MiB, sha256 {r['sha256']}"),
        ("newest event folded in", r["watermark"] or "-"),
    ):
        head.add_row(what, value)
    settings = Table(title="settings (model / training / incremental policies)")
    for col in ("group", "setting", "value"):
        settings.add_column(col)
    for group, values in (("model", r["model_config"]), ("training", r["train_config"]), ("policy", r["policies"])):
        for name, value in sorted(values.items()):
            settings.add_row(group, name, "-" if value is None else str(value))
    lineage = Table(title="lineage (oldest first)")
    for col in ("#", "command", "time", "data", "events", "users", "items", "valid ndcg@10", "seconds"):
        lineage.add_column(col, justify="left" if col in ("command", "time", "data") else "right")
    for n, e in enumerate(r["lineage"], 1):
        ndcg = e.get("valid_ndcg")
        lineage.add_row(
            str(n),
            str(e.get("command", "?")),
            str(e.get("time", "")),
            str(e.get("data_path", "")),
            f"{e['events']:,}" if isinstance(e.get("events"), int) else "-",
            f"{e['n_users']:,}" if isinstance(e.get("n_users"), int) else "-",
            f"{e['n_items']:,}" if isinstance(e.get("n_items"), int) else "-",
            f"{ndcg:.4f}" if isinstance(ndcg, float) else "-",
            f"{e['train_seconds']:.1f}" if isinstance(e.get("train_seconds"), int | float) else "-",
        )
    tables = [head, settings, lineage]
    if r.get("registry"):
        reg = Table(title="registry")
        reg.add_column("version")
        reg.add_column("served")
        for v in r["registry"]["versions"]:
            reg.add_row(v, "LATEST" if v == r["registry"]["latest"] else "")
        tables.append(reg)
    return tables
