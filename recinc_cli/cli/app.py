"""The ``recinc`` command: parse flags, build configs, make one API call, report.

No ML or data logic lives here. Typed :class:`~recinc_cli.errors.RecincError` s become one line
on stderr and their exit code; nothing else is printed on failure.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from recinc_cli import __version__, api
from recinc_cli.cli.console import info, metrics_table, print_table, reporter
from recinc_cli.cli.helptext import model_metavar
from recinc_cli.cli.options import (
    ARCH_OPTIONS,
    FUTURE_WINDOW_HELP,
    GATE_OPTIONS,
    POLICY_OPTIONS,
    POP_PRIOR_HELP,
    PREPROCESS_OPTIONS,
    REPLAY_OPTIONS,
    REPLAY_TRAIN_OPTIONS,
    TRAIN_OPTIONS,
    UPDATE_RUN_OPTIONS,
    only,
    preprocess_config,
    with_groups,
)
from recinc_cli.config import (
    ModelConfig,
    TrainConfig,
)
from recinc_cli.data.io import read_user_ids, write_table
from recinc_cli.errors import EXIT_CODES, BadInputError, PromotionError, RecincError, UsageError

app = typer.Typer(
    name="recinc",
    help="Train recommendation models on event logs and keep them fresh with incremental updates.\n\n"
    "Pipeline: preprocess -> init -> update (each new slice) -> recommend / evaluate.\n\n"
    "Exit codes: " + ", ".join(f"{c} {name}" for c, name in EXIT_CODES.items()) + ".",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

F = TypeVar("F", bound=Callable[..., Any])


def _errors_to_exit(fn: F) -> F:
    """Turn a RecincError into one stderr line and its exit code; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RecincError as e:
            raise _fail(str(e), e.exit_code) from None
        except KeyboardInterrupt:
            raise _fail("interrupted; no output was written", 130) from None
        except Exception as e:
            if os.environ.get("RECINC_DEBUG"):
                raise
            raise _fail(f"internal error: {type(e).__name__}: {e} (RECINC_DEBUG=1 shows a traceback)", 1) from None

    return wrapper  # type: ignore[return-value]


def command(fn: F) -> F:
    """Register ``fn`` as a subcommand with error mapping; its docstring is its ``--help``,
    or its ``HELP`` attribute where the text would make the function long (:func:`helped`)."""
    return app.command(name=getattr(fn, "NAME", None), help=getattr(fn, "HELP", None))(_errors_to_exit(fn))


def named(name: str) -> Callable[[F], F]:
    """Give a command a name other than its function's (``info``: ``console.info`` prints lines)."""

    def attach(fn: F) -> F:
        fn.NAME = name  # type: ignore[attr-defined]
        return fn

    return attach


def helped(text: str) -> Callable[[F], F]:
    """Give a command its ``--help`` text from a constant kept beside it."""

    def attach(fn: F) -> F:
        fn.HELP = text  # type: ignore[attr-defined]
        return fn

    return attach


Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars and no summary line.")]
Out = Annotated[Path, typer.Option("--output", "-o", help="File to write (atomically).")]
CheckpointArg = Annotated[
    Path,
    typer.Argument(metavar="CHECKPOINT", help="Checkpoint, or a registry directory (its LATEST).", show_default=False),
]
ParentArg = Annotated[
    Path, typer.Argument(metavar="CHECKPOINT", help="Checkpoint to update, or a registry directory (its LATEST).")
]
SliceArg = Annotated[Path, typer.Argument(metavar="EVENTS", help="New slice: events Parquet.", show_default=False)]
LogArg = Annotated[
    Path, typer.Argument(metavar="LOG", help="Events Parquet, or a raw CSV/Parquet log (preprocessed first).")
]
CheckpointOut = Annotated[
    Path | None, typer.Option("--output", "-o", help="Checkpoint file to write (atomically).", show_default=False)
]
RegistryDir = Annotated[
    Path | None,
    typer.Option(
        help="Write the next numbered version DIR/NNNNNN.pt and switch DIR/LATEST to it (instead of -o).",
        show_default=False,
    ),
]
Keep = Annotated[
    int | None, typer.Option(help="With --registry: keep the newest N versions (and the one served), delete older.")
]
Wait = Annotated[
    float,
    typer.Option(
        help="Seconds to wait for another run writing the same output or registry; 0 = fail at once (exit 9)."
    ),
]

Device = Annotated[
    str,
    typer.Option(
        metavar="auto|cpu|cuda",
        help="Where training steps run: auto = CUDA when torch sees a GPU (torchrun: the local rank's), else CPU.",
    ),
]
Precision = Annotated[
    str,
    typer.Option(
        metavar="fp32|bf16", help="bf16: training forward passes in bfloat16 (autocast); weights stay float32."
    ),
]


Json = Annotated[
    bool, typer.Option("--json", help="Print the summary as one JSON object on stdout (no progress, no summary line).")
]
# Options that only some models read say which (recinc_cli.cli.helptext, from config.OPTION_MODELS).
ModelName = Annotated[
    str, typer.Option(metavar=model_metavar(), help='Model to train (README "Models" compares them).')
]


# -- incremental policies: shared by init (stored defaults), update (stored) and replay ----------
PopPrior = Annotated[float | None, typer.Option(help=POP_PRIOR_HELP)]
FutureWindow = Annotated[int | None, typer.Option(help=FUTURE_WINDOW_HELP)]
Repeats = Annotated[
    bool | None,
    typer.Option(
        "--repeats/--no-repeats",
        help="Rank items the user has already seen too (repeat clicks in a session, re-purchases) "
        "[default: the checkpoint's setting, stored by init/update; off].",
        show_default=False,
    ),
]


def _version(value: bool) -> None:
    if value:
        print(f"recinc {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    pass


@command
@with_groups(source=PREPROCESS_OPTIONS)
def preprocess(
    output: Out,
    inputs: Annotated[
        list[str] | None,
        typer.Argument(metavar="[INPUTS]...", help="CSV/Parquet files, directories or globs.", show_default=False),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            metavar="URI",
            help="Read the events from a database instead of files: a SQLAlchemy URI like "
            "sqlite:///shop.db or mysql+pymysql://user@host/db (password: in the URI or $RECINC_DB_PASSWORD).",
            show_default=False,
        ),
    ] = None,
    table: Annotated[
        str | None, typer.Option(metavar="NAME", help="With --db: the table to read.", show_default=False)
    ] = None,
    query: Annotated[
        str | None, typer.Option(metavar="SQL", help="With --db: a SELECT to read instead.", show_default=False)
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            metavar="CHECKPOINT|TIME",
            help="Keep only events after this: a checkpoint or registry (its newest folded event) or a "
            "time (ISO 8601 or unix seconds). With --db the cut is made in the query.",
            show_default=False,
        ),
    ] = None,
    batch_rows: Annotated[
        int, typer.Option(help="With --db: rows fetched and written at a time.", show_default=True)
    ] = 100_000,
    source: dict[str, Any] | None = None,
    quiet: Quiet = False,
) -> None:
    """Clean raw logs into one time-sorted events Parquet.

    Bad rows go to OUT.rejects.parquet with file, row and reason (missing user_id/item_id,
    id longer than 1024 characters, control character in id, missing or unparsable timestamp,
    timestamp before 1970-01-01 or after 2100-01-01, exact duplicate; in CSV also wrong number
    of fields, bad quoting, empty row, not valid UTF-8, header line repeated; with --weight-col
    also missing, unparsable or negative weight); counts, time range and sha256 go to
    OUT.manifest.json. Ids are trimmed and kept as text. Timestamps may be ISO 8601 or unix
    s/ms/us (detected per value). An unusable file (empty, not CSV text, a column missing or
    duplicated) stops with exit 3 and nothing written. CSV may be gzipped.

    --db reads a table (--table) or a SELECT (--query) from a database in batches instead;
    rows that fail cleaning go to the rejects as for files (source: the URI, password masked,
    and the table; row: the result's row). An unreachable server or a refused login exits 10;
    a missing table or column or a failing query exits 3. --since keeps only events after a
    checkpoint's newest folded event (or a time): a nightly pull then reads one day.

    An event weighs what its type does in --event-weights, or with --weight-col what that
    column says (then event types are not weighted, so --event-weights and --only-events
    cannot be given). --min-weight W leaves out sound events weighing less than W; the
    manifest counts them as rows_below_min_weight.

    \b
    Example:
      recinc preprocess logs/2026-03-*.csv -o events.parquet \\
          --event-weights view=1,cart=3,purchase=5
      recinc preprocess export.csv --separator ';' -o events.parquet
      recinc preprocess ratings.parquet -o events.parquet --weight-col rating --min-weight 4
      recinc preprocess --db sqlite:///shop.db --table events --since models/ -o day.parquet
    """
    if db is None and (table is not None or query is not None):
        raise UsageError("--table and --query read from a database: give --db URI too")
    given = dict(source or {})
    if since is not None:
        given["since"] = api.since_time(since)
    cfg = preprocess_config(given)
    source_db = None if db is None else api.DbSource(db, table=table, query=query, batch_rows=batch_rows)
    m = api.preprocess(inputs or [], output, cfg, db=source_db)
    rejected = ", ".join(f"{n} {r}" for r, n in m["rows_rejected"].items()) or "none"
    if cfg.min_weight is not None:
        rejected += f"; {m['rows_below_min_weight']:,} below --min-weight {cfg.min_weight:g}"
    if cfg.since is not None:
        rejected += f"; {m['rows_not_after_since']:,} not after --since {m['since']}"
    info(
        f"preprocess: kept {m['rows_kept']:,} of {m['rows_read']:,} rows (rejected: {rejected}); "
        f"{m['users']:,} users, {m['items']:,} items, {m['time_min']} .. {m['time_max']} -> {output}",
        quiet,
    )


@command
@with_groups(arch=ARCH_OPTIONS, train=TRAIN_OPTIONS, policies=POLICY_OPTIONS)
def init(
    events: Annotated[
        Path, typer.Argument(metavar="EVENTS", help="Events Parquet from `recinc preprocess`.", show_default=False)
    ],
    output: CheckpointOut = None,
    registry: RegistryDir = None,
    keep: Keep = None,
    wait: Wait = 0.0,
    model: ModelName = ModelConfig.name,
    arch: dict[str, Any] | None = None,
    train: dict[str, Any] | None = None,
    policies: dict[str, Any] | None = None,
    device: Device = "auto",
    precision: Precision = "fp32",
    json_: Json = False,
    quiet: Quiet = False,
) -> None:
    """Create a model and train it on an events Parquet.

    Builds the user and item vocabularies (append-only, index 0 reserved), trains the model and
    writes a self-contained checkpoint (weights, optimizer state, vocabularies, seen items,
    each user's recent events for sasrec, popularity, lineage). By default the newest 10% of
    EVENTS choose the epoch count (early stopping on next-slice NDCG@10), then are folded in
    as an update would.

    With --registry DIR the model becomes the next numbered version in DIR and is served
    from DIR/LATEST (see `recinc rollback`). Options marked with model names apply to those
    models only; the others ignore them.

    \b
    Example:
      recinc init events.parquet -o m0.pt                    # the default model: ranker
      recinc init events.parquet --registry models/
      recinc init events.parquet -o m0.pt --model mf --dim 64
      recinc init events.parquet -o m0.pt --model sasrec --item-features category
      recinc init train.parquet -o m0.pt --model sasrec --valid-last
      recinc init events.parquet -o m0.pt --model ease --json | jq .valid_ndcg
    """
    from recinc_cli.cli.summary import init_line  # here, not above (start-up time: it imports training code)
    from recinc_cli.distributed import follower

    quiet, json_ = quiet or follower(), json_ and not follower()  # torchrun: rank 0 alone reports
    model_cfg = ModelConfig(name=model, **(arch or {}))
    policies = policies or {}
    train_cfg = TrainConfig.for_model(model, **(train or {}), **policies)
    r = api.init(
        events, output, model_cfg, train_cfg, **_run_options(quiet or json_, registry, keep, wait, device, precision)
    )
    if json_:
        _print_json(r)
        return
    if not follower():
        info(init_line(model, r, train_cfg.valid_last, train_cfg.update_epochs), quiet)


UPDATE_HELP = """Fold a new slice of events into a model (incremental learning).

New users and items get new rows; old rows keep their index. The Adam state is restored and
grown with the tables. The newest share of the slice chooses how many epochs (at most
--epochs) and how much popularity (--pop-weight) serve the near future best, then is
trained on too. A slice this lineage already applied (same sha256) is skipped with exit 0
unless --force. Events older than the watermark (newest event applied) minus
--allowed-lateness are kept, dropped or refused (exit 8) per --late.

The policy options (from --update-valid-fraction to --warmup) are stored in the new
checkpoint as the defaults of later updates; --epochs, --lr and --batch-size apply to this
run only.

CHECKPOINT may be a registry directory: the version its LATEST names is updated, and
without -o the result becomes that registry's next version. A second run aimed at the same
output or registry fails at once with exit 9 (or waits --wait seconds).

--json prints the run's lineage entry and where it went as one JSON object; a skipped
slice prints {"skipped": true, ...}. A candidate --gate refuses (exit 6) prints its object
too, with gate.passed false and path its *.rejected.pt, and the error line on stderr.

\b
Example:
  recinc update m0.pt day11.parquet -o m1.pt
  recinc update models/ day11.parquet --gate day12.parquet --keep 7
  recinc update m1.pt day12.parquet -o m2.pt --replay-ratio 0.5 --half-life 7d
  recinc update m2.pt day13.parquet -o m3.pt --late fail --allowed-lateness 1d
  recinc update models/ day12.parquet --gate day13.parquet --json | jq .gate
"""


@command
@with_groups(gating=GATE_OPTIONS, run=UPDATE_RUN_OPTIONS, policies=POLICY_OPTIONS)
@helped(UPDATE_HELP)
def update(
    checkpoint: ParentArg,
    events: SliceArg,
    output: CheckpointOut = None,
    registry: RegistryDir = None,
    gating: dict[str, Any] | None = None,
    keep: Keep = None,
    wait: Wait = 0.0,
    run: dict[str, Any] | None = None,
    force: Annotated[bool, typer.Option(help="Apply the slice even if this lineage already did.")] = False,
    pop_prior: PopPrior = None,
    future_window: FutureWindow = None,
    policies: dict[str, Any] | None = None,
    device: Device = "auto",
    precision: Precision = "fp32",
    json_: Json = False,
    quiet: Quiet = False,
) -> None:
    from recinc_cli.cli.summary import update_line  # here, not above (start-up time: it imports training code)
    from recinc_cli.distributed import follower

    quiet, json_ = quiet or follower(), json_ and not follower()  # torchrun: rank 0 alone reports
    try:
        r = api.update(
            checkpoint,
            events,
            output,
            force=force,
            pop_prior=pop_prior,
            future_window=future_window,
            **_run_options(quiet or json_, registry, keep, wait, device, precision),
            **(gating or {}),
            **(run or {}),
            **(policies or {}),
        )
    except PromotionError as e:
        if json_ and e.result is not None:
            _print_json(e.result)  # the verdict is data too; the error line still goes to stderr
        raise
    if json_:
        _print_json(r)
        return
    if follower():
        return
    if r["skipped"]:
        info(
            f"update: {events} (sha256 {r['data_sha256'][:12]}) was already applied to this model; "
            "nothing written (use --force to apply it again)",
            quiet,
        )
        return
    info(update_line(r), quiet)


def _run_options(
    silent: bool, registry: Path | None, keep: int | None, wait: float, device: str, precision: str
) -> dict[str, Any]:
    """The options ``init`` and ``update`` hand the API alike: progress, output, where to train."""
    return {
        "reporter": reporter(silent),
        "registry": registry,
        "keep": keep,
        "wait": wait,
        "device": device,
        "precision": precision,
    }


def _print_json(r: Mapping[str, Any]) -> None:
    """``--json``: the API's result as one JSON object on a line of stdout."""
    sys.stdout.write(json.dumps(dict(r)) + "\n")


@command
def recommend(
    checkpoint: CheckpointArg,
    users: Annotated[str | None, typer.Option(help="Comma-separated user ids.")] = None,
    users_file: Annotated[
        Path | None, typer.Option(help="One user id per line, or a CSV/Parquet file with a user_id column.")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every user the model knows.")] = False,
    k: Annotated[int, typer.Option("-k", "--k", help="Items per user.")] = 10,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write .csv, .parquet or .jsonl instead of CSV on stdout.")
    ] = None,
    history: Annotated[
        Path | None,
        typer.Option(help="Events Parquet of fresh events to recommend from (not trained on, nothing saved)."),
    ] = None,
    repeats: Repeats = None,
    quiet: Quiet = False,
) -> None:
    """Top-k unseen items per user.

    Output columns: user_id, rank, item_id, score, source. source is model (a user the model
    knows), history (a user only --history knows, scored by a sequential model from those
    events: session-based cold start) or popular (the recently most popular items).
    With --history, known users' newer events there are read too, and every user's history
    items are not recommended again.

    \b
    Example:
      recinc recommend m1.pt --users u00001,u00002 -k 10
      recinc recommend m1.pt --all -k 20 -o recs.parquet
      recinc recommend m1.pt --users-file new_visitors.csv --history today.parquet
    """
    if sum([users is not None, users_file is not None, all_]) != 1:
        raise UsageError("give exactly one of --users, --users-file or --all")
    if k < 1:
        raise UsageError("-k must be at least 1")
    ids = None if all_ else _user_list(users, users_file)
    df = api.recommend(checkpoint, ids, k=k, reporter=reporter(quiet), history=history, repeats=repeats)
    if output is None:
        sys.stdout.write(df.write_csv())
    else:
        write_table(df, output)
    n_pop = df.filter(df["source"] == "popular")["user_id"].n_unique()
    n_hist = df.filter(df["source"] == "history")["user_id"].n_unique()
    info(
        f"recommend: {df['user_id'].n_unique():,} users ({n_pop:,} popular fallback"
        + (f", {n_hist:,} from --history" if history else "")
        + f"), {df.height:,} rows"
        + (f" -> {output}" if output else ""),
        quiet,
    )


def _user_list(users: str | None, users_file: Path | None) -> list[str]:
    ids = [u.strip() for u in users.split(",") if u.strip()] if users is not None else read_user_ids(users_file or "")
    if not ids:
        raise BadInputError(f"{users_file or '--users'}: no user ids given")
    return ids


@command
def evaluate(
    checkpoint: CheckpointArg,
    events: Annotated[
        Path, typer.Argument(metavar="EVENTS", help="Test events Parquet (the next slice).", show_default=False)
    ],
    k: Annotated[int, typer.Option("-k", "--k", help="Cut-off of the metrics.")] = 10,
    protocol: Annotated[
        str,
        typer.Option(
            help="next (next slice, test-then-train), loo (each user's last event) or session (every "
            "next click of each session, from the clicks before it)."
        ),
    ] = "next",
    repeats: Repeats = None,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    quiet: Quiet = False,
) -> None:
    """Evaluate a model on test events, beside its most-popular baseline.

    --protocol next: users known to the model with items new to them in EVENTS; ground truth
    = those items (test-then-train, PROTOCOL.md). --protocol loo: leave-one-out, each user's
    last event in EVENTS is the target (their earlier events there become context first);
    split a log with `recinc split --last 1`. Either way the full catalogue minus each user's
    seen items is ranked. Reports Recall, Precision, F1, NDCG, MRR, HitRate @k, coverage
    and ms per user. --protocol session (session logs): every next click of each session in
    EVENTS from the clicks before it, through the --history path; HR, MRR, NDCG @10, @20 and
    @k, over every next click and each session's last click, beside popularity and the
    sequential rule. Every protocol prints the users (or sessions) scored and the 95% bootstrap
    interval of the NDCG@k lift over popularity, and warns on stderr when under 100 were scored
    or the interval includes 0.

    \b
    Example:
      recinc evaluate m1.pt day12.parquet -k 10
      recinc evaluate m1.pt day12.parquet --json | jq .model.ndcg
      recinc evaluate m0.pt test.parquet --protocol loo
      recinc evaluate sknn.pt lastday.parquet --protocol session --repeats
    """
    if k < 1:
        raise UsageError("-k must be at least 1")
    r = api.evaluate(checkpoint, events, k=k, reporter=reporter(quiet or json_), protocol=protocol, repeats=repeats)
    if json_:
        sys.stdout.write(json.dumps(dict(r)) + "\n")
    else:
        print_table(metrics_table(r))
    if r["warning"]:
        info(f"evaluate: warning: {r['warning']}", quiet)


@command
def rollback(
    registry: Annotated[
        Path, typer.Argument(metavar="DIR", help="Registry directory (from --registry).", show_default=False)
    ],
    to: Annotated[
        int | None, typer.Option(help="Version number to serve [default: the one before the version served].")
    ] = None,
    wait: Wait = 0.0,
    quiet: Quiet = False,
) -> None:
    """Serve an earlier registry version: switch DIR/LATEST back atomically.

    Nothing is deleted, so a rollback is undone by another (--to N). The version is checked
    to load before LATEST moves. The next update builds on the version now served and takes
    a new number.

    \b
    Example:
      recinc rollback models/
      recinc rollback models/ --to 12
    """
    r = api.rollback(registry, to, wait=wait)
    before = "nothing" if r["previous"] is None else f"{r['previous']:06d}.pt"
    info(f"rollback: {r['registry']} LATEST {before} -> {r['latest']:06d}.pt", quiet)


@command
def split(
    events: Annotated[
        Path, typer.Argument(metavar="EVENTS", help="Events Parquet from `recinc preprocess`.", show_default=False)
    ],
    train: Annotated[
        Path | None, typer.Option(help="Train part to write (atomically), with --last/--at.", show_default=False)
    ] = None,
    test: Annotated[
        Path | None, typer.Option(help="Test part to write (atomically), with --last/--at.", show_default=False)
    ] = None,
    last: Annotated[int | None, typer.Option(help="Each user's last N events go to the test part.")] = None,
    at: Annotated[
        str | None, typer.Option(help="Events at or after this time (ISO 8601, UTC) go to the test part.")
    ] = None,
    slices: Annotated[
        int | None,
        typer.Option(help="Cut by time into N slices of about equal event counts, written as --prefix files."),
    ] = None,
    prefix: Annotated[
        str | None,
        typer.Option(help="With --slices: write PREFIX1.parquet .. PREFIXN.parquet (atomically).", show_default=False),
    ] = None,
    json_: Json = False,
    quiet: Quiet = False,
) -> None:
    """Split an events Parquet into train and test parts, per user or by time, or cut it into
    time slices.

    --last N holds out each user's last N events (leave-one-out with N=1; users with N events
    or fewer stay wholly in train). --at TIME holds out everything from TIME on. --slices N
    cuts the log by time into N files of about equal event counts, numbered in time order
    (zero-padded to the width of N); events of the same timestamp always share a slice, so
    a slice may be a little larger or smaller than the rest. Give exactly one of --last, --at
    or --slices.

    \b
    Example:
      recinc split events.parquet --last 1 --train train.parquet --test test.parquet
      recinc split events.parquet --at 2026-03-01 --train past.parquet --test future.parquet
      recinc split events.parquet --slices 3 --prefix slices/part
    """
    if sum(x is not None for x in (last, at, slices)) != 1:
        raise UsageError("give exactly one of --last, --at or --slices")
    if slices is not None:
        if train is not None or test is not None or prefix is None:
            raise UsageError("--slices writes --prefix PREFIX1.parquet ...; give --prefix, not --train/--test")
        _split_slices(events, slices, prefix, json_, quiet)
        return
    if train is None or test is None or prefix is not None:
        raise UsageError("--last and --at write --train and --test; give both, and --prefix only with --slices")
    r = api.split(events, train, test, last=last, at=_parse_time(at) if at is not None else None)
    if json_:
        _print_json(r)
        return
    info(
        f"split: {r['events']:,} events -> {r['train']:,} in {train}, {r['test']:,} "
        f"({r['test_users']:,} users) in {test}",
        quiet,
    )


def _split_slices(events: Path, n: int, prefix: str, json_: bool, quiet: bool) -> None:
    """``split --slices``: one API call, then the JSON object or the summary line."""
    r = api.split_slices(events, n, prefix)
    if json_:
        _print_json(r)
        return
    parts = ", ".join(f"{s['events']:,} in {s['path']} ({s['time_min']} .. {s['time_max']})" for s in r["slices"])
    info(f"split: {r['events']:,} events -> {parts}", quiet)


REPLAY_HELP = """Replay a log as a stream and measure what incremental updates are worth.

Cuts LOG by time into a base (--base-fraction) and --slices slices; trains a model on the
base; then for each slice evaluates every strategy on it before it is trained on, and
updates: frozen (never updated), incremental (update with each slice), retrain (init from
scratch on everything so far: not in the default, it costs several updates' time at every
slice) and popular (most popular of the latest slice). Prints the users scored and NDCG@k
of each slice, the means of NDCG / Recall / HR @k, seconds per update and each model's
NDCG lift over popular with its 95% bootstrap interval; warns (stderr) of slices under 100
users and of lifts within the noise. One line per slice goes to stderr as it finishes, and
REPORT_DIR/report.json is rewritten after each ("complete": false until the last), so a
killed run keeps the finished slices. --plot also writes a figure (pip install
'recinc[plot]'). The policy options apply to the incremental updates only, so one run shows
what each buys.

\b
Example:
  recinc replay events.parquet -o replay_ranker --plot report.png
  recinc replay events.parquet -o replay_all --strategies frozen,incremental,retrain,popular
  recinc replay events.parquet -o no_replay --replay-ratio 0 --strategies incremental
  recinc replay events.parquet -o nightly --json -q | jq .strategies.incremental.vs_popular
"""


@command
@with_groups(
    run=REPLAY_OPTIONS,
    arch=only(ARCH_OPTIONS, "dim", "ease_l2", "candidates", "rank_features", "time_inputs"),
    train=REPLAY_TRAIN_OPTIONS,
    policies=POLICY_OPTIONS,
)
@helped(REPLAY_HELP)
def replay(
    log: LogArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="Report directory (report.json, plot).")],
    model: ModelName = ModelConfig.name,
    run: dict[str, Any] | None = None,
    arch: dict[str, Any] | None = None,
    pop_prior: PopPrior = None,
    future_window: FutureWindow = None,
    train: dict[str, Any] | None = None,
    policies: dict[str, Any] | None = None,
    json_: Annotated[
        bool, typer.Option("--json", help="Print the report as one JSON object on stdout, no table.")
    ] = False,
    quiet: Quiet = False,
) -> None:
    from recinc_cli.cli.console import print_table, replay_line, replay_reporter, replay_table, stderr

    run = run or {}
    model_cfg = ModelConfig(name=model, **(arch or {}))
    train_cfg = TrainConfig.for_model(model, **(train or {}), pop_prior=pop_prior, future_window=future_window)

    def on_slice(report: dict[str, Any]) -> None:
        line = replay_line(report)
        if line is not None and not quiet:
            stderr.print(line, markup=False)

    progress = replay_reporter(quiet or json_)
    with progress:
        r = api.replay(
            log,
            output,
            model_cfg,
            train_cfg,
            reporter=progress.inner,
            on_step=progress.step,
            on_slice=on_slice,
            **run,
            **(policies or {}),
        )
    if json_:
        sys.stdout.write(json.dumps(dict(r)) + "\n")
    elif not quiet:
        print_table(replay_table(r))
    for warning in r["warnings"]:
        info(f"replay: warning: {warning}", quiet)
    info(f"replay: {len(run['strategies'])} strategies x {run['n_slices']} slices -> {output / 'report.json'}", quiet)


@command
@named("info")
def show_info(checkpoint: CheckpointArg, json_: Json = False) -> None:
    """What a checkpoint holds: model, sizes, settings, policies, lineage and registry versions.

    Prints rich tables on stdout, or with --json one JSON object for scripts. Exit 4 when the
    checkpoint is missing or damaged.

    \b
    Example:
      recinc info models/
      recinc info models/ --json | jq '.lineage[-1]'
    """
    from recinc_cli.cli.console import info_tables

    r = api.info(checkpoint)
    if json_:
        _print_json(r)
        return
    for table in info_tables(r):
        print_table(table)


@command
def serve(
    checkpoint: CheckpointArg,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one (printed).")] = 8080,
    reload_every: Annotated[
        float, typer.Option(help="Seconds between checks for a new version (registry LATEST, or the file); 0 = never.")
    ] = 2.0,
    quiet: Quiet = False,
) -> None:
    """Serve recommendations over HTTP (JSON) until Ctrl-C or SIGTERM.

    GET /recommend?user=ID&k=10, POST /recommend {"user", "k", "events": [...]} (fresh events:
    session cold start), GET /similar?item=ID&k=10, GET /health, GET /version (the checkpoint's
    lineage), GET /metrics (Prometheus). With a registry, a new LATEST (update --registry,
    rollback) is loaded in the background and swapped in between requests; a version that
    fails to load is refused and the old one keeps serving. The first stderr line gives the
    address. Exit 4 if the checkpoint cannot be loaded at start, 2 if the port is taken.

    \b
    Example:
      recinc serve models/ --port 8080 &
      curl 'http://127.0.0.1:8080/recommend?user=u00001&k=5'
    """
    api.serve(checkpoint, host=host, port=port, reload_every=reload_every, quiet=quiet)


def _parse_time(text: str) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--at: cannot read time {text!r}; use ISO 8601 like 2026-03-01 or 2026-03-01T12:00") from None
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)


def main() -> None:
    """Entry point of the ``recinc`` console script.

    Usage errors (unknown option, missing argument, bad value) become the same one-line
    ``recinc: error:`` message as every other error, with exit code 2.
    """
    try:
        code = app(prog_name="recinc", standalone_mode=False)
    except typer.Abort:
        raise _fail("interrupted; no output was written", 130) from None
    except Exception as e:
        # typer/click usage errors carry format_message() and exit_code; anything else is a bug.
        if not (hasattr(e, "format_message") and isinstance(getattr(e, "exit_code", None), int)):
            raise
        if type(e).__name__ == "NoArgsIsHelpError":
            print(e.ctx.get_help() if getattr(e, "ctx", None) else e.format_message())  # type: ignore[attr-defined]
            sys.exit(0 if getattr(e, "exit_code", 2) == 0 else 2)
        ctx = getattr(e, "ctx", None)
        where = f"; see '{ctx.command_path} --help'" if ctx is not None else ""
        raise SystemExit(_fail(f"{e.format_message().rstrip('.')}{where}", 2).exit_code) from None
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> typer.Exit:
    print(f"recinc: error: {' '.join(message.split())}", file=sys.stderr)
    return typer.Exit(code)
