"""Typed errors; each carries the exit code the CLI maps it to.

Only ``cli.py`` turns these into exit codes and messages. Messages are one line and say what to do.

>>> BadInputError("events.csv: column 'user_id' is missing").exit_code
3
"""

from __future__ import annotations

from collections.abc import Mapping


class RecincError(Exception):
    """Base class of every error recinc reports to a user."""

    exit_code: int = 1


class UsageError(RecincError):
    """An option or argument combination that cannot work (exit 2)."""

    exit_code = 2


class BadInputError(RecincError):
    """Input data that cannot be used: missing file or column, unreadable, empty (exit 3)."""

    exit_code = 3


class CheckpointError(RecincError):
    """A checkpoint that is missing, damaged or incompatible (exit 4)."""

    exit_code = 4


class TrainingError(RecincError):
    """Training diverged (NaN/inf loss) or could not run; nothing is written (exit 5)."""

    exit_code = 5


class PromotionError(RecincError):
    """The promotion gate refused the candidate (exit 6): it is kept aside as ``*.rejected.pt``
    and the previous model stays the one served. ``verdict`` holds the gate's figures;
    ``result`` what ``update`` would have returned, for the rejected file (``update --json``)."""

    exit_code = 6
    verdict: dict[str, object] | None = None
    result: Mapping[str, object] | None = None


class DatabaseError(RecincError):
    """The database cannot be reached, refused the login, or dropped the connection (exit 10):
    a cron job may retry later. A query the database refuses is bad input (exit 3)."""

    exit_code = 10


class DistributedError(RecincError):
    """A torchrun run whose ranks cannot go on together: the group could not be joined, or a
    peer stopped or became unreachable mid-run. Nothing is written."""

    exit_code = 11


class LockedError(RecincError):
    """Another recinc run holds the output's or registry's lock (exit 9). Nothing was read or
    written; retry later or pass ``--wait SECONDS``."""

    exit_code = 9


class LateDataError(RecincError):
    """Events older than the checkpoint's watermark minus ``--allowed-lateness`` under
    ``--late fail`` (exit 8). Nothing was written."""

    exit_code = 8


class OutputError(RecincError):
    """An output file could not be written: no space, no permission (exit 7). Nothing was replaced."""

    exit_code = 7


#: Exit code -> short meaning (README "Exit codes" has the long form).
EXIT_CODES: dict[int, str] = {
    0: "ok",
    1: "internal error",
    2: "usage error",
    3: "bad input data",
    4: "bad or incompatible checkpoint",
    5: "training failed (NaN/inf)",
    6: "not promoted (--gate)",
    7: "cannot write output",
    8: "late events refused (--late fail)",
    9: "locked by another run (--wait)",
    10: "database unreachable or login refused (--db)",
}
